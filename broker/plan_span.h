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

#define PLAN_MAX_STEPS 100
#define PLAN_MAX_ARGS (64 * 1024) /* bytes of one step's arguments */
#define PLAN_MAX_TITLE 500        /* characters of a title */
#define PLAN_MAX_DESC 4000        /* bytes of a step's description */
#define PLAN_MAX_DEPS 100         /* dependencies of one step */
#define PLAN_MAX_NUMBER 999999999LL
#define PLAN_DEFAULT_SECONDS 60 /* a step's estimate when it gives none */
#define PLAN_NAME_MAX 64        /* bytes of an agent or tool name */

typedef struct {
  const char *p;
  size_t n;
} span_t;

static inline bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

static inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

static inline char to_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static inline bool is_decor(char c) { return c == '*' || c == '_' || c == '`'; }

static inline span_t span_from(const char *b, const char *e) { return (span_t){b, (size_t)(e - b)}; }

static inline span_t trim(span_t s) {
  while (s.n && is_blank(s.p[0]))
    s.p++, s.n--;
  while (s.n && is_blank(s.p[s.n - 1]))
    s.n--;
  return s;
}

/* s as a JSON string: invalid UTF-8 bytes become '?', at most max_chars characters and max_bytes bytes. */
json_t *plan_text_json(span_t s, size_t max_chars, size_t max_bytes);
/* s without markdown decoration (* _ `) and blanks at either end. */
span_t plan_strip_decor(span_t s);
/* Prefix tests; the i-version ignores ASCII case (prefix given in lowercase). */
bool plan_has_prefix(span_t s, const char *prefix);
bool plan_ihas_prefix(span_t s, const char *prefix);
const char *plan_skip_spaces(const char *p);
bool plan_in_list(const char *s, const char *const *list);
/* An integer JSON number when v is whole, else a real. */
json_t *plan_number_json(double v);
/* Reads a step number at s.p[*i] (capped at PLAN_MAX_NUMBER) and advances *i; false when no digits. */
bool plan_read_step_number(span_t s, size_t *i, long long *out);

#endif
