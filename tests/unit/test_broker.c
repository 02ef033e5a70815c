/* broker.c: each frame reaches its handler, or its sender learns why not. The
 * frames go through broker_handle_frame, the path of every received message,
 * on a broker without sockets (tests/unit/broker_fixture.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_fixture.h"

typedef enum { FROM_STRANGER, FROM_NODE, FROM_CONTROLLER } from_t;

typedef struct {
  const char *name;
  from_t from;
  proto_type_t type;      /* the message sent (PROTO_NONE: raw bytes) */
  const char *raw;        /* bytes sent when type is PROTO_NONE */
  const char *want_code;  /* the sender gets this error, or NULL */
  const char *mention;    /* text the error must hold, or NULL */
  proto_type_t want_type; /* else the sender gets this (PROTO_NONE: nothing) */
  int want_watcher;       /* frames the watching controller gets */
} frame_case_t;

static const frame_case_t frame_cases[] = {
    {"a request from a controller is answered", FROM_CONTROLLER, PROTO_REQUEST, NULL, NULL, NULL, PROTO_REPLY, 0},
    {"a request from a node is refused", FROM_NODE, PROTO_REQUEST, NULL, "unexpected", "controllers", PROTO_NONE, 0},
    {"a turn end from a controller is refused", FROM_CONTROLLER, PROTO_TURN_DONE, NULL, "unexpected", "nodes",
     PROTO_NONE, 0},
    {"a delta from a controller is refused", FROM_CONTROLLER, PROTO_DELTA, NULL, "unexpected", "nodes", PROTO_NONE, 0},
    {"a heartbeat before hello", FROM_STRANGER, PROTO_HEARTBEAT, NULL, "hello_first", "hello", PROTO_NONE, 0},
    {"a delta before hello", FROM_STRANGER, PROTO_DELTA, NULL, "hello_first", "hello", PROTO_NONE, 0},
    {"a type the broker never takes", FROM_NODE, PROTO_CANCEL, NULL, "unexpected", "\"cancel\"", PROTO_NONE, 0},
    {"garbage", FROM_NODE, PROTO_NONE, "\xc1", "malformed", NULL, PROTO_NONE, 0},
    {"a delta of the running turn goes to the watcher", FROM_NODE, PROTO_DELTA, NULL, NULL, NULL, PROTO_NONE, 1},
    {"a heartbeat from a node needs no answer", FROM_NODE, PROTO_HEARTBEAT, NULL, NULL, NULL, PROTO_NONE, 0},
};

/* The frame of a case, for the turn the node is running. Caller frees. */
static char *build(const frame_case_t *c, const proto_msg_t *turn, size_t *len) {
  if (c->type == PROTO_NONE) {
    *len = strlen(c->raw);
    return strdup(c->raw);
  }
  proto_msg_t *m = proto_msg_new(c->type);
  m->id = 7;
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, turn->turn);
  PROTO_SET(m, attempt, turn->attempt);
  PROTO_SET(m, seq, 1);
  proto_set_str(m, PROTO_F_verb, "status");
  proto_set_str(m, PROTO_F_kind, "text");
  proto_set_str(m, PROTO_F_text, "piece");
  proto_set_json(m, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", "x"));
  char *buf = NULL;
  assert_int_equal(proto_encode(m, &buf, len, NULL), 0);
  proto_msg_destroy(&m);
  return buf;
}

static void run_frame_case(const frame_case_t *c) {
  fx_t *fx = fx_new(NULL);
  peer_t *watcher = fx_controller(fx, "watcher");
  fx_controller(fx, "ctl");
  fx_node(fx, "node", 1);
  char err[256];
  assert_true(sessions_ask(fx->b, "main", "hi", err, sizeof err) > 0);
  proto_msg_t *turn = proto_msg_new(PROTO_TURN);
  const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
  turn->turn = t->msg->turn;
  turn->attempt = t->msg->attempt;
  fx_clear(fx);
  const char *sender = c->from == FROM_NODE ? "node" : c->from == FROM_CONTROLLER ? "ctl" : "stranger";
  size_t len = 0;
  char *frame = build(c, turn, &len);
  broker_handle_frame(fx->b, (const uint8_t *)sender, strlen(sender), frame, len);
  const fx_sent_t *back = NULL;
  int to_watcher = 0;
  for (int i = 0; i < fx->n_sent; i++) {
    if (fx->sent[i].idlen == strlen(sender) && memcmp(fx->sent[i].id, sender, fx->sent[i].idlen) == 0)
      back = &fx->sent[i];
    if (fx->sent[i].idlen == watcher->idlen && memcmp(fx->sent[i].id, watcher->id, watcher->idlen) == 0) {
      to_watcher++;
      if (c->type == PROTO_DELTA && (fx->sent[i].len != len || memcmp(fx->sent[i].data, frame, len) != 0))
        fail_msg("case \"%s\": the delta was not forwarded byte for byte", c->name);
    }
  }
  if (c->want_code) {
    if (!back || back->msg->type != PROTO_ERROR || strcmp(back->msg->code, c->want_code) != 0)
      fail_msg("case \"%s\": want error %s, got %s %s", c->name, c->want_code,
               back ? proto_type_name(back->msg->type) : "nothing", back && back->msg->code ? back->msg->code : "");
    if (c->mention && !strstr(back->msg->detail, c->mention))
      fail_msg("case \"%s\": \"%s\" does not mention %s", c->name, back->msg->detail, c->mention);
  } else if (c->want_type != PROTO_NONE) {
    if (!back || back->msg->type != c->want_type)
      fail_msg("case \"%s\": want %s back", c->name, proto_type_name(c->want_type));
  } else if (back) {
    fail_msg("case \"%s\": the sender got %s", c->name, proto_type_name(back->msg->type));
  }
  if (to_watcher != c->want_watcher)
    fail_msg("case \"%s\": the watcher got %d frames, want %d", c->name, to_watcher, c->want_watcher);
  free(frame);
  proto_msg_destroy(&turn);
  fx_destroy(&fx);
}

static void test_frames_reach_their_handler_or_are_refused(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++)
    run_frame_case(&frame_cases[i]);
}

/* ---- the peer table (nodes.c): found by routing id, freed by the sweep -------------- */

typedef enum { P_END, P_HELLO, P_REMOVE, P_SWEEP, P_FIND, P_COUNT } peer_op_t;

typedef struct {
  peer_op_t op;
  const char *id;                /* routing id (its bytes up to the first NUL, or idlen bytes) */
  size_t idlen;                  /* 0: strlen(id) */
  const char *name;              /* P_HELLO: "node:NAME" or "controller:NAME"; P_FIND: the name wanted (NULL: none) */
  int listed, dead, controllers; /* P_COUNT: peers in b->peers, removed and not swept, controllers listed */
} peer_step_t;

#define PEER_STEPS_MAX 8
static const struct {
  const char *name;
  peer_step_t steps[PEER_STEPS_MAX];
} peer_cases[] = {
    {"a peer is found by its routing id, an unknown id is not",
     {{P_HELLO, "a", 0, "node:n1", 0, 0, 0}, {P_FIND, "a", 0, "n1", 0, 0, 0}, {P_FIND, "b", 0, NULL, 0, 0, 0}}},
    {"ids sharing a prefix are told apart",
     {{P_HELLO, "ab", 0, "node:n1", 0, 0, 0},
      {P_HELLO, "abc", 0, "controller:c1", 0, 0, 0},
      {P_FIND, "ab", 0, "n1", 0, 0, 0},
      {P_FIND, "abc", 0, "c1", 0, 0, 0},
      {P_FIND, "a", 0, NULL, 0, 0, 0}}},
    {"binary ids (ZeroMQ's: a zero byte first) are compared whole",
     {{P_HELLO, "\0\x80\0\0\x41", 5, "node:n1", 0, 0, 0},
      {P_HELLO, "\0\x80\0\0\x42", 5, "node:n2", 0, 0, 0},
      {P_FIND, "\0\x80\0\0\x42", 5, "n2", 0, 0, 0},
      {P_FIND, "\0\x80\0\0", 4, NULL, 0, 0, 0}}},
    {"a removed peer is not found, stays listed until the sweep frees it",
     {{P_HELLO, "a", 0, "controller:c1", 0, 0, 0},
      {P_HELLO, "b", 0, "node:n1", 0, 0, 0},
      {P_REMOVE, "a", 0, NULL, 0, 0, 0},
      {P_FIND, "a", 0, NULL, 0, 0, 0},
      {P_COUNT, NULL, 0, NULL, 2, 1, 1},
      {P_SWEEP, NULL, 0, NULL, 0, 0, 0},
      {P_COUNT, NULL, 0, NULL, 1, 0, 0},
      {P_FIND, "b", 0, "n1", 0, 0, 0}}},
    {"a sweep with nobody removed frees nothing",
     {{P_HELLO, "a", 0, "node:n1", 0, 0, 0},
      {P_HELLO, "b", 0, "controller:c1", 0, 0, 0},
      {P_SWEEP, NULL, 0, NULL, 0, 0, 0},
      {P_COUNT, NULL, 0, NULL, 2, 0, 1},
      {P_FIND, "b", 0, "c1", 0, 0, 0}}},
    {"a second hello on a connection replaces its entry",
     {{P_HELLO, "a", 0, "controller:old", 0, 0, 0},
      {P_HELLO, "a", 0, "controller:new", 0, 0, 0},
      {P_FIND, "a", 0, "new", 0, 0, 0},
      {P_COUNT, NULL, 0, NULL, 2, 1, 2},
      {P_SWEEP, NULL, 0, NULL, 0, 0, 0},
      {P_COUNT, NULL, 0, NULL, 1, 0, 1},
      {P_FIND, "a", 0, "new", 0, 0, 0}}},
    {"a node back under a new routing id replaces its stale entry",
     {{P_HELLO, "old", 0, "node:n1", 0, 0, 0},
      {P_HELLO, "new", 0, "node:n1", 0, 0, 0},
      {P_FIND, "old", 0, NULL, 0, 0, 0},
      {P_FIND, "new", 0, "n1", 0, 0, 0},
      {P_SWEEP, NULL, 0, NULL, 0, 0, 0},
      {P_COUNT, NULL, 0, NULL, 1, 0, 0}}},
};

static size_t step_idlen(const peer_step_t *s) {
  return s->idlen ? s->idlen : strlen(s->id);
}

static void count_peers(const broker_t *b, int *listed, int *controllers) {
  *listed = *controllers = 0;
  for (const peer_t *p = b->peers; p; p = p->next)
    (*listed)++;
  for (const peer_t *p = b->controllers; p; p = p->cnext)
    (*controllers)++;
}

static void run_peer_step(fx_t *fx, const char *name, const peer_step_t *s) {
  broker_t *b = fx->b;
  if (s->op == P_HELLO) {
    const char *colon = strchr(s->name, ':');
    char role[16];
    snprintf(role, sizeof role, "%.*s", (int)(colon - s->name), s->name);
    proto_msg_t *m = proto_msg_new(PROTO_HELLO);
    proto_set_str(m, PROTO_F_role, role);
    proto_set_str(m, PROTO_F_name, colon + 1);
    proto_set_str(m, PROTO_F_version, "test");
    if (strcmp(role, "node") == 0)
      PROTO_SET(m, slots, 1);
    char err[256];
    if (!peer_hello(b, s->id, step_idlen(s), m, err, sizeof err))
      fail_msg("case \"%s\": hello %s refused: %s", name, s->name, err);
    proto_msg_destroy(&m);
  } else if (s->op == P_REMOVE) {
    peer_remove(b, peer_find(b, s->id, step_idlen(s)), "test");
  } else if (s->op == P_SWEEP) {
    peers_sweep(b);
  } else if (s->op == P_FIND) {
    peer_t *p = peer_find(b, s->id, step_idlen(s));
    if (s->name ? !p || strcmp(p->name, s->name) != 0 : p != NULL)
      fail_msg("case \"%s\": find \"%s\" gave %s, want %s", name, s->id, p ? p->name : "none",
               s->name ? s->name : "none");
  } else {
    int listed, controllers;
    count_peers(b, &listed, &controllers);
    if (listed != s->listed || b->dead_peers != s->dead || controllers != s->controllers)
      fail_msg("case \"%s\": %d listed, %d dead, %d controllers; want %d, %d, %d", name, listed, b->dead_peers,
               controllers, s->listed, s->dead, s->controllers);
  }
}

static void test_peer_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof peer_cases / sizeof peer_cases[0]; i++) {
    fx_t *fx = fx_new(NULL);
    for (int k = 0; k < PEER_STEPS_MAX && peer_cases[i].steps[k].op != P_END; k++)
      run_peer_step(fx, peer_cases[i].name, &peer_cases[i].steps[k]);
    fx_destroy(&fx);
  }
}

/* 1,000 nodes (a fan-in): each found by its id; half removed, swept, the rest still found. */
static void test_peer_table_at_scale(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  char id[16], name[16];
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof name, "n%d", i);
    assert_non_null(fx_node(fx, name, 1));
  }
  peer_t *ctl = fx_controller(fx, "ctl");
  for (int i = 0; i < 1000; i += 2) {
    snprintf(id, sizeof id, "n%d", i);
    peer_remove(fx->b, peer_find(fx->b, id, strlen(id)), "test");
  }
  assert_int_equal(fx->b->dead_peers, 500);
  peers_sweep(fx->b);
  assert_int_equal(fx->b->dead_peers, 0);
  for (int i = 0; i < 1000; i++) {
    snprintf(id, sizeof id, "n%d", i);
    peer_t *p = peer_find(fx->b, id, strlen(id));
    if (i % 2 ? !p || strcmp(p->name, id) != 0 : p != NULL)
      fail_msg("node %s: %s", id, p ? "still found" : "lost");
  }
  int listed, controllers;
  count_peers(fx->b, &listed, &controllers);
  assert_int_equal(listed, 501);
  assert_int_equal(controllers, 1);
  assert_ptr_equal(fx->b->controllers, ctl);
  fx_destroy(&fx);
}

/* Lines of authorized_keys: what each gives, or why it is refused. */
#define K40 "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define H40 "rq:rM>}U?@Lns47E1%kR.o@n%Fcm#sL/@{H8]yf7" /* '#' is a Z85 digit (never a key's first) */
static const struct {
  const char *name, *line;
  int rc;
  authkey_role_t role;
  const char *key_name, *err;
} key_lines[] = {
    {"bare key", K40, 1, AUTHKEY_ANY, "", NULL},
    {"bare key, spaces", "  " K40 " \r", 1, AUTHKEY_ANY, "", NULL},
    {"node", K40 " node gpu-1", 1, AUTHKEY_NODE, "gpu-1", NULL},
    {"controller", K40 "\tcontroller alice@laptop", 1, AUTHKEY_CONTROLLER, "alice@laptop", NULL},
    {"key with #", H40 " node n2", 1, AUTHKEY_NODE, "n2", NULL},
    {"comment", "# Cadre authorised client keys", 0, AUTHKEY_ANY, "", NULL},
    {"blank", "   ", 0, AUTHKEY_ANY, "", NULL},
    {"short key", "abc node x", -1, AUTHKEY_ANY, "", "is not a CURVE public key"},
    {"not z85", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"", -1, AUTHKEY_ANY, "", "is not a CURVE public key"},
    {"unknown role", K40 " admin x", -1, AUTHKEY_ANY, "", "must be node or controller"},
    {"role without name", K40 " node", -1, AUTHKEY_ANY, "", "one name"},
    {"two names", K40 " node a b", -1, AUTHKEY_ANY, "", "one name"},
    {"bad name", K40 " node a/b", -1, AUTHKEY_ANY, "", "one name"},
    {"trailing comment", K40 " # mine", -1, AUTHKEY_ANY, "", "must be node or controller"},
};

static void test_authorized_keys_lines(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof key_lines / sizeof key_lines[0]; i++) {
    authkey_t k;
    char err[200] = "";
    int rc = zap_parse_line(key_lines[i].line, &k, err, sizeof err);
    if (rc != key_lines[i].rc)
      fail_msg("case \"%s\": rc %d, want %d (%s)", key_lines[i].name, rc, key_lines[i].rc, err);
    if (rc == 1 && (k.role != key_lines[i].role || strcmp(k.name, key_lines[i].key_name) != 0 || strlen(k.key) != 40))
      fail_msg("case \"%s\": role %d name \"%s\"", key_lines[i].name, k.role, k.name);
    if (key_lines[i].err && !strstr(err, key_lines[i].err))
      fail_msg("case \"%s\": error \"%s\", want \"%s\"", key_lines[i].name, err, key_lines[i].err);
  }
  /* The User-Id the broker's ZAP answer gives, read back. */
  authkey_t u;
  assert_int_equal(zap_user_parse("node " K40 " gpu-1", &u), 0);
  assert_int_equal(u.role, AUTHKEY_NODE);
  assert_string_equal(u.name, "gpu-1");
  assert_int_equal(zap_user_parse("any " K40 " -", &u), 0);
  assert_int_equal(u.role, AUTHKEY_ANY);
  assert_string_equal(u.name, "");
  assert_int_equal(zap_user_parse("node short x", &u), -1);
  assert_int_equal(zap_user_parse(NULL, &u), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frames_reach_their_handler_or_are_refused),
      cmocka_unit_test(test_authorized_keys_lines),
      cmocka_unit_test(test_peer_table),
      cmocka_unit_test(test_peer_table_at_scale),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
