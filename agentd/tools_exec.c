/* tools_exec: execute_bash (see tools.h).
 *
 * The command runs as `/bin/bash -c command` (or /bin/sh) in a child that is
 * the leader of a new session and process group, in the workspace, with
 * stdin from /dev/null, stdout and stderr into one pipe (O_CLOEXEC, so the
 * children of other threads never hold it), an environment without API keys
 * and secrets, and resource limits: CPU time (timeout + 5 s soft, + 10 s
 * hard), file size (1 GiB), processes (the uid's current tasks + 512; not
 * enforced by the kernel for root in the initial user namespace), no core
 * files. The parent polls the pipe until the shell has exited and the pipe is
 * closed, the deadline passes, or *cancel is set; then every process the
 * command started (see tools_proc.h) gets SIGTERM, and SIGKILL after a grace
 * period of EXEC_GRACE_MS, until none is left. Background processes do not
 * outlive the command. The shell is reaped with waitpid on its own pid (no
 * SIGCHLD handler), and detected as exited with WNOWAIT first so that its pid,
 * the group id, cannot be recycled while the group is signalled.
 *
 * With a sandbox (sandbox.h; cadre-agentd's default) the child execs bwrap
 * instead of the shell, with the same limits plus RLIMIT_AS, after joining
 * the command's pids cgroup when there is one: the command then runs in its
 * own PID namespace, which dies with bwrap (the end of the shell, a kill
 * above, or the daemon's death), so nothing it started can outlive it.
 * Without one (tests; --no-sandbox) commands run as described above. With
 * no_commands set (the sandbox could not be made) nothing runs.
 */
#include "sandbox.h"
#include "tools_internal.h"
#include "tools_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define EXEC_POLL_MS 100   /* cancel is looked at this often */
#define EXEC_LINGER_MS 200 /* after the shell exits, output still read this long */
#define EXEC_GRACE_MS 1000 /* SIGTERM, then SIGKILL */
#define EXEC_KILL_MS 3000  /* SIGKILL rounds until nothing is left */
#define EXEC_FSIZE (1ull << 30)
#define EXEC_READ_BUF 65536
#define EXEC_NPROC_HEADROOM 512
#define MARKER_NAME "CADRE_RUN_ID"

extern char **environ;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- output capture: the head and the tail ------------------------------------- */

typedef struct {
  char *head, *tail; /* half of the cap each; tail is a ring */
  size_t half, head_len, tail_pos, tail_len;
  size_t total, newlines;
  char last;
} capture_t;

static bool capture_init(capture_t *c, size_t cap) {
  memset(c, 0, sizeof *c);
  c->half = cap / 2;
  c->head = malloc(c->half);
  c->tail = malloc(c->half);
  return c->head && c->tail;
}

static void capture_free(capture_t *c) {
  free(c->head);
  free(c->tail);
}

static void capture_add(capture_t *c, const char *data, size_t n) {
  c->total += n;
  for (const char *p = data; (p = memchr(p, '\n', n - (size_t)(p - data))); p++)
    c->newlines++;
  if (n)
    c->last = data[n - 1];
  size_t h = c->head_len < c->half ? c->half - c->head_len : 0;
  if (h > n)
    h = n;
  memcpy(c->head + c->head_len, data, h);
  c->head_len += h;
  data += h;
  n -= h;
  if (n > c->half) {
    data += n - c->half;
    n = c->half;
  }
  for (size_t i = 0; i < n; i++) {
    c->tail[c->tail_pos] = data[i];
    c->tail_pos = (c->tail_pos + 1) % c->half;
  }
  c->tail_len = c->tail_len + n > c->half ? c->half : c->tail_len + n;
}

/* The captured text: head, "[... N bytes omitted ...]" when some were, tail
 * (no UTF-8 character split at the cut). */
static void capture_render(const capture_t *c, sbuf_t *b) {
  size_t omitted = c->total - c->head_len - c->tail_len;
  if (!omitted) {
    sbuf_add(b, c->head, c->head_len);
  } else {
    size_t head = tools_utf8_complete(c->head, c->head_len);
    sbuf_add(b, c->head, head);
    sbuf_printf(b, "%s[... %zu bytes omitted ...]\n", head && c->head[head - 1] != '\n' ? "\n" : "",
                omitted + c->head_len - head);
  }
  size_t start = (c->tail_pos + c->half - c->tail_len) % c->half, skip = 0;
  sbuf_t tail = {0};
  size_t first = c->tail_len < c->half - start ? c->tail_len : c->half - start;
  sbuf_add(&tail, c->tail + start, first);
  sbuf_add(&tail, c->tail, c->tail_len - first);
  while (omitted && skip < tail.len && skip < 3 && ((unsigned char)tail.s[skip] & 0xC0) == 0x80)
    skip++;
  if (skip < tail.len)
    sbuf_add(b, tail.s + skip, tail.len - skip);
  sbuf_free(&tail);
}

/* ---- the environment ------------------------------------------------------------- */

static const char *const SCRUB_SUFFIXES[] = {"_API_KEY",  "_APIKEY", "_TOKEN",      "_SECRET",      "_SECRET_KEY",
                                             "_PASSWORD", "_PASSWD", "_ACCESS_KEY", "_PRIVATE_KEY", NULL};
static const char *const SCRUB_NAMES[] = {"CADRE_KEY",
                                          "CADRE_BROKER_KEY",
                                          "OPENAI_API_KEY",
                                          "OLLAMA_API_KEY",
                                          "LM_STUDIO_API_KEY",
                                          "API_KEY",
                                          "TOKEN",
                                          "SECRET",
                                          "PASSWORD",
                                          "PWD",
                                          "OLDPWD",
                                          MARKER_NAME,
                                          NULL};

/* True when the variable name (n bytes) must not reach commands. */
static bool scrub_name(const tools_t *t, const char *name, size_t n) {
  for (size_t i = 0; SCRUB_SUFFIXES[i]; i++) {
    size_t s = strlen(SCRUB_SUFFIXES[i]);
    if (n >= s && strncasecmp(name + n - s, SCRUB_SUFFIXES[i], s) == 0)
      return true;
  }
  for (size_t i = 0; SCRUB_NAMES[i]; i++)
    if (strlen(SCRUB_NAMES[i]) == n && strncasecmp(name, SCRUB_NAMES[i], n) == 0)
      return true;
  for (size_t i = 0; t->scrub_env && t->scrub_env[i]; i++)
    if (strlen(t->scrub_env[i]) == n && strncmp(name, t->scrub_env[i], n) == 0)
      return true;
  return false;
}

/* True when value holds one of the secret values (equal, or containing one of 8+ bytes). */
static bool holds_secret(const tools_t *t, const char *value) {
  for (size_t i = 0; t->secret_values && t->secret_values[i]; i++) {
    const char *s = t->secret_values[i];
    if (*s && (strcmp(value, s) == 0 || (strlen(s) >= 8 && strstr(value, s))))
      return true;
  }
  return false;
}

/* True when the variable's value is a secret to scrub from results too (not PWD and the like). */
static bool secret_name(const tools_t *t, const char *name, size_t n) {
  static const char *const plain[] = {"PWD", "OLDPWD", MARKER_NAME, NULL};
  for (size_t i = 0; plain[i]; i++)
    if (strlen(plain[i]) == n && strncasecmp(name, plain[i], n) == 0)
      return false;
  return scrub_name(t, name, n);
}

// The secret values: a copy of given plus the environment's values of scrubbed names.
char **tools_exec_secrets(const tools_t *t, const char *const *given) {
  size_t n = 0, e = 0;
  while (given && given[n])
    n++;
  while (environ && environ[e])
    e++;
  char **list = calloc(n + e + 1, sizeof *list);
  size_t k = 0;
  for (size_t i = 0; list && i < n; i++)
    if (!(list[k++] = strdup(given[i])))
      k--;
  for (size_t i = 0; list && i < e; i++) {
    const char *v = environ[i], *eq = strchr(v, '=');
    if (eq && eq[1] && secret_name(t, v, (size_t)(eq - v)) && !(list[k++] = strdup(eq + 1)))
      k--;
  }
  return list;
}

static void free_env(char **env) {
  for (size_t i = 0; env && env[i]; i++)
    free(env[i]);
  free(env);
}

/* The command's environment: ours without secrets, with PWD and the marker. */
static char **build_env(const tools_t *t, const char *marker) {
  size_t n = 0;
  while (environ && environ[n])
    n++;
  char **env = calloc(n + 3, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; env && i < n; i++) {
    const char *e = environ[i], *eq = strchr(e, '=');
    if (!eq || eq == e || scrub_name(t, e, (size_t)(eq - e)) || holds_secret(t, eq + 1))
      continue;
    if (!(env[k++] = strdup(e)))
      k--;
  }
  if (env) {
    size_t len = strlen(t->ws.root_real) + 5;
    if ((env[k] = malloc(len)))
      snprintf(env[k++], len, "PWD=%s", t->ws.root_real);
    env[k] = strdup(marker);
  }
  return env;
}

/* ---- the child ----------------------------------------------------------------------- */

#define EXEC_LIMITS 5

typedef struct {
  char **envp;
  char *argv_bash[4], *argv_sh[4];
  char **argv; /* the sandbox's (bwrap ... -- shell -c command), or NULL: argv_bash, then argv_sh */
  struct rlimit lim[EXEC_LIMITS];
  int res[EXEC_LIMITS];
  int null_fd, out_fd, root_fd;
  int in_fd, err_fd; /* the child's stdin and stderr: null_fd and out_fd for commands */
  int cgroup_fd;     /* the command's pids cgroup's cgroup.procs, or -1 */
  char *cgroup_dir;
  sandbox_t *sandbox;
} spawn_t;

/* Lowers resource res to soft / hard (never raises a current limit; soft <= hard). */
static void limit(spawn_t *s, int i, int res, rlim_t soft, rlim_t hard) {
  struct rlimit cur;
  s->res[i] = res;
  if (getrlimit(res, &cur) != 0)
    cur.rlim_cur = cur.rlim_max = RLIM_INFINITY;
  s->lim[i].rlim_cur = soft < cur.rlim_cur ? soft : cur.rlim_cur;
  s->lim[i].rlim_max = hard < cur.rlim_max ? hard : cur.rlim_max;
}

/* In the child after fork: only async-signal-safe calls. */
static void __attribute__((noreturn)) child_exec(const spawn_t *s) {
  static const char msg[] = "cadre: cannot run /bin/bash or /bin/sh\n";
  setsid();
  /* The shell dies with the daemon (kill -9 included): a step that must run
   * again after the daemon died is not also finished by an orphan. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (dup2(s->in_fd, 0) < 0 || dup2(s->out_fd, 1) < 0 || dup2(s->err_fd, 2) < 0)
    _exit(126);
  if (fchdir(s->root_fd) != 0)
    _exit(126);
  if (s->cgroup_fd >= 0 && write(s->cgroup_fd, "0", 1) != 1)
    _exit(126); /* the process limit could not be applied */
  for (int i = 0; i < EXEC_LIMITS; i++)
    setrlimit(s->res[i], &s->lim[i]);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    sigaction(sig, &dfl, NULL);
  if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
    for (int fd = 3; fd < 4096; fd++)
      close(fd);
  if (s->argv) {
    execve(s->argv[0], s->argv, s->envp);
    static const char no_bwrap[] = "cadre: cannot run the sandbox (bwrap)\n";
    ssize_t w = write(2, no_bwrap, sizeof no_bwrap - 1);
    (void)w;
    _exit(127);
  }
  execve("/bin/bash", s->argv_bash, s->envp);
  execve("/bin/sh", s->argv_sh, s->envp);
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  _exit(127);
}

/* ---- the parent ---------------------------------------------------------------------- */

typedef enum { END_EXIT, END_TIMEOUT, END_CANCEL } end_t;

typedef struct {
  pid_t pid;
  int fd;    /* the pipe's read end; -1 after EOF */
  int pidfd; /* the shell's, -1 when the kernel has none */
  capture_t cap;
  proc_job_t job;
  bool exited;
  bool lost; /* the shell was reaped elsewhere: its status is unknown */
  int status;
  int leftovers; /* processes still running after the shell exited */
  char *buf;     /* EXEC_READ_BUF bytes for reading the pipe */
  bool pipe_stuck;
  bool sandboxed; /* bwrap reports a command killed by signal N as exit 128+N */
} bash_run_t;

/* True when the shell has exited (not reaped: WNOWAIT keeps its pid, the group id, taken). */
static bool shell_exited(bash_run_t *r) {
  if (r->exited)
    return true;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int rc = waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG | WNOWAIT);
  if (rc != 0 && errno == ECHILD)
    r->lost = true; /* reaped by someone else (SIGCHLD set to SIG_IGN?) */
  r->exited = r->lost || (rc == 0 && si.si_pid == r->pid);
  return r->exited;
}

/* Reads what the pipe holds, waiting at most ms for output or (with a pidfd)
 * for the shell's exit. */
static void pump(bash_run_t *r, int ms) {
  struct pollfd pfd[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = r->exited ? -1 : r->pidfd, .events = POLLIN}};
  if (r->fd < 0 && pfd[1].fd < 0) {
    struct timespec ts = {0, (ms < 10 ? ms : 10) * 1000000L};
    nanosleep(&ts, NULL); /* no pidfd (kernel < 5.3): look at the shell every 10 ms */
    return;
  }
  if (poll(pfd, 2, ms < 0 ? 0 : ms) <= 0)
    return;
  if (pfd[1].revents)
    shell_exited(r);
  if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
    return;
  for (int rounds = 0; rounds < 16; rounds++) { /* at most 1 MiB: the caller looks at the clock */
    ssize_t n = read(r->fd, r->buf, EXEC_READ_BUF);
    if (n < 0 && errno == EINTR)
      continue;
    if (n > 0) {
      capture_add(&r->cap, r->buf, (size_t)n);
      continue;
    }
    if (n == 0) {
      close(r->fd);
      r->fd = -1;
    }
    return;
  }
}

/* Polls until the shell exited and the pipe closed, the deadline, or cancel. */
static end_t wait_command(bash_run_t *r, int64_t deadline, atomic_bool *cancel) {
  int64_t exited_at = -1;
  for (;;) {
    int64_t now = now_ms();
    if (cancel && atomic_load(cancel))
      return END_CANCEL;
    if (now >= deadline)
      return END_TIMEOUT;
    int64_t wait = deadline - now < EXEC_POLL_MS ? deadline - now : EXEC_POLL_MS;
    if (exited_at >= 0 && wait > exited_at + EXEC_LINGER_MS - now)
      wait = exited_at + EXEC_LINGER_MS - now;
    pump(r, (int)wait);
    if (shell_exited(r) && exited_at < 0)
      exited_at = now_ms();
    if (r->exited && (r->fd < 0 || now_ms() - exited_at >= EXEC_LINGER_MS))
      return END_EXIT;
  }
}

/* SIGTERM, a grace period, then SIGKILL rounds until none of the job's
 * processes is left; reads the pipe meanwhile so that no writer blocks. */
static void terminate(bash_run_t *r) {
  proc_job_t *job = &r->job;
  if (!r->lost)
    kill(-r->pid, SIGTERM); /* a reaped leader's pid could be recycled: /proc scans only */
  proc_job_signal(job, SIGTERM, false);
  int64_t until = now_ms() + EXEC_GRACE_MS;
  while (now_ms() < until && proc_job_signal(job, 0, false) > 0)
    pump(r, 20);
  until = now_ms() + EXEC_KILL_MS;
  for (bool with_pipe = false;; with_pipe = r->fd >= 0) {
    if (!r->lost)
      kill(-r->pid, SIGKILL);
    if (proc_job_signal(job, SIGKILL, with_pipe) == 0 && (r->fd < 0 || with_pipe))
      break;
    if (now_ms() >= until)
      break;
    pump(r, 20);
  }
}

/* Stops whatever is left, reads the pipe to its end, reaps the shell. */
static void finish(bash_run_t *r, end_t end) {
  r->leftovers = end == END_EXIT ? proc_job_signal(&r->job, 0, r->fd >= 0) : 0;
  if (end != END_EXIT || r->leftovers > 0 || r->fd >= 0)
    terminate(r);
  int64_t until = now_ms() + 1000;
  while (r->fd >= 0 && now_ms() < until)
    pump(r, 50);
  r->pipe_stuck = r->fd >= 0;
  if (r->fd >= 0)
    close(r->fd);
  r->fd = -1;
  for (;;) {
    if (r->lost || waitpid(r->pid, &r->status, 0) == r->pid)
      break;
    if (errno != EINTR)
      r->lost = true;
  }
}

/* ---- execute_bash ----------------------------------------------------------------------- */

/* Frees what prepare made (not the pipe). */
static void spawn_free(spawn_t *s) {
  if (s->null_fd >= 0)
    close(s->null_fd);
  if (s->cgroup_fd >= 0)
    close(s->cgroup_fd);
  sandbox_cgroup_release(s->sandbox, s->cgroup_dir);
  s->cgroup_dir = NULL;
  sandbox_argv_free(s->argv);
  free_env(s->envp);
}

/* The sandbox's argv and limits. 0 or -errno. */
static int prepare_sandbox(tools_t *t, const char *command, bool network, long tasks, spawn_t *s) {
  const char *shell = access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
  s->argv = sandbox_argv(t->sandbox, shell, command, network);
  if (!s->argv)
    return -ENOMEM;
  unsigned long long mem = sandbox_memory(t->sandbox);
  limit(s, 4, RLIMIT_AS, mem ? (rlim_t)mem : RLIM_INFINITY, mem ? (rlim_t)mem : RLIM_INFINITY);
  long procs = sandbox_procs(t->sandbox);
  s->sandbox = t->sandbox;
  s->cgroup_fd = sandbox_cgroup_new(t->sandbox, &s->cgroup_dir);
  if (procs > 0)
    limit(s, 2, RLIMIT_NPROC, (rlim_t)(tasks + procs), (rlim_t)(tasks + procs));
  return 0;
}

/* Everything the child needs, made before fork. 0 or -errno. */
static int prepare(tools_t *t, const char *command, int timeout_s, bool network, const char *marker, int pipefd[2],
                   spawn_t *s) {
  memset(s, 0, sizeof *s);
  s->cgroup_fd = -1;
  s->envp = build_env(t, marker);
  s->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (!s->envp || s->null_fd < 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
    int e = s->envp ? errno : ENOMEM;
    if (s->null_fd >= 0)
      close(s->null_fd);
    free_env(s->envp);
    return -e;
  }
  s->out_fd = s->err_fd = pipefd[1];
  s->in_fd = s->null_fd;
  s->root_fd = t->ws.root_fd;
  char *bash = (char *)"bash", *sh = (char *)"sh", *c = (char *)"-c";
  s->argv_bash[0] = bash, s->argv_bash[1] = c, s->argv_bash[2] = (char *)command;
  s->argv_sh[0] = sh, s->argv_sh[1] = c, s->argv_sh[2] = (char *)command;
  limit(s, 0, RLIMIT_CPU, timeout_s > 0 ? (rlim_t)timeout_s + 5 : RLIM_INFINITY,
        timeout_s > 0 ? (rlim_t)timeout_s + 10 : RLIM_INFINITY);
  limit(s, 1, RLIMIT_FSIZE, EXEC_FSIZE, EXEC_FSIZE);
  long tasks = proc_user_tasks(getuid());
  limit(s, 2, RLIMIT_NPROC, (rlim_t)(tasks + EXEC_NPROC_HEADROOM), (rlim_t)(tasks + EXEC_NPROC_HEADROOM));
  limit(s, 3, RLIMIT_CORE, 0, 0);
  limit(s, 4, RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY);
  int rc = t->sandbox ? prepare_sandbox(t, command, network, tasks, s) : 0;
  if (rc < 0) {
    close(pipefd[0]);
    close(pipefd[1]);
    spawn_free(s);
  }
  return rc;
}

/* The status line: "[exit 0]", "[killed by signal 9 after timeout of 2 s]", ... */
static void status_line(const bash_run_t *r, end_t end, int timeout_s, sbuf_t *b, tool_result_t *out) {
  if (r->lost) {
    out->exit_code = -1;
    out->is_error = true;
    sbuf_puts(b, "[exit status unknown: the process was reaped elsewhere]\n");
    tr_summary(out, "exit status unknown");
    return;
  }
  bool sig = WIFSIGNALED(r->status);
  int code = sig ? WTERMSIG(r->status) : WEXITSTATUS(r->status);
  if (r->sandboxed && !sig && code > 128 && code < 128 + NSIG) {
    sig = true; /* bwrap's own exit status for a command killed by a signal */
    code -= 128;
  }
  const char *name = sig ? sigabbrev_np(code) : NULL;
  out->exit_code = sig ? -1 : code;
  out->timed_out = end == END_TIMEOUT;
  out->is_error = sig || code != 0 || end != END_EXIT;
  if (end == END_TIMEOUT && sig)
    sbuf_printf(b, "[killed by signal %d after timeout of %d s]\n", code, timeout_s);
  else if (end == END_TIMEOUT)
    sbuf_printf(b, "[exit %d after timeout of %d s]\n", code, timeout_s);
  else if (end == END_CANCEL && sig)
    sbuf_printf(b, "[stopped by the user: killed by signal %d]\n", code);
  else if (end == END_CANCEL)
    sbuf_printf(b, "[stopped by the user: exit %d]\n", code);
  else if (sig)
    sbuf_printf(b, "[killed by signal %d (SIG%s)]\n", code, name ? name : "?");
  else
    sbuf_printf(b, "[exit %d]\n", code);
  if (r->leftovers > 0)
    sbuf_printf(b, "[%d background process%s still running when the command ended %s stopped]\n", r->leftovers,
                r->leftovers == 1 ? "" : "es", r->leftovers == 1 ? "was" : "were");
  if (r->pipe_stuck)
    sbuf_puts(b, "[warning: a process the command started still holds its output open]\n");
  size_t lines = r->cap.newlines + (r->cap.total && r->cap.last != '\n');
  if (end == END_TIMEOUT)
    tr_summary(out, "killed after timeout of %d s", timeout_s);
  else if (end == END_CANCEL)
    tr_summary(out, "stopped by the user");
  else if (sig)
    tr_summary(out, "killed by signal %d, %zu lines", code, lines);
  else
    tr_summary(out, "exit %d, %zu line%s", code, lines, lines == 1 ? "" : "s");
}

/* Forks and runs the prepared command, then builds the result. */
static void run_command(tools_t *t, spawn_t *s, int pipefd[2], const char *marker, int timeout_s, atomic_bool *cancel,
                        tool_result_t *out) {
  bash_run_t r = {.fd = pipefd[0], .pidfd = -1, .buf = malloc(EXEC_READ_BUF), .sandboxed = s->argv != NULL};
  if (!capture_init(&r.cap, t->output_cap) || !r.buf) {
    close(pipefd[0]);
    close(pipefd[1]);
    capture_free(&r.cap);
    free(r.buf);
    tr_error(out, "out of memory");
    return;
  }
  int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
  r.pid = fork();
  if (r.pid == 0)
    child_exec(s);
  int fork_errno = errno;
  close(pipefd[1]);
  if (r.pid < 0) {
    close(pipefd[0]);
    capture_free(&r.cap);
    free(r.buf);
    tr_error(out, "cannot start the command: %s", strerror(fork_errno));
    return;
  }
  fcntl(r.fd, F_SETFL, O_NONBLOCK);
  r.pidfd = (int)syscall(SYS_pidfd_open, r.pid, 0);
  struct stat st;
  r.job = (proc_job_t){.leader = r.pid,
                       .start = proc_start_time(r.pid),
                       .marker = marker,
                       .pipe_ino = fstat(r.fd, &st) == 0 ? (unsigned long)st.st_ino : 0};
  end_t end = wait_command(&r, deadline, cancel);
  finish(&r, end);
  sbuf_t b = {0};
  capture_render(&r.cap, &b);
  if (r.cap.total == 0)
    sbuf_puts(&b, "(no output)\n");
  else if (r.cap.last != '\n')
    sbuf_puts(&b, "\n");
  if (r.pidfd >= 0)
    close(r.pidfd);
  status_line(&r, end, timeout_s, &b, out);
  bool is_error = out->is_error;
  tr_text(out, &b, is_error);
  capture_free(&r.cap);
  free(r.buf);
}

/* The environment marker of one run: CADRE_RUN_ID=pid-seq-random. */
static void make_marker(tools_t *t, char *marker, size_t len) {
  uint64_t rnd = 0;
  if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
    rnd = (uint64_t)now_ms();
  snprintf(marker, len, MARKER_NAME "=%d-%lu-%016llx", (int)getpid(), (unsigned long)atomic_fetch_add(&t->run_seq, 1),
           (unsigned long long)rnd);
}

// execute_bash {command, timeout?}: runs a command in the workspace (in the sandbox when there is one).
void tools_execute_bash(tools_t *t, const targs_t *a, const tools_call_opts_t *opts, atomic_bool *cancel,
                        tool_result_t *out) {
  if (t->no_commands) {
    tr_error(out, "this node does not run commands: %s", t->no_commands);
    return;
  }
  const char *command = NULL;
  size_t len = 0;
  long long timeout = t->default_timeout_s;
  if (targ_str(a, "command", true, &command, &len, out) < 0 || targ_int(a, "timeout", 1, INT64_MAX, &timeout, out) < 0)
    return;
  if (timeout > TOOLS_MAX_TIMEOUT_S)
    timeout = TOOLS_MAX_TIMEOUT_S;
  if (memchr(command, '\0', len)) {
    tr_error(out, "command contains a NUL byte");
    return;
  }
  if (strspn(command, " \t\r\n") == len) {
    tr_error(out, "command is empty");
    return;
  }
  char marker[96];
  make_marker(t, marker, sizeof marker);
  spawn_t s;
  int pipefd[2];
  int rc = prepare(t, command, (int)timeout, opts->network, marker, pipefd, &s);
  if (rc < 0) {
    tr_error(out, "cannot start the command: %s", strerror(-rc));
    return;
  }
  run_command(t, &s, pipefd, marker, (int)timeout, cancel, out);
  spawn_free(&s);
}

/* ---- long-lived children (MCP servers) --------------------------------------------------- */

/* envp with the entries of add appended (envp grows; add's strings copied). 0 or -ENOMEM. */
static int env_append(char ***envp, const char *const *add) {
  size_t n = 0, k = 0;
  while ((*envp)[n])
    n++;
  while (add && add[k])
    k++;
  char **env = realloc(*envp, (n + k + 1) * sizeof *env);
  if (!env)
    return -ENOMEM;
  *envp = env;
  for (size_t i = 0; i < k; i++) {
    if (!(env[n] = strdup(add[i])))
      break;
    env[++n] = NULL;
  }
  env[n] = NULL;
  return n == 0 || k == 0 || env[n - 1] ? 0 : -ENOMEM;
}

// Starts a long-lived program with pipes to its stdin, stdout and stderr.
int tools_child_start(tools_t *t, const char *command, const char *const *env, bool network, tools_child_t *c,
                      char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  c->pid = -1;
  c->in_fd = c->out_fd = c->err_fd = -1;
  if (t->no_commands) {
    snprintf(err, errlen, "this node does not run commands: %s", t->no_commands);
    return -1;
  }
  make_marker(t, c->marker, sizeof c->marker);
  spawn_t s;
  int outp[2], inp[2] = {-1, -1}, errp[2] = {-1, -1};
  int rc = prepare(t, command, 0, network, c->marker, outp, &s);
  if (rc < 0) {
    snprintf(err, errlen, "cannot start the server: %s", strerror(-rc));
    return -1;
  }
  if (pipe2(inp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0 || env_append(&s.envp, env) < 0) {
    snprintf(err, errlen, "cannot start the server: %s", strerror(errno ? errno : ENOMEM));
    int fds[] = {inp[0], inp[1], errp[0], errp[1], outp[0], outp[1]};
    for (size_t i = 0; i < 6; i++)
      if (fds[i] >= 0)
        close(fds[i]);
    spawn_free(&s);
    return -1;
  }
  s.in_fd = inp[0];
  s.err_fd = errp[1];
  c->pid = fork();
  if (c->pid == 0)
    child_exec(&s);
  int fork_errno = errno;
  close(inp[0]);
  close(outp[1]);
  close(errp[1]);
  c->cgroup_dir = s.cgroup_dir; /* released when the child is stopped */
  s.cgroup_dir = NULL;
  spawn_free(&s);
  c->in_fd = inp[1];
  c->out_fd = outp[0];
  c->err_fd = errp[0];
  if (c->pid < 0) {
    snprintf(err, errlen, "cannot start the server: %s", strerror(fork_errno));
    tools_child_stop(t, c);
    return -1;
  }
  c->start = proc_start_time(c->pid);
  fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
  fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
  return 0;
}

/* True once pid has been reaped (WNOHANG). */
static bool child_reaped(tools_child_t *c) {
  int status = 0;
  pid_t r = waitpid(c->pid, &status, WNOHANG);
  if (r == c->pid || (r < 0 && errno == ECHILD)) {
    c->exit_status = status;
    c->pid = -1;
    return true;
  }
  return false;
}

// True while the child runs (reaps it once it exited).
bool tools_child_alive(tools_child_t *c) {
  return c && c->pid > 0 && !child_reaped(c);
}

// Stops the child and everything it started; closes its pipes.
void tools_child_stop(tools_t *t, tools_child_t *c) {
  int *fds[] = {&c->in_fd, &c->out_fd, &c->err_fd};
  for (size_t i = 0; i < 3; i++)
    if (*fds[i] >= 0) {
      close(*fds[i]);
      *fds[i] = -1;
    }
  if (c->pid > 0) {
    proc_job_t job = {.leader = c->pid, .start = c->start, .marker = c->marker};
    kill(-c->pid, SIGTERM);
    proc_job_signal(&job, SIGTERM, false);
    int64_t until = now_ms() + EXEC_GRACE_MS;
    while (now_ms() < until && !child_reaped(c)) {
      struct timespec ts = {0, 20 * 1000000L};
      nanosleep(&ts, NULL);
    }
    if (c->pid > 0) {
      kill(-c->pid, SIGKILL);
      proc_job_signal(&job, SIGKILL, false);
      while (waitpid(c->pid, &c->exit_status, 0) < 0 && errno == EINTR)
        ;
      c->pid = -1;
    }
    proc_job_signal(&job, SIGKILL, false); /* what the leader left behind */
  }
  sandbox_cgroup_release(t ? t->sandbox : NULL, c->cgroup_dir);
  c->cgroup_dir = NULL;
}
