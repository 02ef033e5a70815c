/* workflow: a plan and its run as C types, and the rules that need no broker.
 *
 * A workflow is a plan (title, steps) with its state: a status, the
 * workspace it runs in, timings, and for each step its status, attempts, the
 * node or sub-agent running it and its result. JSON stays at the edges:
 * workflow_json.c alone turns a workflow into its stored form (one document
 * per row of the store) and its wire form (the `plans` / `plan` results and
 * the plan_* / workflow_* / step_* events), and reads the stored form back,
 * including documents written before these types existed.
 *
 * The engine (workflow.c, workflow_verbs.c) changes workflows; this module
 * says which changes are allowed and which steps are ready. */
#ifndef CADRE_WORKFLOW_H
#define CADRE_WORKFLOW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WF_MAX_ATTEMPTS 3     /* tries of one step before the workflow fails */
#define WF_RETRY_BASE_MS 1000 /* wait before the 2nd try; doubles each time */

/* A workflow's status. Stored and sent by name (wf_status_name). */
typedef enum {
  WF_PENDING, /* a valid plan waiting for approval */
  WF_INVALID, /* a plan with errors: modify or reject it */
  WF_REJECTED,
  WF_RUNNING,
  WF_PAUSED,       /* running steps finish, no new step starts */
  WF_ROLLING_BACK, /* its changes are being undone */
  WF_DONE,
  WF_FAILED,
  WF_CANCELLED,
} wf_status_t;

/* A step's status. */
typedef enum {
  STEP_PENDING,
  STEP_RUNNING,
  STEP_RETRYING, /* failed; runs again at next_try_ms */
  STEP_DONE,
  STEP_FAILED,    /* failed for good */
  STEP_ABANDONED, /* was running when the workflow rolled back */
} wf_step_status_t;

/* What a user asks of a workflow. */
typedef enum { WF_APPROVE, WF_REJECT, WF_MODIFY, WF_CANCEL, WF_PAUSE, WF_RESUME } wf_action_t;

/* One entry of a step's history (kept in the store, for post-mortems). */
typedef struct {
  int attempt;
  int64_t at_ms;
  char *what, *detail; /* detail may be NULL */
} wf_history_t;

typedef struct {
  /* the definition, from the plan */
  int64_t number;
  char *title, *agent;  /* agent: a role name, maybe "" */
  char *profile;        /* the config profile that runs an agent step, or NULL: the role's first */
  char *tool;           /* NULL: an agent step (done by a sub-agent) */
  json_t *arguments;    /* the tool's arguments (an object), or NULL */
  char *arguments_text; /* arguments as written when they are no JSON object, or NULL */
  bool arguments_truncated;
  int64_t *deps; /* numbers of the steps this one waits for */
  size_t n_deps;
  double estimated_seconds; /* NAN when the plan gives none */
  bool estimated_default;
  char *description;  /* or NULL */
  json_t *plan_extra; /* plan fields this type does not know, kept as they came; or NULL */
  /* the run */
  bool has_state; /* set once the workflow is approved */
  wf_step_status_t status;
  int attempts;
  char *node;          /* tool steps: the node running it */
  char *agent_session; /* agent steps: the sub-agent running it */
  char *result, *error;
  int64_t started_ms, finished_ms, next_try_ms; /* 0: not set */
  bool was_running;                             /* in flight when its node or the broker went away */
  int64_t lost_ms; /* running, its node gone (or the broker restarted) since then (monotonic ms): it
                    * waits for the node to say whether it still has the step; 0: not; not stored */
  json_t *changed; /* the node's list of changed files, as sent; or NULL */
  bool has_usage;
  int64_t usage_tokens;
  double usage_cost;
  wf_history_t *history;
  size_t n_history;
  json_t *state_extra; /* unknown state fields, kept; or NULL */
  json_t *wire_plan;   /* the definition's wire form, made once (workflow_json.c); or NULL */
} wf_step_t;

/* One operation of a rollback: restore a file, or prune a snapshot's new files. */
typedef struct {
  bool prune;
  char *path; /* file */
  bool existed;
  char *content; /* NULL: the file did not exist */
  char *sha256;
  int mode;         /* -1: none recorded */
  json_t *keep;     /* prune: paths to keep (array of str) */
  char *expect;     /* file: the state the workflow left there ("": none); anything else is kept
                 * as a conflict. NULL: restored whatever is there */
  const char *type; /* NULL: a file; "symlink" (content: its target) or "dir" (static strings) */
} wf_restore_t;

/* A rollback in progress (not stored: a restarted broker starts it again). */
typedef struct {
  wf_restore_t *ops; /* the checkpoint ledger in reverse */
  size_t n_ops, cap_ops, next;
  json_t *restored, *mismatches, *deleted; /* what the nodes answered (arrays) */
  json_t *conflicts; /* files other work changed after the workflow: kept [{path, sha256, expected}] */
  char *why;
  wf_status_t final;  /* WF_FAILED or WF_CANCELLED */
  char *sent_to;      /* node the next op went to, or NULL: send (again) */
  int64_t rerun_step; /* >0: not a rollback: this step is restored to its checkpoint before it runs again */
  bool waiting;       /* the restores wait for the workflow's running tool steps to end */
  int64_t sent_ms;
} wf_rollback_t;

typedef struct {
  bool present;
  json_t *rollback; /* {restored, mismatches, deleted}, or NULL */
  double seconds;   /* NAN when not set */
  bool has_usage;
  int64_t tokens;
  double cost;
  char *reason; /* or NULL */
  json_t *extra;
} wf_report_t;

typedef struct wf_sched wf_sched_t; /* which steps may start (workflow_ready.c) */

typedef struct workflow {
  int64_t id; /* 0 until stored */
  wf_status_t status;
  char *session; /* the agent whose answer held the plan; results go back there */
  char *origin;  /* that session, or "template" */
  char *title;
  double stated_seconds, stated_cost; /* as the plan states them; NAN when not */
  bool truncated;                     /* the plan had more steps than kept */
  wf_step_t *steps;
  size_t n_steps;
  json_t *errors; /* the checker's list ({step, message}), or NULL */
  bool has_estimate;
  double est_seconds, est_cost, est_tokens; /* est_tokens: per agent step */
  int64_t est_total_tokens;
  json_t *est_steps; /* each step's {number, profile, model, tokens, seconds, cost}, or NULL */
  char *text;        /* the plan as shown for approval, or NULL */
  char *workspace;   /* set at approval */
  int64_t created_ms, started_ms, finished_ms; /* wall ms; 0: not set */
  wf_report_t report;
  wf_rollback_t *rollback;    /* while rolling back, else NULL */
  json_t *plan_extra, *extra; /* unknown plan / document fields, kept */
  wf_sched_t *sched;          /* derived from the steps, not stored; NULL until first used */
  struct workflow *next;
} workflow_t;

/* An empty workflow (status pending, no steps), or NULL. */
workflow_t *workflow_new(void);
/* Frees a workflow; accepts NULL, nulls the caller's pointer. */
void workflow_destroy(workflow_t **self_p);
/* Frees a step's fields (not the step itself). */
void wf_step_clear(wf_step_t *s);
void wf_rollback_free(wf_rollback_t **rb_p);

const char *wf_status_name(wf_status_t s);
/* The status named s; false when s names none. */
bool wf_status_parse(const char *s, wf_status_t *out);
const char *wf_step_status_name(wf_step_status_t s);
bool wf_step_status_parse(const char *s, wf_step_status_t *out);

/* True when a workflow with status from may be asked to do a. */
bool wf_allows(wf_status_t from, wf_action_t a);

/* The first step numbered number, or NULL. */
wf_step_t *wf_step(workflow_t *wf, int64_t number);
/* True when every step s waits for is done (a missing one never is). */
bool wf_deps_done(workflow_t *wf, const wf_step_t *s);
/* True when s may start now: pending, or retrying and due, with its dependencies done. */
bool wf_step_ready(workflow_t *wf, const wf_step_t *s, int64_t now);
/* Resets every step's run state (status pending, no attempts): at approval. */
void wf_steps_reset(workflow_t *wf);
/* Appends to a step's history (detail may be NULL). */
void wf_step_note(wf_step_t *s, int64_t at_ms, const char *what, const char *detail);
/* A failed attempt: retrying (due at now + backoff) when retryable and attempts remain, else failed.
 * Sets error; returns true when the step will be tried again. */
bool wf_step_fail(wf_step_t *s, const char *detail, bool retryable, int64_t now);
/* Counts of steps done and failed for good, for the end of a workflow. */
void wf_tally(const workflow_t *wf, size_t *done, size_t *failed);

/* ---- which steps may start (workflow_ready.c) ----
 * Kept as steps change, so that starting and ending a step costs the same in a
 * plan of 10 steps or 10,000: wf_step finds a step by number through an index
 * of the plan, and the engine takes ready steps from a queue instead of walking
 * the plan. Every change of a step's status is told with wf_sched_note (or, for
 * many at once, wf_sched_stale); nothing here is stored. */

/* Drops the index and bookkeeping (the plan changed, or the workflow goes). */
void wf_sched_free(workflow_t *wf);
/* The steps' statuses changed in ways not noted: the bookkeeping is rebuilt from them on next use. */
void wf_sched_stale(workflow_t *wf);
/* Step s's status changed (any change, from any status): counts, dependents and the queue follow. */
void wf_sched_note(workflow_t *wf, const wf_step_t *s);
/* The first ready step in plan order (tool steps only when tools), taken off the queue: its
 * position in *at and true; false when none. A retrying step not due at now waits aside. */
bool wf_sched_next(workflow_t *wf, int64_t now, bool tools, size_t *at);
/* A step taken by wf_sched_next that did not start after all goes back in line. */
void wf_sched_again(workflow_t *wf, size_t at);
/* As wf_tally, from the bookkeeping (no walk of the plan). */
void wf_sched_counts(workflow_t *wf, size_t *done, size_t *failed);
/* True when the bookkeeping agrees with a fresh count from the statuses (for tests). */
bool wf_sched_consistent(workflow_t *wf);

/* Replaces *dst with a copy of src (NULL allowed). */
void wf_set_str(char **dst, const char *src);

/* ---- JSON at the edges (workflow_json.c) ---- */

/* The plan (title, steps, stated) as the plan module reads it. Caller owns. */
json_t *wf_plan_json(const workflow_t *wf);
/* Replaces the workflow's plan (title and steps, run state dropped) with plan,
 * as plan_parse and plan_edit write it. 0, or -1 when plan is no plan. */
int wf_set_plan(workflow_t *wf, const json_t *plan);
/* The stored document (as store_workflow_insert/update keep it). Caller owns. */
json_t *wf_to_stored(const workflow_t *wf);
/* The stored document's top-level members but the plan and the steps (store_workflow_head). Caller owns. */
json_t *wf_head_to_stored(const workflow_t *wf);
/* A workflow from a stored document, today's or older; NULL with err set when
 * it cannot be read (an unknown status, no plan). Caller owns. */
workflow_t *wf_from_stored(const json_t *doc, char *err, size_t errlen);
/* The wire form controllers get: the plan with each step's state, estimate,
 * errors, timings, report. Caller owns. */
json_t *wf_to_wire(const workflow_t *wf);
/* The same with only step `only` in steps (NULL: every step), as step_* events carry it:
 * its cost does not grow with the plan. Caller owns. */
json_t *wf_to_wire_step(const workflow_t *wf, const wf_step_t *only);
/* One step's stored state (the document's steps."N" member). Caller owns. */
json_t *wf_step_to_stored(const wf_step_t *s);

#endif
