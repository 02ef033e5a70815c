/* Unit tests for broker/summary.c: a table of model outputs (the seed's
 * example and the format slips models make), each with its exact status, key
 * points and recommendation; status words; caps on huge input; invalid UTF-8;
 * summary_failed; summary_render and its round trip through summary_parse;
 * and a seeded fuzz loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "summary.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_POINTS 50
#define MAX_TEXT 2000
#define MAX_RAW (64 * 1024)

/* ---- the table ---------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *text;
  const char *status; /* NULL: summary_parse must return NULL */
  const char *points[8];
  const char *rec;
  const char *raw; /* NULL: not checked */
} case_t;

#define BLOCK(body) "[SUMMARY]\n" body "[/SUMMARY]"

static const case_t cases[] = {
    {"seed_exact_example",
     "[SUMMARY]\nStatus: PASS/FAIL\nKey Points:\n- Point 1\n- Point 2\nRecommendation: Action to take\n[/SUMMARY]",
     "PASS/FAIL",
     {"Point 1", "Point 2"},
     "Action to take",
     "Status: PASS/FAIL\nKey Points:\n- Point 1\n- Point 2\nRecommendation: Action to take"},
    {"seed_format_after_prose",
     "I read auth.py and ran the linter.\n\n" BLOCK(
         "Status: PASS\nKey Points:\n- No critical issues\n"
         "- minor: auth.py:12: unused import\nRecommendation: Merge as is\n"),
     "PASS",
     {"No critical issues", "minor: auth.py:12: unused import"},
     "Merge as is",
     "Status: PASS\nKey Points:\n- No critical issues\n- minor: auth.py:12: unused import\nRecommendation: Merge as "
     "is"},
    {"bold_labels",
     BLOCK("**Status:** PASS\n**Key Points:**\n- a\n- b\n**Recommendation:** Merge\n"),
     "PASS",
     {"a", "b"},
     "Merge",
     NULL},
    {"bold_labels_colon_outside",
     BLOCK("**Status**: FAIL\n__Key Points__:\n- a\n**Recommendation**: Fix a\n"),
     "FAIL",
     {"a"},
     "Fix a",
     NULL},
    {"bold_whole_line",
     BLOCK("**Status: PASS**\n**Key Points:**\n- a\n**Recommendation: Merge it**\n"),
     "PASS",
     {"a"},
     "Merge it",
     NULL},
    {"dash_separators",
     BLOCK("Status - PASS\nKey Points -\n- a\nRecommendation \xe2\x80\x94 Ship it\n"),
     "PASS",
     {"a"},
     "Ship it",
     NULL},
    {"upper_case_labels",
     BLOCK("STATUS: pass\nKEY POINTS:\n- a\nRECOMMENDATION: do it\n"),
     "PASS",
     {"a"},
     "do it",
     NULL},
    {"emoji_status",
     BLOCK("Status: \xe2\x9c\x85 PASS\nKey Points:\n- a\nRecommendation: none needed\n"),
     "PASS",
     {"a"},
     "none needed",
     NULL},
    {"emoji_only_fail",
     BLOCK("Status: \xe2\x9d\x8c\nKey Points:\n- build broken\nRecommendation: fix\n"),
     "FAIL",
     {"build broken"},
     "fix",
     NULL},
    {"star_bullets", BLOCK("Status: PASS\nKey Points:\n* a\n* b\nRecommendation: x\n"), "PASS", {"a", "b"}, "x", NULL},
    {"unicode_bullets",
     BLOCK("Status: PASS\nKey Points:\n\xe2\x80\xa2 a\n\xe2\x80\xa2"
           "b\n\xe2\x97\xa6 c\nRecommendation: x\n"),
     "PASS",
     {"a", "b", "c"},
     "x",
     NULL},
    {"numbered_bullets",
     BLOCK("Status: PASS\nKey Points:\n1. a\n2) b\n10. c\nRecommendation: x\n"),
     "PASS",
     {"a", "b", "c"},
     "x",
     NULL},
    {"indented_bullets",
     BLOCK("Status: PASS\nKey Points:\n   - a\n\t* b\n    1. c\nRecommendation: x\n"),
     "PASS",
     {"a", "b", "c"},
     "x",
     NULL},
    {"label_key_points_lowercase",
     BLOCK("Status: PASS\nKey points:\n- a\nRecommendation: x\n"),
     "PASS",
     {"a"},
     "x",
     NULL},
    {"label_key_findings", BLOCK("Status: PASS\nKey Findings:\n- a\nRecommendation: x\n"), "PASS", {"a"}, "x", NULL},
    {"label_findings", BLOCK("Status: PASS\nFindings:\n- a\nRecommendation: x\n"), "PASS", {"a"}, "x", NULL},
    {"label_issues_found",
     BLOCK("Status: FAIL\nIssues Found:\n- critical: db.py:42: SQL injection\n- major: api.py:7: no auth\n"
           "Recommendation: Fix the SQL injection in db.py:42, then re-review\n"),
     "FAIL",
     {"critical: db.py:42: SQL injection", "major: api.py:7: no auth"},
     "Fix the SQL injection in db.py:42, then re-review",
     NULL},
    {"label_with_count",
     BLOCK("Status: PASS\n**Key Points (3):**\n- a\nRecommendation: x\n"),
     "PASS",
     {"a"},
     "x",
     NULL},
    {"implementer_role_labels",
     BLOCK("Status: PASS\nFiles modified:\n- src/a.c\n- src/b.h\nFeatures added:\n- token expiry\n"
           "**Testing notes:**\n- make check: 12 passed\nRecommendation: Spawn a tester\n"),
     "PASS",
     {"Files modified: src/a.c", "Files modified: src/b.h", "Features added: token expiry",
      "Testing notes: make check: 12 passed"},
     "Spawn a tester",
     NULL},
    {"optimizer_role_labels",
     BLOCK("Status: PASS\nOptimizations suggested:\n1. import.py:120: batch inserts\nExpected impact:\n- 10x on 10k "
           "rows\n"
           "Trade-offs:\n- more memory\nRecommendation: Batch the inserts first\n"),
     "PASS",
     {"Optimizations suggested: import.py:120: batch inserts", "Expected impact: 10x on 10k rows",
      "Trade-offs: more memory"},
     "Batch the inserts first",
     NULL},
    {"researcher_inline_label",
     BLOCK("Status: PASS\nKey Findings:\n- asyncpg is fastest (docs)\nConfidence: high, benchmarks\n"
           "Recommendation: Use asyncpg\n"),
     "PASS",
     {"asyncpg is fastest (docs)", "Confidence: high, benchmarks"},
     "Use asyncpg",
     NULL},
    {"tester_status_bullet",
     BLOCK("Status: FAIL\nKey Points:\n- Test status: 40 passed, 2 failed\n- Command: meson test -C build\n"
           "Recommendation: Fix auth.c:88, then re-run meson test\n"),
     "FAIL",
     {"Test status: 40 passed, 2 failed", "Command: meson test -C build"},
     "Fix auth.c:88, then re-run meson test",
     NULL},
    {"nested_sub_labels",
     BLOCK("Status: PASS\nKey Points:\n- Files modified:\n  - src/a.c\n  - src/b.c\n- Tests: 12 passed\n"
           "Recommendation: Review\n"),
     "PASS",
     {"Files modified: src/a.c", "Files modified: src/b.c", "Tests: 12 passed"},
     "Review",
     NULL},
    {"all_fields_as_bullets",
     BLOCK("- **Status:** PASS\n- **Key Points:**\n  - a\n  - b\n- **Recommendation:** Merge\n"),
     "PASS",
     {"a", "b"},
     "Merge",
     NULL},
    {"markdown_headings",
     BLOCK("### Status\nPASS\n### Key Points\n- a\n### Recommendation\nMerge it\n"),
     "PASS",
     {"a"},
     "Merge it",
     NULL},
    {"status_on_next_line",
     BLOCK("**Status:**\nFAIL\nKey Points:\n- a\nRecommendation: x\n"),
     "FAIL",
     {"a"},
     "x",
     NULL},
    {"missing_closing_tag",
     "Done.\n\n[SUMMARY]\nStatus: PASS\nKey Points:\n- a\nRecommendation: Re-run\n",
     "PASS",
     {"a"},
     "Re-run",
     "Status: PASS\nKey Points:\n- a\nRecommendation: Re-run"},
    {"lowercase_tags",
     "[summary]\nStatus: PASS\nKey Points:\n- a\nRecommendation: x\n[/summary]",
     "PASS",
     {"a"},
     "x",
     NULL},
    {"spaced_tags", "[ Summary ]\nStatus: PASS\n- a\nRecommendation: x\n[/ SUMMARY ]", "PASS", {"a"}, "x", NULL},
    {"text_after_block",
     BLOCK("Status: PASS\nKey Points:\n- a\nRecommendation: x\n") "\n\nLet me know!\n- not a point",
     "PASS",
     {"a"},
     "x",
     NULL},
    {"tags_on_field_lines", "[SUMMARY] Status: PASS\n- a\nRecommendation: go [/SUMMARY]", "PASS", {"a"}, "go", NULL},
    {"several_blocks_last_wins",
     BLOCK("Status: FAIL\n- old\nRecommendation: old\n") "\nRetrying.\n" BLOCK(
         "Status: PASS\n- new\nRecommendation: new\n"),
     "PASS",
     {"new"},
     "new",
     NULL},
    {"three_blocks_last_wins",
     BLOCK("Status: FAIL\n") BLOCK("Status: PARTIAL\n") BLOCK("Status: PASS\n- c\n"),
     "PASS",
     {"c"},
     "",
     NULL},
    {"trailing_unclosed_block_wins",
     BLOCK("Status: FAIL\n- old\nRecommendation: old\n") "\n[SUMMARY]\nStatus: PASS\n- new\nRecommendation: new\n",
     "PASS",
     {"new"},
     "new",
     NULL},
    {"unclosed_then_closed_block",
     "[SUMMARY]\nStatus: FAIL\n- old\n\n[SUMMARY]\nStatus: PASS\n- new\n[/SUMMARY]",
     "PASS",
     {"new"},
     "",
     NULL},
    {"tag_mentioned_inside_block",
     BLOCK("Status: PASS\nKey Points:\n- parser accepts [SUMMARY] tags in any case\nRecommendation: Merge\n"),
     "PASS",
     {"parser accepts [SUMMARY] tags in any case"},
     "Merge",
     NULL},
    {"tag_mentioned_in_prose_before",
     "I will end with a [SUMMARY] block.\n\n" BLOCK("Status: FAIL\n- a\n"),
     "FAIL",
     {"a"},
     "",
     NULL},
    {"render_header_tag",
     "[SUMMARY from reviewer-1 (reviewer)]\nStatus: PASS\nKey Points:\n- a\nRecommendation: x\n[/SUMMARY]",
     "PASS",
     {"a"},
     "x",
     NULL},
    {"fenced_block",
     "Result:\n```\n" BLOCK("Status: PASS\nKey Points:\n- a\nRecommendation: x\n") "\n```\n",
     "PASS",
     {"a"},
     "x",
     NULL},
    {"fence_inside_block",
     BLOCK("```text\nStatus: PASS\nKey Points:\n- a\nRecommendation: x\n```\n"),
     "PASS",
     {"a"},
     "x",
     NULL},
    {"fenced_unclosed_block",
     "```\n[SUMMARY]\nStatus: PASS\n- a\nRecommendation: x\n```\nHope this helps.",
     "PASS",
     {"a"},
     "x",
     "Status: PASS\n- a\nRecommendation: x"},
    {"multiline_recommendation",
     BLOCK("Status: FAIL\n- a\nRecommendation: Fix the bug in\nparser.c, then\n  re-run the tests.\n"),
     "FAIL",
     {"a"},
     "Fix the bug in parser.c, then re-run the tests.",
     NULL},
    {"recommendation_list",
     BLOCK("Status: FAIL\n- a\nRecommendation:\n- Fix A\n- Fix B\n"),
     "FAIL",
     {"a"},
     "- Fix A\n- Fix B",
     NULL},
    {"recommendation_before_key_points",
     BLOCK("Status: PASS\nRecommendation: Merge\nKey Points:\n- a\n"),
     "PASS",
     {"a"},
     "Merge",
     NULL},
    {"recommendation_bullet_in_key_points",
     BLOCK("Status: PASS\nKey Points:\n- Recommendation: use X for speed\nRecommendation: Use X\n"),
     "PASS",
     {"Recommendation: use X for speed"},
     "Use X",
     NULL},
    {"key_points_inline",
     BLOCK("Status: PASS\nKey Points: only one\nRecommendation: x\n"),
     "PASS",
     {"only one"},
     "x",
     NULL},
    {"wrapped_bullet",
     BLOCK("Status: PASS\nKey Points:\n- a long point\n  that wraps\n- next\nRecommendation: x\n"),
     "PASS",
     {"a long point that wraps", "next"},
     "x",
     NULL},
    {"plain_lines_as_points",
     BLOCK("Status: PASS\nKey Points:\nThe code is fine.\nNo tests missing.\nRecommendation: x\n"),
     "PASS",
     {"The code is fine.", "No tests missing."},
     "x",
     NULL},
    {"blank_lines_and_crlf",
     "[SUMMARY]\r\n\r\nStatus: PASS\r\n\r\nKey Points:\r\n\r\n- a\r\n\r\n- b\r\n\r\n"
     "Recommendation: x\r\n\r\n[/SUMMARY]",
     "PASS",
     {"a", "b"},
     "x",
     NULL},
    {"blockquote_and_rules", BLOCK("---\n> Status: PASS\n> - a\n***\n> Recommendation: x\n"), "PASS", {"a"}, "x", NULL},
    {"prose_around_fields",
     BLOCK("Here is my summary:\nStatus: PASS\nAll checks are green.\n- a\nRecommendation: x\n"),
     "PASS",
     {"a"},
     "x",
     NULL},
    {"no_fields", BLOCK("All good.\n- one\n- two\n"), "UNKNOWN", {"one", "two"}, "", "All good.\n- one\n- two"},
    {"empty_block", "[SUMMARY][/SUMMARY]", "UNKNOWN", {NULL}, "", ""},
    {"no_block", "Status: PASS\nKey Points:\n- a\nRecommendation: x\n", NULL, {NULL}, NULL, NULL},
    {"empty_text", "", NULL, {NULL}, NULL, NULL},
    {"only_closing_tag", "Status: PASS\n[/SUMMARY]", NULL, {NULL}, NULL, NULL},
    {"not_a_tag", "[Summary of changes]\nStatus: PASS\n[SUMMARY-ish]", NULL, {NULL}, NULL, NULL},
};

static void expect_points(const json_t *kp, const char *const *want) {
  size_t n = 0;
  while (n < 8 && want[n])
    n++;
  assert_true(json_is_array(kp));
  assert_int_equal(json_array_size(kp), n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(json_string_value(json_array_get(kp, i)), want[i]);
}

/* Checks a parsed summary against status, key points and recommendation. */
static void expect_summary(const json_t *s, const char *status, const char *const *points, const char *rec) {
  assert_non_null(s);
  assert_true(json_is_object(s));
  assert_string_equal(json_string_value(json_object_get(s, "status")), status);
  expect_points(json_object_get(s, "key_points"), points);
  assert_string_equal(json_string_value(json_object_get(s, "recommendation")), rec);
  assert_true(json_is_string(json_object_get(s, "raw")));
}

static void test_case(void **state) {
  const case_t *c = *state;
  json_t *s = summary_parse(c->text);
  if (!c->status) {
    assert_null(s);
    return;
  }
  expect_summary(s, c->status, c->points, c->rec);
  if (c->raw)
    assert_string_equal(json_string_value(json_object_get(s, "raw")), c->raw);
  json_decref(s);
}

/* ---- status words ------------------------------------------------------- */

typedef struct {
  const char *value, *status;
} status_case_t;

static const status_case_t statuses[] = {
    {"PASS", "PASS"},
    {"pass", "PASS"},
    {"Passed", "PASS"},
    {"SUCCESS", "PASS"},
    {"Successful", "PASS"},
    {"OK", "PASS"},
    {"ok.", "PASS"},
    {"Done", "PASS"},
    {"complete", "PASS"},
    {"Completed", "PASS"},
    {"Approved", "PASS"},
    {"\xe2\x9c\x85", "PASS"},
    {"\xe2\x9c\x94\xef\xb8\x8f Passed", "PASS"},
    {"\xf0\x9f\x9f\xa2", "PASS"},
    {"**PASS**", "PASS"},
    {"PASS - all 42 tests pass", "PASS"},
    {"PASS (with minor issues)", "PASS"},
    {"Passed \xe2\x9c\x85", "PASS"},
    {"No errors", "PASS"},
    {"fail", "FAIL"},
    {"Failed", "FAIL"},
    {"FAILURE", "FAIL"},
    {"Error", "FAIL"},
    {"Blocked", "FAIL"},
    {"Rejected", "FAIL"},
    {"\xe2\x9d\x8c FAIL", "FAIL"},
    {"`FAIL`", "FAIL"},
    {"Not passed", "FAIL"},
    {"partial", "PARTIAL"},
    {"Partially", "PARTIAL"},
    {"Mixed", "PARTIAL"},
    {"Warning", "PARTIAL"},
    {"warnings", "PARTIAL"},
    {"\xe2\x9a\xa0\xef\xb8\x8f", "PARTIAL"},
    {"Needs work", "PARTIAL"},
    {"needs changes", "PARTIAL"},
    {"In progress", "IN"},
    {"Pending review", "PENDING"},
    {"N/A", "N/A"},
    {"5/7 passed", "5/7"},
    {"", "UNKNOWN"},
    {"\xe2\x9c\xa8", "UNKNOWN"},
    {"\xff\xfe PASS", "PASS"},
};

static void test_status(void **state) {
  const status_case_t *c = *state;
  char text[256];
  snprintf(text, sizeof text, "[SUMMARY]\nStatus: %s\n[/SUMMARY]", c->value);
  json_t *s = summary_parse(text);
  assert_non_null(s);
  assert_string_equal(json_string_value(json_object_get(s, "status")), c->status);
  json_decref(s);
}

/* ---- caps and bytes ----------------------------------------------------- */

/* Appends copies of s to buf from len while they fit below limit; returns the new length. */
static size_t fill(char *buf, size_t len, const char *s, size_t limit) {
  size_t n = strlen(s);
  while (len + n < limit) {
    memcpy(buf + len, s, n);
    len += n;
  }
  buf[len] = '\0';
  return len;
}

static bool valid_utf8_string(const json_t *v) {
  json_t *copy = json_is_string(v) ? json_stringn(json_string_value(v), json_string_length(v)) : NULL;
  json_decref(copy);
  return copy != NULL;
}

static void test_huge_bullets(void **state) {
  (void)state;
  size_t cap = (1u << 20) + 4096, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  len += (size_t)snprintf(buf, cap, "[SUMMARY]\nStatus: PASS\nKey Points:\n");
  for (int i = 0; len < (1u << 20); i++)
    len += (size_t)snprintf(buf + len, cap - len, "- point %d with some text\n", i);
  snprintf(buf + len, cap - len, "Recommendation: x\n[/SUMMARY]");
  json_t *s = summary_parse(buf);
  assert_non_null(s);
  json_t *kp = json_object_get(s, "key_points");
  assert_int_equal(json_array_size(kp), MAX_POINTS);
  assert_string_equal(json_string_value(json_array_get(kp, 0)), "point 0 with some text");
  assert_string_equal(json_string_value(json_array_get(kp, 49)), "point 49 with some text");
  assert_string_equal(json_string_value(json_object_get(s, "status")), "PASS");
  assert_string_equal(json_string_value(json_object_get(s, "recommendation")), "x");
  assert_true(json_string_length(json_object_get(s, "raw")) <= MAX_RAW);
  assert_true(json_string_length(json_object_get(s, "raw")) > MAX_RAW - 64);
  json_decref(s);
  free(buf);
}

/* One 1 MB key point of 2-byte characters and a 1 MB recommendation of 3-byte ones, no closing tag. */
static void test_huge_multibyte(void **state) {
  (void)state;
  size_t cap = (2u << 20) + 4096, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  len += (size_t)snprintf(buf, cap, "[SUMMARY]\nStatus: PASS\n- ");
  len = fill(buf, len, "\xc3\xa9", (1u << 20));
  len += (size_t)snprintf(buf + len, cap - len, "\nRecommendation: ");
  len = fill(buf, len, "\xe2\x82\xac", (2u << 20));
  json_t *s = summary_parse(buf);
  assert_non_null(s);
  const json_t *p0 = json_array_get(json_object_get(s, "key_points"), 0);
  const json_t *rec = json_object_get(s, "recommendation"), *raw = json_object_get(s, "raw");
  assert_int_equal(json_string_length(p0), MAX_TEXT);
  assert_int_equal(json_string_length(rec), MAX_TEXT / 3 * 3);
  assert_true(json_string_length(raw) <= MAX_RAW && json_string_length(raw) > MAX_RAW - 4);
  assert_true(valid_utf8_string(p0) && valid_utf8_string(rec) && valid_utf8_string(raw));
  json_decref(s);
  free(buf);
}

/* 1 MB without a newline or tag, and 1 MB of '[' and of opening tags: no crash, linear time. */
static void test_huge_degenerate(void **state) {
  (void)state;
  size_t cap = (1u << 20) + 64;
  char *buf = malloc(cap);
  assert_non_null(buf);
  fill(buf, 0, "a:b- *", 1u << 20);
  assert_null(summary_parse(buf));
  fill(buf, 0, "[", 1u << 20);
  assert_null(summary_parse(buf));
  fill(buf, 0, "**[SUMMARY] Status: ok ", 1u << 20);
  json_t *s = summary_parse(buf);
  assert_non_null(s);
  assert_string_equal(json_string_value(json_object_get(s, "status")), "PASS");
  json_decref(s);
  free(buf);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  const char *text = BLOCK("Status: \xff PASS\nKey Points:\n- bad \xc0\xaf overlong\n- surrogate \xed\xa0\x80 here\n"
                           "- cut \xe2\x9c end\n- ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n"
                           "Recommendation: fix \xfe\n");
  const char *const points[] = {"bad ?? overlong", "surrogate ??? here", "cut ?? end",
                                "ok \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", NULL};
  json_t *s = summary_parse(text);
  expect_summary(s, "PASS", points, "fix ?");
  assert_true(valid_utf8_string(json_object_get(s, "raw")));
  json_decref(s);
}

/* ---- summary_failed and summary_render ---------------------------------- */

static void test_failed(void **state) {
  (void)state;
  const char *const one[] = {"agent timed out after 600 s", NULL};
  json_t *s = summary_failed("agent timed out after 600 s");
  expect_summary(s, "FAIL", one, "");
  json_decref(s);

  const char *const none[] = {"the agent gave no summary", NULL};
  s = summary_failed(NULL);
  expect_summary(s, "FAIL", none, "");
  json_decref(s);

  const char *const bad[] = {"bad ? byte", NULL};
  s = summary_failed("bad \xff byte");
  expect_summary(s, "FAIL", bad, "");
  json_decref(s);

  char *longer = malloc(10000);
  assert_non_null(longer);
  fill(longer, 0, "\xe2\x82\xac", 10000);
  s = summary_failed(longer);
  assert_int_equal(json_string_length(json_array_get(json_object_get(s, "key_points"), 0)), MAX_TEXT / 3 * 3);
  json_decref(s);
  free(longer);
}

static void test_render_exact(void **state) {
  (void)state;
  json_t *s = json_pack("{s:s, s:[s, s], s:s}", "status", "PASS", "key_points", "a", "b", "recommendation", "Merge");
  char *text = summary_render("reviewer-1", "reviewer", s);
  assert_string_equal(text, "[SUMMARY from reviewer-1 (reviewer)]\nStatus: PASS\nKey Points:\n- a\n- b\n"
                            "Recommendation: Merge\n[/SUMMARY]");
  free(text);
  json_decref(s);

  text = summary_render("tester-2", NULL, NULL);
  assert_string_equal(text, "[SUMMARY from tester-2]\nStatus: UNKNOWN\nKey Points:\nRecommendation:\n[/SUMMARY]");
  free(text);

  s = summary_failed("line one\nline two");
  text = summary_render(NULL, "", s);
  assert_string_equal(text, "[SUMMARY from agent]\nStatus: FAIL\nKey Points:\n- line one\n  line two\n"
                            "Recommendation:\n[/SUMMARY]");
  free(text);
  json_decref(s);
}

/* Render then parse gives back the same status, key points and recommendation. */
static void expect_round_trip(const json_t *s) {
  char *text = summary_render("implementer-3", "implementer", s);
  assert_non_null(text);
  json_t *back = summary_parse(text);
  assert_non_null(back);
  assert_true(json_equal(json_object_get(back, "status"), json_object_get(s, "status")));
  assert_true(json_equal(json_object_get(back, "key_points"), json_object_get(s, "key_points")));
  assert_true(json_equal(json_object_get(back, "recommendation"), json_object_get(s, "recommendation")));
  json_decref(back);
  free(text);
}

static void test_render_round_trip(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    json_t *s = summary_parse(cases[i].text);
    if (s)
      expect_round_trip(s);
    json_decref(s);
  }
  json_t *f = summary_failed("no summary in the answer");
  expect_round_trip(f);
  json_decref(f);
}

/* ---- fuzz --------------------------------------------------------------- */

static uint32_t next_rand(uint32_t *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return *seed >> 8;
}

/* Checks the shape and the caps of a parse result. */
static void expect_well_formed(const json_t *s) {
  const json_t *kp = json_object_get(s, "key_points"), *v;
  size_t i;
  assert_true(valid_utf8_string(json_object_get(s, "status")));
  assert_true(json_string_length(json_object_get(s, "status")) > 0);
  assert_true(valid_utf8_string(json_object_get(s, "recommendation")));
  assert_true(json_string_length(json_object_get(s, "recommendation")) <= MAX_TEXT);
  assert_true(valid_utf8_string(json_object_get(s, "raw")));
  assert_true(json_array_size(kp) <= MAX_POINTS);
  json_array_foreach(kp, i, v) {
    assert_true(valid_utf8_string(v));
    assert_true(json_string_length(v) > 0 && json_string_length(v) <= MAX_TEXT);
  }
}

static void test_fuzz(void **state) {
  (void)state;
  static const char *const pieces[] = {"[SUMMARY]",
                                       "[/SUMMARY]",
                                       "[summary from x (y)]",
                                       "Status:",
                                       " PASS",
                                       "\n",
                                       "\n- ",
                                       "  ",
                                       "**",
                                       "Key Points:",
                                       "Recommendation:",
                                       "```",
                                       "\xe2\x9c\x85",
                                       "1. ",
                                       "Files modified:",
                                       "\xe2\x80\xa2",
                                       ": ",
                                       "#",
                                       "\t",
                                       "- "};
  uint32_t seed = 12345;
  char buf[512];
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = 0, want = next_rand(&seed) % 400;
    while (len < want) {
      if (next_rand(&seed) % 3) {
        const char *p = pieces[next_rand(&seed) % ARRAY_LEN(pieces)];
        size_t n = strlen(p);
        memcpy(buf + len, p, n);
        len += n;
      } else {
        buf[len++] = (char)(1 + next_rand(&seed) % 255);
      }
    }
    buf[len] = '\0';
    json_t *s = summary_parse(buf);
    if (!s)
      continue;
    expect_well_formed(s);
    char *text = summary_render("a", "b", s);
    assert_non_null(text);
    json_t *back = summary_parse(text);
    assert_non_null(back);
    expect_well_formed(back);
    json_decref(back);
    free(text);
    json_decref(s);
  }
}

/* ---- main --------------------------------------------------------------- */

int main(void) {
  static const struct CMUnitTest fixed[] = {
      cmocka_unit_test(test_huge_bullets),
      cmocka_unit_test(test_huge_multibyte),
      cmocka_unit_test(test_huge_degenerate),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_failed),
      cmocka_unit_test(test_render_exact),
      cmocka_unit_test(test_render_round_trip),
      cmocka_unit_test(test_fuzz),
  };
  struct CMUnitTest tests[ARRAY_LEN(cases) + ARRAY_LEN(statuses) + ARRAY_LEN(fixed)];
  char names[ARRAY_LEN(statuses)][64];
  size_t n = 0;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++)
    tests[n++] = (struct CMUnitTest){cases[i].name, test_case, NULL, NULL, (void *)&cases[i]};
  for (size_t i = 0; i < ARRAY_LEN(statuses); i++) {
    snprintf(names[i], sizeof names[i], "status \"%s\"", statuses[i].value);
    tests[n++] = (struct CMUnitTest){names[i], test_status, NULL, NULL, (void *)&statuses[i]};
  }
  for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
    tests[n++] = fixed[i];
  return cmocka_run_group_tests(tests, NULL, NULL);
}
