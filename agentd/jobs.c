/* jobs.c: the job queue shared by agentd's main thread and its workers (see jobs.h). */
#include "jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

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
  proto_msg_destroy(&j->msg);
  proto_msg_destroy(&j->result);
  free(j);
}

void jobq_init(jobq_t *q) {
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->cond, NULL);
  pthread_cond_init(&q->approval, NULL);
}

void jobq_fini(jobq_t *q) {
  while (q->jobs) {
    job_t *j = q->jobs;
    q->jobs = j->next;
    job_free(j);
  }
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->cond);
  pthread_cond_destroy(&q->approval);
}

/* Wakes every worker: slot workers and the restore worker wait on the same condition. */
void jobq_add(jobq_t *q, job_t *j) {
  atomic_init(&j->cancel, false);
  pthread_mutex_lock(&q->lock);
  job_t **pp = &q->jobs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = j;
  pthread_cond_broadcast(&q->cond);
  pthread_mutex_unlock(&q->lock);
}

job_t *jobq_take(jobq_t *q, bool restores) {
  for (;;) {
    if (q->stopping)
      return NULL;
    for (job_t *j = q->jobs; j; j = j->next) {
      if (!j->taken && (j->kind == JOB_RESTORE) == restores) {
        j->taken = true;
        return j;
      }
    }
    pthread_cond_wait(&q->cond, &q->lock);
  }
}

void jobq_finish(jobq_t *q, job_t *j) {
  pthread_mutex_lock(&q->lock);
  j->finished = true;
  pthread_mutex_unlock(&q->lock);
}

/* Lock held: true when a finished job still holds a result for the broker. */
static bool holds_result(const job_t *j) {
  return j->kind == JOB_STEP && j->finished && j->result && !j->acked;
}

int jobq_reap(jobq_t *q) {
  int busy = 0;
  size_t held = 0;
  pthread_mutex_lock(&q->lock);
  for (job_t *j = q->jobs; j; j = j->next)
    held += holds_result(j);
  for (job_t **pp = &q->jobs; *pp;) {
    job_t *j = *pp;
    bool keep = holds_result(j) && held <= JOBQ_HELD_MAX;
    if (holds_result(j) && !keep) {
      held--; /* the oldest held results go first */
      log_warn("workflow %lld step %lld: %d results wait for the broker; this one is dropped",
               (long long)j->msg->workflow, (long long)j->msg->step, JOBQ_HELD_MAX);
    }
    if (j->finished && !keep) {
      *pp = j->next;
      job_free(j);
      continue;
    }
    busy += j->kind != JOB_RESTORE;
    pp = &j->next;
  }
  pthread_mutex_unlock(&q->lock);
  return busy;
}

void jobq_wait_slice(jobq_t *q, long ms) {
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

/* Lock held: sets a job's cancel flag and wakes its waits; a job never
 * started is dropped. True when it had not started. */
static bool cancel_job(jobq_t *q, job_t *j) {
  bool queued = !j->taken;
  atomic_store(&j->cancel, true);
  if (queued)
    j->taken = j->finished = true;
  pthread_cond_broadcast(&q->approval);
  return queued;
}

int jobq_cancel_turn(jobq_t *q, const proto_msg_t *m) {
  int n = 0;
  pthread_mutex_lock(&q->lock);
  for (job_t *j = q->jobs; j; j = j->next) {
    if (j->kind == JOB_TURN && j->turn == m->turn && (!PROTO_HAS(m, attempt) || j->attempt == m->attempt)) {
      cancel_job(q, j);
      n++;
    }
  }
  pthread_mutex_unlock(&q->lock);
  return n;
}

void jobq_answer_approval(jobq_t *q, const proto_msg_t *m) {
  pthread_mutex_lock(&q->lock);
  for (job_t *j = q->jobs; j; j = j->next) {
    if (j->kind == JOB_TURN && j->turn == m->turn && j->attempt == m->attempt) {
      j->approval_allow = strcmp(m->kind, "allow") == 0;
      j->approval_seq = m->seq;
    }
  }
  pthread_cond_broadcast(&q->approval);
  pthread_mutex_unlock(&q->lock);
}

/* Lock held: the step job for workflow/step/attempt of m (finished ones too when asked). */
static job_t *find_any_step(jobq_t *q, const proto_msg_t *m, bool finished) {
  for (job_t *j = q->jobs; j; j = j->next)
    if (j->kind == JOB_STEP && (finished || !j->finished) && j->msg->workflow == m->workflow &&
        j->msg->step == m->step && j->msg->attempt == m->attempt)
      return j;
  return NULL;
}

/* Lock held: the unfinished step job for workflow/step/attempt of m. */
static job_t *find_step(jobq_t *q, const proto_msg_t *m) {
  return find_any_step(q, m, false);
}

int jobq_cancel_step(jobq_t *q, const proto_msg_t *m) {
  pthread_mutex_lock(&q->lock);
  job_t *j = find_step(q, m);
  int rc = j ? cancel_job(q, j) : -1;
  pthread_mutex_unlock(&q->lock);
  return rc;
}

bool jobq_ack_checkpoint(jobq_t *q, const proto_msg_t *m) {
  pthread_mutex_lock(&q->lock);
  job_t *j = find_step(q, m);
  if (j && m->seq > j->ack_seq)
    j->ack_seq = m->seq;
  pthread_cond_broadcast(&q->approval);
  pthread_mutex_unlock(&q->lock);
  return j != NULL;
}

void jobq_keep_result(jobq_t *q, job_t *j, proto_msg_t **m_p) {
  pthread_mutex_lock(&q->lock);
  proto_msg_destroy(&j->result);
  j->result = *m_p;
  *m_p = NULL;
  pthread_mutex_unlock(&q->lock);
}

bool jobq_step_acked(jobq_t *q, const proto_msg_t *ack) {
  pthread_mutex_lock(&q->lock);
  job_t *j = find_any_step(q, ack, true);
  bool held = j && j->result && !j->acked;
  if (j)
    j->acked = true; /* a result still to come is not held either (the broker has one) */
  pthread_mutex_unlock(&q->lock);
  return held;
}

int jobq_repeat_step(jobq_t *q, const proto_msg_t *m, void (*send)(proto_msg_t *m, void *arg), void *arg) {
  pthread_mutex_lock(&q->lock);
  job_t *j = find_any_step(q, m, true);
  int rc = !j ? 0 : j->finished ? 2 : 1;
  if (rc == 1) {
    j->repeat = true;
    pthread_cond_broadcast(&q->approval);
  } else if (rc == 2 && holds_result(j)) {
    send(j->result, arg);
  }
  pthread_mutex_unlock(&q->lock);
  return rc;
}

void jobq_relinked(jobq_t *q, void (*send)(proto_msg_t *m, void *arg), void *arg) {
  pthread_mutex_lock(&q->lock);
  q->link_gen++;
  for (job_t *j = q->jobs; j; j = j->next)
    if (holds_result(j))
      send(j->result, arg);
  pthread_cond_broadcast(&q->approval);
  pthread_mutex_unlock(&q->lock);
}

json_t *jobq_held_steps(jobq_t *q) {
  json_t *out = json_array();
  pthread_mutex_lock(&q->lock);
  for (job_t *j = q->jobs; j; j = j->next) {
    bool running = j->kind == JOB_STEP && !j->finished && !atomic_load(&j->cancel);
    if (running || holds_result(j))
      json_array_append_new(out, json_pack("{s:I, s:I, s:I, s:b}", "workflow", (json_int_t)j->msg->workflow, "step",
                                           (json_int_t)j->msg->step, "attempt", (json_int_t)j->msg->attempt, "done",
                                           j->finished));
  }
  pthread_mutex_unlock(&q->lock);
  return out;
}

int run_push(run_t *r, proto_msg_t *m) {
  m->id = PROTO_ID_UNSTAMPED;
  int rc = proto_send(r->push, NULL, 0, m, 0);
  if (rc < 0 && r->job->kind == JOB_TURN)
    log_error("turn %lld: cannot hand a %s to the main thread: %s", (long long)r->job->turn, proto_type_name(m->type),
              strerror(-rc));
  else if (rc < 0)
    log_error("workflow %lld: cannot hand a %s to the main thread: %s", (long long)r->job->msg->workflow,
              proto_type_name(m->type), strerror(-rc));
  return rc;
}
