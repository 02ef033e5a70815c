/* workflow.c: the workflow engine. A [PLAN] in an agent's answer becomes a
 * stored plan; once approved it runs as a workflow: steps in dependency
 * order, independent ones at the same time on the nodes of one workspace;
 * tool steps run on nodes (step_run), agent steps by sub-agents whose summary
 * is the step's result. Before a step changes anything the node sends the
 * pre-image (checkpoint) and waits until it is stored. A failed step is
 * retried; a workflow that fails for good, or is cancelled with rollback, has
 * its changes undone in reverse order, each verified by content hash.
 *
 * Workflows are workflow_t (workflow.h), kept in b->workflows oldest first;
 * each change is persisted (its stored form, workflow_json.c) before it is
 * acted on. A step_run that cannot be sent gives the node's slot back and
 * fails the attempt (a frame too large fails the step for good).
 *
 * What a step costs does not grow with the plan: ready steps come from a
 * queue kept as steps end (workflow_ready.c), a step's change is stored as
 * one row of its own (wf_save_step) and announced with that step alone
 * (wf_step_event), the approval and the end store the workflow's head only
 * (wf_save_head), and one scheduling pass (a node's message, a tick, an
 * approval) is one commit, its messages held until it is on disk (batches).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "jx.h"
#include "log.h"
#include "plan.h"
#include "plan_estimate.h"
#include "sbuf.h"
#include "summary.h"
#include "util.h"
#include "workflow_int.h"
#include "memory.h"

/* ---- workflows ------------------------------------------------------------ */

workflow_t *wf_get(broker_t *b, int64_t id) {
  workflow_t *wf = b->workflows;
  while (wf && wf->id != id)
    wf = wf->next;
  return wf;
}

/* Stores the workflow's document (whole) or its head: 0, or -1 (logged). */
static int save_as(broker_t *b, workflow_t *wf, bool whole) {
  json_t *doc = whole ? wf_to_stored(wf) : wf_head_to_stored(wf);
  int rc = !doc    ? -1
           : whole ? store_workflow_update(b->store, wf->id, doc)
                   : store_workflow_head(b->store, wf->id, doc);
  if (rc < 0)
    log_error("state: cannot save workflow %lld: %s", (long long)wf->id, store_errmsg(b->store));
  json_decref(doc);
  return rc < 0 ? -1 : 0;
}

int wf_save(broker_t *b, workflow_t *wf) {
  return save_as(b, wf, true);
}

int wf_save_head(broker_t *b, workflow_t *wf) {
  return save_as(b, wf, false);
}

int wf_save_step(broker_t *b, workflow_t *wf, const wf_step_t *s) {
  if (wf_step(wf, s->number) != s)
    return wf_save(b, wf); /* a second step of that number: stored as the document has it */
  json_t *state = wf_step_to_stored(s);
  int rc = state ? store_workflow_step_put(b->store, wf->id, s->number, state) : -1;
  if (rc < 0)
    log_error("state: cannot save workflow %lld step %lld: %s", (long long)wf->id, (long long)s->number,
              store_errmsg(b->store));
  json_decref(state);
  return rc < 0 ? -1 : 0;
}

/* ---- one commit per scheduling pass ------------------------------------------ */

typedef struct wf_held {
  peer_t *to;
  proto_msg_t *msg; /* taken */
  char kind[32];    /* the event announced once it went, or "" */
  json_t *payload;  /* taken */
  struct wf_held *next;
} wf_held_t;

/* Keeps message m (taken) for to, and the event announced once it went (payload taken; kind NULL: none). */
static void hold(broker_t *b, peer_t *to, proto_msg_t *m, const char *kind, json_t *payload) {
  wf_held_t *h = calloc(1, sizeof *h);
  if (!h) { /* out of memory: at once, as outside a batch */
    int rc = broker_send(b, to, m);
    proto_msg_destroy(&m);
    if (kind && rc == 0)
      broker_event(b, kind, NULL, 0, payload);
    else
      json_decref(payload);
    return;
  }
  *h = (wf_held_t){to, m, "", payload, NULL};
  if (kind)
    snprintf(h->kind, sizeof h->kind, "%s", kind);
  if (b->wf_held_tail)
    b->wf_held_tail->next = h;
  else
    b->wf_held = h;
  b->wf_held_tail = h;
}

/* Opens the batch's transaction; events are logged in it and sent once it is committed. */
static void batch_open(broker_t *b) {
  if (store_batch(b->store, true) < 0)
    log_error("state: cannot open a transaction: %s", store_errmsg(b->store));
  broker_events_hold(b);
}

void wf_batch_begin(broker_t *b) {
  if (b->wf_batch++ == 0)
    batch_open(b);
}

static void send_failed(broker_t *b, workflow_t *wf, wf_step_t *s, peer_t *node, int attempt, int rc);
static void restore_send_failed(broker_t *b, workflow_t *wf, int64_t seq, int rc);

/* A held step_run or restore that could not be sent: as when it fails at once. */
static void held_failed(broker_t *b, peer_t *node, const proto_msg_t *m, int rc) {
  workflow_t *wf = wf_get(b, m->workflow);
  wf_step_t *s = wf && m->type == PROTO_STEP_RUN ? wf_step(wf, m->step) : NULL;
  if (s)
    send_failed(b, wf, s, node, (int)m->attempt, rc);
  else if (m->type == PROTO_STEP_RUN)
    node->busy -= node->busy > 0;
  else if (wf && m->type == PROTO_RESTORE)
    restore_send_failed(b, wf, m->seq, rc);
}

/* Commits the batch's writes, then sends and announces what it held. */
static void commit_and_send(broker_t *b) {
  bool committed = store_batch(b->store, false) == 0;
  if (!committed)
    log_error("state: cannot commit the workflows' changes: %s (acknowledgements held back)", store_errmsg(b->store));
  broker_events_release(b); /* the batch's events, in order */
  while (b->wf_held) {      /* sends and events in order; what they set off is not batched */
    wf_held_t *h = b->wf_held;
    b->wf_held = h->next;
    if (!b->wf_held)
      b->wf_held_tail = NULL;
    int rc = committed || h->msg->type == PROTO_STEP_RUN /* a step_run goes anyway, as before batches */
                 ? broker_send(b, h->to, h->msg)
                 : -EIO;
    if (h->kind[0] && rc == 0)
      broker_event(b, h->kind, NULL, 0, h->payload);
    else
      json_decref(h->payload);
    if (rc < 0)
      held_failed(b, h->to, h->msg, rc);
    proto_msg_destroy(&h->msg);
    free(h);
  }
}

void wf_batch_end(broker_t *b) {
  if (b->wf_batch <= 0 || --b->wf_batch > 0)
    return;
  commit_and_send(b);
}

/* Inside a batch: what it holds is committed and goes out now, and no transaction is open until
 * batch_resume (for other modules' writes, which may open transactions of their own). The depth. */
static int batch_pause(broker_t *b) {
  int depth = b->wf_batch;
  if (depth > 0) {
    b->wf_batch = 0;
    commit_and_send(b);
  }
  return depth;
}

static void batch_resume(broker_t *b, int depth) {
  if (depth > 0 && b->wf_batch == 0) {
    b->wf_batch = depth;
    batch_open(b);
  }
}

int wf_send(broker_t *b, peer_t *to, proto_msg_t *m, const char *kind, json_t *event) {
  if (b->wf_batch > 0) {
    hold(b, to, m, kind, event);
    return 0;
  }
  int rc = broker_send(b, to, m);
  proto_msg_destroy(&m);
  if (kind && rc == 0)
    broker_event(b, kind, NULL, 0, event);
  else
    json_decref(event);
  return rc;
}

static void send_event(broker_t *b, const char *kind, json_t *payload, json_t *extra) {
  if (extra) {
    json_object_update(payload, extra);
    json_decref(extra);
  }
  broker_event(b, kind, NULL, 0, payload); /* in a batch: logged in its transaction, sent after it */
}

void wf_event(broker_t *b, const char *kind, const workflow_t *wf, json_t *extra) {
  send_event(b, kind, wf_to_wire(wf), extra);
}

void wf_step_event(broker_t *b, const char *kind, const workflow_t *wf, const wf_step_t *s, json_t *extra) {
  send_event(b, kind, wf_to_wire_step(wf, s), extra);
}

/* Appends wf to the broker's list (ids grow, so the list stays oldest first). */
static void wf_append(broker_t *b, workflow_t *wf) {
  workflow_t **at = &b->workflows;
  while (*at)
    at = &(*at)->next;
  *at = wf;
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

/* The estimate of the plan on the config's profiles (plan_estimate.h), kept in wf. */
static void estimate(broker_t *b, workflow_t *wf, const json_t *plan) {
  json_t *e = plan_estimate(plan, b->opts.config);
  double secs = jx_num(e, "seconds", -1);
  wf->has_estimate = true;
  wf->est_seconds = secs < 0 ? 0 : secs;
  wf->est_cost = jx_num(e, "cost", 0);
  wf->est_tokens = (double)(PLAN_STEP_TOKENS_IN + PLAN_STEP_TOKENS_OUT);
  wf->est_total_tokens = jx_int(e, "tokens", 0);
  json_decref(wf->est_steps);
  wf->est_steps = json_incref(jx_arr(e, "steps"));
  json_decref(e);
}

/* "name (role, model), ...": the profiles a step may run on (every one but the main agent's). */
void wf_step_profiles(broker_t *b, sbuf_t *out) {
  const cadre_config_t *c = b->opts.config;
  for (size_t i = 0; i < c->n_profiles; i++)
    if (strcmp(c->profiles[i].role, "main") != 0)
      sbuf_printf(out, "%s%s (%s, %s)", out->len ? ", " : "", c->profiles[i].name, c->profiles[i].role,
                  c->profiles[i].model);
}

/* Why step s cannot run on profile name, or NULL when it can; p: that profile. */
const char *wf_profile_problem(broker_t *b, const wf_step_t *s, const char *name, const cadre_profile_t **p) {
  *p = config_profile(b->opts.config, name);
  if (s->tool)
    return "is a tool step: it calls no model, so it runs on no profile";
  if (!*p)
    return "names a profile that is not in the config";
  if (strcmp((*p)->role, "main") == 0)
    return "cannot run on the main agent's profile (a step runs as a sub-agent)";
  return NULL;
}

/* Steps that name a profile run as its role (the step's agent says so); a profile that cannot run it is an error. */
static void check_profiles(broker_t *b, workflow_t *wf, json_t *errors) {
  for (size_t i = 0; i < wf->n_steps; i++) {
    wf_step_t *s = &wf->steps[i];
    const cadre_profile_t *p = NULL;
    const char *why = s->profile ? wf_profile_problem(b, s, s->profile, &p) : NULL;
    if (s->profile && !why && (!s->agent || strcmp(s->agent, p->role) != 0))
      wf_set_str(&s->agent, p->role);
    if (!why)
      continue;
    sbuf_t known = {.max = 600};
    wf_step_profiles(b, &known);
    char msg[1024];
    snprintf(msg, sizeof msg, "Step %lld %s: \"%.64s\" (profiles: %s)", (long long)s->number, why, s->profile,
             known.len ? sbuf_str(&known) : "none");
    sbuf_free(&known);
    json_array_append_new(errors, json_pack("{s:I, s:s}", "step", (json_int_t)s->number, "message", msg));
  }
}

/* Validates and estimates the workflow's plan; status pending or invalid. */
void assess(broker_t *b, workflow_t *wf) {
  json_t *errors = json_array();
  check_profiles(b, wf, errors);
  json_t *plan = wf_plan_json(wf), *roles = known_roles(b), *tools = known_tools();
  json_t *found = plan_validate(plan, roles, tools);
  json_array_extend(errors, found);
  json_decref(found);
  json_decref(roles);
  json_decref(tools);
  json_decref(wf->errors);
  wf->errors = errors;
  estimate(b, wf, plan);
  wf->status = json_array_size(wf->errors) ? WF_INVALID : WF_PENDING;
  json_t *est = json_pack("{s:f, s:f, s:I, s:O}", "seconds", wf->est_seconds, "cost", wf->est_cost, "tokens",
                          (json_int_t)wf->est_total_tokens, "steps", wf->est_steps);
  char *text = plan_format(plan, est);
  wf_set_str(&wf->text, text ? text : "");
  free(text);
  json_decref(est);
  json_decref(plan);
}

/* Stores a new plan from an agent's answer (or a template) and announces it. */
workflow_t *propose(broker_t *b, const char *session, json_t *plan, const char *origin) {
  workflow_t *wf = workflow_new();
  if (!wf || wf_set_plan(wf, plan) < 0) {
    log_error("plan from %s: cannot be read", origin);
    workflow_destroy(&wf);
    json_decref(plan);
    return NULL;
  }
  json_decref(plan);
  wf_set_str(&wf->session, session);
  wf_set_str(&wf->origin, origin);
  wf->created_ms = util_wall_ms();
  assess(b, wf);
  json_t *doc = wf_to_stored(wf);
  int64_t id = store_workflow_insert(b->store, doc);
  json_decref(doc);
  if (id < 0) {
    log_error("state: cannot store a plan: %s", store_errmsg(b->store));
    workflow_destroy(&wf);
    return NULL;
  }
  wf->id = id;
  wf_append(b, wf);
  log_info("plan %lld from %s: \"%s\", %zu steps, %s", (long long)id, origin, wf->title ? wf->title : "", wf->n_steps,
           wf_status_name(wf->status));
  wf_event(b, "plan_proposed", wf, json_pack("{s:s, s:o}", "text", wf->text, "budget", wf_budget_json(b, wf)));
  return wf;
}

void workflow_on_answer(broker_t *b, const char *session, const char *content) {
  if (!content || !strstr(content, "[PLAN]")) {
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

static peer_t *pick_workspace_node(broker_t *b, const char *workspace) {
  peer_t *best = NULL;
  for (peer_t *n = b->peers; n; n = n->next) {
    if (n->role != PEER_NODE || !peer_takes_work(n) || !workspace || strcmp(n->workspace, workspace) != 0)
      continue;
    if (n->busy < n->slots && (!best || n->slots - n->busy > best->slots - best->busy))
      best = n;
  }
  return best;
}

static void note(wf_step_t *s, const char *what, const char *detail) {
  wf_step_note(s, util_wall_ms(), what, detail);
}

/* The last file checkpoint of a step, for the exactly-once check after a restart. */
static json_t *applied_check(broker_t *b, int64_t wf, int64_t step) {
  json_t *cps = store_checkpoints(b->store, wf, false), *found = NULL;
  size_t i;
  json_t *c;
  json_array_foreach(cps, i, c) if (jx_int(c, "step", 0) == step && strcmp(jx_str(c, "kind", ""), "file") == 0) found =
      c;
  json_t *out =
      found ? json_pack("{s:s?, s:s}", "path", jx_str(found, "path", NULL), "sha256", jx_str(found, "sha256", ""))
            : NULL;
  json_decref(cps);
  return out;
}

static void release_node(peer_t *node) {
  if (node->busy > 0)
    node->busy--;
}

/* A step_run the node did not get: its slot is given back and the step is not
 * left running there. A frame over the limit never fits, so the step fails for
 * good; anything else (EAGAIN: the node's queue is full) counts as a failed
 * attempt and is retried. An unreachable node was removed by broker_send, and
 * workflow_node_lost has already put the step back to pending. */
static void send_failed(broker_t *b, workflow_t *wf, wf_step_t *s, peer_t *node, int attempt, int rc) {
  release_node(node);
  if (s->status != STEP_RUNNING || s->attempts != attempt || !s->node || strcmp(s->node, node->name) != 0)
    return;
  if (s->lost_ms) { /* the node went away on this send: it never had the step */
    s->lost_ms = 0;
    s->status = STEP_PENDING;
    wf_sched_note(wf, s);
    wf_save_step(b, wf, s);
    return;
  }
  char detail[300];
  if (rc == -EMSGSIZE)
    snprintf(detail, sizeof detail, "step_run for step %lld is larger than the %d MiB frame limit; it cannot be sent",
             (long long)s->number, PROTO_MAX_FRAME / (1024 * 1024));
  else
    snprintf(detail, sizeof detail, "step_run for step %lld could not be sent to %.100s: %s", (long long)s->number,
             node->name, strerror(-rc));
  log_warn("workflow %lld: %s", (long long)wf->id, detail);
  wf_set_str(&s->node, NULL);
  wf_step_failed(b, wf, s, detail, rc != -EMSGSIZE, NULL);
}

proto_msg_t *wf_step_msg(proto_type_t type, int64_t workflow, int64_t step, int64_t attempt) {
  proto_msg_t *m = proto_msg_new(type);
  if (m) {
    PROTO_SET(m, workflow, workflow);
    PROTO_SET(m, step, step);
    PROTO_SET(m, attempt, attempt);
  }
  return m;
}

/* 0: started, or ended otherwise (a send that failed is an attempt); -1: it cannot start now
 * (no free slot, restores first), and no tool step of this workflow can. */
static int start_tool_step(broker_t *b, workflow_t *wf, wf_step_t *s) {
  if (wf->rollback)
    return -1; /* a step is restored to its checkpoint before it runs again */
  if (s->was_running && wf_restore_before_rerun(b, wf, s))
    return -1;
  peer_t *node = pick_workspace_node(b, wf->workspace);
  if (!node)
    return -1; /* waits for a free slot */
  int attempt = s->attempts + 1;
  proto_msg_t *m = wf_step_msg(PROTO_STEP_RUN, wf->id, s->number, attempt);
  if (!m)
    return -1;
  proto_set_str(m, PROTO_F_kind, s->tool);
  proto_set_json(m, PROTO_F_args, s->arguments ? json_incref(s->arguments) : json_object());
  json_t *check = s->was_running ? applied_check(b, wf->id, s->number) : NULL;
  if (check)
    proto_set_json(m, PROTO_F_payload, json_pack("{s:o}", "applied_check", check));
  s->attempts = attempt;
  s->status = STEP_RUNNING;
  s->lost_ms = 0;
  wf_set_str(&s->node, node->name);
  s->started_ms = util_wall_ms();
  s->was_running = false;
  note(s, "started", node->name);
  wf_sched_note(wf, s);
  wf_save_step(b, wf, s); /* persisted before it is acted on (a batch's sends wait for its commit) */
  node->busy++;
  json_t *started = wf_to_wire_step(wf, s);
  json_object_update_new(
      started, json_pack("{s:I, s:i, s:s}", "step", (json_int_t)s->number, "attempt", attempt, "node", node->name));
  int rc = wf_send(b, node, m, "step_started", started); /* announced once sent */
  if (rc < 0)
    send_failed(b, wf, s, node, attempt, rc);
  return 0;
}

static int start_agent_step(broker_t *b, workflow_t *wf, wf_step_t *s) {
  const char *title = s->title ? s->title : "";
  char *args = s->arguments ? json_dumps(s->arguments, JSON_COMPACT) : NULL;
  sbuf_t task = {0};
  sbuf_printf(&task, "Workflow \"%s\", step %lld: %s%s%s%s%s", wf->title ? wf->title : "", (long long)s->number, title,
              s->description ? "\n" : "", s->description ? s->description : "", args ? "\nArguments: " : "",
              args ? args : "");
  char id[128], err[256];
  int depth = batch_pause(b); /* the sub-agents module (the spawn, its first turn) opens transactions of its own */
  const char *who = s->profile ? s->profile : s->agent ? s->agent : ""; /* a profile the user chose runs it */
  int rc =
      agents_spawn_held(b, who, s->profile != NULL, sbuf_str(&task), wf->session, NULL, id, sizeof id, err, sizeof err);
  sbuf_free(&task);
  free(args);
  int attempt = ++s->attempts;
  if (rc < 0) {
    s->status = STEP_FAILED;
    wf_set_str(&s->error, err);
    note(s, "failed", err);
    wf_sched_note(wf, s);
    wf_save_step(b, wf, s);
    batch_resume(b, depth);
    return 0;
  }
  store_session_set_step(b->store, id, wf->id, s->number); /* before its first turn: the workflow's budget holds */
  s->status = STEP_RUNNING;
  wf_set_str(&s->agent_session, id);
  s->started_ms = util_wall_ms();
  note(s, "started", id);
  wf_sched_note(wf, s);
  wf_save_step(b, wf, s);
  wf_step_event(b, "step_started", wf, s,
                json_pack("{s:I, s:i, s:s}", "step", (json_int_t)s->number, "attempt", attempt, "agent", id));
  agents_admit(b); /* its first turn may go now (and may end it at once: its state is saved) */
  batch_resume(b, depth);
  return 0;
}

static void rollback_restores(broker_t *b, workflow_t *wf);

/* Starts every step whose dependencies are done, in plan order (taken from
 * the ready queue: no walk of the plan); ends the workflow when all are done,
 * rolls it back when one failed for good. Once a tool step cannot start (no
 * free slot), the other tool steps wait too; agent steps go on. Steps that
 * end while it runs (a send that fails) may advance the workflow from inside:
 * the loop stops as soon as the workflow is no longer running. */
void advance(broker_t *b, workflow_t *wf, int64_t now) {
  if (wf->status == WF_ROLLING_BACK)
    rollback_restores(b, wf); /* once the steps still running ended */
  bool tools = true;
  size_t at;
  while (wf->status == WF_RUNNING && wf_sched_next(wf, now, tools, &at)) {
    wf_step_t *s = &wf->steps[at];
    if (!s->tool)
      start_agent_step(b, wf, s);
    else if (start_tool_step(b, wf, s) < 0)
      wf_sched_again(wf, at), tools = false;
  }
  if (wf->status != WF_RUNNING)
    return;
  size_t done, failed;
  wf_sched_counts(wf, &done, &failed);
  if (failed)
    rollback_start(b, wf, "a step failed after all its attempts");
  else if (done == wf->n_steps)
    finish(b, wf, WF_DONE, NULL);
}

void workflow_tick(broker_t *b, int64_t now) {
  wf_batch_begin(b);
  for (workflow_t *wf = b->workflows; wf; wf = wf->next)
    advance(b, wf, now);
  wf_batch_end(b);
}

/* ---- step results -------------------------------------------------------- */

static wf_step_t *running_step(broker_t *b, peer_t *from, const proto_msg_t *m, workflow_t **wf_out) {
  workflow_t *wf = wf_get(b, m->workflow);
  wf_step_t *s = wf ? wf_step(wf, m->step) : NULL;
  if (!s || s->status != STEP_RUNNING || s->attempts != m->attempt || !s->node || strcmp(s->node, from->name) != 0) {
    log_debug("ignoring %s for workflow %lld step %lld attempt %lld (stale)", proto_type_name(m->type),
              (long long)m->workflow, (long long)m->step, (long long)m->attempt);
    return NULL;
  }
  *wf_out = wf;
  return s;
}

/* The step is done; once that is on disk, ack_to (when not NULL) may forget its result. */
static void step_done(broker_t *b, workflow_t *wf, wf_step_t *s, const char *result, peer_t *ack_to) {
  s->status = STEP_DONE;
  s->lost_ms = 0;
  s->finished_ms = util_wall_ms();
  wf_set_str(&s->result, result ? result : "");
  note(s, "done", NULL);
  wf_sched_note(wf, s);
  if (wf_save_step(b, wf, s) == 0 && ack_to)
    wf_step_ack(b, ack_to, wf->id, s->number, s->attempts);
  wf_step_event(b, "step_done", wf, s, json_pack("{s:I}", "step", (json_int_t)s->number));
  advance(b, wf, util_now_ms());
}

void wf_step_failed(broker_t *b, workflow_t *wf, wf_step_t *s, const char *detail, bool retryable, peer_t *ack_to) {
  int attempts = s->attempts;
  note(s, "failed", detail);
  s->lost_ms = 0;
  bool retry = wf_step_fail(s, detail, retryable && wf->status == WF_RUNNING, util_now_ms());
  wf_sched_note(wf, s);
  if (wf_save_step(b, wf, s) == 0 && ack_to)
    wf_step_ack(b, ack_to, wf->id, s->number, attempts);
  wf_step_event(b, "step_failed", wf, s,
                json_pack("{s:I, s:i, s:b, s:s?}", "step", (json_int_t)s->number, "attempt", attempts, "will_retry",
                          retry, "detail", detail));
  if (wf->status == WF_RUNNING || wf->status == WF_ROLLING_BACK)
    advance(b, wf, util_now_ms());
}

static void on_checkpoint(broker_t *b, peer_t *from, const proto_msg_t *m) {
  workflow_t *wf;
  if (!running_step(b, from, m, &wf))
    return;
  bool stored = true;
  if (m->seq == 1) /* a checkpoint sent again (the node reconnected) starts afresh */
    store_checkpoints_forget(b->store, m->workflow, m->step, m->attempt);
  if (strcmp(m->kind, "snapshot_end") != 0)
    stored = store_checkpoint_add(b->store, m->workflow, m->step, m->attempt, m->seq, m->kind, m->path,
                                  PROTO_HAS(m, existed) && m->existed, m->content, m->sha256,
                                  (int)jx_int(m->payload, "mode", 0)) == 0;
  else
    stored =
        store_checkpoint_add(b->store, m->workflow, m->step, m->attempt, m->seq, m->kind, NULL, 0, NULL, NULL, 0) == 0;
  if (!stored) {
    log_error("state: cannot store a checkpoint: %s", store_errmsg(b->store));
    return; /* no ack: the node does not change anything */
  }
  if (strcmp(m->kind, "file") != 0 && strcmp(m->kind, "snapshot_end") != 0)
    return; /* a snapshot's files, symlinks and directories: acked once, at snapshot_end */
  proto_msg_t *ack = wf_step_msg(PROTO_CHECKPOINT_ACK, m->workflow, m->step, m->attempt);
  if (!ack)
    return;
  PROTO_SET(ack, seq, m->seq);
  wf_send(b, from, ack, NULL, NULL);
}

/* The step a node's step_done / step_failed ends (its slot is free again), or
 * NULL when stale: a repeat of a result already recorded, or of an attempt
 * given up; the node is told to forget it (step_ack). */
static wf_step_t *ended_step(broker_t *b, peer_t *from, const proto_msg_t *m, workflow_t **wf_out) {
  wf_step_t *s = running_step(b, from, m, wf_out);
  if (s)
    release_node(from);
  else
    wf_step_ack(b, from, m->workflow, m->step, m->attempt);
  return s;
}

static void on_step_done(broker_t *b, peer_t *from, const proto_msg_t *m) {
  workflow_t *wf;
  wf_step_t *s = ended_step(b, from, m, &wf);
  if (!s)
    return;
  wf_note_changes(b, wf, s, m);
  if (jx_bool(m->payload, "is_error", false)) {
    char detail[600];
    snprintf(detail, sizeof detail, "%.500s", m->text);
    wf_step_failed(b, wf, s, detail, true, from);
    return;
  }
  json_t *changed = json_object_get(m->payload, "changed"); /* the node's list, kept as sent */
  if (changed) {
    json_decref(s->changed);
    s->changed = json_incref(changed);
  }
  step_done(b, wf, s, m->text, from);
}

static void on_step_failed(broker_t *b, peer_t *from, const proto_msg_t *m) {
  workflow_t *wf;
  wf_step_t *s = ended_step(b, from, m, &wf);
  if (!s)
    return;
  char detail[600];
  snprintf(detail, sizeof detail, "%s: %s", m->code, m->detail);
  wf_step_failed(b, wf, s, detail,
                 strcmp(m->code, PROTO_ERR_cancelled) != 0 && (!PROTO_HAS(m, retryable) || m->retryable), from);
}

bool workflow_agent_summary(broker_t *b, const json_t *row, const json_t *summary) {
  const json_t *link = jx_obj(row, "workflow");
  if (!link)
    return false;
  workflow_t *wf = wf_get(b, jx_int(link, "id", 0));
  wf_step_t *s = wf ? wf_step(wf, jx_int(link, "step", 0)) : NULL;
  const char *id = jx_str(row, "id", "");
  if (!s || s->status != STEP_RUNNING || !s->agent_session || strcmp(s->agent_session, id) != 0)
    return true; /* a late summary of an old attempt: consumed, ignored */
  char *text = summary_render(id, jx_str(row, "role", NULL), summary);
  const char *status = jx_str(summary, "status", NULL);
  wf_batch_begin(b); /* the step's end, its event and the steps it lets start: one commit */
  if (status && strcmp(status, "FAIL") == 0)
    wf_step_failed(b, wf, s, text, true, NULL);
  else
    step_done(b, wf, s, text, NULL);
  wf_batch_end(b);
  free(text);
  return true;
}

/* ---- the end: results back, rollback ---------------------------------------- */

/* Each agent step's tokens and cost (from its sub-agent's session), and the sum into the report. */
static void usage_of_steps(broker_t *b, workflow_t *wf) {
  double cost = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < wf->n_steps; i++) {
    wf_step_t *s = &wf->steps[i];
    json_t *row = s->has_state && s->agent_session ? store_session(b->store, s->agent_session) : NULL;
    const json_t *u = jx_obj(row, "usage");
    int64_t t = jx_int(u, "prompt_tokens", 0) + jx_int(u, "completion_tokens", 0);
    cost += jx_num(u, "cost", 0);
    tokens += t;
    if (u) { /* each step's share, for the finished summary */
      s->has_usage = true, s->usage_tokens = t, s->usage_cost = jx_num(u, "cost", 0);
      wf_save_step(b, wf, s);
    }
    json_decref(row);
  }
  wf->report.has_usage = true;
  wf->report.tokens = tokens;
  wf->report.cost = cost;
}

/* How many files the restores changed, each counted once (a file has a restore per checkpoint). */
static size_t files_changed(const json_t *restored) {
  json_t *seen = json_object();
  size_t i;
  json_t *e;
  json_array_foreach(restored, i, e) {
    if (jx_bool(e, "changed", true) && jx_str(e, "path", NULL))
      json_object_set_new(seen, jx_str(e, "path", ""), json_true());
  }
  size_t count = json_object_size(seen);
  json_decref(seen);
  return count;
}

/* The summary of a finished workflow (caller frees; NULL when out of memory). */
static char *results_text(const workflow_t *wf) {
  const wf_report_t *r = &wf->report;
  size_t n = 8192, len = 0;
  char *text = malloc(n);
  if (!text)
    return NULL;
  len += (size_t)snprintf(text + len, n - len, "[WORKFLOW %lld \"%s\": %s]\n", (long long)wf->id,
                          wf->title ? wf->title : "", wf_status_name(wf->status));
  for (size_t i = 0; i < wf->n_steps; i++) {
    const wf_step_t *s = &wf->steps[i];
    bool done = s->status == STEP_DONE, failed = s->status == STEP_FAILED;
    const char *mark = done ? "✓" : failed ? "✗" : "○";
    bool why = s->error && !done;
    if (len < n - 512)
      len += (size_t)snprintf(text + len, n - len, "%s Step %lld: %.200s (%s, %lld attempt(s))%s%.200s\n", mark,
                              (long long)s->number, s->title ? s->title : "", s->agent ? s->agent : "?",
                              (long long)s->attempts, why ? ": " : "", why ? s->error : "");
  }
  if (len < n - 256)
    len += (size_t)snprintf(text + len, n - len, "Time: %.1f s; tokens: %lld; cost: $%.4f\n",
                            isnan(r->seconds) ? 0 : r->seconds, (long long)r->tokens, r->cost);
  size_t conflicts = r->rollback ? json_array_size(jx_arr(r->rollback, "conflicts")) : 0;
  if (r->rollback && len < n - 256)
    snprintf(text + len, n - len, "Rolled back: %zu file(s) changed back, %zu mismatch(es)%s%.0zu%s\n",
             files_changed(jx_arr(r->rollback, "restored")), json_array_size(jx_arr(r->rollback, "mismatches")),
             conflicts ? ", " : "", conflicts, conflicts ? " changed by others since, kept (conflicts)" : "");
  return text;
}

/* The summary of a finished workflow, into the originating agent's history
 * and the project's memory of its workspace. */
static void results_back(broker_t *b, workflow_t *wf) {
  char *text = results_text(wf), source[64];
  if (!text)
    return;
  json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", text);
  if (wf->session && store_session_exists(b->store, wf->session))
    store_append(b->store, wf->session, 0, msg, NULL);
  json_decref(msg);
  snprintf(source, sizeof source, "workflow %lld", (long long)wf->id);
  memory_record(b, wf->session ? wf->session : "", text, source, wf_status_name(wf->status));
  free(text);
}

void finish(broker_t *b, workflow_t *wf, wf_status_t status, const char *why) {
  wf->status = status;
  wf->finished_ms = util_wall_ms();
  wf->report.present = true;
  wf->report.seconds = (double)(util_wall_ms() - wf->started_ms) / 1000.0;
  usage_of_steps(b, wf);
  if (why)
    wf_set_str(&wf->report.reason, why);
  wf_save_head(b, wf); /* the steps are stored as they changed */
  results_back(b, wf);
  log_info("workflow %lld %s%s%s", (long long)wf->id, wf_status_name(status), why ? ": " : "", why ? why : "");
  wf_event(b, "workflow_finished", wf, NULL);
}

wf_restore_t wf_restore_of(const json_t *c, bool existed) {
  const char *content = jx_str(c, "content", NULL);
  return (wf_restore_t){false,
                        strdup(jx_str(c, "path", "")),
                        existed,
                        content ? strdup(content) : NULL,
                        strdup(jx_str(c, "sha256", "")),
                        json_is_integer(json_object_get(c, "mode")) ? (int)jx_int(c, "mode", 0) : -1,
                        NULL,
                        NULL,
                        NULL};
}

bool wf_push_op(wf_rollback_t *rb, wf_restore_t op) {
  if (rb->n_ops == rb->cap_ops) {
    size_t cap = rb->cap_ops ? 2 * rb->cap_ops : 16;
    wf_restore_t *ops = realloc(rb->ops, cap * sizeof *ops);
    if (!ops) {
      free(op.path), free(op.content), free(op.sha256), free(op.expect), json_decref(op.keep);
      return false;
    }
    rb->ops = ops, rb->cap_ops = cap;
  }
  rb->ops[rb->n_ops++] = op;
  return true;
}

void wf_add_snapshot_ops(wf_rollback_t *rb, const json_t *cps, const json_t *end) {
  int64_t step = jx_int(end, "step", 0), attempt = jx_int(end, "attempt", 0);
  json_t *keep = json_array();
  if (!wf_push_op(rb, (wf_restore_t){.prune = true, .keep = keep, .mode = -1}))
    return;
  size_t j;
  json_t *f;
  json_array_foreach(cps, j, f) {
    if (strcmp(jx_str(f, "kind", ""), "snapshot_file") != 0 || jx_int(f, "step", 0) != step ||
        jx_int(f, "attempt", 0) != attempt)
      continue;
    if (jx_str(f, "path", NULL))
      json_array_append_new(keep, json_string(jx_str(f, "path", NULL)));
    wf_push_op(rb, wf_restore_of(f, true));
  }
}

/* Rollback: the checkpoint ledger in reverse, one restore at a time; where
 * the ledger knows what a step left behind, only that is restored (and only
 * when it is still there: see wf_restore_t.expect). */
static void rollback_ops(broker_t *b, wf_rollback_t *rb, workflow_t *wf) {
  json_t *cps = store_checkpoints(b->store, wf->id, true);
  for (size_t i = json_array_size(cps); i-- > 0;) {
    json_t *c = json_array_get(cps, i);
    const char *kind = jx_str(c, "kind", "");
    if (strcmp(kind, "file") == 0)
      wf_add_file_op(rb, wf, c);
    else if (strcmp(kind, "snapshot_end") == 0 && !wf_add_changed_ops(rb, cps, c))
      wf_add_snapshot_ops(rb, cps, c);
  }
  json_decref(cps);
}

static void rollback_answer(broker_t *b, workflow_t *wf, const char *code, const char *detail, const char *sha256,
                            const json_t *payload);

void wf_rollback_send(broker_t *b, workflow_t *wf) {
  wf_rollback_t *rb = wf->rollback;
  if (!rb || rb->next >= rb->n_ops)
    return;
  const wf_restore_t *op = &rb->ops[rb->next];
  peer_t *node = NULL;
  for (peer_t *n = b->peers; n; n = n->next)
    if (!n->dead && n->role == PEER_NODE && wf->workspace && strcmp(n->workspace, wf->workspace) == 0)
      node = n;
  if (!node)
    return; /* waits for a node of the workspace; the tick tries again */
  proto_msg_t *m = proto_msg_new(PROTO_RESTORE);
  if (!m)
    return;
  PROTO_SET(m, workflow, wf->id);
  PROTO_SET(m, seq, (int64_t)rb->next + 1);
  proto_set_str(m, PROTO_F_kind, op->prune ? "prune" : "file");
  if (!op->prune) {
    proto_set_str(m, PROTO_F_path, op->path);
    PROTO_SET(m, existed, op->existed);
    if (op->content)
      proto_set_str(m, PROTO_F_content, op->content);
    json_t *payload = json_object();
    if (op->mode >= 0) /* e.g. a deleted script comes back executable */
      json_object_set_new(payload, "mode", json_integer(op->mode));
    if (op->expect)
      json_object_set_new(payload, "expect", json_string(op->expect));
    if (op->type)
      json_object_set_new(payload, "type", json_string(op->type));
    if (json_object_size(payload))
      proto_set_json(m, PROTO_F_payload, payload);
    else
      json_decref(payload);
  } else {
    proto_set_json(m, PROTO_F_payload, json_pack("{s:O}", "keep", op->keep));
  }
  wf_set_str(&rb->sent_to, node->name);
  rb->sent_ms = util_now_ms();
  int64_t seq = m->seq;
  int rc = wf_send(b, node, m, NULL, NULL); /* in order with the batch's acknowledgements */
  if (rc < 0)
    restore_send_failed(b, wf, seq, rc);
}

/* Restore seq of wf's rollback could not be sent. */
static void restore_send_failed(broker_t *b, workflow_t *wf, int64_t seq, int rc) {
  wf_rollback_t *rb = wf->rollback;
  if (!rb || rb->next >= rb->n_ops || (size_t)seq != rb->next + 1)
    return;            /* answered, or another rollback since */
  if (rc == -EMSGSIZE) /* never fits: recorded as not restored, and the rollback goes on */
    rollback_answer(b, wf, "too_large", "the restore is larger than the frame limit", NULL, NULL);
  else
    wf_set_str(&rb->sent_to, NULL); /* the timer sends it again */
}

/* The end of a rollback: its results into the report, then the workflow ends. */
static void rollback_end(broker_t *b, workflow_t *wf) {
  wf_rollback_t *rb = wf->rollback;
  if (rb->rerun_step) { /* restores before a step runs again: not the workflow's end */
    wf_rerun_restored(b, wf);
    return;
  }
  wf->report.present = true;
  json_decref(wf->report.rollback);
  wf->report.rollback = json_pack("{s:O, s:O, s:O, s:O}", "restored", rb->restored, "mismatches", rb->mismatches,
                                  "deleted", rb->deleted, "conflicts", rb->conflicts);
  wf_status_t final = rb->final;
  char *why = rb->why ? strdup(rb->why) : NULL;
  wf_rollback_free(&wf->rollback);
  finish(b, wf, final, why);
  free(why);
}

/* The restores of a rollback, once none of the workflow's tool steps runs:
 * a step still running when the rollback began changes the workspace until
 * it ends, and what it changed is known only then (its result). */
static void rollback_restores(broker_t *b, workflow_t *wf) {
  wf_rollback_t *rb = wf->rollback;
  if (!rb || !rb->waiting)
    return;
  for (size_t i = 0; i < wf->n_steps; i++)
    if (wf->steps[i].status == STEP_RUNNING)
      return; /* its step_done / step_failed (or the lost-node grace) comes back here */
  rb->waiting = false;
  rollback_ops(b, rb, wf);
  log_info("workflow %lld: rolling back %zu change(s): %s", (long long)wf->id, rb->n_ops, rb->why);
  if (rb->n_ops == 0) {
    wf_report_t *r = &wf->report; /* a fresh report holding only the (empty) rollback */
    json_decref(r->rollback), json_decref(r->extra), free(r->reason);
    *r = (wf_report_t){.present = true, .seconds = NAN};
    rollback_end(b, wf);
    return;
  }
  wf_rollback_send(b, wf);
}

/* Sub-agents of agent steps are abandoned (their late answers ignored); tool
 * steps still running are waited for (rollback_restores). */
void rollback_start(broker_t *b, workflow_t *wf, const char *why) {
  wf_rollback_t *rb = calloc(1, sizeof *rb);
  if (!rb)
    return;
  rb->restored = json_array(), rb->mismatches = json_array(), rb->deleted = json_array();
  rb->conflicts = json_array();
  rb->why = strdup(why);
  rb->final = wf->status == WF_CANCELLED ? WF_CANCELLED : WF_FAILED;
  rb->waiting = true;
  for (size_t i = 0; i < wf->n_steps; i++)
    if (wf->steps[i].status == STEP_RUNNING && !wf->steps[i].tool)
      wf->steps[i].status = STEP_ABANDONED;
  wf_sched_stale(wf);
  wf->status = WF_ROLLING_BACK;
  wf_save(b, wf);
  wf_event(b, "workflow_rolling_back", wf, json_pack("{s:s}", "reason", why));
  wf_rollback_free(&wf->rollback);
  wf->rollback = rb;
  rollback_restores(b, wf);
}

/* A node's answer to the current restore (code set: it failed); payload: deleted (a prune's), changed
 * (false: the file already had its pre-image; nodes that do not say count as changed). */
static void rollback_answer(broker_t *b, workflow_t *wf, const char *code, const char *detail, const char *sha256,
                            const json_t *payload) {
  wf_rollback_t *rb = wf->rollback;
  const json_t *deleted = jx_arr(payload, "deleted");
  const wf_restore_t *op = &rb->ops[rb->next];
  if (code) {
    json_array_append_new(rb->mismatches,
                          json_pack("{s:s?, s:s, s:s?}", "path", op->path, "error", code, "detail", detail));
  } else if (!op->prune && jx_bool(payload, "conflict", false)) {
    json_array_append_new(rb->conflicts, json_pack("{s:s, s:s, s:s}", "path", op->path, "sha256", sha256 ? sha256 : "",
                                                   "expected", op->expect ? op->expect : ""));
  } else if (op->prune) {
    if (deleted)
      json_array_extend(rb->deleted, (json_t *)deleted);
  } else {
    bool ok = sha256 && op->sha256 && strcmp(sha256, op->sha256) == 0;
    json_array_append_new(ok ? rb->restored : rb->mismatches,
                          json_pack("{s:s, s:b, s:s, s:b}", "path", op->path, "existed", op->existed, "sha256",
                                    sha256 ? sha256 : "", "changed", jx_bool(payload, "changed", true)));
  }
  rb->next++;
  wf_set_str(&rb->sent_to, NULL);
  if (rb->next < rb->n_ops)
    wf_rollback_send(b, wf);
  else
    rollback_end(b, wf);
}

static void on_restored(broker_t *b, const proto_msg_t *m) {
  workflow_t *wf = wf_get(b, m->workflow);
  wf_rollback_t *rb = wf ? wf->rollback : NULL;
  if (!rb || rb->next >= rb->n_ops || (size_t)m->seq != rb->next + 1)
    return;
  rollback_answer(b, wf, m->code, m->detail, m->sha256, m->payload);
}

void workflow_on_node_msg(broker_t *b, peer_t *from, const proto_msg_t *m) {
  wf_batch_begin(b); /* the step's end and the steps it lets start: one commit */
  switch (m->type) {
  case PROTO_CHECKPOINT: on_checkpoint(b, from, m); break;
  case PROTO_STEP_DONE: on_step_done(b, from, m); break;
  case PROTO_STEP_FAILED: on_step_failed(b, from, m); break;
  case PROTO_RESTORED: on_restored(b, m); break;
  default: break;
  }
  wf_batch_end(b);
}

void workflow_node_lost(broker_t *b, peer_t *node) {
  for (workflow_t *wf = b->workflows; wf; wf = wf->next) {
    bool changed = false;
    for (size_t i = 0; i < wf->n_steps; i++) {
      wf_step_t *s = &wf->steps[i];
      if (s->status == STEP_RUNNING && s->node && strcmp(s->node, node->name) == 0 && !s->lost_ms) {
        /* It may come back with the step (see workflow_once.c); else the step runs again. */
        s->lost_ms = util_now_ms();
        note(s, "node lost", node->name);
        changed = true;
      }
    }
    if (changed)
      wf_save(b, wf);
  }
}

static bool node_alive(broker_t *b, const char *name) {
  for (peer_t *n = b->peers; name && n; n = n->next)
    if (!n->dead && n->role == PEER_NODE && strcmp(n->name, name) == 0)
      return true;
  return false;
}

/* Timer: retries, steps waiting for a slot, restores waiting for a node,
 * steps whose node did not come back. */
void workflow_timer(broker_t *b, int64_t now) {
  if (!b->workflows)
    return; /* no transaction opened on every tick of a broker that runs none */
  wf_batch_begin(b);
  wf_lost_steps_due(b);
  workflow_tick(b, now);
  for (workflow_t *wf = b->workflows; wf; wf = wf->next)
    if (wf->rollback && !node_alive(b, wf->rollback->sent_to))
      wf_rollback_send(b, wf);
  wf_batch_end(b);
}

/* A workflow as the last broker left it: steps in flight run again (agent
 * steps continue with their sub-agent's turn), a rollback starts over. */
static void resume(broker_t *b, workflow_t *wf) {
  for (size_t i = 0; i < wf->n_steps; i++) {
    wf_step_t *s = &wf->steps[i];
    if (s->status == STEP_RUNNING && !s->agent_session && s->node) {
      s->lost_ms = util_now_ms(); /* its node says whether it still has it (workflow_once.c) */
      log_info("workflow %lld step %lld was running on %s at the last stop; waiting for that node", (long long)wf->id,
               (long long)s->number, s->node);
    } else if (s->status == STEP_RUNNING && !s->agent_session) {
      s->status = STEP_PENDING;
      s->was_running = true;
      log_info("workflow %lld step %lld was running at the last stop; it runs again", (long long)wf->id,
               (long long)s->number);
    }
  }
  wf_sched_stale(wf);
  if (wf->status == WF_ROLLING_BACK) {
    wf->status = WF_RUNNING;
    rollback_start(b, wf, "rollback interrupted by a broker restart; started again");
  }
  for (size_t i = 0; i < wf->n_steps && wf->status == WF_RUNNING; i++)
    if (wf->steps[i].status == STEP_RUNNING && wf->steps[i].agent_session)
      agents_resume(b, wf->steps[i].agent_session); /* its answer may be stored and not acted on */
}

int workflow_start(broker_t *b) {
  b->workflows = NULL;
  json_t *all = store_workflows(b->store);
  size_t i;
  json_t *doc;
  json_array_foreach(all, i, doc) {
    char err[200];
    workflow_t *wf = wf_from_stored(doc, err, sizeof err);
    if (!wf) {
      log_error("state: workflow %lld cannot be read (%s); it is left out", (long long)jx_int(doc, "id", 0), err);
      continue;
    }
    wf_append(b, wf);
    resume(b, wf);
  }
  json_decref(all);
  return 0;
}

void workflow_stop(broker_t *b) {
  while (b->workflows) {
    workflow_t *wf = b->workflows;
    b->workflows = wf->next;
    workflow_destroy(&wf);
  }
}
