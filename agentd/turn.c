/* turn.c: one turn on a node: call the model, run the tool calls it makes in
 * the workspace, call it again with the results, until it answers without
 * tool calls (or a cap, a stuck loop, a failure or a cancel ends the turn).
 *
 * The broker sees every piece as it happens (deltas: text, thinking,
 * tool_call, tool_result) and, at the end, every message the turn added, so
 * the session's history in the broker holds the whole loop. Tools the broker
 * runs itself (spawn_agent) are left unanswered: the turn ends there and the
 * broker answers them.
 */
#include "turn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"
#include "llm_ctx.h"
#include "mcp.h"
#include "log.h"
#include "util.h"

#define TOOL_PREVIEW_MAX 400 /* bytes of a tool's output shown to the user with its result */

#define STUCK_REPEATS 3
#define CTX_PROBE_TIMEOUT_MS 3000

typedef struct {
  run_t *r;
  json_t *conversation; /* what the model sees: the broker's messages, then ours */
  json_t *added;        /* messages this turn added, in order */
  json_t *defs;         /* tool definitions offered to the model */
  json_t *node_tools;   /* names of the tools this node runs for this turn */
  json_t *mcp_offered;  /* MCP tools offered: name -> {server, tool, read_only} (mcp.h) */
  const char *approval; /* "never", "mutating", "always" */
  int timeout_s, max_iterations, max_tool_calls;
  long deadline_ms; /* of each model call: the profile's turn_timeout_s, else --turn-timeout */
  int calls;
  char *recent[STUCK_REPEATS]; /* signatures of the last calls, newest first */
  int64_t prompt_tokens, completion_tokens;
  bool counted;
  char *thinking; /* all thinking of the turn */
  char *finish_reason;
  json_t *last_assistant; /* the latest assistant message (borrowed from added) */
  int64_t started;
  /* The first model call: bytes of its messages and tool definitions, and the
   * prompt tokens its server counted (0: it sent none), for bytes per token. */
  size_t first_bytes;
  int64_t first_tokens;
  bool first_done;
} loop_t;

void turn_push(run_t *r, proto_msg_t *m) {
  run_push(r, m);
}

proto_msg_t *turn_msg(run_t *r, proto_type_t type) {
  proto_msg_t *m = proto_msg_new(type);
  if (!m)
    return NULL;
  proto_set_str(m, PROTO_F_session, r->job->session);
  PROTO_SET(m, turn, r->job->turn);
  PROTO_SET(m, attempt, r->job->attempt);
  return m;
}

/* One delta; NUL bytes cannot travel in a STR, so they are dropped. */
static void send_delta(run_t *r, const char *kind, const char *s, size_t n) {
  char *text = malloc(n + 1);
  if (!text)
    return;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (s[i])
      text[k++] = s[i];
  text[k] = '\0';
  proto_msg_t *m = k > 0 ? turn_msg(r, PROTO_DELTA) : NULL;
  if (m) {
    PROTO_SET(m, seq, ++r->seq);
    proto_set_str(m, PROTO_F_kind, kind);
    m->text = text;
    m->has |= PROTO_BIT(text);
    text = NULL;
    turn_push(r, m);
  }
  free(text);
  proto_msg_destroy(&m);
}

/* A tool call or result (o, taken): the map in call, and the same as JSON in
 * text for readers older than the call field. */
static void send_delta_json(run_t *r, const char *kind, json_t *o) {
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  proto_msg_t *m = s ? turn_msg(r, PROTO_DELTA) : NULL;
  if (m) {
    PROTO_SET(m, seq, ++r->seq);
    proto_set_str(m, PROTO_F_kind, kind);
    proto_set_str(m, PROTO_F_text, s);
    proto_set_json(m, PROTO_F_call, o);
    o = NULL;
    turn_push(r, m);
  }
  free(s);
  json_decref(o);
  proto_msg_destroy(&m);
}

static void on_text(void *ud, const char *s, size_t n) {
  send_delta(ud, "text", s, n);
}

static void on_thinking(void *ud, const char *s, size_t n) {
  send_delta(ud, "thinking", s, n);
}

static void on_retry(void *ud, int next_try, const char *reason, long wait_ms) {
  run_t *r = ud;
  log_warn("turn %lld: %s; try %d in %ld ms", (long long)r->job->turn, reason, next_try, wait_ms);
}

/* The assistant message in OpenAI shape from a model call's result. */
static json_t *assistant_message(const llm_result_t *res) {
  const char *text = res->text && res->text[0] ? res->text : (res->refusal ? res->refusal : "");
  json_t *msg = json_pack("{s:s, s:s}", "role", "assistant", "content", text);
  if (res->n_tool_calls > 0) {
    json_t *calls = json_array();
    for (size_t i = 0; i < res->n_tool_calls; i++) {
      const llm_tool_call_t *c = &res->tool_calls[i];
      char id[40];
      if (!c->id || !c->id[0]) /* some servers send none; the results must refer to one */
        snprintf(id, sizeof id, "call_%zu_%lld", i, (long long)util_wall_ms());
      json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->id && c->id[0] ? c->id : id, "type",
                                             "function", "function", "name", c->name ? c->name : "", "arguments",
                                             c->arguments && c->arguments[0] ? c->arguments : "{}"));
    }
    json_object_set_new(msg, "tool_calls", calls);
  }
  return msg;
}

static void append_text(char **dst, const char *s) {
  if (!s || !s[0])
    return;
  size_t a = *dst ? strlen(*dst) : 0, b = strlen(s);
  char *n = realloc(*dst, a + b + 1);
  if (!n)
    return;
  memcpy(n + a, s, b + 1);
  *dst = n;
}

/* A positive tool setting that fits an int, else dflt. */
static int setting(bool has, int64_t v, int dflt) {
  return has && v > 0 && v <= INT32_MAX ? (int)v : dflt;
}

/* How this turn's MCP requests run: its network switch, timeout and cancel. */
static mcp_call_opts_t mcp_opts(loop_t *L) {
  proto_profile_t pp;
  proto_profile_read(L->r->job->profile, &pp);
  return (mcp_call_opts_t){.network = PROTO_PROFILE_HAS(&pp, network) && pp.network,
                           .timeout_s = L->timeout_s,
                           .cancel = &L->r->job->cancel};
}

/* Splits the turn's tools: names the node runs, definitions for the model. */
static void setup_tools(loop_t *L) {
  const json_t *tools = L->r->job->tools;
  L->defs = json_array();
  L->node_tools = json_array();
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *name = json_string_value(t);
    if (name && tools_known(name)) {
      const char *one[] = {name, NULL};
      json_t *d = tools_definitions(one);
      json_array_extend(L->defs, d);
      json_decref(d);
      json_array_append_new(L->node_tools, json_string(name));
    } else if (json_is_object(t)) {
      json_array_append(L->defs, t);
    }
  }
  proto_profile_t pp;
  proto_profile_read(L->r->job->profile, &pp);
  L->approval = PROTO_TOOL_HAS(&pp, approval) ? pp.tool.approval : "never";
  L->timeout_s = setting(PROTO_TOOL_HAS(&pp, timeout_s), pp.tool.timeout_s, TOOLS_DEFAULT_TIMEOUT_S);
  L->mcp_offered = json_object();
  if (tools && PROTO_PROFILE_HAS(&pp, mcp_servers)) { /* no tools at all: a summary turn */
    mcp_call_opts_t o = mcp_opts(L);
    o.allow = PROTO_PROFILE_HAS(&pp, mcp_tools) ? pp.mcp_tools : NULL;
    o.read_only = true;
    json_array_foreach(L->node_tools, i, t) o.read_only = o.read_only && !tools_mutates(json_string_value(t));
    mcp_offer(L->r->q->mcp, pp.mcp_servers, &o, L->defs, L->mcp_offered);
  }
  if (PROTO_PROFILE_HAS(&pp, compact) && pp.compact)
    tools_compact(L->defs);
  L->max_iterations = setting(PROTO_TOOL_HAS(&pp, max_iterations), pp.tool.max_iterations, 25);
  L->max_tool_calls = setting(PROTO_TOOL_HAS(&pp, max_tool_calls), pp.tool.max_tool_calls, 100);
  L->deadline_ms = PROTO_PROFILE_HAS(&pp, turn_timeout_s) && pp.turn_timeout_s > 0 && pp.turn_timeout_s <= 86400
                       ? (long)pp.turn_timeout_s * 1000
                       : L->r->q->turn_timeout_ms;
}

static bool runs_here(loop_t *L, const char *name) {
  size_t i;
  json_t *v;
  json_array_foreach(L->node_tools, i, v) if (name && strcmp(json_string_value(v), name) == 0) return true;
  return name && json_object_get(L->mcp_offered, name);
}

static void add_message(loop_t *L, json_t *msg) {
  json_array_append(L->added, msg);
  json_array_append(L->conversation, msg);
  json_decref(msg);
}

static void tool_message(loop_t *L, const char *call_id, const char *text) {
  add_message(L, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", call_id, "content", text));
}

/* Same name and arguments as the previous STUCK_REPEATS-1 calls? Records it. */
static bool stuck(loop_t *L, const char *name, const char *args) {
  char *sig = malloc(strlen(name) + strlen(args) + 2);
  if (!sig)
    return false;
  sprintf(sig, "%s\n%s", name, args);
  bool same = true;
  for (int i = 0; i < STUCK_REPEATS - 1; i++)
    same = same && L->recent[i] && strcmp(L->recent[i], sig) == 0;
  free(L->recent[STUCK_REPEATS - 1]);
  memmove(&L->recent[1], &L->recent[0], (STUCK_REPEATS - 1) * sizeof L->recent[0]);
  L->recent[0] = sig;
  return same;
}

#define APPROVAL_PREVIEW_LINES 40 /* lines of a diff shown when the user is asked */

/* Asks the user (through the broker) whether a call may run; waits for the
 * answer or a cancel. */
static bool approved(loop_t *L, const json_t *call) {
  const char *name = json_string_value(json_object_get(json_object_get(call, "function"), "name"));
  const json_t *mcp = name ? json_object_get(L->mcp_offered, name) : NULL;
  /* An MCP tool counts as changing things unless its server says it only reads (readOnlyHint). */
  bool mutates = mcp ? !json_is_true(json_object_get(mcp, "read_only")) : tools_mutates(name);
  bool ask = strcmp(L->approval, "always") == 0 || (strcmp(L->approval, "mutating") == 0 && mutates);
  if (!ask)
    return true;
  run_t *r = L->r;
  int64_t seq = L->calls;
  proto_msg_t *m = turn_msg(r, PROTO_APPROVAL);
  char *text = json_dumps(call, JSON_COMPACT);
  if (!m || !text) {
    proto_msg_destroy(&m);
    free(text);
    return false;
  }
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_text, text);
  proto_set_json(m, PROTO_F_call, json_deep_copy(call));
  const json_t *fn = json_object_get(call, "function");
  char *preview = tools_preview(r->q->tools, json_string_value(json_object_get(fn, "name")),
                                json_string_value(json_object_get(fn, "arguments")), APPROVAL_PREVIEW_LINES);
  if (preview)
    proto_set_str(m, PROTO_F_detail, preview);
  free(preview);
  free(text);
  turn_push(r, m);
  proto_msg_destroy(&m);
  jobq_t *q = r->q;
  pthread_mutex_lock(&q->lock);
  while (r->job->approval_seq != seq && !atomic_load(&r->job->cancel)) {
    jobq_wait_slice(q, 100);
  }
  bool allow = r->job->approval_seq == seq && r->job->approval_allow;
  pthread_mutex_unlock(&q->lock);
  return allow;
}

/* Runs one call on this node and records its result. */
static void run_call(loop_t *L, const json_t *call) {
  const char *id = json_string_value(json_object_get(call, "id"));
  const json_t *fn = json_object_get(call, "function");
  const char *name = json_string_value(json_object_get(fn, "name"));
  const char *args = json_string_value(json_object_get(fn, "arguments"));
  L->calls++;
  send_delta_json(L->r, "tool_call", json_pack("{s:s, s:s, s:s}", "id", id, "name", name, "arguments", args));
  tool_result_t res = {0};
  if (!approved(L, call)) {
    res.text = strdup(atomic_load(&L->r->job->cancel) ? "not run: the turn was cancelled"
                                                      : "not run: the user did not allow this call");
    res.is_error = true;
    snprintf(res.summary, sizeof res.summary, "not allowed");
  } else if (json_object_get(L->mcp_offered, name)) {
    mcp_call_opts_t o = mcp_opts(L);
    mcp_call(L->r->q->mcp, json_object_get(L->mcp_offered, name), args, &o, &res);
  } else {
    char *with_timeout = NULL;
    json_t *parsed = strcmp(name, "execute_bash") == 0 ? json_loads(args, 0, NULL) : NULL;
    if (json_is_object(parsed) && !json_object_get(parsed, "timeout")) {
      json_object_set_new(parsed, "timeout", json_integer(L->timeout_s));
      with_timeout = json_dumps(parsed, JSON_COMPACT);
    }
    json_decref(parsed);
    proto_profile_t pp;
    proto_profile_read(L->r->job->profile, &pp);
    tools_call_opts_t co = {.network = PROTO_PROFILE_HAS(&pp, network) && pp.network};
    tools_run_with(L->r->q->tools, name, with_timeout ? with_timeout : args, &co, &L->r->job->cancel, &res);
    free(with_timeout);
  }
  /* A preview of the output for the user (the model gets all of it), cut at a character. */
  const char *text = res.text ? res.text : "";
  size_t len = strlen(text), cut = 0;
  while (cut < len) {
    size_t k = util_utf8_seq((const unsigned char *)text + cut, len - cut);
    if (!k || cut + k > TOOL_PREVIEW_MAX)
      break;
    cut += k;
  }
  send_delta_json(L->r, "tool_result",
                  json_pack("{s:s, s:s, s:b, s:s, s:s%}", "id", id, "name", name, "ok", !res.is_error, "summary",
                            res.summary, "preview", text, cut));
  tool_message(L, id, res.text ? res.text : "");
  tool_result_free(&res);
}

typedef enum { LOOP_AGAIN, LOOP_DONE, LOOP_FAILED } loop_next_t;

/* Handles the calls of one assistant message. The code and detail are set on failure. */
static loop_next_t run_calls(loop_t *L, const json_t *calls, char *code, char *detail, size_t dlen) {
  size_t i;
  json_t *c;
  bool left_for_broker = false, failed = false;
  json_array_foreach(calls, i, c) {
    const char *id = json_string_value(json_object_get(c, "id"));
    const json_t *fn = json_object_get(c, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    if (!runs_here(L, name)) {
      if (tools_known(name ? name : "")) /* a node tool this role may not use */
        tool_message(L, id, "refused: this agent's role may not use this tool (tool policy)");
      else
        left_for_broker = true;
      continue;
    }
    if (failed) { /* every call of the message must get a result */
      tool_message(L, id, "not run: the turn ended before this call");
      continue;
    }
    if (stuck(L, name, args ? args : "")) {
      snprintf(code, 48, "%s", PROTO_ERR_stuck);
      snprintf(detail, dlen, "the model called %s with the same arguments %d times in a row", name, STUCK_REPEATS);
      tool_message(L, id, "not run: the same call was made 3 times in a row");
      failed = true;
      continue;
    }
    if (L->calls >= L->max_tool_calls) {
      snprintf(code, 48, "%s", PROTO_ERR_tool_cap);
      snprintf(detail, dlen, "the turn reached its cap of %d tool calls (tools.max_tool_calls)", L->max_tool_calls);
      tool_message(L, id, "not run: too many tool calls in this turn");
      failed = true;
      continue;
    }
    run_call(L, c);
    if (atomic_load(&L->r->job->cancel)) {
      snprintf(code, 48, "%s", PROTO_ERR_cancelled);
      snprintf(detail, dlen, "the turn was cancelled");
      failed = true;
    }
  }
  if (failed)
    return LOOP_FAILED;
  return left_for_broker ? LOOP_DONE : LOOP_AGAIN;
}

static void add_usage(loop_t *L, const llm_outcome_t *out) {
  L->prompt_tokens += out->result.prompt_tokens;
  L->completion_tokens += out->result.completion_tokens;
  L->counted |= out->usage_counted;
  append_text(&L->thinking, out->result.thinking);
  free(L->finish_reason);
  L->finish_reason = out->result.finish_reason ? strdup(out->result.finish_reason) : NULL;
}

/* What the tool definitions take of the context (bytes / 4), for the broker's budget. */
static void tools_tokens(const loop_t *L, json_t *usage) {
  if (usage && json_array_size(L->defs) > 0)
    json_object_set_new(usage, "tools_tokens",
                        json_integer((json_int_t)(json_dumpb(L->defs, NULL, 0, JSON_COMPACT) / 4)));
}

static void report_turn_done(loop_t *L) {
  proto_msg_t *m = turn_msg(L->r, PROTO_TURN_DONE);
  if (!m)
    return;
  proto_set_json(m, PROTO_F_message, json_incref(L->last_assistant));
  proto_set_json(m, PROTO_F_messages, json_incref(L->added));
  if (L->thinking)
    proto_set_str(m, PROTO_F_thinking, L->thinking);
  if (L->finish_reason)
    proto_set_str(m, PROTO_F_finish_reason, L->finish_reason);
  /* The model's context, asked of its server once per URL and model (after
   * the answer, so that the first turn does not wait for it): the broker keeps
   * later turns within it. */
  int ctx = llm_context_tokens(L->r->job->profile, L->r->job->api_key, CTX_PROBE_TIMEOUT_MS, NULL);
  json_t *usage =
      json_pack("{s:I, s:I, s:I, s:b, s:i}", "prompt_tokens", (json_int_t)L->prompt_tokens, "completion_tokens",
                (json_int_t)L->completion_tokens, "total_tokens", (json_int_t)(L->prompt_tokens + L->completion_tokens),
                "counted", L->counted, "context_tokens", ctx);
  tools_tokens(L, usage);
  /* Bytes per token of the first request, as its server counted them. */
  if (usage && L->first_tokens > 0)
    json_object_set_new(usage, "bytes_per_token", json_real((double)L->first_bytes / (double)L->first_tokens));
  proto_set_json(m, PROTO_F_usage, usage);
  PROTO_SET(m, elapsed_ms, util_now_ms() - L->started);
  turn_push(L->r, m);
  proto_msg_destroy(&m);
}

/* turn_failed; usage (may be NULL, taken) tells the broker the model's context. */
static void report_failed(loop_t *L, const char *code, const char *detail, bool retryable, int http_status,
                          json_t *usage) {
  proto_msg_t *m = turn_msg(L->r, PROTO_TURN_FAILED);
  if (!m) {
    json_decref(usage);
    return;
  }
  if (usage)
    proto_set_json(m, PROTO_F_usage, usage);
  proto_set_str(m, PROTO_F_code, code);
  proto_set_str(m, PROTO_F_detail, detail && detail[0] ? detail : "the turn failed");
  PROTO_SET(m, retryable, retryable);
  if (http_status)
    PROTO_SET(m, status, http_status);
  PROTO_SET(m, elapsed_ms, util_now_ms() - L->started);
  if (json_array_size(L->added) > 0)
    proto_set_json(m, PROTO_F_messages, json_incref(L->added));
  turn_push(L->r, m);
  proto_msg_destroy(&m);
  log_warn("turn %lld failed: %s: %s", (long long)L->r->job->turn, code, detail);
}

static void report_turn_failed(loop_t *L, const char *code, const char *detail, bool retryable, int http_status) {
  report_failed(L, code, detail, retryable, http_status, NULL);
}

/* The request's size in bytes: all of it, and its fixed part (the system
 * message and the tool definitions). */
static size_t request_bytes(const llm_call_t *call, size_t *fixed) {
  json_t *first = json_array_get(call->messages, 0);
  const char *role = json_string_value(json_object_get(first, "role"));
  size_t tools = call->tools ? json_dumpb(call->tools, NULL, 0, JSON_COMPACT) : 0;
  *fixed = tools + (role && strcmp(role, "system") == 0 ? json_dumpb(first, NULL, 0, JSON_COMPACT) : 0);
  return tools + json_dumpb(call->messages, NULL, 0, JSON_COMPACT);
}

/* Appends to detail why the request does not fit a context of ctx tokens and what to do. */
static void context_explain(size_t all, size_t fixed, int ctx, bool from_server, char *detail, size_t len) {
  size_t used = strlen(detail);
  if ((long long)fixed / 4 >= (long long)ctx * 9 / 10)
    snprintf(detail + used, len - used,
             "; the system prompt and the tool definitions alone take about %zu tokens and the model's context "
             "is %d%s: give the model server a larger context (llama.cpp: -c or --ctx-size; Ollama: num_ctx), "
             "or use a model that has one",
             fixed / 4, ctx, from_server ? " (as its server says)" : " (assumed; set context_tokens)");
  else
    snprintf(detail + used, len - used, "; the request takes about %zu tokens and the model's context is %d%s", all / 4,
             ctx, from_server ? " (as its server says)" : " (assumed; set context_tokens)");
}

/* A request the server refused (HTTP 400) that may not fit the model's
 * context: says so in detail, with the figures and what to do. */
static void context_hint(loop_t *L, const llm_call_t *call, char *detail, size_t len) {
  bool from_server;
  llm_ctx_forget(L->r->job->profile); /* the server may have restarted with another context: ask again */
  int ctx = llm_context_tokens(L->r->job->profile, L->r->job->api_key, CTX_PROBE_TIMEOUT_MS, &from_server);
  size_t fixed, all = request_bytes(call, &fixed);
  if ((long long)all / 4 >= (long long)ctx * 9 / 10) /* else the 400 is about something else */
    context_explain(all, fixed, ctx, from_server, detail, len);
}

/* Before the first model call of a turn: a request larger than the model's
 * context (as the config or its server says) is not sent. The failure tells
 * the broker the context, and the broker sends the turn once more, built to
 * fit it (short prompt and tool definitions, older turns summarised or left
 * out). True when the turn failed so. *bytes: the size of its messages and tools as JSON. */
static bool exceeds_context(loop_t *L, const llm_call_t *call, size_t *bytes) {
  proto_profile_t pp;
  proto_profile_read(L->r->job->profile, &pp);
  bool from_server;
  int ctx = llm_context_tokens(L->r->job->profile, L->r->job->api_key, CTX_PROBE_TIMEOUT_MS, &from_server);
  size_t fixed, all = request_bytes(call, &fixed);
  *bytes = all;
  if (!(from_server || (PROTO_PROFILE_HAS(&pp, context_tokens) && pp.context_tokens > 0)) || (long long)all / 4 <= ctx)
    return false;
  char detail[1024] = "the request was not sent: it does not fit the model's context";
  context_explain(all, fixed, ctx, from_server, detail, sizeof detail);
  json_t *usage = json_pack("{s:i}", "context_tokens", ctx);
  tools_tokens(L, usage);
  report_failed(L, PROTO_ERR_context_exceeded, detail, true, 0, usage);
  return true;
}

/* One model call; LOOP_FAILED has been reported when it fails. */
static loop_next_t call_model(loop_t *L, json_t **assistant) {
  run_t *r = L->r;
  llm_call_t call = {
      .profile = r->job->profile,
      .messages = L->conversation,
      .tools = json_array_size(L->defs) ? L->defs : NULL,
      .api_key = r->job->api_key,
      .connect_timeout_ms = r->q->connect_timeout_ms,
      .stall_timeout_ms = r->q->stall_timeout_ms,
      .deadline_ms = L->deadline_ms,
      .max_tries = 3,
      .backoff_base_ms = 500,
      .retry_after_cap_ms = 60000,
      .cancel = &r->job->cancel,
      .cb = {on_text, on_thinking},
      .ud = r,
      .on_retry = on_retry,
      .conns = r->conns,
  };
  size_t bytes = 0; /* the first call's messages and tools, as JSON */
  if (!L->first_done && exceeds_context(L, &call, &bytes))
    return LOOP_FAILED;
  llm_outcome_t out;
  int rc = llm_run(&call, &out);
  if (rc != 0) {
    char detail[1024];
    snprintf(detail, sizeof detail, "%s", out.detail);
    if (out.http_status == 400)
      context_hint(L, &call, detail, sizeof detail);
    report_turn_failed(L, out.cancelled ? PROTO_ERR_cancelled : out.code, detail, out.retryable, out.http_status);
    llm_outcome_free(&out);
    return LOOP_FAILED;
  }
  if (!L->first_done && !out.usage_counted && out.result.prompt_tokens > 0) {
    L->first_bytes = bytes;
    L->first_tokens = out.result.prompt_tokens;
  }
  L->first_done = true;
  add_usage(L, &out);
  *assistant = assistant_message(&out.result);
  llm_outcome_free(&out);
  return LOOP_AGAIN;
}

static void loop_free(loop_t *L) {
  json_decref(L->conversation);
  json_decref(L->added);
  json_decref(L->defs);
  json_decref(L->node_tools);
  json_decref(L->mcp_offered);
  for (int i = 0; i < STUCK_REPEATS; i++)
    free(L->recent[i]);
  free(L->thinking);
  free(L->finish_reason);
}

void turn_run(run_t *r) {
  loop_t L = {.r = r, .started = util_now_ms()};
  L.conversation = json_deep_copy(r->job->messages);
  L.added = json_array();
  setup_tools(&L);
  proto_profile_t pp;
  proto_profile_read(r->job->profile, &pp);
  log_info("turn %lld (%s, attempt %lld): %s, %zu tools", (long long)r->job->turn, r->job->session,
           (long long)r->job->attempt, pp.model ? pp.model : "?", json_array_size(L.defs));
  /* The cap is per user request: earlier turns of it (the broker answered
   * their tool calls) made r->job->rounds model calls already. */
  int64_t before = r->job->rounds < L.max_iterations ? r->job->rounds : L.max_iterations;
  for (int iteration = (int)before;; iteration++) {
    if (iteration >= L.max_iterations) {
      char detail[200];
      snprintf(detail, sizeof detail,
               "the request reached its cap of %d model calls (tools.max_iterations) without a final answer; stopped",
               L.max_iterations);
      report_turn_failed(&L, PROTO_ERR_iteration_cap, detail, false, 0);
      break;
    }
    json_t *assistant = NULL;
    if (call_model(&L, &assistant) == LOOP_FAILED)
      break;
    json_t *calls = json_incref(json_object_get(assistant, "tool_calls"));
    L.last_assistant = assistant;
    add_message(&L, assistant);
    if (json_array_size(calls) == 0) {
      json_decref(calls);
      report_turn_done(&L);
      break;
    }
    char code[48] = "", detail[256] = "";
    loop_next_t s = run_calls(&L, calls, code, detail, sizeof detail);
    json_decref(calls);
    if (s == LOOP_FAILED) {
      report_turn_failed(&L, code, detail, false, 0);
      break;
    }
    if (s == LOOP_DONE) { /* calls the broker runs: it continues from here */
      report_turn_done(&L);
      break;
    }
  }
  log_info("turn %lld finished in %lld ms (%d tool calls)", (long long)r->job->turn,
           (long long)(util_now_ms() - L.started), L.calls);
  loop_free(&L);
}
