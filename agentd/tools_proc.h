/* tools_proc: finding and killing every process a command started.
 *
 * A command runs as the leader of its own session and process group (setsid).
 * Its processes are found in /proc by: process group or session equal to the
 * leader's pid; an environment marker (CADRE_RUN_ID=...) that descendants
 * inherit, which catches those that called setsid() themselves; and, as a
 * last resort, holding the command's output pipe. Only processes that started
 * no earlier than the leader count (pid reuse), and each is signalled through
 * a pidfd after checking that its pid still names the same process (same
 * start time), so a recycled pid is never hit.
 *
 * What escapes: a descendant that leaves the session, closes the pipe and
 * execs with an environment without the marker. Only a cgroup would hold it.
 */
#ifndef CADRE_TOOLS_PROC_H
#define CADRE_TOOLS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
  pid_t leader;             /* session and process group id */
  unsigned long long start; /* the leader's start time (clock ticks since boot); 0: unknown */
  const char *marker;       /* "CADRE_RUN_ID=..." */
  unsigned long pipe_ino;   /* inode of the output pipe, 0: not looked for */
} proc_job_t;

/* Signals (sig 0: only counts) the job's live processes other than zombies;
 * returns how many there were. with_pipe also looks for holders of the pipe
 * (slower: reads every process's fd table). */
int proc_job_signal(const proc_job_t *job, int sig, bool with_pipe);
/* The start time of pid (field 22 of /proc/pid/stat), 0 when unknown. */
unsigned long long proc_start_time(pid_t pid);
/* Tasks (threads) that belong to real uid, for RLIMIT_NPROC headroom. */
long proc_user_tasks(uid_t uid);

#endif
