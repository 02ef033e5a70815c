/* Tests of the workflow module: statuses and transitions, dependency
 * readiness, the stored form (lossless, and readable as older brokers wrote
 * it), the wire form (equal to what the JSON-document engine sent), the plan
 * parser's output as typed steps, a restart on an old state directory, and a
 * step_run whose send fails (the node's slot is given back, the step retried
 * or failed clearly).
 *
 * The engine runs on a real store (SQLite in a temp dir), the real plan
 * parser and config; only the outbox is fake: broker_send / broker_event
 * record what would go out (and broker_send fails on demand), and
 * agents_spawn / agents_stop stand in for the sub-agent module. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "internal.h"
#include "plan.h"
#include "workflow.h"
#include "workflow_int.h"

/* ---- the fake outbox -------------------------------------------------------- */

#define MAX_SEEN 64

static struct {
  int send_rc; /* what broker_send returns (0 or -errno) */
  int sends;   /* calls */
  proto_type_t last_type;
  char kinds[MAX_SEEN][32]; /* events, in order */
  json_t *payloads[MAX_SEEN];
  int n_events;
} out;

static void out_reset(void) {
  for (int i = 0; i < out.n_events; i++)
    json_decref(out.payloads[i]);
  memset(&out, 0, sizeof out);
}

/* As broker.c's: an unreachable node is removed (its running steps go back to pending). */
int broker_send(broker_t *b, peer_t *p, proto_msg_t *msg) {
  out.sends++;
  out.last_type = msg->type;
  if (out.send_rc == -EHOSTUNREACH) {
    p->dead = true;
    workflow_node_lost(b, p);
  }
  return out.send_rc;
}

void broker_event(broker_t *b, const char *kind, const char *session, int64_t turn, json_t *payload) {
  (void)b, (void)session, (void)turn;
  if (out.n_events < MAX_SEEN) {
    snprintf(out.kinds[out.n_events], sizeof out.kinds[0], "%s", kind);
    out.payloads[out.n_events++] = payload;
  } else {
    json_decref(payload);
  }
}

/* As outbox.c's: while held, events are sent later, in order (here: recorded at once, in order; what
 * matters to the engine is that the hold is released once its batch is committed). */
void broker_events_hold(broker_t *b) {
  b->events_hold++;
}

void broker_events_release(broker_t *b) {
  assert_true(b->events_hold > 0);
  b->events_hold--;
  assert_true(!b->store || sqlite3_get_autocommit(store_sqlite(b->store))); /* after the commit */
}

/* The last event of this kind, or NULL. */
static json_t *event(const char *kind) {
  for (int i = out.n_events; i-- > 0;)
    if (strcmp(out.kinds[i], kind) == 0)
      return out.payloads[i] ? out.payloads[i] : json_null();
  return NULL;
}

int agents_spawn_held(broker_t *b, const char *role_or_profile, bool by_profile, const char *task, const char *parent,
                      const char *call_id, char *id, size_t idlen, char *err, size_t errlen) {
  (void)by_profile, (void)task, (void)parent, (void)call_id, (void)err, (void)errlen;
  /* the sub-agents module opens transactions of its own: never inside a workflow batch's */
  assert_true(!b->store || sqlite3_get_autocommit(store_sqlite(b->store)));
  snprintf(id, idlen, "%s-1", role_or_profile);
  return 0;
}

void agents_admit(broker_t *b) {
  (void)b;
}

void agents_resume(broker_t *b, const char *id) {
  (void)b, (void)id;
}
int agents_stop(broker_t *b, const char *id, char *err, size_t errlen) {
  (void)b, (void)id, (void)err, (void)errlen;
  return 0;
}

/* ---- statuses and transitions ---------------------------------------------------- */

static void status_names_round_trip(void **state) {
  (void)state;
  for (int s = WF_PENDING; s <= WF_CANCELLED; s++) {
    wf_status_t back;
    assert_true(wf_status_parse(wf_status_name((wf_status_t)s), &back));
    assert_int_equal(back, s);
  }
  for (int s = STEP_PENDING; s <= STEP_ABANDONED; s++) {
    wf_step_status_t back;
    assert_true(wf_step_status_parse(wf_step_status_name((wf_step_status_t)s), &back));
    assert_int_equal(back, s);
  }
  wf_status_t w = WF_DONE;
  assert_false(wf_status_parse("Running", &w));
  assert_false(wf_status_parse(NULL, &w));
  assert_int_equal(w, WF_DONE); /* left untouched */
  assert_string_equal(wf_status_name(WF_ROLLING_BACK), "rolling_back");
  wf_step_status_t st = STEP_DONE;
  assert_false(wf_step_status_parse("skipped", &st));
  assert_int_equal(st, STEP_DONE);
}

typedef struct {
  wf_status_t from;
  wf_action_t action;
  bool allowed;
} transition_case_t;

static const transition_case_t transitions[] = {
    {WF_PENDING, WF_APPROVE, true},   {WF_INVALID, WF_APPROVE, false}, {WF_RUNNING, WF_APPROVE, false},
    {WF_REJECTED, WF_APPROVE, false}, {WF_PENDING, WF_REJECT, true},   {WF_INVALID, WF_REJECT, true},
    {WF_RUNNING, WF_REJECT, false},   {WF_DONE, WF_REJECT, false},     {WF_PENDING, WF_MODIFY, true},
    {WF_INVALID, WF_MODIFY, true},    {WF_PAUSED, WF_MODIFY, false},   {WF_RUNNING, WF_CANCEL, true},
    {WF_PAUSED, WF_CANCEL, true},     {WF_PENDING, WF_CANCEL, false},  {WF_ROLLING_BACK, WF_CANCEL, false},
    {WF_DONE, WF_CANCEL, false},      {WF_RUNNING, WF_PAUSE, true},    {WF_PAUSED, WF_PAUSE, false},
    {WF_PAUSED, WF_RESUME, true},     {WF_RUNNING, WF_RESUME, false},  {WF_CANCELLED, WF_RESUME, false},
    {WF_FAILED, WF_PAUSE, false},
};

static void transitions_follow_the_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof transitions / sizeof transitions[0]; i++) {
    const transition_case_t *c = &transitions[i];
    if (wf_allows(c->from, c->action) != c->allowed)
      fail_msg("%s, action %d: expected %s", wf_status_name(c->from), c->action, c->allowed ? "allowed" : "refused");
  }
}

/* ---- readiness ----------------------------------------------------------------- */

/* A workflow of steps 1..n with the given dependencies (0-terminated lists) and statuses. */
static workflow_t *chain(size_t n, const int64_t deps[][4], const wf_step_status_t *status) {
  workflow_t *wf = workflow_new();
  wf->steps = calloc(n, sizeof *wf->steps);
  wf->n_steps = n;
  for (size_t i = 0; i < n; i++) {
    wf_step_t *s = &wf->steps[i];
    s->number = (int64_t)i + 1;
    s->deps = calloc(4, sizeof *s->deps);
    for (size_t k = 0; k < 4 && deps[i][k]; k++)
      s->deps[s->n_deps++] = deps[i][k];
    s->status = status[i];
  }
  return wf;
}

typedef struct {
  const char *name;
  wf_step_status_t status[3]; /* of steps 1, 2, 3 */
  int64_t next_try_ms;        /* of step 3 */
  int64_t now;
  bool ready[3];
} ready_case_t;

/* Step 3 waits for 1 and 2; step 2 waits for 1; step 1 waits for none. */
static const ready_case_t ready_cases[] = {
    {"all pending: only the first", {STEP_PENDING, STEP_PENDING, STEP_PENDING}, 0, 0, {true, false, false}},
    {"1 done: 2 starts, 3 still waits", {STEP_DONE, STEP_PENDING, STEP_PENDING}, 0, 0, {false, true, false}},
    {"1 and 2 done: 3 starts", {STEP_DONE, STEP_DONE, STEP_PENDING}, 0, 0, {false, false, true}},
    {"a running dependency is not done", {STEP_DONE, STEP_RUNNING, STEP_PENDING}, 0, 0, {false, false, false}},
    {"a failed dependency blocks", {STEP_DONE, STEP_FAILED, STEP_PENDING}, 0, 0, {false, false, false}},
    {"retrying, not yet due", {STEP_DONE, STEP_DONE, STEP_RETRYING}, 5000, 4999, {false, false, false}},
    {"retrying and due", {STEP_DONE, STEP_DONE, STEP_RETRYING}, 5000, 5000, {false, false, true}},
    {"abandoned never starts", {STEP_DONE, STEP_DONE, STEP_ABANDONED}, 0, 0, {false, false, false}},
};

static void readiness_follows_dependencies(void **state) {
  (void)state;
  static const int64_t deps[3][4] = {{0}, {1, 0}, {1, 2, 0}};
  for (size_t i = 0; i < sizeof ready_cases / sizeof ready_cases[0]; i++) {
    const ready_case_t *c = &ready_cases[i];
    workflow_t *wf = chain(3, deps, c->status);
    wf->steps[2].next_try_ms = c->next_try_ms;
    for (int k = 0; k < 3; k++)
      if (wf_step_ready(wf, &wf->steps[k], c->now) != c->ready[k])
        fail_msg("%s: step %d should%s be ready", c->name, k + 1, c->ready[k] ? "" : " not");
    workflow_destroy(&wf);
    assert_null(wf);
  }
}

static void a_missing_dependency_is_never_done(void **state) {
  (void)state;
  static const int64_t deps[1][4] = {{7, 0}};
  wf_step_status_t st[1] = {STEP_PENDING};
  workflow_t *wf = chain(1, deps, st);
  assert_false(wf_deps_done(wf, &wf->steps[0]));
  assert_null(wf_step(wf, 7));
  workflow_destroy(&wf);
  workflow_destroy(&wf); /* safe twice */
}

static void failed_attempts_back_off_then_fail(void **state) {
  (void)state;
  wf_step_t s = {.number = 1, .status = STEP_RUNNING, .attempts = 1};
  assert_true(wf_step_fail(&s, "boom", true, 10000));
  assert_int_equal(s.status, STEP_RETRYING);
  assert_int_equal(s.next_try_ms, 10000 + WF_RETRY_BASE_MS);
  assert_string_equal(s.error, "boom");
  s.attempts = 2;
  assert_true(wf_step_fail(&s, NULL, true, 10000));
  assert_int_equal(s.next_try_ms, 10000 + 2 * WF_RETRY_BASE_MS);
  assert_string_equal(s.error, "failed");
  s.attempts = WF_MAX_ATTEMPTS;
  assert_false(wf_step_fail(&s, "boom", true, 10000));
  assert_int_equal(s.status, STEP_FAILED);
  s.attempts = 1;
  assert_false(wf_step_fail(&s, "too large", false, 10000)); /* not retryable: failed at once */
  assert_int_equal(s.status, STEP_FAILED);
  wf_step_clear(&s);
}

/* ---- the stored form --------------------------------------------------------------- */

/* A document as the broker before workflow_t wrote it (status strings, a steps
 * object keyed by number, a report with a rollback), with a field from some
 * later version ("labels") that must survive. */
static const char *const OLD_DOC =
    "{\"session\": \"main\","
    " \"plan\": {\"title\": \"Fix the parser\", \"steps\": ["
    "   {\"number\": 1, \"title\": \"Research\", \"agent\": \"researcher\", \"tool\": null, \"arguments\": null,"
    "    \"dependencies\": [], \"estimated_seconds\": 30, \"description\": \"Read the docs\\nand the code\"},"
    "   {\"number\": 2, \"title\": \"Write it\", \"agent\": \"implementer\", \"tool\": \"write_file_tool\","
    "    \"arguments\": {\"path\": \"a.c\", \"content\": \"int x;\"}, \"dependencies\": [1],"
    "    \"estimated_seconds\": 60, \"estimated_seconds_default\": true},"
    "   {\"number\": 3, \"title\": \"Test\", \"agent\": \"tester\", \"tool\": \"execute_bash\", \"arguments\": null,"
    "    \"dependencies\": [1, 2], \"arguments_text\": \"{\\\"command\\\": make}\", \"estimated_seconds\": 1.5}],"
    "  \"stated\": {\"seconds\": 195, \"cost\": 0.06}},"
    " \"created_ms\": 1700000000000,"
    " \"steps\": {"
    "   \"1\": {\"status\": \"done\", \"attempts\": 1, \"agent_session\": \"researcher-1\", \"started_ms\": "
    "1700000001000,"
    "         \"history\": [{\"attempt\": 1, \"at_ms\": 1700000001000, \"what\": \"started\", \"detail\": "
    "\"researcher-1\"},"
    "                      {\"attempt\": 1, \"at_ms\": 1700000002000, \"what\": \"done\", \"detail\": null}],"
    "         \"finished_ms\": 1700000002000, \"result\": \"[SUMMARY] ok\", \"usage\": {\"tokens\": 1234, \"cost\": "
    "0.0012}},"
    "   \"2\": {\"status\": \"failed\", \"attempts\": 3, \"node\": \"n1\", \"started_ms\": 1700000003000,"
    "         \"history\": [{\"attempt\": 3, \"at_ms\": 1700000004000, \"what\": \"failed\", \"detail\": \"tool_error: "
    "disk full\"}],"
    "         \"error\": \"tool_error: disk full\", \"next_try_ms\": 5000, \"changed\": [{\"path\": \"a.c\"}]},"
    "   \"3\": {\"status\": \"pending\", \"attempts\": 0, \"was_running\": true}},"
    " \"origin\": \"main\", \"errors\": [],"
    " \"estimate\": {\"seconds\": 91.5, \"cost\": 0.0075, \"tokens_per_agent_step\": 5000.0},"
    " \"status\": \"failed\", \"text\": \"== plan ==\", \"id\": 7, \"workspace\": \"/tmp/ws\","
    " \"started_ms\": 1700000000500, \"finished_ms\": 1700000009000,"
    " \"report\": {\"rollback\": {\"restored\": [{\"path\": \"a.c\", \"existed\": true, \"sha256\": \"ab\"}],"
    "   \"mismatches\": [], \"deleted\": []}, \"seconds\": 12.5, \"usage\": {\"tokens\": 1234, \"cost\": 0.0012},"
    "   \"reason\": \"a step failed after all its attempts\"},"
    " \"labels\": {\"team\": \"core\"}}";

/* A plan as it was first stored: no state yet, no id (it is the row's). */
static const char *const OLD_PENDING =
    "{\"session\": \"reviewer-2\", \"plan\": {\"title\": \"T\", \"steps\": [{\"number\": 1, \"title\": \"a\","
    " \"agent\": \"nobody\", \"tool\": null, \"arguments\": null, \"dependencies\": [], \"estimated_seconds\": 60,"
    " \"estimated_seconds_default\": true}], \"stated\": {\"seconds\": null, \"cost\": null}},"
    " \"created_ms\": 1, \"steps\": {}, \"origin\": \"reviewer-2\","
    " \"errors\": [{\"step\": 1, \"message\": \"Step 1: unknown agent role \\\"nobody\\\"\"}],"
    " \"estimate\": {\"seconds\": 60.0, \"cost\": 0.0, \"tokens_per_agent_step\": 5000.0},"
    " \"status\": \"invalid\", \"text\": \"x\"}";

/* A step moved to another profile, with the estimate of each step. */
static const char *const SWAPPED =
    "{\"session\": \"main\", \"plan\": {\"title\": \"S\", \"steps\": [{\"number\": 1, \"title\": \"a\","
    " \"agent\": \"researcher\", \"profile\": \"Big\", \"tool\": null, \"arguments\": null, \"dependencies\": [],"
    " \"estimated_seconds\": 60}], \"stated\": {\"seconds\": null, \"cost\": null}},"
    " \"created_ms\": 1, \"steps\": {}, \"origin\": \"main\", \"errors\": [],"
    " \"estimate\": {\"seconds\": 240.0, \"cost\": 0.027, \"tokens_per_agent_step\": 5000.0, \"tokens\": 5000,"
    " \"steps\": [{\"number\": 1, \"profile\": \"Big\", \"model\": \"huge\", \"tokens\": 5000, \"seconds\": 240,"
    " \"cost\": 0.027}]}, \"status\": \"pending\", \"text\": \"x\"}";

static json_t *load(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j)
    fail_msg("fixture: %s at %d", e.text, e.position);
  return j;
}

static void assert_json_equal(const json_t *got, const json_t *want) {
  if (json_equal(got, want))
    return;
  json_dump_file(got, "test_workflow.got.json", JSON_SORT_KEYS | JSON_INDENT(1));
  json_dump_file(want, "test_workflow.want.json", JSON_SORT_KEYS | JSON_INDENT(1));
  fail_msg("JSON differs: see test_workflow.got.json and test_workflow.want.json");
}

static void old_document_loads_typed(void **state) {
  (void)state;
  json_t *doc = load(OLD_DOC);
  char err[200] = "";
  workflow_t *wf = wf_from_stored(doc, err, sizeof err);
  assert_non_null(wf);
  assert_int_equal(wf->id, 7);
  assert_int_equal(wf->status, WF_FAILED);
  assert_string_equal(wf->session, "main");
  assert_string_equal(wf->workspace, "/tmp/ws");
  assert_string_equal(wf->title, "Fix the parser");
  assert_true(wf->stated_seconds == 195 && fabs(wf->stated_cost - 0.06) < 1e-12);
  assert_int_equal(wf->n_steps, 3);
  const wf_step_t *s1 = &wf->steps[0], *s2 = &wf->steps[1], *s3 = &wf->steps[2];
  assert_null(s1->tool);
  assert_string_equal(s1->description, "Read the docs\nand the code");
  assert_int_equal(s1->status, STEP_DONE);
  assert_string_equal(s1->agent_session, "researcher-1");
  assert_int_equal(s1->n_history, 2);
  assert_null(s1->history[1].detail);
  assert_true(s1->has_usage && s1->usage_tokens == 1234);
  assert_string_equal(s2->tool, "write_file_tool");
  assert_string_equal(json_string_value(json_object_get(s2->arguments, "path")), "a.c");
  assert_true(s2->estimated_default);
  assert_int_equal(s2->status, STEP_FAILED);
  assert_int_equal(s2->attempts, 3);
  assert_int_equal(s2->next_try_ms, 5000);
  assert_int_equal(s3->n_deps, 2);
  assert_int_equal(s3->deps[1], 2);
  assert_string_equal(s3->arguments_text, "{\"command\": make}");
  assert_true(s3->estimated_seconds == 1.5);
  assert_true(s3->was_running && s3->has_state && s3->status == STEP_PENDING);
  assert_true(wf->report.present && wf->report.seconds == 12.5 && wf->report.tokens == 1234);
  assert_string_equal(wf->report.reason, "a step failed after all its attempts");
  workflow_destroy(&wf);
  json_decref(doc);
}

static void stored_form_round_trips_losslessly(void **state) {
  (void)state;
  const char *const docs[] = {OLD_DOC, OLD_PENDING, SWAPPED};
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    json_t *doc = load(docs[i]);
    char err[200] = "";
    workflow_t *wf = wf_from_stored(doc, err, sizeof err);
    assert_non_null(wf);
    if (docs[i] == SWAPPED) /* the profile is typed, the estimate's steps kept */
      assert_true(strcmp(wf->steps[0].profile, "Big") == 0 && wf->est_total_tokens == 5000 &&
                  json_array_size(wf->est_steps) == 1);
    json_t *again = wf_to_stored(wf);
    assert_json_equal(again, doc);
    /* and once more through the types: a fixed point */
    workflow_t *wf2 = wf_from_stored(again, err, sizeof err);
    json_t *third = wf_to_stored(wf2);
    assert_json_equal(third, doc);
    json_decref(third), json_decref(again), json_decref(doc);
    workflow_destroy(&wf2), workflow_destroy(&wf);
  }
}

typedef struct {
  const char *name;
  const char *doc;
  const char *mention;
} bad_doc_t;

static const bad_doc_t bad_docs[] = {
    {"unknown status", "{\"status\": \"exploded\", \"plan\": {\"steps\": []}}", "unknown status \"exploded\""},
    {"no status", "{\"plan\": {\"steps\": []}}", "unknown status \"\""},
    {"no plan", "{\"status\": \"pending\"}", "no plan"},
    {"plan without steps", "{\"status\": \"pending\", \"plan\": {\"title\": \"x\"}}", "no plan"},
    {"unknown step status",
     "{\"status\": \"running\", \"plan\": {\"steps\": [{\"number\": 4}]}, \"steps\": {\"4\": {\"status\": \"odd\"}}}",
     "step 4 has an unknown status \"odd\""},
};

static void bad_documents_are_refused_with_a_reason(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
    json_t *doc = load(bad_docs[i].doc);
    char err[200] = "untouched";
    workflow_t *wf = wf_from_stored(doc, err, sizeof err);
    if (wf)
      fail_msg("%s: loaded", bad_docs[i].name);
    if (!strstr(err, bad_docs[i].mention))
      fail_msg("%s: error \"%s\" does not mention \"%s\"", bad_docs[i].name, err, bad_docs[i].mention);
    json_decref(doc);
  }
}

/* ---- the wire form --------------------------------------------------------------- */

/* What the engine sent before workflow_t (its wf_view on the stored document), kept as the oracle. */
static json_t *todays_view(const json_t *doc) {
  const json_t *plan = json_object_get(doc, "plan");
  json_t *states = json_object_get(doc, "steps");
  json_t *steps = json_array();
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(plan, "steps"), i, s) {
    json_t *v = json_deep_copy(s);
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)json_integer_value(json_object_get(s, "number")));
    json_t *st = json_object_get(states, key);
    json_object_set_new(v, "status", json_string(st ? json_string_value(json_object_get(st, "status")) : "pending"));
    json_object_set_new(v, "attempts", json_integer(st ? json_integer_value(json_object_get(st, "attempts")) : 0));
    if (st) {
      const char *keys[] = {"result", "error", "node", "agent_session", "started_ms", "finished_ms", "usage"};
      for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (json_object_get(st, keys[k]))
          json_object_set(v, keys[k], json_object_get(st, keys[k]));
    }
    json_array_append_new(steps, v);
  }
  return json_pack("{s:I, s:O?, s:s, s:O?, s:o, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "id",
                   json_integer_value(json_object_get(doc, "id")), "title", json_object_get(plan, "title"), "status",
                   json_string_value(json_object_get(doc, "status")), "estimate", json_object_get(doc, "estimate"),
                   "steps", steps, "errors", json_object_get(doc, "errors"), "session", json_object_get(doc, "session"),
                   "workspace", json_object_get(doc, "workspace"), "created_ms", json_object_get(doc, "created_ms"),
                   "started_ms", json_object_get(doc, "started_ms"), "finished_ms", json_object_get(doc, "finished_ms"),
                   "report", json_object_get(doc, "report"));
}

static void wire_form_is_what_controllers_got(void **state) {
  (void)state;
  const char *const docs[] = {OLD_DOC, OLD_PENDING, SWAPPED};
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    json_t *doc = load(docs[i]);
    char err[200];
    workflow_t *wf = wf_from_stored(doc, err, sizeof err);
    assert_non_null(wf);
    json_t *got = wf_to_wire(wf), *want = todays_view(doc);
    assert_json_equal(got, want);
    /* byte for byte, key order included, for plans in the parser's usual key order */
    char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
    assert_string_equal(g, w);
    free(g), free(w);
    /* README's plan JSON */
    assert_non_null(json_object_get(json_object_get(got, "estimate"), "seconds"));
    json_t *step = json_array_get(json_object_get(got, "steps"), 0);
    const char *fields[] = {"number", "title", "agent", "tool", "dependencies", "status", "attempts"};
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
      if (!json_object_get(step, fields[k]))
        fail_msg("the wire step lacks \"%s\"", fields[k]);
    json_decref(got), json_decref(want), json_decref(doc);
    workflow_destroy(&wf);
  }
}

/* Documents the broker wrote before workflow_t (commit e82c1d2, collected from
 * a run of tests/integration/test_workflow.py): each loads, writes back as it
 * was, and shows controllers what that broker showed them, byte for byte. */
static void documents_written_before_load_and_show_the_same(void **state) {
  (void)state;
  const char *dir = getenv("CADRE_WF_FIXTURES");
  char path[1024];
  snprintf(path, sizeof path, "%s/stored-by-e82c1d2.jsonl", dir ? dir : "tests/fixtures/workflows");
  FILE *f = fopen(path, "r");
  if (!f)
    fail_msg("cannot open %s", path);
  char *line = NULL;
  size_t cap = 0, n = 0;
  while (getline(&line, &cap, f) > 0) {
    json_t *doc = load(line);
    char err[200] = "";
    workflow_t *wf = wf_from_stored(doc, err, sizeof err);
    if (!wf)
      fail_msg("document %zu: %s", n + 1, err);
    json_t *stored = wf_to_stored(wf), *got = wf_to_wire(wf), *want = todays_view(doc);
    assert_json_equal(stored, doc);
    char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
    assert_string_equal(g, w);
    free(g), free(w);
    json_decref(stored), json_decref(got), json_decref(want), json_decref(doc);
    workflow_destroy(&wf);
    n++;
  }
  free(line);
  fclose(f);
  assert_true(n >= 10);
}

/* ---- the parser's output as typed steps ----------------------------------------------- */

static const char *const PLANS[] = {
    "[PLAN]\n## Workflow: Implement and Test Feature\n### Step 1: Research best practices\n- Agent: researcher\n"
    "- Tool: execute_bash\n- Arguments: {\"command\": \"grep -r 'pattern' ./docs\"}\n- Dependencies: none\n"
    "- Estimated Time: 30s\n### Step 2: Implement\n- Agent: implementer\n- Dependencies: Step 1\n"
    "- Estimated Time: 2m 30s\nWrite the module.\n### Step 3: Test\n- Agent: tester\n- Tool: execute_bash\n"
    "- Arguments: {command: make test}\n- Dependencies: Steps 1-2\n## Total Estimated Time: 195s (3m 15s)\n"
    "## Cost Estimate: $0.06\n[/PLAN]\n",
    "[PLAN]\n### Step 1: Only step\n- Agent: tester\n[/PLAN]",
    "[PLAN]\n### Step 1: x\n- Estimated Time: 1.5 min\n- Arguments:\n```json\n{\"a\": [1, 2],\n \"b\": \"c\"}\n```\n"
    "### Step 2: y\n- Dependencies: 1\n[/PLAN]",
};

static void parsed_plans_convert_once_and_back(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof PLANS / sizeof PLANS[0]; i++) {
    char err[200];
    json_t *plan = plan_parse(PLANS[i], err, sizeof err);
    assert_non_null(plan);
    workflow_t *wf = workflow_new();
    assert_int_equal(wf_set_plan(wf, plan), 0);
    json_t *back = wf_plan_json(wf);
    assert_json_equal(back, plan);
    json_decref(back), json_decref(plan);
    workflow_destroy(&wf);
  }
  workflow_t *wf = workflow_new();
  json_t *not_plan = json_pack("{s:s}", "title", "x");
  assert_int_equal(wf_set_plan(wf, not_plan), -1);
  json_decref(not_plan);
  workflow_destroy(&wf);
}

/* ---- the engine on a real store ----------------------------------------------------- */

typedef struct {
  char dir[64];
  broker_t b;
  cadre_config_t *config;
  peer_t node;
} rig_t;

static int rig_setup(void **state) {
  rig_t *r = calloc(1, sizeof *r);
  char err[256];
  snprintf(r->dir, sizeof r->dir, "/tmp/cadre-test-wf-XXXXXX");
  assert_non_null(mkdtemp(r->dir));
  r->b.store = store_open(r->dir, err, sizeof err);
  assert_non_null(r->b.store);
  r->config = config_load(NULL, NULL, err, sizeof err);
  assert_non_null(r->config);
  r->b.opts.config = r->config;
  r->node.role = PEER_NODE;
  r->node.name = strdup("node-a");
  r->node.workspace = strdup("/tmp/ws");
  r->node.slots = 2;
  r->b.peers = &r->node;
  out_reset();
  *state = r;
  return 0;
}

static int rig_teardown(void **state) {
  rig_t *r = *state;
  workflow_stop(&r->b);
  store_close(&r->b.store);
  config_destroy(&r->config);
  free(r->node.name), free(r->node.workspace);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
  assert_int_equal(system(cmd), 0);
  out_reset();
  free(r);
  return 0;
}

static const char *const TOOL_PLAN =
    "[PLAN]\n## Workflow: Write a file\n### Step 1: Write it\n- Agent: tester\n"
    "- Tool: write_file_tool\n- Arguments: {\"path\": \"a.txt\", \"content\": \"hi\"}\n"
    "[/PLAN]";

/* Proposes and approves the one-step tool plan with the outbox answering rc. */
static workflow_t *run_tool_plan(rig_t *r, int rc) {
  workflow_on_answer(&r->b, "main", TOOL_PLAN);
  workflow_t *wf = r->b.workflows;
  assert_non_null(wf);
  assert_int_equal(wf->status, WF_PENDING);
  out.send_rc = rc;
  char err[256] = "";
  assert_int_equal(workflow_approve(&r->b, wf->id, NULL, err, sizeof err), 0);
  return wf;
}

static void a_sent_step_runs_on_its_node(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, 0);
  assert_int_equal(out.sends, 1);
  assert_int_equal(out.last_type, PROTO_STEP_RUN);
  assert_int_equal(wf->steps[0].status, STEP_RUNNING);
  assert_string_equal(wf->steps[0].node, "node-a");
  assert_int_equal(r->node.busy, 1);
  assert_non_null(event("step_started"));
}

typedef struct {
  const char *name;
  int rc;                /* broker_send's answer */
  wf_step_status_t step; /* the step afterwards */
  wf_status_t workflow;
  bool will_retry;
  const char *mention; /* in the step's error; NULL: no error */
} send_case_t;

static const send_case_t send_cases[] = {
    {"frame too large: fails for good, rolls back", -EMSGSIZE, STEP_FAILED, WF_FAILED, false, "frame limit"},
    {"queue full: retried later", -EAGAIN, STEP_RETRYING, WF_RUNNING, true, "could not be sent to node-a"},
    {"node unreachable: back to pending for another node", -EHOSTUNREACH, STEP_PENDING, WF_RUNNING, false, NULL},
};

static void a_step_whose_send_fails_does_not_hold_the_slot(void **state) {
  for (size_t i = 0; i < sizeof send_cases / sizeof send_cases[0]; i++) {
    const send_case_t *c = &send_cases[i];
    rig_setup(state);
    rig_t *r = *state;
    workflow_t *wf = run_tool_plan(r, c->rc);
    wf_step_t *s = &wf->steps[0];
    if (r->node.busy != 0)
      fail_msg("%s: the node's slot stays busy (%d)", c->name, r->node.busy);
    if (s->status != c->step || wf->status != c->workflow)
      fail_msg("%s: step %s, workflow %s", c->name, wf_step_status_name(s->status), wf_status_name(wf->status));
    if (s->status != STEP_RUNNING && s->node && c->rc != -EHOSTUNREACH)
      fail_msg("%s: the step is still assigned to %s", c->name, s->node);
    if (c->mention && (!s->error || !strstr(s->error, c->mention)))
      fail_msg("%s: error \"%s\" does not mention \"%s\"", c->name, s->error ? s->error : "", c->mention);
    if (c->mention) {
      json_t *ev = event("step_failed");
      assert_non_null(ev);
      assert_int_equal(json_is_true(json_object_get(ev, "will_retry")), c->will_retry);
    }
    assert_null(event("step_started"));
    /* what a restarted broker would read agrees */
    json_t *all = store_workflows(r->b.store);
    const char *stored = json_string_value(
        json_object_get(json_object_get(json_object_get(json_array_get(all, 0), "steps"), "1"), "status"));
    assert_string_equal(stored, wf_step_status_name(c->step));
    json_decref(all);
    rig_teardown(state);
  }
}

static void a_retried_step_runs_once_the_node_takes_it(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, -EAGAIN);
  assert_int_equal(wf->steps[0].status, STEP_RETRYING);
  out.send_rc = 0;
  workflow_tick(&r->b, wf->steps[0].next_try_ms - 1);
  assert_int_equal(wf->steps[0].status, STEP_RETRYING); /* not yet */
  workflow_tick(&r->b, wf->steps[0].next_try_ms);
  assert_int_equal(wf->steps[0].status, STEP_RUNNING);
  assert_int_equal(wf->steps[0].attempts, 2);
  assert_int_equal(r->node.busy, 1);
}

static void a_queue_that_stays_full_fails_the_workflow(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, -EAGAIN);
  for (int i = 0; i < WF_MAX_ATTEMPTS + 2 && wf->status == WF_RUNNING; i++)
    workflow_tick(&r->b, wf->steps[0].next_try_ms);
  assert_int_equal(wf->steps[0].status, STEP_FAILED);
  assert_int_equal(wf->steps[0].attempts, WF_MAX_ATTEMPTS);
  assert_int_equal(wf->status, WF_FAILED);
  assert_int_equal(r->node.busy, 0);
  assert_non_null(event("workflow_finished"));
  /* The result is also a memory of the project, with its outcome. */
  json_t *mem = store_memories(r->b.store, NULL, NULL, 10);
  assert_int_equal(json_array_size(mem), 1);
  json_t *m = json_array_get(mem, 0);
  char source[64];
  snprintf(source, sizeof source, "workflow %lld", (long long)wf->id);
  assert_string_equal(json_string_value(json_object_get(m, "source")), source);
  assert_string_equal(json_string_value(json_object_get(m, "outcome")), "failed");
  assert_non_null(strstr(json_string_value(json_object_get(m, "text")), "✗ Step 1"));
  json_decref(mem);
}

/* The node says step (attempt 1) failed for good with code. */
static void step_failed_for_good(rig_t *r, workflow_t *wf, int64_t step, const char *code) {
  proto_msg_t *m = wf_step_msg(PROTO_STEP_FAILED, wf->id, step, 1);
  PROTO_SET(m, retryable, false);
  proto_set_str(m, PROTO_F_code, code);
  proto_set_str(m, PROTO_F_detail, "disk full");
  workflow_on_node_msg(&r->b, &r->node, m);
  proto_msg_destroy(&m);
}

/* The running step fails for good after it changed a.txt (its checkpoint is in the ledger). */
static workflow_t *fail_after_a_change(rig_t *r) {
  workflow_t *wf = run_tool_plan(r, 0);
  assert_int_equal(store_checkpoint_add(r->b.store, wf->id, 1, 1, 1, "file", "a.txt", 1, "old", "sha-old", 0644), 0);
  step_failed_for_good(r, wf, 1, "tool_error");
  return wf;
}

static void restored(rig_t *r, workflow_t *wf, int64_t seq, const char *sha256) {
  proto_msg_t *m = proto_msg_new(PROTO_RESTORED);
  PROTO_SET(m, workflow, wf->id);
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_sha256, sha256);
  workflow_on_node_msg(&r->b, &r->node, m);
  proto_msg_destroy(&m);
}

static void a_rollback_undoes_the_change(void **state) {
  rig_t *r = *state;
  workflow_t *wf = fail_after_a_change(r);
  assert_int_equal(wf->status, WF_ROLLING_BACK);
  assert_int_equal(r->node.busy, 0);
  assert_int_equal(out.last_type, PROTO_RESTORE);
  restored(r, wf, 2, "sha-old"); /* not the one asked for: ignored */
  assert_int_equal(wf->status, WF_ROLLING_BACK);
  restored(r, wf, 1, "sha-old");
  assert_int_equal(wf->status, WF_FAILED);
  assert_null(wf->rollback);
  json_t *restored_list = json_object_get(wf->report.rollback, "restored");
  assert_int_equal(json_array_size(restored_list), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(restored_list, 0), "path")), "a.txt");
}

/* The workflow runs, changes a.txt, and is cancelled with rollback while sends
 * answer rc; the rollback waits for the step to end (here: the node stopped it). */
static workflow_t *cancel_after_a_change(rig_t *r, int rc) {
  workflow_t *wf = run_tool_plan(r, 0);
  char err[256];
  assert_int_equal(store_checkpoint_add(r->b.store, wf->id, 1, 1, 1, "file", "a.txt", 1, "old", "sha-old", 0644), 0);
  out.send_rc = rc;
  assert_int_equal(workflow_cancel(&r->b, wf->id, true, err, sizeof err), 0);
  assert_int_equal(wf->status, WF_ROLLING_BACK);
  assert_int_equal(r->node.busy, 1); /* the step holds its slot until it ends */
  assert_true(wf->rollback->waiting);
  step_failed_for_good(r, wf, 1, "cancelled");
  assert_int_equal(r->node.busy, 0);
  return wf;
}

static const char *const FAN_PLAN = "[PLAN]\n## Workflow: Two at once\n### Step 1: Write a\n- Agent: tester\n"
                                    "- Tool: write_file_tool\n- Arguments: {\"path\": \"a.txt\", \"content\": \"a\"}\n"
                                    "### Step 2: Write b\n- Agent: tester\n"
                                    "- Tool: write_file_tool\n- Arguments: {\"path\": \"b.txt\", \"content\": \"b\"}\n"
                                    "[/PLAN]";

/* Step 1 fails for good while step 2 still runs: the rollback waits for step
 * 2 to end, then undoes its change too (before, it was abandoned and its
 * change landed after the rollback). */
static void a_rollback_waits_for_a_step_still_running(void **state) {
  rig_t *r = *state;
  workflow_on_answer(&r->b, "main", FAN_PLAN);
  workflow_t *wf = r->b.workflows;
  char err[256] = "";
  assert_int_equal(workflow_approve(&r->b, wf->id, NULL, err, sizeof err), 0);
  assert_int_equal(wf->steps[0].status, STEP_RUNNING);
  assert_int_equal(wf->steps[1].status, STEP_RUNNING);
  assert_int_equal(r->node.busy, 2);
  step_failed_for_good(r, wf, 1, "tool_error");
  assert_int_equal(wf->status, WF_ROLLING_BACK);
  assert_non_null(event("workflow_rolling_back"));
  assert_int_equal(wf->steps[1].status, STEP_RUNNING);
  assert_int_equal(out.last_type, PROTO_STEP_ACK); /* no restore yet */
  workflow_timer(&r->b, 0);
  assert_int_equal(out.last_type, PROTO_STEP_ACK);
  /* step 2 writes b.txt (its checkpoint), then ends */
  assert_int_equal(store_checkpoint_add(r->b.store, wf->id, 2, 1, 1, "file", "b.txt", 0, NULL, "", 0), 0);
  proto_msg_t *m = wf_step_msg(PROTO_STEP_DONE, wf->id, 2, 1);
  proto_set_str(m, PROTO_F_text, "written");
  workflow_on_node_msg(&r->b, &r->node, m);
  proto_msg_destroy(&m);
  assert_int_equal(wf->steps[1].status, STEP_DONE);
  assert_int_equal(r->node.busy, 0);
  assert_int_equal(out.last_type, PROTO_RESTORE); /* b.txt is removed */
  assert_int_equal(wf->rollback->n_ops, 1);
  assert_string_equal(wf->rollback->ops[0].path, "b.txt");
  restored(r, wf, 1, "");
  assert_int_equal(wf->status, WF_FAILED);
  json_t *done = json_object_get(wf->report.rollback, "restored");
  assert_int_equal(json_array_size(done), 1);
}

static void a_restore_the_node_did_not_get_is_sent_again(void **state) {
  rig_t *r = *state;
  workflow_t *wf = cancel_after_a_change(r, -EAGAIN);
  assert_int_equal(wf->status, WF_ROLLING_BACK);
  assert_null(wf->rollback->sent_to); /* not sent: nobody waits for an answer */
  int sends = out.sends;
  out.send_rc = 0;
  workflow_timer(&r->b, 0);
  assert_int_equal(out.sends, sends + 1);
  assert_int_equal(out.last_type, PROTO_RESTORE);
  assert_string_equal(wf->rollback->sent_to, "node-a");
  restored(r, wf, 1, "sha-old");
  assert_int_equal(wf->status, WF_CANCELLED);
}

static void a_restore_too_large_to_send_is_reported(void **state) {
  rig_t *r = *state;
  workflow_t *wf = cancel_after_a_change(r, -EMSGSIZE);
  assert_int_equal(wf->status, WF_CANCELLED); /* the rollback still ends */
  json_t *mm = json_object_get(wf->report.rollback, "mismatches");
  assert_int_equal(json_array_size(mm), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(mm, 0), "error")), "too_large");
  assert_string_equal(json_string_value(json_object_get(json_array_get(mm, 0), "path")), "a.txt");
}

/* A broker restarted on a state directory written before workflow_t carries on. */
static void a_restart_on_an_old_state_dir_carries_on(void **state) {
  rig_t *r = *state;
  json_t *done = load(OLD_DOC), *pending = load(OLD_PENDING);
  json_t *running = load(OLD_DOC);
  json_object_set_new(running, "status", json_string("running"));
  json_object_del(running, "report");
  json_object_del(running, "finished_ms");
  json_t *st2 = json_object_get(json_object_get(running, "steps"), "2");
  json_object_set_new(st2, "status", json_string("running"));
  json_object_set_new(st2, "attempts", json_integer(1));
  json_object_del(done, "id"), json_object_del(running, "id");
  assert_true(store_workflow_insert(r->b.store, done) > 0);
  assert_true(store_workflow_insert(r->b.store, pending) > 0);
  int64_t run_id = store_workflow_insert(r->b.store, running);
  assert_true(run_id > 0);
  json_decref(done), json_decref(pending), json_decref(running);

  assert_int_equal(workflow_start(&r->b), 0);
  workflow_t *a = r->b.workflows, *b = a ? a->next : NULL, *c = b ? b->next : NULL;
  assert_non_null(c);
  assert_int_equal(a->status, WF_FAILED);
  assert_int_equal(b->status, WF_INVALID);
  assert_int_equal(c->id, run_id);
  /* step 2 was in flight on node n1: it waits for n1 to say whether it still has it */
  assert_int_equal(c->steps[1].status, STEP_RUNNING);
  assert_true(c->steps[1].lost_ms > 0);
  peer_t n1 = {.role = PEER_NODE, .name = "n1", .workspace = "/tmp/ws", .slots = 1};
  json_t *none = json_array();
  workflow_on_heartbeat(&r->b, &n1, none); /* n1 came back without it */
  json_decref(none);
  /* so it runs again (on node-a, the workflow being running), checking the ledger first */
  assert_int_equal(c->steps[1].status, STEP_RUNNING);
  assert_false(c->steps[1].was_running);
  assert_int_equal(c->steps[1].attempts, 2);
  json_t *list = workflow_list(&r->b);
  assert_int_equal(json_array_size(list), 3);
  json_decref(list);
  /* and the workflow goes on: step 2 starts on the node */
  c->status = WF_RUNNING;
  workflow_tick(&r->b, 0);
  assert_int_equal(c->steps[1].status, STEP_RUNNING);
  assert_int_equal(c->steps[1].attempts, 2);
  assert_int_equal(r->node.busy, 1);
}

/* ---- exactly once: a node's heartbeat after it (or the broker) came back ----------------- */

typedef struct {
  const char *name;
  const char *held; /* the heartbeat's steps, as JSON (the step runs as workflow 1, step 1, attempt 1) */
  bool lost;        /* the step waited for its node */
  wf_step_status_t step;
  int attempts; /* of the step afterwards (2: it ran again) */
  int busy;     /* the node's slots afterwards */
  bool ack;     /* a step_ack went out */
} heartbeat_case_t;

static const heartbeat_case_t heartbeat_cases[] = {
    {"still running there: it goes on", "[{\"workflow\": 1, \"step\": 1, \"attempt\": 1, \"done\": false}]", true,
     STEP_RUNNING, 1, 1, false},
    {"finished there: its result comes again", "[{\"workflow\": 1, \"step\": 1, \"attempt\": 1, \"done\": true}]", true,
     STEP_RUNNING, 1, 1, false},
    {"came back without it: runs again", "[]", true, STEP_RUNNING, 2, 1, false},
    {"an older attempt held: runs again", "[{\"workflow\": 1, \"step\": 1, \"attempt\": 7, \"done\": false}]", true,
     STEP_RUNNING, 2, 1, false},
    {"not waiting: a list without it changes nothing", "[]", false, STEP_RUNNING, 1, 0, false},
    {"a held result nothing waits for is acknowledged again",
     "[{\"workflow\": 1, \"step\": 1, \"attempt\": 7, \"done\": true}]", false, STEP_RUNNING, 1, 0, true},
};

static void a_node_that_comes_back_says_what_it_holds(void **state) {
  for (size_t i = 0; i < sizeof heartbeat_cases / sizeof heartbeat_cases[0]; i++) {
    const heartbeat_case_t *c = &heartbeat_cases[i];
    rig_setup(state);
    rig_t *r = *state;
    workflow_t *wf = run_tool_plan(r, 0);
    wf_step_t *s = &wf->steps[0];
    r->node.busy = 0; /* as a node that registered again */
    s->lost_ms = c->lost ? 1 : 0;
    json_t *held = load(c->held);
    out.sends = 0;
    out.last_type = PROTO_HELLO;
    workflow_on_heartbeat(&r->b, &r->node, held);
    json_decref(held);
    if (s->status != c->step || s->attempts != c->attempts)
      fail_msg("%s: step %s, attempts %d", c->name, wf_step_status_name(s->status), s->attempts);
    if (s->status == STEP_RUNNING && s->lost_ms)
      fail_msg("%s: the step still waits for its node", c->name);
    if (r->node.busy != c->busy)
      fail_msg("%s: busy %d, want %d", c->name, r->node.busy, c->busy);
    if ((out.last_type == PROTO_STEP_ACK) != c->ack)
      fail_msg("%s: step_ack %s", c->name, c->ack ? "not sent" : "sent");
    rig_teardown(state);
  }
}

/* A node that does not come back within the grace period: the step runs again. */
static void a_node_that_stays_away_gives_the_step_up(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, 0);
  r->node.dead = true;
  workflow_node_lost(&r->b, &r->node);
  assert_int_equal(wf->steps[0].status, STEP_RUNNING); /* waits for it */
  workflow_timer(&r->b, 0);
  assert_int_equal(wf->steps[0].status, STEP_RUNNING); /* not yet */
  wf->steps[0].lost_ms -= 3600 * 1000;
  workflow_timer(&r->b, 0);
  assert_int_equal(wf->steps[0].status, STEP_PENDING);
  assert_true(wf->steps[0].was_running);
}

/* step_done is acknowledged once it is on disk, and a repeat again (the node forgets it). */
static void a_result_is_acknowledged_and_a_repeat_too(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, 0);
  for (int i = 0; i < 2; i++) {
    proto_msg_t *m = wf_step_msg(PROTO_STEP_DONE, wf->id, 1, 1);
    proto_set_str(m, PROTO_F_text, "ok");
    out.last_type = PROTO_HELLO;
    workflow_on_node_msg(&r->b, &r->node, m);
    proto_msg_destroy(&m);
    assert_int_equal(out.last_type, PROTO_STEP_ACK);
    assert_int_equal(wf->steps[0].status, STEP_DONE);
  }
  assert_int_equal(wf->status, WF_DONE);
  assert_int_equal(r->node.busy, 0);
}

/* A result sent again by a node that came back ends the step that waited for it, before any heartbeat. */
static void a_result_sent_again_ends_a_step_that_waits_for_its_node(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, 0);
  workflow_node_lost(&r->b, &r->node);
  assert_true(wf->steps[0].lost_ms > 0);
  r->node.busy = 0; /* registered again */
  proto_msg_t *m = wf_step_msg(PROTO_STEP_FAILED, wf->id, 1, 1);
  proto_set_str(m, PROTO_F_code, "tool_error");
  proto_set_str(m, PROTO_F_detail, "boom");
  workflow_on_node_msg(&r->b, &r->node, m);
  proto_msg_destroy(&m);
  assert_int_equal(wf->steps[0].status, STEP_RETRYING);
  assert_int_equal(wf->steps[0].lost_ms, 0);
  assert_int_equal(out.last_type, PROTO_STEP_ACK);
  workflow_tick(&r->b, wf->steps[0].next_try_ms); /* the retry runs normally: nothing waits for a node */
  assert_int_equal(wf->steps[0].status, STEP_RUNNING);
  assert_int_equal(wf->steps[0].lost_ms, 0);
}

/* A step that ran with a snapshot and must run again: its snapshot's restores go first, then the step. */
static void a_step_that_ran_is_restored_to_its_snapshot_before_it_runs_again(void **state) {
  rig_t *r = *state;
  workflow_t *wf = run_tool_plan(r, 0);
  assert_int_equal(
      store_checkpoint_add(r->b.store, wf->id, 1, 1, 1, "snapshot_file", "a.txt", 1, "b2xk", "sha-a", 0644), 0);
  assert_int_equal(store_checkpoint_add(r->b.store, wf->id, 1, 1, 2, "snapshot_end", NULL, 0, NULL, NULL, 0), 0);
  workflow_node_lost(&r->b, &r->node);
  r->node.busy = 0;
  json_t *none = json_array();
  workflow_on_heartbeat(&r->b, &r->node, none); /* it came back without the step */
  json_decref(none);
  wf_step_t *s = &wf->steps[0];
  assert_int_equal(s->status, STEP_PENDING);
  assert_non_null(wf->rollback);
  assert_int_equal(wf->rollback->rerun_step, 1);
  assert_int_equal(wf->rollback->n_ops, 2); /* the prune, then a.txt */
  assert_int_equal(out.last_type, PROTO_RESTORE);
  workflow_tick(&r->b, 0);
  assert_int_equal(s->status, STEP_PENDING); /* not while it is restored */
  restored(r, wf, 1, NULL);
  restored(r, wf, 2, "sha-a");
  assert_null(wf->rollback);
  assert_int_equal(wf->status, WF_RUNNING);
  assert_int_equal(s->status, STEP_RUNNING);
  assert_int_equal(s->attempts, 2);
  assert_false(s->was_running);
  assert_int_equal(out.last_type, PROTO_STEP_RUN);
}

/* ---- the ready queue and its bookkeeping (workflow_ready.c) ---------------------------- */

typedef struct {
  int64_t step; /* its number */
  wf_step_status_t to;
} sched_op_t;

typedef struct {
  const char *name;
  size_t n;
  int64_t deps[6][4];       /* of steps 1..n, 0-terminated */
  const char *agents;       /* 'a': that step is an agent step, else a tool step ("" : all tool steps) */
  sched_op_t ops[6];        /* noted one after another, on a queue built before them */
  int64_t next_try_ms, now; /* of every retrying step; the time asked at */
  bool tools;               /* tool steps may start */
  int64_t ready[7];         /* the steps taken, in order (0-terminated) */
  size_t done, failed;
} sched_case_t;

#define P STEP_PENDING
#define R STEP_RUNNING
#define D STEP_DONE
static const sched_case_t sched_cases[] = {
    {"a chain starts at its head", 3, {{0}, {1}, {2}}, "", {{0, P}}, 0, 0, true, {1}, 0, 0},
    {"a chain: next once one is done", 3, {{0}, {1}, {2}}, "", {{1, R}, {1, D}}, 0, 0, true, {2}, 1, 0},
    {"a fan opens at once", 4, {{0}, {1}, {1}, {1}}, "", {{1, D}}, 0, 0, true, {2, 3, 4}, 1, 0},
    {"a join waits for both", 4, {{0}, {1}, {1}, {2, 3}}, "", {{1, D}, {2, D}}, 0, 0, true, {3}, 2, 0},
    {"a join once both are", 4, {{0}, {1}, {1}, {2, 3}}, "", {{1, D}, {2, D}, {3, D}}, 0, 0, true, {4}, 3, 0},
    {"a missing dependency never is done", 2, {{0}, {9}}, "", {{1, D}}, 0, 0, true, {0}, 1, 0},
    {"a failed step blocks and is counted", 2, {{0}, {1}}, "", {{1, STEP_FAILED}}, 0, 0, true, {0}, 0, 1},
    {"a retry not yet due waits", 2, {{0}, {1}}, "", {{1, STEP_RETRYING}}, 5000, 4999, true, {0}, 0, 0},
    {"a retry that is due runs", 2, {{0}, {1}}, "", {{1, STEP_RETRYING}}, 5000, 5000, true, {1}, 0, 0},
    {"done, then undone: dependents wait", 3, {{0}, {1}, {2}}, "", {{1, D}, {1, P}}, 0, 0, true, {1}, 0, 0},
    {"no slot: agent steps still start", 3, {{0}, {0}, {0}}, " a ", {{0, P}}, 0, 0, false, {2}, 0, 0},
    {"plan order across tool and agent steps", 3, {{0}, {0}, {0}}, " a ", {{0, P}}, 0, 0, true, {1, 2, 3}, 0, 0},
    {"a started step is not taken again", 2, {{0}, {0}}, "", {{1, R}}, 0, 0, true, {2}, 0, 0},
    {"an abandoned step never starts", 2, {{0}, {0}}, "", {{2, STEP_ABANDONED}}, 0, 0, true, {1}, 0, 0},
};
#undef D
#undef R
#undef P

static void the_ready_queue_follows_each_change(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof sched_cases / sizeof sched_cases[0]; i++) {
    const sched_case_t *c = &sched_cases[i];
    wf_step_status_t st[6] = {0};
    workflow_t *wf = chain(c->n, c->deps, st);
    for (size_t k = 0; k < c->n; k++)
      wf->steps[k].tool = strlen(c->agents) > k && c->agents[k] == 'a' ? NULL : strdup("read_file");
    size_t done, failed;
    wf_sched_counts(wf, &done, &failed); /* built now: what follows is noted, not recounted */
    for (size_t k = 0; k < 6 && c->ops[k].step; k++) {
      wf_step_t *s = wf_step(wf, c->ops[k].step);
      s->status = c->ops[k].to;
      s->next_try_ms = c->next_try_ms;
      wf_sched_note(wf, s);
      if (!wf_sched_consistent(wf))
        fail_msg("%s: the bookkeeping disagrees with the statuses after change %zu", c->name, k + 1);
    }
    size_t at, n = 0;
    while (wf_sched_next(wf, c->now, c->tools, &at)) {
      if (n >= 6 || c->ready[n] != wf->steps[at].number)
        fail_msg("%s: took step %lld as number %zu", c->name, (long long)wf->steps[at].number, n + 1);
      wf->steps[at].status = STEP_RUNNING; /* as the engine starts it */
      wf_sched_note(wf, &wf->steps[at]);
      n++;
    }
    if (c->ready[n])
      fail_msg("%s: step %lld was not taken", c->name, (long long)c->ready[n]);
    wf_sched_counts(wf, &done, &failed);
    if (done != c->done || failed != c->failed)
      fail_msg("%s: %zu done, %zu failed", c->name, done, failed);
    assert_true(wf_sched_consistent(wf));
    workflow_destroy(&wf);
  }
}

/* A random DAG run in random order: what the queue gives is exactly what wf_step_ready says, every time. */
static void the_ready_queue_agrees_with_the_plan_on_a_random_dag(void **state) {
  (void)state;
  enum { N = 300 };
  static int64_t deps[N][4];
  wf_step_status_t st[N] = {0};
  srand(13);
  for (size_t i = 0; i < N; i++) {
    memset(deps[i], 0, sizeof deps[i]);
    for (size_t k = 0; i > 0 && k < 3; k++)
      if (rand() % 2)
        deps[i][k] = 1 + rand() % (int)i; /* an earlier step: no cycle */
  }
  workflow_t *wf = chain(N, deps, st);
  for (size_t i = 0; i < N; i++)
    wf->steps[i].tool = strdup("read_file");
  size_t running[N], n_running = 0, finished = 0, at;
  while (finished < N) {
    while (wf_sched_next(wf, 0, true, &at)) {
      assert_true(wf_step_ready(wf, &wf->steps[at], 0));
      wf->steps[at].status = STEP_RUNNING;
      wf_sched_note(wf, &wf->steps[at]);
      running[n_running++] = at;
    }
    for (size_t i = 0; i < N; i++) /* nothing ready is left behind */
      assert_false(wf_step_ready(wf, &wf->steps[i], 0));
    assert_true(n_running > 0);
    size_t pick = (size_t)rand() % n_running; /* one of them ends: done, or a retry due at once */
    wf_step_t *s = &wf->steps[running[pick]];
    running[pick] = running[--n_running];
    s->status = rand() % 5 ? STEP_DONE : STEP_RETRYING;
    finished += s->status == STEP_DONE;
    wf_sched_note(wf, s);
    assert_true(wf_sched_consistent(wf));
  }
  size_t done, failed;
  wf_sched_counts(wf, &done, &failed);
  assert_int_equal(done, N);
  assert_int_equal(failed, 0);
  workflow_destroy(&wf);
}

/* A node's step_done for a step of wf (attempt 1). */
static void step_done_from(rig_t *r, workflow_t *wf, int64_t step) {
  proto_msg_t *m = wf_step_msg(PROTO_STEP_DONE, wf->id, step, wf_step(wf, step)->attempts);
  proto_set_str(m, PROTO_F_text, "ok");
  workflow_on_node_msg(&r->b, &r->node, m);
  proto_msg_destroy(&m);
}

static const char *const DAG_PLAN =
    "[PLAN]\n## Workflow: Four reads\n"
    "### Step 1: a\n- Agent: tester\n- Tool: read_file\n- Arguments: {\"path\": \"a\"}\n"
    "### Step 2: b\n- Agent: tester\n- Tool: read_file\n- Arguments: {\"path\": \"b\"}\n- Dependencies: Step 1\n"
    "### Step 3: c\n- Agent: tester\n- Tool: read_file\n- Arguments: {\"path\": \"c\"}\n- Dependencies: Step 2\n"
    "### Step 4: d\n- Agent: tester\n- Tool: read_file\n- Arguments: {\"path\": \"d\"}\n- Dependencies: Step 1\n"
    "[/PLAN]";

/* A DAG stopped half-way (the broker's memory gone, as after kill -9) carries on from the store:
 * what was done stays done, with its result; what ran waits for its node; the rest runs. */
static void a_partly_run_dag_carries_on_from_the_store(void **state) {
  rig_t *r = *state;
  workflow_on_answer(&r->b, "main", DAG_PLAN);
  workflow_t *wf = r->b.workflows;
  assert_non_null(wf);
  assert_int_equal(wf->n_steps, 4);
  char err[256];
  assert_int_equal(workflow_approve(&r->b, wf->id, NULL, err, sizeof err), 0);
  int64_t id = wf->id;
  step_done_from(r, wf, 1); /* 2 and 4 start */
  assert_int_equal(wf_step(wf, 2)->status, STEP_RUNNING);
  assert_int_equal(wf_step(wf, 4)->status, STEP_RUNNING);
  json_t *ev = event("step_done"); /* the event carries its step alone */
  assert_non_null(ev);
  assert_int_equal(json_array_size(json_object_get(ev, "steps")), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(ev, "steps"), 0), "number")), 1);
  json_t *whole = wf_to_wire(wf); /* the per-step estimates too: the plans verb has all four, the event its own */
  assert_int_equal(json_array_size(json_object_get(json_object_get(whole, "estimate"), "steps")), 4);
  json_decref(whole);
  const json_t *est = json_object_get(json_object_get(ev, "estimate"), "steps");
  assert_int_equal(json_array_size(est), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(est, 0), "number")), 1);
  step_done_from(r, wf, 4);
  /* each change was one row, laid over the document (which has none) on load */
  json_t *docs = store_workflows(r->b.store);
  json_t *st = json_object_get(json_object_get(json_array_get(docs, 0), "steps"), "4");
  assert_string_equal(json_string_value(json_object_get(st, "status")), "done");
  assert_string_equal(json_string_value(json_object_get(json_array_get(docs, 0), "status")), "running");
  json_decref(docs);

  workflow_stop(&r->b); /* gone without a word */
  r->node.busy = 0;
  assert_int_equal(workflow_start(&r->b), 0);
  wf = r->b.workflows;
  assert_non_null(wf);
  assert_int_equal(wf->id, id);
  assert_int_equal(wf->status, WF_RUNNING);
  assert_int_equal(wf_step(wf, 1)->status, STEP_DONE);
  assert_string_equal(wf_step(wf, 1)->result, "ok");
  assert_int_equal(wf_step(wf, 4)->status, STEP_DONE);
  assert_int_equal(wf_step(wf, 2)->status, STEP_RUNNING);
  assert_true(wf_step(wf, 2)->lost_ms > 0); /* waits for its node to say */
  assert_int_equal(wf_step(wf, 3)->status, STEP_PENDING);
  json_t *held = load("[{\"workflow\": 1, \"step\": 2, \"attempt\": 1, \"done\": false}]");
  workflow_on_heartbeat(&r->b, &r->node, held); /* the node still runs it */
  json_decref(held);
  assert_int_equal(wf_step(wf, 2)->status, STEP_RUNNING);
  assert_int_equal(wf_step(wf, 2)->attempts, 1);
  step_done_from(r, wf, 2);
  assert_int_equal(wf_step(wf, 3)->status, STEP_RUNNING);
  assert_true(wf_sched_consistent(wf));
  step_done_from(r, wf, 3);
  assert_int_equal(wf->status, WF_DONE);
  assert_int_equal(r->node.busy, 0);
  /* neither the approval nor the end rewrote the document: its plan has no step states */
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_prepare_v2(store_sqlite(r->b.store),
                                      "SELECT json_extract(doc, '$.steps'), "
                                      "(SELECT count(*) FROM workflow_steps) FROM workflows",
                                      -1, &q, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), "{}");
  assert_int_equal(sqlite3_column_int(q, 1), 4);
  sqlite3_finalize(q);
  /* and once more from the store: the finished workflow, every step done */
  workflow_stop(&r->b);
  assert_int_equal(workflow_start(&r->b), 0);
  wf = r->b.workflows;
  assert_int_equal(wf->status, WF_DONE);
  for (int64_t k = 1; k <= 4; k++)
    assert_int_equal(wf_step(wf, k)->status, STEP_DONE);
}

/* A step that first changed after a restart is kept by a whole save of the document (a rollback's
 * start makes one): its row is folded in, not dropped (it was, for a step with no row at the load). */
static void a_whole_save_after_a_restart_keeps_every_step(void **state) {
  rig_t *r = *state;
  workflow_on_answer(&r->b, "main", DAG_PLAN);
  workflow_t *wf = r->b.workflows;
  char err[256];
  assert_int_equal(workflow_approve(&r->b, wf->id, NULL, err, sizeof err), 0);
  step_done_from(r, wf, 1); /* 2 and 4 run; 3 has no row yet */
  workflow_stop(&r->b);
  r->node.busy = 0;
  assert_int_equal(workflow_start(&r->b), 0);
  wf = r->b.workflows;
  json_t *held = load("[{\"workflow\": 1, \"step\": 2, \"attempt\": 1, \"done\": false}]");
  workflow_on_heartbeat(&r->b, &r->node, held);
  json_decref(held);
  step_done_from(r, wf, 2);
  assert_int_equal(wf_step(wf, 3)->status, STEP_RUNNING);
  assert_int_equal(wf_save(&r->b, wf), 0);
  workflow_stop(&r->b);
  r->node.busy = 0;
  assert_int_equal(workflow_start(&r->b), 0);
  wf = r->b.workflows;
  assert_int_equal(wf_step(wf, 1)->status, STEP_DONE);
  assert_int_equal(wf_step(wf, 2)->status, STEP_DONE);
  assert_int_equal(wf_step(wf, 3)->status, STEP_RUNNING);
}

/* A step's row lies over whatever the document says of the step, and a head over its top level. */
typedef struct {
  const char *name;
  const char *steps; /* the document's steps member, as JSON; NULL: none (an older document) */
  bool row;          /* step 1 has a row saying done */
  const char *want;  /* step 1's status once loaded */
} overlay_case_t;

static const overlay_case_t overlay_cases[] = {
    {"no states in the document", "{}", true, "done"},
    {"no steps member at all", NULL, true, "done"},
    {"the document says running", "{\"1\": {\"status\": \"running\", \"attempts\": 1}}", true, "done"},
    {"no row: the document's", "{\"1\": {\"status\": \"running\", \"attempts\": 1}}", false, "running"},
};

static void step_rows_and_heads_lie_over_the_document(void **state) {
  rig_t *r = *state;
  for (size_t i = 0; i < sizeof overlay_cases / sizeof overlay_cases[0]; i++) {
    const overlay_case_t *c = &overlay_cases[i];
    json_t *doc = load(OLD_PENDING);
    json_object_del(doc, "steps");
    if (c->steps)
      json_object_set_new(doc, "steps", load(c->steps));
    int64_t id = store_workflow_insert(r->b.store, doc);
    json_decref(doc);
    json_t *row = load("{\"status\": \"done\", \"attempts\": 1, \"result\": \"ok\"}");
    if (c->row)
      assert_int_equal(store_workflow_step_put(r->b.store, id, 1, row), 0);
    json_decref(row);
    json_t *head = load("{\"status\": \"running\", \"workspace\": \"/tmp/ws\"}");
    assert_int_equal(store_workflow_head(r->b.store, id, head), 0);
    json_decref(head);
    json_t *all = store_workflows(r->b.store), *got = NULL;
    size_t k;
    json_t *d;
    json_array_foreach(all, k, d) if (json_integer_value(json_object_get(d, "id")) == id) got = d;
    char err[200];
    workflow_t *wf = wf_from_stored(got, err, sizeof err);
    if (!wf)
      fail_msg("%s: %s", c->name, err);
    if (strcmp(wf_step_status_name(wf->steps[0].status), c->want) != 0 || wf->status != WF_RUNNING ||
        strcmp(wf->workspace, "/tmp/ws") != 0)
      fail_msg("%s: step 1 %s, workflow %s", c->name, wf_step_status_name(wf->steps[0].status),
               wf_status_name(wf->status));
    workflow_destroy(&wf);
    json_decref(all);
  }
}

/* An agent step that a node's result lets start: its sub-agent is spawned outside the batch's transaction
 * (the stand-in agents_spawn checks), after what the batch held went out. */
static void an_agent_step_after_a_tool_step_spawns_outside_the_batch(void **state) {
  rig_t *r = *state;
  workflow_on_answer(&r->b, "main",
                     "[PLAN]\n### Step 1: a\n- Agent: tester\n- Tool: read_file\n- Arguments: {\"path\": \"a\"}\n"
                     "### Step 2: b\n- Agent: tester\n- Dependencies: Step 1\n[/PLAN]");
  workflow_t *wf = r->b.workflows;
  char err[256];
  assert_int_equal(workflow_approve(&r->b, wf->id, NULL, err, sizeof err), 0);
  step_done_from(r, wf, 1);
  assert_int_equal(wf_step(wf, 2)->status, STEP_RUNNING);
  assert_string_equal(wf_step(wf, 2)->agent_session, "tester-1");
  assert_int_equal(out.last_type, PROTO_STEP_ACK); /* step 1's result was acknowledged (before the spawn) */
  assert_true(sqlite3_get_autocommit(store_sqlite(r->b.store)));
  assert_true(wf_sched_consistent(wf));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(status_names_round_trip),
      cmocka_unit_test(the_ready_queue_follows_each_change),
      cmocka_unit_test(the_ready_queue_agrees_with_the_plan_on_a_random_dag),
      cmocka_unit_test_setup_teardown(a_partly_run_dag_carries_on_from_the_store, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_whole_save_after_a_restart_keeps_every_step, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(step_rows_and_heads_lie_over_the_document, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(an_agent_step_after_a_tool_step_spawns_outside_the_batch, rig_setup,
                                      rig_teardown),
      cmocka_unit_test(transitions_follow_the_table),
      cmocka_unit_test(readiness_follows_dependencies),
      cmocka_unit_test(a_missing_dependency_is_never_done),
      cmocka_unit_test(failed_attempts_back_off_then_fail),
      cmocka_unit_test(old_document_loads_typed),
      cmocka_unit_test(stored_form_round_trips_losslessly),
      cmocka_unit_test(bad_documents_are_refused_with_a_reason),
      cmocka_unit_test(wire_form_is_what_controllers_got),
      cmocka_unit_test(documents_written_before_load_and_show_the_same),
      cmocka_unit_test(parsed_plans_convert_once_and_back),
      cmocka_unit_test_setup_teardown(a_sent_step_runs_on_its_node, rig_setup, rig_teardown),
      cmocka_unit_test(a_step_whose_send_fails_does_not_hold_the_slot),
      cmocka_unit_test_setup_teardown(a_retried_step_runs_once_the_node_takes_it, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_queue_that_stays_full_fails_the_workflow, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_rollback_undoes_the_change, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_restore_the_node_did_not_get_is_sent_again, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_rollback_waits_for_a_step_still_running, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_restore_too_large_to_send_is_reported, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_restart_on_an_old_state_dir_carries_on, rig_setup, rig_teardown),
      cmocka_unit_test(a_node_that_comes_back_says_what_it_holds),
      cmocka_unit_test_setup_teardown(a_node_that_stays_away_gives_the_step_up, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_result_is_acknowledged_and_a_repeat_too, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_result_sent_again_ends_a_step_that_waits_for_its_node, rig_setup, rig_teardown),
      cmocka_unit_test_setup_teardown(a_step_that_ran_is_restored_to_its_snapshot_before_it_runs_again, rig_setup,
                                      rig_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
