/* Unit tests of common/: the string buffer (caps, UTF-8), the JSON getters and the UTF-8 check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jx.h"
#include "sbuf.h"
#include "util.h"

typedef struct {
  const char *name;
  size_t max;
  const char *parts[3]; /* appended in turn with sbuf_add_utf8 */
  const char *want;
  bool full;
} utf8_case_t;

static const utf8_case_t utf8_cases[] = {
    {"no limit keeps all", 0, {"héllo", " wörld"}, "héllo wörld", false},
    {"invalid bytes become ?",
     0,
     {"a\xff"
      "b\xc3"},
     "a?b?",
     false},
    {"a surrogate is three ?", 0, {"x\xed\xa0\x80y"}, "x???y", false},
    {"cut at the limit", 5, {"abcdefgh"}, "abcde", true},
    {"a cut never splits a character", 4, {"abcé"}, "abc", true},
    {"exactly at the limit is not full", 5, {"ab", "cde"}, "abcde", false},
    {"after full nothing more", 3, {"abcd", "e"}, "abc", true},
    {"a ? counts against the limit",
     2,
     {"a\xff"
      "b"},
     "a?",
     true},
};

static void test_sbuf_add_utf8_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
    const utf8_case_t *c = &utf8_cases[i];
    sbuf_t b = {.max = c->max};
    for (int k = 0; k < 3 && c->parts[k]; k++)
      sbuf_add_utf8(&b, c->parts[k], strlen(c->parts[k]));
    if (strcmp(sbuf_str(&b), c->want) != 0 || b.full != c->full || b.len != strlen(c->want))
      fail_msg("case \"%s\": got \"%s\" full=%d, want \"%s\" full=%d", c->name, sbuf_str(&b), b.full, c->want, c->full);
    assert_true(util_utf8_valid(sbuf_str(&b), b.len));
    sbuf_free(&b);
  }
}

static void test_sbuf_caps_bytes_and_printf(void **state) {
  (void)state;
  sbuf_t b = {.max = 6};
  sbuf_printf(&b, "%d-%s", 12345, "abcdef");
  assert_string_equal(sbuf_str(&b), "12345-");
  assert_true(b.full);
  sbuf_reset(&b);
  assert_false(b.full);
  assert_string_equal(sbuf_str(&b), "");
  sbuf_add(&b, "abc   \t", 7);
  sbuf_rtrim(&b);
  assert_string_equal(sbuf_str(&b), "abc");
  sbuf_free(&b);
  sbuf_t u = {0};
  for (int i = 0; i < 1000; i++)
    sbuf_printf(&u, "%04d", i);
  assert_int_equal(u.len, 4000);
  assert_false(u.full);
  assert_memory_equal(u.s + 3996, "0999", 4);
  sbuf_free(&u);
  assert_string_equal(sbuf_str(&u), "");
}

static void test_jx_getters_take_the_asked_type_or_the_default(void **state) {
  (void)state;
  json_t *o = json_pack("{s:s, s:i, s:f, s:f, s:b, s:{}, s:[], s:s}", "s", "text", "i", 7, "whole", 3.0, "real", 2.5,
                        "b", 1, "o", "a", "empty", "");
  assert_string_equal(jx_str(o, "s", "d"), "text");
  assert_string_equal(jx_str(o, "i", "d"), "d");
  assert_string_equal(jx_str(o, "missing", "d"), "d");
  assert_int_equal(jx_int(o, "i", -1), 7);
  assert_int_equal(jx_int(o, "whole", -1), 3);
  assert_int_equal(jx_int(o, "real", -1), -1);
  assert_int_equal(jx_int(o, "s", -1), -1);
  assert_true(jx_num(o, "real", 0) == 2.5);
  assert_true(jx_num(o, "i", 0) == 7.0);
  assert_true(jx_bool(o, "b", false));
  assert_false(jx_bool(o, "i", false));
  assert_non_null(jx_obj(o, "o"));
  assert_null(jx_obj(o, "a"));
  assert_non_null(jx_arr(o, "a"));
  assert_null(jx_arr(o, "o"));
  assert_true(jx_has_str(o, "s"));
  assert_false(jx_has_str(o, "empty"));
  assert_string_equal(jx_str(NULL, "s", "d"), "d");
  json_t *arr = json_array();
  assert_int_equal(jx_int(arr, "i", 5), 5);
  json_decref(arr);
  json_decref(o);
}

static void test_utf8_valid_agrees_with_the_sequence_reader(void **state) {
  (void)state;
  static const struct {
    const char *s;
    bool ok;
  } cases[] = {
      {"plain ASCII longer than one word of eight bytes", true},
      {"mixed é and 😀 after eight ASCII bytes", true},
      {"overlong \xc0\xaf here", false},
      {"12345678\xe0\x80\xaf", false},
      {"cut at the end \xe2\x82", false},
      {"above U+10FFFF \xf4\x90\x80\x80", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (util_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
      fail_msg("\"%s\": want %s", cases[i].s, cases[i].ok ? "valid" : "invalid");
  assert_true(util_utf8_valid("a\0b", 3));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sbuf_add_utf8_cases),
      cmocka_unit_test(test_sbuf_caps_bytes_and_printf),
      cmocka_unit_test(test_jx_getters_take_the_asked_type_or_the_default),
      cmocka_unit_test(test_utf8_valid_agrees_with_the_sequence_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
