/* Plan preview with model swap, against a broker without sockets
 * (broker_fixture.c): set_profile on a pending plan, checked against the
 * config, and the budgets shown beside the estimate with their warnings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_fixture.h"
#include "jx.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Two agent steps of the fixture's reviewer role and one tool step. */
#define PLAN                                                                                                         \
  "[PLAN]\n## Workflow: Swap\n### Step 1: Look\n- Agent: reviewer\n- Estimated Time: 30s\n"                          \
  "### Step 2: Look harder\n- Agent: reviewer\n- Dependencies: Step 1\n- Estimated Time: 60s\n"                      \
  "### Step 3: Read\n- Agent: reviewer\n- Tool: read_file\n- Arguments: {\"path\": \"a\"}\n- Dependencies: Step 2\n" \
  "- Estimated Time: 10s\n[/PLAN]\n"

/* A fixture with the plan proposed by main (plan 1). */
static fx_t *with_plan(void) {
  fx_t *fx = fx_new(NULL);
  workflow_on_answer(fx->b, "main", PLAN);
  char err[256];
  json_t *p = workflow_show(fx->b, 1, err, sizeof err);
  assert_non_null(p);
  assert_string_equal(jx_str(p, "status", ""), "pending");
  json_decref(p);
  return fx;
}

/* ---- set_profile: what the broker refuses, and the plan left as it was ---- */

static const struct {
  const char *name;
  const char *edit; /* JSON */
  const char *want; /* a substring of the error; NULL: accepted */
} swap_cases[] = {
    {"the role's own profile", "{\"op\": \"set_profile\", \"step\": 2, \"profile\": \"reviewer_agent\"}", NULL},
    {"back to the role's", "{\"op\": \"set_profile\", \"step\": 2, \"profile\": \"default\"}", NULL},
    {"an unknown profile, with those there are", "{\"op\": \"set_profile\", \"step\": 2, \"profile\": \"huge\"}",
     "step 2 names a profile that is not in the config: \"huge\" (profiles: reviewer_agent (reviewer, small))"},
    {"the main agent's profile", "{\"op\": \"set_profile\", \"step\": 1, \"profile\": \"main_agent\"}",
     "step 1 cannot run on the main agent's profile"},
    {"a tool step", "{\"op\": \"set_profile\", \"step\": 3, \"profile\": \"reviewer_agent\"}",
     "step 3 is a tool step: it calls no model"},
    {"a step that is not there", "{\"op\": \"set_profile\", \"step\": 9, \"profile\": \"reviewer_agent\"}",
     "plan 1 has no step 9 (its steps: 1, 2, 3)"},
    {"no profile at all", "{\"op\": \"set_profile\", \"step\": 2}", "\"profile\" must be a profile name"},
};

static void set_profile_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(swap_cases); i++) {
    fx_t *fx = with_plan();
    char err[512] = "";
    json_t *edit = json_loads(swap_cases[i].edit, 0, NULL), *before = workflow_show(fx->b, 1, err, sizeof err);
    json_t *r = workflow_modify(fx->b, 1, edit, err, sizeof err);
    json_t *after = workflow_show(fx->b, 1, err + 256, 256);
    const char *want = swap_cases[i].want;
    if (want && (r || !strstr(err, want)))
      fail_msg("%s: %s, error \"%s\", want \"%s\"", swap_cases[i].name, r ? "accepted" : "refused", err, want);
    if (want && !json_equal(json_object_get(before, "steps"), json_object_get(after, "steps")))
      fail_msg("%s: a refused edit changed the plan", swap_cases[i].name);
    if (!want && (!r || !json_is_object(json_object_get(r, "before")) || !json_object_get(r, "budget")))
      fail_msg("%s: refused (%s), or the reply lacks before/budget", swap_cases[i].name, err);
    json_decref(r), json_decref(edit), json_decref(before), json_decref(after);
    fx_destroy(&fx);
  }
}

/* A plan that runs may not be changed; the message says why. */
static void set_profile_after_approval_is_refused(void **state) {
  (void)state;
  fx_t *fx = with_plan();
  fx_node(fx, "n1", 2);
  char err[512] = "";
  assert_int_equal(workflow_approve(fx->b, 1, NULL, err, sizeof err), 0);
  json_t *edit = json_pack("{s:s, s:i, s:s}", "op", "set_profile", "step", 2, "profile", "reviewer_agent");
  assert_null(workflow_modify(fx->b, 1, edit, err, sizeof err));
  assert_string_equal(err, "plan 1 is running; only a pending plan can be modified");
  json_decref(edit);
  fx_destroy(&fx);
}

/* ---- budgets beside the estimate (2 agent steps: 10000 tokens, $0) ---- */

static const struct {
  const char *name;
  const char *scope[2]; /* budgets set (NULL: none) */
  long long tokens[2];
  double cost[2];
  size_t sessions;      /* session reports shown */
  const char *warnings; /* joined by " | " */
} budget_cases[] = {
    {"none", {NULL, NULL}, {0, 0}, {0, 0}, 1, ""},
    {"enough left", {"main", NULL}, {20000, 0}, {0, 0}, 1, ""},
    {"too few tokens left in the session's",
     {"main", NULL},
     {3000, 0},
     {0, 0},
     1,
     "the estimate (10000 tokens) is more than the 3000 tokens left in the budget of main"},
    {"the workflow's own",
     {"workflow:1", NULL},
     {100, 0},
     {0, 0},
     1,
     "the estimate (10000 tokens) is more than the 100 tokens left in the budget of workflow:1"},
    {"both",
     {"workflow:1", "main"},
     {100, 200},
     {0, 0},
     1,
     "the estimate (10000 tokens) is more than the 100 tokens left in the budget of workflow:1 | the estimate "
     "(10000 tokens) is more than the 200 tokens left in the budget of main"},
    {"a cost limit the free estimate fits", {"main", NULL}, {0, 0}, {0.5, 0}, 1, ""},
};

static void budget_cases_beside_the_estimate(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(budget_cases); i++) {
    fx_t *fx = with_plan();
    for (int k = 0; k < 2 && budget_cases[i].scope[k]; k++)
      assert_int_equal(
          store_budget_set(fx->b->store, budget_cases[i].scope[k], budget_cases[i].tokens[k], budget_cases[i].cost[k]),
          0);
    char err[256];
    json_t *p = workflow_show(fx->b, 1, err, sizeof err), *bud = json_object_get(p, "budget");
    char got[1024] = "";
    size_t k;
    json_t *w;
    json_array_foreach(json_object_get(bud, "warnings"), k, w)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? " | " : "", json_string_value(w));
    if (strcmp(got, budget_cases[i].warnings) != 0 ||
        json_array_size(json_object_get(bud, "sessions")) != budget_cases[i].sessions ||
        strcmp(jx_str(json_object_get(bud, "workflow"), "scope", ""), "workflow:1") != 0)
      fail_msg("%s: warnings \"%s\", %zu session(s); want \"%s\", %zu", budget_cases[i].name, got,
               json_array_size(json_object_get(bud, "sessions")), budget_cases[i].warnings, budget_cases[i].sessions);
    assert_int_equal(jx_int(jx_obj(p, "estimate"), "tokens", 0), 10000);
    json_decref(p);
    fx_destroy(&fx);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(set_profile_cases),
      cmocka_unit_test(set_profile_after_approval_is_refused),
      cmocka_unit_test(budget_cases_beside_the_estimate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
