/* workflow.c: the workflow engine. A [PLAN] in an agent's answer becomes a
 * stored plan; once approved it runs as a workflow: steps in dependency
 * order, independent ones at the same time on the nodes of one workspace;
 * tool steps run on nodes (step_run), agent steps by sub-agents whose summary
 * is the step's result. Before a step changes anything the node sends the
 * pre-image (checkpoint) and waits until it is stored. A failed step is
 * retried; a workflow that fails for good, or is cancelled with rollback, has
 * its changes undone in reverse order, each verified by content hash.
 *
 * Every workflow is one JSON document in the store, rewritten on each change:
 *   {session, status, plan, errors, estimate, workspace, created_ms,
 *    started_ms, finished_ms, steps: {"N": {status, attempts, node, agent,
 *    started_ms, finished_ms, result, error, next_try_ms, history: [...]}},
 *    report}
 * status: pending, invalid, rejected, running, paused, done, failed,
 * cancelled; a rollback adds report.rollback.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "workflow_int.h"
#include "log.h"
#include "plan.h"
#include "summary.h"
#include "util.h"

#define MAX_ATTEMPTS 3
#define RETRY_BASE_MS 1000
#define AGENT_STEP_TOKENS_IN 4000
#define AGENT_STEP_TOKENS_OUT 1000

/* ---- documents ---------------------------------------------------------- */

json_t *wf_get(broker_t *b, int64_t id) {
  char key[32];
  snprintf(key, sizeof key, "%lld", (long long)id);
  return json_object_get(b->workflows, key);
}

int64_t wf_id(const json_t *doc) {
  return json_integer_value(json_object_get(doc, "id"));
}

const char *wf_status(const json_t *doc) {
  const char *s = json_string_value(json_object_get(doc, "status"));
  return s ? s : "?";
}

bool status_is(const json_t *doc, const char *s) {
  return strcmp(wf_status(doc), s) == 0;
}

void wf_save(broker_t *b, json_t *doc) {
  if (store_workflow_update(b->store, wf_id(doc), doc) < 0)
    log_error("state: cannot save workflow %lld: %s", (long long)wf_id(doc), store_errmsg(b->store));
}

static json_t *step_state(json_t *doc, int64_t number) {
  char key[32];
  snprintf(key, sizeof key, "%lld", (long long)number);
  return json_object_get(json_object_get(doc, "steps"), key);
}

const char *wf_str(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

/* The view controllers get: the plan with each step's state, and estimates. */
json_t *wf_view(const json_t *doc) {
  const json_t *plan = json_object_get(doc, "plan");
  json_t *steps = json_array();
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(plan, "steps"), i, s) {
    json_t *v = json_deep_copy(s);
    json_t *st = step_state((json_t *)doc, json_integer_value(json_object_get(s, "number")));
    json_object_set_new(v, "status", json_string(st ? wf_str(st, "status") : "pending"));
    json_object_set_new(v, "attempts", json_integer(st ? json_integer_value(json_object_get(st, "attempts")) : 0));
    if (st) {
      const char *keys[] = {"result", "error", "node", "agent_session", "started_ms", "finished_ms", "usage"};
      for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (json_object_get(st, keys[k]))
          json_object_set(v, keys[k], json_object_get(st, keys[k]));
    }
    json_array_append_new(steps, v);
  }
  json_t *out = json_pack("{s:I, s:O?, s:s, s:O?, s:o, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "id",
                          (json_int_t)wf_id(doc), "title", json_object_get(plan, "title"), "status", wf_status(doc),
                          "estimate", json_object_get(doc, "estimate"), "steps", steps, "errors",
                          json_object_get(doc, "errors"), "session", json_object_get(doc, "session"), "workspace",
                          json_object_get(doc, "workspace"), "created_ms", json_object_get(doc, "created_ms"),
                          "started_ms", json_object_get(doc, "started_ms"), "finished_ms",
                          json_object_get(doc, "finished_ms"), "report", json_object_get(doc, "report"));
  return out;
}

void wf_event(broker_t *b, const char *kind, json_t *doc, json_t *extra) {
  json_t *payload = wf_view(doc);
  if (extra) {
    json_object_update(payload, extra);
    json_decref(extra);
  }
  broker_event(b, kind, NULL, 0, payload);
}

/* ---- plans: detection, validation, estimates ----------------------------- */

/* Roles in the config, and node tools with their required arguments. */
static json_t *known_roles(broker_t *b) {
  json_t *roles = json_array();
  for (size_t i = 0; i < b->opts.config->n_profiles; i++)
    json_array_append_new(roles, json_string(b->opts.config->profiles[i].role));
  return roles;
}

static json_t *known_tools(void) {
  return json_pack("{s:[s], s:[s], s:[s, s], s:[s, s, s], s:[], s:[s]}", "execute_bash", "command", "read_file", "path",
                   "write_file_tool", "path", "content", "edit_file", "path", "old_string", "new_string", "list_files",
                   "grep", "pattern");
}

static json_t *estimate(broker_t *b, const json_t *plan) {
  double cost = 0;
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(plan, "steps"), i, s) {
    if (!json_is_null(json_object_get(s, "tool")) && json_object_get(s, "tool"))
      continue; /* a tool step calls no model */
    const cadre_profile_t *p = config_profile_for_role(b->opts.config, wf_str(s, "agent") ? wf_str(s, "agent") : "");
    if (p)
      cost += (AGENT_STEP_TOKENS_IN * p->cost_per_1m_input + AGENT_STEP_TOKENS_OUT * p->cost_per_1m_output) / 1e6;
  }
  double secs = plan_critical_seconds(plan);
  return json_pack("{s:f, s:f, s:f}", "seconds", secs < 0 ? 0 : secs, "cost", cost, "tokens_per_agent_step",
                   (double)(AGENT_STEP_TOKENS_IN + AGENT_STEP_TOKENS_OUT));
}

/* Validates and estimates a plan into the document; status pending or invalid. */
void assess(broker_t *b, json_t *doc) {
  json_t *roles = known_roles(b), *tools = known_tools();
  json_t *errors = plan_validate(json_object_get(doc, "plan"), roles, tools);
  json_decref(roles);
  json_decref(tools);
  json_object_set_new(doc, "errors", errors ? errors : json_array());
  json_object_set_new(doc, "estimate", estimate(b, json_object_get(doc, "plan")));
  json_object_set_new(doc, "status", json_string(json_array_size(errors) ? "invalid" : "pending"));
  char *text = plan_format(json_object_get(doc, "plan"), json_object_get(doc, "estimate"));
  json_object_set_new(doc, "text", json_string(text ? text : ""));
  free(text);
}

/* Stores a new plan from an agent's answer (or a template) and announces it. */
json_t *propose(broker_t *b, const char *session, json_t *plan, const char *origin) {
  json_t *doc = json_pack("{s:s, s:o, s:I, s:o, s:s}", "session", session, "plan", plan, "created_ms",
                          (json_int_t)util_wall_ms(), "steps", json_object(), "origin", origin);
  assess(b, doc);
  int64_t id = store_workflow_insert(b->store, doc);
  if (id < 0) {
    log_error("state: cannot store a plan: %s", store_errmsg(b->store));
    json_decref(doc);
    return NULL;
  }
  json_object_set_new(doc, "id", json_integer(id));
  char key[32];
  snprintf(key, sizeof key, "%lld", (long long)id);
  json_object_set_new(b->workflows, key, doc);
  log_info("plan %lld from %s: \"%s\", %zu steps, %s", (long long)id, origin, wf_str(json_object_get(doc, "plan"), "title"),
           json_array_size(json_object_get(json_object_get(doc, "plan"), "steps")), wf_status(doc));
  wf_event(b, "plan_proposed", doc, json_pack("{s:O}", "text", json_object_get(doc, "text")));
  return doc;
}

void workflow_on_answer(broker_t *b, const char *session, const char *content) {
  if (!content || !strstr(content, "[PLAN]") ) {
    if (!content || !strcasestr(content, "[plan]"))
      return;
  }
  char err[256];
  json_t *plan = plan_parse(content, err, sizeof err);
  if (!plan) {
    broker_event(b, "plan_rejected", session, 0, json_pack("{s:s}", "detail", err));
    return;
  }
  propose(b, session, plan, session);
}

/* ---- running steps ----------------------------------------------------- */

static bool deps_done(const json_t *doc, const json_t *step) {
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(step, "dependencies"), i, d) {
    json_t *st = step_state((json_t *)doc, json_integer_value(d));
    if (!st || strcmp(wf_str(st, "status"), "done") != 0)
      return false;
  }
  return true;
}

static peer_t *pick_workspace_node(broker_t *b, const char *workspace) {
  peer_t *best = NULL;
  for (peer_t *n = b->peers; n; n = n->next) {
    if (n->dead || n->role != PEER_NODE || !workspace || strcmp(n->workspace, workspace) != 0)
      continue;
    if (n->busy < n->slots && (!best || n->slots - n->busy > best->slots - best->busy))
      best = n;
  }
  return best;
}

static void history_add(json_t *st, const char *what, const char *detail) {
  json_t *h = json_object_get(st, "history");
  if (!h) {
    h = json_array();
    json_object_set_new(st, "history", h);
  }
  json_array_append_new(h, json_pack("{s:I, s:I, s:s, s:s?}", "attempt", json_object_get(st, "attempts") ?
                                     json_integer_value(json_object_get(st, "attempts")) : 0, "at_ms",
                                     (json_int_t)util_wall_ms(), "what", what, "detail", detail));
}

/* The last file checkpoint of a step, for the exactly-once check after a restart. */
static json_t *applied_check(broker_t *b, int64_t wf, int64_t step) {
  json_t *cps = store_checkpoints(b->store, wf, false), *found = NULL;
  size_t i;
  json_t *c;
  json_array_foreach(cps, i, c) if (json_integer_value(json_object_get(c, "step")) == step &&
                                    strcmp(wf_str(c, "kind"), "file") == 0) found = c;
  json_t *out = found ? json_pack("{s:O, s:s}", "path", json_object_get(found, "path"), "sha256",
                                  wf_str(found, "sha256") ? wf_str(found, "sha256") : "")
                      : NULL;
  json_decref(cps);
  return out;
}

static int start_tool_step(broker_t *b, json_t *doc, const json_t *step, json_t *st) {
  peer_t *node = pick_workspace_node(b, wf_str(doc, "workspace"));
  if (!node)
    return -1; /* waits for a free slot */
  int64_t number = json_integer_value(json_object_get(step, "number"));
  int attempt = (int)json_integer_value(json_object_get(st, "attempts")) + 1;
  proto_msg_t *m = proto_msg_new(PROTO_STEP_RUN);
  if (!m)
    return -1;
  PROTO_SET(m, workflow, wf_id(doc));
  PROTO_SET(m, step, number);
  PROTO_SET(m, attempt, attempt);
  proto_set_str(m, PROTO_F_kind, wf_str(step, "tool"));
  json_t *args = json_object_get(step, "arguments");
  proto_set_json(m, PROTO_F_args, json_is_object(args) ? json_incref(args) : json_object());
  json_t *check = json_is_true(json_object_get(st, "was_running")) ? applied_check(b, wf_id(doc), number) : NULL;
  if (check)
    proto_set_json(m, PROTO_F_payload, json_pack("{s:o}", "applied_check", check));
  json_object_set_new(st, "attempts", json_integer(attempt));
  json_object_set_new(st, "status", json_string("running"));
  json_object_set_new(st, "node", json_string(node->name));
  json_object_set_new(st, "started_ms", json_integer(util_wall_ms()));
  json_object_del(st, "was_running");
  history_add(st, "started", node->name);
  wf_save(b, doc); /* persisted before it is acted on */
  node->busy++;
  broker_send(b, node, m);
  proto_msg_destroy(&m);
  wf_event(b, "step_started", doc, json_pack("{s:I, s:i, s:s}", "step", (json_int_t)number, "attempt", attempt, "node",
                                            node->name));
  return 0;
}

static int start_agent_step(broker_t *b, json_t *doc, const json_t *step, json_t *st) {
  int64_t number = json_integer_value(json_object_get(step, "number"));
  const char *title = wf_str(step, "title") ? wf_str(step, "title") : "";
  const char *desc = wf_str(step, "description");
  char *args = json_object_get(step, "arguments") ? json_dumps(json_object_get(step, "arguments"), JSON_COMPACT) : NULL;
  size_t n = strlen(title) + (desc ? strlen(desc) : 0) + (args ? strlen(args) : 0) + 256;
  char *task = malloc(n);
  snprintf(task, n, "Workflow \"%s\", step %lld: %s%s%s%s%s", wf_str(json_object_get(doc, "plan"), "title") ?: "",
           (long long)number, title, desc ? "\n" : "", desc ? desc : "", args ? "\nArguments: " : "", args ? args : "");
  char id[128], err[256];
  int rc = agents_spawn(b, wf_str(step, "agent") ? wf_str(step, "agent") : "", false, task, wf_str(doc, "session"), NULL, id,
                        sizeof id, err, sizeof err);
  free(task);
  free(args);
  int attempt = (int)json_integer_value(json_object_get(st, "attempts")) + 1;
  json_object_set_new(st, "attempts", json_integer(attempt));
  if (rc < 0) {
    json_object_set_new(st, "status", json_string("failed"));
    json_object_set_new(st, "error", json_string(err));
    history_add(st, "failed", err);
    wf_save(b, doc);
    return 0;
  }
  store_session_set_step(b->store, id, wf_id(doc), number);
  json_object_set_new(st, "status", json_string("running"));
  json_object_set_new(st, "agent_session", json_string(id));
  json_object_set_new(st, "started_ms", json_integer(util_wall_ms()));
  history_add(st, "started", id);
  wf_save(b, doc);
  wf_event(b, "step_started", doc, json_pack("{s:I, s:i, s:s}", "step", (json_int_t)number, "attempt", attempt,
                                            "agent", id));
  return 0;
}

static bool is_tool_step(const json_t *step) {
  return json_is_string(json_object_get(step, "tool"));
}

static void step_failed(broker_t *b, json_t *doc, int64_t number, const char *detail, bool retryable);
void finish(broker_t *b, json_t *doc, const char *status, const char *why);
void rollback_start(broker_t *b, json_t *doc, const char *why);

/* Starts every step whose dependencies are done, as room allows. */
void advance(broker_t *b, json_t *doc, int64_t now) {
  if (!status_is(doc, "running"))
    return;
  size_t i, done = 0, total = 0;
  json_t *step;
  bool failed_for_good = false;
  json_array_foreach(json_object_get(json_object_get(doc, "plan"), "steps"), i, step) {
    total++;
    int64_t number = json_integer_value(json_object_get(step, "number"));
    json_t *st = step_state(doc, number);
    const char *s = wf_str(st, "status");
    if (strcmp(s, "done") == 0) {
      done++;
      continue;
    }
    if (strcmp(s, "failed") == 0) {
      failed_for_good = true;
      continue;
    }
    bool ready = strcmp(s, "pending") == 0 ||
                 (strcmp(s, "retrying") == 0 && json_integer_value(json_object_get(st, "next_try_ms")) <= now);
    if (!ready || !deps_done(doc, step))
      continue;
    if (is_tool_step(step))
      start_tool_step(b, doc, step, st);
    else
      start_agent_step(b, doc, step, st);
  }
  if (failed_for_good)
    rollback_start(b, doc, "a step failed after all its attempts");
  else if (done == total)
    finish(b, doc, "done", NULL);
}

void workflow_tick(broker_t *b, int64_t now) {
  const char *key;
  json_t *doc;
  void *tmp;
  json_object_foreach_safe(b->workflows, tmp, key, doc) advance(b, doc, now);
}

/* ---- step results -------------------------------------------------------- */

static json_t *running_step(broker_t *b, peer_t *from, const proto_msg_t *m, json_t **doc_out) {
  json_t *doc = wf_get(b, m->workflow);
  json_t *st = doc ? step_state(doc, m->step) : NULL;
  if (!st || strcmp(wf_str(st, "status"), "running") != 0 || json_integer_value(json_object_get(st, "attempts")) != m->attempt ||
      !wf_str(st, "node") || strcmp(wf_str(st, "node"), from->name) != 0) {
    log_debug("ignoring %s for workflow %lld step %lld attempt %lld (stale)", proto_type_name(m->type),
              (long long)m->workflow, (long long)m->step, (long long)m->attempt);
    return NULL;
  }
  *doc_out = doc;
  return st;
}

static void step_done(broker_t *b, json_t *doc, int64_t number, const char *result) {
  json_t *st = step_state(doc, number);
  json_object_set_new(st, "status", json_string("done"));
  json_object_set_new(st, "finished_ms", json_integer(util_wall_ms()));
  json_object_set_new(st, "result", json_string(result ? result : ""));
  history_add(st, "done", NULL);
  wf_save(b, doc);
  wf_event(b, "step_done", doc, json_pack("{s:I}", "step", (json_int_t)number));
  advance(b, doc, util_now_ms());
}

static void step_failed(broker_t *b, json_t *doc, int64_t number, const char *detail, bool retryable) {
  json_t *st = step_state(doc, number);
  int attempts = (int)json_integer_value(json_object_get(st, "attempts"));
  bool retry = retryable && attempts < MAX_ATTEMPTS && status_is(doc, "running");
  json_object_set_new(st, "error", json_string(detail ? detail : "failed"));
  history_add(st, "failed", detail);
  if (retry) {
    int64_t wait = RETRY_BASE_MS << (attempts - 1);
    json_object_set_new(st, "status", json_string("retrying"));
    json_object_set_new(st, "next_try_ms", json_integer(util_now_ms() + wait));
  } else {
    json_object_set_new(st, "status", json_string("failed"));
  }
  wf_save(b, doc);
  wf_event(b, "step_failed", doc, json_pack("{s:I, s:i, s:b, s:s?}", "step", (json_int_t)number, "attempt", attempts,
                                           "will_retry", retry, "detail", detail));
  advance(b, doc, util_now_ms());
}

static void on_checkpoint(broker_t *b, peer_t *from, const proto_msg_t *m) {
  json_t *doc;
  if (!running_step(b, from, m, &doc))
    return;
  bool stored = true;
  if (strcmp(m->kind, "snapshot_end") != 0)
    stored = store_checkpoint_add(b->store, m->workflow, m->step, m->attempt, m->seq, m->kind, m->path,
                                  PROTO_HAS(m, existed) && m->existed, m->content, m->sha256,
                                  (int)json_integer_value(json_object_get(m->payload, "mode"))) == 0;
  else
    stored = store_checkpoint_add(b->store, m->workflow, m->step, m->attempt, m->seq, m->kind, NULL, 0, NULL, NULL, 0) == 0;
  if (!stored) {
    log_error("state: cannot store a checkpoint: %s", store_errmsg(b->store));
    return; /* no ack: the node does not change anything */
  }
  if (strcmp(m->kind, "snapshot_file") == 0)
    return; /* acked once, at snapshot_end */
  proto_msg_t *ack = proto_msg_new(PROTO_CHECKPOINT_ACK);
  if (!ack)
    return;
  PROTO_SET(ack, workflow, m->workflow);
  PROTO_SET(ack, step, m->step);
  PROTO_SET(ack, attempt, m->attempt);
  PROTO_SET(ack, seq, m->seq);
  broker_send(b, from, ack);
  proto_msg_destroy(&ack);
}

static void release_node(peer_t *from) {
  if (from->busy > 0)
    from->busy--;
}

static void on_step_done(broker_t *b, peer_t *from, const proto_msg_t *m) {
  json_t *doc;
  if (!running_step(b, from, m, &doc))
    return;
  release_node(from);
  if (json_is_true(json_object_get(m->payload, "is_error"))) {
    char detail[600];
    snprintf(detail, sizeof detail, "%.500s", m->text);
    step_failed(b, doc, m->step, detail, true);
    return;
  }
  json_t *st = step_state(doc, m->step);
  if (json_object_get(m->payload, "changed"))
    json_object_set(st, "changed", json_object_get(m->payload, "changed"));
  step_done(b, doc, m->step, m->text);
}

static void on_step_failed(broker_t *b, peer_t *from, const proto_msg_t *m) {
  json_t *doc;
  if (!running_step(b, from, m, &doc))
    return;
  release_node(from);
  char detail[600];
  snprintf(detail, sizeof detail, "%s: %s", m->code, m->detail);
  step_failed(b, doc, m->step, detail, strcmp(m->code, "cancelled") != 0 && (!PROTO_HAS(m, retryable) || m->retryable));
}

bool workflow_agent_summary(broker_t *b, const json_t *row, const json_t *summary) {
  const json_t *wf = json_object_get(row, "workflow");
  if (!wf)
    return false;
  json_t *doc = wf_get(b, json_integer_value(json_object_get(wf, "id")));
  int64_t number = json_integer_value(json_object_get(wf, "step"));
  json_t *st = doc ? step_state(doc, number) : NULL;
  const char *id = wf_str(row, "id");
  if (!st || strcmp(wf_str(st, "status"), "running") != 0 || !wf_str(st, "agent_session") ||
      strcmp(wf_str(st, "agent_session"), id) != 0)
    return true; /* a late summary of an old attempt: consumed, ignored */
  char *text = summary_render(id, wf_str(row, "role"), summary);
  const char *status = wf_str(summary, "status");
  if (status && strcmp(status, "FAIL") == 0)
    step_failed(b, doc, number, text, true);
  else
    step_done(b, doc, number, text);
  free(text);
  return true;
}

/* ---- the end: results back, rollback ---------------------------------------- */

static json_t *usage_of_steps(broker_t *b, const json_t *doc) {
  double cost = 0;
  json_int_t tokens = 0;
  const char *key;
  json_t *st;
  json_object_foreach(json_object_get(doc, "steps"), key, st) {
    const char *sid = wf_str(st, "agent_session");
    json_t *row = sid ? store_session(b->store, sid) : NULL;
    json_t *u = json_object_get(row, "usage");
    json_int_t t = json_integer_value(json_object_get(u, "prompt_tokens")) +
                   json_integer_value(json_object_get(u, "completion_tokens"));
    cost += json_number_value(json_object_get(u, "cost"));
    tokens += t;
    if (u) /* each step's share, for the finished summary */
      json_object_set_new(st, "usage", json_pack("{s:I, s:f}", "tokens", t, "cost", json_number_value(json_object_get(u, "cost"))));
    json_decref(row);
  }
  return json_pack("{s:I, s:f}", "tokens", tokens, "cost", cost);
}

/* The summary of a finished workflow, into the originating agent's history. */
static void results_back(broker_t *b, json_t *doc) {
  const json_t *plan = json_object_get(doc, "plan");
  json_t *report = json_object_get(doc, "report");
  size_t n = 8192, len = 0;
  char *text = malloc(n);
  len += (size_t)snprintf(text + len, n - len, "[WORKFLOW %lld \"%s\": %s]\n", (long long)wf_id(doc),
                          wf_str(plan, "title") ?: "", wf_status(doc));
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(plan, "steps"), i, s) {
    json_t *st = step_state(doc, json_integer_value(json_object_get(s, "number")));
    const char *ss = wf_str(st, "status") ? wf_str(st, "status") : "pending";
    const char *mark = strcmp(ss, "done") == 0 ? "✓" : strcmp(ss, "failed") == 0 ? "✗" : "○";
    if (len < n - 512)
      len += (size_t)snprintf(text + len, n - len, "%s Step %lld: %.200s (%s, %lld attempt(s))%s%.200s\n", mark,
                              (long long)json_integer_value(json_object_get(s, "number")), wf_str(s, "title") ?: "",
                              wf_str(s, "agent") ?: "?", (long long)json_integer_value(json_object_get(st, "attempts")),
                              wf_str(st, "error") && strcmp(ss, "done") != 0 ? ": " : "",
                              wf_str(st, "error") && strcmp(ss, "done") != 0 ? wf_str(st, "error") : "");
  }
  json_t *u = json_object_get(report, "usage");
  if (len < n - 256)
    len += (size_t)snprintf(text + len, n - len, "Time: %.1f s; tokens: %lld; cost: $%.4f\n",
                            json_number_value(json_object_get(report, "seconds")),
                            (long long)json_integer_value(json_object_get(u, "tokens")),
                            json_number_value(json_object_get(u, "cost")));
  json_t *rb = json_object_get(report, "rollback");
  if (rb && len < n - 256)
    snprintf(text + len, n - len, "Rolled back: %zu file(s) restored, %zu mismatch(es)\n",
             json_array_size(json_object_get(rb, "restored")), json_array_size(json_object_get(rb, "mismatches")));
  json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", text);
  const char *session = wf_str(doc, "session");
  if (session && store_session_exists(b->store, session))
    store_append(b->store, session, 0, msg, NULL);
  json_decref(msg);
  free(text);
}

void finish(broker_t *b, json_t *doc, const char *status, const char *why) {
  json_object_set_new(doc, "status", json_string(status));
  json_object_set_new(doc, "finished_ms", json_integer(util_wall_ms()));
  json_t *report = json_object_get(doc, "report");
  if (!report) {
    report = json_object();
    json_object_set_new(doc, "report", report);
  }
  double secs = (double)(util_wall_ms() - json_integer_value(json_object_get(doc, "started_ms"))) / 1000.0;
  json_object_set_new(report, "seconds", json_real(secs));
  json_object_set_new(report, "usage", usage_of_steps(b, doc));
  if (why)
    json_object_set_new(report, "reason", json_string(why));
  wf_save(b, doc);
  results_back(b, doc);
  log_info("workflow %lld %s%s%s", (long long)wf_id(doc), status, why ? ": " : "", why ? why : "");
  wf_event(b, "workflow_finished", doc, NULL);
}

/* Rollback: the checkpoint ledger in reverse, one restore at a time. */
static json_t *rollback_ops(broker_t *b, int64_t wf) {
  json_t *cps = store_checkpoints(b->store, wf, true), *ops = json_array();
  for (size_t i = json_array_size(cps); i-- > 0;) {
    json_t *c = json_array_get(cps, i);
    const char *kind = wf_str(c, "kind");
    if (strcmp(kind, "file") == 0) {
      json_array_append_new(ops, json_pack("{s:s, s:O, s:O, s:O?, s:s, s:O?}", "kind", "file", "path",
                                           json_object_get(c, "path"), "existed", json_object_get(c, "existed"),
                                           "content", json_object_get(c, "content"), "sha256",
                                           wf_str(c, "sha256") ? wf_str(c, "sha256") : "", "mode", json_object_get(c, "mode")));
    } else if (strcmp(kind, "snapshot_end") == 0) {
      json_int_t step = json_integer_value(json_object_get(c, "step"));
      json_int_t attempt = json_integer_value(json_object_get(c, "attempt"));
      json_t *keep = json_array(), *files = json_array();
      size_t j;
      json_t *f;
      json_array_foreach(cps, j, f) {
        if (strcmp(wf_str(f, "kind"), "snapshot_file") != 0 || json_integer_value(json_object_get(f, "step")) != step ||
            json_integer_value(json_object_get(f, "attempt")) != attempt)
          continue;
        json_array_append(keep, json_object_get(f, "path"));
        json_array_append_new(files, json_pack("{s:s, s:O, s:b, s:O?, s:s, s:O?}", "kind", "file", "path",
                                               json_object_get(f, "path"), "existed", 1, "content",
                                               json_object_get(f, "content"), "sha256", wf_str(f, "sha256") ?: "", "mode",
                                               json_object_get(f, "mode")));
      }
      json_array_append_new(ops, json_pack("{s:s, s:o}", "kind", "prune", "keep", keep));
      json_array_extend(ops, files);
      json_decref(files);
    }
  }
  json_decref(cps);
  return ops;
}

static void rollback_send(broker_t *b, json_t *doc, json_t *rb) {
  size_t next = (size_t)json_integer_value(json_object_get(rb, "next"));
  json_t *op = json_array_get(json_object_get(rb, "ops"), next);
  if (!op)
    return;
  peer_t *node = NULL;
  for (peer_t *n = b->peers; n; n = n->next)
    if (!n->dead && n->role == PEER_NODE && wf_str(doc, "workspace") && strcmp(n->workspace, wf_str(doc, "workspace")) == 0)
      node = n;
  if (!node)
    return; /* waits for a node of the workspace; the tick tries again */
  proto_msg_t *m = proto_msg_new(PROTO_RESTORE);
  if (!m)
    return;
  PROTO_SET(m, workflow, wf_id(doc));
  PROTO_SET(m, seq, (int64_t)next + 1);
  proto_set_str(m, PROTO_F_kind, wf_str(op, "kind"));
  if (strcmp(wf_str(op, "kind"), "file") == 0) {
    proto_set_str(m, PROTO_F_path, wf_str(op, "path"));
    PROTO_SET(m, existed, json_is_true(json_object_get(op, "existed")));
    if (wf_str(op, "content"))
      proto_set_str(m, PROTO_F_content, wf_str(op, "content"));
    if (json_is_integer(json_object_get(op, "mode"))) /* e.g. a deleted script comes back executable */
      proto_set_json(m, PROTO_F_payload, json_pack("{s:O}", "mode", json_object_get(op, "mode")));
  } else {
    proto_set_json(m, PROTO_F_payload, json_pack("{s:O}", "keep", json_object_get(op, "keep")));
  }
  json_object_set_new(rb, "sent_to", json_string(node->name));
  json_object_set_new(rb, "sent_ms", json_integer(util_now_ms()));
  broker_send(b, node, m);
  proto_msg_destroy(&m);
}

void rollback_start(broker_t *b, json_t *doc, const char *why) {
  json_t *rb = json_pack("{s:o, s:i, s:[], s:[], s:[], s:s, s:s}", "ops", rollback_ops(b, wf_id(doc)), "next", 0,
                         "restored", "mismatches", "deleted", "why", why, "final",
                         status_is(doc, "cancelled") ? "cancelled" : "failed");
  /* Running steps are abandoned: their late results are ignored. */
  const char *key;
  json_t *st;
  json_object_foreach(json_object_get(doc, "steps"), key, st) if (strcmp(wf_str(st, "status"), "running") == 0)
      json_object_set_new(st, "status", json_string("abandoned"));
  json_object_set_new(doc, "status", json_string("rolling_back"));
  wf_save(b, doc);
  char k[32];
  snprintf(k, sizeof k, "%lld", (long long)wf_id(doc));
  json_object_set_new(b->rollbacks, k, rb);
  log_info("workflow %lld: rolling back %zu change(s): %s", (long long)wf_id(doc),
           json_array_size(json_object_get(rb, "ops")), why);
  wf_event(b, "workflow_rolling_back", doc, json_pack("{s:s}", "reason", why));
  if (json_array_size(json_object_get(rb, "ops")) == 0) {
    json_t *report = json_object();
    json_object_set_new(report, "rollback", json_pack("{s:[], s:[], s:[]}", "restored", "mismatches", "deleted"));
    json_object_set_new(doc, "report", report);
    json_object_del(b->rollbacks, k);
    finish(b, doc, json_string_value(json_object_get(rb, "final")) ?: "failed", why);
    return;
  }
  rollback_send(b, doc, rb);
}

static void on_restored(broker_t *b, const proto_msg_t *m) {
  char k[32];
  snprintf(k, sizeof k, "%lld", (long long)m->workflow);
  json_t *rb = json_object_get(b->rollbacks, k), *doc = wf_get(b, m->workflow);
  size_t next = (size_t)json_integer_value(json_object_get(rb, "next"));
  if (!rb || !doc || (size_t)m->seq != next + 1)
    return;
  json_t *op = json_array_get(json_object_get(rb, "ops"), next);
  if (m->code) {
    json_array_append_new(json_object_get(rb, "mismatches"),
                          json_pack("{s:s?, s:s, s:s?}", "path", wf_str(op, "path"), "error", m->code, "detail", m->detail));
  } else if (strcmp(wf_str(op, "kind"), "prune") == 0) {
    json_array_extend(json_object_get(rb, "deleted"), json_object_get(m->payload, "deleted"));
  } else {
    bool ok = m->sha256 && strcmp(m->sha256, wf_str(op, "sha256")) == 0;
    json_array_append_new(json_object_get(rb, ok ? "restored" : "mismatches"),
                          json_pack("{s:O, s:b, s:s}", "path", json_object_get(op, "path"), "existed",
                                    json_is_true(json_object_get(op, "existed")), "sha256", m->sha256 ? m->sha256 : ""));
  }
  json_object_set_new(rb, "next", json_integer((json_int_t)next + 1));
  if (next + 1 < json_array_size(json_object_get(rb, "ops"))) {
    rollback_send(b, doc, rb);
    return;
  }
  json_t *report = json_object_get(doc, "report");
  if (!report) {
    report = json_object();
    json_object_set_new(doc, "report", report);
  }
  json_object_set_new(report, "rollback", json_pack("{s:O, s:O, s:O}", "restored", json_object_get(rb, "restored"),
                                                    "mismatches", json_object_get(rb, "mismatches"), "deleted",
                                                    json_object_get(rb, "deleted")));
  char *final = strdup(wf_str(rb, "final"));
  char *why = strdup(wf_str(rb, "why"));
  json_object_del(b->rollbacks, k);
  finish(b, doc, final, why);
  free(final);
  free(why);
}

void workflow_on_node_msg(broker_t *b, peer_t *from, const proto_msg_t *m) {
  switch (m->type) {
  case PROTO_CHECKPOINT: on_checkpoint(b, from, m); break;
  case PROTO_STEP_DONE: on_step_done(b, from, m); break;
  case PROTO_STEP_FAILED: on_step_failed(b, from, m); break;
  case PROTO_RESTORED: on_restored(b, m); break;
  default: break;
  }
}

void workflow_node_lost(broker_t *b, peer_t *node) {
  const char *key;
  json_t *doc;
  json_object_foreach(b->workflows, key, doc) {
    const char *sk;
    json_t *st;
    bool changed = false;
    json_object_foreach(json_object_get(doc, "steps"), sk, st) {
      if (strcmp(wf_str(st, "status"), "running") == 0 && wf_str(st, "node") && strcmp(wf_str(st, "node"), node->name) == 0) {
        /* Runs again elsewhere; the ledger tells whether a file change already happened. */
        json_object_set_new(st, "status", json_string("pending"));
        json_object_set_new(st, "was_running", json_true());
        history_add(st, "node lost", node->name);
        changed = true;
      }
    }
    if (changed)
      wf_save(b, doc);
  }
}

/* Timer: retries, steps waiting for a slot, restores waiting for a node. */
void workflow_timer(broker_t *b, int64_t now) {
  workflow_tick(b, now);
  const char *key;
  json_t *rb;
  json_object_foreach(b->rollbacks, key, rb) {
    const char *to = wf_str(rb, "sent_to");
    bool alive = false;
    for (peer_t *n = b->peers; to && n; n = n->next)
      alive |= !n->dead && n->role == PEER_NODE && strcmp(n->name, to) == 0;
    if (!to || !alive)
      rollback_send(b, wf_get(b, atoll(key)), rb);
  }
}

int workflow_start(broker_t *b) {
  b->workflows = json_object();
  b->rollbacks = json_object();
  json_t *all = store_workflows(b->store);
  size_t i;
  json_t *doc;
  json_array_foreach(all, i, doc) {
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)wf_id(doc));
    json_object_set(b->workflows, key, doc);
    const char *sk;
    json_t *st;
    /* In flight at the stop: run again (agent steps continue with their sub-agent's turn). */
    json_object_foreach(json_object_get(doc, "steps"), sk, st) if (strcmp(wf_str(st, "status"), "running") == 0 &&
                                                                   !wf_str(st, "agent_session")) {
      json_object_set_new(st, "status", json_string("pending"));
      json_object_set_new(st, "was_running", json_true());
      log_info("workflow %s step %s was running at the last stop; it runs again", key, sk);
    }
    if (status_is(doc, "rolling_back")) {
      json_object_set_new(doc, "status", json_string("running"));
      rollback_start(b, doc, "rollback interrupted by a broker restart; started again");
    }
  }
  json_decref(all);
  return 0;
}

