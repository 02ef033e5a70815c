/* Workflow engine internals shared by workflow.c and workflow_verbs.c. */
#ifndef CADRE_WORKFLOW_INT_H
#define CADRE_WORKFLOW_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "sbuf.h"
#include "workflow.h"

/* ---- one commit per scheduling pass (workflow.c) ----
 * Between wf_batch_begin and wf_batch_end the engine's writes are one
 * transaction, and what it sends or announces is held (wf_send, wf_event):
 * at the end the writes are committed first, then the messages go out in
 * order, so that "on disk before it is acted on" holds for every step_run,
 * step_ack and checkpoint_ack as it did with a commit per write. When the
 * commit fails, the acknowledgements are dropped (the node keeps its results
 * and sends them again). Outside a batch, everything goes at once. Batches nest. */
void wf_batch_begin(broker_t *b);
void wf_batch_end(broker_t *b);
/* Sends m (taken) to node to, now or at the batch's end; once it went, announces event kind
 * (payload taken; kind NULL: none). Returns broker_send's code, or 0 when held. */
int wf_send(broker_t *b, peer_t *to, proto_msg_t *m, const char *kind, json_t *event);

/* The workflow with this id, or NULL (borrowed). */
workflow_t *wf_get(broker_t *b, int64_t id);
/* Persists the workflow (before anything is acted on). 0, or -1 (logged). */
int wf_save(broker_t *b, workflow_t *wf);
/* Persists the workflow's top-level members alone (status, timings, report: not the plan, not the
 * steps), at a cost that does not grow with the plan. 0, or -1 (logged). */
int wf_save_head(broker_t *b, workflow_t *wf);
/* Persists one step's state (its row; the whole workflow when its number is not unique). 0, or -1 (logged). */
int wf_save_step(broker_t *b, workflow_t *wf, const wf_step_t *s);
/* Announces a change of the workflow (its wire form; extra is merged in and taken). */
void wf_event(broker_t *b, const char *kind, const workflow_t *wf, json_t *extra);
/* Announces a change of step s: the wire form with s alone in steps (extra merged in and taken). */
void wf_step_event(broker_t *b, const char *kind, const workflow_t *wf, const wf_step_t *s, json_t *extra);
/* A message about one attempt of a step (workflow, step, attempt set), or NULL. Caller owns. */
proto_msg_t *wf_step_msg(proto_type_t type, int64_t workflow, int64_t step, int64_t attempt);
/* Validates and estimates the workflow's plan (status pending or invalid). */
void assess(broker_t *b, workflow_t *wf);
/* "name (role, model), ...": the profiles a step may run on, appended to out. */
void wf_step_profiles(broker_t *b, sbuf_t *out);
/* Why step s cannot run on the profile named name ("is a tool step: ..."), or NULL; *p: that profile or NULL. */
const char *wf_profile_problem(broker_t *b, const wf_step_t *s, const char *name, const cadre_profile_t **p);
/* The budgets a workflow runs under, for its approval screen: {"workflow": report or null,
 * "sessions": [reports of its session and the sessions above it that have a limit],
 * "warnings": [str]: the estimate against what each has left}. Caller owns. */
json_t *wf_budget_json(broker_t *b, const workflow_t *wf);
/* Stores a new plan (taken) and announces it; the workflow (borrowed) or NULL. */
workflow_t *propose(broker_t *b, const char *session, json_t *plan, const char *origin);
/* Starts every step whose dependencies are done; ends the workflow when all are. */
void advance(broker_t *b, workflow_t *wf, int64_t now);
/* Undoes the workflow's changes in reverse order, then finishes it. */
void rollback_start(broker_t *b, workflow_t *wf, const char *why);
/* A step's attempt failed (retried when retryable and attempts remain); once
 * that is on disk, ack_to (when not NULL) may forget the node's result. */
void wf_step_failed(broker_t *b, workflow_t *wf, wf_step_t *s, const char *detail, bool retryable, peer_t *ack_to);
/* A snapshot's prune (keep what it saw) followed by its files' restores, onto rb
 * (cps: the ledger with contents, end: the snapshot_end row). */
void wf_add_snapshot_ops(wf_rollback_t *rb, const json_t *cps, const json_t *end);
/* One restore from a checkpoint row of the store (strings copied). */
wf_restore_t wf_restore_of(const json_t *c, bool existed);
/* Appends op to the rollback's list; false (op freed) when out of memory. */
bool wf_push_op(wf_rollback_t *rb, wf_restore_t op);
/* A file checkpoint's restore, expecting what its step left there (workflow_once.c). */
void wf_add_file_op(wf_rollback_t *rb, workflow_t *wf, const json_t *c);
/* A snapshot's restores of only what its attempt changed (its snapshot_post row),
 * each expecting what the step left there; false when the ledger has no such row. */
bool wf_add_changed_ops(wf_rollback_t *rb, const json_t *cps, const json_t *end);
/* An execute_bash step's step_done: what it changed (payload.changed) goes in
 * the ledger (kind snapshot_post, the list as JSON in content) for its rollback. */
void wf_note_changes(broker_t *b, workflow_t *wf, const wf_step_t *s, const proto_msg_t *m);
/* Sends the rollback's next restore to a node of the workspace (or waits for one). */
void wf_rollback_send(broker_t *b, workflow_t *wf);

/* ---- exactly once (workflow_once.c) ---- */
/* step_ack: the node may forget the step's result. */
void wf_step_ack(broker_t *b, peer_t *to, int64_t workflow, int64_t step, int64_t attempt);
/* A step that ran (was_running) with a workspace snapshot: its restores start
 * (wf->rollback with rerun_step) and true; false: it may start now. */
bool wf_restore_before_rerun(broker_t *b, workflow_t *wf, wf_step_t *s);
/* The restores before a rerun ended (wf->rollback is freed): the step starts, or fails. */
void wf_rerun_restored(broker_t *b, workflow_t *wf);
/* Steps whose node did not come back within the grace period run again. */
void wf_lost_steps_due(broker_t *b);

/* Ends a workflow: report, results back to the originating session, event. */
void finish(broker_t *b, workflow_t *wf, wf_status_t status, const char *why);

#endif
