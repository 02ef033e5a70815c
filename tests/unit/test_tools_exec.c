/* execute_bash: exit codes, the workspace as cwd, stdin and fds, the
 * environment scrub, resource limits, timeouts and /stop that leave nothing
 * running (SIGTERM ignored, background and setsid children), output cap,
 * several commands at once, no zombies. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "test_tools.h"

#define ASSERT_HAS(text, s) assert_non_null(strstr((text), (s)))
#define ASSERT_LACKS(text, s) assert_null(strstr((text), (s)))

/* The test process has no children left: nothing unreaped. */
static void assert_no_children(void) {
  errno = 0;
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
  assert_int_equal(errno, ECHILD);
}

/* True when pid is gone or a zombie (dead, waiting for a reaper that is not us). */
static bool pid_dead(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return true;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  return p && (p[2] == 'Z' || p[2] == 'X');
}

/* Every "name=<pid>" in text must be a dead process; returns how many there were. */
static int assert_pids_dead(const char *text) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, "pid=")); p += 4) {
    pid_t pid = (pid_t)atoi(p + 4);
    assert_true(pid > 1);
    if (!pid_dead(pid))
      fail_msg("process %d survived:\n%s", (int)pid, text);
    n++;
  }
  return n;
}

void test_exec_basic(void **state) {
  fx_t *fx = *state;
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s}", "command", "echo hello; echo oops >&2; exit 3");
  assert_string_equal(r.text, "hello\noops\n[exit 3]\n");
  assert_int_equal(r.exit_code, 3);
  assert_true(r.is_error);
  assert_false(r.timed_out);
  assert_string_equal(r.summary, "exit 3, 2 lines");
  tool_result_free(&r);
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "printf 'no newline'");
  assert_string_equal(r.text, "no newline\n[exit 0]\n");
  assert_false(r.is_error);
  assert_int_equal(r.exit_code, 0);
  assert_string_equal(r.summary, "exit 0, 1 line");
  tool_result_free(&r);
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "true");
  assert_string_equal(r.text, "(no output)\n[exit 0]\n");
  tool_result_free(&r);
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "[[ 1 == 1 ]] && echo bash"); /* bash, not sh */
  assert_string_equal(r.text, "bash\n[exit 0]\n");
  tool_result_free(&r);
  assert_no_children();
}

void test_exec_cwd_stdin_fds(void **state) {
  fx_t *fx = *state;
  fx_put(fx, "marker.txt", "m", 1);
  int leak = open("/dev/null", O_RDONLY); /* not O_CLOEXEC: must not reach the command */
  assert_true(leak >= 0);
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s}", "command",
                            "pwd; echo \"PWD=$PWD\"; ls; cat; ls /proc/self/fd | sort -n | tr '\\n' ' '");
  char want[PATH_MAX * 3];
  snprintf(want, sizeof want, "%s\nPWD=%s\nmarker.txt\n0 1 2 3 \n[exit 0]\n", fx->ws, fx->ws);
  assert_string_equal(r.text, want);
  tool_result_free(&r);
  close(leak);
}

void test_exec_env_scrub(void **state) {
  fx_t *fx = *state;
  const char *scrub[] = {"MY_CUSTOM", NULL};
  const char *secrets[] = {"sk-supersecretvalue123", "", NULL};
  tools_opts_t o = {.workspace = fx->ws, .scrub_env = scrub, .secret_values = secrets};
  char err[256];
  tools_t *t = tools_new(&o, err, sizeof err);
  assert_non_null(t);
  struct {
    const char *name, *value;
    bool kept;
  } vars[] = {
      {"OPENAI_API_KEY", "k1", false},
      {"FOO_API_KEY", "k2", false},
      {"GITHUB_TOKEN", "k3", false},
      {"CADRE_KEY", "k4", false},
      {"CADRE_BROKER_KEY", "k5", false},
      {"DB_PASSWORD", "k6", false},
      {"APP_SECRET", "k7", false},
      {"MY_CUSTOM", "k8", false},
      {"INNOCENT", "sk-supersecretvalue123", false},
      {"AUTH_HEADER", "Bearer sk-supersecretvalue123", false},
      {"lm_studio_api_key", "k9", false},
      {"KEEP_ME", "visible", true},
      {"PATH", getenv("PATH"), true},
  };
  size_t n = sizeof vars / sizeof vars[0];
  for (size_t i = 0; i < n; i++)
    setenv(vars[i].name, vars[i].value, 1);
  tool_result_t r;
  tools_run(t, "execute_bash", "{\"command\": \"env\"}", NULL, &r);
  for (size_t i = 0; i < n; i++) {
    char line[512];
    snprintf(line, sizeof line, "%s=%s\n", vars[i].name, vars[i].value);
    if ((strstr(r.text, line) != NULL) != vars[i].kept)
      fail_msg("%s: kept %d wanted %d", vars[i].name, !vars[i].kept, vars[i].kept);
  }
  ASSERT_LACKS(r.text, "supersecret");
  ASSERT_HAS(r.text, "CADRE_RUN_ID=");
  tool_result_free(&r);
  for (size_t i = 0; i < n - 1; i++)
    unsetenv(vars[i].name);
  tools_destroy(&t);
}

void test_exec_rlimits(void **state) {
  fx_t *fx = *state;
  tool_result_t r =
      fx_runp(fx, "execute_bash", "{s:s, s:i}", "command",
              "echo cpu=$(ulimit -t) hcpu=$(ulimit -Ht) fsize=$(ulimit -f) core=$(ulimit -c) nproc=$(ulimit -u)",
              "timeout", 10);
  ASSERT_HAS(r.text, "cpu=15 hcpu=20 fsize=1048576 core=0 nproc=");
  const char *np = strstr(r.text, "nproc=") + 6;
  assert_true(atol(np) >= 512); /* the uid's tasks + 512 */
  tool_result_free(&r);
  /* the file size limit holds: a write beyond it fails */
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "ulimit -f 1; head -c 4096 /dev/zero > big.bin; echo rc=$?");
  ASSERT_HAS(r.text, "rc=153"); /* 128 + SIGXFSZ */
  tool_result_free(&r);
}

void test_exec_timeout_kills_all(void **state) {
  fx_t *fx = *state;
  const char *cmd = "trap '' TERM\n"
                    "sleep 1000 & echo bg pid=$!\n"
                    "setsid sleep 1000 & echo setsid pid=$!\n"
                    "setsid sh -c 'exec sleep 1000' >/dev/null 2>&1 </dev/null & echo quiet-setsid pid=$!\n"
                    "( trap '' TERM; exec sleep 1000 ) & echo subshell pid=$!\n"
                    "echo shell pid=$$\n"
                    "while :; do sleep 0.05; done";
  int64_t t0 = fx_now_ms();
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s, s:i}", "command", cmd, "timeout", 2);
  int64_t took = fx_now_ms() - t0;
  assert_true(r.timed_out);
  assert_true(r.is_error);
  assert_int_equal(r.exit_code, -1);
  ASSERT_HAS(r.text, "[killed by signal 9 after timeout of 2 s]");
  assert_string_equal(r.summary, "killed after timeout of 2 s");
  assert_int_equal(assert_pids_dead(r.text), 5);
  assert_true(took >= 2000 && took < 8000);
  tool_result_free(&r);
  assert_no_children();
  /* a command that dies at SIGTERM is reported so */
  r = fx_runp(fx, "execute_bash", "{s:s, s:i}", "command", "echo pid=$$; exec sleep 100", "timeout", 1);
  ASSERT_HAS(r.text, "[killed by signal 15 after timeout of 1 s]");
  assert_pids_dead(r.text);
  tool_result_free(&r);
}

void test_exec_background_after_exit(void **state) {
  fx_t *fx = *state;
  int64_t t0 = fx_now_ms();
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s}", "command",
                            "sleep 1000 & echo pid=$!; setsid sleep 1000 >/dev/null 2>&1 & echo pid=$!; echo done");
  assert_true(fx_now_ms() - t0 < 5000);
  assert_false(r.timed_out);
  assert_int_equal(r.exit_code, 0);
  ASSERT_HAS(r.text, "done\n[exit 0]\n[2 background processes still running when the command ended were stopped]");
  assert_int_equal(assert_pids_dead(r.text), 2);
  tool_result_free(&r);
  assert_no_children();
}

typedef struct {
  fx_t *fx;
  atomic_bool cancel;
  tool_result_t r;
  char flag[PATH_MAX];
} canceller_t;

static void *cancel_run(void *arg) {
  canceller_t *c = arg;
  tools_run(c->fx->t, "execute_bash",
            "{\"command\": \"trap '' TERM; echo pid=$$; sleep 1000 & echo pid=$!; touch started.flag; wait\"}",
            &c->cancel, &c->r);
  return NULL;
}

static bool file_exists(void *path) {
  return access(path, F_OK) == 0;
}

void test_exec_cancel(void **state) {
  fx_t *fx = *state;
  canceller_t c = {.fx = fx};
  atomic_init(&c.cancel, false);
  fx_path(fx, "started.flag", c.flag, sizeof c.flag);
  pthread_t th;
  pthread_create(&th, NULL, cancel_run, &c);
  assert_true(fx_wait_until(file_exists, c.flag, 10000));
  int64_t t0 = fx_now_ms();
  atomic_store(&c.cancel, true);
  pthread_join(th, NULL);
  assert_true(fx_now_ms() - t0 < 4000);
  ASSERT_HAS(c.r.text, "[stopped by the user: killed by signal 9]");
  assert_string_equal(c.r.summary, "stopped by the user");
  assert_false(c.r.timed_out);
  assert_int_equal(assert_pids_dead(c.r.text), 2);
  tool_result_free(&c.r);
  assert_no_children();
}

void test_exec_output_cap(void **state) {
  fx_t *fx = *state;
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s}", "command", "seq 1 100000; echo TAIL_END; exit 4");
  assert_true(strncmp(r.text, "1\n2\n3\n", 6) == 0);
  ASSERT_HAS(r.text, "\n100000\nTAIL_END\n[exit 4]\n");
  ASSERT_HAS(r.text, " bytes omitted ...]\n");
  assert_true(strlen(r.text) < TOOLS_OUTPUT_CAP + 200);
  ASSERT_HAS(r.summary, "exit 4, 100001 lines");
  /* the omitted count adds up: seq 1 100000 prints 588895 bytes, plus "TAIL_END\n" */
  const char *m = strstr(r.text, "[... ");
  long omitted = atol(m + 5);
  assert_int_equal(omitted, 588895 + 9 - TOOLS_OUTPUT_CAP);
  tool_result_free(&r);
  /* a small cap from the options */
  char err[256];
  tools_opts_t o = {.workspace = fx->ws, .output_cap = 1000};
  tools_t *t = tools_new(&o, err, sizeof err);
  tools_run(t, "execute_bash", "{\"command\": \"head -c 100000 /dev/zero | tr '\\\\0' a; echo; echo last\"}", NULL, &r);
  assert_true(strncmp(r.text, "aaaa", 4) == 0);
  ASSERT_HAS(r.text, "\n[... 99006 bytes omitted ...]\naaaa");
  ASSERT_HAS(r.text, "a\nlast\n[exit 0]\n");
  tool_result_free(&r);
  tools_destroy(&t);
}

void test_exec_default_timeout(void **state) {
  fx_t *fx = *state;
  char err[256];
  tools_opts_t o = {.workspace = fx->ws, .default_timeout_s = 1};
  tools_t *t = tools_new(&o, err, sizeof err);
  tool_result_t r;
  tools_run(t, "execute_bash", "{\"command\": \"echo pid=$$; sleep 30\"}", NULL, &r);
  ASSERT_HAS(r.text, "after timeout of 1 s]");
  assert_true(r.timed_out);
  assert_pids_dead(r.text);
  tool_result_free(&r);
  tools_destroy(&t);
  assert_no_children();
}

typedef struct {
  fx_t *fx;
  int id, bad;
} worker_t;

static void *exec_worker(void *arg) {
  worker_t *w = arg;
  for (int i = 0; i < 5; i++) {
    char args[128], want[64];
    snprintf(args, sizeof args, "{\"command\": \"echo worker-%d-%d; exit %d\"}", w->id, i, w->id);
    snprintf(want, sizeof want, "worker-%d-%d\n[exit %d]\n", w->id, i, w->id);
    tool_result_t r;
    tools_run(w->fx->t, "execute_bash", args, NULL, &r);
    if (strcmp(r.text, want) != 0 || r.exit_code != w->id)
      w->bad++;
    tool_result_free(&r);
  }
  return NULL;
}

void test_exec_concurrent(void **state) {
  fx_t *fx = *state;
  worker_t ws[6];
  pthread_t th[6];
  for (int i = 0; i < 6; i++) {
    ws[i] = (worker_t){fx, i, 0};
    pthread_create(&th[i], NULL, exec_worker, &ws[i]);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(ws[i].bad, 0);
  }
  assert_no_children();
}

void test_exec_bad_args(void **state) {
  fx_t *fx = *state;
  const char *cases[][2] = {
      {"{\"command\": \"\"}", "command is empty"},
      {"{\"command\": \"  \\n\"}", "command is empty"},
      {"{\"command\": \"echo a\\u0000rm -rf /\"}", "command contains a NUL byte"},
      {"{\"command\": [\"ls\"]}", "argument \"command\" of execute_bash must be a string, got an array"},
      {"{\"command\": \"ls\", \"timeout\": \"10\"}", "argument \"timeout\" of execute_bash must be an integer"},
      {"{\"command\": \"ls\", \"timeout\": 0}", "argument \"timeout\" of execute_bash must be between 1 and"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tool_result_t r = fx_run(fx, "execute_bash", cases[i][0]);
    assert_true(r.is_error);
    assert_int_equal(r.exit_code, -1);
    if (!strstr(r.text, cases[i][1]))
      fail_msg("%s: %s", cases[i][0], r.text);
    tool_result_free(&r);
  }
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s, s:f}", "command", "echo ok", "timeout", 5.0);
  assert_string_equal(r.text, "ok\n[exit 0]\n");
  tool_result_free(&r);
}

void test_exec_signal_and_binary(void **state) {
  fx_t *fx = *state;
  tool_result_t r = fx_runp(fx, "execute_bash", "{s:s}", "command", "echo before; kill -SEGV $$");
  assert_string_equal(r.text, "before\n[killed by signal 11 (SIGSEGV)]\n");
  assert_int_equal(r.exit_code, -1);
  tool_result_free(&r);
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "ls core* 2>/dev/null | wc -l");
  assert_string_equal(r.text, "0\n[exit 0]\n");
  tool_result_free(&r);
  /* NUL bytes and invalid UTF-8 come back as U+FFFD (fx_run checks the text is valid UTF-8) */
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "printf 'a\\000b\\377c\\n'");
  assert_string_equal(r.text, "a\xEF\xBF\xBD"
                              "b\xEF\xBF\xBD"
                              "c\n[exit 0]\n");
  tool_result_free(&r);
}
