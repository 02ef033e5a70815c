/* jobs: the job queue agentd's main thread shares with its workers, and a
 * worker's run of one job (its hand-off of messages to the main thread).
 *
 * The main thread adds jobs and delivers the broker's answers (cancels,
 * approvals, checkpoint acks) to them; workers take jobs, wait for answers,
 * and mark their jobs finished; the main thread reaps finished jobs. Every
 * jobq_* function takes the lock itself unless it says "lock held".
 */
#ifndef CADRE_JOBS_H
#define CADRE_JOBS_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "tools.h"
#include "workspace.h"

/* What a job is: a model turn, a workflow step (a slot worker runs both), or
 * a rollback restore (run by the restore worker, in order, without a slot). */
typedef enum { JOB_TURN, JOB_STEP, JOB_RESTORE } job_kind_t;

typedef struct job {
  job_kind_t kind;
  int64_t turn;
  int64_t attempt;
  char *session;
  json_t *profile;
  json_t *messages;
  json_t *tools;
  int64_t rounds; /* model calls the turn's user request made in earlier turns */
  char *api_key;  /* resolved on this host; wiped on free */
  atomic_bool cancel;
  /* The user's answer to the approval this turn waits for (under jobq lock). */
  int64_t approval_seq; /* seq answered, 0: none yet */
  bool approval_allow;
  /* JOB_STEP, JOB_RESTORE: the broker's step_run or restore (owned). */
  proto_msg_t *msg;
  /* JOB_STEP: the highest checkpoint seq the broker acknowledged (under jobq lock). */
  int64_t ack_seq;
  /* JOB_STEP (under jobq lock): its step_done / step_failed, kept (and sent
   * again after every reconnection) until the broker's step_ack; repeat: the
   * broker sent the step_run again, so unacknowledged checkpoints go again. */
  proto_msg_t *result;
  bool acked, repeat;
  bool taken; /* a worker runs it */
  bool finished;
  struct job *next;
} job_t;

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_cond_t approval; /* broadcast when an approval answer, a checkpoint ack or a cancel arrives */
  job_t *jobs;
  tools_t *tools;  /* the workspace's tools, shared by the workers */
  struct mcp *mcp; /* the MCP servers (mcp.h), shared by the workers; may be NULL */
  ws_t ws;         /* the workspace, for checkpoints and restores (read-only after setup) */
  bool stopping;
  uint64_t link_gen; /* counts registrations with a broker (under lock): checkpoints go again */
  void *ctx;         /* for workers' PUSH sockets */
  const char *events_endpoint;
  long connect_timeout_ms, stall_timeout_ms;
  long turn_timeout_ms; /* the deadline of every model call */
} jobq_t;

/* A worker's run of one job. */
typedef struct {
  jobq_t *q;
  job_t *job;
  void *push;              /* this worker's PUSH socket to the main thread */
  int64_t seq;             /* delta sequence of this turn attempt */
  uint64_t gen;            /* JOB_STEP: q->link_gen when its checkpoint was sent */
  struct llm_conns *conns; /* this worker's connections to model servers (kept between jobs), or NULL */
} run_t;

/* Step results held for the broker's step_ack at most; past it the oldest goes. */
#define JOBQ_HELD_MAX 1024

/* Frees a job (its message, its key wiped). Accepts NULL. */
void job_free(job_t *j);

/* Sets up the lock and conditions of a zeroed queue. */
void jobq_init(jobq_t *q);
/* Frees every job and the lock and conditions. */
void jobq_fini(jobq_t *q);
/* Appends a job (taken) and wakes the workers. */
void jobq_add(jobq_t *q, job_t *j);
/* Lock held: the next job not yet taken that this kind of worker runs (marked
 * taken), waiting for one; NULL when the queue stops. */
job_t *jobq_take(jobq_t *q, bool restores);
/* Marks a worker's job finished (the main thread reaps it). */
void jobq_finish(jobq_t *q, job_t *j);
/* Frees finished jobs; returns the busy slots (turns and steps not finished;
 * restores take no slot). */
int jobq_reap(jobq_t *q);
/* Lock held: waits up to ms for an answer from the broker (approval,
 * checkpoint ack) or a cancel; callers loop, checking their condition. */
void jobq_wait_slice(jobq_t *q, long ms);

/* cancel: sets the cancel flag of the turn's jobs (of one attempt when the
 * message names it); a job never started is dropped. Returns how many. */
int jobq_cancel_turn(jobq_t *q, const proto_msg_t *cancel);
/* approval_reply: records the user's answer for the turn attempt it names. */
void jobq_answer_approval(jobq_t *q, const proto_msg_t *reply);
/* step_run {cancel: true}: sets the step's cancel flag. Returns 1 when the step
 * had not started (it is dropped: the caller reports it), 0 when a worker runs
 * it, -1 when there is no such step. */
int jobq_cancel_step(jobq_t *q, const proto_msg_t *m);
/* checkpoint_ack: records the acknowledged seq for the step. False when there is no such step. */
bool jobq_ack_checkpoint(jobq_t *q, const proto_msg_t *ack);

/* Keeps the step job's result (step_done / step_failed; takes *m_p) until step_ack. */
void jobq_keep_result(jobq_t *q, job_t *j, proto_msg_t **m_p);
/* step_ack: the step's result is on the broker's disk; it is forgotten. False when none was held. */
bool jobq_step_acked(jobq_t *q, const proto_msg_t *ack);
/* A step_run for a step that is here already: 1 when it runs (its unacknowledged
 * checkpoint goes again), 2 when it finished (its held result goes again through
 * send), 0 when there is no such step. */
int jobq_repeat_step(jobq_t *q, const proto_msg_t *m, void (*send)(proto_msg_t *m, void *arg), void *arg);
/* After a (re)registration: every held result goes again through send (lock
 * held while it runs; send stamps m's id), and steps waiting for a checkpoint
 * ack send their checkpoint again. */
void jobq_relinked(jobq_t *q, void (*send)(proto_msg_t *m, void *arg), void *arg);
/* The steps this node holds for a heartbeat: [{workflow, step, attempt, done}]. Caller owns. */
json_t *jobq_held_steps(jobq_t *q);

/* Hands a message to the main thread, whose link stamps its id and sends it
 * to the broker; m stays the caller's (its id is set to PROTO_ID_UNSTAMPED).
 * 0 or a negative errno (-EINVAL, -EMSGSIZE: m does not encode). Logs a failure. */
int run_push(run_t *r, proto_msg_t *m);

#endif
