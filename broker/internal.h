/* Broker internals shared by the broker sources (not a public interface). */
#ifndef CADRE_BROKER_INTERNAL_H
#define CADRE_BROKER_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "broker.h"
#include "config.h"
#include "keys.h"
#include "log.h"
#include "proto.h"
#include "sbuf.h"
#include "store.h"

#define PEER_ID_MAX 256

typedef struct peer peer_t;

typedef enum { PEER_NODE, PEER_CONTROLLER } peer_role_t;

/* A line of the broker's authorized_keys (zap.c). */
#define AUTHKEY_NAME_MAX 64
typedef enum { AUTHKEY_ANY, AUTHKEY_NODE, AUTHKEY_CONTROLLER } authkey_role_t;
typedef struct {
  char key[KEYS_Z85_LEN + 1];
  authkey_role_t role;
  char name[AUTHKEY_NAME_MAX]; /* "" for a bare key */
} authkey_t;

struct peer {
  uint8_t id[PEER_ID_MAX]; /* ROUTER routing id */
  size_t idlen;
  peer_role_t role;
  char *name, *host, *version, *workspace;
  char *sandbox; /* node: "on", "off", "unavailable: ..."; "unknown" from an older node */
  json_t *models, *providers, *tools, *labels;
  int slots;
  int busy;                   /* turns assigned by us */
  int64_t last_seen;          /* monotonic ms */
  int64_t joined;             /* wall ms */
  bool watch_all;             /* controller: receives every session's events */
  json_t *watch;              /* controller: object used as a set of watched session ids */
  bool dead;                  /* removed; freed by peers_sweep() once no caller can hold it */
  char key[KEYS_Z85_LEN + 1]; /* its CURVE public key ("" without ZAP) */
  bool stopping;              /* node: it drains itself (SIGTERM): no new work */
  bool drained;               /* node: cadre drain: no new work (kept in the store by name) */
  int64_t turns_served;       /* node: turns it answered since it joined */
  /* controller that could not keep up, or asked to resume (outbox.c): it gets
   * no live traffic until it has caught up from the event log */
  bool behind;
  int64_t cursor;        /* behind: the last event seq it was sent, or need not get */
  int64_t behind_from;   /* behind: the seq it was at when it fell behind */
  int64_t next_try;      /* behind: monotonic ms of the next catch-up try */
  int64_t missed_deltas; /* deltas not sent to it while behind */
  json_t *missed_turns;  /* their turns (ids, capped), or NULL */
  struct peer *next;     /* every peer (b->peers), dead ones until peers_sweep() */
  struct peer *cnext;    /* controller: the next controller (b->controllers) */
  UT_hash_handle hh;     /* b->peer_ids, by routing id, while it is not dead */
};

typedef struct turn {
  int64_t id;
  char *session;
  int attempt;
  peer_t *node;      /* NULL while queued */
  int64_t queued_at; /* monotonic ms */
  int64_t started_at;
  bool warned_no_node;
  bool sub;             /* the session is a sub-agent (counts against max_concurrent_agents) */
  int64_t after;        /* continues the session after this turn (tool results), or 0 */
  int64_t request;      /* the first turn of the user request this one answers (itself when it starts one) */
  int rounds;           /* model calls the request made before this turn (see sessions_queue_turn) */
  int64_t retry_at;     /* a send failed (EAGAIN): not before this monotonic ms */
  int send_failures;    /* sends in a row that did not reach a node */
  int64_t approval_seq; /* the approval the node waits for (its call's tool: approval_tool) */
  char approval_tool[64];
  int64_t compact_upto;       /* on a node: a summary of the session's messages up to this seq (not the turn) */
  bool compact_failed;        /* that summary could not be had: the turn trims instead */
  bool context_retried;       /* sent once more after a node found it did not fit the model's context */
  int64_t first_delta_at;     /* monotonic ms of this attempt's first delta; 0: none yet */
  int tool_calls;             /* this attempt's tool calls, from its tool_result deltas (performance) */
  int tool_errors;            /* and those that failed */
  int64_t deltas;             /* deltas of this attempt forwarded to the watchers (turn_done says how many) */
  struct turn *next, *prev;   /* every turn, in arrival order (b->turns) */
  struct turn *snext;         /* the next turn of the same session (turns.c) */
  struct turn *hnext, *hprev; /* the first turns of sessions, in id order (b->heads) */
  struct turn *rnext;         /* in b->recheck */
  bool in_recheck;
  UT_hash_handle hh; /* b->turn_ids, by id */
} turn_t;

/* Notices from a lower module to the ones above it. The broker's modules
 * depend one way: store, outbox, nodes < sessions < agents < workflow <
 * requests < broker.c. A lower module never calls an upper one; it calls the
 * hook, which broker_new sets (any hook may be NULL: nobody listens). */
typedef struct {
  /* outbox: a send found the peer gone (nodes removes it). */
  void (*unreachable)(broker_t *b, peer_t *p);
  /* nodes: a node left; its running turns and steps must go elsewhere. */
  void (*node_lost)(broker_t *b, peer_t *node);
  /* sessions: a turn of session went to a node. */
  void (*turn_started)(broker_t *b, const char *session);
  /* sessions: a turn ended (message: the final assistant message; added: every message it added). */
  void (*turn_done)(broker_t *b, const char *session, int64_t turn, const json_t *message, const json_t *added);
  void (*turn_failed)(broker_t *b, const char *session, const char *code, const char *detail);
  /* sessions: the tools the broker itself offers a session's turns, or NULL. Caller owns. */
  json_t *(*tools_for)(broker_t *b, const char *session);
  /* agents: an agent's final answer (a [PLAN] in it becomes a plan). */
  void (*answer)(broker_t *b, const char *session, const char *content);
  /* agents: a sub-agent's summary; true when it was consumed (a workflow step's result). */
  bool (*summary)(broker_t *b, const json_t *row, const json_t *summary);
  /* outbox: an encoded event or delta on its way to the controllers (the dashboard's live view). */
  void (*tap)(broker_t *b, const void *data, size_t len);
} broker_hooks_t;

/* Writes one encoded frame to a routing id. Returns 0 or -errno (-EHOSTUNREACH, -EAGAIN, -EMSGSIZE). */
typedef int (*outbox_write_fn)(void *ctx, const void *id, size_t idlen, const void *data, size_t len);

struct broker {
  broker_opts_t opts;
  broker_hooks_t hooks;
  outbox_write_fn write; /* outbox.c's writer: the ROUTER, or a test's recorder */
  void *write_ctx;
  void *ctx, *router, *zap;
  struct zap_state *zs;     /* zap.c: the authorized keys, the monitor, refusals logged */
  struct obs *obs;          /* obs.c: latency histograms and counters, for the metrics */
  struct http *http;        /* http.c: the --metrics (--http) listener, or NULL */
  char *dashboard_url;      /* http.c: the dashboard's address with its access token, or NULL */
  log_limit_t rejected_log; /* "rejected a message" lines, rate-limited */
  void *frame;              /* while a frame from the ROUTER is handled: its zmq_msg_t (for its
                               connection's ZAP User-Id and Peer-Address; outbox.c forwards a delta
                               by sharing its buffer), else NULL */
  keys_pair_t keys;
  char *authorized_path;
  store_t *store;
  char epoch[17];
  int64_t started_ms;
  int64_t next_msg_id;
  int64_t event_seq;
  peer_t *peers;
  peer_t *peer_ids;    /* uthash: the live peers by routing id (nodes.c) */
  peer_t *controllers; /* the controllers among peers, by cnext: whom events and deltas go to */
  int dead_peers;      /* peers removed and not yet swept */
  turn_t *turns;       /* queued and running, in arrival order (turns.c keeps the indexes below) */
  turn_t *turns_tail;
  turn_t *turn_ids;                                  /* uthash: every turn by id */
  struct turn_session *turn_sessions;                /* uthash: each session's turns in order */
  turn_t *heads, *heads_tail;                        /* each session's first turn, in id order */
  turn_t *recheck, *recheck_tail;                    /* heads that scheduling has not looked at since they became one */
  int n_sub_sessions;                                /* sessions in turn_sessions that are sub-agents */
  struct workflow *workflows;                        /* every workflow, oldest first (workflow.c) */
  struct wf_held *wf_held, *wf_held_tail;            /* workflow.c: what goes out once its batch is committed */
  int wf_batch;                                      /* workflow.c: depth of open batches (wf_batch_begin) */
  struct held_event *events_held, *events_held_tail; /* outbox.c: logged, sent at broker_events_release */
  int events_hold;                                   /* outbox.c: depth of broker_events_hold */
  char endpoints[BROKER_MAX_BINDS][256];
  int n_endpoints;
  size_t turn_budget; /* bytes of history a turn may carry (JSON size; default SESSIONS_TURN_BUDGET) */
  json_t *allowed;    /* {session: {tool: true}}: tools the user allowed for the whole session, or NULL */
  json_t *streaming;  /* {session: bool}: a controller's choice (ask's "stream") over the profile's, or NULL */
  json_t *requests;   /* {session: {request, last, rounds, sig, repeats, closed}}: its last ended turn's request */
};

/* ---- the core (broker.c) ---- */
/* Wires the hooks, installs the default writer unless one is set, and starts
 * sessions and workflows from the store. broker_new calls it after binding;
 * unit tests call it on a broker with only opts, store (and a writer). */
int broker_core_start(broker_t *b);
/* Handles one frame from routing id: a delta is routed without decoding, any
 * other message decoded and given to its handler (the table in broker.c). */
void broker_handle_frame(broker_t *b, const uint8_t *id, size_t idlen, const void *data, size_t len);

/* ---- peers (nodes.c) ---- */
/* The live peer with this routing id, or NULL (a hash lookup). */
peer_t *peer_find(broker_t *b, const void *id, size_t idlen);
peer_t *peer_find_name(broker_t *b, peer_role_t role, const char *name);
/* Registers or refreshes a peer from its hello. Returns the peer or NULL. */
peer_t *peer_hello(broker_t *b, const void *id, size_t idlen, const proto_msg_t *hello, char *err, size_t errlen);
/* Removes a peer; its running turns are re-queued. The memory stays valid
 * (p->dead) until peers_sweep(), so callers iterating or replying are safe. */
void peer_remove(broker_t *b, peer_t *p, const char *why);
/* Frees removed peers; called between messages. Costs nothing while no
 * peer has been removed since the last sweep. */
void peers_sweep(broker_t *b);
/* Frees every peer, removed or not (the broker is going away). */
void peers_free_all(broker_t *b);
/* Frees one peer's memory. */
void peer_free(peer_t *p);
/* True when node p takes new work (it is neither draining nor drained). */
static inline bool peer_takes_work(const peer_t *p) {
  return !p->dead && !p->stopping && !p->drained;
}
/* True when p has every label of want ({key: value}; NULL: none needed). */
bool peer_has_labels(const peer_t *p, const json_t *want);
/* The name of the workspace p's files live in: its "workspace" label (nodes
 * sharing storage say the same), else its own name. */
const char *peer_workspace_id(const peer_t *p);
/* cadre drain / undrain: the node by name, or NULL. */
peer_t *nodes_set_drain(broker_t *b, const char *name, bool on);
/* A node's own drain (its heartbeats say draining). */
void nodes_set_stopping(broker_t *b, peer_t *p, bool on);
/* True when node p can run a turn for this profile. */
bool peer_serves(const peer_t *p, const char *model, const char *provider);
json_t *peer_to_json(const peer_t *p, int64_t now);
const char *peer_label(const peer_t *p);

/* ---- sending (outbox.c) ---- */
#define OUTBOX_SESSION_MAX 255
/* Installs the frame writer (NULL: the ROUTER socket, the default). */
void outbox_set_writer(broker_t *b, outbox_write_fn fn, void *ctx);
/* Stamps msg's id and sends it to a peer; an unreachable peer is reported
 * through hooks.unreachable. Returns 0 or -errno (-EHOSTUNREACH, -EAGAIN,
 * -EMSGSIZE, -EINVAL). The caller keeps msg. */
int broker_send(broker_t *b, peer_t *p, proto_msg_t *msg);
int broker_send_error(broker_t *b, const void *id, size_t idlen, const char *code, const char *detail, int64_t ref);
/* Sends an event to every controller watching the session (NULL: all),
 * encoded once. Takes payload. */
void broker_event(broker_t *b, const char *kind, const char *session, int64_t turn, json_t *payload);
/* While held (a workflow batch, whose writes are one transaction), events are kept in the log as
 * always, in that transaction, and go to the watchers at the matching broker_events_release, in
 * order, once the caller committed it. Holds nest. */
void broker_events_hold(broker_t *b);
void broker_events_release(broker_t *b);
/* Forgets held events without sending them (they are in the log): when the broker goes. */
void broker_events_drop(broker_t *b);
/* Forwards a delta's encoded frame unchanged to the controllers watching
 * session (session_len bytes, not NUL-terminated); turn: the delta's turn. */
void broker_forward(broker_t *b, const char *session, size_t session_len, int64_t turn, const void *data, size_t len);
/* No event lost: every event is kept in the store's event log before it is
 * sent. A controller whose send fails with EAGAIN (its queue is past the
 * high-water mark) falls behind: it gets nothing live (deltas are counted,
 * not queued) and is sent the events it missed from the log, in order, as
 * fast as it takes them; once caught up, a gap event tells it how many
 * deltas (of which turns) it did not get, and live traffic resumes. */
#define OUTBOX_REPLAY_BATCH 256 /* events read from the log per try */
#define OUTBOX_RETRY_MS 20      /* a controller that is still full is tried again after this */
/* A controller resumes after event seq since (subscribe's since): the events
 * after it are replayed, or a gap event says which are gone. */
void outbox_resume(broker_t *b, peer_t *p, int64_t since);
/* Sends what the controllers that are behind can take now. Returns the ms
 * until it wants to run again (0: at once), or -1 when none is behind. */
int outbox_catch_up(broker_t *b, int64_t now);
/* True when controller p receives events of session (NULL: every event). */
bool outbox_watches(const peer_t *p, const char *session, size_t session_len);

/* ---- sessions and turns (sessions.c) ---- */
int sessions_start(broker_t *b);
/* Appends the user's text to a session and queues a turn. Returns the turn id or -1 with err. */
int64_t sessions_ask(broker_t *b, const char *session, const char *text, char *err, size_t errlen);
void sessions_schedule(broker_t *b);
/* Turns of the session run from now on only on nodes whose workspace is this
 * one (a controller's; NULL or "" changes nothing). Sub-agents take their
 * parent's when first placed. */
void sessions_set_workspace(broker_t *b, const char *session, const char *workspace);
/* The same tool call this many times in a row, over the turns of a request, ends it as stuck. */
#define SESSIONS_STUCK_REPEATS 3
/* Queues a turn for a session without a new user message (follow-ups,
 * continuations after tool results). With after, the turn of the session's
 * last ended turn, the new turn continues that turn's user request: it counts
 * the request's model calls against tools.max_iterations, fails at once (and
 * says so) past it or when the same tool call came SESSIONS_STUCK_REPEATS times in a
 * row, and is not queued at all when the request was cancelled. Returns the
 * turn id, or -1 when no turn was queued (the request is closed: cancelled,
 * or stopped by a cap). */
int64_t sessions_queue_turn(broker_t *b, const char *session, int64_t after);
/* The profile a session runs with (main's when its own is gone). */
const cadre_profile_t *session_profile(broker_t *b, const char *session);
/* What routing a delta needs, read from the frame (session is not NUL-terminated). */
typedef struct {
  const char *session;
  size_t session_len;
  int64_t turn, attempt;
} sessions_route_t;
/* History a turn carries at most (JSON bytes): room is left in the 8 MiB
 * frame for the profile and tools. Older messages are dropped to fit. */
#define SESSIONS_TURN_BUDGET ((size_t)7 * 1024 * 1024)
/* Forwards a delta of the running attempt, unchanged, to the session's watchers. */
void sessions_on_delta(broker_t *b, peer_t *from, const sessions_route_t *r, const void *raw, size_t len);
void sessions_on_done(broker_t *b, peer_t *from, const proto_msg_t *m);
void sessions_on_failed(broker_t *b, peer_t *from, const proto_msg_t *m);
/* A node asks whether a tool call may run: the watchers are asked. */
void sessions_on_approval(broker_t *b, peer_t *from, const proto_msg_t *m);
/* The user's answer to an approval, passed to the node. 0, or -1 when the turn is gone.
 * session_wide with allow: later calls of the same tool in the turn's session run without asking. */
int sessions_approve(broker_t *b, int64_t turn, int64_t seq, bool allow, bool session_wide);
/* A node went away: re-queue or fail its turns. */
void sessions_node_lost(broker_t *b, peer_t *node);
/* Cancels a turn's whole user request: its running turn (on its node) and
 * queued ones; no continuation of it is queued later. turn may also be the
 * request's last ended turn (a continuation is queued or about to be).
 * Returns how many turns were cancelled, or -1 when turn belongs to no live request. */
int sessions_cancel(broker_t *b, int64_t turn, const char *why);
/* No request of session (NULL: of any session) that has ended a turn is continued any more. */
void sessions_close_requests(broker_t *b, const char *session);
/* Closes session's requests and cancels every turn of session (NULL: of every session). Returns how many, and their ids in ids when not NULL. */
int sessions_cancel_all(broker_t *b, const char *session, const char *why, json_t *ids);
void sessions_tick(broker_t *b, int64_t now);
/* The bytes of history (JSON) that fit a model context of ctx tokens, when
 * max_tokens are kept for the answer and tools_tokens (bytes / 4) go to tool
 * definitions, a tenth kept in reserve; bpt100: bytes per token x100 as the
 * server counted them (0: 4 bytes a token). SIZE_MAX when ctx is 0 (unknown). */
size_t sessions_context_bytes(long long ctx, long long tools_tokens, int max_tokens, int bpt100);
turn_t *turn_find(broker_t *b, int64_t id);
int sessions_count_turns(broker_t *b, bool running);

/* ---- the turn table (turns.c): O(1) per turn, whatever the number queued ---- */
/* Appends a turn (b->turns, its session's queue, the heads when first). NULL when out of memory. */
turn_t *turns_add(broker_t *b, int64_t id, const char *session, int attempt, bool sub);
/* Unlinks a turn everywhere and frees it (its node's slot is the caller's business). */
void turns_remove(broker_t *b, turn_t *t);
void turns_free_all(broker_t *b);
/* The session's first turn (running or next to run), or NULL when it has none. */
turn_t *turns_session_first(broker_t *b, const char *session);
/* How many sub-agent sessions have a turn queued or running. */
int turns_sub_sessions(const broker_t *b);
/* A head that scheduling must look at even when no node has a free slot
 * (new, or back in the queue); popped by sessions_schedule. */
void turns_recheck(broker_t *b, turn_t *t);
turn_t *turns_recheck_pop(broker_t *b);
void turns_recheck_clear(broker_t *b);

/* ---- sub-agents, summaries, delegation (agents.c) ---- */
/* Opens a sub-agent session seeded with its parent's context and the task,
 * and queues it. role_or_profile names a role, or a profile when by_profile.
 * call_id: the parent's spawn_agent tool call it answers, or NULL. Writes the
 * new id; returns 0 or -1 with err. */
int agents_spawn(broker_t *b, const char *role_or_profile, bool by_profile, const char *task, const char *parent,
                 const char *call_id, char *id, size_t idlen, char *err, size_t errlen);
/* agents_spawn without the admission: the caller marks the session (a workflow
 * step, so that the workflow's budget holds from its first turn) and then calls
 * agents_admit. */
int agents_spawn_held(broker_t *b, const char *role_or_profile, bool by_profile, const char *task, const char *parent,
                      const char *call_id, char *id, size_t idlen, char *err, size_t errlen);
/* Starts queued sub-agents while fewer than max_concurrent_agents run. */
void agents_admit(broker_t *b);
void agents_turn_started(broker_t *b, const char *session);
/* After a session's turn (hooks.turn_done, hooks.turn_failed): summaries,
 * follow-ups, delegation, then admission of queued sub-agents. */
void agents_turn_done(broker_t *b, const char *session, int64_t turn, const json_t *message, const json_t *added);
void agents_turn_failed(broker_t *b, const char *session, const char *code, const char *detail);
/* The tools a session's turns offer (spawn_agent), or NULL. Caller owns. */
json_t *agents_tools_for(broker_t *b, const char *session);
/* A user message to the main agent: keyword rules may spawn or propose. */
void agents_on_user_text(broker_t *b, const char *text);
int agents_stop(broker_t *b, const char *id, char *err, size_t errlen);
/* After a restart, a running sub-agent (a workflow's agent step) with no turn
 * queued or running: the broker stopped after its last turn was stored and
 * before that turn's answer was acted on. The answer is acted on now (its
 * summary becomes the step's result); after a tool result, it takes its next
 * turn. One still queued (spawned held, not yet admitted) is admitted. */
void agents_resume(broker_t *b, const char *id);
/* Stops every sub-agent still at work; returns their ids. Caller owns. */
json_t *agents_stop_all(broker_t *b);
json_t *agents_stats(broker_t *b);
/* Every session with its model (the agents verb). Caller owns. */
json_t *agents_list(broker_t *b);
/* Answers a keyword proposal; returns the spawned id or NULL (declined/failed, err set). */
int agents_confirm(broker_t *b, int64_t proposal, bool accept, char *id, size_t idlen, char *err, size_t errlen);

/* ---- workflows (workflow.c) ---- */
int workflow_start(broker_t *b);
/* Frees the workflows (their state is in the store). */
void workflow_stop(broker_t *b);
/* An agent's final answer: a [PLAN] in it becomes a stored plan. */
void workflow_on_answer(broker_t *b, const char *session, const char *content);
void workflow_tick(broker_t *b, int64_t now);
void workflow_timer(broker_t *b, int64_t now);
/* checkpoint, step_done, step_failed, restored from a node. */
void workflow_on_node_msg(broker_t *b, peer_t *from, const proto_msg_t *m);
void workflow_node_lost(broker_t *b, peer_t *node);
/* A node's heartbeat listed the steps it holds (steps: its `steps` field, or
 * NULL): steps waiting for that node go on or run again; results it holds
 * that nothing waits for are acknowledged again. */
void workflow_on_heartbeat(broker_t *b, peer_t *from, const json_t *steps);
/* A sub-agent's summary: true when it was a workflow step's (then it is the step's result). */
bool workflow_agent_summary(broker_t *b, const json_t *row, const json_t *summary);
json_t *workflow_list(broker_t *b);
json_t *workflow_show(broker_t *b, int64_t id, char *err, size_t errlen);
int workflow_approve(broker_t *b, int64_t id, const char *workspace, char *err, size_t errlen);
int workflow_reject(broker_t *b, int64_t id, char *err, size_t errlen);
json_t *workflow_modify(broker_t *b, int64_t id, const json_t *edit, char *err, size_t errlen);
int workflow_cancel(broker_t *b, int64_t id, bool rollback, char *err, size_t errlen);
int workflow_pause(broker_t *b, int64_t id, bool pause, char *err, size_t errlen);
json_t *workflow_template_save(broker_t *b, int64_t id, const char *name, char *err, size_t errlen);
json_t *workflow_template_run(broker_t *b, const char *name, const json_t *values, const char *session, char *err,
                              size_t errlen);

/* ---- requests (requests.c) ---- */
void requests_handle(broker_t *b, peer_t *from, const proto_msg_t *m);
/* Runs verb as a controller would, for the broker's own HTTP API: the reply's
 * result (caller owns), or NULL with *code (a PROTO_ERR_*) and detail set. */
json_t *requests_local(broker_t *b, const char *verb, json_t *args, const char **code, char *detail, size_t len);

/* ---- HTTP: /metrics and /healthz (http.c, metrics.c) ---- */
/* Listens on HOST:PORT (--metrics); writes <state>/metrics with its URL. 0, or -1 with err. */
int http_start(broker_t *b, const char *addr, char *err, size_t errlen);
/* The descriptor to poll (-1: no listener), how long at most until http_run is due (-1: no limit). */
int http_fd(const broker_t *b);
long http_timeout_ms(const broker_t *b);
/* Serves what is ready; never blocks. */
void http_run(broker_t *b);
void http_stop(broker_t *b);
/* An encoded event or delta for the dashboard's event streams (hooks.tap). */
void http_tap(broker_t *b, const void *data, size_t len);
/* The Prometheus text of the broker's state. */
void metrics_render(broker_t *b, sbuf_t *out);

/* ---- ZAP (zap.c) ---- */
int zap_start(broker_t *b);
void zap_stop(broker_t *b);
void zap_handle(broker_t *b);
/* One line of authorized_keys: 1 (out set), 0 (blank or comment), or -1 with err. */
int zap_parse_line(const char *line, authkey_t *out, char *err, size_t errlen);
/* The entry of a Z85 key, or NULL. */
const authkey_t *zap_find(broker_t *b, const char *key);
/* Reads authorized_keys when it changed (or force) and drops peers whose key left it. */
void zap_check(broker_t *b, bool force);
/* A User-Id of ours ("ROLE KEY NAME") read back. 0, or -1. */
int zap_user_parse(const char *user, authkey_t *out);
/* Whether a connection with ZAP User-Id user (NULL: no ZAP) may say hello as
 * role as now; else err says why (and the refusal is logged). */
bool zap_admit_hello(broker_t *b, const char *user, peer_role_t as, const char *addr, char *err, size_t errlen);
/* The ROUTER's socket monitor: handshakes refused before ZAP, logged. */
int zap_monitor_start(broker_t *b);
void *zap_monitor_socket(broker_t *b);
void zap_monitor_handle(broker_t *b);

#endif
