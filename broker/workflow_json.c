/* workflow_json: a workflow's JSON forms, the one place that knows them (see
 * workflow.h).
 *
 * Stored form (one document per workflow, rewritten on each change; older
 * brokers wrote the same members, in another order, so their state
 * directories load):
 *   {session, plan: {title, steps: [...], stated: {seconds, cost}, truncated?},
 *    created_ms, steps: {"N": {status, attempts, node | agent_session,
 *    started_ms, finished_ms, next_try_ms, result, error, changed, usage,
 *    was_running, history: [{attempt, at_ms, what, detail}]}}, origin, errors,
 *    estimate: {seconds, cost, tokens_per_agent_step}, status, text, id,
 *    workspace, started_ms, finished_ms, report: {rollback, seconds, usage, reason}}
 * Wire form (controllers): {id, title, status, estimate, steps: [plan step
 *   fields + status, attempts, result, error, node, agent_session,
 *   started_ms, finished_ms, usage], errors, session, workspace, created_ms,
 *   started_ms, finished_ms, report}; the workflow's keys are always there
 *   (null when not set), a step's state keys only when set. In a step_*
 *   event, steps holds only the step the event is about (wf_to_wire_step).
 * A step's state is also stored alone (wf_step_to_stored: one row per step,
 *   see store_workflow_step_put), as the document's steps."N" member.
 * Fields this module does not know are kept and written back as they came. */
#include "workflow.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"

/* ---- small pieces ------------------------------------------------------------ */

/* An integer JSON number when v is whole (as the plan module writes them), else a real. */
static json_t *number_json(double v) {
  return v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v) : json_real(v);
}

static char *dup_str(const json_t *obj, const char *key) {
  const char *s = jx_str(obj, key, NULL);
  return s ? strdup(s) : NULL;
}

static json_t *copy_of(const json_t *v) {
  return v ? json_deep_copy(v) : NULL;
}

static void set_str(json_t *obj, const char *key, const char *s) {
  if (s)
    json_object_set_new(obj, key, json_string(s));
}

static void set_ms(json_t *obj, const char *key, int64_t ms) {
  if (ms)
    json_object_set_new(obj, key, json_integer(ms));
}

/* A string (NULL: absent) or a count of ms (0: absent) of a struct, by offset. */
typedef struct {
  const char *key;
  bool is_str; /* char *, else int64_t */
  size_t off;
} field_t;

static void fields_read(void *base, const field_t *f, size_t n, const json_t *j) {
  for (size_t i = 0; i < n; i++) {
    char *p = (char *)base + f[i].off;
    if (f[i].is_str)
      *(char **)p = dup_str(j, f[i].key);
    else
      *(int64_t *)p = jx_int(j, f[i].key, 0);
  }
}

static void fields_write(json_t *o, const void *base, const field_t *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const char *p = (const char *)base + f[i].off;
    if (f[i].is_str)
      set_str(o, f[i].key, *(char *const *)p);
    else
      set_ms(o, f[i].key, *(const int64_t *)p);
  }
}

#define N_OF(a) (sizeof a / sizeof a[0])
#define STR_FIELD(type, member) \
  { #member, true, offsetof(type, member) }
#define MS_FIELD(type, member) \
  { #member, false, offsetof(type, member) }

/* The members of obj not named in known, or NULL when there are none. Caller owns. */
static json_t *extra_of(const json_t *obj, const char *const *known) {
  json_t *extra = NULL;
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    const char *const *k = known;
    while (*k && strcmp(*k, key) != 0)
      k++;
    if (*k)
      continue;
    if (!extra)
      extra = json_object();
    json_object_set(extra, key, v);
  }
  return extra;
}

static void add_extra(json_t *obj, const json_t *extra) {
  if (extra)
    json_object_update_missing(obj, (json_t *)extra);
}

/* ---- the plan -------------------------------------------------------------- */

static const char *const plan_step_keys[] = {"number",
                                             "title",
                                             "agent",
                                             "profile",
                                             "tool",
                                             "arguments",
                                             "arguments_text",
                                             "arguments_truncated",
                                             "dependencies",
                                             "estimated_seconds",
                                             "estimated_seconds_default",
                                             "description",
                                             NULL};

static void step_from_plan(wf_step_t *s, const json_t *j) {
  s->number = jx_int(j, "number", 0);
  s->title = dup_str(j, "title");
  s->agent = dup_str(j, "agent");
  s->profile = dup_str(j, "profile");
  s->tool = dup_str(j, "tool");
  s->arguments = copy_of(jx_obj(j, "arguments"));
  s->arguments_text = dup_str(j, "arguments_text");
  s->arguments_truncated = jx_bool(j, "arguments_truncated", false);
  const json_t *deps = jx_arr(j, "dependencies");
  s->deps = calloc(json_array_size(deps) + 1, sizeof *s->deps);
  for (size_t i = 0; s->deps && i < json_array_size(deps); i++)
    if (json_is_integer(json_array_get(deps, i)))
      s->deps[s->n_deps++] = json_integer_value(json_array_get(deps, i));
  s->estimated_seconds = jx_num(j, "estimated_seconds", NAN);
  s->estimated_default = jx_bool(j, "estimated_seconds_default", false);
  s->description = dup_str(j, "description");
  s->plan_extra = extra_of(j, plan_step_keys);
  s->status = STEP_PENDING;
}

/* A step as the plan holds it (keys in the order the parser writes them most often). */
static json_t *step_to_plan(const wf_step_t *s) {
  json_t *o = json_object(), *deps = json_array();
  json_object_set_new(o, "number", json_integer(s->number));
  set_str(o, "title", s->title);
  set_str(o, "agent", s->agent);
  set_str(o, "profile", s->profile);
  json_object_set_new(o, "tool", s->tool ? json_string(s->tool) : json_null());
  json_object_set_new(o, "arguments", s->arguments ? json_deep_copy(s->arguments) : json_null());
  for (size_t i = 0; i < s->n_deps; i++)
    json_array_append_new(deps, json_integer(s->deps[i]));
  json_object_set_new(o, "dependencies", deps);
  set_str(o, "arguments_text", s->arguments_text);
  if (s->arguments_truncated)
    json_object_set_new(o, "arguments_truncated", json_true());
  if (!isnan(s->estimated_seconds))
    json_object_set_new(o, "estimated_seconds", number_json(s->estimated_seconds));
  if (s->estimated_default)
    json_object_set_new(o, "estimated_seconds_default", json_true());
  set_str(o, "description", s->description);
  add_extra(o, s->plan_extra);
  return o;
}

json_t *wf_plan_json(const workflow_t *wf) {
  json_t *plan = json_object(), *steps = json_array();
  set_str(plan, "title", wf->title);
  for (size_t i = 0; i < wf->n_steps; i++)
    json_array_append_new(steps, step_to_plan(&wf->steps[i]));
  json_object_set_new(plan, "steps", steps);
  json_object_set_new(plan, "stated",
                      json_pack("{s:o, s:o}", "seconds",
                                isnan(wf->stated_seconds) ? json_null() : number_json(wf->stated_seconds), "cost",
                                isnan(wf->stated_cost) ? json_null() : number_json(wf->stated_cost)));
  if (wf->truncated)
    json_object_set_new(plan, "truncated", json_true());
  add_extra(plan, wf->plan_extra);
  return plan;
}

int wf_set_plan(workflow_t *wf, const json_t *plan) {
  static const char *const keys[] = {"title", "steps", "stated", "truncated", NULL};
  const json_t *steps = jx_arr(plan, "steps");
  if (!steps)
    return -1;
  wf_step_t *v = calloc(json_array_size(steps) + 1, sizeof *v);
  if (!v)
    return -1;
  size_t n = 0;
  for (size_t i = 0; i < json_array_size(steps); i++)
    if (json_is_object(json_array_get(steps, i)))
      step_from_plan(&v[n++], json_array_get(steps, i));
  for (size_t i = 0; i < wf->n_steps; i++)
    wf_step_clear(&wf->steps[i]);
  free(wf->steps);
  wf_sched_free(wf);
  wf->steps = v, wf->n_steps = n;
  wf_set_str(&wf->title, jx_str(plan, "title", NULL));
  const json_t *stated = jx_obj(plan, "stated");
  wf->stated_seconds = jx_num(stated, "seconds", NAN);
  wf->stated_cost = jx_num(stated, "cost", NAN);
  wf->truncated = jx_bool(plan, "truncated", false);
  json_decref(wf->plan_extra);
  wf->plan_extra = extra_of(plan, keys);
  return 0;
}

/* ---- a step's run state ------------------------------------------------------ */

static const char *const state_keys[] = {
    "status", "attempts", "node",    "agent_session", "started_ms",  "finished_ms", "next_try_ms",
    "result", "error",    "changed", "usage",         "was_running", "history",     NULL};

/* The state's simple fields: the JSON key is the member's name. */
/* {tokens, cost}, or NULL: none. */
static void usage_read(const json_t *u, bool *has, int64_t *tokens, double *cost) {
  *has = u != NULL;
  *tokens = jx_int(u, "tokens", 0);
  *cost = jx_num(u, "cost", 0);
}

static const field_t state_fields[] = {STR_FIELD(wf_step_t, node),       STR_FIELD(wf_step_t, agent_session),
                                       MS_FIELD(wf_step_t, started_ms),  MS_FIELD(wf_step_t, finished_ms),
                                       MS_FIELD(wf_step_t, next_try_ms), STR_FIELD(wf_step_t, result),
                                       STR_FIELD(wf_step_t, error)};

static int state_from_stored(wf_step_t *s, const json_t *j, char *err, size_t errlen) {
  const char *status = jx_str(j, "status", "pending");
  if (!wf_step_status_parse(status, &s->status)) {
    snprintf(err, errlen, "step %lld has an unknown status \"%.40s\"", (long long)s->number, status);
    return -1;
  }
  s->has_state = true;
  s->attempts = (int)jx_int(j, "attempts", 0);
  fields_read(s, state_fields, N_OF(state_fields), j);
  s->changed = copy_of(json_object_get(j, "changed"));
  usage_read(jx_obj(j, "usage"), &s->has_usage, &s->usage_tokens, &s->usage_cost);
  s->was_running = jx_bool(j, "was_running", false);
  const json_t *h = jx_arr(j, "history");
  s->history = calloc(json_array_size(h) + 1, sizeof *s->history);
  for (size_t i = 0; s->history && i < json_array_size(h); i++) {
    const json_t *e = json_array_get(h, i);
    s->history[s->n_history++] = (wf_history_t){(int)jx_int(e, "attempt", 0), jx_int(e, "at_ms", 0),
                                                strdup(jx_str(e, "what", "")), dup_str(e, "detail")};
  }
  s->state_extra = extra_of(j, state_keys);
  return 0;
}

static json_t *usage_json(int64_t tokens, double cost) {
  return json_pack("{s:I, s:f}", "tokens", (json_int_t)tokens, "cost", cost);
}

static json_t *state_to_stored(const wf_step_t *s) {
  json_t *o = json_object();
  json_object_set_new(o, "status", json_string(wf_step_status_name(s->status)));
  json_object_set_new(o, "attempts", json_integer(s->attempts));
  fields_write(o, s, state_fields, N_OF(state_fields));
  if (s->changed)
    json_object_set(o, "changed", s->changed);
  if (s->has_usage)
    json_object_set_new(o, "usage", usage_json(s->usage_tokens, s->usage_cost));
  if (s->was_running)
    json_object_set_new(o, "was_running", json_true());
  if (s->n_history) {
    json_t *h = json_array();
    for (size_t i = 0; i < s->n_history; i++)
      json_array_append_new(h, json_pack("{s:i, s:I, s:s, s:s?}", "attempt", s->history[i].attempt, "at_ms",
                                         (json_int_t)s->history[i].at_ms, "what", s->history[i].what, "detail",
                                         s->history[i].detail));
    json_object_set_new(o, "history", h);
  }
  add_extra(o, s->state_extra);
  return o;
}

/* ---- the report ------------------------------------------------------------ */

static void report_from_stored(wf_report_t *r, const json_t *j) {
  static const char *const keys[] = {"rollback", "seconds", "usage", "reason", NULL};
  r->present = j != NULL;
  r->rollback = copy_of(jx_obj(j, "rollback"));
  r->seconds = jx_num(j, "seconds", NAN);
  usage_read(jx_obj(j, "usage"), &r->has_usage, &r->tokens, &r->cost);
  r->reason = dup_str(j, "reason");
  r->extra = j ? extra_of(j, keys) : NULL;
}

static json_t *report_json(const wf_report_t *r) {
  if (!r->present)
    return NULL;
  json_t *o = json_object();
  if (r->rollback)
    json_object_set(o, "rollback", r->rollback);
  if (!isnan(r->seconds))
    json_object_set_new(o, "seconds", json_real(r->seconds));
  if (r->has_usage)
    json_object_set_new(o, "usage", usage_json(r->tokens, r->cost));
  set_str(o, "reason", r->reason);
  add_extra(o, r->extra);
  return o;
}

/* ---- the stored form ------------------------------------------------------- */

static const char *const doc_keys[] = {"id",        "session",    "plan",        "created_ms", "steps",
                                       "origin",    "errors",     "estimate",    "status",     "text",
                                       "workspace", "started_ms", "finished_ms", "report",     NULL};

/* {seconds, cost, tokens_per_agent_step} and, when known, the total tokens and each step's estimate. */
static json_t *estimate_json(const workflow_t *wf) {
  json_t *o = json_pack("{s:f, s:f, s:f}", "seconds", wf->est_seconds, "cost", wf->est_cost, "tokens_per_agent_step",
                        wf->est_tokens);
  if (wf->est_steps) {
    json_object_set_new(o, "tokens", json_integer(wf->est_total_tokens));
    json_object_set(o, "steps", wf->est_steps);
  }
  return o;
}

/* The document's simple fields, named as the members. */
static const field_t doc_fields[] = {STR_FIELD(workflow_t, session),   MS_FIELD(workflow_t, created_ms),
                                     STR_FIELD(workflow_t, origin),    STR_FIELD(workflow_t, text),
                                     MS_FIELD(workflow_t, id),         STR_FIELD(workflow_t, workspace),
                                     MS_FIELD(workflow_t, started_ms), MS_FIELD(workflow_t, finished_ms)};

json_t *wf_head_to_stored(const workflow_t *wf) {
  json_t *doc = json_object();
  if (wf->errors)
    json_object_set(doc, "errors", wf->errors);
  if (wf->has_estimate)
    json_object_set_new(doc, "estimate", estimate_json(wf));
  json_object_set_new(doc, "status", json_string(wf_status_name(wf->status)));
  fields_write(doc, wf, doc_fields, N_OF(doc_fields));
  json_t *report = report_json(&wf->report);
  if (report)
    json_object_set_new(doc, "report", report);
  add_extra(doc, wf->extra);
  return doc;
}

json_t *wf_to_stored(const workflow_t *wf) {
  json_t *doc = json_object(), *states = json_object();
  json_object_set_new(doc, "plan", wf_plan_json(wf));
  for (size_t i = 0; i < wf->n_steps; i++) {
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)wf->steps[i].number);
    if (wf->steps[i].has_state && !json_object_get(states, key))
      json_object_set_new(states, key, state_to_stored(&wf->steps[i]));
  }
  json_object_set_new(doc, "steps", states);
  json_t *head = wf_head_to_stored(wf);
  json_object_update(doc, head);
  json_decref(head);
  return doc;
}

/* Each "N": {...} of the stored steps onto the step numbered N. */
static int states_from_stored(workflow_t *wf, const json_t *states, char *err, size_t errlen) {
  const char *key;
  json_t *st;
  json_object_foreach((json_t *)states, key, st) {
    wf_step_t *s = wf_step(wf, strtoll(key, NULL, 10));
    if (s && json_is_object(st) && state_from_stored(s, st, err, errlen) < 0)
      return -1;
  }
  return 0;
}

workflow_t *wf_from_stored(const json_t *doc, char *err, size_t errlen) {
  const char *status = jx_str(doc, "status", "");
  workflow_t *wf = workflow_new();
  if (!wf) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (!wf_status_parse(status, &wf->status)) {
    snprintf(err, errlen, "unknown status \"%.40s\"", status);
  } else if (!jx_obj(doc, "plan") || wf_set_plan(wf, jx_obj(doc, "plan")) < 0) {
    snprintf(err, errlen, "no plan with a list of steps");
  } else if (states_from_stored(wf, jx_obj(doc, "steps"), err, errlen) == 0) {
    fields_read(wf, doc_fields, N_OF(doc_fields), doc);
    wf->errors = copy_of(jx_arr(doc, "errors"));
    const json_t *est = jx_obj(doc, "estimate");
    wf->has_estimate = est != NULL;
    wf->est_seconds = jx_num(est, "seconds", 0);
    wf->est_cost = jx_num(est, "cost", 0);
    wf->est_tokens = jx_num(est, "tokens_per_agent_step", 0);
    wf->est_total_tokens = jx_int(est, "tokens", 0);
    wf->est_steps = copy_of(jx_arr(est, "steps"));
    report_from_stored(&wf->report, jx_obj(doc, "report"));
    wf->extra = extra_of(doc, doc_keys);
    /* Approved: every step has a state (wf_steps_reset), stored or not yet changed; a full save
     * must keep them all, those that change only after this load too. */
    for (size_t i = 0; wf->started_ms > 0 && i < wf->n_steps; i++)
      wf->steps[i].has_state = true;
    return wf;
  }
  workflow_destroy(&wf);
  return NULL;
}

/* ---- the wire form ------------------------------------------------------------- */

/* The plan step, then these of its state (as the engine always showed them): status, attempts,
 * result, error, node, agent_session, started_ms, finished_ms, usage; written as state_to_stored
 * writes them (history left out: it is not shown, and as long as the step's life). */
static json_t *step_to_wire(const wf_step_t *s) {
  wf_step_t *cache = (wf_step_t *)s; /* the definition does not change: its JSON is made once, then shared */
  if (!cache->wire_plan)
    cache->wire_plan = step_to_plan(s);
  json_t *v = json_copy(cache->wire_plan);
  json_object_set_new(v, "status", json_string(wf_step_status_name(s->status)));
  json_object_set_new(v, "attempts", json_integer(s->attempts));
  static const field_t shown[] = {STR_FIELD(wf_step_t, result),    STR_FIELD(wf_step_t, error),
                                  STR_FIELD(wf_step_t, node),      STR_FIELD(wf_step_t, agent_session),
                                  MS_FIELD(wf_step_t, started_ms), MS_FIELD(wf_step_t, finished_ms)};
  fields_write(v, s, shown, N_OF(shown));
  if (s->has_usage)
    json_object_set_new(v, "usage", usage_json(s->usage_tokens, s->usage_cost));
  return v;
}

static json_t *str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

static json_t *ms_or_null(int64_t ms) {
  return ms ? json_integer(ms) : json_null();
}

json_t *wf_step_to_stored(const wf_step_t *s) {
  return state_to_stored(s);
}

json_t *wf_to_wire(const workflow_t *wf) {
  return wf_to_wire_step(wf, NULL);
}

/* Every key is there; what is not known yet is null (as controllers have always seen it). */
/* The entry of the per-step estimates for step s, as a list of it alone (or none): the entries follow the
 * plan's steps, so it is looked for at s's place first. */
static json_t *one_estimate(const workflow_t *wf, const wf_step_t *s) {
  json_t *out = json_array(), *e = json_array_get(wf->est_steps, (size_t)(s - wf->steps));
  if (jx_int(e, "number", 0) != s->number) {
    size_t i;
    json_t *x;
    e = NULL;
    json_array_foreach(wf->est_steps, i, x) if (!e && jx_int(x, "number", 0) == s->number) e = x;
  }
  if (e)
    json_array_append(out, e);
  return out;
}

json_t *wf_to_wire_step(const workflow_t *wf, const wf_step_t *only) {
  json_t *v = json_object(), *steps = json_array(), *report = report_json(&wf->report);
  json_object_set_new(v, "id", json_integer(wf->id));
  json_object_set_new(v, "title", str_or_null(wf->title));
  json_object_set_new(v, "status", json_string(wf_status_name(wf->status)));
  json_t *est = wf->has_estimate ? estimate_json(wf) : json_null();
  if (only && json_object_get(est, "steps")) /* as steps: that step's alone (the list is as long as the plan) */
    json_object_set_new(est, "steps", one_estimate(wf, only));
  json_object_set_new(v, "estimate", est);
  for (size_t i = 0; !only && i < wf->n_steps; i++)
    json_array_append_new(steps, step_to_wire(&wf->steps[i]));
  if (only)
    json_array_append_new(steps, step_to_wire(only));
  json_object_set_new(v, "steps", steps);
  json_object_set_new(v, "errors", wf->errors ? json_incref(wf->errors) : json_null());
  json_object_set_new(v, "session", str_or_null(wf->session));
  json_object_set_new(v, "workspace", str_or_null(wf->workspace));
  json_object_set_new(v, "created_ms", ms_or_null(wf->created_ms));
  json_object_set_new(v, "started_ms", ms_or_null(wf->started_ms));
  json_object_set_new(v, "finished_ms", ms_or_null(wf->finished_ms));
  json_object_set_new(v, "report", report ? report : json_null());
  return v;
}
