/* agents.c: sub-agents: spawning, admission, summaries back to the parent,
 * delegation through the spawn_agent tool, keyword rules, stop, stats.
 *
 * A sub-agent is a session with a parent. Its status: queued (waiting for
 * admission under max_concurrent_agents, or for a node slot), running, done,
 * failed, stopped. When its answer holds a [SUMMARY] block, the summary (never
 * the transcript) goes into the parent's history: as the tool result of the
 * parent's spawn_agent call when it delegated, else as a labelled message.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "memory.h"
#include "jx.h"
#include "log.h"
#include "sbuf.h"
#include "summary.h"
#include "util.h"

#define SPAWN_TOOL "spawn_agent"
#define TASK_MAX (64 * 1024)

static const char *ask_for_summary =
    "Please finish now: end your answer with the [SUMMARY] block in the required format "
    "(Status, Key Points, Recommendation), between [SUMMARY] and [/SUMMARY].";

static void status_event(broker_t *b, const char *id, const char *role, store_status_t status) {
  const char *name = store_status_name(status);
  store_session_status(b->store, id, name);
  broker_event(b, "agent_status", NULL, 0, json_pack("{s:s, s:s?, s:s}", "id", id, "role", role, "status", name));
}

static bool active_turn(broker_t *b, const char *session) {
  return turns_session_first(b, session) != NULL;
}

/* Opens the child's history with the parent's conversation per the context
 * setting: only plain user/assistant text (tool traffic would be unanswered
 * calls), by reference to the parent's messages. */
static void seed_context(broker_t *b, const char *parent, const char *child) {
  if (store_context_link(b->store, child, parent, b->opts.config->spawn_context) < 0)
    log_warn("state: cannot link %s to the context of %s: %s", child, parent, store_errmsg(b->store));
}

static const cadre_profile_t *find_profile(broker_t *b, const char *name, bool by_profile) {
  if (by_profile)
    return config_profile(b->opts.config, name);
  const cadre_profile_t *p = config_profile_for_role(b->opts.config, name);
  return p ? p : config_profile(b->opts.config, name); /* "reviewer_agent" works too */
}

int agents_spawn(broker_t *b, const char *role_or_profile, bool by_profile, const char *task, const char *parent,
                 const char *call_id, char *id, size_t idlen, char *err, size_t errlen) {
  int rc = agents_spawn_held(b, role_or_profile, by_profile, task, parent, call_id, id, idlen, err, errlen);
  if (rc == 0)
    agents_admit(b);
  return rc;
}

int agents_spawn_held(broker_t *b, const char *role_or_profile, bool by_profile, const char *task, const char *parent,
                      const char *call_id, char *id, size_t idlen, char *err, size_t errlen) {
  const cadre_profile_t *p = find_profile(b, role_or_profile, by_profile);
  if (!p || strcmp(p->role, "main") == 0) {
    sbuf_t roles = {.max = 400};
    const cadre_config_t *c = b->opts.config;
    for (size_t i = 0; i < c->n_profiles; i++) {
      bool seen = false;
      for (size_t j = 0; j < i && !by_profile; j++)
        seen |= strcmp(c->profiles[j].role, c->profiles[i].role) == 0;
      if (!seen && strcmp(c->profiles[i].role, "main") != 0)
        sbuf_printf(&roles, "%s%s", roles.len ? ", " : "", by_profile ? c->profiles[i].name : c->profiles[i].role);
    }
    snprintf(err, errlen, "no sub-agent %s \"%.64s\" in the config; the %ss are: %s", by_profile ? "profile" : "role",
             role_or_profile, by_profile ? "profile" : "role", roles.len ? sbuf_str(&roles) : "(none)");
    sbuf_free(&roles);
    return -1;
  }
  if (!task || !task[0] || strlen(task) > TASK_MAX) {
    snprintf(err, errlen, "a task (1 to %d bytes) is required", TASK_MAX);
    return -1;
  }
  store_session_t prow;
  if (store_session_row(b->store, parent, &prow) < 0) {
    snprintf(err, errlen, "no session \"%.64s\" to spawn from", parent);
    return -1;
  }
  snprintf(id, idlen, "%s-%d", p->role, store_next_number(b->store, p->role));
  if (store_session_create(b->store, id, p->role, p->name, parent, task, prow.depth + 1, call_id) < 0) {
    snprintf(err, errlen, "cannot store the agent: %s", store_errmsg(b->store));
    return -1;
  }
  seed_context(b, parent, id);
  char *brief = malloc(strlen(task) + 256);
  sprintf(brief,
          "You are %s, a %s sub-agent working for %s. Any conversation above is context from %s.\n\nYour task:\n%s", id,
          p->role, parent, parent, task);
  json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", brief);
  store_append(b->store, id, 0, msg, NULL);
  json_decref(msg);
  free(brief);
  log_info("spawned %s (%s on %s) for %s", id, p->role, p->model, parent);
  broker_event(b, "agent_spawned", NULL, 0,
               json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "role", p->role, "profile", p->name, "model",
                         p->model, "parent", parent, "task", task, "status", "queued"));
  return 0;
}

static int running_subagents(broker_t *b) {
  return turns_sub_sessions(b);
}

void agents_admit(broker_t *b) {
  int max = b->opts.config->max_concurrent_agents;
  if (running_subagents(b) >= max)
    return;
  /* Of the oldest max queued, at most the running ones already have a turn:
   * the rest fill the room left (so the cost does not grow with the queue). */
  json_t *queued = store_queued_agents(b->store, max);
  size_t i;
  json_t *v;
  json_array_foreach(queued, i, v) {
    const char *id = json_string_value(v);
    if (active_turn(b, id))
      continue;
    if (running_subagents(b) >= max)
      break;
    sessions_queue_turn(b, id, 0);
  }
  json_decref(queued);
}

void agents_turn_started(broker_t *b, const char *session) {
  store_session_t row;
  if (store_session_row(b->store, session, &row) == 0 && row.status != STORE_SESSION_RUNNING)
    status_event(b, session, row.role, STORE_SESSION_RUNNING);
}

/* A workflow's agent step takes the summary as its result (hooks.summary). */
static bool step_summary(broker_t *b, const store_session_t *row, const json_t *summary) {
  if (!row->in_workflow || !b->hooks.summary)
    return false;
  json_t *jrow = store_session(b->store, row->id);
  bool taken = jrow && b->hooks.summary(b, jrow, summary);
  if (taken) {
    store_session_summary(b->store, row->id, summary);
    status_event(b, row->id, row->role, row->status);
    broker_event(b, "summary", NULL, 0,
                 json_pack("{s:s, s:s, s:s?, s:O, s:O}", "id", row->id, "role", row->role, "parent",
                           row->parent[0] ? row->parent : NULL, "summary", summary, "workflow",
                           json_object_get(jrow, "workflow")));
  }
  json_decref(jrow);
  return taken;
}

/* Sends a summary to the parent (tool result or labelled message) and tells
 * everyone; the agent's status becomes status. */
static void deliver(broker_t *b, const store_session_t *r, json_t *summary, store_status_t status) {
  store_session_t row = *r;
  row.status = status;
  memory_record_summary(b, &row, summary);
  if (step_summary(b, &row, summary)) /* a workflow step's result, not the parent's */
    return;
  /* The first summary of a delegated agent answers the parent's tool call;
   * later ones (after direct messages) are labelled messages. */
  const char *call_id = row.delivered || !row.call_id[0] ? NULL : row.call_id;
  char *text = summary_render(row.id, row.role, summary);
  json_t *msg = call_id ? json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", call_id, "content", text)
                        : json_pack("{s:s, s:s}", "role", "user", "content", text);
  store_append(b->store, row.parent, 0, msg, NULL);
  store_session_summary(b->store, row.id, summary);
  status_event(b, row.id, row.role, status);
  broker_event(b, "summary", NULL, 0,
               json_pack("{s:s, s:s, s:s, s:O, s:s}", "id", row.id, "role", row.role, "parent", row.parent, "summary",
                         summary, "text", text));
  log_info("summary from %s: %s", row.id, jx_str(summary, "status", NULL));
  json_decref(msg);
  free(text);
  if (!call_id)
    return;
  /* The parent continues once every sub-agent it delegated to has answered. */
  json_t *pending = store_pending_children(b->store, row.parent);
  if (json_array_size(pending) == 0 && !active_turn(b, row.parent))
    sessions_queue_turn(b, row.parent, store_last_turn(b->store, row.parent));
  json_decref(pending);
}

static void fail_summary(broker_t *b, const store_session_t *row, const char *reason, store_status_t status) {
  if (row->delivered) {
    /* It reported before (this was a later direct message): its last summary stands. */
    status_event(b, row->id, row->role, status == STORE_SESSION_STOPPED ? STORE_SESSION_STOPPED : STORE_SESSION_DONE);
    return;
  }
  json_t *s = summary_failed(reason);
  deliver(b, row, s, status);
  json_decref(s);
}

/* A sub-agent's answer: its summary, or one request for it, or a FAIL summary. */
static void subagent_answered(broker_t *b, const store_session_t *row, const char *content) {
  json_t *summary = content ? summary_parse(content) : NULL;
  if (summary) {
    deliver(b, row, summary, STORE_SESSION_DONE);
    json_decref(summary);
    return;
  }
  if (!row->summary_asked) {
    json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", ask_for_summary);
    store_append(b->store, row->id, 0, msg, NULL);
    json_decref(msg);
    store_session_flag(b->store, row->id, "summary_asked", 1);
    sessions_queue_turn(b, row->id, 0);
    broker_event(
        b, "summary_asked", NULL, 0,
        json_pack("{s:s, s:s, s:s}", "id", row->id, "role", row->role, "reason",
                  content ? "its answer had no readable [SUMMARY] block" : "its turn ended without an answer"));
    return;
  }
  fail_summary(b, row, "the agent gave no [SUMMARY] block, even when asked", STORE_SESSION_FAILED);
}

/* Answers every tool call of an assistant message: spawn_agent spawns (the
 * answer comes with the summary), anything else is refused here. */
/* True when the turn's messages already hold the result of call_id (a node ran it). */
static bool answered(const json_t *added, const char *call_id) {
  size_t i;
  json_t *m;
  json_array_foreach(added, i, m) {
    const char *id = jx_str(m, "tool_call_id", NULL);
    if (id && call_id && strcmp(id, call_id) == 0)
      return true;
  }
  return false;
}

static void run_tool_calls(broker_t *b, const char *session, int64_t turn, const json_t *calls, const json_t *added) {
  size_t i;
  json_t *c;
  int spawned = 0;
  json_array_foreach(calls, i, c) {
    const char *call_id = jx_str(c, "id", NULL);
    if (answered(added, call_id))
      continue;
    json_t *fn = json_object_get(c, "function");
    const char *name = jx_str(fn, "name", NULL);
    const char *args_text = jx_str(fn, "arguments", NULL);
    json_t *args = args_text ? json_loads(args_text, 0, NULL) : NULL;
    char id[128], err[256] = "";
    broker_event(b, "tool_call", session, turn,
                 json_pack("{s:s?, s:s?, s:s?}", "name", name, "arguments", args_text, "id", call_id));
    int rc = -1;
    if (!call_id || !call_id[0])
      snprintf(err, sizeof err, "the tool call has no id");
    else if (!name || strcmp(name, SPAWN_TOOL) != 0)
      snprintf(err, sizeof err, "unknown tool \"%.64s\"", name ? name : "");
    else if (!json_is_object(args))
      snprintf(err, sizeof err, "arguments must be a JSON object with role and task");
    else
      rc = agents_spawn(b, jx_str(args, "role", ""), false, jx_str(args, "task", NULL), session, call_id, id, sizeof id,
                        err, sizeof err);
    json_decref(args);
    if (rc == 0) {
      spawned++;
      continue;
    }
    char text[400];
    snprintf(text, sizeof text, "error: %s", err);
    json_t *msg = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", call_id ? call_id : "", "content", text);
    store_append(b->store, session, 0, msg, NULL);
    json_decref(msg);
  }
  if (spawned == 0)
    sessions_queue_turn(b, session, turn);
}

static void after_done(broker_t *b, const char *session, int64_t turn, const json_t *message, const json_t *added) {
  store_session_t row;
  if (store_session_row(b->store, session, &row) < 0)
    return;
  store_session_flag(b->store, session, "turns", 1);
  const json_t *calls = json_object_get(message, "tool_calls");
  const char *content = jx_str(message, "content", NULL);
  if (row.status == STORE_SESSION_STOPPED) {
    /* stopped while its last turn was finishing: keep it stopped */
  } else if (json_array_size(calls) > 0) {
    run_tool_calls(b, session, turn, calls, added);
  } else if (row.parent[0]) {
    if (b->hooks.answer)
      b->hooks.answer(b, session, content);
    subagent_answered(b, &row, content);
  } else {
    if (b->hooks.answer)
      b->hooks.answer(b, session, content);
    if (!active_turn(b, session))
      status_event(b, session, row.role, STORE_SESSION_IDLE);
  }
}

static void after_failed(broker_t *b, const char *session, const char *code, const char *detail) {
  store_session_t row;
  if (store_session_row(b->store, session, &row) < 0)
    return;
  if (row.parent[0]) {
    char reason[600];
    snprintf(reason, sizeof reason, "%s: %s", code ? code : "failed", detail ? detail : "the turn failed");
    if (row.status == STORE_SESSION_STOPPED)
      fail_summary(b, &row, "stopped by the user", STORE_SESSION_STOPPED);
    else
      fail_summary(b, &row, reason, STORE_SESSION_FAILED);
  } else if (!active_turn(b, session)) {
    status_event(b, session, row.role, STORE_SESSION_IDLE);
  }
}

void agents_resume(broker_t *b, const char *id) {
  store_session_t row;
  if (active_turn(b, id) || store_session_row(b->store, id, &row) < 0 || !row.parent[0])
    return;
  if (row.status == STORE_SESSION_QUEUED) { /* spawned held, and the broker stopped before it was admitted */
    agents_admit(b);
    return;
  }
  if (row.status != STORE_SESSION_RUNNING)
    return;
  json_t *h = store_history(b->store, id, false);
  const json_t *last = json_array_get(h, json_array_size(h) - 1);
  bool answer = last && strcmp(jx_str(last, "role", ""), "assistant") == 0 &&
                json_array_size(json_object_get(last, "tool_calls")) == 0;
  log_info("%s: its last turn ended at the last stop without being acted on; %s", id,
           answer ? "its answer is taken now" : "it goes on");
  if (answer)
    subagent_answered(b, &row, jx_str(last, "content", NULL));
  else if (last)
    sessions_queue_turn(b, id, 0);
  json_decref(h);
}

void agents_turn_done(broker_t *b, const char *session, int64_t turn, const json_t *message, const json_t *added) {
  after_done(b, session, turn, message, added);
  agents_admit(b); /* a slot under max_concurrent_agents may have come free */
}

void agents_turn_failed(broker_t *b, const char *session, const char *code, const char *detail) {
  after_failed(b, session, code, detail);
  agents_admit(b);
}

/* The roles a spawn_agent call may name: every sub-agent role in the config. */
static json_t *spawnable_roles(broker_t *b) {
  json_t *roles = json_array();
  for (size_t i = 0; i < b->opts.config->n_profiles; i++) {
    const char *r = b->opts.config->profiles[i].role;
    bool dup = false;
    size_t j;
    json_t *v;
    json_array_foreach(roles, j, v) dup |= strcmp(json_string_value(v), r) == 0;
    if (strcmp(r, "main") != 0 && !dup)
      json_array_append_new(roles, json_string(r));
  }
  return roles;
}

/* The spawn_agent definition, when this session may delegate; else NULL. */
static json_t *spawn_tool(broker_t *b, const char *session) {
  store_session_t row;
  if (!b->opts.config->delegation || store_session_row(b->store, session, &row) < 0 ||
      row.depth >= b->opts.config->max_spawn_depth || row.solo)
    return NULL;
  json_t *roles = spawnable_roles(b);
  if (json_array_size(roles) == 0) {
    json_decref(roles);
    return NULL;
  }
  return json_pack(
      "{s:s, s:{s:s, s:s, s:{s:s, s:{s:{s:s, s:o, s:s}, s:{s:s, s:s}}, s:[s, s]}}}", "type", "function", "function",
      "name", SPAWN_TOOL, "description",
      "Delegate a task to a sub-agent on a smaller, cheaper model. It works on its own conversation and returns "
      "only a [SUMMARY] (status, key points, recommendation) as this call's result. Call it several times in one "
      "answer to run several sub-agents at the same time.",
      "parameters", "type", "object", "properties", "role", "type", "string", "enum", roles, "description",
      "Which kind of sub-agent", "task", "type", "string", "description",
      "What the sub-agent must do, with everything it needs to know", "required", "role", "task");
}

json_t *agents_tools_for(broker_t *b, const char *session) {
  /* Node tools travel as names (the node has their definitions and runs only
   * those named); tools the broker runs travel as full definitions. */
  const cadre_profile_t *p = session_profile(b, session);
  json_t *tools = config_tools_for(b->opts.config, p);
  json_t *out = json_deep_copy(tools);
  json_decref(tools);
  json_t *spawn = spawn_tool(b, session);
  if (spawn)
    json_array_append_new(out, spawn);
  if (json_array_size(out) == 0 && !(p && p->mcp_servers)) { /* MCP tools only: an empty list, not none */
    json_decref(out);
    return NULL;
  }
  return out;
}

/* True when the keyword starts a word of text (case-insensitive). */
static bool mentions(const char *text, const char *keyword) {
  size_t kl = strlen(keyword);
  for (const char *p = text; *p; p++) {
    if (p != text && isalnum((unsigned char)p[-1]))
      continue;
    if (strncasecmp(p, keyword, kl) == 0)
      return true;
  }
  return false;
}

void agents_on_user_text(broker_t *b, const char *text) {
  const cadre_config_t *c = b->opts.config;
  if (!c->auto_spawn_on_keywords)
    return;
  json_t *done = json_object();
  for (size_t i = 0; i < c->n_keywords; i++) {
    const cadre_keyword_rule_t *k = &c->keywords[i];
    if (!mentions(text, k->keyword) || json_object_get(done, k->profile))
      continue;
    json_object_set_new(done, k->profile, json_true());
    const cadre_profile_t *p = config_profile(c, k->profile);
    if (!p)
      continue;
    if (c->require_confirmation) {
      int64_t id = store_proposal_new(b->store, k->profile, text, k->keyword);
      broker_event(b, "spawn_proposed", NULL, 0,
                   json_pack("{s:I, s:s, s:s, s:s, s:s}", "proposal", (json_int_t)id, "role", p->role, "profile",
                             p->name, "task", text, "keyword", k->keyword));
    } else {
      char id[128], err[256];
      if (agents_spawn(b, k->profile, true, text, "main", NULL, id, sizeof id, err, sizeof err) < 0)
        log_warn("keyword \"%s\": %s", k->keyword, err);
    }
  }
  json_decref(done);
}

int agents_confirm(broker_t *b, int64_t proposal, bool accept, char *id, size_t idlen, char *err, size_t errlen) {
  json_t *p = store_proposal_take(b->store, proposal);
  if (!p) {
    snprintf(err, errlen, "no proposal %lld is waiting", (long long)proposal);
    return -1;
  }
  int rc = 1;
  if (accept)
    rc = agents_spawn(b, jx_str(p, "profile", NULL), true, jx_str(p, "task", NULL), "main", NULL, id, idlen, err,
                      errlen);
  broker_event(b, "proposal_answered", NULL, 0,
               json_pack("{s:I, s:b, s:s?}", "proposal", (json_int_t)proposal, "accept", accept, "spawned",
                         rc == 0 ? id : NULL));
  json_decref(p);
  return rc;
}

static bool finished(store_status_t s) {
  switch (s) {
  case STORE_SESSION_DONE:
  case STORE_SESSION_FAILED:
  case STORE_SESSION_STOPPED: return true;
  case STORE_SESSION_IDLE:
  case STORE_SESSION_QUEUED:
  case STORE_SESSION_RUNNING: return false;
  }
  return false;
}

int agents_stop(broker_t *b, const char *id, char *err, size_t errlen) {
  store_session_t row;
  if (store_session_row(b->store, id, &row) < 0) {
    snprintf(err, errlen, "no agent \"%.64s\"", id);
    return -1;
  }
  if (!row.parent[0]) {
    snprintf(err, errlen, "%s is not a sub-agent; cancel its turn instead (Ctrl-C, or the cancel verb)", id);
    return -1;
  }
  if (finished(row.status))
    return 0;
  status_event(b, id, row.role, STORE_SESSION_STOPPED);
  sessions_cancel_all(b, id, "the agent was stopped", NULL);
  /* Stopped before it ever ran: a delegating parent still needs an answer. */
  if (store_session_row(b->store, id, &row) == 0)
    fail_summary(b, &row, "stopped by the user", STORE_SESSION_STOPPED);
  log_info("stopped %s", id);
  return 0;
}

json_t *agents_stop_all(broker_t *b) {
  json_t *all = store_sessions(b->store), *stopped = json_array();
  size_t i;
  json_t *s;
  json_array_foreach(all, i, s) {
    const char *id = jx_str(s, "id", NULL);
    store_status_t st = STORE_SESSION_IDLE;
    store_status_parse(jx_str(s, "status", NULL), &st);
    char err[256];
    if (jx_str(s, "parent", NULL) && !finished(st) && agents_stop(b, id, err, sizeof err) == 0)
      json_array_append_new(stopped, json_string(id));
  }
  json_decref(all);
  return stopped;
}

/* The model a session's profile runs on (main's for a profile gone from the config). */
static const char *model_of(const cadre_config_t *c, const json_t *row) {
  const cadre_profile_t *p = config_profile(c, jx_str(row, "profile", NULL));
  return p ? p->model : config_main(c)->model;
}

/* The agents listing: a session row and its model. */
static json_t *agent_row(const json_t *row, void *ctx) {
  json_t *o = json_copy((json_t *)row);
  json_object_set_new(o, "model", json_string(model_of(ctx, row)));
  return o;
}

json_t *agents_list(broker_t *b) {
  return store_sessions_derived(b->store, 0, agent_row, b->opts.config);
}

/* One agent's line of the stats. */
static json_t *stats_row(const json_t *row, void *ctx) {
  const json_t *u = json_object_get(row, "usage");
  const cadre_profile_t *p = config_profile(ctx, jx_str(row, "profile", NULL));
  return json_pack("{s:O, s:O, s:s, s:O, s:O, s:O, s:O, s:O}", "id", json_object_get(row, "id"), "role",
                   json_object_get(row, "role"), "model", p ? p->model : "?", "status", json_object_get(row, "status"),
                   "messages", json_object_get(row, "messages"), "prompt_tokens", json_object_get(u, "prompt_tokens"),
                   "completion_tokens", json_object_get(u, "completion_tokens"), "cost", json_object_get(u, "cost"));
}

json_t *agents_stats(broker_t *b) {
  const cadre_profile_t *mp = config_main(b->opts.config);
  json_t *agents = store_sessions_derived(b->store, 1, stats_row, b->opts.config);
  double cost = 0, main_equiv = 0;
  json_int_t pt_sum = 0, ct_sum = 0;
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) {
    json_int_t pt = jx_int(a, "prompt_tokens", 0);
    json_int_t ct = jx_int(a, "completion_tokens", 0);
    pt_sum += pt;
    ct_sum += ct;
    cost += jx_num(a, "cost", 0);
    main_equiv += ((double)pt * mp->cost_per_1m_input + (double)ct * mp->cost_per_1m_output) / 1e6;
  }
  return json_pack("{s:o, s:{s:I, s:I, s:f}, s:f, s:f, s:s}", "agents", agents, "total", "prompt_tokens", pt_sum,
                   "completion_tokens", ct_sum, "cost", cost, "main_equivalent_cost", main_equiv, "savings",
                   main_equiv > 0 ? 1.0 - cost / main_equiv : 0.0, "main_model", mp->model);
}
