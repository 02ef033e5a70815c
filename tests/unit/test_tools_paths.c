/* Path confinement of the tools: a corpus of escape attempts, all refused
 * (with openat2 and with the fallback walk), nothing outside the workspace
 * touched; the cases that stay inside; symlinks and hard links. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "test_tools.h"

#define ASSERT_HAS(text, s) assert_non_null(strstr((text), (s)))

/* ---- a snapshot of everything outside the workspace that the tests can reach ---- */

typedef struct {
  char path[PATH_MAX];
  long long size, mtime_ns;
  mode_t mode;
  char *content;
} snap_entry_t;

typedef struct {
  snap_entry_t e[64];
  int n;
} snap_t;

static void snap_add(snap_t *s, const char *path) {
  struct stat st;
  assert_true(s->n < 64);
  snap_entry_t *e = &s->e[s->n++];
  snprintf(e->path, sizeof e->path, "%s", path);
  assert_int_equal(lstat(path, &st), 0);
  e->size = st.st_size;
  e->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  e->mode = st.st_mode;
  e->content = S_ISREG(st.st_mode) ? fx_slurp(path, NULL) : NULL;
}

/* dir itself and, when deep, each entry in it (one level). */
static void snap_dir(snap_t *s, const char *dir, bool deep) {
  snap_add(s, dir);
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *de;
  char path[PATH_MAX];
  while ((de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (deep)
      snap_add(s, path);
    else if (strcmp(de->d_name, "ws") != 0 && strcmp(de->d_name, "ws-evil") != 0 && strcmp(de->d_name, "outside") != 0)
      fail_msg("unexpected entry outside the workspace: %s", path);
  }
  closedir(d);
}

static void snap_take(fx_t *fx, snap_t *s) {
  memset(s, 0, sizeof *s);
  snap_dir(s, fx->base, false);
  snap_dir(s, fx->outside, true);
  snap_dir(s, fx->evil, true);
  snap_add(s, "/etc/passwd");
}

static void snap_free(snap_t *s) {
  for (int i = 0; i < s->n; i++)
    free(s->e[i].content);
}

static void snap_compare(const snap_t *a, const snap_t *b) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    const snap_entry_t *x = &a->e[i], *y = &b->e[i];
    assert_string_equal(x->path, y->path);
    if (x->size != y->size || x->mtime_ns != y->mtime_ns || x->mode != y->mode)
      fail_msg("%s changed (size, mtime or mode)", x->path);
    if ((x->content || y->content) && (!x->content || !y->content || strcmp(x->content, y->content) != 0))
      fail_msg("%s changed content", x->path);
  }
}

/* ---- the workspace of traps ------------------------------------------------------------ */

static void link_at(fx_t *fx, const char *target, const char *rel) {
  char path[PATH_MAX];
  if (symlink(target, fx_path(fx, rel, path, sizeof path)) != 0)
    fail_msg("symlink %s: %s", rel, strerror(errno));
}

static void make_traps(fx_t *fx) {
  char path[PATH_MAX], out[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/s1", fx->outside);
  FILE *f = fopen(path, "w");
  fputs("sentinel outside\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/hard", fx->outside);
  f = fopen(path, "w");
  fputs("hard sentinel\n", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/s1", fx->evil);
  f = fopen(path, "w");
  fputs("sentinel evil\n", f);
  fclose(f);
  mkdir(fx_path(fx, "sub", path, sizeof path), 0755);
  mkdir(fx_path(fx, "a", path, sizeof path), 0755);
  link_at(fx, "/etc", "lnk_etc");
  link_at(fx, "../outside", "lnk_out");
  link_at(fx, "../ws-evil", "lnk_evil");
  link_at(fx, "chain2", "chain1");
  link_at(fx, "chain3", "chain2");
  link_at(fx, "../outside", "chain3");
  link_at(fx, "../outside/created_by_attack", "dangling_out");
  snprintf(out, sizeof out, "%s/created_abs", fx->outside);
  link_at(fx, out, "dangling_abs");
  link_at(fx, "../..", "sub/up");
  link_at(fx, "../../..", "rel_up3");
  link_at(fx, "/proc/self/root", "proc_lnk");
  link_at(fx, "../outside/s1", "out_file_lnk");
  link_at(fx, "loop2", "loop1");
  link_at(fx, "loop1", "loop2");
  assert_int_equal(mkfifo(fx_path(fx, "fifo", path, sizeof path), 0644), 0);
  snprintf(out, sizeof out, "%s/hard", fx->outside);
  assert_int_equal(link(out, fx_path(fx, "hl", path, sizeof path)), 0);
}

/* ---- the corpus ------------------------------------------------------------------------- */

typedef struct {
  const char *tool, *args; /* @W workspace, @E sibling ws-evil, @L a path longer than PATH_MAX */
  const char *want;        /* part of the refusal; NULL: allowed, stays inside */
  const char *inside;      /* for allowed writes: the file that must now exist in the workspace */
} attempt_t;

#define OUTSIDE "is outside the workspace"
#define VIA_LINK "leaves the workspace through a symlink"

static const attempt_t CORPUS[] = {
    {"read_file", "{\"path\": \"../x\"}", "path \"../x\" is outside the workspace", NULL},
    {"read_file", "{\"path\": \"../../etc/passwd\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"a/../../x\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"/etc/passwd\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"@E/s1\"}", OUTSIDE, NULL},
    {"write_file_tool", "{\"path\": \"@E/new\", \"content\": \"x\"}", OUTSIDE, NULL},
    {"write_file_tool", "{\"path\": \"@E\", \"content\": \"x\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"./../x\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"a/./../../x\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"lnk_etc/passwd\"}", "path \"lnk_etc/passwd\" leaves the workspace through a symlink",
     NULL},
    {"read_file", "{\"path\": \"lnk_evil/s1\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"chain1/s1\"}", VIA_LINK, NULL},
    {"edit_file", "{\"path\": \"chain1/s1\", \"old_string\": \"sentinel\", \"new_string\": \"pwned\"}", VIA_LINK, NULL},
    {"write_file_tool", "{\"path\": \"dangling_out\", \"content\": \"pwned\"}", VIA_LINK, NULL},
    {"write_file_tool", "{\"path\": \"dangling_abs\", \"content\": \"pwned\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"sub/up/outside/s1\"}", VIA_LINK, NULL},
    {"write_file_tool", "{\"path\": \"sub/up/outside/pwned\", \"content\": \"x\"}", VIA_LINK, NULL},
    {"grep", "{\"pattern\": \"x\", \"path\": \"sub/up\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"rel_up3/etc/passwd\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"lnk_out/../ws-evil/s1\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"proc_lnk/etc/passwd\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"/proc/self/root/etc/passwd\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"/proc/self/cwd\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"\"}", "path is empty", NULL},
    {"read_file", "{\"path\": \".\"}", "is a directory", NULL},
    {"read_file", "{\"path\": \"@W/\"}", "is a directory", NULL},
    {"read_file", "{\"path\": \"a\\u0000/../../../etc/passwd\"}", "contains a NUL byte", NULL},
    {"read_file", "{\"path\": \"@L\"}", "is too long", NULL},
    {"write_file_tool", "{\"path\": \"new/../../x\", \"content\": \"x\"}", OUTSIDE, NULL},
    {"edit_file", "{\"path\": \"out_file_lnk\", \"old_string\": \"sentinel\", \"new_string\": \"pwned\"}", VIA_LINK,
     NULL},
    {"read_file", "{\"path\": \"out_file_lnk\"}", VIA_LINK, NULL},
    {"write_file_tool", "{\"path\": \"out_file_lnk\", \"content\": \"pwned\"}", VIA_LINK, NULL},
    {"list_files", "{\"glob\": \"../*\"}", "glob \"../*\" reaches outside the workspace", NULL},
    {"list_files", "{\"glob\": \"**/../../*\"}", "reaches outside the workspace", NULL},
    {"list_files", "{\"glob\": \"/etc/*\"}", "glob \"/etc/*\" is outside the workspace", NULL},
    {"list_files", "{\"path\": \"lnk_out\"}", VIA_LINK, NULL},
    {"list_files", "{\"path\": \"/etc\"}", OUTSIDE, NULL},
    {"grep", "{\"pattern\": \"root\", \"path\": \"..\"}", "path \"..\" is outside the workspace", NULL},
    {"grep", "{\"pattern\": \"root\", \"path\": \"lnk_etc\"}", VIA_LINK, NULL},
    {"grep", "{\"pattern\": \"root\", \"path\": \"/etc\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"fifo\"}", "path \"fifo\" is not a regular file", NULL},
    {"write_file_tool", "{\"path\": \"fifo\", \"content\": \"x\"}", "is not a regular file", NULL},
    {"edit_file", "{\"path\": \"fifo\", \"old_string\": \"a\", \"new_string\": \"b\"}", "is not a regular file", NULL},
    {"grep", "{\"pattern\": \"a\", \"path\": \"fifo\"}", "is not a regular file or a directory", NULL},
    {"write_file_tool", "{\"path\": \"sub/\", \"content\": \"x\"}", "does not name a file", NULL},
    {"write_file_tool", "{\"path\": \".\", \"content\": \"x\"}", "does not name a file", NULL},
    {"write_file_tool", "{\"path\": \"/\", \"content\": \"x\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"@W/../outside/s1\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"//etc/passwd\"}", OUTSIDE, NULL},
    {"write_file_tool", "{\"path\": \"lnk_out/newfile\", \"content\": \"x\"}", VIA_LINK, NULL},
    {"read_file", "{\"path\": \"sub/../../outside/s1\"}", OUTSIDE, NULL},
    {"edit_file", "{\"path\": \"../outside/s1\", \"old_string\": \"s\", \"new_string\": \"p\"}", OUTSIDE, NULL},
    {"read_file", "{\"path\": \"loop1\"}", "too many levels of symbolic links", NULL},
    {"write_file_tool", "{\"path\": \"loop1\", \"content\": \"x\"}", "too many levels of symbolic links", NULL},
    {"write_file_tool", "{\"path\": \"lnk_etc/cadre-pwned\", \"content\": \"x\"}", VIA_LINK, NULL},
    /* these stay inside: allowed */
    {"write_file_tool", "{\"path\": \"~/.ssh/id_rsa\", \"content\": \"k\"}", NULL, "~/.ssh/id_rsa"},
    {"write_file_tool", "{\"path\": \"%2e%2e/x\", \"content\": \"k\"}", NULL, "%2e%2e/x"},
    {"write_file_tool", "{\"path\": \"..\\\\x\", \"content\": \"k\"}", NULL, "..\\x"},
    {"write_file_tool", "{\"path\": \"\\u2024\\u2024/x\", \"content\": \"k\"}", NULL, "\xE2\x80\xA4\xE2\x80\xA4/x"},
    {"write_file_tool", "{\"path\": \"\\uff0e\\uff0e/x\", \"content\": \"k\"}", NULL, "\xEF\xBC\x8E\xEF\xBC\x8E/x"},
    {"write_file_tool", "{\"path\": \"@W/abs_ok.txt\", \"content\": \"k\"}", NULL, "abs_ok.txt"},
    {"write_file_tool", "{\"path\": \"a/../inside.txt\", \"content\": \"k\"}", NULL, "inside.txt"},
    {"write_file_tool", "{\"path\": \"hl\", \"content\": \"replaced inside\"}", NULL, "hl"},
    {"read_file", "{\"path\": \"~/.ssh/id_rsa\"}", NULL, NULL},
};

/* Replaces @W, @E and @L in tmpl. Caller frees. */
static char *expand(fx_t *fx, const char *tmpl) {
  size_t cap = strlen(tmpl) + 3 * PATH_MAX + 64, n = 0;
  char *out = calloc(1, cap);
  if (!out)
    abort();
  for (const char *p = tmpl; *p; p++) {
    const char *add = NULL;
    if (p[0] == '@' && p[1] == 'W')
      add = fx->ws;
    else if (p[0] == '@' && p[1] == 'E')
      add = fx->evil;
    if (add) {
      memcpy(out + n, add, strlen(add));
      n += strlen(add);
      p++;
    } else if (p[0] == '@' && p[1] == 'L') {
      for (int i = 0; i < PATH_MAX / 2 + 8; i++, n += 2)
        memcpy(out + n, "a/", 2);
      p++;
    } else {
      out[n++] = *p;
    }
  }
  return out;
}

static void run_corpus(fx_t *fx) {
  make_traps(fx);
  snap_t before, after;
  snap_take(fx, &before);
  int refused = 0;
  for (size_t i = 0; i < sizeof CORPUS / sizeof CORPUS[0]; i++) {
    const attempt_t *c = &CORPUS[i];
    char *args = expand(fx, c->args);
    tool_result_t r = fx_run(fx, c->tool, args);
    if (c->want && (!r.is_error || !strstr(r.text, c->want)))
      fail_msg("#%zu %s %.200s: wanted a refusal with \"%s\", got \"%s\"", i, c->tool, c->args, c->want, r.text);
    if (!c->want && r.is_error)
      fail_msg("#%zu %s %.200s: wanted success, got \"%s\"", i, c->tool, c->args, r.text);
    refused += c->want != NULL;
    if (c->inside) {
      char path[PATH_MAX];
      struct stat st;
      if (lstat(fx_path(fx, c->inside, path, sizeof path), &st) != 0 || !S_ISREG(st.st_mode))
        fail_msg("#%zu: %s was not written inside the workspace", i, c->inside);
    }
    tool_result_free(&r);
    free(args);
  }
  assert_true(refused >= 30);
  snap_take(fx, &after);
  snap_compare(&before, &after);
  snap_free(&before);
  snap_free(&after);
}

void test_escape_corpus(void **state) {
  fx_t *fx = *state;
  run_corpus(fx);
}

void test_escape_corpus_fallback(void **state) {
  fx_t *fx = *state;
  tools_test_force_fallback(fx->t, true);
  assert_false(tools_uses_openat2(fx->t));
  run_corpus(fx);
  tools_test_force_fallback(fx->t, false);
}

/* ---- what stays inside --------------------------------------------------------------------- */

void test_absolute_inside(void **state) {
  fx_t *fx = *state;
  char args[PATH_MAX * 2];
  snprintf(args, sizeof args, "{\"path\": \"%s/dir/f.txt\", \"content\": \"abs\"}", fx->ws);
  tool_result_t r = fx_run(fx, "write_file_tool", args);
  assert_false(r.is_error);
  tool_result_free(&r);
  snprintf(args, sizeof args, "{\"path\": \"%s//dir/./f.txt\"}", fx->ws);
  r = fx_run(fx, "read_file", args);
  assert_string_equal(r.text, "     1\tabs\n");
  tool_result_free(&r);
  snprintf(args, sizeof args, "{\"path\": \"%s\"}", fx->ws);
  r = fx_run(fx, "list_files", args);
  assert_string_equal(r.text, "dir/f.txt\n");
  tool_result_free(&r);
}

void test_symlinks_inside(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  mkdir(fx_path(fx, "d", path, sizeof path), 0755);
  mkdir(fx_path(fx, "d/e", path, sizeof path), 0755);
  link_at(fx, "d/e", "deep");           /* a directory link inside */
  link_at(fx, "../target.txt", "d/up"); /* a relative link with "..", still inside */
  link_at(fx, "d/new_by_link.txt", "dangling_in");
  for (int fallback = 0; fallback < 2; fallback++) {
    tools_test_force_fallback(fx->t, fallback);
    tool_result_t r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "deep/f.txt", "content", "through dir link");
    assert_false(r.is_error);
    tool_result_free(&r);
    r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "d/up", "content", "through up link");
    assert_false(r.is_error);
    tool_result_free(&r);
    r = fx_runp(fx, "read_file", "{s:s}", "path", "target.txt");
    assert_string_equal(r.text, "     1\tthrough up link\n");
    tool_result_free(&r);
    r = fx_runp(fx, "read_file", "{s:s}", "path", "deep/../e/f.txt"); /* physical "..": d/e/.. is d */
    assert_string_equal(r.text, "     1\tthrough dir link\n");
    tool_result_free(&r);
    r = fx_runp(fx, "edit_file", "{s:s, s:s, s:s}", "path", "d/up", "old_string", "up", "new_string", "UP");
    assert_false(r.is_error);
    tool_result_free(&r);
    r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "dangling_in", "content", "made");
    assert_false(r.is_error);
    tool_result_free(&r);
    char *got = fx_slurp(fx_path(fx, "d/new_by_link.txt", path, sizeof path), NULL);
    assert_string_equal(got, "made");
    free(got);
    got = fx_slurp(fx_path(fx, "target.txt", path, sizeof path), NULL);
    assert_string_equal(got, "through UP link");
    free(got);
    unlink(path);
    unlink(fx_path(fx, "d/new_by_link.txt", path, sizeof path));
  }
}

/* A hard link may be a link to an outside file: read_file, edit_file and grep
 * refuse a regular file with more than one link (issue 11: through such a
 * link read_file returned the outside file); write_file_tool replaces the
 * link by rename, never the outside file. */
void test_hard_link(void **state) {
  fx_t *fx = *state;
  char out[PATH_MAX + 16], path[PATH_MAX];
  snprintf(out, sizeof out, "%s/secret", fx->outside);
  FILE *f = fopen(out, "w");
  fputs("outside content\n", f);
  fclose(f);
  assert_int_equal(link(out, fx_path(fx, "hl", path, sizeof path)), 0);
  tool_result_t r = fx_runp(fx, "read_file", "{s:s}", "path", "hl");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "has 2 hard links");
  assert_null(strstr(r.text, "outside content"));
  tool_result_free(&r);
  r = fx_runp(fx, "edit_file", "{s:s, s:s, s:s}", "path", "hl", "old_string", "outside", "new_string", "edited");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "hard links");
  tool_result_free(&r);
  r = fx_runp(fx, "grep", "{s:s, s:s}", "pattern", "outside", "path", "hl");
  assert_true(r.is_error);
  tool_result_free(&r);
  r = fx_runp(fx, "grep", "{s:s}", "pattern", "outside");
  assert_null(strstr(r.text, "outside content"));
  ASSERT_HAS(r.text, "skipped");
  tool_result_free(&r);
  r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "hl", "content", "replaced\n");
  assert_false(r.is_error);
  tool_result_free(&r);
  char *got = fx_slurp(out, NULL);
  assert_string_equal(got, "outside content\n");
  free(got);
  got = fx_slurp(path, NULL);
  assert_string_equal(got, "replaced\n");
  free(got);
}

/* The fallback walk agrees with openat2 on ordinary paths. */
void test_fallback_walk_basics(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  mkdir(fx_path(fx, "x", path, sizeof path), 0755);
  mkdir(fx_path(fx, "x/y", path, sizeof path), 0755);
  FILE *f = fopen(fx_path(fx, "x/y/z.txt", path, sizeof path), "w");
  fputs("zz\n", f);
  fclose(f);
  link_at(fx, "y/z.txt", "x/zlink");
  link_at(fx, "x/y", "ylink");
  const char *paths[] = {"x/y/z.txt", "./x//y/./z.txt", "x/../x/y/z.txt", "x/zlink", "ylink/z.txt", "ylink/../y/z.txt"};
  for (int fallback = 0; fallback < 2; fallback++) {
    tools_test_force_fallback(fx->t, fallback);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
      tool_result_t r = fx_runp(fx, "read_file", "{s:s}", "path", paths[i]);
      if (r.is_error || strcmp(r.text, "     1\tzz\n") != 0)
        fail_msg("%s (fallback %d): %s", paths[i], fallback, r.text);
      tool_result_free(&r);
    }
    tool_result_t r = fx_runp(fx, "read_file", "{s:s}", "path", "x/y/z.txt/");
    assert_true(r.is_error);
    ASSERT_HAS(r.text, "not a directory");
    tool_result_free(&r);
    r = fx_runp(fx, "read_file", "{s:s}", "path", "x/nope/z.txt");
    assert_string_equal(r.text, "no such file: \"x/nope/z.txt\"");
    tool_result_free(&r);
  }
  tools_test_force_fallback(fx->t, false);
  assert_true(tools_uses_openat2(fx->t)); /* this kernel has openat2 */
}
