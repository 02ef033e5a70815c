/* workflow_state: workflows as C types, their statuses and the rules that
 * need no broker (see workflow.h). */
#include "workflow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

workflow_t *workflow_new(void) {
  workflow_t *wf = calloc(1, sizeof *wf);
  if (!wf)
    return NULL;
  wf->status = WF_PENDING;
  wf->stated_seconds = wf->stated_cost = NAN;
  wf->report.seconds = NAN;
  return wf;
}

/* Frees a step's run state and sets it back to "not run" (the definition stays). */
static void step_clear_run(wf_step_t *s) {
  free(s->node), free(s->agent_session), free(s->result), free(s->error);
  json_decref(s->changed), json_decref(s->state_extra);
  for (size_t i = 0; i < s->n_history; i++)
    free(s->history[i].what), free(s->history[i].detail);
  free(s->history);
  s->has_state = false, s->status = STEP_PENDING, s->attempts = 0;
  s->node = s->agent_session = s->result = s->error = NULL;
  s->started_ms = s->finished_ms = s->next_try_ms = 0;
  s->was_running = false, s->changed = s->state_extra = NULL;
  s->has_usage = false, s->usage_tokens = 0, s->usage_cost = 0;
  s->history = NULL, s->n_history = 0;
}

void wf_step_clear(wf_step_t *s) {
  step_clear_run(s);
  free(s->title), free(s->agent), free(s->profile), free(s->tool), free(s->arguments_text), free(s->description);
  free(s->deps);
  json_decref(s->arguments), json_decref(s->plan_extra), json_decref(s->wire_plan);
  memset(s, 0, sizeof *s);
}

void wf_rollback_free(wf_rollback_t **rb_p) {
  wf_rollback_t *rb = rb_p ? *rb_p : NULL;
  if (!rb)
    return;
  for (size_t i = 0; i < rb->n_ops; i++) {
    free(rb->ops[i].path), free(rb->ops[i].content), free(rb->ops[i].sha256), free(rb->ops[i].expect);
    json_decref(rb->ops[i].keep);
  }
  free(rb->ops);
  json_decref(rb->restored), json_decref(rb->mismatches), json_decref(rb->deleted), json_decref(rb->conflicts);
  free(rb->why), free(rb->sent_to);
  free(rb);
  *rb_p = NULL;
}

void workflow_destroy(workflow_t **self_p) {
  workflow_t *wf = self_p ? *self_p : NULL;
  if (!wf)
    return;
  for (size_t i = 0; i < wf->n_steps; i++)
    wf_step_clear(&wf->steps[i]);
  free(wf->steps);
  free(wf->session), free(wf->origin), free(wf->title), free(wf->text), free(wf->workspace);
  json_decref(wf->errors), json_decref(wf->plan_extra), json_decref(wf->extra), json_decref(wf->est_steps);
  json_decref(wf->report.rollback), json_decref(wf->report.extra);
  free(wf->report.reason);
  wf_rollback_free(&wf->rollback);
  wf_sched_free(wf);
  free(wf);
  *self_p = NULL;
}

void wf_set_str(char **dst, const char *src) {
  char *copy = src ? strdup(src) : NULL;
  free(*dst);
  *dst = copy;
}

/* ---- statuses -------------------------------------------------------------- */

/* Names by status; the asserts catch a status added without its name. */
static const char *const wf_names[] = {
    [WF_PENDING] = "pending", [WF_INVALID] = "invalid", [WF_REJECTED] = "rejected",
    [WF_RUNNING] = "running", [WF_PAUSED] = "paused",   [WF_ROLLING_BACK] = "rolling_back",
    [WF_DONE] = "done",       [WF_FAILED] = "failed",   [WF_CANCELLED] = "cancelled"};
static const char *const step_names[] = {
    [STEP_PENDING] = "pending", [STEP_RUNNING] = "running", [STEP_RETRYING] = "retrying",
    [STEP_DONE] = "done",       [STEP_FAILED] = "failed",   [STEP_ABANDONED] = "abandoned"};
_Static_assert(sizeof wf_names / sizeof wf_names[0] == WF_CANCELLED + 1, "a workflow status without a name");
_Static_assert(sizeof step_names / sizeof step_names[0] == STEP_ABANDONED + 1, "a step status without a name");

#define N_OF(a) (sizeof a / sizeof a[0])

/* Index of s in names (n entries, none NULL), or -1. */
static int name_index(const char *const *names, size_t n, const char *s) {
  for (size_t i = 0; s && i < n; i++)
    if (strcmp(s, names[i]) == 0)
      return (int)i;
  return -1;
}

static const char *name_of(const char *const *names, size_t n, int i) {
  return i >= 0 && (size_t)i < n ? names[i] : "?";
}

const char *wf_status_name(wf_status_t s) {
  return name_of(wf_names, N_OF(wf_names), (int)s);
}

const char *wf_step_status_name(wf_step_status_t s) {
  return name_of(step_names, N_OF(step_names), (int)s);
}

bool wf_status_parse(const char *s, wf_status_t *out) {
  int i = name_index(wf_names, N_OF(wf_names), s);
  return i >= 0 ? (*out = (wf_status_t)i, true) : false;
}

bool wf_step_status_parse(const char *s, wf_step_status_t *out) {
  int i = name_index(step_names, N_OF(step_names), s);
  return i >= 0 ? (*out = (wf_step_status_t)i, true) : false;
}

/* ---- transitions ----------------------------------------------------------- */

bool wf_allows(wf_status_t from, wf_action_t a) {
  switch (a) {
  case WF_APPROVE: return from == WF_PENDING;
  case WF_REJECT:
  case WF_MODIFY: return from == WF_PENDING || from == WF_INVALID;
  case WF_CANCEL: return from == WF_RUNNING || from == WF_PAUSED;
  case WF_PAUSE: return from == WF_RUNNING;
  case WF_RESUME: return from == WF_PAUSED;
  }
  return false;
}

/* ---- steps ----------------------------------------------------------------- */

bool wf_deps_done(workflow_t *wf, const wf_step_t *s) {
  for (size_t i = 0; i < s->n_deps; i++) {
    const wf_step_t *d = wf_step(wf, s->deps[i]);
    if (!d || d->status != STEP_DONE)
      return false;
  }
  return true;
}

bool wf_step_ready(workflow_t *wf, const wf_step_t *s, int64_t now) {
  bool due = false;
  switch (s->status) {
  case STEP_PENDING: due = true; break;
  case STEP_RETRYING: due = s->next_try_ms <= now; break;
  case STEP_RUNNING:
  case STEP_DONE:
  case STEP_FAILED:
  case STEP_ABANDONED: due = false; break;
  }
  return due && wf_deps_done(wf, s);
}

void wf_steps_reset(workflow_t *wf) {
  for (size_t i = 0; i < wf->n_steps; i++) {
    step_clear_run(&wf->steps[i]);
    wf->steps[i].has_state = true;
  }
  wf_sched_stale(wf);
}

void wf_step_note(wf_step_t *s, int64_t at_ms, const char *what, const char *detail) {
  wf_history_t *h = realloc(s->history, (s->n_history + 1) * sizeof *h);
  if (!h)
    return;
  s->history = h;
  h[s->n_history++] = (wf_history_t){s->attempts, at_ms, strdup(what), detail ? strdup(detail) : NULL};
}

bool wf_step_fail(wf_step_t *s, const char *detail, bool retryable, int64_t now) {
  bool retry = retryable && s->attempts < WF_MAX_ATTEMPTS;
  wf_set_str(&s->error, detail ? detail : "failed");
  if (retry) {
    int shift = s->attempts > 1 ? s->attempts - 1 : 0;
    s->status = STEP_RETRYING;
    s->next_try_ms = now + ((int64_t)WF_RETRY_BASE_MS << shift);
  } else {
    s->status = STEP_FAILED;
  }
  return retry;
}

void wf_tally(const workflow_t *wf, size_t *done, size_t *failed) {
  *done = *failed = 0;
  for (size_t i = 0; i < wf->n_steps; i++) {
    *done += wf->steps[i].status == STEP_DONE;
    *failed += wf->steps[i].status == STEP_FAILED;
  }
}
