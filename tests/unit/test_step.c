/* Unit tests for workflow steps on a node (agentd/snapshot.c, agentd/step.c):
 * base64 and sha256, path normalisation, the snapshot walk and its bounds,
 * the file target of a file tool, file restores and prunes in a temporary
 * workspace, and whole steps and restores run by step_run / restore_run with
 * the test playing the main thread (it reads what the worker sends and
 * acknowledges checkpoints). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zmq.h>

#include "jobs.h"
#include "log.h"
#include "proto.h"
#include "snapshot.h"
#include "step.h"

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- fixture: a fresh workspace, its ws_t and a job queue ------------------------------- */

typedef struct {
  char base[256], ws[300];
  jobq_t q;
  void *pull;
  job_t *job;
  pthread_t worker;
  bool restore; /* the worker runs restore_run, else step_run */
} fx_t;

static void free_job(job_t **j) {
  job_free(*j);
  *j = NULL;
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  char tmpl[PATH_MAX], real[PATH_MAX], err[256];
  snprintf(tmpl, sizeof tmpl, "%.200s/cadre-step-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!fx || !mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= 240)
    return -1;
  snprintf(fx->base, sizeof fx->base, "%.240s", real);
  snprintf(fx->ws, sizeof fx->ws, "%.240s/ws", real);
  if (mkdir(fx->ws, 0755) != 0 || ws_init(&fx->q.ws, fx->ws, err, sizeof err) != 0 || snap_init() != 0)
    return -1;
  tools_opts_t o = {.workspace = fx->ws};
  fx->q.tools = tools_new(&o, err, sizeof err);
  pthread_mutex_init(&fx->q.lock, NULL);
  pthread_cond_init(&fx->q.cond, NULL);
  pthread_cond_init(&fx->q.approval, NULL);
  fx->q.ctx = zmq_ctx_new();
  fx->q.events_endpoint = "inproc://test-step";
  fx->pull = zmq_socket(fx->q.ctx, ZMQ_PULL);
  if (!fx->q.tools || proto_socket_setup(fx->pull) < 0 || zmq_bind(fx->pull, fx->q.events_endpoint) != 0)
    return -1;
  *state = fx;
  return 0;
}

/* As setup, with the workspace's component-by-component walk instead of openat2. */
static int setup_fallback(void **state) {
  if (setup(state) != 0)
    return -1;
  ((fx_t *)*state)->q.ws.openat2 = false;
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  fx_t *fx = *state;
  free_job(&fx->job);
  zmq_close(fx->pull);
  zmq_ctx_term(fx->q.ctx);
  tools_destroy(&fx->q.tools);
  ws_fini(&fx->q.ws);
  pthread_mutex_destroy(&fx->q.lock);
  pthread_cond_destroy(&fx->q.cond);
  pthread_cond_destroy(&fx->q.approval);
  nftw(fx->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

/* Writes content to ws/rel, making parent directories. */
static void put(fx_t *fx, const char *rel, const char *content) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", fx->ws, rel);
  for (char *p = path + strlen(fx->ws) + 1; (p = strchr(p, '/')); p++) {
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

/* The content of ws/rel, or NULL when absent. Caller frees. */
static char *slurp(fx_t *fx, const char *rel) {
  char path[PATH_MAX], *buf = calloc(1, 1 << 16);
  snprintf(path, sizeof path, "%s/%s", fx->ws, rel);
  FILE *f = fopen(path, "rb");
  if (!f) {
    free(buf);
    return NULL;
  }
  buf[fread(buf, 1, (1 << 16) - 1, f)] = '\0';
  fclose(f);
  return buf;
}

static bool exists(fx_t *fx, const char *rel) {
  char path[PATH_MAX];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", fx->ws, rel);
  return lstat(path, &st) == 0;
}

static void wsln(fx_t *fx, const char *target, const char *rel) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", fx->ws, rel);
  assert_int_equal(symlink(target, path), 0);
}

/* ---- hashes, base64, names ---------------------------------------------------------- */

static void test_sha256_known_values(void **state) {
  (void)state;
  char hex[SNAP_HEX_LEN + 1];
  snap_sha256("abc", 3, hex);
  assert_string_equal(hex, SHA_ABC);
  snap_sha256("", 0, hex);
  assert_string_equal(hex, SHA_EMPTY);
}

static void test_sha256_file_absent_is_empty(void **state) {
  fx_t *fx = *state;
  char hex[SNAP_HEX_LEN + 1] = "x";
  put(fx, "a.txt", "abc");
  assert_int_equal(snap_sha256_file(&fx->q.ws, "a.txt", hex), 0);
  assert_string_equal(hex, SHA_ABC);
  assert_int_equal(snap_sha256_file(&fx->q.ws, "missing.txt", hex), 0);
  assert_string_equal(hex, "");
  assert_int_equal(snap_sha256_file(&fx->q.ws, "a.txt/below", hex), 0);
  assert_string_equal(hex, "");
  put(fx, "d/x", "");
  assert_int_equal(snap_sha256_file(&fx->q.ws, "d", hex), -EINVAL);
}

static void test_base64_round_trips(void **state) {
  (void)state;
  const char bin[] = {'a', 0, 'b', (char)0xff, (char)0x80, 'c', '\n'};
  for (size_t n = 0; n <= sizeof bin; n++) {
    char *b64 = snap_b64_encode(bin, n);
    void *out = NULL;
    size_t len = 99;
    assert_int_equal(snap_b64_decode(b64, &out, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(out, bin, n);
    free(out);
    free(b64);
  }
}

static void test_base64_decode_cases(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } ok[] = {{"", ""}, {"YWJj", "abc"}, {"YWI=", "ab"}, {"YWI", "ab"}, {"YQ==", "a"}, {"YW\nJj\r\n", "abc"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    void *out = NULL;
    size_t len;
    assert_int_equal(snap_b64_decode(ok[i].in, &out, &len), 0);
    assert_int_equal(len, strlen(ok[i].out));
    assert_memory_equal(out, ok[i].out, len);
    free(out);
  }
  const char *bad[] = {"YW!j", "Y", "YWJj=", "=YWJ", "YW Jj*"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *out = NULL;
    size_t len;
    assert_int_equal(snap_b64_decode(bad[i], &out, &len), -EINVAL);
  }
}

static void test_norm_table(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } cases[] = {{"a/b", "a/b"},          {"./a//b/../c", "a/c"}, {".", ""},          {"a/./b/", "a/b"}, {"../x", NULL},
               {"a/../../b", NULL},     {"a/..", ""},           {"//a///b", "a/b"}, {"a/b/../..", ""}, {"...", "..."},
               {"a/.b/..c", "a/.b/..c"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *n = snap_norm(cases[i].in);
    if (!cases[i].out)
      assert_null(n);
    else
      assert_string_equal(n, cases[i].out);
    free(n);
  }
}

static void test_utf8_table(void **state) {
  (void)state;
  assert_true(snap_utf8_ok("plain/path.c", 12));
  assert_true(snap_utf8_ok("caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80", 14));
  assert_false(snap_utf8_ok("a\xffz", 3));
  assert_false(snap_utf8_ok("\xc3", 1));
  assert_false(snap_utf8_ok("\xc0\xaf", 2));     /* overlong '/' */
  assert_false(snap_utf8_ok("\xed\xa0\x80", 3)); /* surrogate */
  assert_false(snap_utf8_ok("a\0b", 3));
}

/* ---- the snapshot walk ------------------------------------------------------------------ */

static bool has_path(const snap_list_t *l, const char *path) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->files[i].path, path) == 0)
      return true;
  return false;
}

static void test_list_skips_git_symlinks_and_specials(void **state) {
  fx_t *fx = *state;
  char err[512], path[PATH_MAX];
  put(fx, "a.txt", "abc");
  put(fx, "sub/b.txt", "hello");
  put(fx, ".git/config", "[core]");
  put(fx, "sub/.git/HEAD", "ref");
  put(fx, "sub/.cadre-tmp-0123456789abcdef", "partial");
  wsln(fx, "a.txt", "link.txt");
  wsln(fx, "/etc", "sub/outside");
  snprintf(path, sizeof path, "%s/fifo", fx->ws);
  assert_int_equal(mkfifo(path, 0600), 0);
  snap_list_t l;
  snap_limits_t lim = snap_default_limits();
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), 0);
  assert_int_equal(l.n, 2);
  assert_true(has_path(&l, "a.txt"));
  assert_true(has_path(&l, "sub/b.txt"));
  assert_int_equal(l.bytes, 8);
  assert_int_equal(l.symlinks, 2);
  assert_int_equal(l.others, 1);
  assert_int_equal(json_array_size(l.skipped), 3);
  snap_list_free(&l);
}

static void test_list_bounds(void **state) {
  fx_t *fx = *state;
  char err[512], name[32];
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof name, "d%d/f%d.txt", i % 2, i);
    put(fx, name, "0123456789");
  }
  put(fx, "big.bin", "0123456789012345678901234567890123456789");
  snap_list_t l;
  snap_limits_t lim = {3, 1 << 20, 1 << 20};
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), -EFBIG);
  assert_non_null(strstr(err, "the workspace has 6 files (limit 3)"));
  assert_non_null(strstr(err, "cannot be checkpointed for rollback"));
  assert_int_equal(l.n, 3);
  snap_list_free(&l);
  lim = (snap_limits_t){100, 60, 1 << 20};
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), -EFBIG);
  assert_non_null(strstr(err, "MiB (limit"));
  snap_list_free(&l);
  lim = (snap_limits_t){100, 1 << 20, 20};
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), -EFBIG);
  assert_non_null(strstr(err, "file \"big.bin\""));
  assert_non_null(strstr(err, "per file"));
  snap_list_free(&l);
  lim = (snap_limits_t){6, 100, 40};
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), 0);
  assert_int_equal(l.n, 6);
  snap_list_free(&l);
}

static void test_list_cancel_and_bad_names(void **state) {
  fx_t *fx = *state;
  char err[512];
  put(fx, "a.txt", "x");
  atomic_bool cancel;
  atomic_init(&cancel, true);
  snap_list_t l;
  snap_limits_t lim = snap_default_limits();
  assert_int_equal(snap_list(&fx->q.ws, &lim, &cancel, &l, err, sizeof err), -ECANCELED);
  snap_list_free(&l);
  put(fx, "bad\xff.txt", "x");
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), -EILSEQ);
  assert_non_null(strstr(err, "not UTF-8"));
  snap_list_free(&l);
}

static void test_list_depth_bound(void **state) {
  fx_t *fx = *state;
  char rel[PATH_MAX] = "", err[512];
  for (int i = 0; i < SNAP_MAX_DEPTH + 1; i++)
    strcat(rel, "d/");
  strcat(rel, "f");
  put(fx, rel, "x");
  snap_list_t l;
  snap_limits_t lim = snap_default_limits();
  assert_int_equal(snap_list(&fx->q.ws, &lim, NULL, &l, err, sizeof err), -ELOOP);
  assert_non_null(strstr(err, "nested deeper"));
  snap_list_free(&l);
}

/* ---- the target of a file tool, reading --------------------------------------------------- */

static void test_target_names_the_real_file(void **state) {
  fx_t *fx = *state;
  char err[512], *canon = NULL;
  put(fx, "real/target.txt", "t");
  wsln(fx, "real/target.txt", "link.txt");
  wsln(fx, "real", "dirlink");
  wsln(fx, "/etc/passwd", "evil");
  static const struct {
    const char *in, *out;
  } ok[] = {{"x/../a.txt", "a.txt"},
            {"./link.txt", "real/target.txt"},
            {"dirlink/new.c", "real/new.c"},
            {"new/dir/f.c", "new/dir/f.c"},
            {"real/target.txt", "real/target.txt"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(snap_target(&fx->q.ws, ok[i].in, &canon, err, sizeof err), 0);
    assert_string_equal(canon, ok[i].out);
    free(canon);
  }
  char abs[PATH_MAX];
  snprintf(abs, sizeof abs, "%s/real/target.txt", fx->ws);
  assert_int_equal(snap_target(&fx->q.ws, abs, &canon, err, sizeof err), 0);
  assert_string_equal(canon, "real/target.txt");
  free(canon);
  const char *bad[] = {"../out.txt", ".", "/etc/passwd", "evil", "real"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(snap_target(&fx->q.ws, bad[i], &canon, err, sizeof err), -1);
}

static void test_read_file_states(void **state) {
  fx_t *fx = *state;
  snap_file_t f;
  put(fx, "a.txt", "abc");
  assert_int_equal(snap_read(&fx->q.ws, "a.txt", 100, &f), 0);
  assert_true(f.existed);
  assert_int_equal(f.len, 3);
  assert_string_equal(f.sha256, SHA_ABC);
  snap_file_free(&f);
  assert_int_equal(snap_read(&fx->q.ws, "none.txt", 100, &f), 0);
  assert_false(f.existed);
  assert_string_equal(f.sha256, "");
  assert_int_equal(snap_read(&fx->q.ws, "a.txt", 2, &f), -EFBIG);
}

/* ---- restores ----------------------------------------------------------------------------- */

static void test_restore_file_writes_and_removes(void **state) {
  fx_t *fx = *state;
  char hex[SNAP_HEX_LEN + 1], err[512], path[PATH_MAX];
  bool refused;
  assert_int_equal(
      snap_restore_file(&fx->q.ws, "new/deep/a.txt", true, "abc", 3, true, 0750, hex, &refused, err, sizeof err), 0);
  assert_string_equal(hex, SHA_ABC);
  char *got = slurp(fx, "new/deep/a.txt");
  assert_string_equal(got, "abc");
  free(got);
  struct stat st;
  snprintf(path, sizeof path, "%s/new/deep/a.txt", fx->ws);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0750);
  put(fx, "target.txt", "keep me");
  wsln(fx, "target.txt", "link.txt"); /* a symlink the step made is replaced, its target untouched */
  assert_int_equal(snap_restore_file(&fx->q.ws, "link.txt", true, "", 0, false, 0, hex, &refused, err, sizeof err), 0);
  assert_string_equal(hex, SHA_EMPTY);
  got = slurp(fx, "target.txt");
  assert_string_equal(got, "keep me");
  free(got);
  assert_int_equal(
      snap_restore_file(&fx->q.ws, "./new/deep/a.txt", false, NULL, 0, false, 0, hex, &refused, err, sizeof err), 0);
  assert_string_equal(hex, "");
  assert_false(exists(fx, "new/deep/a.txt"));
  assert_int_equal(
      snap_restore_file(&fx->q.ws, "nothing/here.txt", false, NULL, 0, false, 0, hex, &refused, err, sizeof err), 0);
}

static void test_restore_file_refuses_escapes(void **state) {
  fx_t *fx = *state;
  char hex[SNAP_HEX_LEN + 1], err[512], outside[300];
  bool refused;
  snprintf(outside, sizeof outside, "%s/outside", fx->base);
  mkdir(outside, 0755);
  wsln(fx, outside, "out");
  const char *bad[] = {"../x.txt", "/etc/passwd", "a/../../x", ".", "out/x.txt"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(snap_restore_file(&fx->q.ws, bad[i], true, "x", 1, false, 0, hex, &refused, err, sizeof err), -1);
    assert_true(refused);
  }
  char probe[PATH_MAX];
  snprintf(probe, sizeof probe, "%s/x.txt", outside);
  assert_int_equal(access(probe, F_OK), -1);
  snprintf(probe, sizeof probe, "%s/x.txt", fx->base);
  assert_int_equal(access(probe, F_OK), -1);
}

static bool json_has(const json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) if (strcmp(json_string_value(v), s) == 0) return true;
  return false;
}

static void test_prune_keeps_listed_files(void **state) {
  fx_t *fx = *state;
  char err[512], path[PATH_MAX];
  put(fx, "a.txt", "a");
  put(fx, "b.txt", "b");
  put(fx, "sub/c.txt", "c");
  put(fx, "sub/d.txt", "d");
  put(fx, "newdir/inner/e.txt", "e");
  put(fx, ".git/config", "g");
  put(fx, "kept/f.txt", "f");
  snprintf(path, sizeof path, "%s/empty-before", fx->ws);
  mkdir(path, 0755);
  wsln(fx, "a.txt", "link.txt");
  json_t *keep = json_pack("[s, s, s, s]", "a.txt", "./sub//c.txt", "kept/gone.txt", "../escape");
  json_t *report = NULL;
  assert_int_equal(snap_prune(&fx->q.ws, keep, &report, err, sizeof err), 0);
  json_t *deleted = json_object_get(report, "deleted"), *dirs = json_object_get(report, "dirs");
  assert_int_equal(json_array_size(deleted), 4);
  assert_int_equal(json_integer_value(json_object_get(report, "count")), 4);
  assert_false(json_is_true(json_object_get(report, "truncated")));
  assert_true(json_has(deleted, "b.txt") && json_has(deleted, "sub/d.txt") && json_has(deleted, "newdir/inner/e.txt") &&
              json_has(deleted, "kept/f.txt"));
  assert_true(json_has(dirs, "newdir") && json_has(dirs, "newdir/inner"));
  assert_int_equal(json_array_size(dirs), 2);
  assert_true(exists(fx, "a.txt") && exists(fx, "sub/c.txt") && exists(fx, ".git/config"));
  assert_true(exists(fx, "link.txt") && exists(fx, "empty-before") && exists(fx, "kept"));
  assert_false(exists(fx, "b.txt") || exists(fx, "sub/d.txt") || exists(fx, "newdir"));
  json_decref(report);
  json_decref(keep);
}

/* ---- whole steps: the test plays the main thread ------------------------------------------- */

static void *worker(void *arg) {
  fx_t *fx = arg;
  void *push = zmq_socket(fx->q.ctx, ZMQ_PUSH);
  proto_socket_setup(push);
  zmq_connect(push, fx->q.events_endpoint);
  run_t r = {&fx->q, fx->job, push, 0, 0, NULL};
  if (fx->restore)
    restore_run(&r);
  else
    step_run(&r);
  zmq_close(push);
  return NULL;
}

/* Starts a worker on a job made of msg (taken); frees the previous job. */
static void start(fx_t *fx, proto_msg_t *msg, bool restore) {
  free_job(&fx->job);
  fx->job = calloc(1, sizeof *fx->job);
  fx->job->kind = restore ? JOB_RESTORE : JOB_STEP;
  fx->job->msg = msg;
  atomic_init(&fx->job->cancel, false);
  fx->q.jobs = fx->job; /* where agentd.c's handlers find it */
  fx->restore = restore;
  assert_int_equal(pthread_create(&fx->worker, NULL, worker, fx), 0);
}

static proto_msg_t *step_msg(const char *tool, json_t *args, json_t *payload) {
  proto_msg_t *m = proto_msg_new(PROTO_STEP_RUN);
  PROTO_SET(m, workflow, 7);
  PROTO_SET(m, step, 2);
  PROTO_SET(m, attempt, 1);
  proto_set_str(m, PROTO_F_kind, tool);
  proto_set_json(m, PROTO_F_args, args);
  if (payload)
    proto_set_json(m, PROTO_F_payload, payload);
  return m;
}

/* The next message the worker sends (fails after 10 s). */
static proto_msg_t *next(fx_t *fx) {
  zmq_pollitem_t it = {fx->pull, 0, ZMQ_POLLIN, 0};
  assert_int_equal(zmq_poll(&it, 1, 10000), 1);
  proto_msg_t *m = NULL;
  proto_err_t err;
  assert_int_equal(proto_recv(fx->pull, NULL, NULL, NULL, &m, &err, 0), 1);
  return m;
}

/* What agentd.c does with a checkpoint_ack. */
static void ack(fx_t *fx, int64_t seq) {
  proto_msg_t *m = proto_msg_new(PROTO_CHECKPOINT_ACK);
  PROTO_SET(m, workflow, fx->job->msg->workflow);
  PROTO_SET(m, step, fx->job->msg->step);
  PROTO_SET(m, attempt, fx->job->msg->attempt);
  PROTO_SET(m, seq, seq);
  assert_true(jobq_ack_checkpoint(&fx->q, m));
  proto_msg_destroy(&m);
}

static void finish(fx_t *fx) {
  pthread_join(fx->worker, NULL);
}

static void test_step_write_checkpoints_then_writes(void **state) {
  fx_t *fx = *state;
  put(fx, "src/a.c", "abc");
  start(fx, step_msg("write_file_tool", json_pack("{s:s, s:s}", "path", "./src//a.c", "content", "new"), NULL), false);
  proto_msg_t *m = next(fx);
  assert_int_equal(m->type, PROTO_CHECKPOINT);
  assert_int_equal(m->workflow, 7);
  assert_int_equal(m->step, 2);
  assert_int_equal(m->attempt, 1);
  assert_int_equal(m->seq, 1);
  assert_string_equal(m->kind, "file");
  assert_string_equal(m->path, "src/a.c");
  assert_true(m->existed);
  assert_string_equal(m->content, "YWJj");
  assert_string_equal(m->sha256, SHA_ABC);
  proto_msg_destroy(&m);
  char *got = slurp(fx, "src/a.c");
  assert_string_equal(got, "abc"); /* nothing changes before the ack */
  free(got);
  ack(fx, 1);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_DONE);
  assert_false(json_is_true(json_object_get(m->payload, "is_error")));
  json_t *changed = json_array_get(json_object_get(m->payload, "changed"), 0);
  assert_string_equal(json_string_value(json_object_get(changed, "path")), "src/a.c");
  char hex[SNAP_HEX_LEN + 1];
  snap_sha256("new", 3, hex);
  assert_string_equal(json_string_value(json_object_get(changed, "sha256")), hex);
  proto_msg_destroy(&m);
  got = slurp(fx, "src/a.c");
  assert_string_equal(got, "new");
  free(got);
}

/* Writes a file of n bytes of 'x' at ws/rel. */
static void put_size(fx_t *fx, const char *rel, size_t n) {
  char *data = malloc(n + 1);
  memset(data, 'x', n);
  data[n] = '\0';
  put(fx, rel, data);
  free(data);
}

static void test_step_checkpoint_of_the_largest_file_fits_a_frame(void **state) {
  fx_t *fx = *state;
  char rel[PATH_MAX] = "";
  for (int i = 0; i < 15; i++)
    strcat(rel, "a-long-directory-name-of-some-length-to-make-the-path-long/");
  strcat(rel, "big.bin");
  put_size(fx, rel, SNAP_MAX_FILE);
  start(fx,
        step_msg("edit_file", json_pack("{s:s, s:s, s:s}", "path", rel, "old_string", "xy", "new_string", "z"), NULL),
        false);
  proto_msg_t *m = next(fx);
  assert_int_equal(m->type, PROTO_CHECKPOINT);
  assert_int_equal(strlen(m->content), (SNAP_MAX_FILE + 2) / 3 * 4);
  proto_msg_destroy(&m);
  atomic_store(&fx->job->cancel, true);
  m = next(fx);
  finish(fx);
  assert_string_equal(m->code, "cancelled");
  proto_msg_destroy(&m);
  put_size(fx, "bigger.bin", SNAP_MAX_FILE + 1);
  start(fx, step_msg("write_file_tool", json_pack("{s:s, s:s}", "path", "bigger.bin", "content", ""), NULL), false);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_FAILED);
  assert_string_equal(m->code, "checkpoint_too_large");
  proto_msg_destroy(&m);
}

static void test_step_edit_not_found_is_done_with_error(void **state) {
  fx_t *fx = *state;
  put(fx, "a.txt", "abc");
  start(fx,
        step_msg("edit_file", json_pack("{s:s, s:s, s:s}", "path", "a.txt", "old_string", "zzz", "new_string", "y"),
                 NULL),
        false);
  proto_msg_t *m = next(fx);
  assert_int_equal(m->type, PROTO_CHECKPOINT);
  proto_msg_destroy(&m);
  ack(fx, 1);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_DONE);
  assert_true(json_is_true(json_object_get(m->payload, "is_error")));
  assert_non_null(strstr(m->text, "old_string not found"));
  assert_int_equal(json_array_size(json_object_get(m->payload, "changed")), 0);
  proto_msg_destroy(&m);
}

static void test_step_cancel_while_waiting_for_ack(void **state) {
  fx_t *fx = *state;
  start(fx, step_msg("write_file_tool", json_pack("{s:s, s:s}", "path", "n.txt", "content", "x"), NULL), false);
  proto_msg_t *m = next(fx);
  assert_int_equal(m->type, PROTO_CHECKPOINT);
  assert_false(m->existed);
  assert_string_equal(m->content, "");
  assert_string_equal(m->sha256, "");
  proto_msg_destroy(&m);
  atomic_store(&fx->job->cancel, true);
  pthread_cond_broadcast(&fx->q.approval);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_FAILED);
  assert_string_equal(m->code, "cancelled");
  assert_false(exists(fx, "n.txt"));
  proto_msg_destroy(&m);
}

static void test_step_bash_snapshot_then_runs(void **state) {
  fx_t *fx = *state;
  put(fx, "a.txt", "abc");
  put(fx, "d/b.txt", "");
  put(fx, ".git/HEAD", "x");
  wsln(fx, "a.txt", "l");
  start(fx, step_msg("execute_bash", json_pack("{s:s}", "command", "echo hi > out.txt; cat a.txt"), NULL), false);
  int files = 0;
  proto_msg_t *m;
  while ((m = next(fx)) && strcmp(m->kind, "snapshot_file") == 0) {
    assert_int_equal(m->seq, ++files);
    assert_true(strcmp(m->path, "a.txt") == 0 || strcmp(m->path, "d/b.txt") == 0);
    proto_msg_destroy(&m);
  }
  assert_int_equal(files, 2);
  /* the symlink is kept as a link (its target), the directory with its mode: a rollback restores them */
  assert_string_equal(m->kind, "snapshot_link");
  assert_int_equal(m->seq, 3);
  assert_string_equal(m->path, "l");
  assert_string_equal(m->sha256, "symlink:a.txt");
  void *target = NULL;
  size_t tlen = 0;
  assert_int_equal(snap_b64_decode(m->content, &target, &tlen), 0);
  assert_string_equal(target, "a.txt");
  free(target);
  proto_msg_destroy(&m);
  m = next(fx);
  assert_string_equal(m->kind, "snapshot_dir");
  assert_int_equal(m->seq, 4);
  assert_string_equal(m->path, "d");
  assert_string_equal(m->sha256, "dir");
  assert_true(json_is_integer(json_object_get(m->payload, "mode")));
  proto_msg_destroy(&m);
  m = next(fx);
  assert_string_equal(m->kind, "snapshot_end");
  assert_int_equal(m->seq, 5);
  assert_int_equal(json_integer_value(json_object_get(m->payload, "files")), 2);
  assert_int_equal(json_integer_value(json_object_get(m->payload, "bytes")), 3);
  assert_int_equal(json_integer_value(json_object_get(m->payload, "symlinks")), 1);
  assert_int_equal(json_integer_value(json_object_get(m->payload, "dirs")), 1);
  assert_int_equal(json_integer_value(json_object_get(m->payload, "symlinks_skipped")), 0);
  proto_msg_destroy(&m);
  assert_false(exists(fx, "out.txt"));
  ack(fx, 5);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_DONE);
  assert_int_equal(json_integer_value(json_object_get(m->payload, "exit_code")), 0);
  assert_non_null(strstr(m->text, "abc"));
  assert_true(exists(fx, "out.txt"));
  /* what the command changed, with its state after it: the file it made */
  json_t *changed = json_object_get(m->payload, "changed");
  assert_int_equal(json_array_size(changed), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(changed, 0), "path")), "out.txt");
  proto_msg_destroy(&m);
}

static void test_step_bash_refused_when_workspace_too_big(void **state) {
  fx_t *fx = *state;
  char name[64];
  for (int i = 0; i <= SNAP_MAX_FILES; i++) {
    snprintf(name, sizeof name, "d%d/f%d", i / 500, i);
    put(fx, name, "");
  }
  start(fx, step_msg("execute_bash", json_pack("{s:s}", "command", "touch ran"), NULL), false);
  proto_msg_t *m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_FAILED);
  assert_string_equal(m->code, "snapshot_too_large");
  assert_non_null(strstr(m->detail, "the workspace has 5001 files (limit 5000)"));
  assert_false(exists(fx, "ran"));
  proto_msg_destroy(&m);
}

static void test_step_applied_check(void **state) {
  fx_t *fx = *state;
  put(fx, "a.txt", "new content");
  json_t *payload = json_pack("{s:{s:s, s:s}}", "applied_check", "path", "a.txt", "sha256", SHA_ABC);
  start(fx, step_msg("write_file_tool", json_pack("{s:s, s:s}", "path", "a.txt", "content", "x"), payload), false);
  proto_msg_t *m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_DONE);
  assert_string_equal(m->text, "already applied (checkpoint ledger): a.txt");
  assert_true(json_is_true(json_object_get(m->payload, "already_applied")));
  char *got = slurp(fx, "a.txt");
  assert_string_equal(got, "new content");
  free(got);
  proto_msg_destroy(&m);
  /* the pre-image is still there: the step runs normally */
  put(fx, "a.txt", "abc");
  payload = json_pack("{s:{s:s, s:s}}", "applied_check", "path", "a.txt", "sha256", SHA_ABC);
  start(fx, step_msg("write_file_tool", json_pack("{s:s, s:s}", "path", "a.txt", "content", "x"), payload), false);
  m = next(fx);
  assert_int_equal(m->type, PROTO_CHECKPOINT);
  proto_msg_destroy(&m);
  ack(fx, 1);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_DONE);
  assert_null(json_object_get(m->payload, "already_applied"));
  proto_msg_destroy(&m);
}

static void test_step_read_only_and_unknown_tools(void **state) {
  fx_t *fx = *state;
  put(fx, "a.txt", "abc");
  start(fx, step_msg("read_file", json_pack("{s:s}", "path", "a.txt"), NULL), false);
  proto_msg_t *m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_DONE);
  assert_non_null(strstr(m->text, "abc"));
  assert_null(json_object_get(m->payload, "changed"));
  proto_msg_destroy(&m);
  start(fx, step_msg("launch_rockets", json_object(), NULL), false);
  m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_STEP_FAILED);
  assert_string_equal(m->code, "unknown_tool");
  proto_msg_destroy(&m);
}

static proto_msg_t *restore_msg(int64_t seq, const char *kind, const char *path, bool existed, const char *content,
                                json_t *payload) {
  proto_msg_t *m = proto_msg_new(PROTO_RESTORE);
  PROTO_SET(m, workflow, 7);
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_kind, kind);
  if (path)
    proto_set_str(m, PROTO_F_path, path);
  if (strcmp(kind, "file") == 0)
    PROTO_SET(m, existed, existed);
  if (content)
    proto_set_str(m, PROTO_F_content, content);
  if (payload)
    proto_set_json(m, PROTO_F_payload, payload);
  return m;
}

/* Runs one restore and returns the restored message. */
static proto_msg_t *restore(fx_t *fx, proto_msg_t *msg) {
  start(fx, msg, true);
  proto_msg_t *m = next(fx);
  finish(fx);
  assert_int_equal(m->type, PROTO_RESTORED);
  assert_int_equal(m->workflow, 7);
  return m;
}

static void test_restore_messages(void **state) {
  fx_t *fx = *state;
  proto_msg_t *m = restore(fx, restore_msg(1, "file", "src/a.c", true, "YWJj", NULL));
  assert_int_equal(m->seq, 1);
  assert_false(PROTO_HAS(m, code));
  assert_string_equal(m->path, "src/a.c");
  assert_string_equal(m->sha256, SHA_ABC);
  proto_msg_destroy(&m);
  m = restore(fx, restore_msg(2, "file", "../x", true, "YWJj", NULL));
  assert_string_equal(m->code, "refused");
  proto_msg_destroy(&m);
  m = restore(fx, restore_msg(3, "file", "b.txt", true, "not base64!", NULL));
  assert_string_equal(m->code, "bad_content");
  proto_msg_destroy(&m);
  put(fx, "extra.txt", "e");
  m = restore(fx, restore_msg(4, "prune", NULL, false, NULL, json_pack("{s:[s]}", "keep", "src/a.c")));
  assert_false(PROTO_HAS(m, code));
  assert_true(json_has(json_object_get(m->payload, "deleted"), "extra.txt"));
  proto_msg_destroy(&m);
  m = restore(fx, restore_msg(5, "file", "src/a.c", false, NULL, NULL));
  assert_string_equal(m->sha256, "");
  assert_false(exists(fx, "src/a.c"));
  proto_msg_destroy(&m);
  m = restore(fx, restore_msg(6, "prune", NULL, false, NULL, NULL));
  assert_string_equal(m->code, "bad_request");
  proto_msg_destroy(&m);
}

/* ---- a restore that expects what the workflow left there --------------------------------- */

typedef struct {
  const char *name;
  const char *before; /* p before: "file:TEXT", "link:TARGET", "dir", "dir+" (holding a file), "" (absent) */
  bool existed;       /* the restore: write the pre-image (type, content: TEXT) or remove */
  const char *type, *content;
  const char *expect; /* "sha:TEXT", a state, or NULL: none */
  bool conflict;      /* kept and reported */
  const char *after;  /* p's state afterwards: "sha:TEXT" or a state */
} expect_case_t;

static const expect_case_t expect_cases[] = {
    {"what the workflow wrote is still there: restored", "file:abc", true, NULL, "xyz", "sha:abc", false, "sha:xyz"},
    {"other work changed it since: kept, a conflict", "file:abc", true, NULL, "xyz", "sha:mine", true, "sha:abc"},
    {"a file the workflow made, as it made it: removed", "file:abc", false, NULL, NULL, "sha:abc", false, ""},
    {"removed by other work since: stays removed", "", true, NULL, "xyz", "sha:abc", true, ""},
    {"a symlink the workflow removed comes back", "", true, "symlink", "a.txt", "", false, "symlink:a.txt"},
    {"a retargeted symlink points back", "link:b.txt", true, "symlink", "a.txt", "symlink:b.txt", false,
     "symlink:a.txt"},
    {"a symlink the workflow made goes (not followed)", "link:a.txt", false, NULL, NULL, "symlink:a.txt", false, ""},
    {"a directory the workflow removed comes back", "", true, "dir", NULL, "", false, "dir"},
    {"an empty directory the workflow made goes", "dir", false, NULL, NULL, "dir", false, ""},
    {"a directory the workflow made that holds other work stays", "dir+", false, NULL, NULL, "dir", true, "dir"},
    {"no expect: restored whatever is there", "file:other", true, NULL, "xyz", NULL, false, "sha:xyz"},
    {"restored already (a rollback started again): no conflict", "file:xyz", true, NULL, "xyz", "sha:abc", false,
     "sha:xyz"},
    {"removed already: no conflict", "", false, NULL, NULL, "sha:abc", false, ""},
    {"a symlink back already: no conflict", "link:a.txt", true, "symlink", "a.txt", "", false, "symlink:a.txt"},
};

/* A case's state notation as snap_state says it ("sha:TEXT": the hash of TEXT). */
static void case_state(const char *spec, char *out, size_t outlen) {
  if (strncmp(spec, "sha:", 4) == 0)
    snap_sha256(spec + 4, strlen(spec + 4), out);
  else
    snprintf(out, outlen, "%s", spec);
}

/* Makes p as a case's before says. */
static void make_before(fx_t *fx, const char *before) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/p", fx->ws);
  put(fx, "a.txt", "a");
  if (strncmp(before, "file:", 5) == 0)
    put(fx, "p", before + 5);
  else if (strncmp(before, "link:", 5) == 0)
    wsln(fx, before + 5, "p");
  else if (strncmp(before, "dir", 3) == 0)
    assert_int_equal(mkdir(path, 0755), 0);
  if (strcmp(before, "dir+") == 0)
    put(fx, "p/other.txt", "mine");
}

static void test_restore_expects_what_the_workflow_left(void **state) {
  for (size_t i = 0; i < sizeof expect_cases / sizeof expect_cases[0]; i++) {
    const expect_case_t *c = &expect_cases[i];
    setup(state);
    fx_t *fx = *state;
    make_before(fx, c->before);
    char want[PATH_MAX + 16], expect[PATH_MAX + 16], now[PATH_MAX + 16];
    json_t *payload = json_object();
    if (c->expect) {
      case_state(c->expect, expect, sizeof expect);
      json_object_set_new(payload, "expect", json_string(expect));
    }
    if (c->type)
      json_object_set_new(payload, "type", json_string(c->type));
    char *b64 = c->content ? snap_b64_encode(c->content, strlen(c->content)) : NULL;
    proto_msg_t *m = restore(fx, restore_msg(1, "file", "p", c->existed, b64, payload));
    free(b64);
    if (PROTO_HAS(m, code))
      fail_msg("%s: failed: %s: %s", c->name, m->code, m->detail);
    if (json_is_true(json_object_get(m->payload, "conflict")) != c->conflict)
      fail_msg("%s: conflict %s", c->name, c->conflict ? "not reported" : "reported");
    mode_t mode;
    case_state(c->after, want, sizeof want);
    assert_int_equal(snap_state(&fx->q.ws, "p", now, sizeof now, &mode), 0);
    if (strcmp(now, want) != 0)
      fail_msg("%s: p is \"%s\", want \"%s\"", c->name, now, want);
    if (!c->conflict && strcmp(m->sha256, now) != 0)
      fail_msg("%s: the answer says \"%s\", p is \"%s\"", c->name, m->sha256, now);
    if (strcmp(c->before, "dir+") == 0 && !exists(fx, "p/other.txt"))
      fail_msg("%s: the other work is gone", c->name);
    proto_msg_destroy(&m);
    teardown(state);
  }
}

int main(void) {
  log_setup("test_step", false, LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha256_known_values),
      cmocka_unit_test_setup_teardown(test_sha256_file_absent_is_empty, setup, teardown),
      cmocka_unit_test(test_base64_round_trips),
      cmocka_unit_test(test_base64_decode_cases),
      cmocka_unit_test(test_norm_table),
      cmocka_unit_test(test_utf8_table),
      cmocka_unit_test_setup_teardown(test_list_skips_git_symlinks_and_specials, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_bounds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_cancel_and_bad_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_depth_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_target_names_the_real_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_target_names_the_real_file, setup_fallback, teardown),
      cmocka_unit_test_setup_teardown(test_read_file_states, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restore_file_writes_and_removes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restore_file_writes_and_removes, setup_fallback, teardown),
      cmocka_unit_test_setup_teardown(test_restore_file_refuses_escapes, setup, teardown),
      cmocka_unit_test(test_restore_expects_what_the_workflow_left),
      cmocka_unit_test_setup_teardown(test_restore_file_refuses_escapes, setup_fallback, teardown),
      cmocka_unit_test_setup_teardown(test_prune_keeps_listed_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_write_checkpoints_then_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_checkpoint_of_the_largest_file_fits_a_frame, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_edit_not_found_is_done_with_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_cancel_while_waiting_for_ack, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_bash_snapshot_then_runs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_bash_refused_when_workspace_too_big, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_applied_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_read_only_and_unknown_tools, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restore_messages, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
