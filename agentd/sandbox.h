/* sandbox: the confinement every command an agent runs gets (bubblewrap).
 *
 * A command runs as `bwrap ARGS -- /bin/bash -c COMMAND` (see docs/SANDBOX.md):
 *  - its own PID namespace (--unshare-pid; bwrap's init is pid 1 inside, so
 *    when the command's shell exits, or bwrap is killed, the kernel kills
 *    every process left in it: setsid, nohup and double forks included), and
 *    --die-with-parent, so that a daemon killed with SIGKILL takes its
 *    commands with it;
 *  - its own IPC and UTS namespaces, and no network (--unshare-net) unless
 *    the agent's role allows it;
 *  - a mount namespace: / read-only, /dev and /proc fresh, a private /tmp,
 *    the workspace the only writable bind, and the node's own files (secrets,
 *    CURVE keys, config, state directories, --hide paths) masked: an empty
 *    tmpfs over a directory, /dev/null over a file, also inside the workspace;
 *  - no capabilities (--cap-drop ALL: bwrap run by root keeps most otherwise).
 * Limits (set with setrlimit before bwrap, inherited): file size, address
 * space (memory), processes (RLIMIT_NPROC counts every task of the real uid,
 * so the limit is the uid's tasks now plus the budget; the kernel does not
 * apply it to root, for whom a pids cgroup is used when one can be made:
 * cgroup v1 pids hierarchy or a writable v2 subtree, with pids.max). */
#ifndef CADRE_SANDBOX_H
#define CADRE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SANDBOX_MEMORY_DEFAULT (4ull << 30) /* bytes of address space per process */
#define SANDBOX_PROCS_DEFAULT 512           /* processes (tasks) per command */
#define SANDBOX_FSIZE_DEFAULT (1ull << 30)  /* largest file a command writes */

typedef struct sandbox sandbox_t;

typedef struct {
  const char *workspace;       /* the directory made writable (resolved with realpath) */
  const char *const *hidden;   /* NULL-terminated paths to mask; missing ones are skipped; may be NULL */
  const char *const *writable; /* more directories commands may write (e.g. ~/.cache); may be NULL */
  const char *const *readable; /* more paths commands may read where the sandbox has none (/tmp); may be NULL */
  unsigned long long memory;   /* RLIMIT_AS bytes; 0: SANDBOX_MEMORY_DEFAULT; ULLONG_MAX: none */
  long procs;                  /* 0: SANDBOX_PROCS_DEFAULT; -1: none */
  const char *bwrap;           /* the program; NULL: "bwrap" looked up in PATH */
} sandbox_opts_t;

/* Builds the sandbox and proves it works by running `bwrap ... true` (with
 * --unshare-net). NULL on failure, with err naming the cause (bwrap missing,
 * user namespaces refused, ...). Caller owns the result. */
sandbox_t *sandbox_new(const sandbox_opts_t *opts, char *err, size_t errlen);
void sandbox_destroy(sandbox_t **self_p);

/* The argv (NULL-terminated) that runs shell -c command in the sandbox, shell
 * being the path of bash or sh; network: keep the host's network. Caller
 * frees with sandbox_argv_free (only the array: the strings are borrowed
 * from self and command). NULL on ENOMEM. */
char **sandbox_argv(const sandbox_t *self, const char *shell, const char *command, bool network);
void sandbox_argv_free(char **argv);

/* The limits a command gets: address space bytes (0: none) and processes (0: none). */
unsigned long long sandbox_memory(const sandbox_t *self);
long sandbox_procs(const sandbox_t *self);

/* A per-command pids cgroup (root, or a delegated cgroup v2 subtree): fd of
 * its cgroup.procs to write "0" into from the child before exec, or -1 when
 * none can be made (RLIMIT_NPROC is then the limit). *dir is set to the
 * cgroup's path, to give back with sandbox_cgroup_release. Thread-safe:
 * cgroups are kept for the next command (made and removed ones cost ~20 ms). */
int sandbox_cgroup_new(sandbox_t *self, char **dir);
/* Gives a command's cgroup back once its processes are gone; takes dir. */
void sandbox_cgroup_release(sandbox_t *self, char *dir);

#endif
