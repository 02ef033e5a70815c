/* plan: the seed's [PLAN] blocks: parsing, validation, ordering, estimates, edits.
 *
 * A plan is a JSON object (so it is stored, sent and shown as is):
 *   {"title": str,
 *    "steps": [{"number": int, "title": str, "agent": str (role),
 *               "profile": str (optional: the config profile that runs it, else the role's first),
 *               "tool": str or null (null: an agent step, done by a sub-agent of that role),
 *               "arguments": object or null, "arguments_text": str (as written, when not valid JSON),
 *               "dependencies": [int...], "estimated_seconds": number}],
 *    "stated": {"seconds": number or null, "cost": number or null}}
 * The seed's format:
 *   [PLAN]
 *   ## Workflow: Implement and Test Feature
 *   ### Step 1: Research best practices
 *   - Agent: researcher
 *   - Profile: big_researcher        (optional; the model the step runs on)
 *   - Tool: execute_bash
 *   - Arguments: {"command": "grep -r 'pattern' ./docs"}
 *   - Dependencies: none
 *   - Estimated Time: 30s
 *   ...
 *   ## Total Estimated Time: 195s (3m 15s)
 *   ## Cost Estimate: $0.06
 *   [/PLAN]
 */
#ifndef CADRE_PLAN_H
#define CADRE_PLAN_H

#include <jansson.h>
#include <stdbool.h>

/* The last [PLAN]...[/PLAN] block of text as a plan, or NULL when there is
 * none. A block that cannot be read at all (no steps) gives NULL with err set;
 * problems inside steps are left for plan_validate. Caller owns. */
json_t *plan_parse(const char *text, char *err, size_t errlen);

/* Seconds from "30s", "2m 30s", "90 seconds", "1.5 min", "1h", "45"; -1 when unreadable. */
double plan_parse_duration(const char *s);

/* Checks a plan against the roles (array of str) and tools (object: name ->
 * array of required argument names) that exist. Returns an array of errors,
 * each {"step": int or null, "message": str} naming the step and the problem:
 * dependency cycles (naming the cycle: "Step 2 -> Step 3 -> Step 2"),
 * dependencies on missing steps, unknown roles, unknown tools, arguments that
 * are not valid JSON or lack a tool's required field, duplicate step numbers,
 * no steps. Empty array: valid. Caller owns. */
json_t *plan_validate(const json_t *plan, const json_t *roles, const json_t *tools);

/* Step numbers in an order that respects dependencies (Kahn, lowest number
 * first among ready steps), or NULL when there is a cycle. Caller owns. */
json_t *plan_order(const json_t *plan);

/* The critical path: the longest sum of estimated_seconds along dependency
 * chains (what the plan takes with unlimited parallelism). -1 on a cycle. */
double plan_critical_seconds(const json_t *plan);

/* Applies one edit to a pending plan (a copy is returned; the input is not
 * changed), or NULL with err set. Edits:
 *   {"op":"set_agent","step":N,"agent":"role"}      (drops the step's profile: the role's own runs it)
 *   {"op":"set_profile","step":N,"profile":"name" or null,"role":"its role" (optional: set as agent)}
 *   {"op":"set_arguments","step":N,"arguments":{...}}
 *   {"op":"set_tool","step":N,"tool":"name" or null}
 *   {"op":"set_dependencies","step":N,"dependencies":[...]}
 *   {"op":"set_title","step":N,"title":"..."}
 *   {"op":"set_estimate","step":N,"seconds":n}
 *   {"op":"remove_step","step":N}   (also removes N from others' dependencies)
 *   {"op":"add_step","step":{...step fields; number optional: next free}}
 *   {"op":"replace","text":"..."}   (the whole plan again, as a [PLAN] block or its inside)
 * Caller owns the result. */
json_t *plan_edit(const json_t *plan, const json_t *edit, char *err, size_t errlen);

/* The plan as the seed shows it for approval (title, steps with agent and
 * time, dependencies, estimates); estimate may be NULL or {"seconds","cost"}.
 * Caller frees. */
char *plan_format(const json_t *plan, const json_t *estimate);

/* Substitutes {{name}} placeholders in every string of the plan with values
 * (object name -> string), for templates. Unknown placeholders are left and
 * listed in *missing (array, caller owns) when missing is not NULL. Caller owns. */
json_t *plan_instantiate(const json_t *plan, const json_t *values, json_t **missing);

#endif
