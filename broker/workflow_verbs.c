/* workflow_verbs.c: what controllers ask of plans and workflows: list, show,
 * approve, reject, modify, cancel, pause, resume, and templates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "internal.h"
#include "jx.h"
#include "log.h"
#include "plan.h"
#include "util.h"
#include "workflow_int.h"

/* ---- budgets beside the estimate ------------------------------------------------ */

/* A warning when the estimate needs more than report r has left. */
static void warn_if_short(json_t *warnings, const json_t *r, const workflow_t *wf) {
  const json_t *left = jx_obj(r, "left");
  const json_t *t = json_object_get(left, "tokens"), *c = json_object_get(left, "cost");
  char msg[300];
  if (json_is_integer(t) && wf->est_total_tokens > json_integer_value(t)) {
    snprintf(msg, sizeof msg, "the estimate (%lld tokens) is more than the %lld tokens left in the budget of %.100s",
             (long long)wf->est_total_tokens, (long long)json_integer_value(t), jx_str(r, "scope", "?"));
    json_array_append_new(warnings, json_string(msg));
  }
  if (json_is_number(c) && wf->est_cost > json_number_value(c)) {
    snprintf(msg, sizeof msg, "the estimate ($%.4f) is more than the $%.4f left in the budget of %.100s", wf->est_cost,
             json_number_value(c), jx_str(r, "scope", "?"));
    json_array_append_new(warnings, json_string(msg));
  }
}

json_t *wf_budget_json(broker_t *b, const workflow_t *wf) {
  char scope[STORE_ID_MAX + 16];
  snprintf(scope, sizeof scope, "workflow:%lld", (long long)wf->id);
  json_t *own = budget_report(b, scope), *sessions = json_array(), *warnings = json_array();
  warn_if_short(warnings, own, wf);
  snprintf(scope, sizeof scope, "%s", wf->session ? wf->session : "");
  for (int depth = 0; depth < 32 && scope[0]; depth++) { /* the scopes budget_allows checks, upwards */
    store_session_t row;
    json_t *r = store_session_row(b->store, scope, &row) == 0 ? budget_report(b, scope) : NULL;
    if (!r)
      break;
    if (depth == 0 || !json_is_null(json_object_get(r, "limit"))) {
      warn_if_short(warnings, r, wf);
      json_array_append_new(sessions, r);
    } else {
      json_decref(r);
    }
    if (!row.parent[0] || strcmp(row.parent, scope) == 0)
      break;
    snprintf(scope, sizeof scope, "%s", row.parent);
  }
  return json_pack("{s:o, s:o, s:o}", "workflow", own ? own : json_null(), "sessions", sessions, "warnings", warnings);
}

/* ---- verbs ------------------------------------------------------------------- */

json_t *workflow_list(broker_t *b) {
  json_t *out = json_array();
  for (workflow_t *wf = b->workflows; wf; wf = wf->next)
    json_array_append_new(out, wf_to_wire(wf));
  return out;
}

json_t *workflow_show(broker_t *b, int64_t id, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf) {
    snprintf(err, errlen, "no plan %lld", (long long)id);
    return NULL;
  }
  json_t *v = wf_to_wire(wf);
  if (wf->text)
    json_object_set_new(v, "text", json_string(wf->text));
  json_object_set_new(v, "checkpoints", store_checkpoints(b->store, id, false));
  json_object_set_new(v, "budget", wf_budget_json(b, wf));
  return v;
}

/* Workspace of an approved plan: the one asked for, else that of a node. */
static const char *choose_workspace(broker_t *b, const char *wanted) {
  for (peer_t *n = b->peers; n; n = n->next)
    if (!n->dead && n->role == PEER_NODE && (!wanted || strcmp(n->workspace, wanted) == 0))
      return n->workspace;
  return NULL;
}

int workflow_approve(broker_t *b, int64_t id, const char *workspace, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf) {
    snprintf(err, errlen, "no plan %lld", (long long)id);
    return -1;
  }
  if (!wf_allows(wf->status, WF_APPROVE)) {
    snprintf(err, errlen, "plan %lld is %s; only a pending, valid plan can be approved%s", (long long)id,
             wf_status_name(wf->status), wf->status == WF_INVALID ? " (fix it with modify)" : "");
    return -1;
  }
  const char *ws = choose_workspace(b, workspace);
  if (!ws) {
    snprintf(err, errlen, workspace ? "no agent daemon serves workspace %s" : "no agent daemon is registered to run it",
             workspace);
    return -1;
  }
  bool had_state = false; /* a plan's steps have none before it runs (unless an older broker wrote some) */
  for (size_t i = 0; i < wf->n_steps; i++)
    had_state = had_state || wf->steps[i].has_state;
  wf_steps_reset(wf);
  wf_set_str(&wf->workspace, ws);
  wf->status = WF_RUNNING;
  wf->started_ms = util_wall_ms();
  if (had_state)
    wf_save(b, wf);
  else
    wf_save_head(b, wf); /* each step's state is stored once it changes */
  log_info("plan %lld approved; running in %s", (long long)id, ws);
  wf_batch_begin(b);
  wf_event(b, "workflow_started", wf, NULL);
  advance(b, wf, util_now_ms());
  wf_batch_end(b);
  return 0;
}

int workflow_reject(broker_t *b, int64_t id, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf || !wf_allows(wf->status, WF_REJECT)) {
    snprintf(err, errlen, wf ? "plan %lld is %s; only a pending plan can be rejected" : "no plan %lld", (long long)id,
             wf ? wf_status_name(wf->status) : "");
    return -1;
  }
  wf->status = WF_REJECTED;
  wf_save(b, wf);
  wf_event(b, "plan_rejected", wf, NULL);
  return 0;
}

/* A set_profile edit checked against the config, with the profile's role added
 * (the step runs as that role); NULL with err set when the step or profile cannot be. */
static json_t *profile_edit(broker_t *b, workflow_t *wf, const json_t *edit, char *err, size_t errlen) {
  const json_t *n = json_object_get(edit, "step"), *name = json_object_get(edit, "profile");
  wf_step_t *s = json_is_integer(n) ? wf_step(wf, json_integer_value(n)) : NULL;
  sbuf_t known = {.max = 600};
  const char *why = NULL;
  const cadre_profile_t *p = NULL;
  if (!s) {
    for (size_t i = 0; i < wf->n_steps; i++)
      sbuf_printf(&known, "%s%lld", known.len ? ", " : "", (long long)wf->steps[i].number);
    snprintf(err, errlen, "plan %lld has no step %lld (its steps: %s)", (long long)wf->id,
             (long long)json_integer_value(n), known.len ? sbuf_str(&known) : "none");
  } else if (json_is_string(name) && strcmp(json_string_value(name), "default") != 0 &&
             (why = wf_profile_problem(b, s, json_string_value(name), &p))) {
    wf_step_profiles(b, &known);
    snprintf(err, errlen, "step %lld %s: \"%.64s\" (profiles: %s)", (long long)s->number, why, json_string_value(name),
             known.len ? sbuf_str(&known) : "none");
  }
  sbuf_free(&known);
  if (!s || why)
    return NULL;
  json_t *e = json_deep_copy(edit);
  if (p)
    json_object_set_new(e, "role", json_string(p->role));
  return e;
}

json_t *workflow_modify(broker_t *b, int64_t id, const json_t *edit, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf || !wf_allows(wf->status, WF_MODIFY)) {
    snprintf(err, errlen, wf ? "plan %lld is %s; only a pending plan can be modified" : "no plan %lld", (long long)id,
             wf ? wf_status_name(wf->status) : "");
    return NULL;
  }
  bool swap = strcmp(jx_str(edit, "op", ""), "set_profile") == 0;
  json_t *checked = swap ? profile_edit(b, wf, edit, err, errlen) : json_incref((json_t *)edit);
  if (!checked)
    return NULL;
  json_t *old = wf_plan_json(wf), *before = wf_to_wire(wf);
  json_t *plan = plan_edit(old, checked, err, errlen);
  json_decref(old);
  json_decref(checked);
  if (!plan) {
    json_decref(before);
    return NULL;
  }
  int rc = wf_set_plan(wf, plan);
  json_decref(plan);
  if (rc < 0) {
    snprintf(err, errlen, "the edited plan cannot be read");
    json_decref(before);
    return NULL;
  }
  assess(b, wf);
  wf_save(b, wf);
  wf_event(b, "plan_modified", wf, json_pack("{s:s, s:o}", "text", wf->text, "budget", wf_budget_json(b, wf)));
  json_t *v = wf_to_wire(wf);
  json_object_set(v, "before", json_object_get(before, "estimate")); /* the estimate the edit replaced */
  json_object_set_new(v, "budget", wf_budget_json(b, wf));
  json_decref(before);
  return v;
}

/* Tells a step's node to stop it; its slot is free again when its result
 * (step_failed cancelled, or a step_done already on its way) comes. */
static void cancel_on_node(broker_t *b, const workflow_t *wf, const wf_step_t *s, peer_t *n) {
  proto_msg_t *m = wf_step_msg(PROTO_STEP_RUN, wf->id, s->number, s->attempts);
  if (!m)
    return;
  proto_set_str(m, PROTO_F_kind, "cancel");
  proto_set_json(m, PROTO_F_args, json_object());
  proto_set_json(m, PROTO_F_payload, json_pack("{s:b}", "cancel", 1));
  broker_send(b, n, m);
  proto_msg_destroy(&m);
}

/* Stops the steps in flight: tool steps on their nodes, agent steps' sub-agents. */
static void stop_running(broker_t *b, workflow_t *wf) {
  for (size_t i = 0; i < wf->n_steps; i++) {
    const wf_step_t *s = &wf->steps[i];
    if (s->status != STEP_RUNNING)
      continue;
    char err[256];
    if (s->agent_session) {
      agents_stop(b, s->agent_session, err, sizeof err);
      continue;
    }
    for (peer_t *n = b->peers; n; n = n->next) {
      if (!n->dead && n->role == PEER_NODE && s->node && strcmp(n->name, s->node) == 0) {
        cancel_on_node(b, wf, s, n);
        break;
      }
    }
  }
}

int workflow_cancel(broker_t *b, int64_t id, bool rollback, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf || !wf_allows(wf->status, WF_CANCEL)) {
    snprintf(err, errlen,
             wf ? "workflow %lld is %s; only a running or paused one can be cancelled" : "no workflow %lld",
             (long long)id, wf ? wf_status_name(wf->status) : "");
    return -1;
  }
  stop_running(b, wf);
  wf->status = WF_CANCELLED;
  if (rollback) {
    rollback_start(b, wf, "cancelled by the user");
  } else {
    wf_rollback_free(&wf->rollback); /* restores before a step runs again, if any */
    finish(b, wf, WF_CANCELLED, "cancelled by the user (no rollback)");
  }
  return 0;
}

int workflow_pause(broker_t *b, int64_t id, bool pause, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf || !wf_allows(wf->status, pause ? WF_PAUSE : WF_RESUME)) {
    snprintf(err, errlen, wf ? "workflow %lld is %s, not %s" : "no workflow %lld", (long long)id,
             wf ? wf_status_name(wf->status) : "", pause ? "running" : "paused");
    return -1;
  }
  wf->status = pause ? WF_PAUSED : WF_RUNNING;
  wf_save(b, wf);
  wf_event(b, pause ? "workflow_paused" : "workflow_resumed", wf, NULL);
  if (!pause)
    advance(b, wf, util_now_ms());
  return 0;
}

/* {{name}} placeholders of a plan, for a template's parameters. */
static void find_params(const json_t *v, json_t *out) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    for (const char *p = strstr(s, "{{"); p; p = strstr(p + 2, "{{")) {
      const char *e = strstr(p + 2, "}}");
      if (!e || e - p - 2 > 64)
        break;
      char name[80];
      snprintf(name, sizeof name, "%.*s", (int)(e - p - 2), p + 2);
      json_object_set_new(out, name, json_true());
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) find_params(x, out);
  } else if (json_is_object(v)) {
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) find_params(x, out);
  }
}

json_t *workflow_template_save(broker_t *b, int64_t id, const char *name, char *err, size_t errlen) {
  workflow_t *wf = wf_get(b, id);
  if (!wf) {
    snprintf(err, errlen, "no plan %lld", (long long)id);
    return NULL;
  }
  json_t *set = json_object(), *params = json_array(), *plan = wf_plan_json(wf);
  find_params(plan, set);
  const char *k;
  json_t *v;
  json_object_foreach(set, k, v) json_array_append_new(params, json_string(k));
  json_decref(set);
  json_t *t = json_pack("{s:o, s:o, s:I, s:I}", "plan", plan, "params", params, "from_plan", (json_int_t)id,
                        "created_ms", (json_int_t)util_wall_ms());
  if (store_template_put(b->store, name, t) < 0) {
    snprintf(err, errlen, "cannot store the template: %s", store_errmsg(b->store));
    json_decref(t);
    return NULL;
  }
  json_object_set_new(t, "name", json_string(name));
  return t;
}

json_t *workflow_template_run(broker_t *b, const char *name, const json_t *values, const char *session, char *err,
                              size_t errlen) {
  json_t *all = store_templates(b->store), *found = NULL;
  size_t i;
  json_t *t;
  json_array_foreach(all, i, t) if (strcmp(jx_str(t, "name", ""), name) == 0) found = t;
  if (!found) {
    snprintf(err, errlen, "no template \"%.64s\"", name);
    json_decref(all);
    return NULL;
  }
  json_t *missing = NULL;
  json_t *plan = plan_instantiate(jx_obj(found, "plan"), values, &missing);
  json_decref(all);
  if (json_array_size(missing) > 0) {
    char *m = json_dumps(missing, JSON_COMPACT);
    snprintf(err, errlen, "template \"%.64s\" needs values for %s", name, m ? m : "?");
    free(m);
    json_decref(missing);
    json_decref(plan);
    return NULL;
  }
  json_decref(missing);
  workflow_t *wf = plan ? propose(b, session, plan, "template") : NULL;
  return wf ? wf_to_wire(wf) : NULL;
}
