/* workflow_verbs.c: what controllers ask of plans and workflows: list, show,
 * approve, reject, modify, cancel, pause, resume, and templates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "plan.h"
#include "util.h"
#include "workflow_int.h"

/* ---- verbs ------------------------------------------------------------------- */

json_t *workflow_list(broker_t *b) {
  json_t *out = json_array();
  const char *key;
  json_t *doc;
  json_object_foreach(b->workflows, key, doc) json_array_append_new(out, wf_view(doc));
  return out;
}

json_t *workflow_show(broker_t *b, int64_t id, char *err, size_t errlen) {
  json_t *doc = wf_get(b, id);
  if (!doc) {
    snprintf(err, errlen, "no plan %lld", (long long)id);
    return NULL;
  }
  json_t *v = wf_view(doc);
  json_object_set(v, "text", json_object_get(doc, "text"));
  json_object_set_new(v, "checkpoints", store_checkpoints(b->store, id, false));
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
  json_t *doc = wf_get(b, id);
  if (!doc) {
    snprintf(err, errlen, "no plan %lld", (long long)id);
    return -1;
  }
  if (!status_is(doc, "pending")) {
    snprintf(err, errlen, "plan %lld is %s; only a pending, valid plan can be approved%s", (long long)id,
             wf_status(doc), status_is(doc, "invalid") ? " (fix it with modify)" : "");
    return -1;
  }
  const char *ws = choose_workspace(b, workspace);
  if (!ws) {
    snprintf(err, errlen, workspace ? "no agent daemon serves workspace %s" : "no agent daemon is registered to run it",
             workspace);
    return -1;
  }
  json_t *steps = json_object();
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(json_object_get(doc, "plan"), "steps"), i, s) {
    char k[32];
    snprintf(k, sizeof k, "%lld", (long long)json_integer_value(json_object_get(s, "number")));
    json_object_set_new(steps, k, json_pack("{s:s, s:i}", "status", "pending", "attempts", 0));
  }
  json_object_set_new(doc, "steps", steps);
  json_object_set_new(doc, "workspace", json_string(ws));
  json_object_set_new(doc, "status", json_string("running"));
  json_object_set_new(doc, "started_ms", json_integer(util_wall_ms()));
  wf_save(b, doc);
  log_info("plan %lld approved; running in %s", (long long)id, ws);
  wf_event(b, "workflow_started", doc, NULL);
  advance(b, doc, util_now_ms());
  return 0;
}

int workflow_reject(broker_t *b, int64_t id, char *err, size_t errlen) {
  json_t *doc = wf_get(b, id);
  if (!doc || !(status_is(doc, "pending") || status_is(doc, "invalid"))) {
    snprintf(err, errlen, doc ? "plan %lld is %s; only a pending plan can be rejected" : "no plan %lld", (long long)id,
             doc ? wf_status(doc) : "");
    return -1;
  }
  json_object_set_new(doc, "status", json_string("rejected"));
  wf_save(b, doc);
  wf_event(b, "plan_rejected", doc, NULL);
  return 0;
}

json_t *workflow_modify(broker_t *b, int64_t id, const json_t *edit, char *err, size_t errlen) {
  json_t *doc = wf_get(b, id);
  if (!doc || !(status_is(doc, "pending") || status_is(doc, "invalid"))) {
    snprintf(err, errlen, doc ? "plan %lld is %s; only a pending plan can be modified" : "no plan %lld", (long long)id,
             doc ? wf_status(doc) : "");
    return NULL;
  }
  json_t *plan = plan_edit(json_object_get(doc, "plan"), edit, err, errlen);
  if (!plan)
    return NULL;
  json_object_set_new(doc, "plan", plan);
  assess(b, doc);
  wf_save(b, doc);
  wf_event(b, "plan_modified", doc, json_pack("{s:O}", "text", json_object_get(doc, "text")));
  return wf_view(doc);
}

/* Stops the steps in flight: tool steps on their nodes, agent steps' sub-agents. */
static void stop_running(broker_t *b, json_t *doc) {
  const char *sk;
  json_t *st;
  json_object_foreach(json_object_get(doc, "steps"), sk, st) {
    if (strcmp(wf_str(st, "status"), "running") != 0)
      continue;
    char err[256];
    if (wf_str(st, "agent_session")) {
      agents_stop(b, wf_str(st, "agent_session"), err, sizeof err);
      continue;
    }
    for (peer_t *n = b->peers; n; n = n->next) {
      if (n->dead || n->role != PEER_NODE || !wf_str(st, "node") || strcmp(n->name, wf_str(st, "node")) != 0)
        continue;
      proto_msg_t *m = proto_msg_new(PROTO_STEP_RUN);
      if (!m)
        break;
      PROTO_SET(m, workflow, wf_id(doc));
      PROTO_SET(m, step, atoll(sk));
      PROTO_SET(m, attempt, json_integer_value(json_object_get(st, "attempts")));
      proto_set_str(m, PROTO_F_kind, "cancel");
      proto_set_json(m, PROTO_F_args, json_object());
      proto_set_json(m, PROTO_F_payload, json_pack("{s:b}", "cancel", 1));
      broker_send(b, n, m);
      proto_msg_destroy(&m);
      if (n->busy > 0)
        n->busy--;
    }
  }
}

int workflow_cancel(broker_t *b, int64_t id, bool rollback, char *err, size_t errlen) {
  json_t *doc = wf_get(b, id);
  if (!doc || !(status_is(doc, "running") || status_is(doc, "paused"))) {
    snprintf(err, errlen, doc ? "workflow %lld is %s; only a running or paused one can be cancelled" : "no workflow %lld",
             (long long)id, doc ? wf_status(doc) : "");
    return -1;
  }
  stop_running(b, doc);
  json_object_set_new(doc, "status", json_string("cancelled"));
  if (rollback)
    rollback_start(b, doc, "cancelled by the user");
  else
    finish(b, doc, "cancelled", "cancelled by the user (no rollback)");
  return 0;
}

int workflow_pause(broker_t *b, int64_t id, bool pause, char *err, size_t errlen) {
  json_t *doc = wf_get(b, id);
  const char *from = pause ? "running" : "paused";
  if (!doc || !status_is(doc, from)) {
    snprintf(err, errlen, doc ? "workflow %lld is %s, not %s" : "no workflow %lld", (long long)id,
             doc ? wf_status(doc) : "", from);
    return -1;
  }
  json_object_set_new(doc, "status", json_string(pause ? "paused" : "running"));
  wf_save(b, doc);
  wf_event(b, pause ? "workflow_paused" : "workflow_resumed", doc, NULL);
  if (!pause)
    advance(b, doc, util_now_ms());
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
  json_t *doc = wf_get(b, id);
  if (!doc) {
    snprintf(err, errlen, "no plan %lld", (long long)id);
    return NULL;
  }
  json_t *set = json_object(), *params = json_array();
  find_params(json_object_get(doc, "plan"), set);
  const char *k;
  json_t *v;
  json_object_foreach(set, k, v) json_array_append_new(params, json_string(k));
  json_decref(set);
  json_t *t = json_pack("{s:O, s:o, s:I, s:I}", "plan", json_object_get(doc, "plan"), "params", params, "from_plan",
                        (json_int_t)id, "created_ms", (json_int_t)util_wall_ms());
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
  json_array_foreach(all, i, t) if (strcmp(wf_str(t, "name"), name) == 0) found = t;
  if (!found) {
    snprintf(err, errlen, "no template \"%.64s\"", name);
    json_decref(all);
    return NULL;
  }
  json_t *missing = NULL;
  json_t *plan = plan_instantiate(json_object_get(found, "plan"), values, &missing);
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
  json_t *doc = plan ? propose(b, session, plan, "template") : NULL;
  return doc ? wf_view(doc) : NULL;
}
