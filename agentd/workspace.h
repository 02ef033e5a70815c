/* workspace: confinement of paths to an agent daemon's workspace directory.
 *
 * A path from the model goes through ws_rel() first (a lexical check), then
 * through ws_open() / ws_open_dir() / ws_target(), which resolve it beneath
 * the workspace's directory fd with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS), or, where openat2 is missing (ENOSYS, or EPERM
 * from a seccomp filter), with an equivalent component-by-component walk
 * (O_PATH|O_NOFOLLOW opens, symlinks read and spliced in by hand, ".." popped
 * off a stack of directory fds, absolute symlinks refused).
 *
 * Decisions:
 *  - An absolute path is accepted only when it lies inside the workspace (its
 *    real path or the path as configured, followed by '/' or nothing); the
 *    prefix is stripped and the rest resolves beneath as usual. "/ws-evil/x"
 *    never matches "/ws".
 *  - A path whose ".." components climb above its start lexically is refused
 *    as "outside the workspace" before any file system access, even when a
 *    symlink inside would have made it land inside again.
 *  - Symlinks are followed while they stay beneath the workspace; a symlink
 *    that leads out (absolute, or relative with too many "..") is refused.
 *    Writes follow a final symlink to its target (like shell redirection) and
 *    replace the target by rename, never the link's outside destination.
 *  - "~", "%2e", backslashes and look-alike Unicode dots are ordinary name
 *    characters: such paths stay inside.
 *  - Hard links to outside files cannot be told apart from ordinary files; a
 *    read through one reads the outside file. A write replaces the link by
 *    rename, so it never changes the outside file. Bind mounts inside the
 *    workspace are crossed (RESOLVE_NO_XDEV is not set).
 */
#ifndef CADRE_WORKSPACE_H
#define CADRE_WORKSPACE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct {
  int root_fd;      /* O_RDONLY|O_DIRECTORY */
  char *root_real;  /* realpath of the workspace, no trailing '/' */
  char *root_given; /* the path as configured when absolute (no trailing '/'), else NULL */
  bool openat2;     /* false: the fallback walk */
} ws_t;

/* A file to write: its parent directory (an O_RDONLY fd beneath the
 * workspace) and its name there, after following final symlinks. */
typedef struct {
  int dirfd;
  char name[NAME_MAX + 1];
  bool exists;
  struct stat st; /* of the existing file */
  struct stat dir_st;
} ws_target_t;

/* Opens the workspace directory and probes openat2. 0, or -1 with err. */
int ws_init(ws_t *ws, const char *path, char *err, size_t errlen);
/* Closes and frees what ws_init made. */
void ws_fini(ws_t *ws);

/* Checks a path from the model (len bytes, may hold NUL) and turns it into a
 * path relative to the workspace (caller frees *rel). 0, or -1 with err. */
int ws_rel(const ws_t *ws, const char *path, size_t len, char **rel, char *err, size_t errlen);
/* True when the lexical ".." count of rel climbs above its start. */
bool ws_lexically_escapes(const char *rel);

/* Opens rel beneath the workspace with flags (no O_CREAT). fd or -errno. */
int ws_open(const ws_t *ws, const char *rel, int flags);
/* Opens directory rel (O_RDONLY) beneath; with create, makes missing
 * directories (each with mkdirat beneath its parent). fd or -errno. */
int ws_open_dir(const ws_t *ws, const char *rel, bool create);
/* Resolves a file to write: follows final symlinks (staying beneath), opens
 * the parent (creating missing ones when create). shown names the path in
 * messages. 0, or -1 with err (t->dirfd is then -1). */
int ws_target(const ws_t *ws, const char *rel, bool create, const char *shown, ws_target_t *t, char *err,
              size_t errlen);
/* Closes the target's directory fd. */
void ws_target_close(ws_target_t *t);

/* Writes data to dirfd/name atomically: a new temporary file in the same
 * directory, fsync, rename over name, fsync of the directory. mode is applied
 * exactly (fchmod) when exact_mode, else it is subject to the umask. 0 or -errno. */
int ws_write_atomic(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bool exact_mode);

/* A message for an errno from the functions above about path shown. */
void ws_strerror(int err, const char *shown, char *buf, size_t len);
/* Copies path for messages: at most ~160 bytes, control bytes as '?', "..." when cut. */
void ws_shown(const char *path, size_t len, char *buf, size_t buflen);

/* The prefix of temporary files made by ws_write_atomic. */
#define WS_TMP_PREFIX ".cadre-tmp-"

#endif
