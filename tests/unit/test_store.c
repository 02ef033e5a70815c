/* store: sessions, histories and sub-agent context by reference, on an in-memory SQLite. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "memory.h"
#include "store.h"
#include "store_stmt.h"

static store_t *open_mem(void) {
  char err[256];
  store_t *s = store_open(STORE_MEMORY, err, sizeof err);
  assert_non_null(s);
  return s;
}

static void say(store_t *s, const char *session, const char *role, const char *content) {
  json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
  assert_true(store_append(s, session, 0, m, NULL) > 0);
  json_decref(m);
}

static void tool_traffic(store_t *s, const char *session) {
  json_t *call = json_pack("{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}]}", "role", "assistant", "content", "tool_calls",
                           "id", "c1", "type", "function", "function", "name", "read_file", "arguments", "{}");
  json_t *result = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", "c1", "content", "file text");
  assert_true(store_append(s, session, 0, call, NULL) > 0);
  assert_true(store_append(s, session, 0, result, NULL) > 0);
  json_decref(call);
  json_decref(result);
}

/* "role:content|role:content" of a history, for comparing with a case. */
static void render(const json_t *hist, char *out, size_t n) {
  size_t i, used = 0;
  json_t *m;
  out[0] = '\0';
  json_array_foreach(hist, i, m) used +=
      (size_t)snprintf(out + used, n - used, "%s%s:%s", i ? "|" : "", json_string_value(json_object_get(m, "role")),
                       json_string_value(json_object_get(m, "content")) ?: "-");
}

/* Each case builds main's history with steps, links child "c" with keep, and
 * checks c's history. Steps: "u:x" user text, "a:x" assistant text, "t" tool
 * traffic, "clear" a reset of main, "link" (link c now), "after:x" a user
 * message to main after the link, "own:x" a message of c itself. */
typedef struct {
  const char *name;
  int keep;
  const char *steps[8];
  const char *want;
  int64_t want_count; /* messages the listing shows for c */
} context_case_t;

static const context_case_t context_cases[] = {
    {"full context keeps plain text only", -1, {"u:hi", "t", "a:done", "link"}, "user:hi|assistant:done", 2},
    {"none gives an empty history", 0, {"u:hi", "a:done", "link"}, "", 0},
    {"last:1 keeps only the last message", 1, {"u:one", "a:two", "u:three", "link"}, "user:three", 1},
    {"last:2 across tool traffic", 2, {"u:one", "a:two", "t", "u:three", "link"}, "assistant:two|user:three", 2},
    {"keep larger than the history keeps all", 50, {"u:one", "a:two", "link"}, "user:one|assistant:two", 2},
    {"a reset parent passes only what followed", -1, {"u:old", "clear", "u:new", "link"}, "user:new", 1},
    {"later parent messages stay out", -1, {"u:before", "link", "after:later"}, "user:before", 1},
    {"the child's own messages follow the context", -1, {"u:ctx", "link", "own:task"}, "user:ctx|user:task", 2},
    {"a reset of the parent after the link changes nothing", -1, {"u:kept", "link", "clear"}, "user:kept", 1},
};

static void run_context_case(const context_case_t *c) {
  store_t *s = open_mem();
  assert_int_equal(store_session_ensure(s, "main", "main", "main_agent"), 0);
  assert_int_equal(store_session_create(s, "c", "reviewer", "reviewer_agent", "main", "task", 1, NULL), 0);
  for (int i = 0; i < 8 && c->steps[i]; i++) {
    const char *st = c->steps[i];
    if (strncmp(st, "u:", 2) == 0 || strncmp(st, "after:", 6) == 0)
      say(s, "main", "user", strchr(st, ':') + 1);
    else if (strncmp(st, "a:", 2) == 0)
      say(s, "main", "assistant", st + 2);
    else if (strcmp(st, "t") == 0)
      tool_traffic(s, "main");
    else if (strcmp(st, "clear") == 0)
      assert_true(store_clear(s, "main") >= 0);
    else if (strcmp(st, "link") == 0)
      assert_true(store_context_link(s, "c", "main", c->keep) >= 0);
    else if (strncmp(st, "own:", 4) == 0)
      say(s, "c", "user", st + 4);
  }
  json_t *h = store_history(s, "c", false);
  char got[1024];
  render(h, got, sizeof got);
  if (strcmp(got, c->want) != 0)
    fail_msg("case \"%s\": history \"%s\", want \"%s\"", c->name, got, c->want);
  json_decref(h);
  store_session_t row;
  assert_int_equal(store_session_row(s, "c", &row), 0);
  if (row.messages != c->want_count)
    fail_msg("case \"%s\": %lld messages listed, want %lld", c->name, (long long)row.messages,
             (long long)c->want_count);
  store_close(&s);
}

static void test_context_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof context_cases / sizeof context_cases[0]; i++)
    run_context_case(&context_cases[i]);
}

static void test_grandchild_inherits_the_childs_context(void **state) {
  (void)state;
  store_t *s = open_mem();
  store_session_ensure(s, "main", "main", "main_agent");
  say(s, "main", "user", "from main");
  store_session_create(s, "c", "reviewer", "reviewer_agent", "main", "t", 1, NULL);
  assert_int_equal(store_context_link(s, "c", "main", -1), 1);
  say(s, "c", "user", "c's task");
  store_session_create(s, "g", "reviewer", "reviewer_agent", "c", "t", 2, NULL);
  assert_int_equal(store_context_link(s, "g", "c", -1), 2);
  json_t *h = store_history(s, "g", true);
  char got[512];
  render(h, got, sizeof got);
  assert_string_equal(got, "user:from main|user:c's task");
  /* Inherited messages say where they come from and are none of g's own. */
  assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 0), "seq")), 0);
  assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "context_of")), "main");
  json_decref(h);
  store_close(&s);
}

/* The state grows with what was said: N children of a long conversation add
 * no copies of it (it was N * history before). */
static void test_children_refer_to_the_parent_instead_of_copying(void **state) {
  (void)state;
  store_t *s = open_mem();
  store_session_ensure(s, "main", "main", "main_agent");
  enum { HISTORY = 200, CHILDREN = 300 };
  for (int i = 0; i < HISTORY; i++)
    say(s, "main", i % 2 ? "assistant" : "user", "a line of the main conversation");
  for (int i = 0; i < CHILDREN; i++) {
    char id[32];
    snprintf(id, sizeof id, "reviewer-%d", i + 1);
    store_session_create(s, id, "reviewer", "reviewer_agent", "main", "t", 1, NULL);
    assert_int_equal(store_context_link(s, id, "main", -1), HISTORY);
    say(s, id, "user", "the task");
  }
  assert_int_equal(store_message_rows(s), HISTORY + CHILDREN);
  json_t *h = store_history(s, "reviewer-300", false);
  assert_int_equal(json_array_size(h), HISTORY + 1);
  json_decref(h);
  store_close(&s);
}

static void test_status_names_round_trip(void **state) {
  (void)state;
  static const struct {
    const char *name;
    int ok;
  } cases[] = {{"idle", 1},    {"queued", 1}, {"running", 1}, {"done", 1},   {"failed", 1},
               {"stopped", 1}, {"", 0},       {"Done", 0},    {"runnin", 0}, {NULL, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    store_status_t st = (store_status_t)99;
    int rc = store_status_parse(cases[i].name, &st);
    if ((rc == 0) != cases[i].ok)
      fail_msg("status \"%s\": parse gave %d", cases[i].name ? cases[i].name : "(null)", rc);
    if (rc == 0)
      assert_string_equal(store_status_name(st), cases[i].name);
    else
      assert_int_equal(st, 99); /* untouched */
  }
}

/* Numbers for "<role>-N" ids: from the sessions the first time (an older
 * state), then a counter; an id that exists already is never given. */
static void test_next_numbers(void **state) {
  (void)state;
  store_t *s = open_mem();
  store_session_ensure(s, "main", "main", "main_agent");
  assert_int_equal(store_session_create(s, "reviewer-4", "reviewer", "reviewer_agent", "main", "t", 1, NULL), 0);
  assert_int_equal(store_next_number(s, "reviewer"), 5);
  assert_int_equal(store_next_number(s, "reviewer"), 6);
  assert_int_equal(store_next_number(s, "tester"), 1);
  assert_int_equal(store_session_create(s, "reviewer-7", "reviewer", "reviewer_agent", "main", "t", 1, NULL), 0);
  assert_int_equal(store_next_number(s, "reviewer"), 8);
  store_close(&s);
}

static void test_row_of_an_absent_session_is_untouched(void **state) {
  (void)state;
  store_t *s = open_mem();
  store_session_t row;
  memset(&row, 0x5a, sizeof row);
  assert_int_equal(store_session_row(s, "nobody", &row), -1);
  assert_int_equal(row.depth, 0x5a5a5a5a);
  assert_int_equal(store_session_create(s, "r-1", "reviewer", "reviewer_agent", "main", "t", 1, "call-9"), 0);
  assert_int_equal(store_session_row(s, "r-1", &row), 0);
  assert_string_equal(row.parent, "main");
  assert_string_equal(row.call_id, "call-9");
  assert_int_equal(row.status, STORE_SESSION_QUEUED);
  assert_int_equal(row.depth, 1);
  assert_false(row.in_workflow);
  store_close(&s);
}

static void test_counts_follow_appends_and_resets(void **state) {
  (void)state;
  store_t *s = open_mem();
  store_session_ensure(s, "main", "main", "main_agent");
  say(s, "main", "user", "a");
  say(s, "main", "assistant", "b");
  assert_int_equal(store_session_count(s), 1);
  store_session_t row;
  store_session_row(s, "main", &row);
  assert_int_equal(row.messages, 2);
  assert_int_equal(store_clear(s, "main"), 2);
  store_session_row(s, "main", &row);
  assert_int_equal(row.messages, 0);
  say(s, "main", "user", "c");
  json_t *list = store_sessions(s);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "messages")), 1);
  json_decref(list);
  store_close(&s);
}

/* Listings come from a cache of rows: every kind of change must show in the next one. */
typedef struct {
  const char *name;
  void (*change)(store_t *s);
  const char *key, *sub; /* the member (sub-member) that must differ */
} change_case_t;

static void ch_status(store_t *s) {
  store_session_status(s, "r-1", "done");
}
static void ch_append(store_t *s) {
  say(s, "r-1", "user", "more");
}
static void ch_summary(store_t *s) {
  json_t *sum = json_pack("{s:s}", "status", "DONE");
  store_session_summary(s, "r-1", sum);
  json_decref(sum);
}
static void ch_usage(store_t *s) {
  int64_t t = store_turn_new(s, "r-1");
  store_usage_t u = {5, 6, 0.5};
  json_t *msgs = json_pack("[{s:s, s:s}]", "role", "assistant", "content", "x");
  store_turn_done(s, t, "r-1", msgs, NULL, "stop", &u);
  json_decref(msgs);
}
static void ch_turns(store_t *s) {
  store_session_flag(s, "r-1", "turns", 1);
}
static void ch_clear(store_t *s) {
  store_clear(s, "r-1");
}

static const change_case_t change_cases[] = {
    {"status", ch_status, "status", NULL},      {"a message", ch_append, "messages", NULL},
    {"a summary", ch_summary, "summary", NULL}, {"usage", ch_usage, "usage", "prompt_tokens"},
    {"a turn", ch_turns, "turns", NULL},        {"a reset", ch_clear, "messages", NULL},
};

static json_t *member(store_t *s, const change_case_t *c) {
  json_t *all = store_sessions(s), *row = NULL;
  size_t i;
  json_t *o;
  json_array_foreach(all, i, o) if (strcmp(json_string_value(json_object_get(o, "id")), "r-1") == 0) row = o;
  json_t *v = json_object_get(row, c->key);
  if (c->sub)
    v = json_object_get(v, c->sub);
  v = json_deep_copy(v ? v : json_null());
  json_decref(all);
  return v;
}

static void test_listings_show_every_change(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof change_cases / sizeof change_cases[0]; i++) {
    const change_case_t *c = &change_cases[i];
    store_t *s = open_mem();
    store_session_ensure(s, "main", "main", "main_agent");
    store_session_create(s, "r-1", "reviewer", "reviewer_agent", "main", "t", 1, NULL);
    say(s, "r-1", "user", "hello");
    json_t *before = member(s, c);
    c->change(s);
    json_t *after = member(s, c);
    if (json_equal(before, after))
      fail_msg("case \"%s\": %s unchanged in the listing", c->name, c->key);
    json_decref(before);
    json_decref(after);
    store_close(&s);
  }
}

/* A turn's end decides whether its messages go on to later turns: the user
 * message of a failed or cancelled turn is shown (marked) but not sent again. */
typedef struct {
  const char *name;
  const char *status; /* how turn 1 ("first") ended: "done", "failed", "cancelled", NULL: still running */
  const char *want_sent, *want_shown_left_out; /* y: shown with left_out, -: without */
} end_case_t;

static const end_case_t end_cases[] = {
    {"a done turn stays", "done", "user:first|assistant:one|user:second", "---"},
    {"a failed turn is left out", "failed", "user:second", "yy-"},
    {"a cancelled turn is left out", "cancelled", "user:second", "yy-"},
    {"a running turn stays", NULL, "user:first|user:second", "--"},
};

static void test_failed_turns_are_not_sent_again(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof end_cases / sizeof end_cases[0]; i++) {
    const end_case_t *c = &end_cases[i];
    store_t *s = open_mem();
    store_session_ensure(s, "main", "main", "main_agent");
    int64_t t1 = store_turn_new(s, "main");
    json_t *u = json_pack("{s:s, s:s}", "role", "user", "content", "first");
    store_append(s, "main", t1, u, NULL);
    json_decref(u);
    json_t *partial = json_pack("[{s:s, s:s}]", "role", "assistant", "content", "one");
    store_usage_t usage = {1, 1, 0};
    if (c->status && strcmp(c->status, "done") == 0)
      store_turn_done(s, t1, "main", partial, NULL, "stop", &usage);
    else if (c->status)
      store_turn_failed_with(s, t1, "main", partial, c->status, "x", "y");
    json_decref(partial);
    int64_t t2 = store_turn_new(s, "main");
    u = json_pack("{s:s, s:s}", "role", "user", "content", "second");
    store_append(s, "main", t2, u, NULL);
    json_decref(u);
    char got[256];
    json_t *sent = store_history(s, "main", false);
    render(sent, got, sizeof got);
    if (strcmp(got, c->want_sent) != 0)
      fail_msg("case \"%s\": sent %s, want %s", c->name, got, c->want_sent);
    json_decref(sent);
    json_t *shown = store_history(s, "main", true);
    char marks[16] = "";
    size_t k;
    json_t *m;
    json_array_foreach(shown, k, m) if (k < sizeof marks - 1) marks[k] =
        json_is_true(json_object_get(m, "left_out")) ? 'y' : '-';
    marks[json_array_size(shown) < sizeof marks - 1 ? json_array_size(shown) : sizeof marks - 1] = '\0';
    if (strcmp(marks, c->want_shown_left_out) != 0)
      fail_msg("case \"%s\": left_out marks %s, want %s", c->name, marks, c->want_shown_left_out);
    json_decref(shown);
    store_close(&s);
  }
}

/* Project memory at 10,000 memories: ranked search stays cheap per turn (the
 * figure is printed, not asserted: timings belong to benchmarks), and the
 * query builder quotes every word so no input is an FTS5 operator. */
static void test_memory_search_at_scale(void **state) {
  (void)state;
  char err[256];
  store_t *s = store_open(STORE_MEMORY, err, sizeof err);
  assert_non_null(s);
  const char *topics[] = {"cache eviction", "database index", "login token", "parser error", "build flags"};
  for (int i = 0; i < 10000; i++) {
    char text[200];
    snprintf(text, sizeof text, "reviewer r-%d was asked about the %s number %d. Outcome PASS.", i, topics[i % 5], i);
    assert_true(store_memory_add(s, text, "summary", i % 2 ? "/ws/a" : "/ws/b", "PASS") > 0);
  }
  char *q = memory_query("How does the cache evict its entries? AND OR NOT \"quotes\" (x)*");
  assert_non_null(q);
  assert_string_equal(q, "\"cache\" OR \"evict\" OR \"entries\" OR \"quotes\"");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  json_t *found = NULL;
  for (int i = 0; i < 100; i++) {
    json_decref(found);
    found = store_memories(s, "/ws/a", q, 8);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / 100;
  fprintf(stderr, "memory search, 10,000 memories: %.3f ms per query\n", ms);
  assert_int_equal(json_array_size(found), 8);
  assert_non_null(strstr(json_string_value(json_object_get(json_array_get(found, 0), "text")), "cache"));
  assert_null(memory_query("a an to ?! ..."));
  json_decref(found);
  free(q);
  /* Pinned ones of a workspace (read on every turn): through an index, kept right by pin, unpin, forget. */
  assert_int_equal(store_memory_pin(s, 1, true), 0);    /* /ws/b (rowid 1 is i = 0) */
  assert_int_equal(store_memory_pin(s, 2, true), 0);    /* /ws/a */
  assert_int_equal(store_memory_pin(s, 9002, true), 0); /* /ws/a */
  assert_int_equal(store_memory_pin(s, 20001, true), -ENOENT);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  json_t *pinned = NULL;
  for (int i = 0; i < 100; i++) {
    json_decref(pinned);
    pinned = store_memories(s, "/ws/a", NULL, -3);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) / 100;
  fprintf(stderr, "pinned memories of a workspace, 10,000 memories: %.3f ms per query\n", ms);
  assert_int_equal(json_array_size(pinned), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(pinned, 0), "id")), 9002); /* newest first */
  json_decref(pinned);
  assert_int_equal(store_memory_pin(s, 9002, false), 0);
  assert_int_equal(store_memory_forget(s, 2), 0);
  pinned = store_memories(s, "/ws/a", NULL, -3);
  assert_int_equal(json_array_size(pinned), 0);
  json_decref(pinned);
  pinned = store_memories(s, NULL, NULL, -3);
  assert_int_equal(json_array_size(pinned), 1); /* /ws/b's */
  json_decref(pinned);
  store_close(&s);
}

/* An ask is kept whole or not at all: session, queued turn and message in one transaction. */
static const struct {
  const char *name;
  const char *text; /* the user message's content; NULL: a message that cannot be kept */
  bool kept;
} ask_cases[] = {
    {"a first ask makes the session, a turn and the message", "hello", true},
    {"a message that cannot be written leaves no session and no turn", NULL, false},
};

static void test_turn_ask_is_one_transaction(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof ask_cases / sizeof ask_cases[0]; i++) {
    char err[256] = "";
    store_t *s = store_open(STORE_MEMORY, err, sizeof err);
    assert_non_null(s);
    json_t *msg = ask_cases[i].text ? json_pack("{s:s, s:s}", "role", "user", "content", ask_cases[i].text) : NULL;
    int64_t turn = store_turn_ask(s, "a1", "main", "main_agent", msg, err, sizeof err);
    json_decref(msg);
    if ((turn > 0) != ask_cases[i].kept)
      fail_msg("case \"%s\": turn %lld (%s)", ask_cases[i].name, (long long)turn, err);
    if (store_session_exists(s, "a1") != ask_cases[i].kept)
      fail_msg("case \"%s\": the session is%s there", ask_cases[i].name, ask_cases[i].kept ? " not" : "");
    json_t *h = store_history(s, "a1", false);
    if (json_array_size(h) != (ask_cases[i].kept ? 1u : 0u))
      fail_msg("case \"%s\": %zu messages", ask_cases[i].name, json_array_size(h));
    json_decref(h);
    /* the store goes on: the next ask gets the next turn */
    msg = json_pack("{s:s, s:s}", "role", "user", "content", "again");
    int64_t next = store_turn_ask(s, "a1", "main", "main_agent", msg, err, sizeof err);
    json_decref(msg);
    if (next <= 0 || (ask_cases[i].kept && next != turn + 1))
      fail_msg("case \"%s\": the next ask got turn %lld (%s)", ask_cases[i].name, (long long)next, err);
    store_close(&s);
  }
}

/* ---- the statement cache (store_stmt.c) ------------------------------------------- */

typedef enum { S_END, S_GET, S_PUT, S_SAME, S_OTHER, S_STEP, S_COUNT, S_BAD } stmt_op_t;

/* One step on handle slot h: S_GET takes sql into it; S_PUT gives it back; S_SAME / S_OTHER: slot h holds
 * the same statement as slot n / another; S_STEP binds n to ?1 when n >= 0, steps, wants want (-1: NULL);
 * S_COUNT: n texts cached; S_BAD: sql does not prepare. */
typedef struct {
  stmt_op_t op;
  int h;
  const char *sql;
  int n;
  int want;
} stmt_step_t;

#define Q1 "SELECT ?1"
#define Q2 "SELECT 2"
static const struct {
  const char *name;
  stmt_step_t steps[10];
} stmt_cases[] = {
    {"a statement given back is the one handed out next",
     {{S_GET, 0, Q2, 0, 0},
      {S_PUT, 0, NULL, 0, 0},
      {S_GET, 1, Q2, 0, 0},
      {S_SAME, 1, NULL, 0, 0},
      {S_COUNT, 0, NULL, 1, 0}}},
    {"a statement still held: the second taker gets its own, finalized when given back",
     {{S_GET, 0, Q2, 0, 0},
      {S_GET, 1, Q2, 0, 0},
      {S_OTHER, 1, NULL, 0, 0},
      {S_STEP, 1, NULL, -2, 2},
      {S_PUT, 1, NULL, 0, 0},
      {S_STEP, 0, NULL, -2, 2},
      {S_PUT, 0, NULL, 0, 0},
      {S_COUNT, 0, NULL, 1, 0}}},
    {"given back, a statement is reset and its bindings cleared",
     {{S_GET, 0, Q1, 0, 0},
      {S_STEP, 0, NULL, 7, 7},
      {S_PUT, 0, NULL, 0, 0},
      {S_GET, 1, Q1, 0, 0},
      {S_SAME, 1, NULL, 0, 0},
      {S_STEP, 1, NULL, -2, -1},
      {S_PUT, 1, NULL, 0, 0}}},
    {"texts are told apart",
     {{S_GET, 0, Q1, 0, 0},
      {S_PUT, 0, NULL, 0, 0},
      {S_GET, 1, Q2, 0, 0},
      {S_OTHER, 1, NULL, 0, 0},
      {S_PUT, 1, NULL, 0, 0},
      {S_COUNT, 0, NULL, 2, 0}}},
    {"SQL that does not prepare: NULL, nothing kept", {{S_BAD, 0, "SELEKT 1", 0, 0}, {S_COUNT, 0, NULL, 0, 0}}},
};

static void run_stmt_step(const char *name, sqlite3 *db, store_stmt_t **cache, sqlite3_stmt **h, const stmt_step_t *s) {
  switch (s->op) {
  case S_GET: h[s->h] = store_stmt_get(cache, db, s->sql); break;
  case S_PUT: assert_int_equal(store_stmt_put(cache, h[s->h]), SQLITE_OK); break;
  case S_SAME:
  case S_OTHER:
    if ((h[s->h] == h[s->n]) != (s->op == S_SAME))
      fail_msg("case \"%s\": slot %d and slot %d", name, s->h, s->n);
    break;
  case S_STEP:
    if (s->n >= 0)
      sqlite3_bind_int(h[s->h], 1, s->n);
    if (sqlite3_step(h[s->h]) != SQLITE_ROW)
      fail_msg("case \"%s\": no row", name);
    if (s->want < 0 ? sqlite3_column_type(h[s->h], 0) != SQLITE_NULL : sqlite3_column_int(h[s->h], 0) != s->want)
      fail_msg("case \"%s\": got %d, want %d", name, sqlite3_column_int(h[s->h], 0), s->want);
    break;
  case S_COUNT:
    if (store_stmt_count(cache) != (unsigned)s->n)
      fail_msg("case \"%s\": %u cached, want %d", name, store_stmt_count(cache), s->n);
    break;
  case S_BAD: assert_null(store_stmt_get(cache, db, s->sql)); break;
  case S_END: break;
  }
}

static void test_statement_cache(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof stmt_cases / sizeof stmt_cases[0]; i++) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    store_stmt_t *cache = NULL;
    sqlite3_stmt *h[4] = {0};
    for (int k = 0; stmt_cases[i].steps[k].op != S_END; k++)
      run_stmt_step(stmt_cases[i].name, db, &cache, h, &stmt_cases[i].steps[k]);
    store_stmt_clear(&cache);
    assert_int_equal(store_stmt_count(&cache), 0);
    /* every statement finalized: the database closes */
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
  }
}

/* Past STORE_STMT_MAX texts, statements are prepared each time and finalized when given back. */
static void test_statement_cache_cap(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  store_stmt_t *cache = NULL;
  char sql[64];
  for (int i = 0; i < STORE_STMT_MAX + 10; i++) {
    snprintf(sql, sizeof sql, "SELECT %d", i);
    sqlite3_stmt *st = store_stmt_get(&cache, db, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), i);
    assert_int_equal(store_stmt_put(&cache, st), SQLITE_OK);
  }
  assert_int_equal(store_stmt_count(&cache), STORE_STMT_MAX);
  store_stmt_clear(&cache);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_context_cases),
      cmocka_unit_test(test_turn_ask_is_one_transaction),
      cmocka_unit_test(test_statement_cache),
      cmocka_unit_test(test_statement_cache_cap),
      cmocka_unit_test(test_memory_search_at_scale),
      cmocka_unit_test(test_grandchild_inherits_the_childs_context),
      cmocka_unit_test(test_children_refer_to_the_parent_instead_of_copying),
      cmocka_unit_test(test_status_names_round_trip),
      cmocka_unit_test(test_row_of_an_absent_session_is_untouched),
      cmocka_unit_test(test_next_numbers),
      cmocka_unit_test(test_counts_follow_appends_and_resets),
      cmocka_unit_test(test_listings_show_every_change),
      cmocka_unit_test(test_failed_turns_are_not_sent_again),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
