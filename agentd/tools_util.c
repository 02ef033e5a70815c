/* tools_util.c: what the tools share: UTF-8 clean-up of results, result
 * builders, argument readers, and the striped file locks (see tools_util.h). */
#include "tools_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- text buffers and results ------------------------------------------------ */

// Copies s as valid UTF-8 (bad bytes and NUL as U+FFFD).
char *tools_utf8_clean(const char *s, size_t len) {
  sbuf_t b = {0};
  sbuf_add(&b, "", 0);
  for (size_t i = 0; i < len;) {
    size_t n = s[i] ? util_utf8_seq((const unsigned char *)s + i, len - i) : 0;
    if (n == 0) {
      sbuf_add(&b, "\xEF\xBF\xBD", 3);
      i++;
    } else {
      size_t run = n;
      while (i + run < len && (unsigned char)s[i + run] < 0x80 && s[i + run])
        run++;
      sbuf_add(&b, s + i, run);
      i += run;
    }
  }
  return b.s;
}

// How many bytes of s to keep so that no UTF-8 character is cut at n.
size_t tools_utf8_cut(const char *s, size_t len, size_t n) {
  if (n >= len)
    return len;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

// len without an incomplete UTF-8 sequence at the end of s.
size_t tools_utf8_complete(const char *s, size_t len) {
  size_t i = len, back = 0;
  while (i > 0 && back < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
    i--, back++;
  if (i == 0)
    return len;
  unsigned c = (unsigned char)s[i - 1];
  size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  return need > 1 && len - (i - 1) < need ? i - 1 : len;
}

// Sets out's text from b (freed) and is_error.
void tr_text(tool_result_t *out, sbuf_t *b, bool is_error) {
  free(out->text);
  out->text = tools_utf8_clean(b->s ? b->s : "", b->len);
  out->is_error = is_error;
  sbuf_free(b);
}

// Sets out's one-line summary (valid UTF-8, cut at a character boundary).
void tr_summary(tool_result_t *out, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  char *clean = tools_utf8_clean(tmp, tools_utf8_complete(tmp, strlen(tmp)));
  const char *src = clean ? clean : "";
  size_t n = tools_utf8_cut(src, strlen(src), sizeof out->summary - 1);
  memcpy(out->summary, src, n);
  out->summary[n] = '\0';
  free(clean);
  for (char *p = out->summary; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t')
      *p = ' ';
}

// Sets an error result from a format.
void tr_error(tool_result_t *out, const char *fmt, ...) {
  sbuf_t b = {.max = 1023};
  va_list ap;
  va_start(ap, fmt);
  sbuf_vprintf(&b, fmt, ap);
  va_end(ap);
  tr_summary(out, "error: %s", sbuf_str(&b));
  tr_text(out, &b, true);
}
/* ---- arguments ------------------------------------------------------------------ */

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

/* The member name of a's object, treating null as absent. */
static json_t *targ_get(const targs_t *a, const char *name) {
  json_t *v = json_object_get(a->obj, name);
  return json_is_null(v) ? NULL : v;
}

// The string argument name.
int targ_str(const targs_t *a, const char *name, bool required, const char **val, size_t *len, tool_result_t *out) {
  json_t *v = targ_get(a, name);
  if (!v && !required)
    return 1;
  if (!v) {
    tr_error(out, "missing required argument \"%s\" for %s", name, a->tool);
    return -1;
  }
  if (!json_is_string(v)) {
    tr_error(out, "argument \"%s\" of %s must be a string, got %s", name, a->tool, json_kind(v));
    return -1;
  }
  *val = json_string_value(v);
  if (len)
    *len = json_string_length(v);
  return 0;
}

// The integer argument name, within [min, max].
int targ_int(const targs_t *a, const char *name, long long min, long long max, long long *val, tool_result_t *out) {
  json_t *v = targ_get(a, name);
  if (!v)
    return 1;
  double d = json_is_real(v) ? json_real_value(v) : 0;
  if (!json_is_integer(v) && !(json_is_real(v) && d == (double)(long long)d)) {
    tr_error(out, "argument \"%s\" of %s must be an integer, got %s", name, a->tool, json_kind(v));
    return -1;
  }
  long long n = json_is_integer(v) ? (long long)json_integer_value(v) : (long long)d;
  if (n < min || n > max) {
    tr_error(out, "argument \"%s\" of %s must be between %lld and %lld, got %lld", name, a->tool, min, max, n);
    return -1;
  }
  *val = n;
  return 0;
}

// The boolean argument name.
int targ_bool(const targs_t *a, const char *name, bool *val, tool_result_t *out) {
  json_t *v = targ_get(a, name);
  if (!v)
    return 1;
  if (!json_is_boolean(v)) {
    tr_error(out, "argument \"%s\" of %s must be true or false, got %s", name, a->tool, json_kind(v));
    return -1;
  }
  *val = json_is_true(v);
  return 0;
}

// The path argument (or its alias file_path), checked against the workspace.
int targ_path(const tools_t *t, const targs_t *a, bool required, char **rel, char *shown, size_t shownlen,
              tool_result_t *out) {
  const char *name = targ_get(a, "path") || !targ_get(a, "file_path") ? "path" : "file_path";
  const char *p = NULL;
  size_t len = 0;
  int rc = targ_str(a, name, required, &p, &len, out);
  *rel = NULL;
  if (rc == 1) {
    *rel = strdup(".");
    snprintf(shown, shownlen, ".");
    return *rel ? 1 : -1;
  }
  if (rc < 0)
    return -1;
  ws_shown(p, len, shown, shownlen);
  char err[512];
  if (ws_rel(&t->ws, p, len, rel, err, sizeof err) != 0) {
    tr_error(out, "%s", err);
    return -1;
  }
  return 0;
}

json_t *targs_parse(const char *text, const char *tool, tool_result_t *out) {
  const char *p = text ? text : "";
  while (isspace((unsigned char)*p))
    p++;
  if (!*p)
    return json_object();
  json_error_t e;
  json_t *v = json_loads(p, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (json_is_string(v)) {
    json_t *inner = json_loadb(json_string_value(v), json_string_length(v), JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    json_decref(v);
    v = inner;
  }
  if (!v) {
    tr_error(out,
             "arguments for %s are not valid JSON (%s, at character %d); send a JSON object such as "
             "{\"path\": \"src/main.c\"}",
             tool, e.text, e.position);
    return NULL;
  }
  if (json_is_null(v)) {
    json_decref(v);
    return json_object();
  }
  if (!json_is_object(v)) {
    tr_error(out, "arguments for %s must be a JSON object, got %s", tool, json_kind(v));
    json_decref(v);
    return NULL;
  }
  return v;
}

// The lock that serialises writes to dir/name.
pthread_mutex_t *tools_file_lock(tools_t *t, const struct stat *dir_st, const char *name) {
  uint64_t h = 1469598103934665603ULL;
  uint64_t parts[2] = {(uint64_t)dir_st->st_dev, (uint64_t)dir_st->st_ino};
  const unsigned char *p = (const unsigned char *)parts;
  for (size_t i = 0; i < sizeof parts; i++)
    h = (h ^ p[i]) * 1099511628211ULL;
  for (p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  return &t->locks[h % TOOLS_LOCK_STRIPES];
}

/* ---- the node's own files and secrets ---------------------------------------------- */

#define SECRET_MIN 8
#define SECRET_MARK "[secret removed]"

// Records the node's own files that exist.
int tools_hidden_init(tools_t *t, const char *const *paths) {
  size_t n = 0;
  while (paths && paths[n])
    n++;
  t->hidden = calloc(n + 1, sizeof *t->hidden);
  if (!t->hidden)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    char *real = realpath(paths[i], NULL);
    size_t n = real ? strlen(real) : 0;
    const char *ws = t->ws.root_real;
    bool holds_ws = real && ws && strncmp(ws, real, n) == 0 && (ws[n] == '\0' || ws[n] == '/' || n == 1);
    if (!real || stat(real, &st) != 0 || (S_ISDIR(st.st_mode) && holds_ws)) {
      free(real); /* a directory that holds the workspace: the tools are confined beneath it anyway */
      continue;
    }
    t->hidden[t->n_hidden++] = (hidden_t){.dev = st.st_dev, .ino = st.st_ino, .dir = S_ISDIR(st.st_mode), .real = real};
  }
  return 0;
}

void tools_hidden_free(tools_t *t) {
  for (size_t i = 0; i < t->n_hidden; i++)
    free(t->hidden[i].real);
  free(t->hidden);
  t->hidden = NULL;
  t->n_hidden = 0;
}

// True when an entry (dev, ino) is one of the node's own files or directories.
bool tools_hidden_ino(const tools_t *t, dev_t dev, ino_t ino) {
  for (size_t i = 0; i < t->n_hidden; i++)
    if (t->hidden[i].ino == ino && t->hidden[i].dev == dev)
      return true;
  return false;
}

/* True when path is one of the hidden paths or beneath a hidden directory. */
static bool hidden_path(const tools_t *t, const char *path) {
  for (size_t i = 0; i < t->n_hidden; i++) {
    size_t n = strlen(t->hidden[i].real);
    if (strncmp(path, t->hidden[i].real, n) == 0 && (path[n] == '\0' || (t->hidden[i].dir && path[n] == '/')))
      return true;
  }
  return false;
}

// True when the file at fd (or dirfd/name) is one of the node's own.
bool tools_is_hidden(const tools_t *t, int fd, const char *name) {
  if (!t->n_hidden)
    return false;
  struct stat st;
  int rc = name ? fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) : fstat(fd, &st);
  if (rc == 0 && tools_hidden_ino(t, st.st_dev, st.st_ino))
    return true;
  char link[64], path[PATH_MAX + NAME_MAX + 2];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, PATH_MAX);
  if (n <= 0)
    return false; /* no /proc: the inode check above is what there is */
  path[n] = '\0';
  if (name)
    snprintf(path + n, sizeof path - (size_t)n, "/%s", name);
  return hidden_path(t, path);
}

void tools_hidden_error(tool_result_t *out, const char *shown) {
  tr_error(out, "\"%s\" is one of this node's own files (secrets, keys, config or state); the tools do not touch it",
           shown);
}

void tools_nlink_error(tool_result_t *out, const char *shown, nlink_t nlink) {
  tr_error(out,
           "\"%s\" has %lu hard links; a file with more than one may be a link to a file outside the workspace, "
           "so the file tools do not read or edit it (write_file_tool may replace it)",
           shown, (unsigned long)nlink);
}

/* Replaces every occurrence of the secrets in s (NUL-terminated, malloc'd) and returns the new string. */
static char *scrub_text(const tools_t *t, char *s) {
  for (size_t i = 0; s && t->secret_values && t->secret_values[i]; i++) {
    const char *v = t->secret_values[i];
    size_t vl = strlen(v);
    if (vl < SECRET_MIN || !strstr(s, v))
      continue;
    sbuf_t b = {0};
    const char *p = s, *m;
    while ((m = strstr(p, v))) {
      sbuf_add(&b, p, (size_t)(m - p));
      sbuf_puts(&b, SECRET_MARK);
      p = m + vl;
    }
    sbuf_puts(&b, p);
    free(s);
    s = b.s ? b.s : strdup("");
  }
  return s;
}

// Replaces every secret value in out's text and summary.
void tools_scrub_secrets(const tools_t *t, tool_result_t *out) {
  if (!t || !t->secret_values)
    return;
  out->text = scrub_text(t, out->text);
  char *sum = scrub_text(t, strdup(out->summary));
  if (sum)
    snprintf(out->summary, sizeof out->summary, "%s", sum);
  free(sum);
}
