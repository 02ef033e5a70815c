/* plan_estimate: a plan's time, tokens and cost on the config's profiles (see plan_estimate.h). */
#include "plan_estimate.h"

#include "jx.h"
#include "plan.h"
#include "plan_span.h"

const cadre_profile_t *plan_step_profile(const json_t *step, const cadre_config_t *config) {
  if (jx_str(step, "tool", NULL))
    return NULL;
  const char *name = jx_str(step, "profile", NULL);
  return name ? config_profile(config, name) : config_profile_for_role(config, jx_str(step, "agent", ""));
}

/* The step's time on p: the planned time, scaled by speed when p is not the role's own profile. */
static double step_seconds(const json_t *step, const cadre_profile_t *p, const cadre_config_t *config) {
  double planned = jx_num(step, "estimated_seconds", 0);
  const cadre_profile_t *base = config_profile_for_role(config, jx_str(step, "agent", ""));
  if (planned < 0)
    planned = 0;
  if (!p || !base || p == base || p->tokens_per_second <= 0 || base->tokens_per_second <= 0)
    return planned;
  return planned * base->tokens_per_second / p->tokens_per_second;
}

/* One step's estimate; its time also goes into timed (a copy of the step for the critical path). */
static json_t *step_estimate(const json_t *step, const cadre_config_t *config, json_t *timed) {
  const cadre_profile_t *p = plan_step_profile(step, config);
  double secs = step_seconds(step, p, config);
  json_int_t tokens = p ? PLAN_STEP_TOKENS_IN + PLAN_STEP_TOKENS_OUT : 0;
  double cost =
      p ? (PLAN_STEP_TOKENS_IN * p->cost_per_1m_input + PLAN_STEP_TOKENS_OUT * p->cost_per_1m_output) / 1e6 : 0;
  json_object_set_new(timed, "estimated_seconds", plan_number_json(secs));
  return json_pack("{s:I, s:o, s:o, s:I, s:o, s:f}", "number", (json_int_t)jx_int(step, "number", 0), "profile",
                   p ? json_string(p->name) : json_null(), "model", p ? json_string(p->model) : json_null(), "tokens",
                   tokens, "seconds", plan_number_json(secs), "cost", cost);
}

json_t *plan_estimate(const json_t *plan, const cadre_config_t *config) {
  json_t *timed = json_deep_copy(plan), *steps = json_array();
  const json_t *all = jx_arr(plan, "steps");
  json_t *timed_steps = jx_arr(timed, "steps");
  json_int_t tokens = 0;
  double cost = 0;
  for (size_t i = 0; i < json_array_size(all); i++) {
    json_t *e = step_estimate(json_array_get(all, i), config, json_array_get(timed_steps, i));
    tokens += jx_int(e, "tokens", 0);
    cost += jx_num(e, "cost", 0);
    json_array_append_new(steps, e);
  }
  double secs = timed ? plan_critical_seconds(timed) : -1;
  json_decref(timed);
  return json_pack("{s:o, s:f, s:I, s:I, s:o}", "seconds", plan_number_json(secs), "cost", cost, "tokens", tokens,
                   "tokens_per_agent_step", (json_int_t)(PLAN_STEP_TOKENS_IN + PLAN_STEP_TOKENS_OUT), "steps", steps);
}
