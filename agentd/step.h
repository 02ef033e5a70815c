/* step: workflow work on a node: one tool step with its write-ahead
 * checkpoint, and the restores of a rollback. Internal to agentd: worker.c
 * runs these in worker threads; agentd.c routes the broker's answers
 * (checkpoint_ack, a step_run with payload {cancel: true}) to the job.
 *
 * A step (step_run):
 *  1. payload.applied_check {path, sha256}: when the file's hash differs from
 *     the recorded pre-image, the change already happened: step_done with
 *     payload {already_applied: true, changed} and nothing runs.
 *  2. Checkpoint before any change: write_file_tool and edit_file send the
 *     target's pre-image (checkpoint kind "file", seq 1); execute_bash sends a
 *     snapshot of the workspace (kind "snapshot_file" per file, then
 *     "snapshot_end"); read-only tools send none. The step waits for the
 *     checkpoint_ack of the last one (or a cancel, or STEP_ACK_TIMEOUT_MS).
 *     A node that registers with the broker again (it restarted) before the
 *     ack, or gets the step_run again, sends the checkpoint again at once.
 *  3. The tool runs (tools_run); step_done carries its result (for
 *     execute_bash, every path that differs from the snapshot, with its state
 *     after the command: what a rollback expects to find), step_failed a
 *     cancel or a checkpoint that could not be made. The result is kept (the
 *     job) until the broker's step_ack, and sent again after reconnecting.
 */
#ifndef CADRE_STEP_H
#define CADRE_STEP_H

#include "jobs.h"

/* How long a step waits for the broker's checkpoint_ack before it fails
 * (code "checkpoint_timeout", retryable). */
#define STEP_ACK_TIMEOUT_MS (300 * 1000)
/* Times a checkpoint is sent again because the broker came back (or sent the
 * step again) before it acknowledged it. */
#define STEP_CHECKPOINT_TRIES 20

/* Runs the job's step_run (r->job->msg) and reports step_done or step_failed. */
void step_run(run_t *r);
/* Runs the job's restore (r->job->msg) and reports restored. */
void restore_run(run_t *r);

#endif
