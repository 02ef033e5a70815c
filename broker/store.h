/* store: the broker's durable state in SQLite (WAL) under --state.
 *
 * Sessions, their message histories and turns. Every change that must survive
 * a crash is committed before the broker acts on it.
 */
#ifndef CADRE_STORE_H
#define CADRE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct store store_t;

typedef struct {
  int64_t prompt_tokens;
  int64_t completion_tokens;
  double cost;
} store_usage_t;

/* A session's status, as stored (and shown) by its name. */
typedef enum {
  STORE_SESSION_IDLE,   /* main or a solo session between turns */
  STORE_SESSION_QUEUED, /* a sub-agent waiting for admission or a slot */
  STORE_SESSION_RUNNING,
  STORE_SESSION_DONE,
  STORE_SESSION_FAILED,
  STORE_SESSION_STOPPED,
} store_status_t;

const char *store_status_name(store_status_t status);
/* 0 and *out set, or -1 for a name that is no status. */
int store_status_parse(const char *name, store_status_t *out);

#define STORE_ID_MAX 256

/* One session as the broker's logic reads it (task and summary stay in the store). */
typedef struct {
  char id[STORE_ID_MAX], role[STORE_ID_MAX], profile[STORE_ID_MAX];
  char parent[STORE_ID_MAX];  /* "" for a top-level session */
  char call_id[STORE_ID_MAX]; /* the parent's spawn_agent call it answers, or "" */
  store_status_t status;
  int depth;
  int64_t created_ms, messages, turns;
  store_usage_t usage;
  bool summary_asked, delivered, solo;
  bool in_workflow; /* runs a workflow's agent step: wf_plan, wf_step */
  int64_t wf_plan, wf_step;
} store_session_t;

/* The directory name that opens a private in-memory database (tests). */
#define STORE_MEMORY ":memory:"

/* Opens (creating) state.db in dir (STORE_MEMORY: in memory). NULL on failure with err filled. */
store_t *store_open(const char *dir, char *err, size_t errlen);
void store_close(store_t **self_p);
/* Last SQLite error text (for logs). */
const char *store_errmsg(store_t *self);

/* A value of the meta table (small named settings that survive a restart):
 * 0 with value filled, or -1 when absent or longer than len. */
int store_meta_get(store_t *self, const char *key, char *value, size_t len);
/* Sets (replaces) a value of the meta table. Returns 0 or -1. */
int store_meta_set(store_t *self, const char *key, const char *value);
int store_meta_delete(store_t *self, const char *key);

/* Creates the session when absent. Returns 0 or -1. */
int store_session_ensure(store_t *self, const char *id, const char *role, const char *profile);
/* All sessions as an array of objects (id, role, profile, status, parent, created_ms,
 * messages, usage{prompt_tokens, completion_tokens, cost}, task, depth, summary, turns).
 * Caller owns the array; the row objects are shared with the store's cache:
 * read them, or json_copy() one before changing it. */
json_t *store_sessions(store_t *self);
/* Reads one session into *out. 0, or -1 when absent (*out untouched). */
int store_session_row(store_t *self, const char *id, store_session_t *out);
/* Rows in the messages table, every session's (what the state holds, for stats and tests). */
int64_t store_message_rows(store_t *self);
/* How many sessions there are. */
int64_t store_session_count(store_t *self);
/* Makes another form of a listing row (caller owns the result). */
typedef json_t *(*store_derive_fn)(const json_t *row, void *ctx);
/* store_sessions() in a derived form (form 0 or 1: two callers may keep
 * one each), made once per change of a row and kept with it: derive must give
 * the same result for the same row while the store is open. Shared rows as there. */
json_t *store_sessions_derived(store_t *self, int form, store_derive_fn derive, void *ctx);
/* True when the session exists. */
bool store_session_exists(store_t *self, const char *id);

/* The session's history (OpenAI-shape message objects, oldest first): its
 * inherited context (a sub-agent's), then its own messages. With with_meta,
 * each object also has seq, turn, created_ms and thinking; context messages
 * have seq 0 and context_of (the session they come from). The messages of a
 * failed or cancelled turn are left out of the plain form (what turns send)
 * and carry "left_out": true in the with_meta form. Caller owns. */
json_t *store_history(store_t *self, const char *session, bool with_meta);
/* What the model is sent of the history (store_history's plain form): the
 * inherited context, the latest summary of older messages (a message with
 * "context_summary": the last seq it covers), then the messages after it, and
 * into seqs (an array) each message's seq (0: context or the summary). */
json_t *store_history_model(store_t *self, const char *session, json_t *seqs);
/* Adds a model call's usage to the session (one not recorded as a turn's). */
int store_session_usage(store_t *self, const char *session, const store_usage_t *usage);
/* Appends one message; returns its seq (>0) or -1. */
int64_t store_append(store_t *self, const char *session, int64_t turn, const json_t *message, const char *thinking);

/* New turn for session (status "queued"); returns its id or -1. */
int64_t store_turn_new(store_t *self, const char *session);
/* A user message that starts a turn, in one transaction: the session (made
 * with role and profile when it is new), a queued turn, the message. The
 * turn's id; or -1, nothing kept, and SQLite's error in err. */
int64_t store_turn_ask(store_t *self, const char *session, const char *role, const char *profile, const json_t *message,
                       char *err, size_t errlen);
/* Marks a turn running on node with attempt. */
int store_turn_running(store_t *self, int64_t turn, int attempt, const char *node);
/* Ends a turn successfully: appends the turn's messages (assistant, tool
 * results, ..., final answer), records usage on the turn and the session, in
 * one transaction. */
int store_turn_done(store_t *self, int64_t turn, const char *session, const json_t *messages, const char *thinking,
                    const char *finish_reason, const store_usage_t *usage);
/* Ends a turn with an error (status "failed" or "cancelled"). */
int store_turn_failed(store_t *self, int64_t turn, const char *status, const char *code, const char *detail);
/* The same, keeping the messages the turn produced before it failed (tool loop). */
int store_turn_failed_with(store_t *self, int64_t turn, const char *session, const json_t *messages, const char *status,
                           const char *code, const char *detail);
/* Turns not finished (queued or running) when the broker stopped: array of
 * {id, session, attempt}. Caller owns. */
json_t *store_unfinished_turns(store_t *self);

/* ---- sub-agents ---- */
/* Opens child's history with parent's conversation as it is now: its plain
 * user and assistant text, the last keep messages (keep < 0: all; 0: none).
 * The child refers to the parent's messages (no copy), so the state grows
 * with what was said, not with the number of sub-agents. Returns how many
 * messages the context holds, or -1. */
int64_t store_context_link(store_t *self, const char *child, const char *parent, int keep);
/* Creates a sub-agent session (status "queued"). */
int store_session_create(store_t *self, const char *id, const char *role, const char *profile, const char *parent,
                         const char *task, int depth, const char *call_id);
/* One session as in store_sessions, plus summary_asked, delivered and call_id; NULL when absent. */
json_t *store_session(store_t *self, const char *id);
int store_session_status(store_t *self, const char *id, const char *status);
/* Records a sub-agent's summary (and marks it delivered). */
int store_session_summary(store_t *self, const char *id, const json_t *summary);
/* Sets summary_asked or delivered to value, or adds value to turns. */
int store_session_flag(store_t *self, const char *id, const char *flag, int value);
/* The next free N for an id "<role>-N". */
int store_next_number(store_t *self, const char *role);
/* Ids of sub-agents waiting for admission, oldest first, at most limit. Caller owns. */
json_t *store_queued_agents(store_t *self, int limit);
/* Sets a session's messages aside (reset); returns how many, or -1. */
int store_clear(store_t *self, const char *session);
/* Keyword spawn proposals waiting for the user's confirmation. */
int64_t store_proposal_new(store_t *self, const char *profile, const char *task, const char *keyword);
/* Removes and returns {profile, task, keyword}, or NULL. Caller owns. */
json_t *store_proposal_take(store_t *self, int64_t id);

/* The session of a turn into session (len bytes); 0, or -1 when there is no such turn. */
int store_turn_session(store_t *self, int64_t turn, char *session, size_t len);
/* Id of the session's latest turn, or 0. */
int64_t store_last_turn(store_t *self, const char *session);
/* Ids of the parent's delegated sub-agents whose summary has not arrived. Caller owns. */
json_t *store_pending_children(store_t *self, const char *parent);

/* Single-agent sessions (cadre chat): every tool, no sub-agents. */
int store_session_set_solo(store_t *self, const char *id, bool solo);

/* ---- workflows ---- */
/* Marks a sub-agent as the runner of a workflow's agent step. */
int store_session_set_step(store_t *self, const char *id, int64_t workflow, int64_t step);
/* A workflow is one JSON document (plan, status, steps: {"N": state}), rewritten when the
 * workflow changes as a whole; a change of one step's state is one row of its own
 * (store_workflow_step_put), and a change of its top-level members alone (status, report,
 * timings: not the plan, not the steps) is its head (store_workflow_head). On load the
 * head's members and then the rows are laid over the document; the next
 * store_workflow_update folds them in. A state directory written before the rows and
 * heads existed loads as it was (no rows, no head): the table and column are made on open. */
int64_t store_workflow_insert(store_t *self, const json_t *doc);
int store_workflow_update(store_t *self, int64_t id, const json_t *doc);
/* Step `step`'s state (the document's steps."step" member) of workflow id. 0 or -1. */
int store_workflow_step_put(store_t *self, int64_t id, int64_t step, const json_t *state);
/* The workflow's head: top-level members of its document (not plan, not steps), replacing the last head. */
int store_workflow_head(store_t *self, int64_t id, const json_t *head);
/* Every workflow document (head and step rows laid over it), each with its "id". Caller owns. */
json_t *store_workflows(store_t *self);
/* Writes between store_batch(self, true) and store_batch(self, false) are committed as one
 * (a savepoint: it nests in a transaction already open). 0 or -1. */
int store_batch(store_t *self, bool begin);
/* The checkpoint ledger: pre-images saved before a step may change anything. */
int store_checkpoint_add(store_t *self, int64_t workflow, int64_t step, int64_t attempt, int64_t seq, const char *kind,
                         const char *path, int existed, const char *content, const char *sha256, int mode);
/* Forgets the checkpoints of one attempt of a step (its node sends them again). 0 or -1. */
int store_checkpoints_forget(store_t *self, int64_t workflow, int64_t step, int64_t attempt);
/* A workflow's checkpoints, oldest first (content, base64, only when asked). Caller owns. */
json_t *store_checkpoints(store_t *self, int64_t workflow, bool with_content);
int store_template_put(store_t *self, const char *name, const json_t *doc);
/* Every template ({name, plan, params}). Caller owns. */
json_t *store_templates(store_t *self);

/* ---- the event log (store_events.c) ---- */
/* Events kept (the newest); older ones are pruned every STORE_EVENTS_PRUNE_EVERY. */
#define STORE_EVENTS_KEEP 100000
#define STORE_EVENTS_PRUNE_EVERY 1000
/* The database handle, for the store's own files. */
struct sqlite3 *store_sqlite(store_t *self);
/* A prepared statement for sql, kept for reuse by its text (store_stmt.h), or
 * NULL; give it back with store_release (which resets or finalizes it and
 * returns what that returned). For the store's own files. */
struct sqlite3_stmt *store_prepare(store_t *self, const char *sql);
int store_release(store_t *self, struct sqlite3_stmt *st);
/* Creates the log's table (store_open does). 0 or -1. */
int store_events_init(store_t *self);
/* Keeps an event's encoded frame under its seq (session: its session, or NULL). 0 or -1. */
int store_event_put(store_t *self, int64_t seq, const char *session, const void *frame, size_t len);
/* The largest / smallest seq kept, 0 when the log is empty. */
int64_t store_event_last(store_t *self);
int64_t store_event_first(store_t *self);
/* Calls fn for the events after seq after, oldest first, at most limit;
 * fn returns non-zero to stop. Returns how many fn saw, or -1. */
typedef int (*store_event_fn)(void *arg, int64_t seq, const char *session, const void *frame, size_t len);
int store_events_after(store_t *self, int64_t after, int limit, store_event_fn fn, void *arg);
/* Budgets: a limit of tokens and/or cost (0: none) for a scope, a session id
 * (its whole tree of sub-agents) or "workflow:N". Setting both to 0 removes it. */
int store_budget_set(store_t *self, const char *scope, int64_t tokens, double cost);
/* 0 and the limit, or -1 when the scope has none. */
int store_budget_get(store_t *self, const char *scope, int64_t *tokens, double *cost);
/* Tokens and cost used by a session and its sub-agents (workflow 0), or by a
 * workflow's step sessions and their sub-agents. 0, or -1. */
int store_spent(store_t *self, const char *session, int64_t workflow, int64_t *tokens, double *cost);
/* Every scope with a budget (strings), oldest first. */
json_t *store_budget_scopes(store_t *self);
/* Project memory (an FTS5 table). A memory: {id, text, source, workspace, outcome, date_ms, pinned}. */
int64_t store_memory_add(store_t *self, const char *text, const char *source, const char *workspace,
                         const char *outcome);
/* Newest first, or (match: an FTS5 query) pinned first, then by relevance (each with its bm25 "rank");
 * workspace NULL: every workspace; limit < 0: only pinned ones, newest first, at most -limit (match
 * ignored). */
json_t *store_memories(store_t *self, const char *workspace, const char *match, int limit);
int store_memory_pin(store_t *self, int64_t id, bool pinned);
/* Deletes it for good (the index merged, secure_delete on); -ENOENT when there is none. */
int store_memory_forget(store_t *self, int64_t id);

/* ---- agents' performance (store_perf.c) ---- */
/* One ended turn of a model in a role. */
typedef struct {
  const char *model, *role;
  bool ok;
  int retries;
  int64_t latency_ms, ttft_ms; /* ttft_ms < 0: no token came */
  int64_t tokens;              /* completion tokens */
  int64_t prompt_tokens;
  double cost;
  int tool_calls, tool_errors;
} store_perf_t;
int store_perf_turn(store_t *self, const store_perf_t *turn);
/* A summary delivered by session id: its status (PASS, FAIL, PARTIAL, ...), kept under its role and profile. */
int store_perf_summary(store_t *self, const char *id, const char *status);
/* The records since since_ms (wall clock; 0: all), oldest first, at most STORE_PERF_MAX: an array of
 * [kind, model, role, ok, retries, latency_ms, ttft_ms, tokens, cost, tool_calls, tool_errors, verdict,
 * prompt_tokens, ts].
 * A summary's model is its profile's name. Caller owns. */
#define STORE_PERF_MAX 200000
/* Older records are deleted every this many new ones, so the table stays near STORE_PERF_MAX rows. */
#define STORE_PERF_PRUNE_EVERY 1024
json_t *store_perf_rows(store_t *self, int64_t since_ms);
/* The newest messages (not set aside) of any session whose JSON holds text, case aside, at most limit:
 * [{session, seq, role, content}]. Caller owns. */
json_t *store_search(store_t *self, const char *text, int limit);

#endif
