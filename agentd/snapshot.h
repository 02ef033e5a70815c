/* snapshot: the file side of workflow checkpoints and rollback, confined to
 * the workspace: hashes and base64 of file contents, the workspace walk that
 * a snapshot before execute_bash is made of (with its bounds), and the two
 * restores (one file; prune to a list of kept files).
 *
 * Internal to agentd; no sockets here (step.c speaks the protocol). Paths are
 * workspace-relative, normalised ("a/b", no "./", no "//", no "..").
 *
 * The walk never follows symlinks and skips every directory named ".git".
 * Symlinks and other non-regular files are neither snapshotted nor pruned:
 * they are counted and named in the snapshot's report instead. Temporary
 * files of atomic writes (WS_TMP_PREFIX) are left out of snapshots.
 */
#ifndef CADRE_SNAPSHOT_H
#define CADRE_SNAPSHOT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "workspace.h"

#define SNAP_HEX_LEN 64                     /* hex SHA-256, without the NUL */
#define SNAP_MAX_FILES 5000                 /* files in one snapshot */
#define SNAP_MAX_TOTAL ((uint64_t)64 << 20) /* bytes in one snapshot */
/* Largest file in one checkpoint message: its base64 (4/3) plus the envelope
 * must stay below PROTO_MAX_FRAME (8 MiB), so 6 MiB less 64 KiB. */
#define SNAP_MAX_FILE ((uint64_t)(6 << 20) - (64 << 10))
#define SNAP_MAX_DEPTH 64            /* directory nesting walked */
#define SNAP_NAMED_SKIPS 100         /* skipped paths named in a report */
#define SNAP_DELETED_MAX 10000       /* removed paths named in a prune's report */
#define SNAP_DELETED_BYTES (4 << 20) /* and their bytes (the report is one frame) */

/* Inits libsodium (idempotent, thread-safe). 0 or -1. */
int snap_init(void);

/* Hex SHA-256 of data into hex (SNAP_HEX_LEN + 1 bytes). */
void snap_sha256(const void *data, size_t len, char *hex);
/* Hex SHA-256 of the regular file rel beneath the workspace into hex; ""
 * when it is absent. 0, or -errno (-EINVAL: not a regular file). */
int snap_sha256_file(const ws_t *ws, const char *rel, char *hex);
/* snap_sha256_file, and the file's permission bits into *mode (0 when absent). */
int snap_state_file(const ws_t *ws, const char *rel, char *hex, mode_t *mode);

/* Base64 (standard alphabet, padded) of data. Caller frees; NULL on ENOMEM. */
char *snap_b64_encode(const void *data, size_t len);
/* Decodes base64 text (whitespace ignored). Caller frees *out (NUL-terminated,
 * *len bytes). 0, -EINVAL (not base64) or -ENOMEM. */
int snap_b64_decode(const char *text, void **out, size_t *len);

/* True when s (len bytes) is valid UTF-8 without NUL (fits a STR field). */
bool snap_utf8_ok(const char *s, size_t len);
/* Lexically normalised copy of a workspace-relative path: "./a//b/../c" ->
 * "a/c"; "" for the root. NULL when it climbs above the root (or ENOMEM). */
char *snap_norm(const char *rel);

/* A whole regular file read beneath the workspace. */
typedef struct {
  bool existed;
  char *data; /* NULL when absent */
  size_t len;
  mode_t mode;                   /* permission bits when it existed */
  char sha256[SNAP_HEX_LEN + 1]; /* "" when absent */
} snap_file_t;

/* Reads the regular file rel (at most max bytes). 0 (absent is fine:
 * existed false), -EFBIG past max, -EINVAL for a directory or special file,
 * or another -errno. */
int snap_read(const ws_t *ws, const char *rel, uint64_t max, snap_file_t *out);
void snap_file_free(snap_file_t *f);

/* The file a write_file_tool or edit_file call with path `path` changes:
 * checked with ws_rel, final symlinks followed (staying beneath), and named
 * by its real workspace-relative path (*canon, caller frees). A missing parent
 * directory is fine (the file is absent). 0, or -1 with err: the path is
 * refused or cannot be resolved, and the tool must not run unrecorded. */
int snap_target(const ws_t *ws, const char *path, char **canon, char *err, size_t errlen);

typedef struct {
  char *path;
  uint64_t size;
  mode_t mode;
} snap_entry_t;

typedef struct {
  snap_entry_t *files; /* the files to send, at most max_files */
  size_t n, cap;
  size_t seen;    /* regular files seen (counting goes on past the bound) */
  uint64_t bytes; /* their total size */
  char *biggest;  /* the largest file seen and its size */
  uint64_t biggest_size;
  size_t symlinks, others; /* not followed: symlinks, and fifos, sockets, devices (skipped) */
  json_t *skipped;         /* the first SNAP_NAMED_SKIPS of those paths */
  json_t *links;           /* the symlinks, kept as links: [{path, target}] (UTF-8 ones, at most SNAP_MAX_FILES) */
  json_t *dirs;            /* the directories: [{path, mode}] (at most SNAP_MAX_FILES) */
} snap_list_t;

typedef struct {
  size_t max_files;
  uint64_t max_total, max_file;
} snap_limits_t;

/* The default limits above. */
snap_limits_t snap_default_limits(void);

/* Lists the workspace's regular files for a snapshot. 0; -EFBIG when a bound
 * is passed (err says which and by how much); -ECANCELED when cancel was set;
 * another -errno with err (an unreadable directory, a name that is not
 * UTF-8). The list is filled either way; free it with snap_list_free. */
int snap_list(const ws_t *ws, const snap_limits_t *lim, atomic_bool *cancel, snap_list_t *out, char *err,
              size_t errlen);
void snap_list_free(snap_list_t *l);

/* A path's state, as checkpoints, restores and a step's list of changes name
 * it: a regular file's hex SHA-256, SNAP_LINK_PREFIX + a symlink's target,
 * SNAP_DIR_STATE for a directory, "" when absent. */
#define SNAP_LINK_PREFIX "symlink:"
#define SNAP_DIR_STATE "dir"
/* The state of rel now (a final symlink is not followed), its mode into *mode
 * (0 for links and absent paths). 0 or -errno. */
int snap_state(const ws_t *ws, const char *rel, char *out, size_t outlen, mode_t *mode);
/* SNAP_LINK_PREFIX + target. Caller frees; NULL on ENOMEM. */
char *snap_link_state(const char *target);
/* Notes a path's state and mode in pre, an object keyed by path. */
void snap_note(json_t *pre, const char *rel, const char *state, mode_t mode);
/* What changed in the workspace since pre (see snap_note): *changed gets
 * [{path, state, sha256, mode}] with the state now ("": removed; sha256 is
 * the state of a regular file, else ""), for every file, symlink or
 * directory created, removed, or changed in content, target or mode (caller
 * owns). 0, or -errno with err (-EFBIG: past the snapshot bounds; nothing
 * reported). */
int snap_changes(const ws_t *ws, const json_t *pre, json_t **changed, char *err, size_t errlen);

/* Rollback of one file: existed -> write data atomically at rel (missing
 * parents made; a symlink or file there is replaced; mode applied when
 * mode_given, else the old file's mode, else 0644); !existed -> remove rel
 * (absent already is fine; a final symlink is removed, not followed). hex
 * gets the SHA-256 of what is there now ("" when absent). 0, or -1 with err;
 * *refused is set when the path is not acceptable (outside the workspace,
 * names no file). */
int snap_restore_file(const ws_t *ws, const char *rel, bool existed, const void *data, size_t len, bool mode_given,
                      mode_t mode, char *hex, bool *refused, char *err, size_t errlen);

/* Rollback of a symlink (type "symlink", target) or a directory (type "dir",
 * mode) at rel: missing parents made; a file, symlink or empty directory there
 * is replaced (a directory that is there keeps its entries and gets mode).
 * 0, or -1 with err (*refused as for snap_restore_file). */
int snap_restore_other(const ws_t *ws, const char *rel, const char *type, const char *target, mode_t mode,
                       bool *refused, char *err, size_t errlen);

/* Rollback of an execute_bash step: removes every regular file of the
 * workspace (outside .git) whose path is not in keep (an array of strings),
 * then the directories that became empty by that and hold no kept path.
 * *deleted gets {deleted: [paths], count (files removed), truncated (not
 * every removed path is named: SNAP_DELETED_MAX, SNAP_DELETED_BYTES), dirs:
 * [removed directories]} (caller owns). 0, or -errno with err
 * (what was removed before the error stays removed and is reported). */
int snap_prune(const ws_t *ws, const json_t *keep, json_t **deleted, char *err, size_t errlen);

#endif
