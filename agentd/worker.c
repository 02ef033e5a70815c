/* worker.c: slot threads and the restore thread. A slot thread takes a turn
 * or a workflow step, the restore thread the restores of a rollback (one at a
 * time, in the order they came); each sends what the job produces to the main
 * thread over its own PUSH socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "worker.h"

#include "llm.h"
#include "log.h"
#include "proto.h"
#include "step.h"
#include "turn.h"

static void run_job(run_t *r) {
  switch (r->job->kind) {
  case JOB_TURN: turn_run(r); break;
  case JOB_STEP: step_run(r); break;
  case JOB_RESTORE: restore_run(r); break;
  }
}

static void worker_loop(jobq_t *q, bool restores) {
  void *push = zmq_socket(q->ctx, ZMQ_PUSH);
  if (!push || zmq_connect(push, q->events_endpoint) < 0) {
    log_error("worker: cannot connect to %s: %s", q->events_endpoint, zmq_strerror(errno));
    if (push)
      zmq_close(push);
    return;
  }
  proto_socket_setup(push);
  llm_conns_t *conns = restores ? NULL : llm_conns_new(); /* NULL: each model call connects anew */
  for (;;) {
    pthread_mutex_lock(&q->lock);
    job_t *job = jobq_take(q, restores);
    pthread_mutex_unlock(&q->lock);
    if (!job)
      break;
    run_t r = {q, job, push, 0, 0, conns};
    run_job(&r);
    jobq_finish(q, job);
  }
  llm_conns_destroy(&conns);
  zmq_close(push);
}

static void *slot_main(void *arg) {
  worker_loop(arg, false);
  return NULL;
}

static void *restore_main(void *arg) {
  worker_loop(arg, true);
  return NULL;
}

int workers_start(jobq_t *q, pthread_t *threads, int n) {
  for (int i = 0; i <= n; i++)
    if (pthread_create(&threads[i], NULL, i < n ? slot_main : restore_main, q) != 0)
      return -1;
  return 0;
}

void workers_stop(jobq_t *q, pthread_t *threads, int n) {
  pthread_mutex_lock(&q->lock);
  q->stopping = true;
  for (job_t *j = q->jobs; j; j = j->next)
    atomic_store(&j->cancel, true);
  pthread_cond_broadcast(&q->cond);
  pthread_cond_broadcast(&q->approval);
  pthread_mutex_unlock(&q->lock);
  for (int i = 0; i <= n; i++)
    pthread_join(threads[i], NULL);
}
