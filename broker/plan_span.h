/* plan_span: the bottom of the plan modules (no plan module below it): the
 * limits every part keeps, spans of text, and the small helpers the parser,
 * the line classifier, the value readers, the checker and the editor share.
 * Layers, each using only those under it:
 *   plan_span  <-  plan_text (values), plan_lines (lines)  <-  plan.c (parser)
 *   plan_span  <-  plan_check (validation, order)  <-  plan_format (approval screen)
 *   plan_span, plan_text  <-  plan_edit (edits, templates)
 * Not for modules outside the plan_*.c files. */
#ifndef CADRE_PLAN_SPAN_H
#define CADRE_PLAN_SPAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "span.h"

#define PLAN_MAX_STEPS 100
#define PLAN_MAX_ARGS (64 * 1024) /* bytes of one step's arguments */
#define PLAN_MAX_TITLE 500        /* characters of a title */
#define PLAN_MAX_DESC 4000        /* bytes of a step's description */
#define PLAN_MAX_DEPS 100         /* dependencies of one step */
#define PLAN_MAX_NUMBER 999999999LL
#define PLAN_DEFAULT_SECONDS 60 /* a step's estimate when it gives none */
#define PLAN_NAME_MAX 64        /* bytes of an agent or tool name */

/* s as a JSON string: invalid UTF-8 bytes become '?', at most max_chars characters and max_bytes bytes. */
json_t *plan_text_json(span_t s, size_t max_chars, size_t max_bytes);
/* s without markdown decoration (* _ `) and blanks at either end. */
span_t plan_strip_decor(span_t s);
/* Prefix test ignoring ASCII case (prefix given in lowercase). */
bool plan_ihas_prefix(span_t s, const char *prefix);
const char *plan_skip_spaces(const char *p);
bool plan_in_list(const char *s, const char *const *list);
/* An integer JSON number when v is whole, else a real. */
json_t *plan_number_json(double v);
/* Reads a step number at s.p[*i] (capped at PLAN_MAX_NUMBER) and advances *i; false when no digits. */
bool plan_read_step_number(span_t s, size_t *i, long long *out);

#endif
