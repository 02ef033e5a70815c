/* worker.c: slot threads. Each takes a job, runs the model call, and sends
 * deltas and the turn's end to the main thread over its own PUSH socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "agentd.h"
#include "turn.h"
#include "log.h"
#include "proto.h"

void job_free(job_t *j) {
  if (!j)
    return;
  if (j->api_key) {
    explicit_bzero(j->api_key, strlen(j->api_key));
    free(j->api_key);
  }
  free(j->session);
  json_decref(j->profile);
  json_decref(j->messages);
  json_decref(j->tools);
  free(j);
}

/* Next job not yet taken, or NULL when stopping. Called with the lock held. */
static job_t *take_job(jobq_t *q) {
  for (;;) {
    if (q->stopping)
      return NULL;
    for (job_t *j = q->jobs; j; j = j->next) {
      if (!j->taken) {
        j->taken = true;
        return j;
      }
    }
    pthread_cond_wait(&q->cond, &q->lock);
  }
}

static void *worker_main(void *arg) {
  jobq_t *q = arg;
  void *push = zmq_socket(q->ctx, ZMQ_PUSH);
  if (!push || zmq_connect(push, q->events_endpoint) < 0) {
    log_error("worker: cannot connect to %s: %s", q->events_endpoint, zmq_strerror(errno));
    return NULL;
  }
  proto_socket_setup(push);
  for (;;) {
    pthread_mutex_lock(&q->lock);
    job_t *job = take_job(q);
    pthread_mutex_unlock(&q->lock);
    if (!job)
      break;
    run_t r = {q, job, push, 0};
    turn_run(&r);
    pthread_mutex_lock(&q->lock);
    job->finished = true;
    pthread_mutex_unlock(&q->lock);
  }
  zmq_close(push);
  return NULL;
}

int workers_start(jobq_t *q, pthread_t *threads, int n) {
  for (int i = 0; i < n; i++)
    if (pthread_create(&threads[i], NULL, worker_main, q) != 0)
      return -1;
  return 0;
}

void workers_stop(jobq_t *q, pthread_t *threads, int n) {
  pthread_mutex_lock(&q->lock);
  q->stopping = true;
  for (job_t *j = q->jobs; j; j = j->next)
    atomic_store(&j->cancel, true);
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->lock);
  for (int i = 0; i < n; i++)
    pthread_join(threads[i], NULL);
}
