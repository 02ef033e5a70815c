/* plan_format: the plan as the seed's approval screen shows it (see plan.h). */
#include "jx.h"
#include "plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE "======================================================================"

/* "45s", "3m 15s", "1h 2m". */
static void format_duration(double secs, char *out, size_t size) {
  long long s = secs > 0 && secs < 1e12 ? llround(secs) : 0;
  if (s < 60)
    snprintf(out, size, "%llds", s);
  else if (s < 3600)
    snprintf(out, size, "%lldm %llds", s / 60, s % 60);
  else
    snprintf(out, size, "%lldh %lldm", s / 3600, s % 3600 / 60);
}

/* "$0.06"; small amounts keep four places ("$0.0040"). */
static void format_cost(double cost, char *out, size_t size) {
  snprintf(out, size, cost > 0 && cost < 0.01 ? "$%.4f" : "$%.2f", cost);
}

/* The sum of the steps' times (the estimate's, when it has them per step). */
static double work_seconds(const json_t *steps, const json_t *estimate) {
  double sum = 0;
  if (json_array_size(jx_arr(estimate, "steps")))
    steps = jx_arr(estimate, "steps");
  for (size_t i = 0; i < json_array_size(steps); i++) {
    const json_t *st = json_array_get(steps, i);
    double s = jx_num(st, "seconds", jx_num(st, "estimated_seconds", 0));
    sum += s > 0 ? s : 0;
  }
  return sum;
}

/* The summary: step count, time (critical path, and the sum when steps run side by side), cost. */
static void write_summary(FILE *f, const json_t *plan, const json_t *estimate) {
  const json_t *steps = jx_arr(plan, "steps"), *stated = jx_obj(plan, "stated");
  double sum = work_seconds(steps, estimate), crit = plan_critical_seconds(plan);
  double secs = crit < 0 ? sum : jx_num(estimate, "seconds", crit);
  double cost = jx_num(estimate, "cost", jx_num(stated, "cost", -1));
  char t[32], w[32], c[32];
  format_duration(secs, t, sizeof t);
  format_duration(sum, w, sizeof w);
  fprintf(f, "\xf0\x9f\x93\x8a Summary:\n   Steps: %zu\n   Estimated Time: %s", json_array_size(steps), t);
  if (crit < 0)
    fprintf(f, " (the dependencies form a cycle)");
  else if (llround(sum) > llround(secs))
    fprintf(f, " (critical path; %s of work in all)", w);
  if (cost >= 0)
    format_cost(cost, c, sizeof c);
  fprintf(f, "\n   Estimated Cost: %s\n", cost >= 0 ? c : "unknown");
  double said = jx_num(stated, "seconds", -1);
  if (said >= 0 && llround(said) != llround(sum)) {
    format_duration(said, t, sizeof t);
    fprintf(f, "   Stated in the plan: %s\n", t);
  }
}

/* A step's seconds as the seed shows them: "45s" below an hour, else "1h 2m". */
static void step_duration(double secs, char *out, size_t size) {
  if (secs < 3600)
    snprintf(out, size, "%llds", secs > 0 ? llround(secs) : 0LL);
  else
    format_duration(secs, out, size);
}

/* "   2. Implement auth module (implementer, write_file_tool, 180s) ← 1" */
static void write_step(FILE *f, const json_t *step) {
  const char *title = jx_str(step, "title", NULL);
  const char *agent = jx_str(step, "agent", NULL);
  const char *tool = jx_str(step, "tool", NULL);
  const json_t *deps = jx_arr(step, "dependencies");
  char d[32];
  step_duration(jx_num(step, "estimated_seconds", 0), d, sizeof d); /* the seed shows steps in seconds */
  const char *profile = jx_str(step, "profile", NULL);
  fprintf(f, "   %lld. %s (%s", (long long)jx_int(step, "number", 0), title ? title : "",
          agent && *agent ? agent : "no agent");
  if (profile)
    fprintf(f, " on %s", profile);
  if (tool)
    fprintf(f, ", %s", tool);
  fprintf(f, ", %s%s)", d, jx_bool(step, "estimated_seconds_default", false) ? " default" : "");
  for (size_t i = 0; i < json_array_size(deps); i++)
    fprintf(f, "%s%lld", i ? ", " : " \xe2\x86\x90 ", (long long)json_integer_value(json_array_get(deps, i)));
  fputc('\n', f);
}

/* "   2. big              qwen2.5:72b        5000   120s  $0.0300": what each step takes on its profile, and the total. */
static void write_estimates(FILE *f, const json_t *estimate) {
  const json_t *steps = jx_arr(estimate, "steps");
  if (!json_array_size(steps))
    return;
  char t[32], c[32];
  fprintf(f, "\n Estimate by step (profile, model, tokens, time, cost):\n");
  for (size_t i = 0; i < json_array_size(steps); i++) {
    const json_t *e = json_array_get(steps, i);
    const char *profile = jx_str(e, "profile", NULL);
    step_duration(jx_num(e, "seconds", 0), t, sizeof t);
    snprintf(c, sizeof c, "$%.4f", jx_num(e, "cost", 0));
    fprintf(f, "   %lld. %-18s %-20s %7lld %7s  %s\n", (long long)jx_int(e, "number", 0),
            profile ? profile : "(tool step)", jx_str(e, "model", ""), (long long)jx_int(e, "tokens", 0), t, c);
  }
  format_duration(jx_num(estimate, "seconds", 0), t, sizeof t);
  snprintf(c, sizeof c, "$%.4f", jx_num(estimate, "cost", 0));
  fprintf(f, "   %-42s %7lld %7s  %s\n", "Total (time: the critical path)", (long long)jx_int(estimate, "tokens", 0), t,
          c);
}

/* The plan as the seed shows it for approval; estimate may be NULL or {"seconds","cost"[,"tokens","steps"]}. Caller frees. */
char *plan_format(const json_t *plan, const json_t *estimate) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  if (!f)
    return NULL;
  const char *title = jx_str(plan, "title", NULL);
  const json_t *steps = jx_arr(plan, "steps");
  fprintf(f, RULE "\n  WORKFLOW PLAN: %s\n" RULE "\n\n", title && *title ? title : "Untitled workflow");
  write_summary(f, plan, estimate);
  fprintf(f, "\n Steps:\n");
  for (size_t i = 0; i < json_array_size(steps); i++)
    write_step(f, json_array_get(steps, i));
  write_estimates(f, estimate);
  fprintf(f, "\n" RULE "\n");
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}
