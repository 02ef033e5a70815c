/* Tests of what the console shows for a workflow and a tool: a rollback's
 * counts (each file once), a tool output's preview, a step's result, and a
 * plan written as the [PLAN] block $EDITOR gets. Tables of named cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format.h"
#include "plan_editor.h"
#include "render.h"

static const struct {
  const char *name, *rollback, *want;
} rollback_cases[] = {
    {"nothing", "{}", "0 file(s) restored, 0 deleted, 0 mismatch(es)"},
    {"two files", "{\"restored\": [{\"path\": \"a\", \"existed\": true}, {\"path\": \"b\", \"existed\": true}]}",
     "2 file(s) restored, 0 deleted, 0 mismatch(es)"},
    {"one file with two checkpoints counts once",
     "{\"restored\": [{\"path\": \"a\", \"existed\": true}, {\"path\": \"a\", \"existed\": true}]}",
     "1 file(s) restored, 0 deleted, 0 mismatch(es)"},
    {"a file the workflow created is removed, not restored",
     "{\"restored\": [{\"path\": \"new.txt\", \"existed\": false}, {\"path\": \"a\", \"existed\": true}]}",
     "1 file(s) restored, 1 created file(s) removed, 0 deleted, 0 mismatch(es)"},
    {"a file created then changed: its last restore removes it",
     "{\"restored\": [{\"path\": \"n\", \"existed\": true}, {\"path\": \"n\", \"existed\": false}]}",
     "0 file(s) restored, 1 created file(s) removed, 0 deleted, 0 mismatch(es)"},
    {"restores that changed nothing are counted apart",
     "{\"restored\": [{\"path\": \"a\", \"existed\": true, \"changed\": false}, "
     "{\"path\": \"b\", \"existed\": true, \"changed\": true}, {\"path\": \"a\", \"existed\": true, \"changed\": "
     "false}]}",
     "1 file(s) restored, 1 already as they were, 0 deleted, 0 mismatch(es)"},
    {"one changing restore of a file is enough",
     "{\"restored\": [{\"path\": \"a\", \"existed\": true, \"changed\": true}, "
     "{\"path\": \"a\", \"existed\": true, \"changed\": false}]}",
     "1 file(s) restored, 0 deleted, 0 mismatch(es)"},
    {"deleted paths and mismatches (strings or objects)",
     "{\"deleted\": [\"x\", \"y\", \"x\"], \"mismatches\": [{\"path\": \"m\", \"error\": \"changed\"}, \"n\"]}",
     "0 file(s) restored, 2 deleted, 2 mismatch(es)"},
};

static void rollback_counts(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof rollback_cases / sizeof rollback_cases[0]; i++) {
    json_t *rb = json_loads(rollback_cases[i].rollback, 0, NULL);
    sbuf_t b = {0};
    format_rollback(&b, rb);
    if (strcmp(sbuf_str(&b), rollback_cases[i].want) != 0)
      fail_msg("%s: got \"%s\"", rollback_cases[i].name, sbuf_str(&b));
    sbuf_free(&b);
    json_decref(rb);
  }
}

static const struct {
  const char *name, *text;
  int lines;
  size_t bytes;
  const char *want;
} preview_cases[] = {
    {"no output", "", 3, 80, ""},
    {"one line", "ok\n", 3, 80, "\n  │ ok"},
    {"blank lines are skipped", "a\n\n   \nb\n", 3, 80, "\n  │ a\n  │ b"},
    {"more lines are counted", "1\n2\n3\n4\n5", 2, 80, "\n  │ 1\n  │ 2\n  │ … 3 more lines"},
    {"one more line", "1\n2\n3", 2, 80, "\n  │ 1\n  │ 2\n  │ … 1 more line"},
    {"a long line is cut", "abcdefghij", 3, 4, "\n  │ abcd…"},
    {"tabs become a space", "a\tb", 3, 80, "\n  │ a b"},
};

static void tool_previews(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof preview_cases / sizeof preview_cases[0]; i++) {
    sbuf_t b = {0};
    render_preview(&b, preview_cases[i].text, preview_cases[i].lines, preview_cases[i].bytes);
    if (strcmp(sbuf_str(&b), preview_cases[i].want) != 0)
      fail_msg("%s: got \"%s\"", preview_cases[i].name, sbuf_str(&b));
    sbuf_free(&b);
  }
}

static const struct {
  const char *name, *step, *want;
} result_cases[] = {
    {"no result", "{}", ""},
    {"the first line", "{\"result\": \"done\\nmore\"}", "done"},
    {"leading blank lines skipped", "{\"result\": \"\\n\\n  done\"}", "done"},
    {"cut", "{\"result\": \"abcdefghijkl\"}", "abcdef…"},
};

static void step_results(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof result_cases / sizeof result_cases[0]; i++) {
    json_t *s = json_loads(result_cases[i].step, 0, NULL);
    sbuf_t b = {0};
    format_step_result(&b, s, 6);
    if (strcmp(sbuf_str(&b), result_cases[i].want) != 0)
      fail_msg("%s: got \"%s\"", result_cases[i].name, sbuf_str(&b));
    sbuf_free(&b);
    json_decref(s);
  }
}

static void plan_as_editable_text(void **state) {
  (void)state;
  json_t *p =
      json_loads("{\"id\": 4, \"title\": \"Ship\", \"estimate\": {\"seconds\": 75, \"cost\": 0.02}, \"steps\": ["
                 "{\"number\": 1, \"title\": \"Write\", \"agent\": \"\", \"tool\": \"write_file_tool\", "
                 "\"arguments\": {\"path\": \"a\"}, \"dependencies\": [], \"estimated_seconds\": 30},"
                 "{\"number\": 2, \"title\": \"Check\", \"agent\": \"tester\", \"profile\": \"Big_Tester\", \"tool\": "
                 "null, \"arguments\": null,"
                 " \"dependencies\": [1], \"estimated_seconds\": 45, \"description\": \"run it\"}]}",
                 0, NULL);
  sbuf_t b = {0};
  plan_editor_text(&b, p);
  const char *want =
      "[PLAN]\n## Workflow: Ship\n"
      "\n### Step 1: Write\n- Tool: write_file_tool\n- Arguments: {\"path\":\"a\"}\n- Dependencies: none\n"
      "- Estimated Time: 30s\n"
      "\n### Step 2: Check\n- Agent: tester\n- Profile: Big_Tester\n- Dependencies: Step 1\n- Estimated Time: 45s\n"
      "- Description: run it\n"
      "\n## Total Estimated Time: 75s\n## Cost Estimate: $0.0200\n[/PLAN]\n";
  const char *block = strstr(sbuf_str(&b), "[PLAN]");
  assert_non_null(block);
  assert_string_equal(block, want);
  assert_non_null(strstr(sbuf_str(&b), "Plan 4: edit the block below"));
  sbuf_free(&b);
  json_decref(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rollback_counts),
      cmocka_unit_test(tool_previews),
      cmocka_unit_test(step_results),
      cmocka_unit_test(plan_as_editable_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
