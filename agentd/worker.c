/* worker.c: slot threads. Each takes a job, runs the model call, and sends
 * deltas and the turn's end to the main thread over its own PUSH socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "agentd.h"
#include "llm.h"
#include "log.h"
#include "proto.h"

typedef struct {
  jobq_t *q;
  job_t *job;
  void *push;
  int64_t seq;
} run_t;

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

static void push_msg(run_t *r, proto_msg_t *m) {
  int rc = proto_send(r->push, NULL, 0, m, 0);
  if (rc < 0)
    log_error("turn %lld: cannot hand a %s to the main thread: %s", (long long)r->job->turn,
              proto_type_name(m->type), strerror(-rc));
}

static proto_msg_t *turn_msg(run_t *r, proto_type_t type) {
  proto_msg_t *m = proto_msg_new(type);
  if (!m)
    return NULL;
  proto_set_str(m, PROTO_F_session, r->job->session);
  PROTO_SET(m, turn, r->job->turn);
  PROTO_SET(m, attempt, r->job->attempt);
  return m;
}

/* One delta message per piece the model sent; NUL bytes cannot travel in a STR. */
static void send_delta(run_t *r, const char *kind, const char *s, size_t n) {
  if (n == 0)
    return;
  char *text = malloc(n + 1);
  if (!text)
    return;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (s[i])
      text[k++] = s[i];
  text[k] = '\0';
  proto_msg_t *m = turn_msg(r, PROTO_DELTA);
  if (m && k > 0) {
    PROTO_SET(m, seq, ++r->seq);
    proto_set_str(m, PROTO_F_kind, kind);
    m->text = text;
    m->has |= PROTO_BIT(text);
    text = NULL;
    push_msg(r, m);
  }
  free(text);
  proto_msg_destroy(&m);
}

static void on_text(void *ud, const char *s, size_t n) {
  send_delta(ud, "text", s, n);
}

static void on_thinking(void *ud, const char *s, size_t n) {
  send_delta(ud, "thinking", s, n);
}

static void on_retry(void *ud, int next_try, const char *reason, long wait_ms) {
  run_t *r = ud;
  log_warn("turn %lld: %s; try %d in %ld ms", (long long)r->job->turn, reason, next_try, wait_ms);
}

/* The assistant message in OpenAI shape from the call's result. */
static json_t *assistant_message(const llm_result_t *res) {
  const char *text = res->text && res->text[0] ? res->text : (res->refusal ? res->refusal : "");
  json_t *msg = json_pack("{s:s, s:s}", "role", "assistant", "content", text);
  if (res->n_tool_calls > 0) {
    json_t *calls = json_array();
    for (size_t i = 0; i < res->n_tool_calls; i++) {
      const llm_tool_call_t *c = &res->tool_calls[i];
      json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->id ? c->id : "", "type",
                                             "function", "function", "name", c->name ? c->name : "",
                                             "arguments", c->arguments ? c->arguments : ""));
    }
    json_object_set_new(msg, "tool_calls", calls);
  }
  return msg;
}

static void send_done(run_t *r, llm_outcome_t *out) {
  proto_msg_t *m = turn_msg(r, PROTO_TURN_DONE);
  if (!m)
    return;
  const llm_result_t *res = &out->result;
  proto_set_json(m, PROTO_F_message, assistant_message(res));
  if (res->thinking && res->thinking[0])
    proto_set_str(m, PROTO_F_thinking, res->thinking);
  if (res->finish_reason)
    proto_set_str(m, PROTO_F_finish_reason, res->finish_reason);
  proto_set_json(m, PROTO_F_usage,
                 json_pack("{s:I, s:I, s:I, s:b}", "prompt_tokens", (json_int_t)res->prompt_tokens,
                           "completion_tokens", (json_int_t)res->completion_tokens, "total_tokens",
                           (json_int_t)res->total_tokens, "counted", out->usage_counted));
  PROTO_SET(m, elapsed_ms, out->elapsed_ms);
  push_msg(r, m);
  proto_msg_destroy(&m);
}

static void send_failed(run_t *r, const llm_outcome_t *out) {
  proto_msg_t *m = turn_msg(r, PROTO_TURN_FAILED);
  if (!m)
    return;
  proto_set_str(m, PROTO_F_code, out->cancelled ? "cancelled" : out->code);
  proto_set_str(m, PROTO_F_detail, out->detail[0] ? out->detail : "the model call failed");
  PROTO_SET(m, retryable, out->retryable);
  if (out->http_status)
    PROTO_SET(m, status, out->http_status);
  PROTO_SET(m, elapsed_ms, out->elapsed_ms);
  push_msg(r, m);
  proto_msg_destroy(&m);
}

static void run_job(jobq_t *q, void *push, job_t *job) {
  run_t r = {q, job, push, 0};
  llm_call_t call = {
      .profile = job->profile,
      .messages = job->messages,
      .tools = job->tools,
      .api_key = job->api_key,
      .connect_timeout_ms = q->connect_timeout_ms,
      .stall_timeout_ms = q->stall_timeout_ms,
      .max_tries = 3,
      .backoff_base_ms = 500,
      .retry_after_cap_ms = 60000,
      .cancel = &job->cancel,
      .cb = {on_text, on_thinking},
      .ud = &r,
      .on_retry = on_retry,
  };
  llm_outcome_t out;
  log_info("turn %lld (%s, attempt %lld): calling %s", (long long)job->turn, job->session,
           (long long)job->attempt, json_string_value(json_object_get(job->profile, "model")));
  if (llm_run(&call, &out) == 0) {
    send_done(&r, &out);
    log_info("turn %lld done in %ld ms (%d tries)", (long long)job->turn, out.elapsed_ms, out.tries);
  } else {
    send_failed(&r, &out);
    log_warn("turn %lld failed: %s: %s", (long long)job->turn, out.code, out.detail);
  }
  llm_outcome_free(&out);
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
    run_job(q, push, job);
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
