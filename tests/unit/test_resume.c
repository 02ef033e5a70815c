/* resume (ctl/resume.c): duplicates of replayed events dropped, gaps in a
 * turn's deltas told: at a jump in their seqs, or at turn_done when the
 * broker forwarded more than arrived. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"
#include "resume.h"

/* A script of arrivals, space-separated:
 *   eN       event seq N (turn_started of turn 1)
 *   dT.A.S   delta of turn T, attempt A, seq S
 *   xT.A.S   the same delta, dropped by the client (queue full): not seen
 *   gT       a gap event from the broker naming turn T
 *   [ ]      a subscribe with since sent; its reply came (resume_replaying)
 *   fT.A.D   turn_done of turn T, attempt A, the broker forwarded D deltas
 *            (fT.A: no count, as from an older broker); its seq: the next
 *            after the largest seen
 * and what came out: the kept ones as written, "-" for a dropped duplicate,
 * "g(T,N)" for a gap of N deltas of turn T before it. */
typedef struct {
  const char *name;
  const char *script;
  const char *want;
  int64_t seq; /* resume_seq at the end */
} resume_case_t;

static const resume_case_t cases[] = {
    {"nothing yet", "", "", 0},
    {"events in order", "e1 e2 e5", "e1 e2 e5", 5},
    {"a replayed event already seen is dropped", "e1 e2 e3 e2 e3 e4", "e1 e2 e3 - - e4", 4},
    {"deltas in order", "d1.1.1 d1.1.2 d1.1.3", "d1.1.1 d1.1.2 d1.1.3", 0},
    {"a jump in a turn's deltas is a gap", "d1.1.1 d1.1.4", "d1.1.1 g(1,2) d1.1.4", 0},
    {"joining mid-turn: the first pieces were missed", "d3.1.5", "g(3,4) d3.1.5", 0},
    {"a new attempt starts again at 1", "d1.1.1 d1.1.2 d1.2.1 d1.2.2", "d1.1.1 d1.1.2 d1.2.1 d1.2.2", 0},
    {"turns are followed apart", "d1.1.1 d2.1.1 d1.1.2 d2.1.2", "d1.1.1 d2.1.1 d1.1.2 d2.1.2", 0},
    {"dropped here, then the next one: one gap", "d1.1.1 x1.1.2 x1.1.3 d1.1.4", "d1.1.1 - - g(1,2) d1.1.4", 0},
    {"dropped here at the end: told at turn_done", "e1 d1.1.1 x1.1.2 f1.1.2", "e1 d1.1.1 - g(1,1) f1.1.2", 2},
    {"turn_done with nothing missed: no gap", "e1 d1.1.1 d1.1.2 f1.1.2", "e1 d1.1.1 d1.1.2 f1.1.2", 2},
    {"a jump is told once, not again at turn_done", "d1.1.1 d1.1.4 f1.1.4", "d1.1.1 g(1,2) d1.1.4 f1.1.4", 1},
    {"none of a turn's deltas seen (a reconnect): told at turn_done", "e1 f2.1.5", "e1 g(2,5) f2.1.5", 2},
    {"only the last attempt's deltas count", "d1.1.1 d1.1.2 d1.2.1 f1.2.1", "d1.1.1 d1.1.2 d1.2.1 f1.2.1", 1},
    {"a turn_done without a count: nothing to compare", "d1.1.1 f1.1", "d1.1.1 f1.1", 1},
    {"a gap the broker told is not told again", "d1.1.1 g1 f1.1.9", "d1.1.1 g1 f1.1.9", 1},
    {"a broker's gap for another turn changes nothing", "d1.1.1 g2 f1.1.3", "d1.1.1 g2 g(1,2) f1.1.3", 1},
    /* [ a subscribe with since sent, ] its reply: events before the reply are replayed after it */
    {"an event before a resuming subscribe's reply is not counted", "e1 [ e9 ] e2 e3 e9 e10", "e1 - e2 e3 e9 e10", 10},
    {"deltas still pass while it waits", "[ d1.1.1 e4 ] e4", "d1.1.1 - e4", 4},
    {"a duplicate while it waits is dropped too", "e5 [ e5 ] e6", "e5 - e6", 6},
};

static proto_msg_t *make(const char *tok, int64_t *last) {
  long long t = 0, a = 0, s = 0;
  proto_msg_t *m = NULL;
  if (tok[0] == 'g') {
    m = proto_msg_new(PROTO_EVENT);
    proto_set_str(m, PROTO_F_kind, "gap");
    sscanf(tok + 1, "%lld", &t);
    proto_set_json(m, PROTO_F_payload,
                   json_pack("{s:i, s:i, s:i, s:[I]}", "from", 1, "to", 1, "count", 0, "turns", (json_int_t)t));
  } else if (tok[0] == 'e' || tok[0] == 'f') {
    m = proto_msg_new(PROTO_EVENT);
    proto_set_str(m, PROTO_F_kind, tok[0] == 'e' ? "turn_started" : "turn_done");
    long long d = -1;
    if (tok[0] == 'e')
      sscanf(tok + 1, "%lld", &s);
    else if (sscanf(tok + 1, "%lld.%lld.%lld", &t, &a, &d) >= 2)
      proto_set_json(m, PROTO_F_payload,
                     d >= 0 ? json_pack("{s:I, s:I}", "attempt", (json_int_t)a, "deltas", (json_int_t)d)
                            : json_pack("{s:I}", "attempt", (json_int_t)a));
    PROTO_SET(m, seq, tok[0] == 'e' ? s : *last + 1);
    PROTO_SET(m, turn, tok[0] == 'e' ? 1 : t);
    if (m->seq > *last)
      *last = m->seq;
  } else if (sscanf(tok + 1, "%lld.%lld.%lld", &t, &a, &s) == 3) {
    m = proto_msg_new(PROTO_DELTA);
    PROTO_SET(m, turn, t);
    PROTO_SET(m, attempt, a);
    PROTO_SET(m, seq, s);
  }
  assert_non_null(m);
  return m;
}

static void test_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const resume_case_t *c = &cases[i];
    resume_t *r = resume_new();
    char script[256], got[512] = "";
    size_t n = 0;
    int64_t last = 0;
    snprintf(script, sizeof script, "%s", c->script);
    for (char *save = NULL, *tok = strtok_r(script, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
      if (tok[0] == '[' || tok[0] == ']') {
        resume_replaying(r, tok[0] == '[');
        continue;
      }
      proto_msg_t *m = make(tok, &last), *gap = NULL;
      const char *sep = n ? " " : "";
      if (tok[0] == 'x') {
        n += (size_t)snprintf(got + n, sizeof got - n, "%s-", sep);
      } else if (!resume_accept(r, m, &gap)) {
        n += (size_t)snprintf(got + n, sizeof got - n, "%s-", sep);
      } else {
        if (gap) {
          const json_t *p = gap->payload;
          assert_string_equal(gap->kind, "gap");
          n += (size_t)snprintf(got + n, sizeof got - n, "%sg(%lld,%lld)", sep,
                                (long long)json_integer_value(json_array_get(json_object_get(p, "turns"), 0)),
                                (long long)jx_int(p, "deltas", 0));
          sep = " ";
        }
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", sep, tok);
      }
      proto_msg_destroy(&gap);
      proto_msg_destroy(&m);
    }
    if (strcmp(got, c->want) != 0)
      fail_msg("%s: got \"%s\", want \"%s\"", c->name, got, c->want);
    assert_int_equal(resume_seq(r), c->seq);
    resume_destroy(&r);
    assert_null(r);
    resume_destroy(&r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
