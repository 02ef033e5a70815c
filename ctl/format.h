/* format: tables and documents for people (agents, stats, config), shared by
 * the console and the one-shot commands. */
#ifndef CADRE_FORMAT_H
#define CADRE_FORMAT_H

#include <jansson.h>
#include <stdbool.h>

#include "sbuf.h"

/* The agents verb's result as a table: id, role, model, status, messages, tokens, cost. */
void format_agents(sbuf_t *b, const json_t *agents);
/* The stats verb's result: per agent messages, tokens in/out and cost, the
 * team total, and what the same tokens would cost on the main model. */
void format_stats(sbuf_t *b, const json_t *stats);
/* A JSON value for people: indented, reals with 6 significant digits. */
void format_json(sbuf_t *b, const json_t *v);
/* A cost in dollars with enough digits to see small amounts. */
void format_cost(char *buf, size_t len, double cost);

#endif
