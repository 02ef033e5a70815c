/* tools_util: what the tool files share: the tools' state, argument readers,
 * result builders, UTF-8 clean-up and file locks (tools_util.c). Internal to
 * the tools; it depends on nothing else of theirs. */
#ifndef CADRE_TOOLS_UTIL_H
#define CADRE_TOOLS_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "sbuf.h"
#include "tools.h"
#include "util.h"
#include "workspace.h"

#define TOOLS_LOCK_STRIPES 64

/* One of the node's own files or directories (tools_opts_t.hidden), as it was at start-up. */
typedef struct {
  dev_t dev;
  ino_t ino;
  bool dir;
  char *real; /* its real path */
} hidden_t;

struct tools {
  ws_t ws;
  int default_timeout_s;
  size_t output_cap;
  char **scrub_env;     /* NULL-terminated copies of opts->scrub_env */
  char **secret_values; /* NULL-terminated copies (wiped at destroy) */
  pthread_mutex_t locks[TOOLS_LOCK_STRIPES];
  atomic_ulong run_seq;    /* numbers execute_bash runs (their environment marker) */
  struct sandbox *sandbox; /* NULL: commands unconfined */
  char *no_commands;       /* non-NULL: execute_bash refuses, with this reason */
  hidden_t *hidden;
  size_t n_hidden;
};

/* One call's arguments. */
typedef struct {
  json_t *obj;
  const char *tool;
} targs_t;

/* Argument getters: 0 when present and valid, 1 when absent and optional,
 * -1 after writing an error into out (missing required or wrong type). */
int targ_str(const targs_t *a, const char *name, bool required, const char **val, size_t *len, tool_result_t *out);
int targ_int(const targs_t *a, const char *name, long long min, long long max, long long *val, tool_result_t *out);
int targ_bool(const targs_t *a, const char *name, bool *val, tool_result_t *out);
/* The "path" argument (or its alias "file_path") checked by ws_rel: *rel is
 * the workspace-relative path (caller frees), shown the path for messages.
 * Absent and optional: *rel is "." and 1 is returned. */
int targ_path(const tools_t *t, const targs_t *a, bool required, char **rel, char *shown, size_t shownlen,
              tool_result_t *out);

/* Sets out's text (valid UTF-8 made from b, which is freed) and is_error. */
void tr_text(tool_result_t *out, sbuf_t *b, bool is_error);
/* Sets an error result from a format. */
void tr_error(tool_result_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets out's one-line summary. */
void tr_summary(tool_result_t *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The lock that serialises writes to dir/name (striped; take one at a time). */
pthread_mutex_t *tools_file_lock(tools_t *t, const struct stat *dir_st, const char *name);
/* Copies s as valid UTF-8 (bad bytes and NUL as U+FFFD). Caller frees. */
char *tools_utf8_clean(const char *s, size_t len);
/* How many bytes of valid UTF-8 s (len bytes) to keep so that no character is cut at n. */
size_t tools_utf8_cut(const char *s, size_t len, size_t n);
/* len without an incomplete UTF-8 sequence at the end of s (one cut by a size limit). */
size_t tools_utf8_complete(const char *s, size_t len);

/* Records the node's own files (those of paths that exist) in t->hidden. 0 or -ENOMEM. */
int tools_hidden_init(tools_t *t, const char *const *paths);
void tools_hidden_free(tools_t *t);
/* True when the file open at fd, or with name the entry dirfd/name, is one of
 * the node's own files or lies in one of its directories (by device and inode,
 * and by the real path the kernel has for the fd). */
bool tools_is_hidden(const tools_t *t, int fd, const char *name);
/* True when an entry with inode ino on device dev (of a directory walk) is one of them. */
bool tools_hidden_ino(const tools_t *t, dev_t dev, ino_t ino);
/* The error for a file that is one of the node's own. */
void tools_hidden_error(tool_result_t *out, const char *shown);
/* The error for a regular file with more than one hard link (which may be a
 * link to a file outside the workspace). */
void tools_nlink_error(tool_result_t *out, const char *shown, nlink_t nlink);
/* Replaces every secret value (8 bytes or more) in out's text and summary by "[secret removed]". */
void tools_scrub_secrets(const tools_t *t, tool_result_t *out);

/* Parses a call's arguments: a JSON object, or a JSON string holding one;
 * empty or null is {}. NULL after writing an error into out. Caller owns. */
json_t *targs_parse(const char *text, const char *tool, tool_result_t *out);

#endif
