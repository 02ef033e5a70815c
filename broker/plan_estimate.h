/* plan_estimate: what a plan will take, step by step and in total, on the
 * config's profiles (see plan.h for the plan's shape).
 *
 * An agent step runs on its "profile" when the step names one, else on the
 * first profile of its role. It is reckoned at PLAN_STEP_TOKENS_IN prompt and
 * PLAN_STEP_TOKENS_OUT answer tokens at that profile's prices. Its time is
 * the step's estimated_seconds (what the planner expected of the role's
 * model); when the step runs on another profile and both give
 * tokens_per_second, that time is scaled by their speeds (a model half as
 * fast takes twice as long). A tool step calls no model: no tokens, no cost,
 * its own time. The total time is the critical path over the steps' times. */
#ifndef CADRE_PLAN_ESTIMATE_H
#define CADRE_PLAN_ESTIMATE_H

#include <jansson.h>

#include "config.h"

#define PLAN_STEP_TOKENS_IN 4000  /* prompt tokens reckoned for one agent step */
#define PLAN_STEP_TOKENS_OUT 1000 /* answer tokens reckoned for one agent step */

/* The profile an agent step runs on: its "profile", else its role's; NULL for
 * a tool step, or when the config has neither. */
const cadre_profile_t *plan_step_profile(const json_t *step, const cadre_config_t *config);

/* {"seconds", "cost", "tokens", "tokens_per_agent_step",
 *  "steps": [{"number", "profile" (str or null), "model" (str or null),
 *             "tokens", "seconds", "cost"}]} in the order of the plan's
 * steps. seconds is -1 when the dependencies form a cycle. Caller owns. */
json_t *plan_estimate(const json_t *plan, const cadre_config_t *config);

#endif
