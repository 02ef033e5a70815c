/* Unit tests for broker/plan*.c: a table of [PLAN] texts (the seed's example
 * and the format slips models make), each checked against the fields it must
 * give; durations; validation errors with their exact text; dependency order
 * and the critical path; every edit and its errors; the approval screen;
 * templates; caps, invalid UTF-8 and a seeded fuzz loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "plan.h"
#include "plan_estimate.h"

#ifndef CADRE_SOURCE_ROOT
#define CADRE_SOURCE_ROOT "."
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------ */

static const char SEED_PLAN[] = "[PLAN]\n"
                                "## Workflow: Implement and Test Feature\n"
                                "\n"
                                "### Step 1: Research best practices\n"
                                "- Agent: researcher\n"
                                "- Tool: execute_bash\n"
                                "- Arguments: {\"command\": \"grep -r 'pattern' ./docs\"}\n"
                                "- Dependencies: none\n"
                                "- Estimated Time: 30s\n"
                                "\n"
                                "### Step 2: Implement feature\n"
                                "- Agent: implementer\n"
                                "- Tool: write_file_tool\n"
                                "- Arguments: {\"path\": \"./feature.py\", \"content\": \"...\"}\n"
                                "- Dependencies: Step 1\n"
                                "- Estimated Time: 120s\n"
                                "\n"
                                "### Step 3: Test implementation\n"
                                "- Agent: tester\n"
                                "- Tool: execute_bash\n"
                                "- Arguments: {\"command\": \"pytest ./tests/test_feature.py\"}\n"
                                "- Dependencies: Step 2\n"
                                "- Estimated Time: 45s\n"
                                "\n"
                                "## Total Estimated Time: 195s (3m 15s)\n"
                                "## Cost Estimate: $0.06\n"
                                "[/PLAN]\n";

static json_t *load(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  if (!j)
    fail_msg("bad JSON in the test: %s: %s", e.text, text);
  return j;
}

static json_t *roles(void) {
  return json_pack("[sssss]", "researcher", "implementer", "tester", "reviewer", "optimizer");
}

static json_t *tools(void) {
  return load("{\"execute_bash\": [\"command\"], \"read_file\": [\"path\"], "
              "\"write_file_tool\": [\"path\", \"content\"], \"edit_file\": [\"path\", \"old_text\", \"new_text\"]}");
}

static json_t *parse_ok(const char *text) {
  char err[256] = "untouched";
  json_t *plan = plan_parse(text, err, sizeof err);
  if (!plan)
    fail_msg("plan_parse gave NULL (%s) for:\n%s", err, text);
  return plan;
}

/* True when every key of an expected object is in actual with a matching value (arrays: same length, element by
 * element; numbers: int and real compare by value; null matches null or a missing key). */
static bool matches(const json_t *want, const json_t *got, char *where, size_t size) {
  if (json_is_null(want))
    return !got || json_is_null(got);
  if (json_is_number(want))
    return json_is_number(got) && fabs(json_number_value(want) - json_number_value(got)) < 1e-9;
  if (json_is_object(want)) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)want, key, v) {
      if (!matches(v, json_object_get(got, key), where, size)) {
        size_t n = strlen(where);
        snprintf(where + n, size - n, " <- %s", key);
        return false;
      }
    }
    return json_is_object(got);
  }
  if (json_is_array(want)) {
    if (!json_is_array(got) || json_array_size(got) != json_array_size(want)) {
      snprintf(where, size, "array size %zu, want %zu", json_array_size(got), json_array_size(want));
      return false;
    }
    for (size_t i = 0; i < json_array_size(want); i++)
      if (!matches(json_array_get(want, i), json_array_get(got, i), where, size)) {
        size_t n = strlen(where);
        snprintf(where + n, size - n, " <- [%zu]", i);
        return false;
      }
    return true;
  }
  return json_equal(want, got);
}

static void expect_matches(const json_t *got, const char *want_text) {
  json_t *want = load(want_text);
  char where[512] = "";
  if (!matches(want, got, where, sizeof where)) {
    char *g = json_dumps(got, JSON_COMPACT);
    print_error("mismatch at %s\nwant: %s\ngot:  %s\n", where, want_text, g);
    free(g);
    json_decref(want);
    fail();
  }
  json_decref(want);
}

/* The messages of plan_validate as one "|"-joined string, for exact comparison. */
static char *messages(const json_t *plan, const json_t *r, const json_t *t) {
  json_t *errors = plan_validate(plan, r, t);
  size_t n = 1;
  for (size_t i = 0; i < json_array_size(errors); i++)
    n += strlen(json_string_value(json_object_get(json_array_get(errors, i), "message"))) + 1;
  char *out = calloc(1, n);
  for (size_t i = 0; i < json_array_size(errors); i++) {
    if (i)
      strcat(out, "|");
    strcat(out, json_string_value(json_object_get(json_array_get(errors, i), "message")));
  }
  json_decref(errors);
  return out;
}

static void expect_messages(const json_t *plan, const char *want) {
  json_t *r = roles(), *t = tools();
  char *got = messages(plan, r, t);
  assert_string_equal(got, want);
  free(got);
  json_decref(r);
  json_decref(t);
}

static void expect_text_messages(const char *text, const char *want) {
  json_t *plan = parse_ok(text);
  expect_messages(plan, want);
  json_decref(plan);
}

/* ---- the parse table ---------------------------------------------------- */

typedef struct {
  const char *name;
  const char *text;
  const char *want; /* JSON the result must match (see matches) */
} parse_case_t;

#define PLAN(body) "[PLAN]\n" body "[/PLAN]"
#define ONE_STEP(fields) PLAN("## Workflow: W\n### Step 1: Do it\n" fields)

static const parse_case_t parse_cases[] = {
    {"seed_exact_example", SEED_PLAN,
     "{\"title\": \"Implement and Test Feature\", \"stated\": {\"seconds\": 195, \"cost\": 0.06}, \"steps\": ["
     "{\"number\": 1, \"title\": \"Research best practices\", \"agent\": \"researcher\", \"tool\": \"execute_bash\","
     " \"arguments\": {\"command\": \"grep -r 'pattern' ./docs\"}, \"dependencies\": [], \"estimated_seconds\": 30},"
     "{\"number\": 2, \"title\": \"Implement feature\", \"agent\": \"implementer\", \"tool\": \"write_file_tool\","
     " \"arguments\": {\"path\": \"./feature.py\", \"content\": \"...\"}, \"dependencies\": [1],"
     " \"estimated_seconds\": 120},"
     "{\"number\": 3, \"title\": \"Test implementation\", \"agent\": \"tester\", \"tool\": \"execute_bash\","
     " \"arguments\": {\"command\": \"pytest ./tests/test_feature.py\"}, \"dependencies\": [2],"
     " \"estimated_seconds\": 45}]}"},
    {"agent_step_without_tool",
     PLAN("## Workflow: W\n### Step 1: Find the helpers\n- Agent: researcher\n- Dependencies: none\n"
          "- Estimated Time: 30s\n### Step 2: Add token expiry using what Step 1 found\n- Agent: implementer\n"
          "- Dependencies: Step 1\n- Estimated Time: 120s\n"),
     "{\"steps\": [{\"tool\": null, \"arguments\": null}, {\"number\": 2, \"tool\": null, \"arguments\": null,"
     " \"title\": \"Add token expiry using what Step 1 found\", \"dependencies\": [1]}]}"},
    {"fields_star_bullets_lowercase", ONE_STEP("* agent: tester\n* tool: read_file\n* arguments: {\"path\": \"a\"}\n"),
     "{\"steps\": [{\"agent\": \"tester\", \"tool\": \"read_file\", \"arguments\": {\"path\": \"a\"}}]}"},
    {"fields_dash_separator", ONE_STEP("Agent - tester\nTool - read_file\nEstimated Time - 2m\n"),
     "{\"steps\": [{\"agent\": \"tester\", \"tool\": \"read_file\", \"estimated_seconds\": 120}]}"},
    {"fields_bold_labels", ONE_STEP("- **Agent:** Tester\n- **Tool**: `read_file`\n- **Estimated Time:** ~45s\n"),
     "{\"steps\": [{\"agent\": \"tester\", \"tool\": \"read_file\", \"estimated_seconds\": 45}]}"},
    {"fields_upper_case_and_spacing", ONE_STEP("  -   AGENT :   IMPLEMENTER  \n  -  TOOL:EXECUTE_BASH\n"),
     "{\"steps\": [{\"agent\": \"implementer\", \"tool\": \"execute_bash\"}]}"},
    {"step_header_dash", PLAN("### Step 1 - Look around\n- Agent: researcher\n"),
     "{\"steps\": [{\"number\": 1, \"title\": \"Look around\"}]}"},
    {"step_header_dot", PLAN("### Step 1. Look around\n- Agent: researcher\n"),
     "{\"steps\": [{\"number\": 1, \"title\": \"Look around\"}]}"},
    {"step_header_without_hashes",
     PLAN("Step 1: Look around\nAgent: researcher\nStep 2: Then fix\nAgent: implementer\n"),
     "{\"steps\": [{\"number\": 1, \"title\": \"Look around\"}, {\"number\": 2, \"agent\": \"implementer\"}]}"},
    {"step_header_two_hashes_bold", PLAN("## **Step 1: Look around**\n- Agent: researcher\n"),
     "{\"steps\": [{\"number\": 1, \"title\": \"Look around\", \"agent\": \"researcher\"}]}"},
    {"step_header_numbered_heading", PLAN("### 1. Look around\n- Agent: researcher\n### 2) Fix\n- Agent: tester\n"),
     "{\"steps\": [{\"number\": 1, \"title\": \"Look around\"}, {\"number\": 2, \"title\": \"Fix\"}]}"},
    {"title_workflow_dash", PLAN("# Workflow - Fix the login bug\n### Step 1: a\n- Agent: tester\n"),
     "{\"title\": \"Fix the login bug\"}"},
    {"title_first_heading", PLAN("# Login bug fix\n### Step 1: a\n- Agent: tester\n"),
     "{\"title\": \"Login bug fix\"}"},
    {"title_missing", PLAN("### Step 1: a\n- Agent: tester\n"), "{\"title\": \"Untitled workflow\"}"},
    {"tool_none_words",
     PLAN("### Step 1: a\n- Agent: tester\n- Tool: none\n### Step 2: b\n- Agent: tester\n- Tool: -\n"
          "### Step 3: c\n- Agent: tester\n- Tool: N/A\n### Step 4: d\n- Agent: tester\n- Tool:\n"
          "### Step 5: e\n- Agent: tester\n- Tool: None (agent step)\n"),
     "{\"steps\": [{\"tool\": null}, {\"tool\": null}, {\"tool\": null}, {\"tool\": null}, {\"tool\": null}]}"},
    {"tool_in_backticks_with_call", ONE_STEP("- Agent: tester\n- Tool: `execute_bash()`\n"),
     "{\"steps\": [{\"tool\": \"execute_bash\"}]}"},
    {"arguments_in_backticks",
     ONE_STEP("- Agent: tester\n- Tool: execute_bash\n- Arguments: `{\"command\": \"ls\"}`\n"),
     "{\"steps\": [{\"arguments\": {\"command\": \"ls\"}}]}"},
    {"arguments_json_fence",
     ONE_STEP("- Agent: tester\n- Tool: write_file_tool\n- Arguments:\n  ```json\n  {\n    \"path\": \"a.py\",\n"
              "    \"content\": \"x = 1\\n\"\n  }\n  ```\n- Dependencies: none\n- Estimated Time: 10s\n"),
     "{\"steps\": [{\"arguments\": {\"path\": \"a.py\", \"content\": \"x = 1\\n\"}, \"dependencies\": [],"
     " \"estimated_seconds\": 10}]}"},
    {"arguments_fence_on_label_line",
     ONE_STEP(
         "- Agent: tester\n- Tool: read_file\n- Arguments: ```json\n{\"path\": \"a\"}\n```\n- Estimated Time: 5s\n"),
     "{\"steps\": [{\"arguments\": {\"path\": \"a\"}, \"estimated_seconds\": 5}]}"},
    {"arguments_running_over_lines",
     ONE_STEP("- Agent: tester\n- Tool: write_file_tool\n- Arguments: {\"path\": \"a.py\",\n   \"content\": "
              "\"def f():\n    return 1\"}\n- Dependencies: none\n"),
     "{\"steps\": [{\"arguments\": {\"path\": \"a.py\", \"content\": \"def f():\\n    return 1\"},"
     " \"dependencies\": []}]}"},
    {"arguments_none_and_empty",
     PLAN("### Step 1: a\n- Agent: tester\n- Tool: execute_bash\n- Arguments: none\n"
          "### Step 2: b\n- Agent: tester\n- Tool: execute_bash\n- Arguments: {}\n"),
     "{\"steps\": [{\"arguments\": null}, {\"arguments\": {}}]}"},
    {"arguments_invalid_kept_as_text",
     ONE_STEP("- Agent: tester\n- Tool: execute_bash\n- Arguments: {command: ls}\n- Estimated Time: 5s\n"),
     "{\"steps\": [{\"arguments\": null, \"arguments_text\": \"{command: ls}\", \"estimated_seconds\": 5}]}"},
    {"arguments_trailing_comma_and_single_quotes",
     PLAN("### Step 1: a\n- Agent: tester\n- Tool: execute_bash\n- Arguments: {\"command\": \"ls\",}\n"
          "### Step 2: b\n- Agent: tester\n- Tool: read_file\n- Arguments: {'path': 'a.py'}\n"),
     "{\"steps\": [{\"arguments\": {\"command\": \"ls\"}}, {\"arguments\": {\"path\": \"a.py\"}}]}"},
    {"arguments_unclosed_stops_at_next_field",
     ONE_STEP("- Agent: tester\n- Tool: execute_bash\n- Arguments: {\"command\": \"echo }\n- Dependencies: none\n"
              "- Estimated Time: 7s\n"),
     "{\"steps\": [{\"arguments\": null, \"arguments_text\": \"{\\\"command\\\": \\\"echo }\","
     " \"dependencies\": [], \"estimated_seconds\": 7}]}"},
    {"dependencies_forms",
     PLAN("### Step 1: a\n- Agent: tester\n- Dependencies: None\n### Step 2: b\n- Agent: tester\n- Dependencies: -\n"
          "### Step 3: c\n- Agent: tester\n- Dependencies: Step 1, Step 2\n### Step 4: d\n- Agent: tester\n"
          "- Dependencies: 1, 3\n### Step 5: e\n- Agent: tester\n- Dependencies: Steps 1 and 3\n"
          "### Step 6: f\n- Agent: tester\n- Dependencies: step 2\n### Step 7: g\n- Agent: tester\n"
          "- Dependencies: Steps 1-3\n### Step 8: h\n- Agent: tester\n- Dependencies: Step 7 (needs 2 files)\n"),
     "{\"steps\": [{\"dependencies\": []}, {\"dependencies\": []}, {\"dependencies\": [1, 2]},"
     " {\"dependencies\": [1, 3]}, {\"dependencies\": [1, 3]}, {\"dependencies\": [2]},"
     " {\"dependencies\": [1, 2, 3]}, {\"dependencies\": [7]}]}"},
    {"dependencies_none_with_prose",
     PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: tester\n"
          "- Dependencies: None (runs alongside Step 1)\n"),
     "{\"steps\": [{\"dependencies\": []}, {\"dependencies\": []}]}"},
    {"dependencies_as_list",
     PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n### Step 3: c\n- Agent: tester\n- Dependencies:\n"
          "  - Step 1\n  - Step 2\n- Estimated Time: 5s\n"),
     "{\"steps\": [{}, {}, {\"dependencies\": [1, 2], \"estimated_seconds\": 5}]}"},
    {"estimate_forms",
     PLAN("### Step 1: a\n- Estimated Time: 2m 30s\n### Step 2: b\n- Estimated Time: 90 seconds\n"
          "### Step 3: c\n- Estimated Time: 1.5 min\n### Step 4: d\n- Estimated Time: 1h 5m\n"
          "### Step 5: e\n- Estimated Time: 45\n### Step 6: f\n- Estimated Time: ~30s\n"
          "### Step 7: g\n- Estimated Time: 30-60s\n### Step 8: h\n- Time: 1s\n"),
     "{\"steps\": [{\"estimated_seconds\": 150}, {\"estimated_seconds\": 90}, {\"estimated_seconds\": 90},"
     " {\"estimated_seconds\": 3900}, {\"estimated_seconds\": 45}, {\"estimated_seconds\": 30},"
     " {\"estimated_seconds\": 60}, {\"estimated_seconds\": 1}]}"},
    {"estimate_missing_defaults",
     PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: tester\n- Estimated Time: soon\n"
          "### Step 3: c\n- Estimated Time: 5s\n"),
     "{\"steps\": [{\"estimated_seconds\": 60, \"estimated_seconds_default\": true},"
     " {\"estimated_seconds\": 60, \"estimated_seconds_default\": true},"
     " {\"estimated_seconds\": 5, \"estimated_seconds_default\": null}]}"},
    {"totals_variants",
     PLAN("### Step 1: a\n- Agent: tester\n\n**Total Estimated Time:** 3 minutes\n**Estimated Cost:** ~$0.05-0.08\n"),
     "{\"stated\": {\"seconds\": 180, \"cost\": 0.08}, \"steps\": [{\"description\": null}]}"},
    {"totals_missing", PLAN("### Step 1: a\n- Agent: tester\n"), "{\"stated\": {\"seconds\": null, \"cost\": null}}"},
    {"unclosed_block_at_end", "Here is my plan.\n[PLAN]\n## Workflow: W\n### Step 1: a\n- Agent: tester\n",
     "{\"title\": \"W\", \"steps\": [{\"agent\": \"tester\"}]}"},
    {"several_plans_last_wins",
     PLAN("## Workflow: First\n### Step 1: a\n- Agent: tester\n") "\nOn second thought:\n" PLAN(
         "## Workflow: Second\n### Step 1: b\n- Agent: reviewer\n"),
     "{\"title\": \"Second\", \"steps\": [{\"agent\": \"reviewer\"}]}"},
    {"tag_in_prose_after_block",
     PLAN("## Workflow: Real\n### Step 1: a\n- Agent: tester\n") "\nApprove the [PLAN] above to start.",
     "{\"title\": \"Real\"}"},
    {"text_around_ignored",
     "I looked at the repo.\n- Agent: nobody\n[plan]\n## Workflow: W\nSome words first.\n### Step 1: a\n"
     "- Agent: tester\n[/plan]\n### Step 2: not in the plan\n- Agent: reviewer\n",
     "{\"title\": \"W\", \"steps\": [{\"agent\": \"tester\"}]}"},
    {"description_lines",
     ONE_STEP("- Agent: implementer\nAdd expiry to tokens in src/auth.py.\nKeep the public API.\n"
              "- Files: src/auth.py\n- Estimated Time: 2m\n"),
     "{\"steps\": [{\"description\": \"Add expiry to tokens in src/auth.py.\\nKeep the public API.\\n"
     "Files: src/auth.py\", \"estimated_seconds\": 120}]}"},
    {"empty_step_title_from_description", PLAN("### Step 1:\nRun the linter on src/\n- Agent: tester\n"),
     "{\"steps\": [{\"title\": \"Run the linter on src/\"}]}"},
    {"plan_in_fence_with_crlf",
     "```\r\n[PLAN]\r\n## Workflow: W\r\n### Step 1: a\r\n- Agent: tester\r\n- Tool: read_file\r\n"
     "- Arguments: {\"path\": \"x\"}\r\n- Estimated Time: 3s\r\n[/PLAN]\r\n```\r\n",
     "{\"title\": \"W\", \"steps\": [{\"tool\": \"read_file\", \"arguments\": {\"path\": \"x\"}, "
     "\"estimated_seconds\": 3}]}"},
    {"notes_heading_ends_step", PLAN("### Step 1: a\n- Agent: tester\n### Notes\nThis plan assumes Python 3.11.\n"),
     "{\"steps\": [{\"description\": null}]}"},
    {"sloppy_model_output",
     "Sure! Here's how I'd approach it:\n\n**[PLAN]**\n# Workflow Plan: Add rate limiting\n\n"
     "**Step 1 - Survey the middleware**\n  * **Agent**: Researcher\n  * **Tool**: None\n"
     "  * **Depends on**: —\n  * **Estimated time**: about 2 minutes\n\n"
     "**Step 2: Write the limiter**\n  * Agent: implementer (small model)\n  * Tool: `write_file_tool`\n"
     "  * Arguments: `{\"path\": \"src/limit.py\", \"content\": \"# TODO\"}`\n  * Dependencies: step 1.\n"
     "  * Estimated time: 3m\n\n"
     "**Step 3: Run the tests**\n  * Agent: TESTER\n  * Tool: execute_bash\n"
     "  * Arguments: {\"command\": \"pytest -q\"}\n  * Dependencies: Steps 1 & 2\n  * Estimated time: 40 sec\n\n"
     "Total estimated time: ~5m 40s\nCost estimate: about $0.04\n[/PLAN]\n\nShall I go ahead?",
     "{\"title\": \"Add rate limiting\", \"stated\": {\"seconds\": 340, \"cost\": 0.04}, \"steps\": ["
     "{\"number\": 1, \"title\": \"Survey the middleware\", \"agent\": \"researcher\", \"tool\": null,"
     " \"dependencies\": [], \"estimated_seconds\": 120},"
     "{\"number\": 2, \"agent\": \"implementer\", \"tool\": \"write_file_tool\","
     " \"arguments\": {\"path\": \"src/limit.py\", \"content\": \"# TODO\"}, \"dependencies\": [1],"
     " \"estimated_seconds\": 180},"
     "{\"number\": 3, \"agent\": \"tester\", \"arguments\": {\"command\": \"pytest -q\"}, \"dependencies\": [1, 2],"
     " \"estimated_seconds\": 40}]}"},
    {"invalid_utf8_replaced",
     PLAN("## Workflow: Caf\xc3\xa9 \xff fix\n### Step 1: Bad \xc3 byte\n- Agent: tester\n"
          "- Tool: execute_bash\n- Arguments: {\"command\": \"echo \xfe\"}\n"),
     "{\"title\": \"Caf\xc3\xa9 ? fix\", \"steps\": [{\"title\": \"Bad ? byte\","
     " \"arguments\": {\"command\": \"echo ?\"}}]}"},
};

static void test_parse_case(void **state) {
  const parse_case_t *c = *state;
  json_t *plan = parse_ok(c->text);
  expect_matches(plan, c->want);
  json_decref(plan);
}

/* ---- parsing: the rest -------------------------------------------------- */

static void test_parse_no_block(void **state) {
  (void)state;
  char err[128] = "x";
  assert_null(plan_parse("Just an answer, no plan here.", err, sizeof err));
  assert_string_equal(err, "");
  assert_null(plan_parse("", err, sizeof err));
  assert_null(plan_parse(NULL, err, sizeof err));
  assert_null(plan_parse("no plan", NULL, 0));
}

static void test_parse_block_without_steps(void **state) {
  (void)state;
  char err[128] = "";
  assert_null(plan_parse("[PLAN]\n## Workflow: Nothing yet\nI will think about it.\n[/PLAN]", err, sizeof err));
  assert_string_equal(err, "the [PLAN] block has no steps (expected \"### Step 1: title\" lines)");
  char tiny[8];
  assert_null(plan_parse("[PLAN][/PLAN]", tiny, sizeof tiny));
  assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

static void test_parse_prompt_example(void **state) {
  (void)state;
  FILE *f = fopen(CADRE_SOURCE_ROOT "/prompts/main_prompt.txt", "r");
  if (!f)
    skip();
  static char text[64 * 1024];
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  json_t *plan = parse_ok(text);
  expect_matches(plan, "{\"title\": \"Implement and Test Feature\", \"stated\": {\"seconds\": 195, \"cost\": 0.06},"
                       " \"steps\": [{\"tool\": \"execute_bash\"}, {\"tool\": null, \"arguments\": null,"
                       " \"dependencies\": [1]}, {\"dependencies\": [2]}]}");
  expect_messages(plan, "");
  json_decref(plan);
}

/* Appends printf output to a growing heap string. */
static char *append(char *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *more = NULL;
  assert_true(vasprintf(&more, fmt, ap) >= 0);
  va_end(ap);
  size_t a = s ? strlen(s) : 0, b = strlen(more);
  s = realloc(s, a + b + 1);
  memcpy(s + a, more, b + 1);
  free(more);
  return s;
}

static void test_parse_caps(void **state) {
  (void)state;
  char *text = append(NULL, "[PLAN]\n## Workflow: ");
  for (int i = 0; i < 700; i++)
    text = append(text, "\xc3\xa9"); /* 700 characters, 1400 bytes */
  text = append(text, "\n");
  for (int i = 1; i <= 150; i++)
    text = append(text, "### Step %d: s\n- Agent: tester\n", i);
  text = append(text, "[/PLAN]");
  json_t *plan = parse_ok(text);
  assert_int_equal(json_array_size(json_object_get(plan, "steps")), 100);
  assert_true(json_is_true(json_object_get(plan, "truncated")));
  assert_int_equal(json_string_length(json_object_get(plan, "title")), 1000); /* 500 two-byte characters */
  json_t *r = roles(), *t = tools();
  char *m = messages(plan, r, t);
  assert_string_equal(m, "the plan has more than 100 steps");
  free(m);
  json_decref(plan);
  free(text);

  text = append(NULL, "[PLAN]\n### Step 1: big\n- Agent: tester\n- Tool: execute_bash\n- Arguments: {\"command\": \"");
  char *xs = malloc(70001);
  memset(xs, 'x', 70000);
  xs[70000] = '\0';
  text = append(text, "%s\"}\n- Estimated Time: 5s\n[/PLAN]", xs);
  free(xs);
  plan = parse_ok(text);
  const json_t *st = json_array_get(json_object_get(plan, "steps"), 0);
  assert_true(json_is_true(json_object_get(st, "arguments_truncated")));
  assert_true(json_string_length(json_object_get(st, "arguments_text")) <= 64 * 1024);
  assert_int_equal(json_integer_value(json_object_get(st, "estimated_seconds")), 5);
  m = messages(plan, r, t);
  assert_string_equal(m, "Step 1: arguments are longer than 65536 bytes");
  free(m);
  json_decref(plan);
  free(text);
  json_decref(r);
  json_decref(t);
}

/* ---- durations ---------------------------------------------------------- */

static void test_durations(void **state) {
  (void)state;
  static const struct {
    const char *text;
    double secs;
  } rows[] = {{"30s", 30},
              {"2m 30s", 150},
              {"2m30s", 150},
              {"90 seconds", 90},
              {"1.5 min", 90},
              {"1h", 3600},
              {"1h 5m", 3900},
              {"45", 45},
              {"~30s", 30},
              {"30-60s", 60},
              {"1-2 min", 120},
              {"1 to 2 minutes", 120},
              {"30 \xe2\x80\x93 45 sec", 45},
              {"about 2 minutes", 120},
              {"2 hours", 7200},
              {"1:30", 90},
              {"1:02:03", 3723},
              {"195s (3m 15s)", 195},
              {"30s per file", 30},
              {"0", 0},
              {"3 min, 20 s", 200},
              {"1 hour and 5 minutes", 3900},
              {"500ms", 0.5},
              {".5m", 30},
              {"", -1},
              {"none", -1},
              {"N/A", -1},
              {"soon", -1},
              {"30 tokens", -1},
              {"99999999999999999999s", -1},
              {"-", -1}};
  for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
    double got = plan_parse_duration(rows[i].text);
    if (fabs(got - rows[i].secs) > 1e-9)
      fail_msg("plan_parse_duration(\"%s\") = %g, want %g", rows[i].text, got, rows[i].secs);
  }
  assert_true(plan_parse_duration(NULL) == -1);
}

/* ---- validation --------------------------------------------------------- */

static void test_validate_seed_is_valid(void **state) {
  (void)state;
  expect_text_messages(SEED_PLAN, "");
}

static void test_validate_missing_dependency(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: tester\n"
                            "### Step 3: c\n- Agent: tester\n- Dependencies: Step 1, Step 7\n"),
                       "Step 3: depends on Step 7, which does not exist");
}

static void test_validate_unknown_role(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: designer\n"),
                       "Step 2: unknown agent role \"designer\" (known: researcher, implementer, tester, reviewer, "
                       "optimizer)");
  expect_text_messages(PLAN("### Step 1: a\n- Tool: read_file\n- Arguments: {\"path\": \"a\"}\n"),
                       "Step 1: no agent role given (known: researcher, implementer, tester, reviewer, optimizer)");
}

static void test_validate_main_role_when_configured(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("### Step 1: Decide the design\n- Agent: main\n"));
  json_t *r = json_pack("[ss]", "main", "tester"), *t = tools();
  char *m = messages(plan, r, t);
  assert_string_equal(m, "");
  free(m);
  json_decref(r);
  expect_messages(plan, "Step 1: unknown agent role \"main\" (known: researcher, implementer, tester, reviewer, "
                        "optimizer)");
  json_decref(plan);
  json_decref(t);
}

static void test_validate_unknown_tool(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 4: a\n- Agent: tester\n- Tool: run_tests\n- Arguments: {}\n"),
                       "Step 4: unknown tool \"run_tests\" (known: execute_bash, read_file, write_file_tool, "
                       "edit_file)");
}

static void test_validate_invalid_json(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: tester\n- Tool: execute_bash\n"
                            "- Arguments: {\"command\" \"ls\"}\n"),
                       "Step 2: arguments are not valid JSON: ':' expected near '\"ls\"'");
  expect_text_messages(PLAN("### Step 2: b\n- Agent: tester\n- Tool: execute_bash\n- Arguments: run ls\n"),
                       "Step 2: arguments are not valid JSON: invalid token near 'run'");
  expect_text_messages(PLAN("### Step 2: b\n- Agent: tester\n- Tool: execute_bash\n- Arguments: [\"ls\"]\n"),
                       "Step 2: arguments are not a JSON object");
}

static void test_validate_required_field(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: implementer\n"
                            "- Tool: write_file_tool\n- Arguments: {\"path\": \"a.py\"}\n"),
                       "Step 2: write_file_tool needs \"content\"");
  expect_text_messages(PLAN("### Step 1: b\n- Agent: implementer\n- Tool: edit_file\n- Arguments: none\n"),
                       "Step 1: edit_file needs \"path\"|Step 1: edit_file needs \"old_text\"|"
                       "Step 1: edit_file needs \"new_text\"");
}

static void test_validate_agent_step_needs_no_arguments(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 1: Review src/auth.py for token handling\n- Agent: reviewer\n"), "");
}

static void test_validate_cycle_of_two(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 1: a\n- Agent: tester\n### Step 2: b\n- Agent: tester\n- Dependencies: 1, 3\n"
                            "### Step 3: c\n- Agent: tester\n- Dependencies: Step 2\n"),
                       "dependency cycle: Step 2 -> Step 3 -> Step 2");
}

static void test_validate_cycle_of_three(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("### Step 1: a\n- Agent: tester\n- Dependencies: Step 3\n"
                               "### Step 2: b\n- Agent: tester\n- Dependencies: Step 1\n"
                               "### Step 3: c\n- Agent: tester\n- Dependencies: Step 2\n"
                               "### Step 4: d\n- Agent: tester\n- Dependencies: Step 3\n"));
  json_t *r = roles(), *t = tools(), *errors = plan_validate(plan, r, t);
  expect_matches(errors, "[{\"step\": 1, \"message\": \"dependency cycle: Step 1 -> Step 2 -> Step 3 -> Step 1\"}]");
  json_decref(errors);
  json_decref(plan);
  json_decref(r);
  json_decref(t);
}

static void test_validate_self_dependency(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 4: a\n- Agent: tester\n### Step 5: b\n- Agent: tester\n"
                            "- Dependencies: Step 4, Step 5\n"),
                       "Step 5: depends on itself");
}

static void test_validate_duplicate_numbers(void **state) {
  (void)state;
  expect_text_messages(PLAN("### Step 3: a\n- Agent: tester\n### Step 3: b\n- Agent: tester\n"),
                       "two steps are numbered 3");
}

static void test_validate_no_steps(void **state) {
  (void)state;
  json_t *plan = load("{\"title\": \"t\", \"steps\": []}");
  expect_messages(plan, "the plan has no steps");
  json_decref(plan);
  json_t *junk = load("[1, 2]");
  expect_messages(junk, "the plan has no steps");
  json_decref(junk);
}

static void test_validate_errors_name_steps(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("### Step 1: a\n- Agent: designer\n- Tool: run_tests\n- Dependencies: Step 9\n"
                               "### Step 2: b\n- Agent: tester\n- Dependencies: Step 2\n"));
  json_t *r = roles(), *t = tools(), *errors = plan_validate(plan, r, t);
  expect_matches(errors, "[{\"step\": 1, \"message\": \"Step 1: depends on Step 9, which does not exist\"},"
                         " {\"step\": 1}, {\"step\": 1}, {\"step\": 2, \"message\": \"Step 2: depends on itself\"}]");
  json_decref(errors);
  json_decref(plan);
  json_decref(r);
  json_decref(t);
}

static void test_validate_without_lists(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("### Step 1: a\n- Agent: designer\n- Tool: run_tests\n- Dependencies: Step 1\n"));
  char *m = messages(plan, NULL, NULL); /* no roles or tools given: only the structure is checked */
  assert_string_equal(m, "Step 1: depends on itself");
  free(m);
  json_decref(plan);
}

/* ---- order and critical path -------------------------------------------- */

static const char DIAMOND[] = "{\"title\": \"d\", \"steps\": ["
                              "{\"number\": 1, \"dependencies\": [], \"estimated_seconds\": 10},"
                              "{\"number\": 2, \"dependencies\": [1], \"estimated_seconds\": 20},"
                              "{\"number\": 3, \"dependencies\": [1], \"estimated_seconds\": 50},"
                              "{\"number\": 4, \"dependencies\": [2, 3], \"estimated_seconds\": 5}]}";

static void test_order_parallel_branches(void **state) {
  (void)state;
  json_t *plan = load(DIAMOND), *order = plan_order(plan);
  expect_matches(order, "[1, 2, 3, 4]");
  json_decref(order);
  json_decref(plan);
}

static void test_order_lowest_ready_first(void **state) {
  (void)state;
  json_t *plan = load("{\"steps\": [{\"number\": 3, \"dependencies\": []}, {\"number\": 1, \"dependencies\": [2]},"
                      " {\"number\": 2, \"dependencies\": []}, {\"number\": 4, \"dependencies\": [9]}]}");
  json_t *order = plan_order(plan);
  expect_matches(order, "[2, 1, 3, 4]"); /* a missing dependency does not hold a step back */
  json_decref(order);
  json_decref(plan);
}

static void test_order_cycle_is_null(void **state) {
  (void)state;
  json_t *plan = load("{\"steps\": [{\"number\": 1, \"dependencies\": [2]}, {\"number\": 2, \"dependencies\": [1]},"
                      " {\"number\": 3, \"dependencies\": []}]}");
  assert_null(plan_order(plan));
  assert_true(plan_critical_seconds(plan) == -1);
  json_decref(plan);
  plan = load("{\"steps\": [{\"number\": 1, \"dependencies\": [1]}]}");
  assert_null(plan_order(plan));
  json_decref(plan);
}

static void test_critical_path_diamond(void **state) {
  (void)state;
  json_t *plan = load(DIAMOND);
  assert_true(fabs(plan_critical_seconds(plan) - 65) < 1e-9);
  json_decref(plan);
  plan = parse_ok(SEED_PLAN);
  assert_true(fabs(plan_critical_seconds(plan) - 195) < 1e-9); /* a chain: the sum */
  json_decref(plan);
  plan = load("{\"steps\": []}");
  assert_true(plan_critical_seconds(plan) == 0);
  json_decref(plan);
}

/* ---- edits -------------------------------------------------------------- */

static json_t *edit_ok(const json_t *plan, const char *edit_text) {
  char err[256] = "";
  json_t *edit = load(edit_text), *out = plan_edit(plan, edit, err, sizeof err);
  if (!out)
    fail_msg("plan_edit(%s) failed: %s", edit_text, err);
  json_decref(edit);
  return out;
}

static void expect_edit_error(const json_t *plan, const char *edit_text, const char *want) {
  char err[256] = "";
  json_t *edit = load(edit_text);
  assert_null(plan_edit(plan, edit, err, sizeof err));
  assert_string_equal(err, want);
  json_decref(edit);
}

static void test_edit_set_agent(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN), *before = json_deep_copy(plan);
  json_t *out = edit_ok(plan, "{\"op\": \"set_agent\", \"step\": 2, \"agent\": \"Reviewer\"}");
  expect_matches(out, "{\"steps\": [{\"agent\": \"researcher\"}, {\"agent\": \"reviewer\"}, {\"agent\": \"tester\"}]}");
  assert_true(json_equal(plan, before)); /* the input is not changed */
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_agent\", \"step\": 2, \"agent\": \"designer\"}");
  expect_messages(out, "Step 2: unknown agent role \"designer\" (known: researcher, implementer, tester, reviewer, "
                       "optimizer)");
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"set_agent\", \"step\": 2, \"agent\": \"  \"}", "\"agent\" must be a role name");
  json_decref(before);
  json_decref(plan);
}

static void test_edit_set_profile(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  json_t *out =
      edit_ok(plan, "{\"op\": \"set_profile\", \"step\": 2, \"profile\": \" Big_Coder \", \"role\": \"Implementer\"}");
  expect_matches(out, "{\"steps\": [{}, {\"agent\": \"implementer\", \"profile\": \"Big_Coder\"}, {}]}");
  json_t *back = edit_ok(out, "{\"op\": \"set_profile\", \"step\": 2, \"profile\": \"default\"}");
  assert_null(json_object_get(json_array_get(json_object_get(back, "steps"), 1), "profile"));
  json_decref(back);
  back = edit_ok(out, "{\"op\": \"set_agent\", \"step\": 2, \"agent\": \"tester\"}"); /* a new role: its own profile */
  assert_null(json_object_get(json_array_get(json_object_get(back, "steps"), 1), "profile"));
  json_decref(back);
  back = edit_ok(out, "{\"op\": \"set_profile\", \"step\": 2, \"profile\": null}");
  assert_null(json_object_get(json_array_get(json_object_get(back, "steps"), 1), "profile"));
  json_decref(back);
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"set_profile\", \"step\": 2, \"profile\": 7}",
                    "\"profile\" must be a profile name, or null for the role's own");
  expect_edit_error(plan, "{\"op\": \"set_profile\", \"step\": 9, \"profile\": \"big\"}", "Step 9 does not exist");
  json_decref(plan);
  plan =
      parse_ok("[PLAN]\n### Step 1: Hard part\n- Agent: implementer\n- Profile: **Big_Coder**\n- Estimated Time: 60s\n"
               "[/PLAN]\n");
  expect_matches(plan, "{\"steps\": [{\"agent\": \"implementer\", \"profile\": \"Big_Coder\"}]}");
  char *text = plan_format(plan, NULL);
  assert_non_null(strstr(text, "   1. Hard part (implementer on Big_Coder, 60s)"));
  free(text);
  json_decref(plan);
}

/* ---- estimates on profiles: table ------------------------------------------ */

/* name, role, model, $/1M in, $/1M out, tokens per second */
static cadre_profile_t est_profiles[] = {
    {.name = "main_agent",
     .role = "main",
     .model = "m-main",
     .cost_per_1m_input = 10,
     .cost_per_1m_output = 30,
     .tokens_per_second = 20},
    {.name = "researcher_agent",
     .role = "researcher",
     .model = "m-small",
     .cost_per_1m_input = 0.1,
     .cost_per_1m_output = 0.4,
     .tokens_per_second = 100},
    {.name = "big",
     .role = "researcher",
     .model = "m-large",
     .cost_per_1m_input = 2,
     .cost_per_1m_output = 8,
     .tokens_per_second = 25},
    {.name = "coder", .role = "implementer", .model = "m-code", .cost_per_1m_input = 0.5, .cost_per_1m_output = 1.5},
    {.name = "fast_coder",
     .role = "implementer",
     .model = "m-fast",
     .cost_per_1m_input = 1,
     .cost_per_1m_output = 2,
     .tokens_per_second = 200},
};

static const struct {
  const char *name;
  const char *plan;  /* JSON */
  double seconds;    /* the critical path */
  double cost;       /* USD */
  long long tokens;  /* in all */
  const char *steps; /* each step: "profile seconds cost;" ("-" for no profile) */
} estimate_cases[] = {
    {"the role's first profile", "[{\"number\":1,\"agent\":\"researcher\",\"estimated_seconds\":30}]", 30,
     (4000 * 0.1 + 1000 * 0.4) / 1e6, 5000, "researcher_agent 30 0.000800;"},
    {"a slower profile takes longer, at its prices",
     "[{\"number\":1,\"agent\":\"researcher\",\"profile\":\"big\",\"estimated_seconds\":30}]", 120,
     (4000 * 2 + 1000 * 8) / 1e6, 5000, "big 120 0.016000;"},
    {"an unknown speed keeps the planned time",
     "[{\"number\":1,\"agent\":\"implementer\",\"profile\":\"fast_coder\",\"estimated_seconds\":50}]", 50,
     (4000 * 1 + 1000 * 2) / 1e6, 5000, "fast_coder 50 0.006000;"},
    {"a tool step calls no model",
     "[{\"number\":1,\"agent\":\"tester\",\"tool\":\"execute_bash\",\"profile\":\"big\",\"estimated_seconds\":45}]", 45,
     0, 0, "- 45 0.000000;"},
    {"an unknown profile costs nothing (the checker refuses it)",
     "[{\"number\":1,\"agent\":\"researcher\",\"profile\":\"nope\",\"estimated_seconds\":10}]", 10, 0, 0,
     "- 10 0.000000;"},
    {"the swapped step lengthens the critical path",
     "[{\"number\":1,\"agent\":\"researcher\",\"estimated_seconds\":30},"
     "{\"number\":2,\"agent\":\"researcher\",\"profile\":\"big\",\"estimated_seconds\":30,\"dependencies\":[1]},"
     "{\"number\":3,\"agent\":\"tester\",\"tool\":\"read_file\",\"estimated_seconds\":100,\"dependencies\":[1]}]",
     150, (4000 * 0.1 + 1000 * 0.4 + 4000 * 2 + 1000 * 8) / 1e6, 10000,
     "researcher_agent 30 0.000800;big 120 0.016000;- 100 0.000000;"},
    {"the role's own profile named: no scaling",
     "[{\"number\":1,\"agent\":\"researcher\",\"profile\":\"researcher_agent\",\"estimated_seconds\":30}]", 30, 0.0008,
     5000, "researcher_agent 30 0.000800;"},
    {"a cycle has no time",
     "[{\"number\":1,\"agent\":\"researcher\",\"dependencies\":[2]},{\"number\":2,\"agent\":\"researcher\","
     "\"dependencies\":[1]}]",
     -1, 0.0016, 10000, "researcher_agent 0 0.000800;researcher_agent 0 0.000800;"},
};

static void test_estimate_cases(void **state) {
  (void)state;
  cadre_config_t config = {.profiles = est_profiles, .n_profiles = ARRAY_LEN(est_profiles)};
  for (size_t i = 0; i < ARRAY_LEN(estimate_cases); i++) {
    json_t *plan = json_pack("{s:o}", "steps", load(estimate_cases[i].plan)), *before = json_deep_copy(plan);
    json_t *e = plan_estimate(plan, &config);
    char steps[512] = "";
    size_t k;
    json_t *st;
    json_array_foreach(json_object_get(e, "steps"), k, st) {
      const char *p = json_string_value(json_object_get(st, "profile"));
      snprintf(steps + strlen(steps), sizeof steps - strlen(steps), "%s %.0f %.6f;", p ? p : "-",
               json_number_value(json_object_get(st, "seconds")), json_number_value(json_object_get(st, "cost")));
    }
    double secs = json_number_value(json_object_get(e, "seconds")),
           cost = json_number_value(json_object_get(e, "cost"));
    long long tokens = (long long)json_integer_value(json_object_get(e, "tokens"));
    if (fabs(secs - estimate_cases[i].seconds) > 1e-9 || fabs(cost - estimate_cases[i].cost) > 1e-12 ||
        tokens != estimate_cases[i].tokens || strcmp(steps, estimate_cases[i].steps) != 0 || !json_equal(plan, before))
      fail_msg("%s: seconds %g cost %.9f tokens %lld steps \"%s\"; want %g %.9f %lld \"%s\"", estimate_cases[i].name,
               secs, cost, tokens, steps, estimate_cases[i].seconds, estimate_cases[i].cost, estimate_cases[i].tokens,
               estimate_cases[i].steps);
    assert_int_equal(json_integer_value(json_object_get(e, "tokens_per_agent_step")), 5000);
    json_decref(e);
    json_decref(plan);
    json_decref(before);
  }
}

/* The approval screen lists each step's profile, model, tokens, time and cost, and the total. */
static void test_format_estimate_by_step(void **state) {
  (void)state;
  cadre_config_t config = {.profiles = est_profiles, .n_profiles = ARRAY_LEN(est_profiles)};
  json_t *plan = json_pack("{s:s, s:o}", "title", "T", "steps", load(estimate_cases[5].plan));
  json_t *e = plan_estimate(plan, &config);
  char *text = plan_format(plan, e);
  assert_non_null(strstr(text, " Estimate by step (profile, model, tokens, time, cost):\n"));
  assert_non_null(strstr(text, "   1. researcher_agent   m-small                 5000     30s  $0.0008\n"));
  assert_non_null(strstr(text, "   2. big                m-large                 5000    120s  $0.0160\n"));
  assert_non_null(strstr(text, "   3. (tool step)                                   0    100s  $0.0000\n"));
  assert_non_null(strstr(text, "   Total (time: the critical path)              10000  2m 30s  $0.0168\n"));
  assert_non_null(strstr(text, "Estimated Time: 2m 30s (critical path; 4m 10s of work in all)\n"));
  assert_non_null(strstr(text, "(researcher on big, 30s) \xe2\x86\x90 1\n"));
  free(text);
  json_decref(e);
  json_decref(plan);
}

static void test_edit_set_arguments(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  json_t *out = edit_ok(plan, "{\"op\": \"set_arguments\", \"step\": 3, \"arguments\": {\"command\": \"make check\"}}");
  expect_matches(out, "{\"steps\": [{}, {}, {\"arguments\": {\"command\": \"make check\"}}]}");
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_arguments\", \"step\": 3, \"arguments\": \"{\\\"command\\\": \\\"ls\\\"}\"}");
  expect_matches(out, "{\"steps\": [{}, {}, {\"arguments\": {\"command\": \"ls\"}, \"arguments_text\": null}]}");
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_arguments\", \"step\": 3, \"arguments\": \"{oops\"}");
  expect_matches(out, "{\"steps\": [{}, {}, {\"arguments\": null, \"arguments_text\": \"{oops\"}]}");
  expect_messages(out, "Step 3: arguments are not valid JSON: string or '}' expected near 'oops'");
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_arguments\", \"step\": 2, \"arguments\": {\"path\": \"a\"}}");
  expect_messages(out, "Step 2: write_file_tool needs \"content\"");
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"set_arguments\", \"step\": 3, \"arguments\": 5}",
                    "\"arguments\" must be a JSON object, null or JSON text");
  json_decref(plan);
}

static void test_edit_set_tool_and_title(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  json_t *out = edit_ok(plan, "{\"op\": \"set_tool\", \"step\": 1, \"tool\": null}");
  expect_matches(out, "{\"steps\": [{\"tool\": null}, {}, {}]}");
  expect_messages(out, ""); /* now an agent step: arguments no longer checked */
  json_t *out2 = edit_ok(out, "{\"op\": \"set_tool\", \"step\": 1, \"tool\": \"read_file\"}");
  expect_messages(out2, "Step 1: read_file needs \"path\"");
  json_decref(out2);
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_title\", \"step\": 1, \"title\": \"Grep the docs\"}");
  expect_matches(out, "{\"steps\": [{\"title\": \"Grep the docs\"}, {}, {}]}");
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"set_title\", \"step\": 1, \"title\": \"\"}",
                    "\"title\" must be a non-empty string");
  expect_edit_error(plan, "{\"op\": \"set_tool\", \"step\": 1, \"tool\": 3}", "\"tool\" must be a tool name or null");
  json_decref(plan);
}

static void test_edit_replace_with_text(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  /* the inside of a [PLAN] block (as the console's editor may leave it), and a whole block */
  json_t *out = edit_ok(plan, "{\"op\": \"replace\", \"text\": \"## Workflow: Two\\n### Step 1: A\\n- Agent: "
                              "researcher\\n- Dependencies: none\\n### Step 2: B\\n- Agent: tester\\n"
                              "- Dependencies: Step 1\\n\"}");
  expect_matches(out, "{\"title\": \"Two\", \"steps\": [{\"number\": 1, \"title\": \"A\", \"agent\": \"researcher\"}, "
                      "{\"number\": 2, \"agent\": \"tester\", \"dependencies\": [1]}]}");
  assert_int_equal(json_array_size(json_object_get(out, "steps")), 2);
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"replace\", \"text\": \"note\\n[PLAN]\\n### Step 1: Only\\n- Agent: designer\\n"
                      "[/PLAN]\\nafter\"}");
  expect_messages(out, "Step 1: unknown agent role \"designer\" (known: researcher, implementer, tester, reviewer, "
                       "optimizer)");
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"replace\"}", "replace needs \"text\" (the plan as text)");
  char err[256] = "";
  json_t *edit = load("{\"op\": \"replace\", \"text\": \"no steps here\"}");
  assert_null(plan_edit(plan, edit, err, sizeof err));
  assert_true(err[0] != '\0');
  json_decref(edit);
  json_decref(plan);
}

static void test_edit_set_dependencies(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  json_t *out = edit_ok(plan, "{\"op\": \"set_dependencies\", \"step\": 3, \"dependencies\": [1, 2, 1]}");
  expect_matches(out, "{\"steps\": [{}, {}, {\"dependencies\": [1, 2]}]}");
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_dependencies\", \"step\": 3, \"dependencies\": \"Step 1\"}");
  expect_matches(out, "{\"steps\": [{}, {}, {\"dependencies\": [1]}]}");
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_dependencies\", \"step\": 1, \"dependencies\": [3]}");
  expect_messages(out, "dependency cycle: Step 1 -> Step 2 -> Step 3 -> Step 1");
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"set_dependencies\", \"step\": 3, \"dependencies\": [\"one\"]}",
                    "\"dependencies\" must be an array of step numbers");
  json_decref(plan);
}

static void test_edit_set_estimate(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("### Step 1: a\n- Agent: tester\n"));
  json_t *out = edit_ok(plan, "{\"op\": \"set_estimate\", \"step\": 1, \"seconds\": 42}");
  expect_matches(out, "{\"steps\": [{\"estimated_seconds\": 42, \"estimated_seconds_default\": null}]}");
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"set_estimate\", \"step\": 1, \"seconds\": \"2m 30s\"}");
  expect_matches(out, "{\"steps\": [{\"estimated_seconds\": 150}]}");
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"set_estimate\", \"step\": 1, \"seconds\": -5}",
                    "\"seconds\" must be a number of seconds or a duration like \"2m 30s\"");
  json_decref(plan);
}

static void test_edit_remove_step(void **state) {
  (void)state;
  json_t *plan = load(DIAMOND);
  json_t *out = edit_ok(plan, "{\"op\": \"remove_step\", \"step\": 2}");
  expect_matches(out, "{\"steps\": [{\"number\": 1}, {\"number\": 3, \"dependencies\": [1]},"
                      " {\"number\": 4, \"dependencies\": [3]}]}");
  assert_true(fabs(plan_critical_seconds(out) - 65) < 1e-9);
  json_decref(out);
  out = edit_ok(plan, "{\"op\": \"remove_step\", \"step\": 1}");
  expect_matches(out, "{\"steps\": [{\"number\": 2, \"dependencies\": []}, {\"number\": 3, \"dependencies\": []},"
                      " {\"number\": 4, \"dependencies\": [2, 3]}]}");
  json_decref(out);
  json_decref(plan);
}

static void test_edit_add_step(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  json_t *out = edit_ok(plan, "{\"op\": \"add_step\", \"step\": {\"title\": \"Review the change\", \"agent\": "
                              "\"reviewer\", \"dependencies\": [2]}}");
  expect_matches(out, "{\"steps\": [{}, {}, {}, {\"number\": 4, \"title\": \"Review the change\", \"agent\": "
                      "\"reviewer\", \"tool\": null, \"arguments\": null, \"dependencies\": [2],"
                      " \"estimated_seconds\": 60, \"estimated_seconds_default\": true}]}");
  expect_messages(out, "");
  json_t *out2 = edit_ok(out, "{\"op\": \"remove_step\", \"step\": 2}");
  json_t *out3 = edit_ok(out2, "{\"op\": \"add_step\", \"step\": {\"number\": 2, \"title\": \"Lint\", \"agent\": "
                               "\"tester\", \"tool\": \"execute_bash\", \"arguments\": {\"command\": \"ruff .\"},"
                               " \"estimated_seconds\": 12}}");
  expect_matches(out3, "{\"steps\": [{\"number\": 1}, {\"number\": 2, \"title\": \"Lint\", \"estimated_seconds\": 12,"
                       " \"estimated_seconds_default\": null}, {\"number\": 3}, {\"number\": 4}]}");
  json_decref(out3);
  json_decref(out2);
  json_decref(out);
  expect_edit_error(plan, "{\"op\": \"add_step\", \"step\": {\"number\": 3, \"title\": \"x\"}}",
                    "Step 3 already exists");
  expect_edit_error(plan, "{\"op\": \"add_step\", \"step\": {\"agent\": \"tester\"}}",
                    "\"title\" must be a non-empty string");
  expect_edit_error(plan, "{\"op\": \"add_step\"}", "\"step\" must be an object with the new step's fields");
  json_decref(plan);
}

static void test_edit_errors(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  expect_edit_error(plan, "{\"op\": \"set_agent\", \"step\": 9, \"agent\": \"tester\"}", "Step 9 does not exist");
  expect_edit_error(plan, "{\"op\": \"remove_step\", \"step\": 9}", "Step 9 does not exist");
  expect_edit_error(plan, "{\"op\": \"remove_step\"}", "remove_step needs \"step\" (a step number)");
  expect_edit_error(plan, "{\"step\": 1}", "an edit needs \"op\"");
  expect_edit_error(plan, "{\"op\": \"rename\", \"step\": 1}",
                    "unknown edit op \"rename\" (known: set_agent, set_profile, set_arguments, set_tool, "
                    "set_dependencies, set_title, set_estimate, remove_step, add_step)");
  json_t *junk = load("{\"steps\": 3}"), *edit = load("{\"op\": \"remove_step\", \"step\": 1}");
  char err[64];
  assert_null(plan_edit(junk, edit, err, sizeof err));
  assert_string_equal(err, "not a plan (no \"steps\" array)");
  json_decref(junk);
  json_decref(edit);
  json_decref(plan);
}

/* ---- the approval screen ------------------------------------------------ */

#define RULE "======================================================================\n"

static void test_format_seed(void **state) {
  (void)state;
  json_t *plan = parse_ok(SEED_PLAN);
  char *text = plan_format(plan, NULL);
  assert_string_equal(text, RULE "  WORKFLOW PLAN: Implement and Test Feature\n" RULE "\n"
                                 "\xf0\x9f\x93\x8a Summary:\n"
                                 "   Steps: 3\n"
                                 "   Estimated Time: 3m 15s\n"
                                 "   Estimated Cost: $0.06\n"
                                 "\n"
                                 " Steps:\n"
                                 "   1. Research best practices (researcher, execute_bash, 30s)\n"
                                 "   2. Implement feature (implementer, write_file_tool, 120s) \xe2\x86\x90 1\n"
                                 "   3. Test implementation (tester, execute_bash, 45s) \xe2\x86\x90 2\n"
                                 "\n" RULE);
  free(text);
  json_decref(plan);
}

static void test_format_critical_path_and_estimate(void **state) {
  (void)state;
  json_t *plan = load("{\"title\": \"User Authentication Implementation\", \"steps\": ["
                      "{\"number\": 1, \"title\": \"Research\", \"agent\": \"researcher\", \"tool\": null,"
                      " \"dependencies\": [], \"estimated_seconds\": 60, \"estimated_seconds_default\": true},"
                      "{\"number\": 2, \"title\": \"Implement\", \"agent\": \"implementer\", \"tool\": null,"
                      " \"dependencies\": [1], \"estimated_seconds\": 180},"
                      "{\"number\": 3, \"title\": \"Docs\", \"agent\": \"researcher\", \"tool\": null,"
                      " \"dependencies\": [1], \"estimated_seconds\": 150},"
                      "{\"number\": 4, \"title\": \"Test\", \"agent\": \"tester\", \"tool\": \"execute_bash\","
                      " \"dependencies\": [2, 3], \"estimated_seconds\": 90}],"
                      " \"stated\": {\"seconds\": 480, \"cost\": 0.08}}");
  char *text = plan_format(plan, NULL);
  assert_non_null(strstr(text, "  WORKFLOW PLAN: User Authentication Implementation\n"));
  assert_non_null(strstr(text, "   Steps: 4\n"));
  assert_non_null(strstr(text, "   Estimated Time: 5m 30s (critical path; 8m 0s of work in all)\n"));
  assert_non_null(strstr(text, "   Estimated Cost: $0.08\n"));
  assert_null(strstr(text, "Stated"));
  assert_non_null(strstr(text, "   1. Research (researcher, 60s default)\n"));
  assert_non_null(strstr(text, "   4. Test (tester, execute_bash, 90s) \xe2\x86\x90 2, 3\n"));
  free(text);
  json_t *est = json_pack("{s:f,s:f}", "seconds", 3725.0, "cost", 0.004);
  text = plan_format(plan, est);
  assert_non_null(strstr(text, "   Estimated Time: 1h 2m\n"));
  assert_non_null(strstr(text, "   Estimated Cost: $0.0040\n"));
  free(text);
  json_decref(est);
  json_object_set_new(json_object_get(plan, "stated"), "seconds", json_integer(45));
  json_object_set_new(json_object_get(plan, "stated"), "cost", json_null());
  text = plan_format(plan, NULL);
  assert_non_null(strstr(text, "   Estimated Cost: unknown\n   Stated in the plan: 45s\n"));
  free(text);
  json_decref(plan);
}

static void test_format_cycle_and_junk(void **state) {
  (void)state;
  json_t *plan = load("{\"steps\": [{\"number\": 1, \"dependencies\": [2], \"estimated_seconds\": 30},"
                      " {\"number\": 2, \"dependencies\": [1], \"estimated_seconds\": 3600}]}");
  char *text = plan_format(plan, NULL);
  assert_non_null(strstr(text, "WORKFLOW PLAN: Untitled workflow\n"));
  assert_non_null(strstr(text, "   Estimated Time: 1h 0m (the dependencies form a cycle)\n"));
  assert_non_null(strstr(text, "   2.  (no agent, 1h 0m) \xe2\x86\x90 1\n"));
  free(text);
  json_decref(plan);
  json_t *junk = json_string("not a plan");
  text = plan_format(junk, NULL);
  assert_non_null(strstr(text, "   Steps: 0\n"));
  free(text);
  json_decref(junk);
}

/* ---- templates ---------------------------------------------------------- */

static void test_instantiate(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("## Workflow: Review {{file}}\n### Step 1: Read {{ file }}\n- Agent: reviewer\n"
                               "- Tool: read_file\n- Arguments: {\"path\": \"{{file}}\"}\n"
                               "### Step 2: Test {{file}} with {{runner}} ({{retries}} tries)\n- Agent: tester\n"
                               "- Tool: execute_bash\n- Arguments: {\"command\": \"{{runner}} {{file}}\"}\n"));
  json_t *before = json_deep_copy(plan), *missing = NULL;
  json_t *values = json_pack("{s:s,s:i}", "file", "src/auth.py", "retries", 3);
  json_t *out = plan_instantiate(plan, values, &missing);
  expect_matches(out, "{\"title\": \"Review src/auth.py\", \"steps\": [{\"title\": \"Read src/auth.py\","
                      " \"arguments\": {\"path\": \"src/auth.py\"}}, {\"title\": \"Test src/auth.py with {{runner}}"
                      " (3 tries)\", \"arguments\": {\"command\": \"{{runner}} src/auth.py\"}}]}");
  expect_matches(missing, "[\"runner\"]");
  assert_true(json_equal(plan, before));
  json_decref(out);
  json_decref(missing);
  out = plan_instantiate(plan, NULL, &missing); /* no values: the template's parameters */
  expect_matches(missing, "[\"file\", \"runner\", \"retries\"]");
  json_decref(out);
  json_decref(missing);
  json_decref(values);
  json_decref(before);
  json_decref(plan);
}

static void test_instantiate_arguments_text(void **state) {
  (void)state;
  json_t *plan = parse_ok(PLAN("### Step 1: Count lines\n- Agent: tester\n- Tool: execute_bash\n"
                               "- Arguments: {\"command\": \"wc -l\", \"timeout\": {{timeout}}}\n"));
  expect_matches(plan, "{\"steps\": [{\"arguments\": null}]}");
  json_t *values = json_pack("{s:s}", "timeout", "30");
  json_t *out = plan_instantiate(plan, values, NULL);
  expect_matches(out, "{\"steps\": [{\"arguments\": {\"command\": \"wc -l\", \"timeout\": 30},"
                      " \"arguments_text\": null}]}");
  json_decref(out);
  json_decref(values);
  json_decref(plan);
}

/* ---- fuzz --------------------------------------------------------------- */

static uint32_t next_rand(uint32_t *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return *seed >> 8;
}

static bool valid_utf8(const char *s) {
  json_t *j = json_string(s);
  json_decref(j);
  return j != NULL;
}

/* Checks the shape and the caps of a parse result, and that every other function takes it. */
static void expect_well_formed(const json_t *plan, const json_t *r, const json_t *t) {
  const json_t *steps = json_object_get(plan, "steps");
  assert_true(json_array_size(steps) >= 1 && json_array_size(steps) <= 100);
  assert_true(json_is_string(json_object_get(plan, "title")));
  for (size_t i = 0; i < json_array_size(steps); i++) {
    const json_t *st = json_array_get(steps, i);
    assert_true(json_is_integer(json_object_get(st, "number")));
    assert_true(json_is_string(json_object_get(st, "title")));
    assert_true(json_is_array(json_object_get(st, "dependencies")));
    assert_true(json_number_value(json_object_get(st, "estimated_seconds")) >= 0);
  }
  json_t *errors = plan_validate(plan, r, t), *order = plan_order(plan);
  (void)plan_critical_seconds(plan);
  char *text = plan_format(plan, NULL);
  assert_non_null(text);
  free(text);
  json_decref(errors);
  json_decref(order);
}

static void test_fuzz(void **state) {
  (void)state;
  static const char *const pieces[] = {"[PLAN]",
                                       "[/PLAN]",
                                       "### Step ",
                                       "Step 2:",
                                       "- Agent: ",
                                       "- Tool: ",
                                       "- Arguments: ",
                                       "{\"command\": \"",
                                       "}",
                                       "{",
                                       "```json\n",
                                       "```",
                                       "\n",
                                       "- Dependencies: Step ",
                                       "1-3",
                                       "- Estimated Time: ",
                                       "2m 30s",
                                       "\xff",
                                       "\xe2\x80\x94",
                                       "**",
                                       "## Total Estimated Time: ",
                                       "$",
                                       "\"",
                                       "\\",
                                       "\r\n"};
  json_t *r = roles(), *t = tools();
  uint32_t seed = 12345;
  size_t base = strlen(SEED_PLAN), parsed = 0;
  char *buf = malloc(base * 4 + 256);
  for (int round = 0; round < 20000; round++) {
    memcpy(buf, SEED_PLAN, base + 1);
    size_t len = base;
    int edits = 1 + (int)(next_rand(&seed) % 8);
    for (int e = 0; e < edits; e++) {
      size_t at = len ? next_rand(&seed) % len : 0;
      uint32_t kind = next_rand(&seed) % 4;
      if (kind == 0 && len) { /* flip a byte */
        buf[at] = (char)(next_rand(&seed) % 255 + 1);
      } else if (kind == 1 && len) { /* cut a run */
        size_t n = next_rand(&seed) % 40;
        n = n > len - at ? len - at : n;
        memmove(buf + at, buf + at + n, len - at - n + 1);
        len -= n;
      } else if (len < base * 3) { /* insert a piece */
        const char *p = pieces[next_rand(&seed) % ARRAY_LEN(pieces)];
        size_t n = strlen(p);
        memmove(buf + at + n, buf + at, len - at + 1);
        memcpy(buf + at, p, n);
        len += n;
      }
    }
    char err[128];
    json_t *plan = plan_parse(buf, err, sizeof err);
    if (plan) {
      parsed++;
      expect_well_formed(plan, r, t);
      char *dump = json_dumps(plan, 0);
      assert_true(valid_utf8(dump));
      free(dump);
    }
    json_decref(plan);
  }
  assert_true(parsed > 10000); /* most mutations still give a plan */
  free(buf);
  json_decref(r);
  json_decref(t);
}

/* ---- main --------------------------------------------------------------- */

int main(void) {
  static const struct CMUnitTest fixed[] = {
      cmocka_unit_test(test_parse_no_block),
      cmocka_unit_test(test_parse_block_without_steps),
      cmocka_unit_test(test_parse_prompt_example),
      cmocka_unit_test(test_parse_caps),
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_validate_seed_is_valid),
      cmocka_unit_test(test_validate_missing_dependency),
      cmocka_unit_test(test_validate_unknown_role),
      cmocka_unit_test(test_validate_main_role_when_configured),
      cmocka_unit_test(test_validate_unknown_tool),
      cmocka_unit_test(test_validate_invalid_json),
      cmocka_unit_test(test_validate_required_field),
      cmocka_unit_test(test_validate_agent_step_needs_no_arguments),
      cmocka_unit_test(test_validate_cycle_of_two),
      cmocka_unit_test(test_validate_cycle_of_three),
      cmocka_unit_test(test_validate_self_dependency),
      cmocka_unit_test(test_validate_duplicate_numbers),
      cmocka_unit_test(test_validate_no_steps),
      cmocka_unit_test(test_validate_errors_name_steps),
      cmocka_unit_test(test_validate_without_lists),
      cmocka_unit_test(test_order_parallel_branches),
      cmocka_unit_test(test_order_lowest_ready_first),
      cmocka_unit_test(test_order_cycle_is_null),
      cmocka_unit_test(test_critical_path_diamond),
      cmocka_unit_test(test_edit_set_agent),
      cmocka_unit_test(test_edit_set_profile),
      cmocka_unit_test(test_estimate_cases),
      cmocka_unit_test(test_format_estimate_by_step),
      cmocka_unit_test(test_edit_set_arguments),
      cmocka_unit_test(test_edit_set_tool_and_title),
      cmocka_unit_test(test_edit_set_dependencies),
      cmocka_unit_test(test_edit_replace_with_text),
      cmocka_unit_test(test_edit_set_estimate),
      cmocka_unit_test(test_edit_remove_step),
      cmocka_unit_test(test_edit_add_step),
      cmocka_unit_test(test_edit_errors),
      cmocka_unit_test(test_format_seed),
      cmocka_unit_test(test_format_critical_path_and_estimate),
      cmocka_unit_test(test_format_cycle_and_junk),
      cmocka_unit_test(test_instantiate),
      cmocka_unit_test(test_instantiate_arguments_text),
      cmocka_unit_test(test_fuzz),
  };
  struct CMUnitTest tests[ARRAY_LEN(parse_cases) + ARRAY_LEN(fixed)];
  size_t n = 0;
  for (size_t i = 0; i < ARRAY_LEN(parse_cases); i++)
    tests[n++] = (struct CMUnitTest){parse_cases[i].name, test_parse_case, NULL, NULL, (void *)&parse_cases[i]};
  for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
    tests[n++] = fixed[i];
  return cmocka_run_group_tests(tests, NULL, NULL);
}
