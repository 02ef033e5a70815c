/* plan_text: the values inside a plan's lines: names, costs, tool names, step
 * lists (plan_parse_duration, for times, is public: plan.h). Built on plan_span. */
#ifndef CADRE_PLAN_TEXT_H
#define CADRE_PLAN_TEXT_H

#include "plan_span.h"

/* A cost like "$0.06" or "~$0.05-0.08" (the upper bound); -1 when unreadable. */
double plan_parse_cost(span_t v);
/* The leading name in v ("researcher" from "`Researcher` (small model)"), lowercased; "" if none. */
json_t *plan_name_json(span_t v);
/* True for tool values that mean "no tool": none, -, N/A, null, empty. */
bool plan_is_no_tool(span_t v);
/* Step numbers named in "Step 1, Step 3", "1, 3", "Steps 1 and 3", "Steps 1-3"; none/-: []. */
json_t *plan_deps_json(span_t v);

#endif
