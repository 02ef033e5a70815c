/* Unit tests for agentd's coding tools (agentd/tools*.c, agentd/workspace.c):
 * definitions and arguments, read_file, write_file_tool, edit_file,
 * list_files, grep, and concurrent writers. Path confinement is in
 * test_tools_paths.c, execute_bash in test_tools_exec.c. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "test_tools.h"

/* ---- fixture ------------------------------------------------------------------ */

static void mkdir_or_fail(const char *path) {
  assert_int_equal(mkdir(path, 0755), 0);
}

// A fresh workspace, its siblings and tools for each test.
int fx_setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  char tmpl[PATH_MAX], real[PATH_MAX];
  snprintf(tmpl, sizeof tmpl, "%.200s/cadre-tools-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!fx || !mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= 240)
    return -1;
  snprintf(fx->base, sizeof fx->base, "%.240s", real);
  snprintf(fx->ws, sizeof fx->ws, "%s/ws", fx->base);
  snprintf(fx->evil, sizeof fx->evil, "%s/ws-evil", fx->base);
  snprintf(fx->outside, sizeof fx->outside, "%s/outside", fx->base);
  mkdir_or_fail(fx->ws);
  mkdir_or_fail(fx->evil);
  mkdir_or_fail(fx->outside);
  char err[256];
  tools_opts_t o = {.workspace = fx->ws};
  fx->t = tools_new(&o, err, sizeof err);
  if (!fx->t)
    return -1;
  *state = fx;
  return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

// Removes the test's directories.
int fx_teardown(void **state) {
  fx_t *fx = *state;
  tools_destroy(&fx->t);
  nftw(fx->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

// Runs a tool and checks the result's shape.
tool_result_t fx_run(fx_t *fx, const char *tool, const char *args) {
  tool_result_t r;
  tools_run(fx->t, tool, args, NULL, &r);
  assert_non_null(r.text);
  json_t *s = json_string(r.text); /* NULL when the text is not valid UTF-8 */
  assert_non_null(s);
  json_decref(s);
  assert_true(r.summary[0] != '\0');
  return r;
}

// Runs a tool with arguments from a jansson pack format.
tool_result_t fx_runp(fx_t *fx, const char *tool, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  json_t *args = json_vpack_ex(NULL, 0, fmt, ap);
  va_end(ap);
  assert_non_null(args);
  char *text = json_dumps(args, JSON_COMPACT);
  json_decref(args);
  tool_result_t r = fx_run(fx, tool, text);
  free(text);
  return r;
}

// ws/rel into buf.
const char *fx_path(fx_t *fx, const char *rel, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s", fx->ws, rel);
  return buf;
}

// Writes content to ws/rel, making parent directories.
void fx_put(fx_t *fx, const char *rel, const char *content, size_t len) {
  char path[PATH_MAX];
  fx_path(fx, rel, path, sizeof path);
  for (char *p = path + strlen(fx->ws) + 1; (p = strchr(p, '/')); p++) {
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(content, 1, len, f), len);
  fclose(f);
}

// The content of an absolute path (NULL when missing).
char *fx_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap)
      buf = realloc(buf, (cap *= 2) + 1);
  }
  fclose(f);
  if (buf)
    buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

// Milliseconds of the monotonic clock.
int64_t fx_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Waits (polling every 5 ms, with a deadline) until pred(arg) holds.
bool fx_wait_until(bool (*pred)(void *), void *arg, int timeout_ms) {
  int64_t until = fx_now_ms() + timeout_ms;
  while (!pred(arg)) {
    if (fx_now_ms() > until)
      return false;
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return true;
}

#define PUT(fx, rel, s) fx_put(fx, rel, s, strlen(s))
#define ASSERT_HAS(text, s) assert_non_null(strstr((text), (s)))

/* ---- definitions and arguments ---------------------------------------------------- */

static void test_definitions(void **state) {
  (void)state;
  json_t *all = tools_definitions(NULL);
  const char *names[] = {"execute_bash", "read_file", "write_file_tool", "edit_file", "list_files", "grep"};
  assert_int_equal(json_array_size(all), 6);
  for (size_t i = 0; i < 6; i++) {
    json_t *f = json_object_get(json_array_get(all, i), "function");
    assert_string_equal(json_string_value(json_object_get(json_array_get(all, i), "type")), "function");
    assert_string_equal(json_string_value(json_object_get(f, "name")), names[i]);
    assert_true(strlen(json_string_value(json_object_get(f, "description"))) > 40);
    json_t *p = json_object_get(f, "parameters"), *req = json_object_get(p, "required");
    assert_string_equal(json_string_value(json_object_get(p, "type")), "object");
    assert_true(json_is_array(req));
    size_t k;
    json_t *r;
    json_array_foreach(req, k, r)
        assert_non_null(json_object_get(json_object_get(p, "properties"), json_string_value(r)));
    assert_true(tools_known(names[i]));
  }
  json_decref(all);
  const char *some[] = {"grep", "nope", "read_file", NULL};
  json_t *two = tools_definitions(some);
  assert_int_equal(json_array_size(two), 2);
  json_decref(two);
  assert_false(tools_known("rm_rf"));
  assert_false(tools_known(NULL));
  assert_true(tools_mutates("execute_bash") && tools_mutates("write_file_tool") && tools_mutates("edit_file"));
  assert_false(tools_mutates("read_file") || tools_mutates("list_files") || tools_mutates("grep") ||
               tools_mutates("nope"));
}

/* Short definitions keep names, types and required fields; one sentence each. */
static void test_compact_definitions(void **state) {
  (void)state;
  json_t *all = tools_definitions(NULL), *full = json_deep_copy(all);
  json_array_append_new(all, json_pack("{s:s, s:{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}}}}}", "type", "function", "function",
                                       "name", "spawn_agent", "description", "One. Two.\nThree.", "parameters", "type",
                                       "object", "properties", "role", "type", "string", "description", "Which kind"));
  tools_compact(all);
  assert_true(json_dumpb(all, NULL, 0, JSON_COMPACT) < json_dumpb(full, NULL, 0, JSON_COMPACT) * 3 / 5);
  size_t i;
  json_t *d;
  json_array_foreach(all, i, d) {
    json_t *f = json_object_get(d, "function"), *p = json_object_get(f, "parameters");
    const char *desc = json_string_value(json_object_get(f, "description"));
    assert_non_null(desc);
    assert_null(strstr(desc, ". "));
    assert_int_equal(desc[strlen(desc) - 1], '.');
    assert_string_equal(json_string_value(json_object_get(p, "type")), "object");
    const char *k;
    json_t *prop;
    json_object_foreach(json_object_get(p, "properties"), k, prop) {
      assert_null(json_object_get(prop, "description"));
      assert_non_null(json_object_get(prop, "type"));
    }
    if (i < json_array_size(full))
      assert_true(json_equal(
          json_object_get(p, "required"),
          json_object_get(json_object_get(json_object_get(json_array_get(full, i), "function"), "parameters"),
                          "required")));
  }
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(json_array_get(all, 6), "function"), "description")), "One.");
  json_decref(all);
  json_decref(full);
}

static void test_new_errors(void **state) {
  (void)state;
  char err[256] = "";
  tools_opts_t o = {.workspace = "/nonexistent/cadre-ws"};
  assert_null(tools_new(&o, err, sizeof err));
  ASSERT_HAS(err, "/nonexistent/cadre-ws");
  o.workspace = NULL;
  assert_null(tools_new(&o, err, sizeof err));
  tools_t *none = NULL;
  tools_destroy(&none);
  tool_result_t r;
  tools_run(NULL, "read_file", "{}", NULL, &r);
  assert_true(r.is_error);
  tool_result_free(&r);
}

static void test_arguments(void **state) {
  fx_t *fx = *state;
  PUT(fx, "a.txt", "hi\n");
  struct {
    const char *tool, *args, *want;
  } cases[] = {
      {"rm_rf", "{}", "unknown tool \"rm_rf\""},
      {"read_file", "{\"path\": ", "arguments for read_file are not valid JSON"},
      {"read_file", "[1,2]", "arguments for read_file must be a JSON object, got an array"},
      {"read_file", "{}", "missing required argument \"path\" for read_file"},
      {"read_file", "{\"path\": 7}", "argument \"path\" of read_file must be a string, got an integer"},
      {"read_file", "{\"path\": \"a.txt\", \"limit\": \"5\"}", "argument \"limit\" of read_file must be an integer"},
      {"read_file", "{\"path\": \"a.txt\", \"limit\": 0}", "argument \"limit\" of read_file must be between 1 and"},
      {"write_file_tool", "{\"path\": \"b.txt\"}", "missing required argument \"content\" for write_file_tool"},
      {"write_file_tool", "{\"path\": \"b.txt\", \"content\": 5}",
       "argument \"content\" of write_file_tool must be a string"},
      {"edit_file", "{\"path\": \"a.txt\", \"old_string\": \"hi\"}", "missing required argument \"new_string\""},
      {"edit_file", "{\"path\": \"a.txt\", \"old_string\": \"hi\", \"new_string\": \"x\", \"replace_all\": \"yes\"}",
       "argument \"replace_all\" of edit_file must be true or false"},
      {"grep", "{}", "missing required argument \"pattern\" for grep"},
      {"execute_bash", "{\"cmd\": \"ls\"}", "missing required argument \"command\" for execute_bash"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tool_result_t r = fx_run(fx, cases[i].tool, cases[i].args);
    assert_true(r.is_error);
    if (!strstr(r.text, cases[i].want))
      fail_msg("%s %s: got \"%s\"", cases[i].tool, cases[i].args, r.text);
    assert_non_null(strstr(r.summary, "error"));
    tool_result_free(&r);
  }
  /* accepted forms: a JSON string holding the object, empty or null arguments, file_path */
  const char *ok[][2] = {{"read_file", "\"{\\\"path\\\": \\\"a.txt\\\"}\""},
                         {"list_files", ""},
                         {"list_files", "null"},
                         {"list_files", NULL},
                         {"read_file", "{\"file_path\": \"a.txt\"}"},
                         {"read_file", "{\"path\": \"a.txt\", \"offset\": null}"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    tool_result_t r = fx_run(fx, ok[i][0], ok[i][1]);
    if (r.is_error)
      fail_msg("%s %s: %s", ok[i][0], ok[i][1] ? ok[i][1] : "NULL", r.text);
    tool_result_free(&r);
  }
}

/* ---- read_file --------------------------------------------------------------------- */

static void test_read_file(void **state) {
  fx_t *fx = *state;
  PUT(fx, "a.txt", "one\ntwo\nthree\n");
  tool_result_t r = fx_runp(fx, "read_file", "{s:s}", "path", "a.txt");
  assert_false(r.is_error);
  assert_string_equal(r.text, "     1\tone\n     2\ttwo\n     3\tthree\n");
  ASSERT_HAS(r.summary, "lines 1-3 of 3");
  assert_int_equal(r.exit_code, 0);
  tool_result_free(&r);
  r = fx_runp(fx, "read_file", "{s:s, s:i, s:i}", "path", "a.txt", "offset", 2, "limit", 1);
  assert_string_equal(r.text, "     2\ttwo\n[lines 2-2 of 3 shown; to read on, call read_file with offset=3]\n");
  tool_result_free(&r);
  r = fx_runp(fx, "read_file", "{s:s, s:i}", "path", "a.txt", "offset", 10);
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "has 3 lines; offset 10 is past the end");
  tool_result_free(&r);
  PUT(fx, "nonl.txt", "x\ny");
  r = fx_runp(fx, "read_file", "{s:s}", "path", "nonl.txt");
  assert_string_equal(r.text, "     1\tx\n     2\ty\n");
  tool_result_free(&r);
  PUT(fx, "empty.txt", "");
  r = fx_runp(fx, "read_file", "{s:s}", "path", "empty.txt");
  assert_false(r.is_error);
  assert_string_equal(r.text, "(empty file)\n");
  tool_result_free(&r);
  fx_put(fx, "bin.dat", "ab\0cd", 5);
  r = fx_runp(fx, "read_file", "{s:s}", "path", "bin.dat");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "binary file, 5 bytes");
  tool_result_free(&r);
  r = fx_runp(fx, "read_file", "{s:s}", "path", "nope/b.c");
  assert_true(r.is_error);
  assert_string_equal(r.text, "no such file: \"nope/b.c\"");
  tool_result_free(&r);
  mkdir(fx_path(fx, "dir", (char[PATH_MAX]){0}, PATH_MAX), 0755);
  r = fx_runp(fx, "read_file", "{s:s}", "path", "dir");
  ASSERT_HAS(r.text, "is a directory");
  tool_result_free(&r);
}

static void test_read_file_limits(void **state) {
  fx_t *fx = *state;
  char *line = malloc(5001);
  memset(line, 'x', 5000);
  line[5000] = '\0';
  PUT(fx, "long.txt", line);
  tool_result_t r = fx_runp(fx, "read_file", "{s:s}", "path", "long.txt");
  ASSERT_HAS(r.text, "[... line cut: 5000 bytes in all]");
  assert_true(strlen(r.text) < 2100);
  tool_result_free(&r);
  free(line);
  /* 5000 lines of 30 bytes: more than the 32 KiB cap */
  char *big = malloc(5000 * 31 + 1);
  for (int i = 0; i < 5000; i++)
    snprintf(big + i * 31, 32, "line %05u ...................\n", (unsigned)(i + 1) % 100000u);
  PUT(fx, "big.txt", big);
  free(big);
  r = fx_runp(fx, "read_file", "{s:s}", "path", "big.txt");
  assert_false(r.is_error);
  assert_true(strlen(r.text) <= TOOLS_OUTPUT_CAP + 200);
  ASSERT_HAS(r.text, "of 5000 shown (output size limit); to read on, call read_file with offset=");
  tool_result_free(&r);
  r = fx_runp(fx, "read_file", "{s:s, s:i, s:i}", "path", "big.txt", "offset", 4999, "limit", 5);
  ASSERT_HAS(r.text, "  4999\tline 04999");
  ASSERT_HAS(r.text, "  5000\tline 05000");
  tool_result_free(&r);
  /* invalid UTF-8 comes back as U+FFFD */
  PUT(fx, "latin1.txt", "caf\xe9\n");
  r = fx_runp(fx, "read_file", "{s:s}", "path", "latin1.txt");
  ASSERT_HAS(r.text, "caf\xEF\xBF\xBD");
  tool_result_free(&r);
}

/* ---- write_file_tool and edit_file --------------------------------------------------- */

static void test_write_file(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  tool_result_t r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "new/dir/f.txt", "content", "hello");
  assert_false(r.is_error);
  assert_string_equal(r.text, "wrote 5 bytes to new/dir/f.txt (new file)");
  tool_result_free(&r);
  char *got = fx_slurp(fx_path(fx, "new/dir/f.txt", path, sizeof path), NULL);
  assert_string_equal(got, "hello");
  free(got);
  chmod(path, 0751);
  r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "new/dir/f.txt", "content", "bye");
  ASSERT_HAS(r.text, "(replaced)");
  tool_result_free(&r);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0751);
  r = fx_run(fx, "write_file_tool", "{\"path\": \"nul.bin\", \"content\": \"a\\u0000b\"}");
  assert_false(r.is_error);
  tool_result_free(&r);
  size_t len;
  got = fx_slurp(fx_path(fx, "nul.bin", path, sizeof path), &len);
  assert_int_equal(len, 3);
  assert_memory_equal(got, "a\0b", 3);
  free(got);
  r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "new/dir", "content", "x");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "is a directory");
  tool_result_free(&r);
  /* a symlink inside is followed: the target changes, the link stays */
  PUT(fx, "real.txt", "old");
  assert_int_equal(symlink("real.txt", fx_path(fx, "alias.txt", path, sizeof path)), 0);
  r = fx_runp(fx, "write_file_tool", "{s:s, s:s}", "path", "alias.txt", "content", "via link");
  assert_false(r.is_error);
  tool_result_free(&r);
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  got = fx_slurp(fx_path(fx, "real.txt", path, sizeof path), NULL);
  assert_string_equal(got, "via link");
  free(got);
  /* no temporary file is left behind */
  r = fx_runp(fx, "execute_bash", "{s:s}", "command", "find . -name '.cadre-tmp-*' | wc -l");
  ASSERT_HAS(r.text, "0\n[exit 0]");
  tool_result_free(&r);
}

static void test_edit_file(void **state) {
  fx_t *fx = *state;
  char path[PATH_MAX];
  PUT(fx, "a.c", "int a;\nint b;\nint b;\nint b;\n");
  chmod(fx_path(fx, "a.c", path, sizeof path), 0640);
  tool_result_t r =
      fx_runp(fx, "edit_file", "{s:s, s:s, s:s}", "path", "a.c", "old_string", "int a;", "new_string", "long a;");
  assert_false(r.is_error);
  assert_string_equal(r.text, "replaced 1 occurrence in a.c (line 1)");
  tool_result_free(&r);
  r = fx_runp(fx, "edit_file", "{s:s, s:s, s:s}", "path", "a.c", "old_string", "int c;", "new_string", "x");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "old_string not found in a.c");
  tool_result_free(&r);
  r = fx_runp(fx, "edit_file", "{s:s, s:s, s:s}", "path", "a.c", "old_string", "int b;", "new_string", "x");
  assert_true(r.is_error);
  assert_string_equal(r.text, "old_string matches 3 times in a.c; give more context or set replace_all");
  tool_result_free(&r);
  r = fx_runp(fx, "edit_file", "{s:s, s:s, s:s, s:b}", "path", "a.c", "old_string", "int b;", "new_string", "short b;",
              "replace_all", 1);
  assert_string_equal(r.text, "replaced 3 occurrences in a.c (first at line 2)");
  tool_result_free(&r);
  char *got = fx_slurp(path, NULL);
  assert_string_equal(got, "long a;\nshort b;\nshort b;\nshort b;\n");
  free(got);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  const char *errs[][3] = {{"a.c", "", "old_string is empty"},
                           {"a.c", "long a;", "old_string and new_string are the same"},
                           {"missing.c", "x", "no such file: \"missing.c\" (to create it use write_file_tool)"}};
  for (size_t i = 0; i < 3; i++) {
    r = fx_runp(fx, "edit_file", "{s:s, s:s, s:s}", "path", errs[i][0], "old_string", errs[i][1], "new_string",
                i == 1 ? errs[i][1] : "y");
    assert_true(r.is_error);
    ASSERT_HAS(r.text, errs[i][2]);
    tool_result_free(&r);
  }
}

/* ---- list_files and grep ----------------------------------------------------------------- */

static void make_tree(fx_t *fx) {
  PUT(fx, "a.c", "int main(void) { return 0; }\n");
  PUT(fx, "b.h", "#define B 1 // TODO later\n");
  PUT(fx, "src/x.c", "void x(void) {}\n// TODO fix\n");
  PUT(fx, "src/deep/y.c", "// todo: lower case\n");
  PUT(fx, "src/deep/z.h", "// TODO header\n");
  PUT(fx, ".git/config", "TODO in git\n");
  PUT(fx, ".hidden", "TODO hidden\n");
  PUT(fx, "docs/readme.md", "nothing\n");
  fx_put(fx, "bin/blob", "TODO\0binary", 11);
  char path[PATH_MAX];
  assert_int_equal(symlink("src", fx_path(fx, "srclink", path, sizeof path)), 0);
}

static void expect_list(fx_t *fx, const char *args, const char *want) {
  tool_result_t r = fx_run(fx, "list_files", args);
  if (r.is_error || strcmp(r.text, want) != 0)
    fail_msg("list_files %s:\n%s\nwanted:\n%s", args, r.text, want);
  tool_result_free(&r);
}

static void test_list_files(void **state) {
  fx_t *fx = *state;
  make_tree(fx);
  expect_list(fx, "{}", ".hidden\na.c\nb.h\nbin/blob\ndocs/readme.md\nsrc/deep/y.c\nsrc/deep/z.h\nsrc/x.c\nsrclink\n");
  expect_list(fx, "{\"glob\": \"*.c\"}", "a.c\n");
  expect_list(fx, "{\"glob\": \"**/*.c\"}", "a.c\nsrc/deep/y.c\nsrc/x.c\n");
  expect_list(fx, "{\"glob\": \"*.{c,h}\"}", "a.c\nb.h\n");
  expect_list(fx, "{\"glob\": \"src/**/*.{c,h}\"}", "src/deep/y.c\nsrc/deep/z.h\nsrc/x.c\n");
  expect_list(fx, "{\"glob\": \"src/**\"}", "src/deep/y.c\nsrc/deep/z.h\nsrc/x.c\n");
  expect_list(fx, "{\"glob\": \"*.c\", \"path\": \"src\"}", "src/x.c\n");
  expect_list(fx, "{\"glob\": \"./**/y.?\", \"path\": \"src/\"}", "src/deep/y.c\n");
  expect_list(fx, "{\"glob\": \"*.rs\"}", "no files match \"*.rs\" in .\n");
  char abs[PATH_MAX + 16];
  snprintf(abs, sizeof abs, "{\"glob\": \"%s/src/*.c\"}", fx->ws);
  expect_list(fx, abs, "src/x.c\n");
  tool_result_t r = fx_runp(fx, "list_files", "{s:s}", "path", "a.c");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "is not a directory");
  tool_result_free(&r);
  for (int i = 0; i < 1100; i++) {
    char name[64];
    snprintf(name, sizeof name, "many/f%04d", i);
    fx_put(fx, name, "", 0);
  }
  r = fx_runp(fx, "list_files", "{s:s}", "path", "many");
  assert_false(r.is_error);
  ASSERT_HAS(r.text, "many/f0000\n");
  ASSERT_HAS(r.text, "many/f0999\n[1000 of 1100 files shown; narrow the glob or the path]\n");
  assert_null(strstr(r.text, "f1000"));
  ASSERT_HAS(r.summary, "1100 files");
  tool_result_free(&r);
}

static void expect_grep(fx_t *fx, const char *args, const char *want) {
  tool_result_t r = fx_run(fx, "grep", args);
  if (r.is_error || strcmp(r.text, want) != 0)
    fail_msg("grep %s:\n%s\nwanted:\n%s", args, r.text, want);
  tool_result_free(&r);
}

static void test_grep(void **state) {
  fx_t *fx = *state;
  make_tree(fx);
  expect_grep(fx, "{\"pattern\": \"TODO\"}",
              ".hidden:1: TODO hidden\nb.h:1: #define B 1 // TODO later\nsrc/deep/z.h:1: // TODO header\n"
              "src/x.c:2: // TODO fix\n[1 binary file skipped]\n");
  expect_grep(fx, "{\"pattern\": \"todo\", \"ignore_case\": true, \"glob\": \"*.c\"}",
              "src/deep/y.c:1: // todo: lower case\nsrc/x.c:2: // TODO fix\n");
  expect_grep(fx, "{\"pattern\": \"TODO\", \"glob\": \"*.h\"}",
              "b.h:1: #define B 1 // TODO later\nsrc/deep/z.h:1: // TODO header\n");
  expect_grep(fx, "{\"pattern\": \"TODO\", \"glob\": \"src/*.c\"}", "src/x.c:2: // TODO fix\n");
  expect_grep(fx, "{\"pattern\": \"^void [a-z]+\\\\(\", \"path\": \"src\"}", "src/x.c:1: void x(void) {}\n");
  expect_grep(fx, "{\"pattern\": \"TODO\", \"path\": \"src/x.c\"}", "src/x.c:2: // TODO fix\n");
  expect_grep(fx, "{\"pattern\": \"nomatch\"}", "no matches in .\n[1 binary file skipped]\n");
  tool_result_t r = fx_runp(fx, "grep", "{s:s}", "pattern", "(unclosed");
  assert_true(r.is_error);
  ASSERT_HAS(r.text, "invalid regular expression \"(unclosed\"");
  tool_result_free(&r);
  char *many = malloc(600 * 8 + 1);
  for (int i = 0; i < 600; i++)
    snprintf(many + i * 8, 9, "hit %03u\n", (unsigned)i % 1000u);
  PUT(fx, "many.txt", many);
  free(many);
  r = fx_runp(fx, "grep", "{s:s, s:s}", "pattern", "hit", "path", "many.txt");
  ASSERT_HAS(r.text, "many.txt:500: hit 499\n[stopped at 500 matches; narrow the pattern, the path or the glob]");
  assert_null(strstr(r.text, "hit 500"));
  tool_result_free(&r);
  char *line = malloc(1001);
  memset(line, 'q', 1000);
  line[1000] = '\0';
  PUT(fx, "wide.txt", line);
  free(line);
  r = fx_runp(fx, "grep", "{s:s, s:s}", "pattern", "q+", "path", "wide.txt");
  ASSERT_HAS(r.text, " [...]\n");
  assert_true(strlen(r.text) < 400);
  tool_result_free(&r);
}

/* ---- concurrency ------------------------------------------------------------------------ */

#define VERSION_SIZE (1u << 20)
#define WRITES 50

typedef struct {
  fx_t *fx;
  const char *content;
  atomic_int *done;
  char path[PATH_MAX];
  int bad, reads;
} writer_t;

static void *writer_main(void *arg) {
  writer_t *w = arg;
  char *args = malloc(VERSION_SIZE + 64);
  snprintf(args, VERSION_SIZE + 64, "{\"path\": \"shared.txt\", \"content\": \"%s\"}", w->content);
  for (int i = 0; i < WRITES; i++) {
    tool_result_t r;
    tools_run(w->fx->t, "write_file_tool", args, NULL, &r);
    if (r.is_error)
      w->bad++;
    tool_result_free(&r);
  }
  free(args);
  atomic_fetch_add(w->done, 1);
  return NULL;
}

/* True when data is one whole version: VERSION_SIZE bytes of one letter. */
static bool whole_version(const char *data, size_t len) {
  if (len != VERSION_SIZE || (data[0] != 'A' && data[0] != 'B'))
    return false;
  for (size_t i = 0; i < len; i++)
    if (data[i] != data[0])
      return false;
  return true;
}

static void *reader_main(void *arg) {
  writer_t *w = arg;
  while (atomic_load(w->done) < 2) {
    size_t len;
    char *data = fx_slurp(w->path, &len);
    if (!data || !whole_version(data, len))
      w->bad++;
    w->reads++;
    free(data);
  }
  return NULL;
}

static void test_concurrent_writes(void **state) {
  fx_t *fx = *state;
  char *a = malloc(VERSION_SIZE + 1), *b = malloc(VERSION_SIZE + 1);
  memset(a, 'A', VERSION_SIZE);
  memset(b, 'B', VERSION_SIZE);
  a[VERSION_SIZE] = b[VERSION_SIZE] = '\0';
  fx_put(fx, "shared.txt", a, VERSION_SIZE);
  atomic_int done = 0;
  writer_t wa = {fx, a, &done, "", 0, 0}, wb = {fx, b, &done, "", 0, 0}, rd = {fx, NULL, &done, "", 0, 0};
  fx_path(fx, "shared.txt", rd.path, sizeof rd.path);
  pthread_t ta, tb, tr;
  pthread_create(&tr, NULL, reader_main, &rd);
  pthread_create(&ta, NULL, writer_main, &wa);
  pthread_create(&tb, NULL, writer_main, &wb);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  pthread_join(tr, NULL);
  assert_int_equal(wa.bad + wb.bad, 0);
  assert_int_equal(rd.bad, 0);
  assert_true(rd.reads > 0);
  size_t len;
  char *data = fx_slurp(rd.path, &len);
  assert_true(whole_version(data, len));
  free(data);
  free(a);
  free(b);
}

typedef struct {
  fx_t *fx;
  char letter;
  int errors;
} editor_t;

static void *editor_main(void *arg) {
  editor_t *e = arg;
  char args[256];
  snprintf(args, sizeof args, "{\"path\": \"log.txt\", \"old_string\": \"END\", \"new_string\": \"%c\\nEND\"}",
           e->letter);
  for (int i = 0; i < 25; i++) {
    tool_result_t r;
    tools_run(e->fx->t, "edit_file", args, NULL, &r);
    e->errors += r.is_error;
    tool_result_free(&r);
  }
  return NULL;
}

static void test_concurrent_edits(void **state) {
  fx_t *fx = *state;
  PUT(fx, "log.txt", "START\nEND\n");
  editor_t eds[4] = {{fx, 'a', 0}, {fx, 'b', 0}, {fx, 'c', 0}, {fx, 'd', 0}};
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, editor_main, &eds[i]);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  char path[PATH_MAX];
  char *got = fx_slurp(fx_path(fx, "log.txt", path, sizeof path), NULL);
  int counts[4] = {0};
  for (const char *p = got; *p; p++)
    if (*p >= 'a' && *p <= 'd' && p[1] == '\n')
      counts[*p - 'a']++;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(eds[i].errors, 0);
    assert_int_equal(counts[i], 25); /* no edit lost */
  }
  free(got);
}

/* ---- the preview an approval shows ----------------------------------------------- */

static void test_preview(void **state) {
  fx_t *fx = *state;
  PUT(fx, "three.txt", "one\ntwo\nthree\n");
  PUT(fx, "long.txt", "a\nb\nc\n");
  static const struct {
    const char *tool, *args;
    size_t max_lines;
    const char *want; /* NULL: no preview */
  } cases[] = {
      {"execute_bash", "{\"command\": \"make test && rm -rf build\"}", 40, "$ make test && rm -rf build"},
      {"execute_bash", "\"{\\\"command\\\": \\\"ls\\\"}\"", 40, "$ ls"}, /* arguments as a JSON string */
      {"edit_file", "{\"path\": \"three.txt\", \"old_string\": \"two\", \"new_string\": \"2\\n2b\"}", 40,
       "edit three.txt\n- two\n+ 2\n+ 2b"},
      {"edit_file", "{\"path\": \"three.txt\", \"old_string\": \"o\", \"new_string\": \"0\", \"replace_all\": true}",
       40, "edit three.txt (every match)\n- o\n+ 0"},
      {"write_file_tool", "{\"path\": \"new.txt\", \"content\": \"x\\ny\\n\"}", 40,
       "new file new.txt (4 bytes)\n+ x\n+ y"},
      {"write_file_tool", "{\"path\": \"new.txt\", \"content\": \"1\\n2\\n3\\n4\\n\"}", 2,
       "new file new.txt (8 bytes)\n+ 1\n+ 2\n... 2 more lines"},
      {"write_file_tool", "{\"path\": \"three.txt\", \"content\": \"one\\n2\\nthree\\n\"}", 40,
       "replace three.txt\n@@ line 2\n- two\n+ 2"},
      {"write_file_tool", "{\"path\": \"three.txt\", \"content\": \"one\\ntwo\\nthree\\nfour\\n\"}", 40,
       "replace three.txt\n@@ line 4\n+ four"},
      {"write_file_tool", "{\"path\": \"three.txt\", \"content\": \"zero\\none\\ntwo\\nthree\\n\"}", 40,
       "replace three.txt\n@@ line 1\n+ zero"},
      {"write_file_tool", "{\"path\": \"three.txt\", \"content\": \"one\\nthree\\n\"}", 40,
       "replace three.txt\n@@ line 2\n- two"},
      {"write_file_tool", "{\"path\": \"three.txt\", \"content\": \"one\\ntwo\\nthree\\n\"}", 40,
       "replace three.txt\n(no change)"},
      {"write_file_tool", "{\"path\": \"long.txt\", \"content\": \"A\\nB\\nC\\n\"}", 4,
       "replace long.txt\n@@ line 1\n- a\n- b\n- c\n+ A\n... 2 more lines"},
      {"read_file", "{\"path\": \"three.txt\"}", 40, NULL},
      {"execute_bash", "not json", 40, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *got = tools_preview(fx->t, cases[i].tool, cases[i].args, cases[i].max_lines);
    if (!cases[i].want) {
      if (got)
        fail_msg("case %zu: want no preview, got \"%s\"", i, got);
    } else if (!got || strcmp(got, cases[i].want) != 0) {
      fail_msg("case %zu: want \"%s\", got \"%s\"", i, cases[i].want, got ? got : "(null)");
    }
    free(got);
  }
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_definitions),
      cmocka_unit_test(test_compact_definitions),
      cmocka_unit_test(test_new_errors),
      T(test_arguments),
      T(test_read_file),
      T(test_read_file_limits),
      T(test_write_file),
      T(test_edit_file),
      T(test_list_files),
      T(test_grep),
      T(test_concurrent_writes),
      T(test_concurrent_edits),
      T(test_preview),
      T(test_escape_corpus),
      T(test_escape_corpus_fallback),
      T(test_absolute_inside),
      T(test_symlinks_inside),
      T(test_hard_link),
      T(test_fallback_walk_basics),
      T(test_exec_basic),
      T(test_exec_cwd_stdin_fds),
      T(test_exec_env_scrub),
      T(test_exec_rlimits),
      T(test_exec_timeout_kills_all),
      T(test_exec_background_after_exit),
      T(test_exec_cancel),
      T(test_exec_output_cap),
      T(test_exec_default_timeout),
      T(test_exec_concurrent),
      T(test_exec_bad_args),
      T(test_exec_signal_and_binary),
      T(test_own_files_refused),
      T(test_secrets_scrubbed),
      T(test_sandbox_argv),
      T(test_sandboxed_exec),
      T(test_commands_refused),
  };
  return cmocka_run_group_tests_name("tools", tests, NULL, NULL);
}
