/* Tests of ctl/multiline.c: a pasted block cleaned into a message's text, a
 * line that continues, and a block drawn within a screen's width and rows.
 * Each table row is one named case; out_width needs a UTF-8 locale. */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "multiline.h"

static const struct {
  const char *name, *in;
  size_t len; /* 0: strlen(in) */
  const char *want;
} clean_cases[] = {
    {"LF stays", "a\nb", 0, "a\nb"},
    {"CR LF becomes LF", "a\r\nb\r\n", 0, "a\nb\n"},
    {"a lone CR (a terminal's Enter) becomes LF", "a\rb", 0, "a\nb"},
    {"tabs and indentation stay", "def f():\n\tif x:\n        return 1", 0, "def f():\n\tif x:\n        return 1"},
    {"escape sequences lose their ESC", "a\033[31mb", 0, "a[31mb"},
    {"NUL and DEL are dropped",
     "a\0b\x7f"
     "c",
     5, "abc"},
    {"a C1 control character is dropped",
     "a\xc2\x9b"
     "b",
     0, "ab"},
    {"UTF-8 stays", "héllo → 🧠", 0, "héllo → 🧠"},
    {"bytes that are not UTF-8 are dropped",
     "a\xff\xfe"
     "b\xe2\x82",
     0, "ab"},
};

static void clean_paste_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof clean_cases / sizeof clean_cases[0]; i++) {
    sbuf_t out = {0};
    sbuf_puts(&out, ">"); /* appended to, never replaced */
    size_t n = clean_cases[i].len ? clean_cases[i].len : strlen(clean_cases[i].in);
    ml_clean_paste(&out, clean_cases[i].in, n);
    if (strcmp(sbuf_str(&out) + 1, clean_cases[i].want) != 0 || out.s[0] != '>')
      fail_msg("%s: got \"%s\"", clean_cases[i].name, sbuf_str(&out));
    sbuf_free(&out);
  }
}

static const struct {
  const char *name, *line;
  bool want;
} continue_cases[] = {
    {"a plain line", "hello", false},
    {"one backslash at the end", "hello \\", true},
    {"two backslashes: an escaped one", "path C:\\\\", false},
    {"three backslashes", "x\\\\\\", true},
    {"a backslash alone", "\\", true},
    {"a backslash inside", "a\\b", false},
    {"empty", "", false},
};

static void continues_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof continue_cases / sizeof continue_cases[0]; i++)
    if (ml_continues(continue_cases[i].line) != continue_cases[i].want)
      fail_msg("%s: \"%s\"", continue_cases[i].name, continue_cases[i].line);
}

static const struct {
  const char *name, *text;
  int cols, max_rows;
  const char *want;
  int rows;
} preview_cases[] = {
    {"one short line", "hi", 20, 8, "> hi\n", 1},
    {"several lines, prefixes", "a\nb\nc", 20, 8, "> a\n. b\n. c\n", 3},
    {"a long line is cut with an ellipsis", "abcdefghijklmnop", 10, 8, "> abcdef…\n", 1},
    {"a line that fits exactly is not cut", "abcdefg", 10, 8, "> abcdefg\n", 1},
    {"tabs are drawn as 4 spaces", "\tx", 20, 8, ">     x\n", 1},
    {"wide characters count twice", "🧠🧠🧠🧠🧠", 10, 8, "> 🧠🧠🧠…\n", 1},
    {"too many lines: head, a count, the last", "1\n2\n3\n4\n5\n6", 20, 4, "> 1\n. 2\n. … 3 more lines …\n. 6\n", 4},
    {"an empty last line is a row", "a\n", 20, 8, "> a\n. \n", 2},
};

static void preview_cases_fit(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof preview_cases / sizeof preview_cases[0]; i++) {
    sbuf_t out = {0};
    int rows = -1;
    ml_preview(&out, preview_cases[i].text, preview_cases[i].cols, preview_cases[i].max_rows, "> ", ". ", true, &rows);
    if (strcmp(sbuf_str(&out), preview_cases[i].want) != 0 || rows != preview_cases[i].rows)
      fail_msg("%s: got \"%s\" (%d rows)", preview_cases[i].name, sbuf_str(&out), rows);
    sbuf_free(&out);
  }
}

static void preview_without_a_last_newline(void **state) {
  (void)state;
  sbuf_t out = {0};
  int rows = 0;
  ml_preview(&out, "a\nb", 20, 8, "> ", ". ", false, &rows);
  assert_string_equal(sbuf_str(&out), "> a\n. b");
  assert_int_equal(rows, 2);
  sbuf_free(&out);
}

int main(void) {
  if (!setlocale(LC_CTYPE, "C.UTF-8"))
    setlocale(LC_CTYPE, "");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(clean_paste_cases),
      cmocka_unit_test(continues_cases),
      cmocka_unit_test(preview_cases_fit),
      cmocka_unit_test(preview_without_a_last_newline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
