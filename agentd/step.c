/* step.c: one workflow step on a node (checkpoint first, then the tool), and
 * the restores of a rollback (see step.h). */
#include "step.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jx.h"
#include "log.h"
#include "snapshot.h"
#include "util.h"

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

/* ---- messages ----------------------------------------------------------------------- */

/* A new message of type with the step's workflow, step and attempt set. */
static proto_msg_t *step_msg(run_t *r, proto_type_t type) {
  const proto_msg_t *run = r->job->msg;
  proto_msg_t *m = proto_msg_new(type);
  if (!m)
    return NULL;
  PROTO_SET(m, workflow, run->workflow);
  PROTO_SET(m, step, run->step);
  PROTO_SET(m, attempt, run->attempt);
  return m;
}

/* Hands m to the main thread (for the broker) and destroys it. 0 or -errno. */
static int push(run_t *r, proto_msg_t **m) {
  int rc = *m ? run_push(r, *m) : -ENOMEM;
  proto_msg_destroy(m);
  return rc;
}

/* Hands the step's result to the main thread and keeps it until the broker's
 * step_ack (a result that does not encode is not kept). 0 or -errno. */
static int push_result(run_t *r, proto_msg_t **m) {
  int rc = *m ? run_push(r, *m) : -ENOMEM;
  if (rc == -EINVAL || rc == -EMSGSIZE || !*m)
    proto_msg_destroy(m);
  else
    jobq_keep_result(r->q, r->job, m);
  return rc;
}

/* step_failed {code, detail, retryable}. */
static void report_failed(run_t *r, const char *code, const char *detail, bool retryable) {
  proto_msg_t *m = step_msg(r, PROTO_STEP_FAILED);
  if (m) {
    proto_set_str(m, PROTO_F_code, code);
    proto_set_str(m, PROTO_F_detail, detail && *detail ? detail : "the step failed");
    PROTO_SET(m, retryable, retryable);
  }
  push_result(r, &m);
  const proto_msg_t *run = r->job->msg;
  log_warn("workflow %lld step %lld (attempt %lld) failed: %s: %s", (long long)run->workflow, (long long)run->step,
           (long long)run->attempt, code, detail);
}

/* step_done {text, payload} (payload taken); a result that cannot be encoded
 * becomes step_failed "internal" so that the broker always hears the end. */
static void report_done(run_t *r, const char *text, json_t *payload) {
  proto_msg_t *m = step_msg(r, PROTO_STEP_DONE);
  if (m) {
    proto_set_str(m, PROTO_F_text, text);
    proto_set_json(m, PROTO_F_payload, payload);
  } else {
    json_decref(payload);
  }
  int rc = push_result(r, &m);
  if (rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM) {
    char detail[160];
    snprintf(detail, sizeof detail, "the step's result could not be sent: %s", strerror(-rc));
    report_failed(r, PROTO_ERR_internal, detail, true);
  }
}

/* Notes the link generation before a checkpoint is sent: when the node
 * registers again (the broker restarted, say) before the ack came, or the
 * broker sends the step again, the checkpoint goes again at once. */
static void checkpoint_begins(run_t *r) {
  pthread_mutex_lock(&r->q->lock);
  r->gen = r->q->link_gen;
  r->job->repeat = false;
  r->job->ack_seq = 0;
  pthread_mutex_unlock(&r->q->lock);
}

/* Waits for the broker's ack of checkpoint seq (or a later one): 0,
 * -ECANCELED, -ETIMEDOUT, or -EAGAIN: send the checkpoint again (see
 * checkpoint_begins). */
static int wait_ack(run_t *r, int64_t seq) {
  jobq_t *q = r->q;
  job_t *job = r->job;
  int64_t deadline = util_now_ms() + STEP_ACK_TIMEOUT_MS;
  pthread_mutex_lock(&q->lock);
  while (job->ack_seq < seq && !atomic_load(&job->cancel) && util_now_ms() < deadline && q->link_gen == r->gen &&
         !job->repeat) {
    jobq_wait_slice(q, 100);
  }
  int rc = job->ack_seq >= seq                    ? 0
           : atomic_load(&job->cancel)            ? -ECANCELED
           : q->link_gen != r->gen || job->repeat ? -EAGAIN
                                                  : -ETIMEDOUT;
  pthread_mutex_unlock(&q->lock);
  if (rc == -EAGAIN)
    log_info("workflow %lld step %lld: the broker came back before it acknowledged the checkpoint; sent again",
             (long long)job->msg->workflow, (long long)job->msg->step);
  return rc;
}

/* Reports why waiting for an ack ended badly. */
static void report_wait(run_t *r, int rc) {
  if (rc == -ECANCELED) {
    report_failed(r, PROTO_ERR_cancelled, "the step was cancelled before it ran", false);
    return;
  }
  char detail[160];
  snprintf(detail, sizeof detail, "the broker did not acknowledge the checkpoint within %d s; the step did not run",
           STEP_ACK_TIMEOUT_MS / 1000);
  report_failed(r, PROTO_ERR_checkpoint_timeout, detail, true);
}

/* One checkpoint message: a file's content (f may be NULL for snapshot_end). 0 or -errno. */
static int send_checkpoint(run_t *r, int64_t seq, const char *kind, const char *path, const snap_file_t *f,
                           json_t *payload) {
  proto_msg_t *m = step_msg(r, PROTO_CHECKPOINT);
  if (!m) {
    json_decref(payload);
    return -ENOMEM;
  }
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_kind, kind);
  if (path)
    proto_set_str(m, PROTO_F_path, path);
  if (f) {
    PROTO_SET(m, existed, f->existed);
    m->content = snap_b64_encode(f->existed ? f->data : "", f->existed ? f->len : 0);
    m->has |= m->content ? PROTO_BIT(content) : 0;
    proto_set_str(m, PROTO_F_sha256, f->sha256);
    if (f->existed && !payload)
      payload = json_pack("{s:i}", "mode", (int)f->mode);
  }
  if (payload)
    proto_set_json(m, PROTO_F_payload, payload);
  if (f && !m->content) {
    proto_msg_destroy(&m);
    return -ENOMEM;
  }
  return push(r, &m);
}

/* ---- before the tool ---------------------------------------------------------------- */

/* The step's applied_check: true when the change is already in place (and
 * reported) or the check failed (reported); false: run the step. */
static bool already_applied(run_t *r, const json_t *check) {
  const char *path = json_string_value(json_object_get(check, "path"));
  const char *pre = json_string_value(json_object_get(check, "sha256"));
  char hex[SNAP_HEX_LEN + 1], err[512], *rel = NULL;
  if (!path || !pre) {
    report_failed(r, PROTO_ERR_bad_request, "applied_check needs path and sha256 (strings)", false);
    return true;
  }
  if (ws_rel(&r->q->ws, path, strlen(path), &rel, err, sizeof err) != 0) {
    report_failed(r, PROTO_ERR_refused, err, false);
    return true;
  }
  int rc = snap_sha256_file(&r->q->ws, rel, hex);
  free(rel);
  if (rc < 0) {
    snprintf(err, sizeof err, "cannot hash \"%.160s\" for applied_check: %s", path, strerror(-rc));
    report_failed(r, PROTO_ERR_checkpoint_failed, err, false);
    return true;
  }
  if (strcmp(hex, pre) == 0)
    return false;
  char text[400];
  snprintf(text, sizeof text, "already applied (checkpoint ledger): %.300s", path);
  report_done(r, text,
              json_pack("{s:b, s:i, s:b, s:b, s:s, s:[{s:s, s:s}]}", "already_applied", true, "exit_code", 0,
                        "is_error", false, "timed_out", false, "summary", "already applied", "changed", "path", path,
                        "sha256", hex));
  return true;
}

/* The path argument of a file tool as the tool reads it ("path", else "file_path"). */
static const char *path_arg(const json_t *args) {
  const json_t *v = json_object_get(args, "path");
  if (!v)
    v = json_object_get(args, "file_path");
  return json_string_value(v);
}

/* The write-ahead checkpoint of a file tool. 0: run the tool (*canon names the
 * file, or is NULL when the tool will refuse the path by itself); -1: reported. */
static int checkpoint_file(run_t *r, char **canon) {
  const char *path = path_arg(r->job->msg->args);
  char err[512], *rel = NULL;
  *canon = NULL;
  if (!path || ws_rel(&r->q->ws, path, strlen(path), &rel, err, sizeof err) != 0)
    return 0; /* the tool refuses the same arguments without changing anything */
  free(rel);
  if (snap_target(&r->q->ws, path, canon, err, sizeof err) != 0) {
    report_failed(r, PROTO_ERR_checkpoint_failed, err, false);
    return -1;
  }
  snap_file_t f;
  int rc = snap_read(&r->q->ws, *canon, SNAP_MAX_FILE, &f);
  if (rc == -EFBIG) {
    snprintf(err, sizeof err,
             "\"%.160s\" is larger than %.1f MiB, the most a checkpoint holds: the step cannot be "
             "rolled back, so it does not run",
             *canon, MIB(SNAP_MAX_FILE));
    report_failed(r, PROTO_ERR_checkpoint_too_large, err, false);
  } else if (rc < 0) {
    snprintf(err, sizeof err, "cannot read \"%.160s\" for its checkpoint: %s", *canon, strerror(-rc));
    report_failed(r, PROTO_ERR_checkpoint_failed, err, false);
  } else {
    rc = -EAGAIN;
    for (int tries = 0; rc == -EAGAIN && tries < STEP_CHECKPOINT_TRIES; tries++) {
      checkpoint_begins(r);
      if (send_checkpoint(r, 1, "file", *canon, &f, NULL) < 0) {
        report_failed(r, PROTO_ERR_internal, "the checkpoint could not be sent", true);
        rc = -1;
        break;
      }
      rc = wait_ack(r, 1);
    }
    if (rc < -1)
      report_wait(r, rc == -EAGAIN ? -ETIMEDOUT : rc);
  }
  snap_file_free(&f);
  return rc < 0 ? -1 : 0;
}

/* A snapshot's symlink (content: its target) or directory (payload: its mode),
 * sha256 its state (see SNAP_LINK_PREFIX). 0 or -errno. */
static int send_entry(run_t *r, int64_t seq, const char *kind, const char *path, const char *target, const char *state,
                      int mode) {
  proto_msg_t *m = step_msg(r, PROTO_CHECKPOINT);
  if (!m)
    return -ENOMEM;
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_kind, kind);
  proto_set_str(m, PROTO_F_path, path);
  PROTO_SET(m, existed, true);
  proto_set_str(m, PROTO_F_sha256, state);
  if (target) {
    m->content = snap_b64_encode(target, strlen(target));
    m->has |= m->content ? PROTO_BIT(content) : 0;
  } else {
    proto_set_json(m, PROTO_F_payload, json_pack("{s:i}", "mode", mode));
  }
  return push(r, &m);
}

/* The symlinks and directories of list after its files (seq: the last sent),
 * each noted in pre. The last seq sent, or -1. */
static int64_t send_others(run_t *r, const snap_list_t *l, json_t *pre, int64_t seq) {
  size_t i;
  json_t *e;
  json_array_foreach(l->links, i, e) {
    const char *path = jx_str(e, "path", ""), *target = jx_str(e, "target", "");
    char *state = snap_link_state(target);
    int rc = state ? send_entry(r, ++seq, "snapshot_link", path, target, state, 0) : -ENOMEM;
    if (rc == 0)
      snap_note(pre, path, state, 0);
    free(state);
    if (rc < 0)
      return -1;
  }
  json_array_foreach(l->dirs, i, e) {
    const char *path = jx_str(e, "path", "");
    int mode = (int)jx_int(e, "mode", 0755);
    if (send_entry(r, ++seq, "snapshot_dir", path, NULL, SNAP_DIR_STATE, mode) < 0)
      return -1;
    snap_note(pre, path, SNAP_DIR_STATE, (mode_t)mode);
  }
  return seq;
}

/* Sends the files of list, its symlinks and directories, then snapshot_end, noting each one's state in pre.
 * The seq of snapshot_end, or -1 (reported). */
static int64_t send_snapshot(run_t *r, const snap_list_t *l, json_t *pre) {
  int64_t seq = 0;
  uint64_t bytes = 0;
  char err[512];
  for (size_t i = 0; i < l->n; i++) {
    if (atomic_load(&r->job->cancel)) {
      report_failed(r, PROTO_ERR_cancelled, "the step was cancelled while its snapshot was taken", false);
      return -1;
    }
    snap_file_t f;
    int rc = snap_read(&r->q->ws, l->files[i].path, SNAP_MAX_FILE, &f);
    if (rc == 0 && !f.existed)
      continue; /* removed since the listing */
    bytes += rc == 0 ? f.len : 0;
    if (rc == -EFBIG || bytes > SNAP_MAX_TOTAL) {
      snprintf(err, sizeof err, "the workspace grew past the snapshot limits (%.160s) while the snapshot was taken",
               l->files[i].path);
      report_failed(r, PROTO_ERR_snapshot_too_large, err, true);
    } else if (rc < 0) {
      snprintf(err, sizeof err, "cannot read \"%.160s\" for the snapshot: %s", l->files[i].path, strerror(-rc));
      report_failed(r, PROTO_ERR_snapshot_failed, err, false);
    } else if (snap_note(pre, l->files[i].path, f.sha256, f.mode),
               send_checkpoint(r, ++seq, "snapshot_file", l->files[i].path, &f, NULL) < 0) {
      report_failed(r, PROTO_ERR_internal, "the snapshot could not be sent", true);
      rc = -1;
    }
    snap_file_free(&f);
    if (rc < 0 || bytes > SNAP_MAX_TOTAL)
      return -1;
  }
  int64_t files = seq;
  size_t links = json_array_size(l->links);
  if ((seq = send_others(r, l, pre, seq)) < 0) {
    report_failed(r, PROTO_ERR_internal, "the snapshot could not be sent", true);
    return -1;
  }
  json_t *end =
      json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:O}", "files", (json_int_t)files, "bytes", (json_int_t)bytes,
                "symlinks", (json_int_t)links, "dirs", (json_int_t)json_array_size(l->dirs), "symlinks_skipped",
                (json_int_t)(l->symlinks - links), "others_skipped", (json_int_t)l->others, "skipped", l->skipped);
  if (send_checkpoint(r, ++seq, "snapshot_end", NULL, NULL, end) < 0) {
    report_failed(r, PROTO_ERR_internal, "the snapshot could not be sent", true);
    return -1;
  }
  return seq;
}

/* One try at the snapshot before execute_bash: 0: acknowledged; -EAGAIN: try
 * again (the broker came back before it acknowledged); -1: reported. */
static int snapshot_once(run_t *r, json_t *pre) {
  checkpoint_begins(r);
  json_object_clear(pre);
  snap_list_t l;
  snap_limits_t lim = snap_default_limits();
  char err[512];
  int rc = snap_list(&r->q->ws, &lim, &r->job->cancel, &l, err, sizeof err);
  if (rc == -ECANCELED)
    report_failed(r, PROTO_ERR_cancelled, "the step was cancelled while its snapshot was taken", false);
  else if (rc == -EFBIG)
    report_failed(r, PROTO_ERR_snapshot_too_large, err, false);
  else if (rc < 0)
    report_failed(r, PROTO_ERR_snapshot_failed, err, false);
  int64_t end = rc < 0 ? -1 : send_snapshot(r, &l, pre);
  if (end > 0 && (rc = wait_ack(r, end)) < 0 && rc != -EAGAIN)
    report_wait(r, rc);
  log_info("workflow %lld step %lld: snapshot of %zu files (%.1f MiB) %s", (long long)r->job->msg->workflow,
           (long long)r->job->msg->step, l.n, MIB(l.bytes),
           end > 0 && rc == 0 ? "acknowledged"
           : rc == -EAGAIN    ? "to be sent again"
                              : "not made");
  snap_list_free(&l);
  return end > 0 && rc == 0 ? 0 : rc == -EAGAIN ? -EAGAIN : -1;
}

/* The snapshot before execute_bash (each file's state into pre). 0: run the tool; -1: reported. */
static int checkpoint_workspace(run_t *r, json_t *pre) {
  for (int tries = 0; tries < STEP_CHECKPOINT_TRIES; tries++) {
    int rc = snapshot_once(r, pre);
    if (rc != -EAGAIN)
      return rc;
  }
  report_wait(r, -ETIMEDOUT);
  return -1;
}

/* ---- the step ------------------------------------------------------------------------- */

/* Runs the tool and reports its result; canon names the file a file tool
 * changed, pre (when not NULL) holds the snapshot's file states: the files
 * the command changed go in the result's changed, with their state after it
 * (what a rollback expects to find: anything else is someone else's work). */
static void run_tool(run_t *r, const char *canon, const json_t *pre, int64_t started) {
  const proto_msg_t *run = r->job->msg;
  char *args = json_dumps(run->args, JSON_COMPACT);
  tool_result_t res = {0};
  tools_run(r->q->tools, run->kind, args ? args : "{}", &r->job->cancel, &res);
  free(args);
  if (atomic_load(&r->job->cancel)) {
    char detail[300];
    snprintf(detail, sizeof detail, "the step was cancelled while %s ran (%s)", run->kind, res.summary);
    report_failed(r, PROTO_ERR_cancelled, detail, false);
    tool_result_free(&res);
    return;
  }
  json_t *changed = json_array();
  char hex[SNAP_HEX_LEN + 1];
  if (canon && !res.is_error && snap_sha256_file(&r->q->ws, canon, hex) == 0)
    json_array_append_new(changed, json_pack("{s:s, s:s}", "path", canon, "sha256", hex));
  json_t *payload =
      json_pack("{s:i, s:b, s:b, s:s, s:I}", "exit_code", res.exit_code, "is_error", res.is_error, "timed_out",
                res.timed_out, "summary", res.summary, "elapsed_ms", (json_int_t)(util_now_ms() - started));
  json_t *since = NULL;
  char err[256];
  if (canon)
    json_object_set_new(payload, "changed", changed);
  else
    json_decref(changed);
  if (pre && snap_changes(&r->q->ws, pre, &since, err, sizeof err) == 0)
    json_object_set_new(payload, "changed", since);
  report_done(r, res.text ? res.text : "", payload);
  log_info("workflow %lld step %lld (attempt %lld): %s: %s", (long long)run->workflow, (long long)run->step,
           (long long)run->attempt, run->kind, res.summary);
  tool_result_free(&res);
}

/* The checkpoint the tool needs: 0 to go on (*canon set for file tools), -1 reported. */
static int checkpoint(run_t *r, const char *tool, char **canon, json_t *pre) {
  *canon = NULL;
  if (strcmp(tool, "write_file_tool") == 0 || strcmp(tool, "edit_file") == 0)
    return checkpoint_file(r, canon);
  if (strcmp(tool, "execute_bash") == 0)
    return checkpoint_workspace(r, pre);
  if (!tools_mutates(tool))
    return 0;
  char detail[200];
  snprintf(detail, sizeof detail, "this node cannot checkpoint tool %.60s before it runs, so it does not run it", tool);
  report_failed(r, PROTO_ERR_no_checkpoint, detail, false);
  return -1;
}

// Runs the job's workflow step.
void step_run(run_t *r) {
  const proto_msg_t *run = r->job->msg;
  int64_t started = util_now_ms();
  log_info("workflow %lld step %lld (attempt %lld): %s", (long long)run->workflow, (long long)run->step,
           (long long)run->attempt, run->kind);
  if (!tools_known(run->kind)) {
    char detail[200];
    snprintf(detail, sizeof detail, "this node has no tool named \"%.60s\"", run->kind);
    report_failed(r, PROTO_ERR_unknown_tool, detail, false);
    return;
  }
  const json_t *check = json_object_get(run->payload, "applied_check");
  if (json_is_object(check) && already_applied(r, check))
    return;
  if (atomic_load(&r->job->cancel)) {
    report_failed(r, PROTO_ERR_cancelled, "the step was cancelled before it ran", false);
    return;
  }
  char *canon = NULL;
  json_t *pre = json_object();
  bool snapshot = strcmp(run->kind, "execute_bash") == 0;
  if (checkpoint(r, run->kind, &canon, pre) == 0)
    run_tool(r, canon, snapshot ? pre : NULL, started);
  json_decref(pre);
  free(canon);
}

/* ---- restores ----------------------------------------------------------------------------- */

/* restored {workflow, seq} for the job's restore. */
static proto_msg_t *restored_msg(run_t *r) {
  proto_msg_t *m = proto_msg_new(PROTO_RESTORED);
  if (!m)
    return NULL;
  PROTO_SET(m, workflow, r->job->msg->workflow);
  PROTO_SET(m, seq, r->job->msg->seq);
  if (r->job->msg->path)
    proto_set_str(m, PROTO_F_path, r->job->msg->path);
  return m;
}

/* restored with an error code and detail. */
static void restore_failed(run_t *r, const char *code, const char *detail) {
  proto_msg_t *m = restored_msg(r);
  if (m) {
    proto_set_str(m, PROTO_F_code, code);
    proto_set_str(m, PROTO_F_detail, detail);
  }
  push(r, &m);
  log_warn("workflow %lld restore %lld failed: %s: %s", (long long)r->job->msg->workflow, (long long)r->job->msg->seq,
           code, detail);
}

/* The mode in payload {mode}: true when given and valid. */
static bool payload_mode(const json_t *payload, mode_t *mode) {
  const json_t *v = json_object_get(payload, "mode");
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 07777)
    return false;
  *mode = (mode_t)json_integer_value(v);
  return true;
}

/* restored {sha256: what is there now, payload {changed, conflict}}. */
static void restore_answer(run_t *r, const char *now, bool changed, bool conflict) {
  proto_msg_t *out = restored_msg(r);
  if (out) {
    proto_set_str(out, PROTO_F_sha256, now);
    proto_set_json(out, PROTO_F_payload,
                   conflict ? json_pack("{s:b, s:b}", "changed", false, "conflict", true)
                            : json_pack("{s:b}", "changed", changed));
  }
  push(r, &out);
}

/* Writes the pre-image (a file, or payload.type "symlink" / "dir"), or removes what is there. 0 or -1 with err. */
static int restore_path(run_t *r, const void *data, size_t len, bool mode_given, mode_t mode, bool *refused, char *err,
                        size_t errlen) {
  const proto_msg_t *m = r->job->msg;
  const char *type = jx_str(m->payload, "type", NULL);
  char hex[SNAP_HEX_LEN + 1];
  *refused = false;
  if (m->existed && type && (strcmp(type, "symlink") == 0 || strcmp(type, "dir") == 0))
    return snap_restore_other(&r->q->ws, m->path, type, data, mode_given ? mode : 0755, refused, err, errlen);
  return snap_restore_file(&r->q->ws, m->path, m->existed, data, len, mode_given, mode, hex, refused, err, errlen);
}

/* True when before is what the restore makes (a rollback started again after a broker restart). */
static bool restored_already(const proto_msg_t *m, const void *data, size_t len, const char *before) {
  const char *type = jx_str(m->payload, "type", "file");
  char state[PATH_MAX + 16] = "";
  if (!m->existed)
    state[0] = '\0';
  else if (strcmp(type, "dir") == 0)
    snprintf(state, sizeof state, "%s", SNAP_DIR_STATE);
  else if (strcmp(type, "symlink") == 0)
    snprintf(state, sizeof state, "%s%.*s", SNAP_LINK_PREFIX, (int)len, data ? (const char *)data : "");
  else
    snap_sha256(data ? data : "", data ? len : 0, state);
  return strcmp(state, before) == 0;
}

/* kind "file": write the pre-image, or remove the file. With payload.expect
 * (the state the workflow left there), anything else there is someone
 * else's work: it is kept and reported as a conflict. */
static void restore_file(run_t *r) {
  const proto_msg_t *m = r->job->msg;
  void *data = NULL;
  size_t len = 0;
  const char *type = jx_str(m->payload, "type", NULL);
  bool dir = type && strcmp(type, "dir") == 0;
  if (!m->path || !PROTO_HAS(m, existed) || (m->existed && !m->content && !dir)) {
    restore_failed(r, PROTO_ERR_bad_request, "a file restore needs path and existed (and content when existed)");
    return;
  }
  if (m->existed && m->content && snap_b64_decode(m->content, &data, &len) != 0) {
    restore_failed(r, PROTO_ERR_bad_content, "the restore's content is not base64");
    return;
  }
  mode_t mode = 0644, had_mode = 0, now_mode = 0;
  bool mode_given = payload_mode(m->payload, &mode), refused = false;
  char err[512], before[PATH_MAX + 16] = "", now[PATH_MAX + 16] = "";
  if (snap_state(&r->q->ws, m->path, before, sizeof before, &had_mode) < 0)
    before[0] = '\0'; /* what was there, to tell whether the restore changed it */
  const char *expect = jx_str(m->payload, "expect", NULL);
  if (expect && strcmp(before, expect) != 0 && !restored_already(m, data, len, before)) {
    free(data);
    restore_answer(r, before, false, true);
    return;
  }
  int rc = restore_path(r, data, len, mode_given, mode, &refused, err, sizeof err);
  free(data);
  if (rc != 0 && !m->existed && expect && strcmp(before, SNAP_DIR_STATE) == 0) {
    restore_answer(r, before, false, true); /* a directory the workflow made holds other work now */
    return;
  }
  if (rc != 0) {
    restore_failed(r, refused ? PROTO_ERR_refused : PROTO_ERR_restore_failed, err);
    return;
  }
  if (snap_state(&r->q->ws, m->path, now, sizeof now, &now_mode) < 0)
    now[0] = '\0';
  restore_answer(r, now, strcmp(before, now) != 0 || had_mode != now_mode, false);
}

/* kind "prune": remove the files not kept. */
static void restore_prune(run_t *r) {
  const json_t *keep = json_object_get(r->job->msg->payload, "keep");
  if (!json_is_array(keep)) {
    restore_failed(r, PROTO_ERR_bad_request, "a prune needs payload {keep: [paths]}");
    return;
  }
  json_t *report = NULL;
  char err[512];
  int rc = snap_prune(&r->q->ws, keep, &report, err, sizeof err);
  log_info("workflow %lld restore %lld: pruned %lld files%s", (long long)r->job->msg->workflow,
           (long long)r->job->msg->seq, (long long)json_integer_value(json_object_get(report, "count")),
           rc < 0 ? " (stopped by an error)" : "");
  proto_msg_t *m = restored_msg(r);
  if (m && rc < 0) {
    proto_set_str(m, PROTO_F_code, PROTO_ERR_restore_failed);
    proto_set_str(m, PROTO_F_detail, err[0] ? err : strerror(-rc));
  }
  if (m)
    proto_set_json(m, PROTO_F_payload, report);
  else
    json_decref(report);
  push(r, &m);
}

// Runs the job's restore.
void restore_run(run_t *r) {
  const char *kind = r->job->msg->kind;
  if (strcmp(kind, "file") == 0)
    restore_file(r);
  else if (strcmp(kind, "prune") == 0)
    restore_prune(r);
  else
    restore_failed(r, PROTO_ERR_unknown_kind, "a restore's kind is \"file\" or \"prune\"");
}
