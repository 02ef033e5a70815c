/* requests.c: one handler per verb a controller can ask for. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "internal.h"
#include "memory.h"
#include "jx.h"
#include "log.h"
#include "perf.h"
#include "util.h"

typedef struct {
  broker_t *b;
  peer_t *from;
  const proto_msg_t *req;
  json_t *args;        /* never NULL */
  struct local *local; /* requests_local: the reply is kept here, not sent */
} request_t;

struct local {
  json_t *result;
  const char *code;
  char *detail;
  size_t len;
};

/* Sends a reply carrying result (taken). */
static void reply(request_t *r, json_t *result) {
  if (r->local) {
    json_decref(r->local->result);
    r->local->result = result ? result : json_object();
    return;
  }
  proto_msg_t *m = proto_msg_new(PROTO_REPLY);
  if (!m) {
    json_decref(result);
    return;
  }
  PROTO_SET(m, ref, r->req->id);
  proto_set_json(m, PROTO_F_result, result ? result : json_object());
  broker_send(r->b, r->from, m);
  proto_msg_destroy(&m);
}

static void fail(request_t *r, const char *code, const char *detail) {
  if (r->local) {
    r->local->code = code;
    snprintf(r->local->detail, r->local->len, "%s", detail);
    return;
  }
  broker_send_error(r->b, r->from->id, r->from->idlen, code, detail, r->req->id);
}

/* Replies with result, or fails with code and err when there is none. */
static void reply_or_fail(request_t *r, json_t *result, const char *code, const char *err) {
  if (result)
    reply(r, result);
  else
    fail(r, code, err);
}

static const char *arg_str(request_t *r, const char *key, const char *dflt) {
  return jx_str(r->args, key, dflt);
}

static void watch_session(peer_t *p, const char *session) {
  json_object_set_new(p->watch, session, json_true());
}

static void verb_nodes(request_t *r) {
  json_t *list = json_array();
  int64_t now = util_now_ms();
  for (peer_t *p = r->b->peers; p; p = p->next)
    if (!p->dead && p->role == PEER_NODE)
      json_array_append_new(list, peer_to_json(p, now));
  reply(r, list);
}

static void verb_status(request_t *r) {
  broker_t *b = r->b;
  int nodes = 0, controllers = 0, slots = 0, busy = 0;
  for (peer_t *p = b->peers; p; p = p->next) {
    if (p->dead)
      continue;
    if (p->role == PEER_NODE) {
      nodes++;
      slots += p->slots;
      busy += p->busy;
    } else {
      controllers++;
    }
  }
  json_t *eps = json_array();
  for (int i = 0; i < b->n_endpoints; i++)
    json_array_append_new(eps, json_string(b->endpoints[i]));
  reply(r, json_pack("{s:s, s:s, s:I, s:s, s:o, s:s?, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s}", "version",
                     CADRE_VERSION, "epoch", b->epoch, "uptime_ms", (json_int_t)(util_wall_ms() - b->started_ms),
                     "state_dir", b->opts.state_dir, "endpoints", eps, "config", b->opts.config->path, "nodes", nodes,
                     "controllers", controllers, "slots", slots, "busy", busy, "turns_running",
                     sessions_count_turns(b, true), "turns_queued", sessions_count_turns(b, false), "sessions",
                     (int)store_session_count(b->store), "public_key", b->keys.public_key));
}

static void verb_ask(request_t *r) {
  const char *text = arg_str(r, "text", NULL);
  const char *session = arg_str(r, "session", "main");
  if (!text || !text[0]) {
    fail(r, PROTO_ERR_bad_args, "ask: \"text\" (a non-empty string) is required");
    return;
  }
  char err[256];
  /* Watch first, so no event of the new turn can be missed. */
  watch_session(r->from, session);
  if (jx_bool(r->args, "solo", false)) {
    const cadre_profile_t *mp = config_main(r->b->opts.config);
    store_session_ensure(r->b->store, session, mp->role, mp->name);
    store_session_set_solo(r->b->store, session, true);
  }
  /* A local controller says the directory it runs in: the session's turns go there. */
  sessions_set_workspace(r->b, session, r->from->workspace);
  json_t *stream = json_object_get(r->args, "stream");
  if (json_is_boolean(stream)) {
    if (!r->b->streaming)
      r->b->streaming = json_object();
    json_object_set(r->b->streaming, session, stream);
  }
  int64_t turn = sessions_ask(r->b, session, text, err, sizeof err);
  if (turn < 0) {
    fail(r, PROTO_ERR_ask_failed, err);
    return;
  }
  turn_t *t = turn_find(r->b, turn);
  reply(r, json_pack("{s:s, s:I, s:s}", "session", session, "turn", (json_int_t)turn, "status",
                     t && t->node ? "running" : "queued"));
  if (strcmp(session, "main") == 0)
    agents_on_user_text(r->b, text);
}

static void verb_history(request_t *r) {
  const char *session = arg_str(r, "session", "main");
  if (!store_session_exists(r->b->store, session)) {
    char detail[160];
    snprintf(detail, sizeof detail, "no session \"%.64s\"", session);
    fail(r, PROTO_ERR_not_found, detail);
    return;
  }
  reply(r, json_pack("{s:s, s:o}", "session", session, "messages", store_history(r->b->store, session, true)));
}

static void verb_sessions(request_t *r) {
  reply(r, store_sessions(r->b->store));
}

static void verb_subscribe(request_t *r) {
  const char *session = arg_str(r, "session", NULL);
  if (session)
    watch_session(r->from, session);
  else
    r->from->watch_all = true;
  /* A turn may be subscribed to after a reconnect: say where it stands. */
  json_t *turn = json_object_get(r->args, "turn");
  const char *state = NULL;
  if (json_is_integer(turn))
    state = turn_find(r->b, json_integer_value(turn)) ? "active" : "finished";
  /* Resuming: what it missed follows the reply, from the event log. */
  json_t *since = json_object_get(r->args, "since");
  if (json_is_integer(since))
    outbox_resume(r->b, r->from, json_integer_value(since));
  reply(r, json_pack("{s:s?, s:b, s:s?, s:I}", "session", session, "all", session == NULL, "turn", state, "seq",
                     (json_int_t)r->b->event_seq));
}

static void verb_cancel(request_t *r) {
  if (sessions_cancel(r->b, jx_int(r->args, "turn", 0), "cancelled by the user") < 0) {
    fail(r, PROTO_ERR_not_found, "cancel: no such turn in progress");
    return;
  }
  reply(r, json_pack("{s:b}", "cancelled", 1));
}

static void verb_config(request_t *r) {
  reply(r, config_to_json(r->b->opts.config));
}

static void verb_spawn(request_t *r) {
  const char *role = arg_str(r, "role", NULL), *profile = arg_str(r, "profile", NULL);
  const char *task = arg_str(r, "task", NULL);
  if ((!role && !profile) || !task) {
    fail(r, PROTO_ERR_bad_args, "spawn: \"role\" (or \"profile\") and \"task\" are required");
    return;
  }
  char id[128], err[512];
  /* Watch before spawning so no event of the new agent is missed. The new
   * agent works where main does, which is where this controller is. */
  sessions_set_workspace(r->b, "main", r->from->workspace);
  if (agents_spawn(r->b, profile ? profile : role, profile != NULL, task, "main", NULL, id, sizeof id, err,
                   sizeof err) < 0) {
    fail(r, PROTO_ERR_spawn_failed, err);
    return;
  }
  watch_session(r->from, id);
  json_t *row = store_session(r->b->store, id);
  const cadre_profile_t *p = session_profile(r->b, id);
  reply(r, json_pack("{s:s, s:O, s:O, s:s, s:O}", "id", id, "role", json_object_get(row, "role"), "profile",
                     json_object_get(row, "profile"), "model", p->model, "status", json_object_get(row, "status")));
  json_decref(row);
}

static void verb_send(request_t *r) {
  const char *id = arg_str(r, "id", NULL), *text = arg_str(r, "text", NULL);
  if (!id || !text || !text[0]) {
    fail(r, PROTO_ERR_bad_args, "send: \"id\" and \"text\" are required");
    return;
  }
  if (!store_session_exists(r->b->store, id)) {
    char detail[160];
    snprintf(detail, sizeof detail, "no agent \"%.64s\"", id);
    fail(r, PROTO_ERR_not_found, detail);
    return;
  }
  /* A new exchange: the agent may be asked once again for its summary. */
  store_session_flag(r->b->store, id, "summary_asked", 0);
  json_t *args = json_pack("{s:s, s:s}", "text", text, "session", id);
  request_t sub = *r;
  sub.args = args;
  verb_ask(&sub);
  json_decref(args);
}

static void verb_agents(request_t *r) {
  reply(r, agents_list(r->b));
}

static void set_drain(request_t *r, bool on) {
  const char *name = arg_str(r, "node", "");
  peer_t *p = nodes_set_drain(r->b, name, on);
  if (!p) {
    json_t *names = json_array();
    for (peer_t *n = r->b->peers; n; n = n->next)
      if (!n->dead && n->role == PEER_NODE)
        json_array_append_new(names, json_string(n->name));
    char *list = json_dumps(names, JSON_COMPACT);
    char detail[512];
    snprintf(detail, sizeof detail, "no node named \"%.100s\" is connected (nodes: %.300s)", name, list ? list : "[]");
    free(list);
    json_decref(names);
    fail(r, PROTO_ERR_not_found, detail);
    return;
  }
  if (!on)
    sessions_schedule(r->b); /* its slots are free for what waits */
  reply(r, peer_to_json(p, util_now_ms()));
}

static void verb_drain(request_t *r) {
  set_drain(r, true);
}

static void verb_undrain(request_t *r) {
  set_drain(r, false);
}

static void verb_memory(request_t *r) {
  const char *action = arg_str(r, "action", "list"), *ws = arg_str(r, "workspace", NULL);
  if (strcmp(action, "list") == 0) {
    reply(r, store_memories(r->b->store, ws, NULL, 500));
    return;
  }
  if (strcmp(action, "search") == 0) {
    char *q = memory_query(arg_str(r, "text", ""));
    if (!q) {
      fail(r, PROTO_ERR_bad_args, "memory search: give some words to look for (3 letters or more)");
      return;
    }
    reply(r, store_memories(r->b->store, ws, q, 50));
    free(q);
    return;
  }
  json_int_t id = jx_int(r->args, "id", 0);
  bool pin = strcmp(action, "pin") == 0, unpin = strcmp(action, "unpin") == 0, forget = strcmp(action, "forget") == 0;
  if (!(pin || unpin || forget) || id <= 0) {
    fail(r, PROTO_ERR_bad_args, "memory: action is list, search, pin, unpin or forget (the last three with an id)");
    return;
  }
  int rc = forget ? store_memory_forget(r->b->store, id) : store_memory_pin(r->b->store, id, pin);
  if (rc == -ENOENT) {
    char detail[120];
    snprintf(detail, sizeof detail, "no memory %lld (cadre memory lists them)", (long long)id);
    fail(r, PROTO_ERR_not_found, detail);
  } else if (rc < 0) {
    fail(r, PROTO_ERR_internal, store_errmsg(r->b->store));
  } else {
    reply(r, json_pack("{s:I, s:s}", "id", id, "done", action));
  }
}

static void verb_stop(request_t *r) {
  const char *id = arg_str(r, "id", "");
  char err[256];
  if (agents_stop(r->b, id, err, sizeof err) < 0) {
    fail(r, PROTO_ERR_stop_failed, err);
    return;
  }
  json_t *row = store_session(r->b->store, id);
  reply(r, json_pack("{s:s, s:O}", "id", id, "status", json_object_get(row, "status")));
  json_decref(row);
}

/* Every sub-agent stops, and every turn ends, main's too: nothing continues a
 * request (a stopped sub-agent's summary does not wake its parent). */
static void verb_stop_all(request_t *r) {
  sessions_close_requests(r->b, NULL);
  json_t *stopped = agents_stop_all(r->b), *cancelled = json_array();
  sessions_cancel_all(r->b, NULL, "stopped by the user (stop_all)", cancelled);
  json_t *res = json_pack("{s:o}", "stopped", stopped);
  if (json_array_size(cancelled) > 0)
    json_object_set(res, "cancelled", cancelled);
  json_decref(cancelled);
  reply(r, res);
}

static void verb_reset(request_t *r) {
  const char *session = arg_str(r, "session", "main");
  if (!store_session_exists(r->b->store, session)) {
    fail(r, PROTO_ERR_not_found, "reset: no such session");
    return;
  }
  int cancelled = sessions_cancel_all(r->b, session, "the session was reset", NULL);
  int n = store_clear(r->b->store, session);
  if (n < 0) {
    fail(r, PROTO_ERR_not_found, "reset: no such session");
    return;
  }
  log_info("session %s reset (%d messages set aside, %d turns cancelled)", session, n, cancelled);
  json_t *res = json_pack("{s:s, s:i}", "session", session, "cleared", n);
  if (cancelled > 0)
    json_object_set_new(res, "cancelled", json_integer(cancelled));
  reply(r, res);
}

static void verb_stats(request_t *r) {
  json_t *stats = agents_stats(r->b);
  json_object_set_new(stats, "budgets", budget_all(r->b));
  json_object_set_new(stats, "performance", perf_stats(r->b->store, r->b->opts.config, jx_int(r->args, "window_s", 0)));
  reply(r, stats);
}

static void verb_budget(request_t *r) {
  const char *scope = arg_str(r, "session", "");
  json_t *t = json_object_get(r->args, "tokens"), *c = json_object_get(r->args, "cost");
  if ((t && json_integer_value(t) < 0) || (c && json_number_value(c) < 0)) {
    fail(r, PROTO_ERR_bad_args, "budget: tokens and cost are 0 (no limit) or more");
    return;
  }
  json_t *now = budget_report(r->b, scope);
  if (!now && strncmp(scope, "workflow:", 9) != 0) {
    char detail[300];
    snprintf(detail, sizeof detail, "no session \"%.100s\" (cadre agents lists them; workflow:N names a workflow)",
             scope);
    fail(r, PROTO_ERR_not_found, detail);
    return;
  }
  if (t || c) {
    int64_t tokens = 0;
    double cost = 0;
    store_budget_get(r->b->store, scope, &tokens, &cost);
    if (t)
      tokens = json_integer_value(t);
    if (c)
      cost = json_number_value(c);
    if (store_budget_set(r->b->store, scope, tokens, cost) < 0) {
      fail(r, PROTO_ERR_internal, store_errmsg(r->b->store));
      json_decref(now);
      return;
    }
    json_decref(now);
    now = budget_report(r->b, scope);
    sessions_schedule(r->b); /* a raised budget lets waiting turns go */
  }
  reply(r, now);
}

static void verb_dashboard(request_t *r) {
  reply(r, json_pack("{s:s?}", "url", r->b->dashboard_url));
}

static void verb_approve_tool(request_t *r) {
  json_int_t turn = jx_int(r->args, "turn", 0), seq = jx_int(r->args, "seq", 0);
  bool allow = jx_bool(r->args, "allow", false), session_wide = jx_bool(r->args, "session_wide", false);
  if (sessions_approve(r->b, turn, seq, allow, session_wide) < 0) {
    fail(r, PROTO_ERR_not_found, "approve_tool: that turn is not running");
    return;
  }
  reply(r, json_pack("{s:I, s:I, s:b, s:b}", "turn", turn, "seq", seq, "allow", allow, "session_wide",
                     allow && session_wide));
}

static void verb_confirm(request_t *r) {
  json_int_t proposal = jx_int(r->args, "proposal", 0);
  char id[128], err[256];
  int rc = agents_confirm(r->b, proposal, jx_bool(r->args, "accept", false), id, sizeof id, err, sizeof err);
  if (rc < 0) {
    fail(r, PROTO_ERR_confirm_failed, err);
    return;
  }
  if (rc == 0)
    watch_session(r->from, id);
  reply(r, json_pack("{s:I, s:s?}", "proposal", proposal, "spawned", rc == 0 ? id : NULL));
}

/* ---- workflows ---- */

static bool arg_id(request_t *r, int64_t *id) {
  json_t *v = json_object_get(r->args, "id");
  if (!json_is_integer(v)) {
    char detail[128];
    snprintf(detail, sizeof detail, "%s: \"id\" (an integer) is required", r->req->verb);
    fail(r, PROTO_ERR_bad_args, detail);
    return false;
  }
  *id = json_integer_value(v);
  return true;
}

static void reply_status(request_t *r, int64_t id) {
  char err[64];
  json_t *v = workflow_show(r->b, id, err, sizeof err);
  reply(r, json_pack("{s:I, s:O}", "id", (json_int_t)id, "status", json_object_get(v, "status")));
  json_decref(v);
}

static void verb_plans(request_t *r) {
  reply(r, workflow_list(r->b));
}

static void verb_plan(request_t *r) {
  int64_t id;
  char err[256];
  if (!arg_id(r, &id))
    return;
  reply_or_fail(r, workflow_show(r->b, id, err, sizeof err), PROTO_ERR_not_found, err);
}

/* A budget for the workflow's steps and their sub-agents, given at approval: kept before
 * the first step starts (so its first turn is already held to it), put back as it was when
 * the approval fails. */
static void verb_approve(request_t *r) {
  int64_t id;
  char err[512];
  if (!arg_id(r, &id))
    return;
  json_int_t tokens = jx_int(r->args, "budget_tokens", 0);
  double cost = jx_num(r->args, "budget_cost", 0);
  if (tokens < 0 || cost < 0) {
    fail(r, PROTO_ERR_bad_args, "approve: budget_tokens and budget_cost are 0 (no limit) or more");
    return;
  }
  char scope[64];
  snprintf(scope, sizeof scope, "workflow:%lld", (long long)id);
  int64_t old_tokens = 0;
  double old_cost = 0;
  store_budget_get(r->b->store, scope, &old_tokens, &old_cost);
  bool set = tokens > 0 || cost > 0;
  if (set && store_budget_set(r->b->store, scope, tokens, cost) < 0)
    log_error("state: cannot keep the budget of %s: %s", scope, store_errmsg(r->b->store));
  const char *ws = arg_str(r, "workspace", r->from->workspace && r->from->workspace[0] ? r->from->workspace : NULL);
  if (workflow_approve(r->b, id, ws, err, sizeof err) < 0) {
    if (set)
      store_budget_set(r->b->store, scope, old_tokens, old_cost);
    fail(r, PROTO_ERR_approve_failed, err);
    return;
  }
  reply(r, workflow_show(r->b, id, err, sizeof err));
}

static void verb_reject(request_t *r) {
  int64_t id;
  char err[256];
  if (!arg_id(r, &id))
    return;
  if (workflow_reject(r->b, id, err, sizeof err) < 0)
    fail(r, PROTO_ERR_reject_failed, err);
  else
    reply_status(r, id);
}

static void verb_modify(request_t *r) {
  int64_t id;
  char err[512];
  if (!arg_id(r, &id))
    return;
  json_t *edit = json_object_get(r->args, "edit");
  if (!json_is_object(edit)) {
    fail(r, PROTO_ERR_bad_args, "modify: \"edit\" (an object with an op) is required");
    return;
  }
  reply_or_fail(r, workflow_modify(r->b, id, edit, err, sizeof err), PROTO_ERR_modify_failed, err);
}

/* The running (or paused) workflow when the user names none. */
static int64_t current_workflow(request_t *r) {
  json_t *all = workflow_list(r->b);
  int64_t id = 0;
  size_t i;
  json_t *w;
  json_array_foreach(all, i, w) {
    const char *st = json_string_value(json_object_get(w, "status"));
    if (st && (strcmp(st, "running") == 0 || strcmp(st, "paused") == 0))
      id = json_integer_value(json_object_get(w, "id"));
  }
  json_decref(all);
  return id;
}

static void verb_cancel_workflow(request_t *r) {
  json_t *v = json_object_get(r->args, "id");
  int64_t id = json_is_integer(v) ? json_integer_value(v) : current_workflow(r);
  bool rollback = jx_bool(r->args, "rollback", true);
  char err[256];
  if (id <= 0) {
    fail(r, PROTO_ERR_not_found, "cancel_workflow: no workflow is running");
    return;
  }
  if (workflow_cancel(r->b, id, rollback, err, sizeof err) < 0)
    fail(r, PROTO_ERR_cancel_failed, err);
  else
    reply_status(r, id);
}

static void pause_or_resume(request_t *r, bool pause) {
  int64_t id;
  char err[256];
  if (!arg_id(r, &id))
    return;
  if (workflow_pause(r->b, id, pause, err, sizeof err) < 0)
    fail(r, pause ? PROTO_ERR_pause_failed : PROTO_ERR_resume_failed, err);
  else
    reply_status(r, id);
}

static void verb_pause(request_t *r) {
  pause_or_resume(r, true);
}

static void verb_resume(request_t *r) {
  pause_or_resume(r, false);
}

static void verb_template_save(request_t *r) {
  int64_t id;
  char err[256];
  const char *name = arg_str(r, "name", NULL);
  if (!arg_id(r, &id))
    return;
  if (!name || !name[0]) {
    fail(r, PROTO_ERR_bad_args, "template_save: \"name\" is required");
    return;
  }
  reply_or_fail(r, workflow_template_save(r->b, id, name, err, sizeof err), PROTO_ERR_template_failed, err);
}

static void verb_template_list(request_t *r) {
  reply(r, store_templates(r->b->store));
}

static void verb_template_run(request_t *r) {
  const char *name = arg_str(r, "name", NULL);
  char err[512];
  if (!name) {
    fail(r, PROTO_ERR_bad_args, "template_run: \"name\" is required");
    return;
  }
  json_t *values = jx_obj(r->args, "values");
  json_t *empty = json_object();
  json_t *v =
      workflow_template_run(r->b, name, values ? values : empty, arg_str(r, "session", "main"), err, sizeof err);
  json_decref(empty);
  if (!v)
    fail(r, PROTO_ERR_template_failed, err);
  else
    reply(r, v);
}

/* The verbs come from the protocol table (proto/messages.def): a verb there
 * without a verb_<name> handler here does not compile. */
static const struct {
  const char *verb;
  void (*fn)(request_t *);
} verbs[] = {
#define REQUESTS_VERB(name, doc, result) {#name, verb_##name},
    PROTO_VERBS(REQUESTS_VERB)
#undef REQUESTS_VERB
};

/* Dispatches r: its verb's handler, once its arguments are checked. */
static void dispatch(request_t *r) {
  const proto_msg_t *m = r->req;
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    if (strcmp(verbs[i].verb, m->verb) == 0) {
      /* Handlers trust the kinds of the arguments PROTO_ARGS declares. */
      proto_err_t perr;
      if (proto_args_check(m->verb, m->args, &perr) < 0)
        fail(r, PROTO_ERR_bad_args, perr.text);
      else
        verbs[i].fn(r);
      return;
    }
  }
  char detail[128];
  snprintf(detail, sizeof detail, "unknown verb \"%.32s\"", m->verb);
  fail(r, PROTO_ERR_unknown_verb, detail);
}

void requests_handle(broker_t *b, peer_t *from, const proto_msg_t *m) {
  json_t *empty = json_object();
  request_t r = {b, from, m, m->args ? m->args : empty, NULL};
  dispatch(&r);
  json_decref(empty);
}

json_t *requests_local(broker_t *b, const char *verb, json_t *args, const char **code, char *detail, size_t len) {
  /* A controller of the broker's own: in no list, so no event is sent to it. */
  peer_t self = {.role = PEER_CONTROLLER, .name = "http", .watch = json_object()};
  proto_msg_t m = {.type = PROTO_REQUEST, .verb = (char *)verb, .args = args};
  json_t *empty = json_object();
  struct local out = {NULL, NULL, detail, len};
  request_t r = {b, &self, &m, args ? args : empty, &out};
  dispatch(&r);
  json_decref(empty);
  json_decref(self.watch);
  *code = out.code;
  return out.result;
}
