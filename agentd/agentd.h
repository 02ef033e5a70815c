/* agentd: the agent daemon. A stateless worker that runs model turns for a broker.
 *
 * Threads: the main thread owns the DEALER socket to the broker and a PULL
 * socket on which slot workers hand it encoded messages (deltas, turn ends)
 * to forward. Each worker owns one PUSH socket and runs one turn at a time
 * (llm_run, blocking, one CURL handle) or one workflow step; one more worker
 * runs rollback restores. Cancel is an atomic flag per job.
 */
#ifndef CADRE_AGENTD_H
#define CADRE_AGENTD_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "keys.h"
#include "secrets.h"
#include "tools.h"
#include "workspace.h"

typedef struct {
  const char *broker;       /* endpoint */
  const char *broker_key;   /* Z85 or file */
  const char *key_file;     /* our key pair */
  const char *name;
  const char *workspace;
  int slots;
  json_t *models;           /* strings; ["*"] = any */
  json_t *providers;
  secrets_t *secrets;       /* borrowed, may be NULL */
  cadre_config_t *config;   /* borrowed, may be NULL: api keys of profiles */
  long connect_timeout_ms;
  long stall_timeout_ms;
} agentd_opts_t;

/* What a job is: a model turn, a workflow step (a slot worker runs both), or
 * a rollback restore (run by the restore worker, in order, without a slot). */
typedef enum { JOB_TURN, JOB_STEP, JOB_RESTORE } job_kind_t;

struct proto_msg;

typedef struct job {
  job_kind_t kind;
  int64_t turn;
  int64_t attempt;
  char *session;
  json_t *profile;
  json_t *messages;
  json_t *tools;
  char *api_key;            /* resolved on this host; wiped on free */
  atomic_bool cancel;
  /* The user's answer to the approval this turn waits for (under jobq lock). */
  int64_t approval_seq;     /* seq answered, 0: none yet */
  bool approval_allow;
  /* JOB_STEP, JOB_RESTORE: the broker's step_run or restore (owned). */
  struct proto_msg *msg;
  /* JOB_STEP: the highest checkpoint seq the broker acknowledged (under jobq lock). */
  int64_t ack_seq;
  bool taken;               /* a worker runs it */
  bool finished;
  struct job *next;
} job_t;

typedef struct agentd agentd_t;

/* Job queue shared by the main thread and the workers (worker.c). */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_cond_t approval;  /* broadcast when an approval answer, a checkpoint ack or a cancel arrives */
  job_t *jobs;
  tools_t *tools;           /* the workspace's tools, shared by the workers */
  ws_t ws;                  /* the workspace, for checkpoints and restores (read-only after setup) */
  bool stopping;
  void *ctx;                /* for workers' PUSH sockets */
  const char *events_endpoint;
  long connect_timeout_ms, stall_timeout_ms;
} jobq_t;

/* Starts n slot workers (turns and steps) and one restore worker: threads
 * has n + 1 entries. 0 or -1. */
int workers_start(jobq_t *q, pthread_t *threads, int n);
/* With q->lock held: waits up to ms for an answer from the broker (approval,
 * checkpoint ack) or a cancel; callers loop, checking their condition. */
static inline void jobq_wait_slice(jobq_t *q, long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += ms % 1000 * 1000000L;
  ts.tv_sec += ms / 1000;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&q->approval, &q->lock, &ts);
}
/* Cancels every job and joins the n + 1 workers. */
void workers_stop(jobq_t *q, pthread_t *threads, int n);
/* Frees a job (its message, its key wiped). */
void job_free(job_t *j);

agentd_t *agentd_new(const agentd_opts_t *opts, char *err, size_t errlen);
int agentd_run(agentd_t *self, volatile int *stop);
void agentd_destroy(agentd_t **self_p);

#endif
