/* workflow_ready: which steps of a workflow may start, kept up to date as
 * steps change instead of found by walking the plan (see workflow.h).
 *
 * Two parts, neither stored: the plan's index (steps by number, and for each
 * step the steps that wait for it), built on first use and dropped when the
 * plan changes (wf_set_plan); and the run's bookkeeping (for each step how
 * many of its dependencies are not done, the ready steps in plan order, the
 * counts of steps done and failed), built from the steps' statuses on first
 * use and after wf_sched_stale, then moved along by wf_sched_note, one step at
 * a time. A step waiting for a step the plan lacks never becomes ready (as
 * wf_deps_done says). Ready steps sit in two heaps by plan position, tool
 * steps and agent steps (tool steps wait for a node's slot, agent steps do
 * not); a retrying step not yet due waits aside (later) until it is. An entry
 * may go stale (its step started or was changed by other code): it is checked
 * when taken, and dropped then. */
#include "workflow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  size_t *v, n, cap;
} heap_t;

struct wf_sched {
  size_t n;                       /* steps it was built for */
  size_t *by_number;              /* step positions by (number, position) */
  size_t *dep_first, *dependents; /* the steps waiting for step i: dependents[dep_first[i] .. dep_first[i+1]) */
  bool live;                      /* the run's part below matches the steps */
  uint32_t *waiting;              /* dependencies not done (a missing one never is) */
  unsigned char *seen;            /* each step's status when last noted */
  bool *queued;                   /* in a heap or in later */
  heap_t tools, agents, later;    /* later: retrying, not due yet (unordered) */
  size_t n_done, n_failed;
};

/* ---- the plan's index ----------------------------------------------------- */

typedef struct {
  int64_t number;
  size_t at;
} keyed_t;

static int by_key(const void *a, const void *b) {
  const keyed_t *x = a, *y = b;
  if (x->number != y->number)
    return x->number < y->number ? -1 : 1;
  return x->at < y->at ? -1 : x->at > y->at;
}

static void heap_free(heap_t *h) {
  free(h->v);
  *h = (heap_t){0};
}

void wf_sched_free(workflow_t *wf) {
  wf_sched_t *q = wf->sched;
  if (!q)
    return;
  free(q->by_number), free(q->dep_first), free(q->dependents);
  free(q->waiting), free(q->seen), free(q->queued);
  heap_free(&q->tools), heap_free(&q->agents), heap_free(&q->later);
  free(q);
  wf->sched = NULL;
}

/* Position of the first step numbered number in q's index, or n_steps. */
static size_t find(const workflow_t *wf, const wf_sched_t *q, int64_t number) {
  size_t lo = 0, hi = q->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (wf->steps[q->by_number[mid]].number < number)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < q->n && wf->steps[q->by_number[lo]].number == number ? q->by_number[lo] : wf->n_steps;
}

/* The plan's index (NULL when out of memory). */
static wf_sched_t *index_of(workflow_t *wf) {
  if (wf->sched && wf->sched->n == wf->n_steps)
    return wf->sched;
  wf_sched_free(wf);
  size_t n = wf->n_steps, edges = 0;
  for (size_t i = 0; i < n; i++)
    edges += wf->steps[i].n_deps;
  wf_sched_t *q = calloc(1, sizeof *q);
  keyed_t *keys = calloc(n + 1, sizeof *keys);
  if (q) {
    q->n = n;
    q->by_number = calloc(n + 1, sizeof *q->by_number);
    q->dep_first = calloc(n + 2, sizeof *q->dep_first);
    q->dependents = calloc(edges + 1, sizeof *q->dependents);
  }
  if (!q || !keys || !q->by_number || !q->dep_first || !q->dependents) {
    free(keys);
    wf->sched = q;
    wf_sched_free(wf);
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    keys[i] = (keyed_t){wf->steps[i].number, i};
  qsort(keys, n, sizeof *keys, by_key);
  for (size_t i = 0; i < n; i++)
    q->by_number[i] = keys[i].at;
  free(keys);
  /* the steps waiting for each step: counted, then placed (dep_first[d + 1] is where d's next one goes) */
  for (size_t j = 0; j < n; j++)
    for (size_t k = 0; k < wf->steps[j].n_deps; k++) {
      size_t d = find(wf, q, wf->steps[j].deps[k]);
      if (d < n)
        q->dep_first[d + 2]++;
    }
  for (size_t i = 2; i < n + 2; i++)
    q->dep_first[i] += q->dep_first[i - 1];
  for (size_t j = 0; j < n; j++)
    for (size_t k = 0; k < wf->steps[j].n_deps; k++) {
      size_t d = find(wf, q, wf->steps[j].deps[k]);
      if (d < n)
        q->dependents[q->dep_first[d + 1]++] = j;
    }
  wf->sched = q;
  return q;
}

wf_step_t *wf_step(workflow_t *wf, int64_t number) {
  wf_sched_t *q = index_of(wf);
  if (!q) { /* out of memory: the slow way */
    for (size_t i = 0; i < wf->n_steps; i++)
      if (wf->steps[i].number == number)
        return &wf->steps[i];
    return NULL;
  }
  size_t at = find(wf, q, number);
  return at < wf->n_steps ? &wf->steps[at] : NULL;
}

/* ---- the run's bookkeeping ------------------------------------------------ */

/* Adds v to h: in heap order when sift, else at the end (later is a plain list). */
static bool push(heap_t *h, size_t v, bool sift) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 16;
    size_t *nv = realloc(h->v, cap * sizeof *nv);
    if (!nv)
      return false;
    h->v = nv, h->cap = cap;
  }
  size_t i = h->n++;
  while (sift && i > 0 && v < h->v[(i - 1) / 2]) {
    h->v[i] = h->v[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h->v[i] = v;
  return true;
}

static size_t heap_pop(heap_t *h) {
  size_t top = h->v[0], last = h->v[--h->n], i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n)
      break;
    if (c + 1 < h->n && h->v[c + 1] < h->v[c])
      c++;
    if (h->v[c] >= last)
      break;
    h->v[i] = h->v[c];
    i = c;
  }
  if (h->n)
    h->v[i] = last;
  return top;
}

/* Pending or retrying: a status that starts once its dependencies are done. */
static bool startable(wf_step_status_t st) {
  return st == STEP_PENDING || st == STEP_RETRYING;
}

/* Queues step i when it may start (unless it is queued already). */
static void enqueue(workflow_t *wf, wf_sched_t *q, size_t i) {
  if (q->queued[i] || q->waiting[i] || !startable(wf->steps[i].status))
    return;
  if (push(wf->steps[i].tool ? &q->tools : &q->agents, i, true))
    q->queued[i] = true;
  else
    q->live = false; /* out of memory: rebuilt (and tried again) on next use */
}

/* The whole run's part from the steps' statuses (NULL when out of memory). */
static wf_sched_t *live(workflow_t *wf) {
  wf_sched_t *q = index_of(wf);
  if (!q || q->live)
    return q;
  size_t n = wf->n_steps;
  free(q->waiting), free(q->seen), free(q->queued);
  q->waiting = calloc(n + 1, sizeof *q->waiting);
  q->seen = calloc(n + 1, sizeof *q->seen);
  q->queued = calloc(n + 1, sizeof *q->queued);
  q->tools.n = q->agents.n = q->later.n = 0;
  q->n_done = q->n_failed = 0;
  if (!q->waiting || !q->seen || !q->queued) {
    wf_sched_free(wf);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const wf_step_t *s = &wf->steps[i];
    q->seen[i] = (unsigned char)s->status;
    q->n_done += s->status == STEP_DONE;
    q->n_failed += s->status == STEP_FAILED;
    for (size_t k = 0; k < s->n_deps; k++) {
      size_t d = find(wf, q, s->deps[k]);
      q->waiting[i] += d >= n || wf->steps[d].status != STEP_DONE;
    }
  }
  q->live = true;
  for (size_t i = 0; i < n && q->live; i++)
    enqueue(wf, q, i);
  return q->live ? q : NULL;
}

void wf_sched_stale(workflow_t *wf) {
  if (wf->sched)
    wf->sched->live = false;
}

void wf_sched_note(workflow_t *wf, const wf_step_t *s) {
  wf_sched_t *q = wf->sched;
  size_t i = (size_t)(s - wf->steps);
  if (!q || !q->live || i >= q->n)
    return; /* built from the statuses on next use */
  wf_step_status_t was = (wf_step_status_t)q->seen[i], now = s->status;
  q->seen[i] = (unsigned char)now;
  q->n_failed += (now == STEP_FAILED) - (was == STEP_FAILED);
  if ((was == STEP_DONE) != (now == STEP_DONE)) {
    q->n_done += now == STEP_DONE ? 1 : (size_t)-1;
    for (size_t e = q->dep_first[i]; e < q->dep_first[i + 1]; e++) {
      size_t j = q->dependents[e];
      if (now == STEP_DONE && --q->waiting[j] == 0)
        enqueue(wf, q, j);
      else if (now != STEP_DONE)
        q->waiting[j]++;
    }
  }
  enqueue(wf, q, i);
}

bool wf_sched_next(workflow_t *wf, int64_t now, bool tools, size_t *at) {
  wf_sched_t *q = live(wf);
  if (!q)
    return false;
  for (size_t k = 0; k < q->later.n;) { /* retries that are due go back in line */
    size_t i = q->later.v[k];
    if (wf->steps[i].status == STEP_RETRYING && wf->steps[i].next_try_ms > now) {
      k++;
      continue;
    }
    q->later.v[k] = q->later.v[--q->later.n];
    q->queued[i] = false;
    enqueue(wf, q, i);
  }
  for (;;) {
    heap_t *h = tools && q->tools.n && (!q->agents.n || q->tools.v[0] < q->agents.v[0]) ? &q->tools
                : q->agents.n                                                           ? &q->agents
                                                                                        : NULL;
    if (!h)
      return false;
    size_t i = heap_pop(h);
    const wf_step_t *s = &wf->steps[i];
    q->queued[i] = false;
    if (q->waiting[i] || !startable(s->status))
      continue; /* stale: it started, or was changed since */
    if (s->status == STEP_RETRYING && s->next_try_ms > now) {
      if (push(&q->later, i, false))
        q->queued[i] = true;
      else
        q->live = false;
      continue;
    }
    *at = i;
    return true;
  }
}

void wf_sched_again(workflow_t *wf, size_t at) {
  wf_sched_t *q = wf->sched;
  if (q && q->live && at < q->n)
    enqueue(wf, q, at);
}

void wf_sched_counts(workflow_t *wf, size_t *done, size_t *failed) {
  wf_sched_t *q = live(wf);
  if (q) {
    *done = q->n_done, *failed = q->n_failed;
    return;
  }
  wf_tally(wf, done, failed);
}

bool wf_sched_consistent(workflow_t *wf) {
  wf_sched_t *q = wf->sched;
  if (!q || !q->live)
    return true; /* nothing kept: it is built from the statuses */
  size_t done = 0, failed = 0;
  for (size_t i = 0; i < wf->n_steps; i++) {
    const wf_step_t *s = &wf->steps[i];
    uint32_t waiting = 0;
    for (size_t k = 0; k < s->n_deps; k++) {
      const wf_step_t *d = wf_step(wf, s->deps[k]);
      waiting += !d || d->status != STEP_DONE;
    }
    if (waiting != q->waiting[i] || q->seen[i] != (unsigned char)s->status)
      return false;
    if (!waiting && startable(s->status) && !q->queued[i])
      return false; /* ready, and nobody would start it */
    done += s->status == STEP_DONE, failed += s->status == STEP_FAILED;
  }
  return done == q->n_done && failed == q->n_failed;
}
