/* tools_preview: what a call that changes things would do, for the user who is
 * asked to allow it (see tools.h): the command, or the edit as lines removed
 * and added. */
#include "tools_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREVIEW_READ_MAX (256 * 1024) /* the current content compared beyond this: not shown as a diff */

typedef struct {
  sbuf_t *b;
  size_t lines, max;
  size_t dropped;
} pv_t;

/* Adds one line with its mark, or counts it once the cap is reached. */
static void pv_line(pv_t *p, char mark, const char *s, size_t n) {
  if (p->lines >= p->max) {
    p->dropped++;
    return;
  }
  sbuf_printf(p->b, "%c ", mark);
  sbuf_add_utf8(p->b, s, n);
  sbuf_puts(p->b, "\n");
  p->lines++;
}

/* Adds every line of s[0..n) with mark. */
static void pv_lines(pv_t *p, char mark, const char *s, size_t n) {
  while (n > 0) {
    const char *nl = memchr(s, '\n', n);
    size_t len = nl ? (size_t)(nl - s) : n;
    pv_line(p, mark, s, len);
    s += len + (nl ? 1 : 0);
    n -= len + (nl ? 1 : 0);
  }
}

static void pv_end(pv_t *p) {
  if (p->dropped)
    sbuf_printf(p->b, "... %zu more line%s\n", p->dropped, p->dropped == 1 ? "" : "s");
}

void tools_preview_diff(sbuf_t *b, const char *old_s, const char *new_s, size_t max_lines) {
  size_t ol = strlen(old_s), nl = strlen(new_s);
  if (ol == nl && memcmp(old_s, new_s, ol) == 0) {
    sbuf_puts(b, "(no change)\n");
    return;
  }
  /* the common first lines and last lines are left out */
  size_t pre = 0, line = 1;
  for (size_t i = 0; i < ol && i < nl && old_s[i] == new_s[i]; i++)
    if (old_s[i] == '\n') {
      pre = i + 1;
      line++;
    }
  size_t suf = 0;
  for (size_t i = 1; i <= ol - pre && i <= nl - pre && old_s[ol - i] == new_s[nl - i]; i++)
    if ((ol - i == pre || old_s[ol - i - 1] == '\n') && (nl - i == pre || new_s[nl - i - 1] == '\n'))
      suf = i; /* the last i bytes are whole lines of both */
  pv_t p = {.b = b, .max = max_lines};
  sbuf_printf(b, "@@ line %zu\n", line);
  pv_lines(&p, '-', old_s + pre, ol - pre - suf);
  pv_lines(&p, '+', new_s + pre, nl - pre - suf);
  pv_end(&p);
}

/* The current content of rel (NULL when it does not exist or is too large to show). */
static char *read_current(tools_t *t, const char *rel, bool *exists) {
  int fd = ws_open(&t->ws, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  *exists = fd >= 0;
  if (fd < 0)
    return NULL;
  sbuf_t s = {0};
  char buf[8192];
  ssize_t r;
  while ((r = util_read(fd, buf, sizeof buf)) > 0 && s.len <= PREVIEW_READ_MAX)
    sbuf_add(&s, buf, (size_t)r);
  close(fd);
  if (s.len > PREVIEW_READ_MAX || memchr(sbuf_str(&s), '\0', s.len)) {
    sbuf_free(&s);
    return NULL;
  }
  char *out = strdup(sbuf_str(&s));
  sbuf_free(&s);
  return out;
}

char *tools_preview(tools_t *t, const char *name, const char *arguments, size_t max_lines) {
  tool_result_t err = {0};
  json_t *o = targs_parse(arguments, name ? name : "", &err);
  tool_result_free(&err);
  if (!o || !name) {
    json_decref(o);
    return NULL;
  }
  targs_t a = {.obj = o, .tool = name};
  sbuf_t b = {0};
  const char *path = json_string_value(json_object_get(o, "path"));
  if (!path)
    path = json_string_value(json_object_get(o, "file_path"));
  if (strcmp(name, "execute_bash") == 0) {
    const char *cmd = json_string_value(json_object_get(o, "command"));
    sbuf_puts(&b, "$ ");
    if (cmd)
      sbuf_add_utf8(&b, cmd, strlen(cmd));
  } else if (strcmp(name, "edit_file") == 0 && path) {
    const char *o_s = json_string_value(json_object_get(o, "old_string"));
    const char *n_s = json_string_value(json_object_get(o, "new_string"));
    pv_t p = {.b = &b, .max = max_lines};
    sbuf_printf(&b, "edit %s%s\n", path, json_is_true(json_object_get(o, "replace_all")) ? " (every match)" : "");
    pv_lines(&p, '-', o_s ? o_s : "", o_s ? strlen(o_s) : 0);
    pv_lines(&p, '+', n_s ? n_s : "", n_s ? strlen(n_s) : 0);
    pv_end(&p);
  } else if (strcmp(name, "write_file_tool") == 0 && path) {
    const char *content = json_string_value(json_object_get(o, "content"));
    char *rel = NULL, shown[200];
    bool exists = false;
    char *cur = NULL;
    if (targ_path(t, &a, true, &rel, shown, sizeof shown, &err) == 0)
      cur = read_current(t, rel, &exists);
    tool_result_free(&err);
    free(rel);
    if (cur) {
      sbuf_printf(&b, "replace %s\n", path);
      tools_preview_diff(&b, cur, content ? content : "", max_lines);
    } else {
      pv_t p = {.b = &b, .max = max_lines};
      size_t n = content ? strlen(content) : 0;
      sbuf_printf(&b, "%s %s (%zu bytes)\n", exists ? "replace" : "new file", path, n);
      pv_lines(&p, '+', content ? content : "", n);
      pv_end(&p);
    }
    free(cur);
  }
  json_decref(o);
  if (!b.len) {
    sbuf_free(&b);
    return NULL;
  }
  while (b.len && b.s[b.len - 1] == '\n')
    b.s[--b.len] = '\0';
  char *out = strdup(sbuf_str(&b));
  sbuf_free(&b);
  return out;
}
