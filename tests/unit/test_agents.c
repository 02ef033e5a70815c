/* agents: spawning with context by reference, summaries back to the parent,
 * admission, stop; against a broker without sockets (broker_fixture.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_fixture.h"

#define SUMMARY "Looked.\n[SUMMARY]\nStatus: DONE\nKey Points:\n- all good\nRecommendation: ship it\n[/SUMMARY]"

static void spawn(fx_t *fx, const char *task, char *id, size_t idlen) {
  char err[256];
  if (agents_spawn(fx->b, "reviewer", false, task, "main", NULL, id, idlen, err, sizeof err) < 0)
    fail_msg("spawn: %s", err);
}

static store_status_t status_of(fx_t *fx, const char *id) {
  store_session_t row;
  assert_int_equal(store_session_row(fx->b->store, id, &row), 0);
  return row.status;
}

/* The last message of main's history, or "". */
static const char *last_of_main(fx_t *fx, char *buf, size_t n) {
  json_t *h = store_history(fx->b->store, "main", false);
  const char *c = json_string_value(json_object_get(json_array_get(h, json_array_size(h) - 1), "content"));
  snprintf(buf, n, "%s", c ? c : "");
  json_decref(h);
  return buf;
}

/* A sub-agent answers (one or two turns): its status and what main receives. */
typedef struct {
  const char *name;
  const char *answers[2];
  store_status_t want_status;
  const char *want_in_main; /* text main's last message must hold */
  int want_turns;           /* turns the agent was sent */
} answer_case_t;

static const answer_case_t answer_cases[] = {
    {"a summary goes to main, labelled", {SUMMARY, NULL}, STORE_SESSION_DONE, "[SUMMARY from reviewer-1", 1},
    {"no summary: asked once, then it comes", {"Looked.", SUMMARY}, STORE_SESSION_DONE, "ship it", 2},
    {"no summary even when asked: a FAIL summary",
     {"Looked.", "Still nothing."},
     STORE_SESSION_FAILED,
     "even when asked",
     2},
};

static void test_answers_become_summaries(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof answer_cases / sizeof answer_cases[0]; i++) {
    const answer_case_t *c = &answer_cases[i];
    fx_t *fx = fx_new(NULL);
    fx_controller(fx, "ctl");
    peer_t *node = fx_node(fx, "n1", 1);
    char id[64], last[2048];
    spawn(fx, "review the parser", id, sizeof id);
    for (int k = 0; k < 2 && c->answers[k]; k++)
      fx_turn_done(fx, node, c->answers[k]);
    if (status_of(fx, id) != c->want_status)
      fail_msg("case \"%s\": status %s, want %s", c->name, store_status_name(status_of(fx, id)),
               store_status_name(c->want_status));
    if (!strstr(last_of_main(fx, last, sizeof last), c->want_in_main))
      fail_msg("case \"%s\": main's last message \"%s\" lacks \"%s\"", c->name, last, c->want_in_main);
    if (fx_count(fx, PROTO_TURN, NULL) != c->want_turns)
      fail_msg("case \"%s\": %d turns, want %d", c->name, fx_count(fx, PROTO_TURN, NULL), c->want_turns);
    assert_int_equal(fx_count(fx, PROTO_EVENT, "summary"), 1);
    assert_int_equal(node->busy, 0);
    fx_destroy(&fx);
  }
}

/* Spawned agents see main's conversation, which the state holds once. */
static void test_spawned_agents_share_mains_history(void **state) {
  (void)state;
  fx_t *fx = fx_new("\"max_concurrent_agents\": 2");
  for (int i = 0; i < 40; i++) {
    json_t *m = json_pack("{s:s, s:s}", "role", i % 2 ? "assistant" : "user", "content", "earlier talk");
    store_append(fx->b->store, "main", 0, m, NULL);
    json_decref(m);
  }
  char id[64];
  for (int i = 0; i < 25; i++)
    spawn(fx, "a task", id, sizeof id);
  /* 40 of main's, one brief per agent: no copies. */
  assert_int_equal(store_message_rows(fx->b->store), 40 + 25);
  json_t *h = store_history(fx->b->store, id, false);
  assert_int_equal(json_array_size(h), 41);
  assert_non_null(strstr(json_string_value(json_object_get(json_array_get(h, 40), "content")), "a task"));
  json_decref(h);
  fx_destroy(&fx);
}

/* The context setting decides how much of main a sub-agent gets. */
static void test_context_setting_is_respected(void **state) {
  (void)state;
  static const struct {
    const char *config;
    size_t want; /* history length of the agent: context + its brief */
  } cases[] = {
      {"\"spawning_rules\": {\"context\": \"none\"}", 1},
      {"\"spawning_rules\": {\"context\": \"last:3\"}", 4},
      {"\"spawning_rules\": {\"context\": \"full\"}", 11},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fx_t *fx = fx_new(cases[i].config);
    for (int k = 0; k < 10; k++) {
      json_t *m = json_pack("{s:s, s:s}", "role", k % 2 ? "assistant" : "user", "content", "talk");
      store_append(fx->b->store, "main", 0, m, NULL);
      json_decref(m);
    }
    char id[64];
    spawn(fx, "t", id, sizeof id);
    json_t *h = store_history(fx->b->store, id, false);
    if (json_array_size(h) != cases[i].want)
      fail_msg("%s: %zu messages, want %zu", cases[i].config, json_array_size(h), cases[i].want);
    json_decref(h);
    fx_destroy(&fx);
  }
}

/* A finished agent's slot under max_concurrent_agents goes to the next (hooks.turn_done). */
static void test_admission_follows_turn_ends(void **state) {
  (void)state;
  fx_t *fx = fx_new("\"max_concurrent_agents\": 1");
  peer_t *node = fx_node(fx, "n1", 4);
  char a[64], b[64];
  spawn(fx, "first", a, sizeof a);
  spawn(fx, "second", b, sizeof b);
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), 1);
  assert_int_equal(status_of(fx, b), STORE_SESSION_QUEUED);
  fx_turn_done(fx, node, SUMMARY);
  assert_int_equal(status_of(fx, a), STORE_SESSION_DONE);
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), 2);
  assert_int_equal(status_of(fx, b), STORE_SESSION_RUNNING);
  fx_destroy(&fx);
}

static void test_stopping_an_agent_reports_to_main(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *node = fx_node(fx, "n1", 1);
  char id[64], err[256], last[2048];
  spawn(fx, "long work", id, sizeof id);
  assert_int_equal(node->busy, 1);
  assert_int_equal(agents_stop(fx->b, id, err, sizeof err), 0);
  assert_int_equal(status_of(fx, id), STORE_SESSION_STOPPED);
  assert_int_equal(node->busy, 0);
  assert_int_equal(fx_count(fx, PROTO_CANCEL, NULL), 1);
  assert_non_null(strstr(last_of_main(fx, last, sizeof last), "stopped by the user"));
  /* main is not a sub-agent; an unknown id is an error. */
  assert_int_equal(agents_stop(fx->b, "main", err, sizeof err), -1);
  assert_int_equal(agents_stop(fx->b, "nobody-1", err, sizeof err), -1);
  assert_non_null(strstr(err, "no agent"));
  fx_destroy(&fx);
}

/* Upward notices go through hooks: main's answer reaches hooks.answer. */
static const char *answered_with;
static void record_answer(broker_t *b, const char *session, const char *content) {
  (void)b;
  (void)session;
  free((void *)answered_with);
  answered_with = strdup(content ? content : "");
}

static void test_answers_reach_the_answer_hook(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *node = fx_node(fx, "n1", 1);
  fx->b->hooks.answer = record_answer;
  char err[256];
  assert_true(sessions_ask(fx->b, "main", "plan it", err, sizeof err) > 0);
  fx_turn_done(fx, node, "[PLAN] nothing [/PLAN]");
  assert_string_equal(answered_with, "[PLAN] nothing [/PLAN]");
  free((void *)answered_with);
  answered_with = NULL;
  fx_destroy(&fx);
}

/* The agents and stats listings follow every turn (their rows are kept between requests). */
static void test_listings_follow_turns(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *node = fx_node(fx, "n1", 1);
  char id[64];
  spawn(fx, "t", id, sizeof id);
  json_t *before = agents_stats(fx->b), *list = agents_list(fx->b);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(before, "total"), "prompt_tokens")), 0);
  assert_int_equal(json_array_size(list), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "model")), "small");
  assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "status")), "running");
  json_decref(list);
  fx_turn_done(fx, node, SUMMARY);
  json_t *after = agents_stats(fx->b);
  list = agents_list(fx->b);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(after, "total"), "prompt_tokens")), 10);
  assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "status")), "done");
  json_t *row = json_array_get(json_object_get(after, "agents"), 1);
  assert_string_equal(json_string_value(json_object_get(row, "status")), "done");
  assert_int_equal(json_integer_value(json_object_get(row, "completion_tokens")), 5);
  json_decref(before);
  json_decref(after);
  json_decref(list);
  fx_destroy(&fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_answers_become_summaries),
      cmocka_unit_test(test_spawned_agents_share_mains_history),
      cmocka_unit_test(test_context_setting_is_respected),
      cmocka_unit_test(test_admission_follows_turn_ends),
      cmocka_unit_test(test_stopping_an_agent_reports_to_main),
      cmocka_unit_test(test_answers_reach_the_answer_hook),
      cmocka_unit_test(test_listings_follow_turns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
