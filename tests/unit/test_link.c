/* Tests of proto_link against a broker played by the test: a real ROUTER in
 * the same process, over tcp on 127.0.0.1 with CURVE on. The test serves the
 * link (proto_link_recv) and the ROUTER in turns from one thread. Also
 * proto_recv's framing cases and proto_frame_set_id. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "keys.h"
#include "proto.h"
#include "proto_link.h"
#include "util.h"

#define HB_MS 100 /* the heartbeat interval our broker announces */
#define BYTES(s) s, sizeof(s) - 1

typedef struct {
  void *ctx, *router;
  keys_pair_t server, client;
  char dir[64], key_file[96]; /* the client's key pair file */
  char endpoint[64];
  proto_link_t *link;
  uint8_t peer[256]; /* the link's identity at the ROUTER */
  size_t peerlen;
  int events[8];   /* notices the link returned, by kind */
  int heartbeats;  /* heartbeats the broker received */
  int64_t last_id; /* the id of the last message the broker received */
  int busy_calls;
  const char *epoch; /* the live broker heartbeats with it; NULL: silent */
  int64_t next_beat;
} fx_t;

/* ---- the broker side ---------------------------------------------------------------- */

static void *broker_socket(fx_t *fx, const char *endpoint) {
  void *r = zmq_socket(fx->ctx, ZMQ_ROUTER);
  int one = 1;
  assert_non_null(r);
  assert_int_equal(proto_socket_setup(r), 0);
  assert_int_equal(zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one), 0);
  assert_int_equal(zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, fx->server.secret_key, KEYS_Z85_LEN), 0);
  assert_int_equal(zmq_bind(r, endpoint), 0);
  return r;
}

/* Sends msg (taken) from the broker to the link. */
static void broker_send(fx_t *fx, proto_msg_t *m) {
  assert_int_equal(proto_send(fx->router, fx->peer, fx->peerlen, m, ZMQ_DONTWAIT), 0);
  proto_msg_destroy(&m);
}

static void welcome(fx_t *fx, const char *epoch, int64_t hb_ms) {
  proto_msg_t *w = proto_msg_new(PROTO_WELCOME);
  proto_set_str(w, PROTO_F_epoch, epoch);
  proto_set_str(w, PROTO_F_version, "test");
  PROTO_SET(w, heartbeat_ms, hb_ms);
  broker_send(fx, w);
}

static void heartbeat(fx_t *fx, const char *epoch) {
  proto_msg_t *h = proto_msg_new(PROTO_HEARTBEAT);
  proto_set_str(h, PROTO_F_epoch, epoch);
  broker_send(fx, h);
}

/* Serves the link for up to ms, counting its notices; returns the first
 * application message (or NULL). */
static proto_msg_t *serve_link(fx_t *fx, int ms) {
  proto_msg_t *m = NULL;
  int ev = proto_link_recv(fx->link, ms, &m);
  assert_true(ev >= 0 && ev < 8);
  fx->events[ev]++;
  return ev == PROTO_LINK_MSG ? m : NULL;
}

/* Serves the link and the broker until the broker receives a message of type
 * (heartbeats are counted on the way) or ms pass. The message, or NULL. */
static proto_msg_t *broker_expect(fx_t *fx, proto_type_t type, int ms) {
  int64_t deadline = util_now_ms() + ms;
  while (util_now_ms() < deadline) {
    proto_msg_t *app = serve_link(fx, 5), *m = NULL;
    proto_msg_destroy(&app);
    if (fx->epoch && fx->peerlen && util_now_ms() >= fx->next_beat) {
      heartbeat(fx, fx->epoch);
      fx->next_beat = util_now_ms() + HB_MS;
    }
    proto_err_t err;
    uint8_t id[sizeof fx->peer];
    size_t idlen = sizeof id;
    if (proto_recv(fx->router, id, &idlen, NULL, &m, &err, ZMQ_DONTWAIT) != 1)
      continue;
    memcpy(fx->peer, id, idlen);
    fx->peerlen = idlen;
    assert_true(m->id > fx->last_id); /* one sequence, stamped in one place */
    fx->last_id = m->id;
    fx->heartbeats += m->type == PROTO_HEARTBEAT;
    if (m->type == type)
      return m;
    proto_msg_destroy(&m);
  }
  return NULL;
}

/* Serves the link until it returns notice ev (or ms pass). */
static bool link_notice(fx_t *fx, int ev, int ms) {
  int64_t deadline = util_now_ms() + ms;
  int before = fx->events[ev];
  while (fx->events[ev] == before && util_now_ms() < deadline) {
    proto_msg_t *m = serve_link(fx, 10);
    proto_msg_destroy(&m);
  }
  return fx->events[ev] > before;
}

/* ---- the link side ------------------------------------------------------------------ */

static void count_busy(proto_msg_t *hb, void *arg) {
  fx_t *fx = arg;
  PROTO_SET(hb, busy, ++fx->busy_calls);
}

static proto_link_t *open_link(fx_t *fx, const char *broker_key) {
  proto_msg_t *hello = proto_msg_new(PROTO_HELLO);
  proto_set_str(hello, PROTO_F_role, "node");
  proto_set_str(hello, PROTO_F_name, "n1");
  proto_set_str(hello, PROTO_F_version, "test");
  proto_link_opts_t o = {.endpoint = fx->endpoint,
                         .key_file = fx->key_file,
                         .broker_key = broker_key,
                         .reconnect_ivl_ms = 20,
                         .reconnect_ivl_max_ms = 100,
                         .on_heartbeat = count_busy,
                         .arg = fx};
  char err[256];
  proto_link_t *l = proto_link_new(fx->ctx, &o, &hello, err, sizeof err);
  if (!l)
    fail_msg("%s", err);
  assert_null(hello); /* taken */
  return l;
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  size_t n;
  if (!fx || keys_generate(&fx->server) != 0 || keys_generate(&fx->client) != 0)
    return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/cadre-link-XXXXXX");
  if (!mkdtemp(fx->dir))
    return -1;
  snprintf(fx->key_file, sizeof fx->key_file, "%s/client.key", fx->dir);
  if (keys_save_pair(fx->key_file, &fx->client) != 0)
    return -1;
  fx->ctx = zmq_ctx_new();
  fx->router = broker_socket(fx, "tcp://127.0.0.1:*");
  n = sizeof fx->endpoint;
  zmq_getsockopt(fx->router, ZMQ_LAST_ENDPOINT, fx->endpoint, &n);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  proto_link_destroy(&fx->link);
  if (fx->router)
    zmq_close(fx->router);
  zmq_ctx_term(fx->ctx);
  unlink(fx->key_file);
  rmdir(fx->dir);
  free(fx);
  return 0;
}

/* The link connected and welcomed, with our heartbeat interval. */
static fx_t *welcomed(void **state) {
  fx_t *fx = *state;
  fx->link = open_link(fx, fx->server.public_key);
  proto_msg_t *h = broker_expect(fx, PROTO_HELLO, 5000);
  assert_non_null(h);
  proto_msg_destroy(&h);
  welcome(fx, "e1", HB_MS);
  assert_true(link_notice(fx, PROTO_LINK_CONNECTED, 5000));
  fx->epoch = "e1";
  return fx;
}

/* ---- cases -------------------------------------------------------------------------- */

static void test_hello_then_welcome_is_connected(void **state) {
  fx_t *fx = *state;
  fx->link = open_link(fx, fx->server.public_key);
  assert_string_equal(proto_link_epoch(fx->link), "");
  proto_msg_t *h = broker_expect(fx, PROTO_HELLO, 5000);
  assert_non_null(h);
  assert_string_equal(h->name, "n1");
  assert_true(h->id == 1);
  proto_msg_destroy(&h);
  welcome(fx, "e1", HB_MS);
  assert_true(link_notice(fx, PROTO_LINK_CONNECTED, 5000));
  assert_string_equal(proto_link_epoch(fx->link), "e1");
  assert_int_equal(proto_link_heartbeat_ms(fx->link), HB_MS);
  assert_int_equal(fx->events[PROTO_LINK_RECONNECTED], 0);
}

static void test_application_messages_pass_through(void **state) {
  fx_t *fx = welcomed(state);
  proto_msg_t *t = proto_msg_new(PROTO_CANCEL);
  PROTO_SET(t, turn, 42);
  broker_send(fx, t);
  proto_msg_t *m = NULL;
  for (int i = 0; i < 100 && !m; i++)
    m = serve_link(fx, 50);
  assert_non_null(m);
  assert_int_equal(m->type, PROTO_CANCEL);
  assert_true(m->turn == 42);
  proto_msg_destroy(&m);
  /* an error other than hello_first is the program's too */
  proto_msg_t *e = proto_msg_new(PROTO_ERROR);
  proto_set_str(e, PROTO_F_code, "bad_request");
  proto_set_str(e, PROTO_F_detail, "no");
  broker_send(fx, e);
  for (int i = 0; i < 100 && !m; i++)
    m = serve_link(fx, 50);
  assert_non_null(m);
  assert_string_equal(m->code, "bad_request");
  proto_msg_destroy(&m);
}

static void test_heartbeats_on_time(void **state) {
  fx_t *fx = welcomed(state);
  int before = fx->heartbeats;
  int64_t start = util_now_ms();
  proto_msg_t *m = broker_expect(fx, PROTO_NONE, 1000); /* counts what comes in 1 s */
  assert_null(m);
  int64_t took = util_now_ms() - start;
  int n = fx->heartbeats - before;
  /* every HB_MS: about 10 in a second, a little slack for a loaded machine */
  assert_true(n >= 7 && n <= (int)(took / HB_MS) + 2);
  assert_true(fx->busy_calls >= n);                        /* the program filled each one */
  assert_int_equal(fx->events[PROTO_LINK_RECONNECTED], 0); /* a live broker is not "gone" */
}

static void test_new_epoch_hello_again_reconnected(void **state) {
  fx_t *fx = welcomed(state);
  assert_null(broker_expect(fx, PROTO_HELLO, 6 * HB_MS)); /* same broker: nothing happens */
  fx->epoch = "e2";                                       /* the broker restarted (and its heartbeats reach us) */
  proto_msg_t *h = broker_expect(fx, PROTO_HELLO, 2000);
  assert_non_null(h);
  assert_string_equal(h->name, "n1");
  proto_msg_destroy(&h);
  assert_int_equal(fx->events[PROTO_LINK_RECONNECTED], 0); /* not before the welcome */
  welcome(fx, "e2", HB_MS);
  assert_true(link_notice(fx, PROTO_LINK_RECONNECTED, 2000));
  assert_string_equal(proto_link_epoch(fx->link), "e2");
  assert_non_null(strstr(proto_link_why(fx->link), "new epoch"));
  welcome(fx, "e2", HB_MS); /* the answer to a repeated hello: no second notice */
  assert_false(link_notice(fx, PROTO_LINK_RECONNECTED, 3 * HB_MS));
}

static void test_hello_first_hello_again(void **state) {
  fx_t *fx = welcomed(state);
  assert_null(broker_expect(fx, PROTO_HELLO, 600)); /* past the grace after our hello */
  proto_msg_t *e = proto_msg_new(PROTO_ERROR);
  proto_set_str(e, PROTO_F_code, "hello_first");
  proto_set_str(e, PROTO_F_detail, "unknown peer: send hello first");
  broker_send(fx, e);
  proto_msg_t *h = broker_expect(fx, PROTO_HELLO, 2000);
  assert_non_null(h);
  proto_msg_destroy(&h);
  welcome(fx, "e1", HB_MS);
  assert_true(link_notice(fx, PROTO_LINK_RECONNECTED, 2000));
  assert_int_equal(fx->events[PROTO_LINK_MSG], 0); /* the error never reached the program */
}

static void test_broker_gone_hello_to_the_next(void **state) {
  fx_t *fx = welcomed(state);
  zmq_close(fx->router); /* the broker dies */
  fx->router = NULL;
  fx->epoch = NULL;
  int64_t gone = util_now_ms();
  while (util_now_ms() - gone < 5 * HB_MS) {
    proto_msg_t *m = serve_link(fx, 20);
    proto_msg_destroy(&m);
  }
  assert_non_null(strstr(proto_link_why(fx->link), "no word from the broker"));
  fx->router = broker_socket(fx, fx->endpoint); /* a new one, same address */
  proto_msg_t *h = broker_expect(fx, PROTO_HELLO, 5000);
  assert_non_null(h);
  proto_msg_destroy(&h);
  welcome(fx, "e9", HB_MS);
  assert_true(link_notice(fx, PROTO_LINK_RECONNECTED, 5000));
  assert_string_equal(proto_link_epoch(fx->link), "e9");
}

/* What the link refuses to start with, and the error it says. */
static void test_new_refusals(void **state) {
  fx_t *fx = *state;
  static const struct {
    const char *name, *key_file, *broker_key, *mention; /* NULL key_file, broker_key: the good ones */
    bool no_broker_key;
  } cases[] = {
      {"no key file", "/nonexistent/client.key", NULL, "/nonexistent/client.key", false},
      {"broker key neither Z85 nor a file", NULL, "not-a-key", "not-a-key", false},
      {"no broker key", NULL, NULL, "missing", true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    proto_msg_t *hello = proto_msg_new(PROTO_HELLO);
    proto_link_opts_t o = {.endpoint = fx->endpoint,
                           .key_file = cases[i].key_file ? cases[i].key_file : fx->key_file,
                           .broker_key = cases[i].broker_key ? cases[i].broker_key : fx->server.public_key};
    if (cases[i].no_broker_key)
      o.broker_key = NULL;
    char err[256] = "";
    if (proto_link_new(fx->ctx, &o, &hello, err, sizeof err) != NULL)
      fail_msg("%s: accepted", cases[i].name);
    assert_non_null(hello); /* still the caller's */
    if (!strstr(err, cases[i].mention))
      fail_msg("%s: error \"%s\" does not mention %s", cases[i].name, err, cases[i].mention);
    proto_msg_destroy(&hello);
  }
}

static void test_wrong_broker_key_never_connects(void **state) {
  fx_t *fx = *state;
  keys_pair_t other;
  assert_int_equal(keys_generate(&other), 0);
  fx->link = open_link(fx, other.public_key);
  assert_null(broker_expect(fx, PROTO_HELLO, 500));
  assert_int_equal(fx->events[PROTO_LINK_CONNECTED], 0);
}

static void test_send_frame_stamps_the_next_id(void **state) {
  fx_t *fx = welcomed(state);
  proto_msg_t *d = proto_msg_new(PROTO_DELTA);
  proto_set_str(d, PROTO_F_session, "main");
  PROTO_SET(d, turn, 1);
  PROTO_SET(d, attempt, 1);
  PROTO_SET(d, seq, 1);
  proto_set_str(d, PROTO_F_kind, "text");
  proto_set_str(d, PROTO_F_text, "hi");
  d->id = PROTO_ID_UNSTAMPED; /* as a worker thread leaves it */
  char *buf;
  size_t len;
  assert_int_equal(proto_encode(d, &buf, &len, NULL), 0);
  assert_int_equal(proto_link_send_frame(fx->link, buf, len), 0);
  free(buf);
  assert_int_equal(proto_link_send(fx->link, d), 0); /* and the next message goes on counting */
  int64_t first = d->id;
  proto_msg_destroy(&d);
  proto_msg_t *m = broker_expect(fx, PROTO_DELTA, 2000);
  assert_non_null(m);
  assert_true(m->id > 0 && m->id == first - 1);
  assert_string_equal(m->text, "hi");
  proto_msg_destroy(&m);
  m = broker_expect(fx, PROTO_DELTA, 2000);
  assert_non_null(m);
  assert_true(m->id == first);
  proto_msg_destroy(&m);
  assert_int_equal(proto_link_send_frame(fx->link, "\x80", 1), -EINVAL); /* not ours: nothing sent */
  d = proto_msg_new(PROTO_HEARTBEAT);
  d->id = 3; /* an id without room to stamp */
  assert_int_equal(proto_encode(d, &buf, &len, NULL), 0);
  assert_int_equal(proto_link_send_frame(fx->link, buf, len), -EINVAL);
  free(buf);
  proto_msg_destroy(&d);
}

/* ---- proto_frame_set_id, a table -------------------------------------------------------------- */

static void test_frame_set_id_cases(void **state) {
  (void)state;
  static const int64_t ids[] = {0, 1, 127, 128, 65536, INT64_MAX, -1, INT64_MIN};
  proto_msg_t *m = proto_msg_new(PROTO_HEARTBEAT);
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    char *buf;
    size_t len;
    m->id = PROTO_ID_UNSTAMPED;
    assert_int_equal(proto_encode(m, &buf, &len, NULL), 0);
    assert_int_equal(proto_frame_set_id(buf, len, ids[i]), 0);
    proto_msg_t *back = NULL;
    assert_int_equal(proto_decode(buf, len, &back, NULL), PROTO_OK);
    assert_true(back->id == ids[i]);
    proto_msg_destroy(&back);
    free(buf);
  }
  proto_msg_destroy(&m);
  static const struct {
    const char *name, *bytes;
    size_t len;
  } bad[] = {
      {"empty", "", 0},
      {"not a map", "\x91\x01", 2},
      {"id packed small", BYTES("\x83\xa1v\x01\xa4type\xa9heartbeat\xa2id\x05")},
      {"id first", BYTES("\x83\xa2id\xd3\0\0\0\0\0\0\0\x01\xa1v\x01\xa4type\xa9heartbeat")},
      {"cut short", BYTES("\x83\xa1v\x01\xa4type\xa9heartbeat\xa2id\xd3\0\0")},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char copy[64];
    memcpy(copy, bad[i].bytes, bad[i].len);
    if (proto_frame_set_id(copy, bad[i].len, 7) != -EINVAL)
      fail_msg("%s: accepted", bad[i].name);
    assert_memory_equal(copy, bad[i].bytes, bad[i].len); /* untouched */
  }
}

/* ---- proto_recv framing, a table ---------------------------------------------------------------- */

static void test_recv_framing_cases(void **state) {
  fx_t *fx = *state;
  void *dealer = zmq_socket(fx->ctx, ZMQ_DEALER), *router = zmq_socket(fx->ctx, ZMQ_ROUTER);
  assert_int_equal(zmq_bind(router, "inproc://test-link-recv"), 0);
  assert_int_equal(zmq_setsockopt(dealer, ZMQ_ROUTING_ID, "d1", 2), 0);
  assert_int_equal(zmq_connect(dealer, "inproc://test-link-recv"), 0);
  proto_msg_t *hb = proto_msg_new(PROTO_HEARTBEAT);
  char *good;
  size_t goodlen;
  assert_int_equal(proto_encode(hb, &good, &goodlen, NULL), 0);
  proto_msg_destroy(&hb);
  static const struct {
    const char *name;
    int frames;   /* how many times the good frame is sent (multi-part) */
    bool garbage; /* send "\xc1" instead */
    int want;
    proto_errcode_t code;
  } cases[] = {
      {"one frame", 1, false, 1, PROTO_OK},
      {"two frames", 2, false, -EPROTO, PROTO_E_MALFORMED},
      {"three frames", 3, false, -EPROTO, PROTO_E_MALFORMED},
      {"not msgpack", 1, true, -EPROTO, PROTO_E_MALFORMED},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int f = 0; f < cases[i].frames; f++) {
      int more = f + 1 < cases[i].frames ? ZMQ_SNDMORE : 0;
      if (cases[i].garbage)
        zmq_send(dealer, "\xc1", 1, more);
      else
        zmq_send(dealer, good, goodlen, more);
    }
    zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    uint8_t id[16];
    size_t idlen = sizeof id;
    zmq_msg_t raw;
    zmq_msg_init(&raw);
    proto_msg_t *m = NULL;
    proto_err_t err = {0};
    int rc = proto_recv(router, id, &idlen, &raw, &m, &err, ZMQ_DONTWAIT);
    if (rc != cases[i].want)
      fail_msg("%s: returned %d", cases[i].name, rc);
    assert_int_equal(idlen, 2);
    assert_memory_equal(id, "d1", 2);
    if (rc == 1) {
      assert_int_equal(zmq_msg_size(&raw), goodlen); /* the frame as it came, for forwarding */
      assert_int_equal(m->type, PROTO_HEARTBEAT);
    } else {
      assert_null(m);
      assert_int_equal(err.code, cases[i].code);
    }
    proto_msg_destroy(&m);
    zmq_msg_close(&raw);
    /* nothing is left behind: the next read finds nothing */
    idlen = sizeof id;
    assert_int_equal(proto_recv(router, id, &idlen, NULL, &m, &err, ZMQ_DONTWAIT), 0);
  }
  free(good);
  zmq_close(dealer);
  zmq_close(router);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_hello_then_welcome_is_connected, setup, teardown),
      cmocka_unit_test_setup_teardown(test_application_messages_pass_through, setup, teardown),
      cmocka_unit_test_setup_teardown(test_heartbeats_on_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_new_epoch_hello_again_reconnected, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hello_first_hello_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broker_gone_hello_to_the_next, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wrong_broker_key_never_connects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_new_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_send_frame_stamps_the_next_id, setup, teardown),
      cmocka_unit_test(test_frame_set_id_cases),
      cmocka_unit_test_setup_teardown(test_recv_framing_cases, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
