/* workflow_once.c: a workflow step's effect lands once across crashes.
 *
 * A node keeps a step's step_done / step_failed until the broker has it on
 * disk (step_ack) and sends it again after every reconnection; its heartbeats
 * list the steps it holds (running, or finished and not yet acknowledged).
 *
 * When a step's node goes away, or the broker restarts while a step runs, the
 * step stays running and waits for that node (lost_ms): the node's first
 * heartbeat after it registers says whether it still has the step (it goes
 * on, and its result comes when it ends or was sent again) or not (the daemon
 * restarted, or never got the step_run). A step its node no longer has, or
 * whose node did not come back within the grace period, runs again; when it
 * ran with a workspace snapshot, the snapshot's restores go first (a file
 * step's applied_check tells on the node whether its write happened).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "jx.h"
#include "log.h"
#include "util.h"
#include "workflow_int.h"

#define WF_LOST_GRACE_BEATS 15    /* heartbeats a lost node has to come back */
#define WF_LOST_GRACE_MIN_MS 3000 /* and at least this */

static int64_t grace_ms(const broker_t *b) {
  int64_t g = (int64_t)b->opts.heartbeat_ms * WF_LOST_GRACE_BEATS;
  return g < WF_LOST_GRACE_MIN_MS ? WF_LOST_GRACE_MIN_MS : g;
}

void wf_step_ack(broker_t *b, peer_t *to, int64_t workflow, int64_t step, int64_t attempt) {
  proto_msg_t *m = wf_step_msg(PROTO_STEP_ACK, workflow, step, attempt);
  if (m)
    wf_send(b, to, m, NULL, NULL); /* after the batch's commit */
}

/* The step must run again: pending, was_running (restored first). */
static void run_again(broker_t *b, workflow_t *wf, wf_step_t *s, const char *why) {
  log_info("workflow %lld step %lld (attempt %d): %s; it runs again", (long long)wf->id, (long long)s->number,
           s->attempts, why);
  s->lost_ms = 0;
  s->status = STEP_PENDING;
  s->was_running = true;
  wf_step_note(s, util_wall_ms(), "lost", why);
  wf_sched_note(wf, s);
  wf_save_step(b, wf, s);
}

/* The entry of steps (a heartbeat's list) for step s of workflow id, or NULL. */
static const json_t *held(const json_t *steps, int64_t id, const wf_step_t *s) {
  size_t i;
  const json_t *h;
  json_array_foreach(steps, i, h) {
    if (jx_int(h, "workflow", 0) == id && jx_int(h, "step", 0) == s->number && jx_int(h, "attempt", 0) == s->attempts)
      return h;
  }
  return NULL;
}

/* True when step s of wf runs on node `name` and waits for its result. */
static bool waits_on(const wf_step_t *s, const char *name) {
  return s->status == STEP_RUNNING && !s->agent_session && s->node && strcmp(s->node, name) == 0;
}

/* The steps of wf that wait for node `from` to come back: resolved by its list. */
static void settle(broker_t *b, workflow_t *wf, peer_t *from, const json_t *steps) {
  bool again = false;
  for (size_t i = 0; i < wf->n_steps; i++) {
    wf_step_t *s = &wf->steps[i];
    if (!s->lost_ms || !waits_on(s, from->name))
      continue;
    const json_t *h = held(steps, wf->id, s);
    if (h) {
      s->lost_ms = 0;
      from->busy++; /* given back with its result */
      wf_step_note(s, util_wall_ms(), "node back", jx_bool(h, "done", false) ? "finished" : "still running");
      log_info("workflow %lld step %lld: %s has it (%s)", (long long)wf->id, (long long)s->number, from->name,
               jx_bool(h, "done", false) ? "finished; its result comes again" : "still running");
    } else {
      run_again(b, wf, s, "its node came back without it");
      again = true;
    }
  }
  if (again && wf->status == WF_RUNNING)
    advance(b, wf, util_now_ms());
}

void workflow_on_heartbeat(broker_t *b, peer_t *from, const json_t *steps) {
  if (!json_is_array(steps))
    return;
  for (workflow_t *wf = b->workflows; wf; wf = wf->next)
    settle(b, wf, from, steps);
  size_t i;
  const json_t *h;
  json_array_foreach(steps, i, h) { /* a result nothing waits for: its ack was lost, or it is of no use */
    if (!jx_bool(h, "done", false))
      continue;
    int64_t id = jx_int(h, "workflow", 0), step = jx_int(h, "step", 0), attempt = jx_int(h, "attempt", 0);
    workflow_t *wf = wf_get(b, id);
    wf_step_t *s = wf ? wf_step(wf, step) : NULL;
    if (!s || !waits_on(s, from->name) || s->attempts != attempt)
      wf_step_ack(b, from, id, step, attempt);
  }
}

void wf_lost_steps_due(broker_t *b) {
  int64_t now = util_now_ms(), grace = grace_ms(b);
  for (workflow_t *wf = b->workflows; wf; wf = wf->next) {
    bool again = false;
    for (size_t i = 0; i < wf->n_steps; i++) {
      wf_step_t *s = &wf->steps[i];
      if (s->status == STEP_RUNNING && s->lost_ms && now - s->lost_ms >= grace) {
        char why[200];
        snprintf(why, sizeof why, "its node %.100s did not come back within %lld s", s->node ? s->node : "?",
                 (long long)(grace / 1000));
        run_again(b, wf, s, why);
        again = true;
      }
    }
    if (again && wf->status == WF_RUNNING)
      advance(b, wf, now);
  }
}

bool wf_restore_before_rerun(broker_t *b, workflow_t *wf, wf_step_t *s) {
  json_t *cps = store_checkpoints(b->store, wf->id, true), *end = NULL;
  size_t i;
  json_t *c;
  json_array_foreach(cps, i, c) {
    if (jx_int(c, "step", 0) == s->number && strcmp(jx_str(c, "kind", ""), "snapshot_end") == 0)
      end = c; /* the last attempt's */
  }
  wf_rollback_t *rb = end ? calloc(1, sizeof *rb) : NULL;
  if (!rb) {
    json_decref(cps);
    return false;
  }
  rb->rerun_step = s->number;
  rb->restored = json_array(), rb->mismatches = json_array(), rb->deleted = json_array();
  rb->conflicts = json_array();
  rb->why = strdup("restored to its checkpoint before it runs again");
  rb->final = WF_FAILED;
  wf_add_snapshot_ops(rb, cps, end);
  int64_t attempt = jx_int(end, "attempt", 0);
  json_decref(cps); /* end with it */
  wf->rollback = rb;
  log_info("workflow %lld step %lld runs again: first %zu restore(s) to the snapshot of attempt %lld",
           (long long)wf->id, (long long)s->number, rb->n_ops, (long long)attempt);
  wf_rollback_send(b, wf);
  return true;
}

void wf_rerun_restored(broker_t *b, workflow_t *wf) {
  wf_rollback_t *rb = wf->rollback;
  wf_step_t *s = wf_step(wf, rb->rerun_step);
  size_t bad = json_array_size(rb->mismatches), gone = json_array_size(rb->deleted);
  wf_rollback_free(&wf->rollback);
  if (!s)
    return;
  s->was_running = false; /* restored: it runs as if for the first time */
  char detail[200];
  snprintf(detail, sizeof detail, "restored to its checkpoint (%zu file(s) removed, %zu not restored)", gone, bad);
  wf_step_note(s, util_wall_ms(), "restored", detail);
  if (bad) {
    wf_step_failed(b, wf, s, "it could not be restored to its checkpoint before running again", false, NULL);
    return;
  }
  wf_save(b, wf);
  if (wf->status == WF_RUNNING)
    advance(b, wf, util_now_ms());
}

/* ---- rollback: only what the workflow changed ------------------------------------------ */

void wf_note_changes(broker_t *b, workflow_t *wf, const wf_step_t *s, const proto_msg_t *m) {
  const json_t *changed = jx_arr(m->payload, "changed");
  if (!s->tool || strcmp(s->tool, "execute_bash") != 0 || !json_is_array(changed))
    return;
  char *text = json_dumps(changed, JSON_COMPACT);
  if (!text ||
      store_checkpoint_add(b->store, wf->id, s->number, m->attempt, 0, "snapshot_post", NULL, 0, text, NULL, 0) < 0)
    log_error("state: cannot store what workflow %lld step %lld changed: %s (its rollback restores its whole "
              "snapshot)",
              (long long)wf->id, (long long)s->number, store_errmsg(b->store));
  free(text);
}

/* The entry for path in a step's changed list ([{path, sha256}]), or NULL. */
static const json_t *change_of(const json_t *changed, const char *path) {
  size_t i;
  const json_t *e;
  json_array_foreach(changed, i, e) if (strcmp(jx_str(e, "path", ""), path) == 0) return e;
  return NULL;
}

void wf_add_file_op(wf_rollback_t *rb, workflow_t *wf, const json_t *c) {
  const wf_step_t *s = wf_step(wf, jx_int(c, "step", 0));
  const json_t *post = s && s->status == STEP_DONE ? change_of(s->changed, jx_str(c, "path", "")) : NULL;
  if (post && jx_int(c, "attempt", 0) != s->attempts)
    return; /* an earlier attempt of a step that is done: the change is the last attempt's */
  wf_restore_t op = wf_restore_of(c, jx_bool(c, "existed", false));
  if (post)
    op.expect = strdup(jx_str(post, "sha256", ""));
  wf_push_op(rb, op);
}

/* True when row c of the ledger belongs to the attempt of end and has this kind. */
static bool same_attempt(const json_t *c, const json_t *end, const char *kind) {
  return jx_int(c, "step", 0) == jx_int(end, "step", 0) && jx_int(c, "attempt", 0) == jx_int(end, "attempt", 0) &&
         strcmp(jx_str(c, "kind", ""), kind) == 0;
}

/* The snapshot rows of end's attempt by path (files, symlinks, directories), and its list of changes. */
static json_t *snapshot_rows(const json_t *cps, const json_t *end, json_t **changed) {
  static const char *const kinds[] = {"snapshot_file", "snapshot_link", "snapshot_dir"};
  json_t *rows = json_object();
  size_t i;
  json_t *c;
  *changed = NULL;
  json_array_foreach(cps, i, c) {
    for (size_t k = 0; k < 3; k++)
      if (same_attempt(c, end, kinds[k]) && jx_str(c, "path", NULL))
        json_object_set(rows, jx_str(c, "path", ""), c);
    if (same_attempt(c, end, "snapshot_post") && jx_str(c, "content", NULL)) {
      json_decref(*changed);
      *changed = json_loads(jx_str(c, "content", ""), 0, NULL);
    }
  }
  return rows;
}

/* The restore of one changed path: its snapshot row (pre), or its removal. */
static wf_restore_t change_op(const json_t *pre, const json_t *change) {
  const char *kind = jx_str(pre, "kind", "");
  wf_restore_t op = pre ? wf_restore_of(pre, true)
                        : (wf_restore_t){.path = strdup(jx_str(change, "path", "")), .sha256 = strdup(""), .mode = -1};
  op.type = strcmp(kind, "snapshot_link") == 0 ? "symlink" : strcmp(kind, "snapshot_dir") == 0 ? "dir" : NULL;
  op.expect = strdup(jx_str(change, "state", jx_str(change, "sha256", "")));
  return op;
}

static int by_path(const void *a, const void *b) {
  return strcmp(jx_str(*(json_t *const *)a, "path", ""), jx_str(*(json_t *const *)b, "path", ""));
}

bool wf_add_changed_ops(wf_rollback_t *rb, const json_t *cps, const json_t *end) {
  json_t *changed, *rows = snapshot_rows(cps, end, &changed);
  bool known = json_is_array(changed);
  size_t n = known ? json_array_size(changed) : 0;
  json_t **sorted = calloc(n + 1, sizeof *sorted);
  for (size_t i = 0; sorted && i < n; i++)
    sorted[i] = json_array_get(changed, i);
  if (sorted)
    qsort(sorted, n, sizeof *sorted, by_path);
  /* what the step made goes first, deepest first; then what it changed or removed comes back, parents first */
  for (size_t i = n; sorted && i-- > 0;)
    if (!jx_obj(rows, jx_str(sorted[i], "path", "")))
      wf_push_op(rb, change_op(NULL, sorted[i]));
  for (size_t i = 0; sorted && i < n; i++) {
    const json_t *pre = jx_obj(rows, jx_str(sorted[i], "path", ""));
    if (pre)
      wf_push_op(rb, change_op(pre, sorted[i]));
  }
  free(sorted);
  json_decref(changed);
  json_decref(rows);
  return known;
}
