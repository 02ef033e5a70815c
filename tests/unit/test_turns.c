/* turns: the broker's turn table (broker/turns.c) and the scheduling built on
 * it: lookups by id and session, heads in id order, sub-agent counts, and the
 * turns looked at when no node has a free slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_fixture.h"

/* One script of adds ('+': id session [sub]) and removals ('-': id), then what must hold. */
typedef struct {
  const char *name;
  const char *ops;       /* "+3 a, +1 b, +5 a, -3" */
  const char *heads;     /* the heads' ids in order, "1 5" */
  const char *in_order;  /* every turn's id in arrival order */
  const char *session_a; /* session a's turns in order */
  int subs;              /* sub-agent sessions with turns */
} table_case_t;

static const table_case_t table_cases[] = {
    {"empty", "", "", "", "", 0},
    {"one turn is its session's head", "+1 a", "1", "1", "1", 0},
    {"a second turn of a session waits behind the first", "+1 a, +2 a", "1", "1 2", "1 2", 0},
    {"heads of several sessions in id order", "+4 b, +1 a, +9 c", "1 4 9", "4 1 9", "1", 0},
    {"removing a head makes the next turn of its session one, in id order", "+1 a, +2 b, +3 a, -1", "2 3", "2 3", "3",
     0},
    {"removing a turn behind the head keeps the head", "+1 a, +2 a, +3 a, -2", "1", "1 3", "1 3", 0},
    {"removing the last turn of a session forgets it", "+1 a, -1", "", "", "", 0},
    {"sub-agent sessions are counted once each", "+1 a s, +2 a s, +3 b s, +4 c", "1 3 4", "1 2 3 4", "1 2", 2},
    {"a sub-agent session that ends no longer counts", "+1 a s, +2 b s, -1", "2", "2", "", 1},
    {"a turn not in the table is not found", "+1 a, -7", "1", "1", "1", 0},
};

static void apply(broker_t *b, const char *ops) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", ops);
  for (char *save = NULL, *op = strtok_r(buf, ",", &save); op; op = strtok_r(NULL, ",", &save)) {
    while (*op == ' ')
      op++;
    long long id = 0;
    char session[16] = "", sub[4] = "";
    if (op[0] == '+' && sscanf(op + 1, "%lld %15s %3s", &id, session, sub) >= 2)
      assert_non_null(turns_add(b, id, session, 0, sub[0] == 's'));
    else if (op[0] == '-' && sscanf(op + 1, "%lld", &id) == 1 && turn_find(b, id))
      turns_remove(b, turn_find(b, id));
  }
}

static void ids(char *out, size_t len, const turn_t *t, int which) {
  size_t n = 0;
  out[0] = '\0';
  for (; t && n < len; t = which == 0 ? t->hnext : which == 1 ? t->next : t->snext)
    n += (size_t)snprintf(out + n, len - n, "%s%lld", n ? " " : "", (long long)t->id);
}

static void test_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof table_cases / sizeof table_cases[0]; i++) {
    const table_case_t *c = &table_cases[i];
    fx_t *fx = fx_new(NULL);
    broker_t *b = fx->b;
    apply(b, c->ops);
    char got[128];
    ids(got, sizeof got, b->heads, 0);
    if (strcmp(got, c->heads) != 0)
      fail_msg("%s: heads \"%s\", want \"%s\"", c->name, got, c->heads);
    ids(got, sizeof got, b->turns, 1);
    if (strcmp(got, c->in_order) != 0)
      fail_msg("%s: turns \"%s\", want \"%s\"", c->name, got, c->in_order);
    ids(got, sizeof got, turns_session_first(b, "a"), 2);
    if (strcmp(got, c->session_a) != 0)
      fail_msg("%s: session a \"%s\", want \"%s\"", c->name, got, c->session_a);
    if (turns_sub_sessions(b) != c->subs)
      fail_msg("%s: %d sub-agent sessions, want %d", c->name, turns_sub_sessions(b), c->subs);
    for (const turn_t *t = b->turns; t; t = t->next)
      assert_ptr_equal(turn_find(b, t->id), t);
    assert_null(turn_find(b, 12345));
    fx_destroy(&fx);
  }
}

static void test_many_turns_found(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  char session[32];
  for (int i = 1; i <= 5000; i++) {
    snprintf(session, sizeof session, "s%d", i % 97);
    assert_non_null(turns_add(fx->b, i, session, 0, false));
  }
  for (int i = 1; i <= 5000; i += 2)
    turns_remove(fx->b, turn_find(fx->b, i));
  for (int i = 1; i <= 5000; i++)
    assert_true((turn_find(fx->b, i) != NULL) == (i % 2 == 0));
  int heads = 0;
  for (turn_t *t = fx->b->heads; t; t = t->hnext, heads++)
    assert_true(!t->hnext || t->id < t->hnext->id);
  assert_int_equal(heads, 97);
  fx_destroy(&fx);
}

/* A node of one slot serving main's model, a controller, and main's turn on the node. */
static peer_t *one_turn_running(fx_t *fx) {
  peer_t *n = fx_node(fx, "n1", 1);
  json_decref(n->models);
  n->models = json_pack("[s]", "big");
  fx_controller(fx, "c1");
  char err[256];
  assert_true(sessions_ask(fx->b, "main", "one", err, sizeof err) > 0);
  return n;
}

/* With every slot taken, a new turn whose model no node serves is still
 * looked at (it is told it waits), and one behind it is not dispatched. */
static void test_full_nodes_still_warn(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *n = one_turn_running(fx);
  char err[256];
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), 1);
  char id[64];
  assert_int_equal(agents_spawn(fx->b, "reviewer", false, "look", "main", NULL, id, sizeof id, err, sizeof err), 0);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_waiting"), 1);
  assert_true(sessions_ask(fx->b, "other", "two", err, sizeof err) > 0);
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), 1);
  assert_int_equal(sessions_count_turns(fx->b, false), 2);
  /* The slot frees: the oldest waiting turn that the node serves goes. */
  fx_turn_done(fx, n, "ok");
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), 2);
  assert_string_equal(fx_last(fx, PROTO_TURN, NULL)->msg->session, "other");
  fx_destroy(&fx);
}

/* A turn back in the queue after its node left is looked at again, even
 * with no free slot: with no node left for its model it is told so. */
static void test_requeued_turn_warned(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *n = one_turn_running(fx);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_waiting"), 0);
  peer_remove(fx->b, n, "test");
  sessions_schedule(fx->b);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_requeued"), 1);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_waiting"), 1);
  fx_destroy(&fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_many_turns_found),
      cmocka_unit_test(test_full_nodes_still_warn),
      cmocka_unit_test(test_requeued_turn_warned),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
