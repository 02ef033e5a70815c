/* sandbox: the bubblewrap command line every command runs under (see sandbox.h). */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SANDBOX_MAX_ARGS 512
#define PROBE_TIMEOUT_MS 10000
#define SANDBOX_POOL 64

struct sandbox {
  char *bwrap;
  char *workspace;
  char **args; /* the fixed part: bwrap ... --chdir WS (NULL-terminated) */
  size_t n_args;
  char **owned; /* strings args points to that we allocated */
  size_t n_owned;
  unsigned long long memory;
  long procs;
  char *cgroup_base;        /* a directory where per-command pids cgroups can be made, or NULL */
  pthread_mutex_t lock;     /* guards the pool below */
  char *pool[SANDBOX_POOL]; /* cgroups of finished commands, for the next ones */
  size_t n_pool;
  unsigned long made;
};

/* ---- building the argument list ---------------------------------------------------- */

static int add(sandbox_t *s, const char *arg) {
  if (s->n_args + 1 >= SANDBOX_MAX_ARGS)
    return -E2BIG;
  char **a = realloc(s->args, (s->n_args + 2) * sizeof *a);
  if (!a)
    return -ENOMEM;
  s->args = a;
  s->args[s->n_args++] = (char *)arg;
  s->args[s->n_args] = NULL;
  return 0;
}

/* Adds a string we own (freed with the sandbox). */
static int add_owned(sandbox_t *s, char *arg) {
  char **o = arg ? realloc(s->owned, (s->n_owned + 1) * sizeof *o) : NULL;
  if (!o) {
    free(arg);
    return -ENOMEM;
  }
  s->owned = o;
  s->owned[s->n_owned++] = arg;
  return add(s, arg);
}

/* True when path is dir or beneath it. */
static bool beneath(const char *path, const char *dir) {
  size_t n = strlen(dir);
  if (n == 1 && dir[0] == '/')
    return true;
  return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Adds the mask of one hidden path (real path, existing): tmpfs over a
 * directory, /dev/null over anything else. */
static int add_mask(sandbox_t *s, char *real, bool dir) {
  int rc = add(s, dir ? "--tmpfs" : "--ro-bind");
  if (rc == 0 && !dir)
    rc = add(s, "/dev/null");
  return rc == 0 ? add_owned(s, real) : (free(real), rc);
}

/* Masks the hidden paths: before (ancestors of the workspace, so that the
 * workspace's bind goes on top) or after the workspace's bind (the rest,
 * so that masks inside the workspace win). Paths in the private /tmp, /dev or
 * /proc are invisible anyway. */
static int add_masks(sandbox_t *s, const char *const *hidden, bool ancestors) {
  for (size_t i = 0; hidden && hidden[i]; i++) {
    char *real = realpath(hidden[i], NULL);
    struct stat st;
    if (!real || stat(real, &st) != 0) {
      free(real);
      continue;
    }
    bool in_ws = beneath(real, s->workspace), anc = !in_ws && beneath(s->workspace, real);
    bool invisible = !in_ws && (beneath(real, "/tmp") || beneath(real, "/dev") || beneath(real, "/proc"));
    if (strcmp(real, s->workspace) == 0 || strcmp(real, "/") == 0 || invisible || anc != ancestors) {
      free(real);
      continue;
    }
    int rc = add_mask(s, real, S_ISDIR(st.st_mode));
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Binds each existing path of list (real path; not in /proc or /dev) at itself: how ("--bind" or "--ro-bind");
 * read-only binds (dirs_only false) skip a path that holds the workspace, which would be read-only then. */
static int add_binds(sandbox_t *s, const char *const *list, const char *how, bool dirs_only) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && list && list[i]; i++) {
    char *real = realpath(list[i], NULL);
    struct stat st;
    if (!real || stat(real, &st) != 0 || (dirs_only && !S_ISDIR(st.st_mode)) || beneath(real, "/proc") ||
        beneath(real, "/dev") || (!dirs_only && beneath(s->workspace, real))) {
      free(real);
      continue;
    }
    if ((rc = add(s, how)) == 0 && (rc = add_owned(s, real)) == 0)
      rc = add(s, real);
  }
  return rc;
}

static int build_args(sandbox_t *s, const char *const *hidden, const char *const *writable,
                      const char *const *readable) {
  /* clang-format off */
  static const char *const head[] = {
      "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
      "--unshare-cgroup-try", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
      "--tmpfs", "/tmp", NULL};
  /* clang-format on */
  int rc = add(s, s->bwrap);
  for (size_t i = 0; rc == 0 && head[i]; i++)
    rc = add(s, head[i]);
  if (rc == 0)
    rc = add_masks(s, hidden, true);
  if (rc == 0 && (rc = add(s, "--bind")) == 0 && (rc = add(s, s->workspace)) == 0)
    rc = add(s, s->workspace);
  if (rc == 0)
    rc = add_binds(s, writable, "--bind", true);
  if (rc == 0) /* after the private /tmp, before the masks: a hidden file inside stays hidden */
    rc = add_binds(s, readable, "--ro-bind", false);
  if (rc == 0)
    rc = add_masks(s, hidden, false);
  if (rc == 0 && (rc = add(s, "--chdir")) == 0)
    rc = add(s, s->workspace);
  return rc;
}

// The argv that runs shell -c command in the sandbox.
char **sandbox_argv(const sandbox_t *self, const char *shell, const char *command, bool network) {
  char **argv = calloc(self->n_args + 8, sizeof *argv);
  if (!argv)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < self->n_args; i++)
    argv[n++] = self->args[i];
  if (!network)
    argv[n++] = (char *)"--unshare-net";
  argv[n++] = (char *)"--";
  argv[n++] = (char *)shell;
  argv[n++] = (char *)"-c";
  argv[n++] = (char *)command;
  argv[n] = NULL;
  return argv;
}

void sandbox_argv_free(char **argv) {
  free(argv);
}

/* ---- set-up and the probe ------------------------------------------------------------ */

/* The absolute path of prog, looked up in PATH when it has no '/'. Caller frees. */
static char *find_program(const char *prog) {
  if (strchr(prog, '/'))
    return access(prog, X_OK) == 0 ? strdup(prog) : NULL;
  const char *path = getenv("PATH");
  char *copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"), *save = NULL;
  char *found = NULL;
  for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found; dir = strtok_r(NULL, ":", &save)) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s/%s", dir, prog) < (int)sizeof buf && access(buf, X_OK) == 0)
      found = strdup(buf);
  }
  free(copy);
  return found;
}

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs argv with stdout and stderr into a pipe; 0 when it exited 0, else -1
 * with what it printed (or why it did not run) in err. */
static int run_probe(char **argv, char *err, size_t errlen) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    snprintf(err, errlen, "cannot make a pipe: %s", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(p[1], 2) < 0)
      _exit(126);
    execv(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  char out[512];
  size_t len = 0;
  long long until = mono_ms() + PROBE_TIMEOUT_MS;
  for (;;) {
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    long long left = until - mono_ms();
    if (pid < 0 || left <= 0 || poll(&pfd, 1, (int)left) <= 0)
      break;
    ssize_t n = read(p[0], out + len, sizeof out - 1 - len);
    if (n <= 0 || (len += (size_t)n) >= sizeof out - 1)
      break;
  }
  close(p[0]);
  out[len] = '\0';
  int status = 0;
  pid_t w = 0;
  while (pid > 0 && (w = waitpid(pid, &status, WNOHANG)) == 0 && mono_ms() < until) {
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (pid > 0 && w == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    snprintf(err, errlen, "bwrap did not finish within %d s", PROBE_TIMEOUT_MS / 1000);
    return -1;
  }
  if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  out[strcspn(out, "\n")] = '\0';
  if (pid < 0)
    snprintf(err, errlen, "cannot fork: %s", strerror(errno));
  else
    snprintf(err, errlen, "%s failed (%s %d)%s%s", argv[0], WIFEXITED(status) ? "exit" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), *out ? ": " : "", out);
  return -1;
}

/* ---- cgroups ------------------------------------------------------------------------ */

/* The directory of our own cgroup in hierarchy line prefix ("N:pids:" or "0::"), or NULL. */
static char *own_cgroup(const char *mount, const char *controller) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  char line[1024], *found = NULL;
  while (f && !found && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c2 = '\0';
    if (strcmp(c1 + 1, controller) != 0)
      continue;
    size_t n = strlen(mount) + strlen(c2 + 1) + 2;
    if ((found = malloc(n)))
      snprintf(found, n, "%s%s", mount, c2 + 1);
  }
  if (f)
    fclose(f);
  return found;
}

/* A directory where we may make pids cgroups: v1's pids hierarchy, or our
 * v2 cgroup when pids is enabled for its children. NULL: none. */
static char *cgroup_base(void) {
  char *v1 = own_cgroup("/sys/fs/cgroup/pids", "pids");
  if (v1 && access(v1, W_OK) == 0)
    return v1;
  free(v1);
  char *v2 = own_cgroup("/sys/fs/cgroup", ""), ctl[PATH_MAX + 32], buf[256] = "";
  if (!v2)
    return NULL;
  snprintf(ctl, sizeof ctl, "%s/cgroup.subtree_control", v2);
  int fd = open(ctl, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0)
    close(fd);
  buf[n > 0 ? n : 0] = '\0';
  if (strstr(buf, "pids") && access(v2, W_OK) == 0)
    return v2;
  free(v2);
  return NULL;
}

static int write_file(const char *dir, const char *name, const char *value) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? write(fd, value, strlen(value)) : -1;
  if (fd >= 0)
    close(fd);
  return n == (ssize_t)strlen(value) ? 0 : -1;
}

/* The fd of dir's cgroup.procs for writing, or -1. */
static int open_procs(const char *dir) {
  char procs[PATH_MAX + 64];
  snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
  return open(procs, O_WRONLY | O_CLOEXEC);
}

/* Removes a cgroup, waiting a little for its last processes to be torn down. */
static void cgroup_remove(char *dir) {
  for (int i = 0; dir && i < 200 && rmdir(dir) != 0 && errno == EBUSY; i++) {
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
  free(dir);
}

/* Removes the empty cgroups that daemons killed before they could clean up left behind. */
static void cgroup_sweep(const char *base) {
  DIR *d = opendir(base);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    int pid = 0;
    if (sscanf(de->d_name, "cadre-%d-", &pid) != 1 || pid <= 0 || (kill(pid, 0) != 0 && errno != ESRCH))
      continue;
    if (kill(pid, 0) == 0)
      continue; /* a live daemon's */
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", base, de->d_name) < (int)sizeof path)
      rmdir(path); /* fails, and stays, while processes are in it */
  }
  if (d)
    closedir(d);
}

// A per-command pids cgroup: the fd of its cgroup.procs, or -1.
int sandbox_cgroup_new(sandbox_t *self, char **dir) {
  *dir = NULL;
  if (!self || !self->cgroup_base || self->procs <= 0)
    return -1;
  pthread_mutex_lock(&self->lock);
  char *d = self->n_pool ? self->pool[--self->n_pool] : NULL;
  unsigned long seq = self->made++;
  pthread_mutex_unlock(&self->lock);
  int fd = d ? open_procs(d) : -1;
  if (fd >= 0) {
    *dir = d;
    return fd;
  }
  cgroup_remove(d);
  size_t n = strlen(self->cgroup_base) + 64;
  char max[32];
  if (!(d = malloc(n)))
    return -1;
  snprintf(d, n, "%s/cadre-%d-%lu", self->cgroup_base, (int)getpid(), seq);
  snprintf(max, sizeof max, "%ld", self->procs);
  if (mkdir(d, 0755) == 0 && write_file(d, "pids.max", max) == 0)
    fd = open_procs(d);
  if (fd < 0) {
    rmdir(d);
    free(d);
    return -1;
  }
  *dir = d;
  return fd;
}

// Gives a command's cgroup back for the next command (or removes it when the pool is full).
void sandbox_cgroup_release(sandbox_t *self, char *dir) {
  if (!dir)
    return;
  pthread_mutex_lock(&self->lock);
  bool kept = self->n_pool < SANDBOX_POOL;
  if (kept)
    self->pool[self->n_pool++] = dir;
  pthread_mutex_unlock(&self->lock);
  if (!kept)
    cgroup_remove(dir);
}

/* ---- the object ------------------------------------------------------------------------ */

// Builds the sandbox and proves it works.
sandbox_t *sandbox_new(const sandbox_opts_t *opts, char *err, size_t errlen) {
  sandbox_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&s->lock, NULL);
  s->memory = opts->memory == 0 ? SANDBOX_MEMORY_DEFAULT : opts->memory == ~0ull ? 0 : opts->memory;
  s->procs = opts->procs == 0 ? SANDBOX_PROCS_DEFAULT : opts->procs < 0 ? 0 : opts->procs;
  s->bwrap = find_program(opts->bwrap ? opts->bwrap : "bwrap");
  s->workspace = opts->workspace ? realpath(opts->workspace, NULL) : NULL;
  if (!s->bwrap) {
    snprintf(err, errlen, "bubblewrap (bwrap) is not installed%s%s (Debian, Ubuntu: apt-get install bubblewrap)",
             opts->bwrap ? ": " : "", opts->bwrap ? opts->bwrap : "");
    goto fail;
  }
  if (!s->workspace) {
    snprintf(err, errlen, "workspace %s: %s", opts->workspace ? opts->workspace : "(none)", strerror(errno));
    goto fail;
  }
  if (build_args(s, opts->hidden, opts->writable, opts->readable) < 0) {
    snprintf(err, errlen, "too many paths to hide");
    goto fail;
  }
  char **probe = sandbox_argv(s, "/bin/true", NULL, false);
  if (probe) { /* "-c" and NULL become /bin/true's arguments: cut them off */
    size_t n = 0;
    while (probe[n] && strcmp(probe[n], "/bin/true") != 0)
      n++;
    probe[n + 1] = NULL;
  }
  int rc = probe ? run_probe(probe, err, errlen) : (snprintf(err, errlen, "out of memory"), -1);
  sandbox_argv_free(probe);
  if (rc < 0)
    goto fail;
  s->cgroup_base = cgroup_base();
  if (s->cgroup_base)
    cgroup_sweep(s->cgroup_base);
  return s;
fail:
  sandbox_destroy(&s);
  return NULL;
}

void sandbox_destroy(sandbox_t **self_p) {
  sandbox_t *s = self_p ? *self_p : NULL;
  if (!s)
    return;
  for (size_t i = 0; i < s->n_owned; i++)
    free(s->owned[i]);
  free(s->owned);
  free(s->args);
  free(s->bwrap);
  free(s->workspace);
  free(s->cgroup_base);
  for (size_t i = 0; i < s->n_pool; i++)
    cgroup_remove(s->pool[i]);
  pthread_mutex_destroy(&s->lock);
  free(s);
  *self_p = NULL;
}

unsigned long long sandbox_memory(const sandbox_t *self) {
  return self ? self->memory : 0;
}

long sandbox_procs(const sandbox_t *self) {
  return self ? self->procs : 0;
}
