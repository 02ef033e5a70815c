/* tools_search: list_files and grep (see tools.h): a walk of the workspace
 * that never follows symlinked directories and skips .git, globs with "**"
 * and "{a,b}", POSIX extended regular expressions. */
#include "tools_internal.h"
#include "tools_lines.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WALK_MAX_ENTRIES 200000 /* entries looked at before a walk stops */
#define WALK_MAX_DEPTH 64
#define GLOB_MAX_ALTS 64
#define GLOB_MAX_SEGS 64
#define GREP_MATCH_LINE 4096 /* bytes of a line that the pattern sees */

/* ---- globs ------------------------------------------------------------------ */

typedef struct {
  char *alts[GLOB_MAX_ALTS]; /* brace-expanded alternatives */
  int n;
} gpat_t;

/* The '}' that closes the '{' at open, NULL when none. */
static const char *brace_close(const char *open) {
  int depth = 0;
  for (const char *p = open; *p; p++) {
    if (*p == '\\' && p[1])
      p++;
    else if (*p == '{')
      depth++;
    else if (*p == '}' && --depth == 0)
      return p;
  }
  return NULL;
}

/* Adds pat to g with its first brace group expanded (recursively). */
static void brace_expand(gpat_t *g, const char *pat) {
  const char *open = NULL, *close = NULL;
  for (const char *p = pat; *p && !close; p++) {
    if (*p == '\\' && p[1])
      p++;
    else if (*p == '{' && (close = brace_close(p)))
      open = p;
  }
  if (!open) {
    if (g->n < GLOB_MAX_ALTS)
      g->alts[g->n++] = strdup(pat);
    return;
  }
  size_t plen = strlen(pat);
  char *buf = malloc(plen + 1);
  const char *alt = open + 1;
  for (const char *p = alt; buf && p <= close; p++) {
    if (*p == '\\' && p[1])
      p++;
    else if (*p == '{')
      p = brace_close(p);
    else if (*p == ',' || p == close) {
      int n = snprintf(buf, plen + 1, "%.*s%.*s%s", (int)(open - pat), pat, (int)(p - alt), alt, close + 1);
      if (n >= 0)
        brace_expand(g, buf);
      alt = p + 1;
    }
  }
  free(buf);
}

static void gpat_free(gpat_t *g) {
  for (int i = 0; i < g->n; i++)
    free(g->alts[i]);
  g->n = 0;
}

/* Splits s (modified) at '/' into segs, skipping empty and "." segments. */
static int split_segs(char *s, char **segs, int max) {
  int n = 0;
  for (char *tok = strtok_r(s, "/", &s); tok && n < max; tok = strtok_r(NULL, "/", &s))
    if (strcmp(tok, ".") != 0)
      segs[n++] = tok;
  return n;
}

/* Segment-wise match: "**" takes any number of segments, others fnmatch. */
static bool match_segs(char **pat, int np, char **path, int nq) {
  if (np == 0)
    return nq == 0;
  if (strcmp(pat[0], "**") == 0) {
    for (int k = 0; k <= nq; k++)
      if (match_segs(pat + 1, np - 1, path + k, nq - k))
        return true;
    return false;
  }
  return nq > 0 && fnmatch(pat[0], path[0], 0) == 0 && match_segs(pat + 1, np - 1, path + 1, nq - 1);
}

/* True when path (relative, '/'-separated) matches one of g's alternatives. */
static bool gpat_match(const gpat_t *g, const char *path) {
  char pbuf[PATH_MAX], abuf[PATH_MAX], *psegs[GLOB_MAX_SEGS * 2], *asegs[GLOB_MAX_SEGS];
  snprintf(pbuf, sizeof pbuf, "%s", path);
  int nq = split_segs(pbuf, psegs, GLOB_MAX_SEGS * 2);
  for (int i = 0; i < g->n; i++) {
    snprintf(abuf, sizeof abuf, "%s", g->alts[i]);
    int np = split_segs(abuf, asegs, GLOB_MAX_SEGS);
    if (match_segs(asegs, np, psegs, nq))
      return true;
  }
  return false;
}

/* Checks and compiles a glob: 0, or -1 after an error in out. An absolute glob
 * inside the workspace loses the workspace prefix. */
static int gpat_init(const tools_t *t, gpat_t *g, const char *glob, tool_result_t *out) {
  memset(g, 0, sizeof *g);
  const char *p = glob;
  size_t rl = strlen(t->ws.root_real), gl = t->ws.root_given ? strlen(t->ws.root_given) : 0;
  if (p[0] == '/' && strncmp(p, t->ws.root_real, rl) == 0 && (p[rl] == '/' || !p[rl]))
    p += rl;
  else if (p[0] == '/' && gl && strncmp(p, t->ws.root_given, gl) == 0 && (p[gl] == '/' || !p[gl]))
    p += gl;
  else if (p[0] == '/') {
    tr_error(out, "glob \"%s\" is outside the workspace; give a glob relative to the workspace", glob);
    return -1;
  }
  while (*p == '/')
    p++;
  if (ws_lexically_escapes(p)) {
    tr_error(out,
             "glob \"%s\" reaches outside the workspace; globs may not contain \"..\" (choose the "
             "directory with path)",
             glob);
    return -1;
  }
  brace_expand(g, *p ? p : "**");
  return 0;
}

/* ---- the walk ----------------------------------------------------------------- */

typedef struct {
  char *path; /* relative to the walk's start */
  bool is_link;
} entry_t;

typedef struct {
  entry_t *v; /* regular files and symlinks */
  size_t n, cap;
  size_t scanned;
  bool stopped;
  const tools_t *t; /* the node's own files are left out */
} entries_t;

static void entries_add(entries_t *es, const char *path, bool is_link) {
  if (es->n == es->cap) {
    size_t cap = es->cap ? es->cap * 2 : 256;
    entry_t *v = realloc(es->v, cap * sizeof *v);
    if (!v) {
      es->stopped = true;
      return;
    }
    es->v = v;
    es->cap = cap;
  }
  if ((es->v[es->n].path = strdup(path)))
    es->v[es->n++].is_link = is_link;
}

static void entries_free(entries_t *es) {
  for (size_t i = 0; i < es->n; i++)
    free(es->v[i].path);
  free(es->v);
  memset(es, 0, sizeof *es);
}

/* Collects the files under dirfd into es; path (PATH_MAX bytes) holds their
 * path so far (len bytes), shared by the whole walk to keep the stack small. */
static void walk_dir(int dirfd, char *path, size_t len, int depth, entries_t *es) {
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0)
      close(fd);
    return;
  }
  struct dirent *de;
  struct stat dst;
  dev_t dev = fstat(dirfd, &dst) == 0 ? dst.st_dev : 0;
  while (!es->stopped && (de = readdir(d))) {
    const char *name = de->d_name;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strncmp(name, WS_TMP_PREFIX, strlen(WS_TMP_PREFIX)) == 0)
      continue;
    if (es->t && tools_hidden_ino(es->t, dev, de->d_ino))
      continue; /* (a directory is looked at by its stat below too: d_ino may differ on overlayfs) */
    if (++es->scanned > WALK_MAX_ENTRIES) {
      es->stopped = true;
      break;
    }
    unsigned type = de->d_type;
    struct stat st;
    if (type == DT_UNKNOWN && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    int n = snprintf(path + len, PATH_MAX - len, "%s%s", len ? "/" : "", name);
    if (n < 0 || (size_t)n >= PATH_MAX - len)
      continue;
    if (type == DT_DIR && es->t && es->t->n_hidden && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        tools_hidden_ino(es->t, st.st_dev, st.st_ino)) {
      path[len] = '\0';
      continue;
    }
    if (type == DT_DIR) {
      int sub = strcmp(name, ".git") == 0 || depth >= WALK_MAX_DEPTH
                    ? -1
                    : openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        walk_dir(sub, path, len + (size_t)n, depth + 1, es);
        close(sub);
      }
    } else if (type == DT_REG || type == DT_LNK) {
      entries_add(es, path, type == DT_LNK);
    }
    path[len] = '\0';
  }
  closedir(d);
}

/* Walks the directory fd from its top. */
static void walk_all(int fd, entries_t *es) {
  char *path = calloc(1, PATH_MAX);
  if (!path) {
    es->stopped = true;
    return;
  }
  walk_dir(fd, path, 0, 0, es);
  free(path);
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const entry_t *)a)->path, ((const entry_t *)b)->path);
}

/* "" for the workspace root, else rel without trailing slashes and "/" after it. */
static void display_prefix(const char *rel, char *buf, size_t len) {
  size_t n = strlen(rel);
  while (n > 1 && rel[n - 1] == '/')
    n--;
  if (n == 1 && rel[0] == '.')
    buf[0] = '\0';
  else
    snprintf(buf, len, "%.*s/", (int)n, rel);
}

/* Opens the directory rel for a walk: fd, or -1 after an error in out. */
static int open_walk_dir(const tools_t *t, const char *rel, const char *shown, tool_result_t *out) {
  int fd = ws_open_dir(&t->ws, rel, false);
  if (fd >= 0 && tools_is_hidden(t, fd, NULL)) {
    close(fd);
    tools_hidden_error(out, shown);
    return -1;
  }
  if (fd >= 0)
    return fd;
  char err[512];
  if (fd == -ENOTDIR)
    snprintf(err, sizeof err, "path \"%s\" is not a directory", shown);
  else
    ws_strerror(-fd, shown, err, sizeof err);
  tr_error(out, "%s", err);
  return -1;
}

/* ---- list_files ------------------------------------------------------------------ */

// list_files {glob?, path?}: sorted files matching a glob.
void tools_list_files(tools_t *t, const targs_t *a, tool_result_t *out) {
  char *rel = NULL, shown[200], prefix[PATH_MAX];
  const char *glob = "**";
  gpat_t g = {0};
  if (targ_str(a, "glob", false, &glob, NULL, out) < 0 || targ_path(t, a, false, &rel, shown, sizeof shown, out) < 0 ||
      gpat_init(t, &g, glob, out) < 0) {
    free(rel);
    return;
  }
  int fd = open_walk_dir(t, rel, shown, out);
  display_prefix(rel, prefix, sizeof prefix);
  free(rel);
  if (fd < 0) {
    gpat_free(&g);
    return;
  }
  entries_t es = {.t = t};
  walk_all(fd, &es);
  close(fd);
  size_t m = 0;
  for (size_t i = 0; i < es.n; i++)
    if (gpat_match(&g, es.v[i].path))
      es.v[m++] = es.v[i];
    else
      free(es.v[i].path);
  es.n = m;
  if (m > 1) /* es.v is NULL when nothing was found */
    qsort(es.v, m, sizeof *es.v, cmp_entry);
  sbuf_t b = {0};
  size_t printed = 0;
  for (; printed < m && printed < TOOLS_LIST_MAX && b.len < t->output_cap; printed++)
    sbuf_printf(&b, "%s%s\n", prefix, es.v[printed].path);
  if (m == 0)
    sbuf_printf(&b, "no files match \"%s\" in %s\n", glob, shown);
  else if (printed < m)
    sbuf_printf(&b, "[%zu of %zu files shown; narrow the glob or the path]\n", printed, m);
  if (es.stopped)
    sbuf_printf(&b, "[the search stopped after %d entries; narrow the path]\n", WALK_MAX_ENTRIES);
  tr_text(out, &b, false);
  tr_summary(out, "%zu file%s", m, m == 1 ? "" : "s");
  entries_free(&es);
  gpat_free(&g);
}

/* ---- grep -------------------------------------------------------------------------- */

typedef struct {
  regex_t re;
  size_t cap;
  size_t matches, files, binary, refused;
  bool full;
  sbuf_t b;
} grep_t;

/* Searches one open file; path is what the output names it. */
static void grep_fd(grep_t *g, int fd, const char *path) {
  if (tools_is_binary(fd)) {
    g->binary++;
    return;
  }
  linerd_t *r = linerd_new(fd, GREP_MATCH_LINE);
  size_t lineno = 0, before = g->matches;
  while (r && !g->full && linerd_next(r) == 1) {
    lineno++;
    if (regexec(&g->re, r->line, 0, NULL, 0) != 0)
      continue;
    if (g->matches >= TOOLS_GREP_MAX || g->b.len >= g->cap) {
      g->full = true;
      break;
    }
    size_t keep = tools_utf8_cut(r->line, r->line_len, TOOLS_GREP_LINE_MAX);
    sbuf_printf(&g->b, "%s:%zu: %.*s%s\n", path, lineno, (int)keep, r->line, r->full_len > keep ? " [...]" : "");
    g->matches++;
  }
  if (g->matches > before)
    g->files++;
  linerd_free(r);
}

/* Searches the files under the directory fd whose names match the glob (or all). */
static void grep_dir(grep_t *g, const tools_t *t, int fd, const char *prefix, const gpat_t *glob, bool by_name) {
  entries_t es = {.t = t};
  walk_all(fd, &es);
  if (es.n > 1) /* es.v is NULL in an empty directory */
    qsort(es.v, es.n, sizeof *es.v, cmp_entry);
  char path[PATH_MAX];
  for (size_t i = 0; i < es.n && !g->full; i++) {
    const char *rel = es.v[i].path, *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    if (es.v[i].is_link)
      continue; /* not followed, like grep -r */
    if (glob->n && !gpat_match(glob, by_name ? base : rel))
      continue;
    snprintf(path, sizeof path, "%s%s", prefix, rel);
    int f = ws_open(&t->ws, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
    struct stat st;
    bool refused =
        f >= 0 && fstat(f, &st) == 0 && S_ISREG(st.st_mode) && (st.st_nlink > 1 || tools_is_hidden(t, f, NULL));
    if (refused)
      g->refused++;
    else if (f >= 0 && fstat(f, &st) == 0 && S_ISREG(st.st_mode))
      grep_fd(g, f, path);
    if (f >= 0)
      close(f);
  }
  if (es.stopped)
    sbuf_printf(&g->b, "[the search stopped after %d entries; narrow the path]\n", WALK_MAX_ENTRIES);
  entries_free(&es);
}

/* The search itself once the arguments are checked. */
static void grep_run(grep_t *g, tools_t *t, const char *rel, const char *shown, const gpat_t *glob, bool by_name,
                     tool_result_t *out) {
  int fd = ws_open(&t->ws, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  char prefix[PATH_MAX], err[512];
  if (fd < 0) {
    ws_strerror(-fd, shown, err, sizeof err);
    tr_error(out, "%s", err);
    return;
  }
  bool ok = fstat(fd, &st) == 0;
  if (ok && tools_is_hidden(t, fd, NULL)) {
    close(fd);
    tools_hidden_error(out, shown);
    return;
  }
  if (ok && S_ISREG(st.st_mode) && st.st_nlink > 1) {
    close(fd);
    tools_nlink_error(out, shown, st.st_nlink);
    return;
  }
  if (ok && S_ISREG(st.st_mode)) {
    grep_fd(g, fd, shown);
  } else if (S_ISDIR(st.st_mode)) {
    display_prefix(rel, prefix, sizeof prefix);
    grep_dir(g, t, fd, prefix, glob, by_name);
  } else {
    close(fd);
    tr_error(out, "path \"%s\" is not a regular file or a directory", shown);
    return;
  }
  close(fd);
  if (g->matches == 0)
    sbuf_printf(&g->b, "no matches in %s\n", shown);
  if (g->full)
    sbuf_printf(&g->b, "[stopped at %zu matches; narrow the pattern, the path or the glob]\n", g->matches);
  if (g->binary)
    sbuf_printf(&g->b, "[%zu binary file%s skipped]\n", g->binary, g->binary == 1 ? "" : "s");
  if (g->refused)
    sbuf_printf(&g->b, "[%zu file%s with more than one hard link, or of the node's own, skipped]\n", g->refused,
                g->refused == 1 ? "" : "s");
  tr_text(out, &g->b, false);
  tr_summary(out, "%zu match%s in %zu file%s", g->matches, g->matches == 1 ? "" : "es", g->files,
             g->files == 1 ? "" : "s");
}

// grep {pattern, path?, glob?, ignore_case?}: "path:line: text" for each match.
void tools_grep(tools_t *t, const targs_t *a, tool_result_t *out) {
  const char *pattern = NULL, *globs = NULL;
  char *rel = NULL, shown[200];
  bool icase = false;
  gpat_t glob = {0};
  if (targ_str(a, "pattern", true, &pattern, NULL, out) < 0 || targ_str(a, "glob", false, &globs, NULL, out) < 0 ||
      targ_bool(a, "ignore_case", &icase, out) < 0 || targ_path(t, a, false, &rel, shown, sizeof shown, out) < 0 ||
      (globs && gpat_init(t, &glob, globs, out) < 0)) {
    free(rel);
    return;
  }
  grep_t g = {.cap = t->output_cap};
  int rc = regcomp(&g.re, pattern, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
  if (rc != 0) {
    char msg[256];
    regerror(rc, &g.re, msg, sizeof msg);
    tr_error(out, "invalid regular expression \"%s\": %s (POSIX extended syntax, as grep -E)", pattern, msg);
  } else {
    grep_run(&g, t, rel, shown, &glob, globs && !strchr(globs, '/'), out);
    regfree(&g.re);
  }
  sbuf_free(&g.b);
  free(rel);
  gpat_free(&glob);
}
