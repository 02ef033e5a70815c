/* format: command results as text for people, shared by the console and the
 * one-shot commands. Each renderer appends whole lines to b; where the two
 * differ (a document on stdout, or a line in the console's conversation),
 * how says which. */
#ifndef CADRE_FORMAT_H
#define CADRE_FORMAT_H

#include <jansson.h>
#include <stdbool.h>

#include "sbuf.h"

/* Where and how a result is shown. */
typedef struct {
  bool console;       /* a line in the console (else cadre's stdout) */
  bool color;         /* ANSI colours */
  const char *verb;   /* the verb that answered */
  const json_t *args; /* the arguments it was asked with (may be NULL) */
} format_how_t;

/* A renderer of a verb's result. */
typedef void format_fn(sbuf_t *b, const json_t *r, const format_how_t *how);

/* agents: a table of id, role, model, status, messages, tokens, cost. */
format_fn format_agents;
/* stats: per agent messages, tokens in/out and cost, the team total, and what
 * the same tokens would cost on the main model. */
format_fn format_stats;
/* Any value (config): indented, reals with 6 significant digits. */
format_fn format_json;
format_fn format_spawn, format_send, format_stop, format_stopped, format_reset, format_history, format_nodes,
    format_drain, format_budget, format_memory, format_sessions;
/* Plans: the list, one plan, a decision taken (approve, reject, pause, resume, cancel), templates. */
format_fn format_plans, format_plan, format_approved, format_decided, format_modified, format_template;

/* One plan with each step's progress mark (✓ done, ○ pending, ⟳ running, ✗ failed): cadre's form. */
void format_plan_doc(sbuf_t *b, const json_t *plan);
/* "📋 plan 3 "title" [status] · 4 steps · ~195 s, $0.06" */
void format_plan_line(sbuf_t *b, const json_t *plan);
/* A plan for deciding: its text (or its line), then each step's arguments and description. */
void format_plan_steps(sbuf_t *b, const json_t *plan);
/* The budgets a plan runs under (its "budget": the workflow's own, its session's and those above),
 * beside the estimate, with a warning where the estimate needs more than is left. */
void format_plan_budget(sbuf_t *b, const json_t *plan);
/* A rollback's report {restored, mismatches, deleted} as "2 file(s) restored, 1 created file(s) removed,
 * 0 deleted, 0 mismatch(es)": files counted once each, however many checkpoints they had. */
void format_rollback(sbuf_t *b, const json_t *rollback);
/* The first line of a step's result, cut to max bytes ("" when it has none). */
void format_step_result(sbuf_t *b, const json_t *step, size_t max);
/* A cost in dollars with enough digits to see small amounts. */
void format_cost(char *buf, size_t len, double cost);

#endif
