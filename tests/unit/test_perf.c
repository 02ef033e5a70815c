/* perf and store_perf: the agents' performance figures from the store's
 * per-turn records (quantiles, rates, per role and per model, the window,
 * summaries by status, and that they survive reopening the store). */
#include <math.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "jx.h"
#include "perf.h"
#include "store.h"
#include "util.h"

/* ---- quantiles: nearest rank ---- */

static const struct {
  const char *name;
  double v[8];
  size_t n;
  double p, want;
} quantile_cases[] = {
    {"none", {0}, 0, 0.5, 0},
    {"one value is every quantile", {7}, 1, 0.95, 7},
    {"median of an odd count", {3, 1, 2}, 3, 0.5, 2},
    {"median of an even count is the lower middle", {4, 1, 3, 2}, 4, 0.5, 2},
    {"p95 of 4 is the largest", {10, 40, 20, 30}, 4, 0.95, 40},
    {"p95 of 8 is the largest", {1, 2, 3, 4, 5, 6, 7, 8}, 8, 0.95, 8},
    {"p0 is the smallest", {5, 4, 9}, 3, 0, 4},
};

static void test_quantiles(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof quantile_cases / sizeof quantile_cases[0]; i++) {
    double v[8];
    memcpy(v, quantile_cases[i].v, sizeof v);
    double got = perf_quantile(v, quantile_cases[i].n, quantile_cases[i].p);
    if (fabs(got - quantile_cases[i].want) > 1e-9)
      fail_msg("%s: got %g, want %g", quantile_cases[i].name, got, quantile_cases[i].want);
  }
}

/* ---- figures from records ---- */

typedef struct {
  const char *name;
  store_perf_t turns[4];
  size_t n;
  const char *role; /* the group checked */
  long long turns_want, retries_want, calls_want, errors_want;
  double success_want, p50_want, p95_want, ttft_p50_want, tps_want, cost_want;
} figures_case_t;

static const figures_case_t figure_cases[] = {
    {"one good turn",
     {{"m", "reviewer", true, 0, 2000, 100, 50, 0, 0.02, 3, 1}},
     1,
     "reviewer",
     1,
     0,
     3,
     1,
     1.0,
     2000,
     2000,
     100,
     25.0,
     0.02},
    {"a failure and a retry halve the success rate",
     {{"m", "tester", true, 1, 1000, 50, 10, 0, 0.01, 0, 0}, {"m", "tester", false, 0, 3000, -1, 0, 0, 0, 0, 0}},
     2,
     "tester",
     2,
     1,
     0,
     0,
     0.5,
     1000,
     3000,
     50,
     10 / 4.0,
     0.005},
    {"no first token: no TTFT",
     {{"m", "main", true, 0, 500, -1, 5, 0, 0.001, 0, 0}},
     1,
     "main",
     1,
     0,
     0,
     0,
     1.0,
     500,
     500,
     0,
     10.0,
     0.001},
};

static void check_figures(const figures_case_t *c, const json_t *f) {
  if (!f)
    fail_msg("%s: no figures for %s", c->name, c->role);
  const struct {
    const char *what;
    double got, want;
  } checks[] = {
      {"turns", (double)jx_int(f, "turns", -1), (double)c->turns_want},
      {"retries", (double)jx_int(f, "retries", -1), (double)c->retries_want},
      {"tool_calls", (double)jx_int(f, "tool_calls", -1), (double)c->calls_want},
      {"tool_errors", (double)jx_int(f, "tool_errors", -1), (double)c->errors_want},
      {"success_rate", jx_num(f, "success_rate", -1), c->success_want},
      {"latency p50", jx_num(jx_obj(f, "latency_ms"), "p50", -1), c->p50_want},
      {"latency p95", jx_num(jx_obj(f, "latency_ms"), "p95", -1), c->p95_want},
      {"ttft p50", jx_num(jx_obj(f, "ttft_ms"), "p50", -1), c->ttft_p50_want},
      {"tokens_per_s", jx_num(f, "tokens_per_s", -1), c->tps_want},
      {"cost_per_turn", jx_num(f, "cost_per_turn", -1), c->cost_want},
  };
  for (size_t k = 0; k < sizeof checks / sizeof checks[0]; k++)
    if (fabs(checks[k].got - checks[k].want) > 1e-6)
      fail_msg("%s: %s is %g, want %g", c->name, checks[k].what, checks[k].got, checks[k].want);
}

static void test_figures(void **state) {
  (void)state;
  char err[256];
  for (size_t i = 0; i < sizeof figure_cases / sizeof figure_cases[0]; i++) {
    const figures_case_t *c = &figure_cases[i];
    store_t *s = store_open(STORE_MEMORY, err, sizeof err);
    assert_non_null(s);
    for (size_t k = 0; k < c->n; k++)
      assert_int_equal(store_perf_turn(s, &c->turns[k]), 0);
    json_t *p = perf_stats(s, NULL, 0);
    check_figures(c, jx_obj(jx_obj(p, "by_role"), c->role));
    check_figures(c, jx_obj(jx_obj(p, "by_model"), "m")); /* one model: the same figures */
    json_decref(p);
    store_close(&s);
  }
}

/* Roles and models are grouped apart; a record out of the window is left out. */
static void test_groups_and_window(void **state) {
  (void)state;
  char err[256];
  store_t *s = store_open(STORE_MEMORY, err, sizeof err);
  assert_non_null(s);
  store_perf_t a = {"small", "reviewer", true, 0, 1000, 10, 10, 0, 0.01, 0, 0};
  store_perf_t b = {"big", "reviewer", true, 0, 1000, 10, 10, 0, 0.01, 0, 0};
  store_perf_turn(s, &a);
  store_perf_turn(s, &a);
  store_perf_turn(s, &b);
  /* A day old. */
  assert_int_equal(sqlite3_exec(store_sqlite(s),
                                "INSERT INTO perf(ts, kind, model, role, ok, retries, latency_ms, tokens, cost) "
                                "VALUES(1000, 'turn', 'small', 'tester', 1, 0, 10, 1, 0)",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  json_t *all = perf_stats(s, NULL, 0), *hour = perf_stats(s, NULL, 3600);
  assert_int_equal(jx_int(jx_obj(jx_obj(all, "by_role"), "reviewer"), "turns", 0), 3);
  assert_int_equal(jx_int(jx_obj(jx_obj(all, "by_model"), "small"), "turns", 0), 3);
  assert_int_equal(jx_int(jx_obj(jx_obj(all, "by_model"), "big"), "turns", 0), 1);
  assert_non_null(jx_obj(jx_obj(all, "by_role"), "tester"));
  assert_null(jx_obj(jx_obj(hour, "by_role"), "tester"));
  assert_int_equal(jx_int(jx_obj(jx_obj(hour, "by_model"), "small"), "turns", 0), 2);
  assert_int_equal(jx_int(hour, "window_s", 0), 3600);
  json_decref(all);
  json_decref(hour);
  store_close(&s);
}

/* A delivered summary counts under its role, by status; records outlive the store's process. */
static void test_summaries_survive_reopening(void **state) {
  (void)state;
  char dir[] = "/tmp/cadre-perf-XXXXXX", err[256];
  assert_non_null(mkdtemp(dir));
  store_t *s = store_open(dir, err, sizeof err);
  assert_non_null(s);
  static const char *const verdicts[] = {"PASS", "FAIL", "PASS", "PARTIAL"};
  for (size_t i = 0; i < 4; i++) {
    char id[32];
    snprintf(id, sizeof id, "reviewer-%zu", i + 1);
    assert_int_equal(store_session_create(s, id, "reviewer", "reviewer_agent", "main", "task", 1, NULL), 0);
    json_t *sum = json_pack("{s:s}", "status", verdicts[i]);
    assert_int_equal(store_session_summary(s, id, sum), 0);
    json_decref(sum);
  }
  store_perf_t t = {"small", "reviewer", true, 0, 100, 10, 1, 0, 0, 0, 0};
  store_perf_turn(s, &t);
  store_close(&s);
  s = store_open(dir, err, sizeof err);
  assert_non_null(s);
  json_t *p = perf_stats(s, NULL, 0);
  json_t *sums = jx_obj(jx_obj(jx_obj(p, "by_role"), "reviewer"), "summaries");
  assert_int_equal(jx_int(sums, "PASS", -1), 2);
  assert_int_equal(jx_int(sums, "FAIL", -1), 1);
  assert_int_equal(jx_int(sums, "PARTIAL", -1), 1);
  assert_int_equal(jx_int(jx_obj(jx_obj(p, "by_role"), "reviewer"), "turns", -1), 1); /* summaries are no turns */
  json_decref(p);
  store_close(&s);
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* Records older than the newest STORE_PERF_MAX are deleted as new ones come (the
 * rowids are set so that the next record is a pruning one, without 200,000 inserts). */
static void test_old_records_pruned(void **state) {
  (void)state;
  char err[256], sql[256];
  store_t *s = store_open(STORE_MEMORY, err, sizeof err);
  assert_non_null(s);
  long long next = ((STORE_PERF_MAX + 10) / STORE_PERF_PRUNE_EVERY + 1) * STORE_PERF_PRUNE_EVERY;
  long long rows[] = {5, next - STORE_PERF_MAX, next - STORE_PERF_MAX + 1, next - 1};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    snprintf(sql, sizeof sql,
             "INSERT INTO perf(rowid, ts, kind, model, role, ok, retries, latency_ms, tokens, cost)"
             " VALUES(%lld, 1000, 'turn', 'small', 'tester', 1, 0, 10, 1, 0)",
             rows[i]);
    assert_int_equal(sqlite3_exec(store_sqlite(s), sql, NULL, NULL, NULL), SQLITE_OK);
  }
  store_perf_t t = {"small", "reviewer", true, 0, 100, 10, 1, 0, 0, 0, 0};
  assert_int_equal(store_perf_turn(s, &t), 0);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(store_sqlite(s), "SELECT min(rowid), count(*) FROM perf", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int64(st, 0), next - STORE_PERF_MAX + 1); /* the two oldest went */
  assert_int_equal(sqlite3_column_int64(st, 1), 3);
  sqlite3_finalize(st);
  /* Not a pruning insert: nothing goes. */
  assert_int_equal(store_perf_turn(s, &t), 0);
  json_t *r = store_perf_rows(s, 0);
  assert_int_equal(json_array_size(r), 4);
  json_decref(r);
  store_close(&s);
}

/* The dashboard's search through every conversation: case aside, newest first, capped, cleared ones left out. */
static const struct {
  const char *name, *text;
  int limit;
  size_t want;
  const char *first; /* the newest hit's session */
} search_cases[] = {
    {"a word in two sessions", "deploy", 10, 2, "b"}, {"case does not matter", "DEPLOY", 10, 2, "b"},
    {"the cap holds", "deploy", 1, 1, "b"},           {"nothing found", "kubernetes", 10, 0, NULL},
    {"empty text finds nothing", "", 10, 0, NULL},    {"a cleared conversation is not searched", "secret", 10, 0, NULL},
};

static void test_search(void **state) {
  (void)state;
  char err[256];
  store_t *s = store_open(STORE_MEMORY, err, sizeof err);
  assert_non_null(s);
  static const char *const rows[][2] = {{"a", "Please deploy the app"}, {"c", "a secret"}, {"b", "Deploy done"}};
  for (size_t i = 0; i < 3; i++) {
    store_session_ensure(s, rows[i][0], "main", "main_agent");
    json_t *m = json_pack("{s:s, s:s}", "role", "user", "content", rows[i][1]);
    assert_true(store_append(s, rows[i][0], 0, m, NULL) > 0);
    json_decref(m);
  }
  assert_true(store_clear(s, "c") >= 0);
  for (size_t i = 0; i < sizeof search_cases / sizeof search_cases[0]; i++) {
    json_t *hits = store_search(s, search_cases[i].text, search_cases[i].limit);
    if (json_array_size(hits) != search_cases[i].want)
      fail_msg("%s: %zu hits, want %zu", search_cases[i].name, json_array_size(hits), search_cases[i].want);
    if (search_cases[i].first && strcmp(jx_str(json_array_get(hits, 0), "session", ""), search_cases[i].first) != 0)
      fail_msg("%s: the first hit is not %s's", search_cases[i].name, search_cases[i].first);
    json_decref(hits);
  }
  store_close(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quantiles),
      cmocka_unit_test(test_figures),
      cmocka_unit_test(test_groups_and_window),
      cmocka_unit_test(test_summaries_survive_reopening),
      cmocka_unit_test(test_search),
      cmocka_unit_test(test_old_records_pruned),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
