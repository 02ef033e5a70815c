/* budget: spending limits the broker enforces.
 *
 * A budget (tokens and/or cost) holds for a scope: a session with its whole
 * tree of sub-agents (cadre budget SESSION; the config's "budgets" per role
 * give each session of that role one by default), or a workflow's steps with
 * theirs ("workflow:N", set at approval). Real usage counts as turns end.
 * Before a turn goes to a node, every scope above it is checked: a spent one
 * stops the turn (budget_spent), and so does one whose request (its prompt,
 * estimated as bytes / 4) would not fit in what is left; otherwise the turn's
 * max_tokens is capped to what the tightest scope still allows after that
 * prompt, so a budget is overshot by no more than the prompt estimate is off. */
#ifndef CADRE_BROKER_BUDGET_H
#define CADRE_BROKER_BUDGET_H

#include <jansson.h>
#include <stdbool.h>

#include "internal.h"

/* {scope, limit {tokens, cost} or null, spent {tokens, cost}, left {tokens, cost}} or NULL (no such session). */
json_t *budget_report(broker_t *b, const char *scope);
/* Every scope with a budget set, as budget_report gives it. */
json_t *budget_all(broker_t *b);
/* Whether a turn of session whose request takes about prompt tokens may run;
 * *cap: the most tokens its answer may have (INT_MAX: no budget limits it).
 * False with detail when a budget is spent, or too little is left for the prompt. */
bool budget_allows(broker_t *b, const char *session, const cadre_profile_t *p, int64_t prompt, int *cap, char *detail,
                   size_t dlen);

#endif
