/* sessions.c: agent sessions, their turns, and scheduling turns onto nodes.
 *
 * A session is one conversation. Its turns run one at a time, in order; turns
 * of different sessions run at the same time on whatever nodes have room.
 * History lives in the store; a turn's messages are built from it when the
 * turn is dispatched, so any node serving the model can take any turn.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "internal.h"
#include "memory.h"
#include "obs.h"
#include "jx.h"
#include "log.h"
#include "sbuf.h"
#include "util.h"

#define SESSION_ID_MAX 64

int sessions_count_turns(broker_t *b, bool running) {
  int n = 0;
  for (turn_t *t = b->turns; t; t = t->next)
    n += (t->node != NULL) == running;
  return n;
}

static turn_t *turn_add(broker_t *b, int64_t id, const char *session, int attempt) {
  store_session_t row;
  bool sub = store_session_row(b->store, session, &row) == 0 && row.parent[0];
  turn_t *t = turns_add(b, id, session, attempt, sub);
  if (t) {
    t->request = id;
    t->queued_at = util_now_ms();
  }
  return t;
}

static void turn_drop(broker_t *b, turn_t *t) {
  if (t->node && t->node->busy > 0)
    t->node->busy--;
  turns_remove(b, t);
}

const cadre_profile_t *session_profile(broker_t *b, const char *session) {
  store_session_t row;
  const cadre_profile_t *p = NULL;
  if (store_session_row(b->store, session, &row) == 0)
    p = config_profile(b->opts.config, row.profile);
  /* A profile removed from the config since: the session continues on main's. */
  return p ? p : config_main(b->opts.config);
}

/* Re-queues the turns that were queued or running when the broker stopped. */
int sessions_start(broker_t *b) {
  const cadre_profile_t *mp = config_main(b->opts.config);
  if (store_session_ensure(b->store, "main", mp->role, mp->name) < 0) {
    log_error("state: %s", store_errmsg(b->store));
    return -1;
  }
  json_t *left = store_unfinished_turns(b->store);
  size_t i;
  json_t *row;
  json_array_foreach(left, i, row) {
    const char *session = jx_str(row, "session", NULL);
    int64_t id = jx_int(row, "id", 0);
    int attempt = (int)jx_int(row, "attempt", 0);
    if (session && turn_add(b, id, session, attempt))
      log_info("turn %lld of %s was unfinished at the last stop; queued again", (long long)id, session);
  }
  json_decref(left);
  return 0;
}

static bool valid_session_id(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > SESSION_ID_MAX)
    return false;
  return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

int64_t sessions_ask(broker_t *b, const char *session, const char *text, char *err, size_t errlen) {
  if (!valid_session_id(session)) {
    snprintf(err, errlen, "session id \"%.64s\" is not valid (letters, digits, _ - . ; at most %d)", session,
             SESSION_ID_MAX);
    return -1;
  }
  const cadre_profile_t *p = session_profile(b, session);
  json_t *msg = json_pack("{s:s, s:s}", "role", "user", "content", text);
  char why[256] = "out of memory";
  int64_t turn = msg ? store_turn_ask(b->store, session, p->role, p->name, msg, why, sizeof why) : -1;
  json_decref(msg);
  if (turn < 0 || !turn_add(b, turn, session, 0)) {
    snprintf(err, errlen, "cannot store the message: %s", turn < 0 ? why : store_errmsg(b->store));
    return -1;
  }
  sessions_schedule(b);
  return turn;
}

static void turn_fail(broker_t *b, turn_t *t, const char *status, const char *code, const char *detail, json_t *extra,
                      const json_t *messages);

/* ---- user requests ----
 * A user message (ask, send, a new sub-agent, a request for a summary) starts
 * a request; a turn queued after the request's last ended turn (the broker
 * answered its tool calls, or its delegated sub-agents their summaries)
 * continues it. b->requests keeps, per session, the request of the session's
 * last ended turn: its model calls so far, the last tool call and how many
 * times in a row it came, and whether it is closed (cancelled, or stopped by
 * a cap). Without it each new turn would start its counts at zero, and a
 * model calling a tool nobody has would be answered and called again forever. */

/* The signature of a tool call: its name and arguments. Caller frees. */
static char *call_sig(const json_t *call) {
  const json_t *fn = jx_obj(call, "function");
  sbuf_t s = {0};
  sbuf_printf(&s, "%s\n%s", jx_str(fn, "name", ""), jx_str(fn, "arguments", ""));
  return s.s; /* the buffer's memory, now the caller's */
}

/* Records how t ended for its request: the model calls (assistant messages)
 * and tool calls among the messages it added. */
static void request_note(broker_t *b, const turn_t *t, const json_t *added, bool closed) {
  if (!b->requests && !(b->requests = json_object()))
    return;
  const json_t *old = jx_obj(b->requests, t->session);
  bool same = old && jx_int(old, "request", 0) == t->request;
  char *sig = same && jx_str(old, "sig", NULL) ? strdup(jx_str(old, "sig", NULL)) : NULL;
  json_int_t repeats = same ? jx_int(old, "repeats", 0) : 0, rounds = t->rounds;
  size_t i, j;
  json_t *m, *c;
  json_array_foreach(added, i, m) {
    if (strcmp(jx_str(m, "role", ""), "assistant") != 0)
      continue;
    rounds++;
    json_array_foreach(jx_arr(m, "tool_calls"), j, c) {
      char *now = call_sig(c);
      repeats = sig && now && strcmp(sig, now) == 0 ? repeats + 1 : 1;
      free(sig);
      sig = now;
    }
  }
  json_object_set_new(b->requests, t->session,
                      json_pack("{s:I, s:I, s:I, s:s?, s:I, s:b}", "request", (json_int_t)t->request, "last",
                                (json_int_t)t->id, "rounds", rounds, "sig", sig, "repeats", repeats, "closed", closed));
  free(sig);
}

/* Why the request of rec may not go on (code and detail), or false. */
static bool request_over(broker_t *b, const json_t *rec, const char **code, char *detail, size_t dlen) {
  int cap = b->opts.config->tools.max_iterations;
  if (jx_int(rec, "repeats", 0) >= SESSIONS_STUCK_REPEATS) {
    const char *sig = jx_str(rec, "sig", "");
    size_t name_len = strcspn(sig, "\n");
    *code = PROTO_ERR_stuck;
    snprintf(detail, dlen, "the model called %.*s with the same arguments %d times in a row; stopped",
             (int)(name_len > 64 ? 64 : name_len), sig, SESSIONS_STUCK_REPEATS);
    return true;
  }
  if (cap > 0 && jx_int(rec, "rounds", 0) >= cap) {
    *code = PROTO_ERR_iteration_cap;
    snprintf(detail, dlen,
             "the request reached its cap of %d model calls (tools.max_iterations) without a final answer; stopped",
             cap);
    return true;
  }
  return false;
}

int64_t sessions_queue_turn(broker_t *b, const char *session, int64_t after) {
  const json_t *rec = after > 0 ? jx_obj(b->requests, session) : NULL;
  if (rec && jx_int(rec, "last", 0) != after)
    rec = NULL; /* not the session's last turn (a broker restart, say): a request of its own */
  if (rec && jx_bool(rec, "closed", false)) {
    log_info("%s: no turn after %lld: its request was cancelled or stopped", session, (long long)after);
    return -1;
  }
  int64_t turn = store_turn_new(b->store, session);
  turn_t *t = turn > 0 ? turn_add(b, turn, session, 0) : NULL;
  if (!t) {
    log_error("state: cannot queue a turn for %s: %s", session, store_errmsg(b->store));
    return -1;
  }
  t->after = after;
  const char *code = NULL;
  char detail[200];
  if (rec) {
    t->request = jx_int(rec, "request", turn);
    t->rounds = (int)jx_int(rec, "rounds", 0);
    if (request_over(b, rec, &code, detail, sizeof detail)) {
      turn_fail(b, t, "failed", code, detail, NULL, NULL);
      return -1;
    }
  }
  sessions_schedule(b);
  return turn;
}

/* Appends text to the system message at the start of msgs (made when there is none). */
static void system_append(json_t *msgs, const char *text) {
  json_t *first = json_array_get(msgs, 0);
  const char *role = jx_str(first, "role", NULL), *had = jx_str(first, "content", NULL);
  if (!role || strcmp(role, "system") != 0 || !had) {
    json_array_insert_new(msgs, 0, json_pack("{s:s, s:s}", "role", "system", "content", text));
    return;
  }
  char *joined = NULL;
  if (asprintf(&joined, "%s\n\n%s", had, text) >= 0) {
    json_object_set_new(first, "content", json_string(joined));
    free(joined);
  }
}

/* System prompt, then the session's history; a summary of older messages
 * goes into the system message. seqs (an array) gets each message's seq (0:
 * the system message, inherited context). Caller owns. */
static json_t *turn_messages(broker_t *b, const turn_t *t, const cadre_profile_t *p, bool compact, json_t *seqs) {
  json_t *msgs = json_array();
  const char *prompt = compact && p->system_prompt_short ? p->system_prompt_short : p->system_prompt;
  if (prompt && prompt[0]) {
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", prompt));
    json_array_append_new(seqs, json_integer(0));
  }
  json_t *hseqs = json_array(), *hist = store_history_model(b->store, t->session, hseqs);
  size_t i;
  json_t *m;
  json_array_foreach(hist, i, m) {
    if (json_object_get(m, "context_summary")) {
      if (strcmp(jx_str(json_array_get(msgs, 0), "role", ""), "system") != 0)
        json_array_insert_new(seqs, 0, json_integer(0)); /* system_append makes one */
      system_append(msgs, jx_str(m, "content", ""));
      continue;
    }
    json_array_append(msgs, m);
    json_array_append(seqs, json_array_get(hseqs, i));
  }
  json_decref(hseqs);
  /* A top-level session gets its workspace's most relevant memories (sub-agents get their parent's context). */
  if (!t->sub) {
    const char *query = NULL;
    for (size_t k = json_array_size(hist); k-- > 0 && !query;)
      if (strcmp(jx_str(json_array_get(hist, k), "role", ""), "user") == 0)
        query = jx_str(json_array_get(hist, k), "content", NULL);
    char *mem = memory_context(b, t->session, query);
    if (mem) {
      if (strcmp(jx_str(json_array_get(msgs, 0), "role", ""), "system") != 0)
        json_array_insert_new(seqs, 0, json_integer(0)); /* system_append makes one */
      system_append(msgs, mem);
      free(mem);
    }
  }
  json_decref(hist);
  return msgs;
}

/* Kept in the store, so that turns re-queued after a restart stay in their workspace. */
void sessions_set_workspace(broker_t *b, const char *session, const char *workspace) {
  char key[SESSION_ID_MAX + 160];
  if (!workspace || !workspace[0])
    return;
  snprintf(key, sizeof key, "workspace:%s", session);
  if (store_meta_set(b->store, key, workspace) < 0)
    log_error("state: cannot keep the workspace of %s: %s", session, store_errmsg(b->store));
}

/* The workspace a session's turns run in: its own, else its parent's (then
 * kept as its own), else NULL: any node. ws holds it. */
static const char *session_workspace(broker_t *b, const char *session, char *ws, size_t len) {
  char key[SESSION_ID_MAX + 160];
  snprintf(key, sizeof key, "workspace:%s", session);
  if (store_meta_get(b->store, key, ws, len) == 0)
    return ws;
  store_session_t row;
  if (store_session_row(b->store, session, &row) < 0 || !row.parent[0] || strcmp(row.parent, session) == 0 ||
      !session_workspace(b, row.parent, ws, len))
    return NULL;
  sessions_set_workspace(b, session, ws);
  return ws;
}

/* Where a session's turns may run: the controller's workspace (a path a
 * node serves), or the workspace its files were written in (a node's
 * workspace id, once a turn of it changed files), or anywhere. */
typedef struct {
  char path[PATH_MAX];
  char pin[160];
} place_t;

static void session_place(broker_t *b, const char *session, place_t *pl) {
  char key[SESSION_ID_MAX + 16];
  if (!session_workspace(b, session, pl->path, sizeof pl->path))
    pl->path[0] = '\0';
  snprintf(key, sizeof key, "pin:%s", session);
  if (pl->path[0] || store_meta_get(b->store, key, pl->pin, sizeof pl->pin) < 0)
    pl->pin[0] = '\0';
}

/* After a turn that changed files through tools, its session stays in that
 * node's workspace (or one with the same workspace label): the next turn
 * must find those files. A session in a controller's workspace has one. */
static void pin_session(broker_t *b, const turn_t *t, const peer_t *node, const json_t *added) {
  place_t pl;
  session_place(b, t->session, &pl);
  if (pl.path[0] || pl.pin[0])
    return;
  size_t i, k;
  json_t *m, *c;
  json_array_foreach(added, i, m) {
    json_array_foreach(json_object_get(m, "tool_calls"), k, c) {
      const char *name = json_string_value(json_object_get(json_object_get(c, "function"), "name"));
      if (name && (strcmp(name, "execute_bash") == 0 || strcmp(name, "write_file_tool") == 0 ||
                   strcmp(name, "edit_file") == 0)) {
        char key[SESSION_ID_MAX + 16];
        snprintf(key, sizeof key, "pin:%s", t->session);
        if (store_meta_set(b->store, key, peer_workspace_id(node)) == 0)
          log_info("%s: its files are in workspace %s (node %s): its turns stay there", t->session,
                   peer_workspace_id(node), peer_label(node));
        return;
      }
    }
  }
}

/* The node with the most free slots that serves the profile, has its labels
 * and takes work, in the session's place; or NULL. any_capable: some node
 * could, once it has a free slot or takes work again. */
static peer_t *pick_node(broker_t *b, const cadre_profile_t *p, const place_t *pl, bool *any_capable,
                         bool *all_draining) {
  peer_t *best = NULL;
  *any_capable = false;
  bool working = false;
  for (peer_t *n = b->peers; n; n = n->next) {
    if (n->dead || !peer_serves(n, p->model, p->provider) || !peer_has_labels(n, p->labels) ||
        (pl->path[0] && strcmp(n->workspace, pl->path) != 0) ||
        (pl->pin[0] && strcmp(peer_workspace_id(n), pl->pin) != 0))
      continue;
    *any_capable = true;
    working |= peer_takes_work(n);
    if (peer_takes_work(n) && n->busy < n->slots && (!best || n->slots - n->busy > best->slots - best->busy))
      best = n;
  }
  if (all_draining)
    *all_draining = *any_capable && !working;
  return best;
}

/* Why no node can take a profile's turn, for a person. */
static void no_node_detail(const cadre_profile_t *p, const place_t *pl, char *out, size_t len) {
  char *labels = json_object_size(p->labels) ? json_dumps(p->labels, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  snprintf(out, len, "no agent daemon serves model %s%s%s%s%s%s%s", p->model, labels ? " with labels " : "",
           labels ? labels : "", pl->path[0] ? " in workspace " : "", pl->path, pl->pin[0] ? " in workspace " : "",
           pl->pin[0] ? pl->pin : "");
  free(labels);
}

/* Whether a pass must look at every session's first turn: a node has a free
 * slot, or one does not take work (a turn whose nodes all drain is told so). */
static bool walk_all(broker_t *b) {
  for (peer_t *p = b->peers; p; p = p->next)
    if (!p->dead && p->role == PEER_NODE && (!peer_takes_work(p) || p->busy < p->slots))
      return true;
  return false;
}

/* An agent past tools.max_tokens_per_agent gets no more turns (the turn fails). */
static bool over_budget(broker_t *b, turn_t *t) {
  long long cap = b->opts.config->tools.max_tokens_per_agent;
  store_session_t row;
  int64_t used = cap > 0 && store_session_row(b->store, t->session, &row) == 0
                     ? row.usage.prompt_tokens + row.usage.completion_tokens
                     : 0;
  if (cap <= 0 || used < cap)
    return false;
  char detail[200];
  snprintf(detail, sizeof detail, "%s has used %lld tokens, its budget is %lld (tools.max_tokens_per_agent)",
           t->session, (long long)used, cap);
  turn_fail(b, t, "failed", PROTO_ERR_token_budget, detail, NULL, NULL);
  return true;
}

/* A session whose delegated sub-agents have not all answered cannot run: its
 * history ends with tool calls still waiting for their results. */
static bool awaiting_children(broker_t *b, const turn_t *t) {
  json_t *pending = store_pending_children(b->store, t->session);
  bool waiting = json_array_size(pending) > 0;
  json_decref(pending);
  return waiting;
}

/* Drops the oldest history messages (after the system prompt) until the
 * messages' JSON size fits budget; a tool result never stays without the call
 * it answers, and the last message always stays. Returns how many were
 * dropped, or -1 when what is left does not fit in limit (the frame; budget
 * may be smaller: the model's context, which is only a wish). */
static int trim_to_fit(json_t *msgs, size_t budget, size_t limit) {
  size_t n = json_array_size(msgs);
  size_t total = 0;
  size_t *sizes = calloc(n ? n : 1, sizeof *sizes);
  if (!sizes)
    return -1;
  for (size_t i = 0; i < n; i++) {
    sizes[i] = json_dumpb(json_array_get(msgs, i), NULL, 0, JSON_COMPACT);
    total += sizes[i];
  }
  const char *r0 = jx_str(json_array_get(msgs, 0), "role", NULL);
  size_t keep_from = r0 && strcmp(r0, "system") == 0 ? 1 : 0, drop = keep_from, last_user = n;
  for (size_t i = n; i-- > keep_from && last_user == n;)
    if (strcmp(jx_str(json_array_get(msgs, i), "role", ""), "user") == 0)
      last_user = i;
  /* The latest user message goes unless only the frame limit demands it. */
  while (total > budget && drop + 1 < n && (drop < last_user || total > limit)) {
    total -= sizes[drop++];
    while (drop + 1 < n && json_object_get(json_array_get(msgs, drop), "tool_call_id"))
      total -= sizes[drop++];
  }
  free(sizes);
  if (total > limit)
    return -1;
  for (size_t i = keep_from; i < drop; i++)
    json_array_remove(msgs, keep_from);
  return (int)(drop - keep_from);
}

/* What a node reported of a profile's model (sessions_on_done). */
typedef struct {
  long long ctx;          /* its context in tokens; 0: unknown */
  long long tools_tokens; /* what the tool definitions take (bytes / 4) */
  int bpt100;             /* bytes per token as the server counted them, x100; 0: unknown (4) */
} learned_t;

static void learned_get(broker_t *b, const cadre_profile_t *p, learned_t *l) {
  char key[160], val[80];
  memset(l, 0, sizeof *l);
  snprintf(key, sizeof key, "context:%s", p->name);
  if (store_meta_get(b->store, key, val, sizeof val) == 0 &&
      sscanf(val, "%lld %lld %d", &l->ctx, &l->tools_tokens, &l->bpt100) < 1)
    memset(l, 0, sizeof *l);
}

/* The model's context as the config says it, else as a node reported it, else 0: unknown. */
static long long context_tokens(broker_t *b, const cadre_profile_t *p, learned_t *l) {
  learned_get(b, p, l);
  return p->context_tokens > 0 ? p->context_tokens : l->ctx;
}

static void learn_context(broker_t *b, const cadre_profile_t *p, const json_t *usage) {
  json_t *c = json_object_get(usage, "context_tokens"), *tt = json_object_get(usage, "tools_tokens");
  double bpt = jx_num(usage, "bytes_per_token", 0);
  if (!json_is_integer(c) || json_integer_value(c) <= 0)
    return;
  learned_t was;
  learned_get(b, p, &was);
  char key[160], val[80];
  snprintf(key, sizeof key, "context:%s", p->name);
  /* Clamped: a server's odd count must not make the budget absurd. */
  int bpt100 = bpt > 0 ? (int)(bpt < 2 ? 200 : bpt > 6 ? 600 : bpt * 100) : was.bpt100;
  snprintf(val, sizeof val, "%lld %lld %d", (long long)json_integer_value(c),
           json_is_integer(tt) && json_integer_value(tt) > 0 ? (long long)json_integer_value(tt) : 0LL, bpt100);
  char old[80] = "";
  if ((store_meta_get(b->store, key, old, sizeof old) < 0 || strcmp(old, val) != 0) &&
      store_meta_set(b->store, key, val) == 0)
    log_info("profile %s: the model's context, its tools' tokens, bytes per token x100: %s", p->name, val);
}

size_t sessions_context_bytes(long long ctx, long long tools_tokens, int max_tokens, int bpt100) {
  if (ctx <= 0)
    return SIZE_MAX;
  if (bpt100 <= 0)
    bpt100 = 400;
  /* tools_tokens was counted as bytes / 4: in the server's tokens, bytes / bpt. */
  long long tools = tools_tokens * 400 / bpt100;
  long long left = (ctx - max_tokens - tools) * 9 / 10;
  return (size_t)((left < 128 ? 128 : left) * bpt100 / 100);
}

/* Tells the model, in the system message, that older turns were left out. */
static void mark_left_out(json_t *msgs, int dropped, long long ctx) {
  char note[200];
  snprintf(note, sizeof note,
           "[Context: the %d oldest messages of this conversation were left out to fit the model's context of %lld "
           "tokens.]",
           dropped, ctx);
  system_append(msgs, note);
}

/* ---- summaries of older turns ------------------------------------------ */

/* When a turn's history does not fit the model's context, the turn first asks
 * the agent's own model (no tools; watchers see nothing of it) to summarise
 * the messages that would be left out, and any earlier summary with them. The
 * summary is kept in the history (a message with "context_summary": the last
 * seq it covers) and goes into the system message of later requests. If that
 * call fails, the turn trims instead. */
#define COMPACT_MSG_MAX 1500 /* bytes of one message in the transcript (at most a quarter of it) */

static const char COMPACT_PROMPT[] =
    "You summarise the earlier part of a conversation between a user and an AI coding agent, so that the agent "
    "can go on without it. Keep the user's goals and requests, the decisions made, the facts learned (files, "
    "commands, results, errors), what is done and what is still open. Leave out pleasantries. Write plain text, "
    "at most 250 words, and nothing else.";

static const char SUMMARY_HEAD[] = "[Summary of the earlier conversation, written to fit the model's context]\n";

/* One message of the transcript, capped. */
static void transcript_line(sbuf_t *out, const json_t *m, size_t max) {
  sbuf_t line = {.max = max};
  const char *role = jx_str(m, "role", "?");
  json_t *calls = json_object_get(m, "tool_calls");
  if (json_object_get(m, "tool_call_id"))
    sbuf_puts(&line, "tool result: ");
  else
    sbuf_printf(&line, "%s: ", role);
  const char *text = jx_str(m, "content", NULL);
  if (text)
    sbuf_add_utf8(&line, text, strlen(text));
  size_t i;
  json_t *c;
  json_array_foreach(calls, i, c) {
    json_t *fn = json_object_get(c, "function");
    const char *args = jx_str(fn, "arguments", "");
    sbuf_printf(&line, " [calls %s ", jx_str(fn, "name", "?"));
    sbuf_add_utf8(&line, args, strlen(args));
    sbuf_puts(&line, "]");
  }
  if (line.full)
    sbuf_puts(out, "(cut) ");
  sbuf_add(out, sbuf_str(&line), line.len);
  sbuf_puts(out, "\n");
  sbuf_free(&line);
}

/* The request that summarises msgs[from, upto) (and the earlier summary, in
 * the system message at 0), in at most cap bytes; the newest messages first
 * when not all fit. */
static json_t *compact_messages(const json_t *msgs, size_t from, size_t upto, const char *earlier, size_t cap) {
  sbuf_t text = {0};
  size_t first = upto, used = earlier ? strlen(earlier) : 0;
  size_t line_max = cap / 4 < COMPACT_MSG_MAX ? (cap / 4 > 80 ? cap / 4 : 80) : COMPACT_MSG_MAX;
  while (first > from) {
    sbuf_t line = {0};
    transcript_line(&line, json_array_get(msgs, first - 1), line_max);
    bool fits = used + line.len <= cap;
    used += line.len;
    sbuf_free(&line);
    if (!fits)
      break;
    first--;
  }
  if (earlier)
    sbuf_printf(&text, "The summary so far:\n%s\n\n", earlier);
  sbuf_puts(&text, "The conversation to add to it:\n");
  if (first > from)
    sbuf_printf(&text, "(%zu older messages omitted)\n", first - from);
  for (size_t i = first; i < upto; i++)
    transcript_line(&text, json_array_get(msgs, i), line_max);
  json_t *out = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", COMPACT_PROMPT, "role", "user",
                          "content", sbuf_str(&text));
  sbuf_free(&text);
  return out;
}

/* The summary part of the system message (after SUMMARY_HEAD), or NULL. */
static const char *earlier_summary(const json_t *msgs) {
  const char *sys = jx_str(json_array_get(msgs, 0), "content", NULL);
  const char *at = sys ? strstr(sys, SUMMARY_HEAD) : NULL;
  return at ? at + strlen(SUMMARY_HEAD) : NULL;
}

/* When trimming msgs to fit would leave out some of the session's own
 * messages, the request that summarises them (t->compact_upto set); else NULL. */
static json_t *compact_request(turn_t *t, const cadre_profile_t *p, const json_t *msgs, const json_t *seqs, size_t fit,
                               size_t room, size_t limit) {
  if (t->compact_failed || !p->summarize_context || fit == SIZE_MAX)
    return NULL;
  json_t *dry = json_copy((json_t *)msgs);
  int drop = trim_to_fit(dry, fit < limit ? fit : limit, limit);
  if (drop > 0) {
    /* Summarise down to half the room the system message leaves, so that the
     * next turns fit without another summary each. */
    json_decref(dry);
    dry = json_copy((json_t *)msgs);
    const char *r0 = jx_str(json_array_get(msgs, 0), "role", NULL);
    size_t fixed = r0 && strcmp(r0, "system") == 0 ? json_dumpb(json_array_get(msgs, 0), NULL, 0, JSON_COMPACT) : 0;
    size_t half = fixed < fit ? fixed + (fit - fixed) / 2 : fit;
    drop = trim_to_fit(dry, half < limit ? half : limit, limit);
  }
  json_decref(dry);
  if (drop <= 0)
    return NULL;
  const char *r0 = jx_str(json_array_get(msgs, 0), "role", NULL);
  size_t from = r0 && strcmp(r0, "system") == 0 ? 1 : 0, upto = from + (size_t)drop;
  int64_t last = 0;
  for (size_t i = from; i < upto; i++)
    if (json_integer_value(json_array_get(seqs, i)) > last)
      last = json_integer_value(json_array_get(seqs, i));
  if (last <= 0)
    return NULL; /* only inherited context would go: nothing of this session's to summarise */
  t->compact_upto = last;
  /* The summary request has no tools: the transcript may use their room too. */
  size_t cap = room > sizeof COMPACT_PROMPT + 512 ? room - sizeof COMPACT_PROMPT - 512 : fit;
  return compact_messages(msgs, from, upto, earlier_summary(msgs), cap);
}

/* Below this context (in tokens) a turn goes out in its short form: the
 * profile's short system prompt and short tool definitions, so that a model
 * of 2,048 or 4,096 tokens keeps room for the conversation. */
#define COMPACT_BELOW_TOKENS 6144

/* The turn message for t's next attempt, its history trimmed to the frame
 * budget and to the model's context. NULL with detail when it cannot be built. */
static proto_msg_t *build_turn(broker_t *b, turn_t *t, const cadre_profile_t *p, int *trimmed, char *detail,
                               size_t dlen) {
  learned_t l;
  long long ctx = context_tokens(b, p, &l);
  bool small = p->compact || (ctx > 0 && ctx < COMPACT_BELOW_TOKENS);
  json_t *seqs = json_array(), *msgs = turn_messages(b, t, p, small, seqs);
  size_t fit = sessions_context_bytes(ctx, l.tools_tokens, p->max_tokens, l.bpt100);
  size_t room = sessions_context_bytes(ctx, 0, p->max_tokens, l.bpt100);
  json_t *compact =
      compact_request(t, p, msgs, seqs, fit, room < b->turn_budget ? room : b->turn_budget, b->turn_budget);
  json_decref(seqs);
  if (compact) {
    json_decref(msgs);
    msgs = compact;
    *trimmed = 0;
  } else {
    t->compact_upto = 0;
    *trimmed = trim_to_fit(msgs, fit < b->turn_budget ? fit : b->turn_budget, b->turn_budget);
  }
  if (*trimmed > 0 && fit < SIZE_MAX)
    mark_left_out(msgs, *trimmed, ctx);
  if (*trimmed < 0) {
    snprintf(
        detail, dlen,
        "the system prompt and the last message of %s do not fit in one turn (%zu bytes at most); reset the session",
        t->session, b->turn_budget);
    json_decref(msgs);
    return NULL;
  }
  proto_msg_t *m = proto_msg_new(PROTO_TURN);
  if (!m) {
    json_decref(msgs);
    snprintf(detail, dlen, "out of memory");
    return NULL;
  }
  proto_set_str(m, PROTO_F_session, t->session);
  PROTO_SET(m, turn, t->id);
  PROTO_SET(m, attempt, t->attempt + 1);
  json_t *wire = proto_profile_wire(p, &b->opts.config->tools);
  json_t *stream = json_object_get(b->streaming, t->session); /* /stream off: whole answers */
  if (json_is_boolean(stream) && json_is_object(wire))
    json_object_set(wire, "stream", stream);
  if (small && json_is_object(wire))
    json_object_set_new(wire, "compact", json_true());
  proto_set_json(m, PROTO_F_profile, wire);
  proto_set_json(m, PROTO_F_messages, msgs);
  if (t->rounds > 0 && !t->compact_upto)
    PROTO_SET(m, rounds, t->rounds);
  json_t *tools = b->hooks.tools_for && !compact ? b->hooks.tools_for(b, t->session) : NULL;
  if (tools)
    proto_set_json(m, PROTO_F_tools, tools);
  return m;
}

/* What a turn's tools take of its prompt: as a node last reported for the
 * profile (it expands the names of its own tools into definitions), else the
 * broker's own definitions plus about 150 tokens per named node tool. */
static int64_t tools_estimate(broker_t *b, const cadre_profile_t *p, const json_t *tools) {
  learned_t l;
  learned_get(b, p, &l);
  if (l.tools_tokens > 0)
    return l.tools_tokens;
  int64_t est = 0;
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) est += json_is_string(t) ? 150 : (int64_t)json_dumpb(t, NULL, 0, JSON_COMPACT) / 4;
  return est;
}

/* A send that did not reach the node: the turn stays queued (its slot is
 * free), and is tried again on the next tick; after max_turn_attempts such
 * failures, or when it can never fit, it fails. Returns true when the list of
 * turns or nodes changed (t failed, or the node was removed). */
static bool send_failed(broker_t *b, turn_t *t, peer_t *node, int rc) {
  char detail[300];
  if (rc == -EHOSTUNREACH)
    return true; /* the node was removed; t waits for another */
  t->send_failures++;
  if (rc == -EMSGSIZE || rc == -EINVAL || t->send_failures >= b->opts.max_turn_attempts) {
    snprintf(detail, sizeof detail, "the turn could not be sent to node %s: %s%s", peer_label(node), strerror(-rc),
             rc == -EMSGSIZE ? " (over the frame limit; reset the session)" : "");
    turn_fail(b, t, "failed", PROTO_ERR_send_failed, detail, NULL, NULL);
    return true;
  }
  t->retry_at = util_now_ms() + b->opts.heartbeat_ms;
  log_warn("turn %lld (%s): node %s did not take it (%s); trying again", (long long)t->id, t->session, peer_label(node),
           strerror(-rc));
  return false;
}

/* Sends t to node. Returns 0 when sent, 1 when it was not and the lists
 * changed, -1 when it was not and t waits for a later try. */
static int dispatch(broker_t *b, turn_t *t, peer_t *node, const cadre_profile_t *p) {
  int trimmed = 0;
  char detail[300];
  proto_msg_t *m = build_turn(b, t, p, &trimmed, detail, sizeof detail);
  if (!m) {
    turn_fail(b, t, "failed", PROTO_ERR_too_large, detail, NULL, NULL);
    return 1;
  }
  /* Budgets: the request's prompt (bytes / 4) must fit in what is left, and
   * its answer is capped to the rest, so a budget is overshot by no more than
   * the estimate of one prompt is off. */
  char why[512];
  int cap;
  int64_t prompt = (int64_t)json_dumpb(m->messages, NULL, 0, JSON_COMPACT) / 4 + tools_estimate(b, p, m->tools);
  if (!budget_allows(b, t->session, p, prompt, &cap, why, sizeof why)) {
    proto_msg_destroy(&m);
    turn_fail(b, t, "failed", PROTO_ERR_budget_spent, why, NULL, NULL);
    return 1;
  }
  if (cap < p->max_tokens && json_is_object(m->profile))
    json_object_set_new(m->profile, "max_tokens", json_integer(cap)); /* what the budget still allows */
  int rc = broker_send(b, node, m);
  proto_msg_destroy(&m);
  if (rc < 0)
    return send_failed(b, t, node, rc) ? 1 : -1;
  /* The node has it: only now does it hold a slot. */
  t->attempt++;
  t->node = node;
  t->deltas = 0;
  t->started_at = util_now_ms();
  t->first_delta_at = 0;
  t->tool_calls = t->tool_errors = 0;
  t->send_failures = 0;
  node->busy++;
  store_turn_running(b->store, t->id, t->attempt, node->name);
  log_info("turn %lld (%s, attempt %d) -> node %s%s", (long long)t->id, t->session, t->attempt, node->name,
           t->compact_upto ? ": first a summary of its older messages" : "");
  if (t->compact_upto)
    return 0; /* watchers see the turn start when it answers */
  json_t *payload = json_pack("{s:s, s:s, s:i}", "node", node->name, "model", p->model, "attempt", t->attempt);
  if (t->after > 0)
    json_object_set_new(payload, "after", json_integer(t->after));
  if (trimmed > 0)
    json_object_set_new(payload, "trimmed", json_integer(trimmed));
  broker_event(b, "turn_started", t->session, t->id, payload);
  if (b->hooks.turn_started)
    b->hooks.turn_started(b, t->session);
  return 0;
}

/* One look at the first queued turn of a session: true when the lists
 * changed (it was dispatched or failed), false when it waits. */
static bool consider(broker_t *b, turn_t *t) {
  if (t->node || t->retry_at > util_now_ms() || awaiting_children(b, t))
    return false;
  if (over_budget(b, t))
    return true;
  const cadre_profile_t *p = session_profile(b, t->session);
  bool capable, draining;
  place_t pl;
  session_place(b, t->session, &pl);
  peer_t *node = pick_node(b, p, &pl, &capable, &draining);
  if (!node) {
    if ((!capable || draining) && !t->warned_no_node) {
      t->warned_no_node = true;
      char detail[PATH_MAX + 512];
      no_node_detail(p, &pl, detail, sizeof detail - 64);
      strcat(detail, draining ? " but a draining one; waiting until one takes work" : " yet; waiting for one");
      broker_event(b, "turn_waiting", t->session, t->id, json_pack("{s:s}", "detail", detail));
    }
    return false;
  }
  return dispatch(b, t, node, p) >= 0;
}

/* Only a session's first turn may start, so only those are looked at, oldest
 * first. With every node busy (and none draining), only the ones not looked
 * at since they came first (new, or back from a lost node) are: they may need
 * a warning or fail their budget. So such a pass costs O(new turns), not
 * O(queued). */
void sessions_schedule(broker_t *b) {
  for (;;) {
    if (walk_all(b)) {
      bool changed = false;
      for (turn_t *t = b->heads; t; t = t->hnext)
        if ((changed = consider(b, t)))
          break; /* t may be gone */
      if (!changed) {
        turns_recheck_clear(b); /* every head was looked at */
        return;
      }
    } else {
      turn_t *t = turns_recheck_pop(b);
      if (!t)
        return;
      consider(b, t);
    }
  }
}

/* Removes a finished turn, tells the controllers (payload is taken), and lets
 * the next turn of its session (or another waiting one) start. */
static void turn_end(broker_t *b, turn_t *t, const char *kind, json_t *payload, const json_t *added) {
  /* A cancelled request, or one stopped by its caps, is closed: nothing continues it. */
  const char *code = jx_str(payload, "code", "");
  request_note(b, t, added,
               strcmp(jx_str(payload, "status", ""), "cancelled") == 0 || strcmp(code, PROTO_ERR_iteration_cap) == 0 ||
                   strcmp(code, PROTO_ERR_stuck) == 0);
  char *session = strdup(t->session);
  int64_t id = t->id;
  turn_drop(b, t);
  json_incref(payload); /* broker_event takes one reference; we read it below */
  broker_event(b, kind, session, id, payload);
  if (strcmp(kind, "turn_done") == 0) {
    if (b->hooks.turn_done)
      b->hooks.turn_done(b, session, id, json_object_get(payload, "message"), added);
  } else if (b->hooks.turn_failed) {
    b->hooks.turn_failed(b, session, jx_str(payload, "code", NULL), jx_str(payload, "detail", NULL));
  }
  json_decref(payload);
  free(session);
  sessions_schedule(b);
}

/* The running turn a node message refers to, or NULL when it is stale. */
static turn_t *current_turn(broker_t *b, peer_t *from, const proto_msg_t *m) {
  turn_t *t = turn_find(b, m->turn);
  if (!t || t->node != from || t->attempt != m->attempt || strcmp(t->session, m->session) != 0) {
    log_debug("ignoring %s for turn %lld attempt %lld from %s (stale)", proto_type_name(m->type), (long long)m->turn,
              (long long)m->attempt, peer_label(from));
    return NULL;
  }
  return t;
}

/* Tool calls and their failures, from the tool_result deltas (few: one a call). */
static void count_tool_result(turn_t *t, const void *raw, size_t len) {
  if (!memmem(raw, len, "tool_result", 11))
    return;
  proto_msg_t *m = NULL;
  proto_err_t err;
  if (proto_decode(raw, len, &m, &err) == PROTO_OK && m->kind && strcmp(m->kind, "tool_result") == 0) {
    t->tool_calls++;
    json_t *call = PROTO_HAS(m, call) ? m->call : NULL;
    t->tool_errors += json_is_false(json_object_get(call, "ok"));
  }
  proto_msg_destroy(&m);
}

void sessions_on_delta(broker_t *b, peer_t *from, const sessions_route_t *r, const void *raw, size_t len) {
  turn_t *t = turn_find(b, r->turn);
  if (!t || t->node != from || t->attempt != r->attempt || strlen(t->session) != r->session_len ||
      memcmp(t->session, r->session, r->session_len) != 0 || t->compact_upto)
    return; /* stale: an old attempt, or a cancelled turn; or a summary being written */
  if (!t->first_delta_at)
    t->first_delta_at = util_now_ms();
  t->deltas++;
  count_tool_result(t, raw, len);
  broker_forward(b, t->session, r->session_len, t->id, raw, len);
}

/* A turn's end in the store's performance records (cancellations are no verdict on the model). */
static void record_perf(broker_t *b, const turn_t *t, bool ok, const store_usage_t *u) {
  const cadre_profile_t *p = session_profile(b, t->session);
  int64_t now = util_now_ms();
  store_perf_t r = {.model = p->model, .role = p->role, .ok = ok, .retries = t->attempt > 1 ? t->attempt - 1 : 0};
  r.latency_ms = t->started_at ? now - t->started_at : 0;
  r.ttft_ms = t->first_delta_at ? t->first_delta_at - t->started_at : -1;
  r.tokens = u ? u->completion_tokens : 0;
  r.prompt_tokens = u ? u->prompt_tokens : 0;
  r.cost = u ? u->cost : 0;
  r.tool_calls = t->tool_calls;
  r.tool_errors = t->tool_errors;
  if (store_perf_turn(b->store, &r) < 0)
    log_warn("state: cannot record turn %lld's figures: %s", (long long)t->id, store_errmsg(b->store));
}

static int64_t usage_int(const json_t *usage, const char *key) {
  json_t *v = json_object_get(usage, key);
  return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

/* A node answered a turn's summary request: kept, then the turn itself runs. */
static void compact_done(broker_t *b, turn_t *t, peer_t *from, const proto_msg_t *m, const store_usage_t *u) {
  const char *text = jx_str(m->message, "content", NULL);
  t->node = NULL;
  turns_recheck(b, t);
  if (from->busy > 0)
    from->busy--;
  if (text && text[0]) {
    char *content = NULL;
    json_t *msg = asprintf(&content, "%s%s", SUMMARY_HEAD, text) >= 0
                      ? json_pack("{s:s, s:s, s:I}", "role", "assistant", "content", content, "context_summary",
                                  (json_int_t)t->compact_upto)
                      : NULL;
    if (!msg || store_append(b->store, t->session, 0, msg, NULL) < 0)
      t->compact_failed = true;
    json_decref(msg);
    free(content);
  } else {
    t->compact_failed = true;
  }
  store_session_usage(b->store, t->session, u);
  log_info("turn %lld (%s): %s the messages up to %lld", (long long)t->id, t->session,
           t->compact_failed ? "no summary of" : "summarised", (long long)t->compact_upto);
  t->compact_upto = 0;
  sessions_schedule(b);
}

void sessions_on_done(broker_t *b, peer_t *from, const proto_msg_t *m) {
  turn_t *t = current_turn(b, from, m);
  if (!t)
    return;
  const cadre_profile_t *p = session_profile(b, t->session);
  store_usage_t u = {usage_int(m->usage, "prompt_tokens"), usage_int(m->usage, "completion_tokens"), 0};
  learn_context(b, p, m->usage);
  if (t->compact_upto) {
    u.cost = (double)u.prompt_tokens * p->cost_per_1m_input / 1e6 +
             (double)u.completion_tokens * p->cost_per_1m_output / 1e6;
    compact_done(b, t, from, m, &u);
    return;
  }
  u.cost =
      (double)u.prompt_tokens * p->cost_per_1m_input / 1e6 + (double)u.completion_tokens * p->cost_per_1m_output / 1e6;
  json_t *message = json_deep_copy(m->message);
  json_object_set_new(message, "role", json_string("assistant"));
  /* A tool loop on the node adds several messages; the last is the answer. */
  json_t *added = json_is_array(m->messages) && json_array_size(m->messages) > 0 ? json_deep_copy(m->messages)
                                                                                 : json_pack("[O]", message);
  if (store_turn_done(b->store, t->id, t->session, added, m->thinking, m->finish_reason, &u) < 0)
    log_error("state: cannot record turn %lld: %s", (long long)t->id, store_errmsg(b->store));
  pin_session(b, t, from, added);
  /* Watchers saw the tool calls and results stream by: the event carries the
   * answer and how many messages the turn added, not every tool output again. */
  json_t *payload =
      json_pack("{s:O, s:I, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:{s:I, s:I, s:I, s:b, s:f}}", "message", message,
                "added", (json_int_t)json_array_size(added), "thinking", m->thinking ? m->thinking : "",
                "finish_reason", m->finish_reason ? m->finish_reason : "", "node", from->name, "model", p->model,
                "attempt", t->attempt, "elapsed_ms", (json_int_t)m->elapsed_ms, "deltas", (json_int_t)t->deltas,
                "usage", "prompt_tokens", (json_int_t)u.prompt_tokens, "completion_tokens",
                (json_int_t)u.completion_tokens, "total_tokens", (json_int_t)(u.prompt_tokens + u.completion_tokens),
                "counted", json_is_true(json_object_get(m->usage, "counted")), "cost", u.cost);
  json_decref(message);
  log_info("turn %lld (%s) done on %s: %lld+%lld tokens", (long long)t->id, t->session, from->name,
           (long long)u.prompt_tokens, (long long)u.completion_tokens);
  int64_t now = util_now_ms();
  obs_turn(b->obs, p->model, p->role, (double)(now - t->started_at) / 1000.0,
           t->first_delta_at ? (double)(t->first_delta_at - t->started_at) / 1000.0 : -1.0);
  record_perf(b, t, true, &u);
  from->turns_served++;
  turn_end(b, t, "turn_done", payload, added);
  json_decref(added);
}

/* Ends a turn with an error: persisted, announced, and removed. */
static void turn_fail(broker_t *b, turn_t *t, const char *status, const char *code, const char *detail, json_t *extra,
                      const json_t *messages) {
  if (t->node) {
    proto_msg_t *c = proto_msg_new(PROTO_CANCEL);
    if (c) {
      PROTO_SET(c, turn, t->id);
      PROTO_SET(c, attempt, t->attempt);
      broker_send(b, t->node, c);
      proto_msg_destroy(&c);
    }
  }
  store_turn_failed_with(b->store, t->id, t->session, messages, status, code, detail);
  json_t *payload = extra ? extra : json_object();
  if (t->after > 0 && !t->node && t->attempt == 0) /* never started: say whose continuation it was */
    json_object_set_new(payload, "after", json_integer(t->after));
  json_object_set_new(payload, "code", json_string(code));
  json_object_set_new(payload, "detail", json_string(detail));
  json_object_set_new(payload, "status", json_string(status));
  log_info("turn %lld (%s) %s: %s: %s", (long long)t->id, t->session, status, code, detail);
  if (t->started_at && strcmp(code, PROTO_ERR_cancelled) != 0)
    record_perf(b, t, false, NULL);
  turn_end(b, t, "turn_failed", payload, NULL);
}

void sessions_on_failed(broker_t *b, peer_t *from, const proto_msg_t *m) {
  turn_t *t = current_turn(b, from, m);
  if (!t)
    return;
  json_t *extra = json_pack("{s:s, s:b, s:I}", "node", from->name, "retryable", PROTO_HAS(m, retryable) && m->retryable,
                            "http_status", (json_int_t)(PROTO_HAS(m, status) ? m->status : 0));
  t->node = NULL; /* the node has already let go of it */
  turns_recheck(b, t);
  if (from->busy > 0)
    from->busy--;
  if (t->compact_upto && strcmp(m->code, PROTO_ERR_cancelled) != 0) {
    log_warn("turn %lld (%s): no summary of its older messages (%s: %s); they are left out instead", (long long)t->id,
             t->session, m->code, m->detail);
    json_decref(extra);
    t->compact_upto = 0;
    t->compact_failed = true;
    sessions_schedule(b);
    return;
  }
  /* The node found the request too large for the model's context, which it
   * reports: the turn goes once more, built to fit it. */
  if (strcmp(m->code, PROTO_ERR_context_exceeded) == 0 && !t->context_retried &&
      json_integer_value(json_object_get(m->usage, "context_tokens")) > 0) {
    learn_context(b, session_profile(b, t->session), m->usage);
    t->context_retried = true;
    log_info("turn %lld (%s): too large for the model's context of %lld tokens; sent again, shortened",
             (long long)t->id, t->session, (long long)json_integer_value(json_object_get(m->usage, "context_tokens")));
    json_decref(extra);
    sessions_schedule(b);
    return;
  }
  turn_fail(b, t, strcmp(m->code, PROTO_ERR_cancelled) == 0 ? "cancelled" : "failed", m->code, m->detail, extra,
            m->messages);
}

void sessions_node_lost(broker_t *b, peer_t *node) {
  turn_t *next;
  for (turn_t *t = b->turns; t; t = next) {
    next = t->next;
    if (t->node != node)
      continue;
    t->node = NULL;
    turns_recheck(b, t);
    t->compact_upto = 0;
    if (t->attempt >= b->opts.max_turn_attempts) {
      char detail[256];
      snprintf(detail, sizeof detail, "node %s was lost during attempt %d of %d", peer_label(node), t->attempt,
               b->opts.max_turn_attempts);
      turn_fail(b, t, "failed", PROTO_ERR_node_lost, detail, NULL, NULL);
      continue;
    }
    log_info("turn %lld (%s): node %s lost; queued again", (long long)t->id, t->session, peer_label(node));
    broker_event(b, "turn_requeued", t->session, t->id,
                 json_pack("{s:s, s:i}", "node", peer_label(node), "attempt", t->attempt));
  }
  /* Scheduling waits for the caller to finish removing the node. */
}

/* The first queued or running turn of session's request. */
static turn_t *request_turn(broker_t *b, const char *session, int64_t request) {
  for (turn_t *t = turns_session_first(b, session); t; t = t->snext)
    if (t->request == request)
      return t;
  return NULL;
}

/* The request turn id (no longer queued or running) belonged to, when that
 * request is the latest of its session: a controller may know only an earlier
 * turn of it. Its session in session (size OUTBOX_SESSION_MAX + 1); 0: none. */
static int64_t request_of_ended(broker_t *b, int64_t id, char *session) {
  if (store_turn_session(b->store, id, session, OUTBOX_SESSION_MAX + 1) < 0)
    return 0;
  int64_t request = 0; /* the latest request of the session that started at or before id */
  for (turn_t *t = turns_session_first(b, session); t; t = t->snext)
    if (t->request <= id && t->request > request)
      request = t->request;
  const json_t *rec = jx_obj(b->requests, session);
  int64_t r = jx_int(rec, "request", 0);
  if (rec && r <= id && id <= jx_int(rec, "last", 0) && r > request)
    request = r;
  return request;
}

void sessions_close_requests(broker_t *b, const char *session) {
  const char *key;
  json_t *rec;
  json_object_foreach(b->requests, key, rec) if (!session || strcmp(key, session) == 0)
      json_object_set_new(rec, "closed", json_true());
}

int sessions_cancel(broker_t *b, int64_t id, const char *why) {
  char session[OUTBOX_SESSION_MAX + 1];
  turn_t *t = turn_find(b, id);
  int64_t request = t ? t->request : request_of_ended(b, id, session);
  if (!request)
    return -1;
  if (t)
    snprintf(session, sizeof session, "%s", t->session);
  json_t *rec = jx_obj(b->requests, session);
  bool live = rec && jx_int(rec, "request", 0) == request && !jx_bool(rec, "closed", false);
  if (live) /* nothing may continue it, not even a sub-agent's summary arriving later */
    json_object_set_new(rec, "closed", json_true());
  int n = 0;
  while ((t = request_turn(b, session, request)) != NULL) {
    turn_fail(b, t, "cancelled", PROTO_ERR_cancelled, why, NULL, NULL); /* removes t */
    n++;
  }
  return n > 0 || live ? n : -1;
}

int sessions_cancel_all(broker_t *b, const char *session, const char *why, json_t *ids) {
  sessions_close_requests(b, session);
  json_t *live = json_array();
  for (turn_t *t = session ? turns_session_first(b, session) : b->turns; t; t = session ? t->snext : t->next)
    json_array_append_new(live, json_integer(t->id));
  int n = 0;
  size_t i;
  json_t *v;
  json_array_foreach(live, i, v) { /* by id: cancelling one turn may end or queue others */
    turn_t *t = turn_find(b, json_integer_value(v));
    if (!t)
      continue;
    turn_fail(b, t, "cancelled", PROTO_ERR_cancelled, why, NULL, NULL);
    if (ids)
      json_array_append(ids, v);
    n++;
  }
  json_decref(live);
  return n;
}

void sessions_tick(broker_t *b, int64_t now) {
  turn_t *next;
  for (turn_t *t = b->turns; t; t = next) {
    next = t->next;
    if (t->node || !t->warned_no_node || now - t->queued_at < b->opts.queue_timeout_ms)
      continue;
    const cadre_profile_t *p = session_profile(b, t->session);
    bool capable;
    place_t pl;
    session_place(b, t->session, &pl);
    pick_node(b, p, &pl, &capable, NULL);
    if (capable)
      continue;
    char detail[PATH_MAX + 600];
    no_node_detail(p, &pl, detail, sizeof detail - 100);
    snprintf(detail + strlen(detail), 100, "; none joined within %d s: start one (cadre-agentd)",
             b->opts.queue_timeout_ms / 1000);
    turn_fail(b, t, "failed", PROTO_ERR_no_node, detail, NULL, NULL);
  }
  sessions_schedule(b);
}

/* The tool of an approval's call ("" when unknown). */
static const char *approval_tool(const json_t *call) {
  const char *name = json_string_value(json_object_get(json_object_get(call, "function"), "name"));
  return name ? name : "";
}

static int send_approval_reply(broker_t *b, turn_t *t, int64_t seq, bool allow, const char *detail) {
  proto_msg_t *m = proto_msg_new(PROTO_APPROVAL_REPLY);
  if (!m)
    return -1;
  PROTO_SET(m, turn, t->id);
  PROTO_SET(m, attempt, t->attempt);
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_kind, allow ? "allow" : "deny");
  proto_set_str(m, PROTO_F_detail, detail);
  int rc = broker_send(b, t->node, m);
  proto_msg_destroy(&m);
  return rc < 0 ? -1 : 0;
}

void sessions_on_approval(broker_t *b, peer_t *from, const proto_msg_t *m) {
  turn_t *t = current_turn(b, from, m);
  if (!t)
    return;
  json_t *call = proto_msg_call(m);
  const char *tool = approval_tool(call);
  if (tool[0] && json_is_true(json_object_get(json_object_get(b->allowed, t->session), tool))) {
    json_decref(call);
    send_approval_reply(b, t, m->seq, true, "allowed for this session by the user");
    return;
  }
  t->approval_seq = m->seq;
  snprintf(t->approval_tool, sizeof t->approval_tool, "%s", tool);
  broker_event(b, "approval_needed", m->session, m->turn,
               json_pack("{s:I, s:o, s:s, s:s, s:s?}", "seq", (json_int_t)m->seq, "call",
                         call ? call : json_string(m->text), "node", from->name, "workspace",
                         from->workspace ? from->workspace : "", "preview", m->detail));
}

int sessions_approve(broker_t *b, int64_t id, int64_t seq, bool allow, bool session_wide) {
  turn_t *t = turn_find(b, id);
  if (!t || !t->node)
    return -1;
  if (allow && session_wide && t->approval_seq == seq && t->approval_tool[0]) {
    if (!b->allowed)
      b->allowed = json_object();
    json_t *tools = json_object_get(b->allowed, t->session);
    if (!tools)
      json_object_set_new(b->allowed, t->session, tools = json_object());
    json_object_set_new(tools, t->approval_tool, json_true());
    log_info("session %s: %s allowed for the session", t->session, t->approval_tool);
  }
  return send_approval_reply(b, t, seq, allow,
                             !allow         ? "the user did not allow this call"
                             : session_wide ? "allowed for this session by the user"
                                            : "allowed by the user");
}
