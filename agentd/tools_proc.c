/* tools_proc: finding and killing every process a command started (see tools_proc.h). */
#include "tools_proc.h"
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define ENVIRON_MAX (1u << 20)

typedef struct {
  char state;
  pid_t pgrp, session;
  unsigned long long start;
} pstat_t;

/* Reads a small /proc file into buf (NUL-terminated): bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, len - 1);
  close(fd);
  if (n < 0)
    return -1;
  buf[n] = '\0';
  return n;
}

/* Parses /proc/pid/stat. 0 or -1. */
static int read_pstat(pid_t pid, pstat_t *ps) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (read_small(path, buf, sizeof buf) <= 0)
    return -1;
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  int pgrp, session;
  if (sscanf(p + 1, " %c %*d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &ps->state, &pgrp,
             &session, &ps->start) != 4)
    return -1;
  ps->pgrp = pgrp;
  ps->session = session;
  return 0;
}

// The start time of pid (field 22 of /proc/pid/stat), 0 when unknown.
unsigned long long proc_start_time(pid_t pid) {
  pstat_t ps;
  return read_pstat(pid, &ps) == 0 ? ps.start : 0;
}

/* True when pid's initial environment holds marker (a whole "NAME=value" entry). */
static bool has_marker(pid_t pid, const char *marker) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  size_t cap = 16384, len = 0;
  char *buf = malloc(cap + 1);
  bool found = false;
  while (buf && !found) {
    if (len == cap) {
      if (cap >= ENVIRON_MAX)
        break;
      char *b = realloc(buf, cap * 2 + 1);
      if (!b)
        break;
      buf = b;
      cap *= 2;
    }
    ssize_t n = util_read(fd, buf + len, cap - len);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  if (buf)
    buf[len] = '\0';
  for (char *p = buf; buf && !found && p < buf + len; p += strlen(p) + 1)
    found = strcmp(p, marker) == 0;
  free(buf);
  close(fd);
  return found;
}

/* True when pid holds a pipe with inode ino open. */
static bool holds_pipe(pid_t pid, unsigned long ino) {
  char path[64], want[64], link[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  snprintf(want, sizeof want, "pipe:[%lu]", ino);
  int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
  if (!d) {
    if (dfd >= 0)
      close(dfd);
    return false;
  }
  bool found = false;
  struct dirent *de;
  while (!found && (de = readdir(d))) {
    ssize_t n = readlinkat(dirfd(d), de->d_name, link, sizeof link - 1);
    if (n <= 0)
      continue;
    link[n] = '\0';
    found = strcmp(link, want) == 0;
  }
  closedir(d);
  return found;
}

/* Sends sig to pid if it is still the process that started at start. */
static void send_checked(pid_t pid, unsigned long long start, int sig) {
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pfd < 0) {
    if (errno == ENOSYS && proc_start_time(pid) == start)
      kill(pid, sig);
    return;
  }
  if (proc_start_time(pid) == start)
    syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0);
  close(pfd);
}

/* True when process pid (stat ps) belongs to the job. */
static bool in_job(const proc_job_t *job, pid_t pid, const pstat_t *ps, bool with_pipe) {
  if (ps->state == 'Z' || ps->state == 'X')
    return false;
  if (job->start && ps->start < job->start)
    return false;
  if (ps->pgrp == job->leader || ps->session == job->leader)
    return true;
  if (job->marker && has_marker(pid, job->marker))
    return true;
  return with_pipe && job->pipe_ino && holds_pipe(pid, job->pipe_ino);
}

// Signals (sig 0: counts) the job's live processes; returns how many there were.
int proc_job_signal(const proc_job_t *job, int sig, bool with_pipe) {
  DIR *d = opendir("/proc");
  if (!d)
    return 0;
  pid_t self = getpid();
  int count = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!isdigit((unsigned char)de->d_name[0]))
      continue;
    pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
    pstat_t ps;
    if (pid <= 1 || pid == self || read_pstat(pid, &ps) != 0 || !in_job(job, pid, &ps, with_pipe))
      continue;
    count++;
    if (sig)
      send_checked(pid, ps.start, sig);
  }
  closedir(d);
  return count;
}

// Tasks (threads) that belong to real uid.
long proc_user_tasks(uid_t uid) {
  DIR *d = opendir("/proc");
  if (!d)
    return 0;
  long total = 0;
  struct dirent *de;
  char path[64], buf[4096];
  while ((de = readdir(d))) {
    if (!isdigit((unsigned char)de->d_name[0]))
      continue;
    snprintf(path, sizeof path, "/proc/%.20s/status", de->d_name);
    if (read_small(path, buf, sizeof buf) <= 0)
      continue;
    const char *u = strstr(buf, "\nUid:"), *th = strstr(buf, "\nThreads:");
    unsigned long ruid;
    long n;
    if (u && th && sscanf(u + 5, "%lu", &ruid) == 1 && ruid == (unsigned long)uid && sscanf(th + 9, "%ld", &n) == 1)
      total += n;
  }
  closedir(d);
  return total;
}
