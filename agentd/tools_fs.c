/* tools_fs: read_file, write_file_tool and edit_file (see tools.h). */
#include "tools_internal.h"
#include "tools_lines.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* ---- read_file ---------------------------------------------------------------- */

/* Opens rel for reading as a regular file: fd, or -1 after an error in out. */
static int open_regular(tools_t *t, const char *rel, const char *shown, struct stat *st, tool_result_t *out) {
  int fd = ws_open(&t->ws, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  char err[512];
  if (fd < 0) {
    ws_strerror(-fd, shown, err, sizeof err);
    tr_error(out, "%s", err);
    return -1;
  }
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    bool dir = S_ISDIR(st->st_mode);
    close(fd);
    tr_error(out, "path \"%s\" is %s", shown,
             dir ? "a directory; use list_files to see its files" : "not a regular file");
    return -1;
  }
  if (tools_is_hidden(t, fd, NULL) || st->st_nlink > 1) {
    close(fd);
    if (st->st_nlink > 1 && !tools_is_hidden(t, fd, NULL))
      tools_nlink_error(out, shown, st->st_nlink);
    else
      tools_hidden_error(out, shown);
    return -1;
  }
  return fd;
}

typedef struct {
  long long offset, limit;
  size_t cap;
  size_t lineno, shown_from, shown_to;
  bool cut_by_cap;
} readspec_t;

/* Adds the numbered lines of r that spec selects to b; counts all lines. */
static void read_lines(linerd_t *r, readspec_t *s, sbuf_t *b) {
  while (linerd_next(r) == 1) {
    s->lineno++;
    if ((long long)s->lineno < s->offset || s->cut_by_cap)
      continue;
    if (s->shown_to && (long long)(s->shown_to - s->shown_from + 1) >= s->limit)
      continue;
    size_t keep = r->full_len > r->line_len ? tools_utf8_complete(r->line, r->line_len) : r->line_len;
    if (b->len > 0 && b->len + keep + 16 > s->cap) {
      s->cut_by_cap = true;
      continue;
    }
    sbuf_printf(b, "%6zu\t", s->lineno);
    sbuf_add(b, r->line, keep);
    if (r->full_len > r->line_len)
      sbuf_printf(b, " [... line cut: %zu bytes in all]", r->full_len);
    sbuf_puts(b, "\n");
    if (!s->shown_to)
      s->shown_from = s->lineno;
    s->shown_to = s->lineno;
  }
}

// read_file {path, offset?, limit?}: numbered lines.
void tools_read_file(tools_t *t, const targs_t *a, tool_result_t *out) {
  char *rel = NULL, shown[200];
  readspec_t s = {.offset = 1, .limit = TOOLS_READ_LIMIT, .cap = t->output_cap};
  if (targ_path(t, a, true, &rel, shown, sizeof shown, out) < 0 ||
      targ_int(a, "offset", 0, LLONG_MAX, &s.offset, out) < 0 || targ_int(a, "limit", 1, 1000000, &s.limit, out) < 0) {
    free(rel);
    return;
  }
  if (s.offset == 0)
    s.offset = 1;
  struct stat st;
  int fd = open_regular(t, rel, shown, &st, out);
  free(rel);
  if (fd < 0)
    return;
  if (tools_is_binary(fd)) {
    close(fd);
    tr_error(out, "\"%s\" is a binary file, %lld bytes; read_file shows text files only", shown, (long long)st.st_size);
    return;
  }
  linerd_t *r = linerd_new(fd, TOOLS_LINE_MAX);
  sbuf_t b = {0};
  if (r)
    read_lines(r, &s, &b);
  int err = r ? r->err : ENOMEM;
  linerd_free(r);
  close(fd);
  if (err) {
    sbuf_free(&b);
    tr_error(out, "cannot read \"%s\": %s", shown, strerror(err));
  } else if (s.lineno == 0) {
    sbuf_puts(&b, "(empty file)\n");
    tr_text(out, &b, false);
    tr_summary(out, "read %s: empty", shown);
  } else if (!s.shown_to) {
    sbuf_free(&b);
    tr_error(out, "\"%s\" has %zu lines; offset %lld is past the end", shown, s.lineno, s.offset);
  } else {
    if (s.shown_to < s.lineno)
      sbuf_printf(&b, "[lines %zu-%zu of %zu shown%s; to read on, call read_file with offset=%zu]\n", s.shown_from,
                  s.shown_to, s.lineno, s.cut_by_cap ? " (output size limit)" : "", s.shown_to + 1);
    tr_text(out, &b, false);
    tr_summary(out, "read %s: lines %zu-%zu of %zu", shown, s.shown_from, s.shown_to, s.lineno);
  }
}

/* ---- writing ------------------------------------------------------------------ */

/* Takes the per-file lock and the directory's flock (other processes). */
static pthread_mutex_t *lock_target(tools_t *t, ws_target_t *tg) {
  pthread_mutex_t *m = tools_file_lock(t, &tg->dir_st, tg->name);
  pthread_mutex_lock(m);
  while (flock(tg->dirfd, LOCK_EX) != 0 && errno == EINTR) {
  }
  return m;
}

static void unlock_target(pthread_mutex_t *m, ws_target_t *tg) {
  flock(tg->dirfd, LOCK_UN);
  pthread_mutex_unlock(m);
}

/* True when the deepest directory of rel that exists is one of the node's own
 * (or in one): checked before missing parents are made, so that none is made there. */
static bool parent_hidden(tools_t *t, const char *rel) {
  char *dir = strdup(rel);
  bool hidden = false;
  for (char *slash; dir && (slash = strrchr(dir, '/'));) {
    *slash = '\0';
    int fd = ws_open(&t->ws, *dir ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (fd == -ENOENT)
      continue;
    hidden = fd >= 0 && tools_is_hidden(t, fd, NULL);
    if (fd >= 0)
      close(fd);
    break;
  }
  free(dir);
  return hidden;
}

// write_file_tool {path, content}: create or replace a file atomically.
void tools_write_file(tools_t *t, const targs_t *a, tool_result_t *out) {
  char *rel = NULL, shown[200], err[512];
  const char *content = NULL;
  size_t len = 0;
  if (targ_path(t, a, true, &rel, shown, sizeof shown, out) < 0 ||
      targ_str(a, "content", true, &content, &len, out) < 0) {
    free(rel);
    return;
  }
  ws_target_t tg;
  if (parent_hidden(t, rel)) {
    free(rel);
    tools_hidden_error(out, shown);
    return;
  }
  int rc = ws_target(&t->ws, rel, true, shown, &tg, err, sizeof err);
  free(rel);
  if (rc != 0) {
    tr_error(out, "%s", err);
    return;
  }
  if (tools_is_hidden(t, tg.dirfd, tg.name)) {
    ws_target_close(&tg);
    tools_hidden_error(out, shown);
    return;
  }
  pthread_mutex_t *m = lock_target(t, &tg);
  struct stat st;
  bool exists = fstatat(tg.dirfd, tg.name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
  rc = ws_write_atomic(tg.dirfd, tg.name, content, len, exists ? st.st_mode : 0644, exists);
  unlock_target(m, &tg);
  ws_target_close(&tg);
  if (rc != 0) {
    ws_strerror(-rc, shown, err, sizeof err);
    tr_error(out, "cannot write: %s", err);
    return;
  }
  sbuf_t b = {0};
  sbuf_printf(&b, "wrote %zu bytes to %s (%s)", len, shown, exists ? "replaced" : "new file");
  tr_text(out, &b, false);
  tr_summary(out, "wrote %zu bytes to %s", len, shown);
}

/* Reads the whole regular file dirfd/name (at most TOOLS_EDIT_MAX bytes). */
static char *read_whole(int dirfd, const char *name, size_t *len, struct stat *st, int *err) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  char *buf = NULL;
  *err = 0;
  if (fd < 0 || fstat(fd, st) != 0)
    *err = errno;
  else if (!S_ISREG(st->st_mode))
    *err = EINVAL;
  else if (st->st_nlink > 1)
    *err = EMLINK; /* swapped for a hard link since it was looked at */
  else if ((unsigned long long)st->st_size > TOOLS_EDIT_MAX)
    *err = EFBIG;
  else if (!(buf = malloc((size_t)st->st_size + 1)))
    *err = ENOMEM;
  size_t n = 0;
  while (buf && !*err) {
    if (n == (size_t)st->st_size)
      break;
    ssize_t r = read(fd, buf + n, (size_t)st->st_size - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      *err = errno;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  if (fd >= 0)
    close(fd);
  if (*err) {
    free(buf);
    return NULL;
  }
  *len = n;
  return buf;
}

typedef struct {
  const char *old_s, *new_s;
  size_t old_len, new_len;
  bool all;
  size_t count, first_line;
} edit_t;

/* Counts the non-overlapping matches of e->old_s in data, and the line of the first. */
static void count_matches(const char *data, size_t len, edit_t *e) {
  e->count = 0;
  for (const char *p = data; (p = memmem(p, len - (size_t)(p - data), e->old_s, e->old_len)); p += e->old_len) {
    if (e->count++ == 0) {
      e->first_line = 1;
      for (const char *q = data; (q = memchr(q, '\n', (size_t)(p - q))); q++)
        e->first_line++;
    }
  }
}

/* data with every match of e->old_s replaced (all of them: the caller checked the count). */
static bool replace_all(const char *data, size_t len, const edit_t *e, sbuf_t *b) {
  const char *p = data, *m;
  while ((m = memmem(p, len - (size_t)(p - data), e->old_s, e->old_len))) {
    sbuf_add(b, p, (size_t)(m - p));
    sbuf_add(b, e->new_s, e->new_len);
    p = m + e->old_len;
  }
  sbuf_add(b, p, len - (size_t)(p - data));
  return true;
}

/* The edit under the file's lock: 0, or -1 after an error in out. */
static int edit_locked(ws_target_t *tg, const char *shown, edit_t *e, tool_result_t *out) {
  size_t len = 0;
  struct stat st;
  int err;
  char *data = read_whole(tg->dirfd, tg->name, &len, &st, &err), msg[512];
  if (!data) {
    if (err == EFBIG)
      tr_error(out, "\"%s\" is too large to edit (more than %u MiB)", shown, TOOLS_EDIT_MAX >> 20);
    else if (err == EINVAL)
      tr_error(out, "path \"%s\" is not a regular file", shown);
    else if (err == EMLINK)
      tools_nlink_error(out, shown, st.st_nlink);
    else {
      ws_strerror(err, shown, msg, sizeof msg);
      tr_error(out, "%s", msg);
    }
    return -1;
  }
  count_matches(data, len, e);
  int rc = -1;
  sbuf_t b = {0};
  if (e->count == 0)
    tr_error(out, "old_string not found in %s; read the file again and copy the text exactly, whitespace included",
             shown);
  else if (e->count > 1 && !e->all)
    tr_error(out, "old_string matches %zu times in %s; give more context or set replace_all", e->count, shown);
  else if (!replace_all(data, len, e, &b))
    tr_error(out, "out of memory editing %s", shown);
  else if ((err = -ws_write_atomic(tg->dirfd, tg->name, b.s ? b.s : "", b.len, st.st_mode, true)) != 0) {
    ws_strerror(err, shown, msg, sizeof msg);
    tr_error(out, "cannot write: %s", msg);
  } else {
    rc = 0;
  }
  sbuf_free(&b);
  free(data);
  return rc;
}

// edit_file {path, old_string, new_string, replace_all?}: exact replacement.
void tools_edit_file(tools_t *t, const targs_t *a, tool_result_t *out) {
  char *rel = NULL, shown[200], err[512];
  edit_t e = {0};
  if (targ_path(t, a, true, &rel, shown, sizeof shown, out) < 0 ||
      targ_str(a, "old_string", true, &e.old_s, &e.old_len, out) < 0 ||
      targ_str(a, "new_string", true, &e.new_s, &e.new_len, out) < 0 || targ_bool(a, "replace_all", &e.all, out) < 0) {
    free(rel);
    return;
  }
  ws_target_t tg;
  int rc = -1;
  if (e.old_len == 0)
    tr_error(out, "old_string is empty; to create a file or replace all of it use write_file_tool");
  else if (e.old_len == e.new_len && memcmp(e.old_s, e.new_s, e.old_len) == 0)
    tr_error(out, "old_string and new_string are the same; nothing to change");
  else if (ws_target(&t->ws, rel, false, shown, &tg, err, sizeof err) != 0)
    tr_error(out, "%s", err);
  else if (!tg.exists || tools_is_hidden(t, tg.dirfd, tg.name) || tg.st.st_nlink > 1) {
    if (!tg.exists)
      tr_error(out, "no such file: \"%s\" (to create it use write_file_tool)", shown);
    else if (tools_is_hidden(t, tg.dirfd, tg.name))
      tools_hidden_error(out, shown);
    else
      tools_nlink_error(out, shown, tg.st.st_nlink);
    ws_target_close(&tg);
  } else {
    pthread_mutex_t *m = lock_target(t, &tg);
    rc = edit_locked(&tg, shown, &e, out);
    unlock_target(m, &tg);
    ws_target_close(&tg);
  }
  free(rel);
  if (rc != 0)
    return;
  sbuf_t b = {0};
  sbuf_printf(&b, "replaced %zu occurrence%s in %s (%sline %zu)", e.count, e.count == 1 ? "" : "s", shown,
              e.count == 1 ? "" : "first at ", e.first_line);
  tr_text(out, &b, false);
  tr_summary(out, "edited %s: %zu replacement%s", shown, e.count, e.count == 1 ? "" : "s");
}
