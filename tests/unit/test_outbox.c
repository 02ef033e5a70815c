/* outbox: no event lost. A controller whose queue is full falls behind and
 * catches up from the event log; resuming by seq replays; what cannot be
 * replayed is told in a gap event. Against a broker without sockets
 * (tests/unit/broker_fixture.c), whose writer refuses frames on demand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_fixture.h"
#include "jx.h"

/* A script, one letter a step:
 *   e  an event (turn_waiting on session main)
 *   d  a delta of turn 7 on main
 *   F  the writer refuses (EAGAIN) the next frame
 *   B  the writer refuses the next two frames
 *   c  a catch-up try (clock far ahead)
 *   r  resume: subscribe since the seq given in the case
 *   p  the log forgets events up to 2 (as retention would)
 *   h  events held (a workflow batch opens); l  released (it was committed)
 * then what the controller got: "e1 e2 d g(from,to,count,deltas)" in order. */
typedef struct {
  const char *name;
  const char *script;
  int64_t since;
  const char *want;
} outbox_case_t;

static const outbox_case_t cases[] = {
    {"live: every event and delta as it comes", "ede", 0, "e1 d e2"},
    {"a full queue: the event comes again from the log, in order", "eFeec", 0, "e1 e2 e3"},
    {"behind: nothing live until caught up", "eFeedc", 0, "e1 e2 e3 g(2,3,0,1)"},
    {"a delta refused: it falls behind, and the gap says so", "eFdec", 0, "e1 e2 g(2,2,0,1)"},
    {"deltas missed while behind: counted, with their turn", "eFeddddc", 0, "e1 e2 g(2,2,0,4)"},
    {"caught up: live again", "eFecee", 0, "e1 e2 e3 e4"},
    {"still full at the first try: tried again, nothing lost", "eBeecc", 0, "e1 e2 e3"},
    {"resume since 1 replays 2 and 3", "eeercc", 1, "e1 e2 e3 e2 e3"},
    {"resume since the last: nothing to replay", "eerc", 2, "e1 e2"},
    {"resume since 0 with the oldest events gone: a gap with their count", "eeeeprc", 0,
     "e1 e2 e3 e4 g(1,2,2,0) e3 e4"},
    {"resume while behind: from the older seq", "eFeerc", 0, "e1 e1 e2 e3"},
    {"held: logged, sent at the release, in order", "ehedel", 0, "e1 d e2 e3"},
    {"holds nest: sent at the last release", "heheldl", 0, "d e1 e2"},
    {"held, then a full queue: caught up from the log", "heeFlc", 0, "e1 e2"},
    {"held and never released: nothing sent, all logged", "heerc", 0, "e1 e2"},
};

/* What the controller got, as the case's want string. */
static void got_text(const fx_t *fx, const peer_t *c, char *out, size_t len) {
  size_t n = 0;
  out[0] = '\0';
  for (int i = 0; i < fx->n_sent && n < len; i++) {
    const fx_sent_t *s = &fx->sent[i];
    const proto_msg_t *m = s->msg;
    if (s->idlen != c->idlen || memcmp(s->id, c->id, c->idlen) != 0)
      continue;
    const char *sep = n ? " " : "";
    if (m->type == PROTO_DELTA)
      n += (size_t)snprintf(out + n, len - n, "%sd", sep);
    else if (m->type == PROTO_EVENT && strcmp(m->kind, "gap") == 0)
      n += (size_t)snprintf(out + n, len - n, "%sg(%lld,%lld,%lld,%lld)", sep,
                            (long long)jx_int(m->payload, "from", -1), (long long)jx_int(m->payload, "to", -1),
                            (long long)jx_int(m->payload, "count", -1), (long long)jx_int(m->payload, "deltas", 0));
    else if (m->type == PROTO_EVENT)
      n += (size_t)snprintf(out + n, len - n, "%se%lld", sep, (long long)m->seq);
  }
}

static void send_delta(fx_t *fx) {
  proto_msg_t *m = proto_msg_new(PROTO_DELTA);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, 7);
  PROTO_SET(m, attempt, 1);
  PROTO_SET(m, seq, 1);
  proto_set_str(m, PROTO_F_kind, "text");
  proto_set_str(m, PROTO_F_text, "x");
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(proto_encode(m, &buf, &len, NULL), 0);
  broker_forward(fx->b, "main", 4, 7, buf, len);
  free(buf);
  proto_msg_destroy(&m);
}

static void step(fx_t *fx, peer_t *c, char op, int64_t since, int64_t *clock) {
  switch (op) {
  case 'e': broker_event(fx->b, "turn_waiting", "main", 0, json_pack("{s:s}", "detail", "x")); break;
  case 'd': send_delta(fx); break;
  case 'F':
  case 'B':
    fx->fail_rc = -EAGAIN;
    fx->fail_count = op == 'F' ? 1 : 2;
    fx->fail_type = PROTO_NONE;
    break;
  case 'c': outbox_catch_up(fx->b, *clock += 1000); break;
  case 'r': outbox_resume(fx->b, c, since); break;
  case 'h': broker_events_hold(fx->b); break;
  case 'l': broker_events_release(fx->b); break;
  case 'p':
    assert_int_equal(sqlite3_exec(store_sqlite(fx->b->store), "DELETE FROM events WHERE seq <= 2", NULL, NULL, NULL),
                     SQLITE_OK);
    break;
  default: fail_msg("bad op %c", op);
  }
}

static void test_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const outbox_case_t *k = &cases[i];
    fx_t *fx = fx_new(NULL);
    peer_t *c = fx_controller(fx, "c1");
    int64_t clock = 1000000000;
    for (const char *op = k->script; *op; op++)
      step(fx, c, *op, k->since, &clock);
    char got[512];
    got_text(fx, c, got, sizeof got);
    if (strcmp(got, k->want) != 0)
      fail_msg("%s: got \"%s\", want \"%s\"", k->name, got, k->want);
    fx_destroy(&fx);
  }
}

/* The catch-up says when it wants to run again: at once while it has more
 * to send, after OUTBOX_RETRY_MS while the queue is full, never when no one
 * is behind. */
static void test_catch_up_timing(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "c1");
  assert_int_equal(outbox_catch_up(fx->b, 0), -1);
  fx->fail_rc = -EAGAIN, fx->fail_count = 2, fx->fail_type = PROTO_NONE;
  for (int i = 0; i < OUTBOX_REPLAY_BATCH + 10; i++)
    broker_event(fx->b, "turn_waiting", "main", 0, json_pack("{s:s}", "detail", "x"));
  int64_t now = 1000000000;
  assert_int_equal(outbox_catch_up(fx->b, now), OUTBOX_RETRY_MS); /* the second refusal */
  assert_int_equal(outbox_catch_up(fx->b, now + 1), OUTBOX_RETRY_MS - 1);
  assert_int_equal(outbox_catch_up(fx->b, now + OUTBOX_RETRY_MS), 0); /* one batch sent, more to come */
  assert_int_equal(outbox_catch_up(fx->b, now + OUTBOX_RETRY_MS), -1);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_waiting"), OUTBOX_REPLAY_BATCH + 10);
  fx_destroy(&fx);
}

/* A held event is in the log at once (a transaction around it commits it with
 * the change it tells of), and out only at the release. */
static void test_held_event_is_logged_first(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *c = fx_controller(fx, "c1");
  broker_events_hold(fx->b);
  broker_event(fx->b, "turn_waiting", "main", 0, json_pack("{s:s}", "detail", "x"));
  assert_int_equal(store_event_last(fx->b->store), 1);
  char got[64];
  got_text(fx, c, got, sizeof got);
  assert_string_equal(got, "");
  broker_events_release(fx->b);
  broker_events_release(fx->b); /* one release too many: nothing */
  got_text(fx, c, got, sizeof got);
  assert_string_equal(got, "e1");
  fx_destroy(&fx);
}

/* The log keeps each event's frame under its seq; seqs go on from the largest kept. */
static void test_log_seq(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  assert_int_equal(store_event_last(fx->b->store), 0);
  broker_event(fx->b, "turn_waiting", "main", 0, json_pack("{s:s}", "detail", "x"));
  broker_event(fx->b, "node_left", NULL, 0, json_pack("{s:s, s:s}", "name", "n", "reason", "x"));
  assert_int_equal(store_event_last(fx->b->store), 2);
  assert_int_equal(store_event_first(fx->b->store), 1);
  fx->b->event_seq = 0;
  assert_int_equal(broker_core_start(fx->b), 0); /* as after a restart */
  assert_int_equal(fx->b->event_seq, 2);
  fx_destroy(&fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_catch_up_timing),
      cmocka_unit_test(test_log_seq),
      cmocka_unit_test(test_held_event_is_logged_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
