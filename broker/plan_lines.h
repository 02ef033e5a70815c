/* plan_lines: classifies the lines of a [PLAN] block (a step header, a known
 * field, text). Built on plan_span; used by the parser (plan.c). */
#ifndef CADRE_PLAN_LINES_H
#define CADRE_PLAN_LINES_H

#include "plan_span.h"

enum { LN_BLANK, LN_SKIP, LN_STEP, LN_FIELD, LN_TEXT };
enum { F_AGENT, F_TOOL, F_ARGS, F_DEPS, F_TIME, F_DESC, F_TITLE, F_TOTAL, F_COST, F_PROFILE };

/* One line of a block, classified. */
typedef struct {
  int kind;     /* LN_* */
  int level;    /* leading '#' marks */
  bool bullet;  /* a list marker was dropped */
  bool heading; /* '#' marks, or the whole line in bold */
  span_t core;  /* the line without marks, bullet and leading decoration */
  long long number;
  span_t title; /* LN_STEP: the step's title */
  int field;    /* LN_FIELD: F_* */
  span_t value; /* LN_FIELD: trimmed; decoration kept for F_ARGS */
} line_t;

/* Classifies one line of a block (without its '\n'). */
void plan_classify(span_t raw, line_t *ln);
/* True for a ``` or ~~~ fence line. */
bool plan_is_fence(span_t t);
/* A title with decoration and a trailing ':' trimmed. */
span_t plan_step_title(span_t s);

#endif
