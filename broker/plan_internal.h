/* plan_internal: what the plan_*.c files share; not for other modules.
 *
 * plan_text.c turns spans of a model's text into values (names, numbers,
 * durations, costs, step lists, UTF-8-clean JSON strings); plan_lines.c
 * classifies the lines of a [PLAN] block; plan.c finds the block and builds
 * the plan from its lines. */
#ifndef CADRE_PLAN_INTERNAL_H
#define CADRE_PLAN_INTERNAL_H

#include "plan.h"

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

enum { LN_BLANK, LN_SKIP, LN_STEP, LN_FIELD, LN_TEXT };
enum { F_AGENT, F_TOOL, F_ARGS, F_DEPS, F_TIME, F_DESC, F_TITLE, F_TOTAL, F_COST };

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

/* ---- plan_text.c ---- */

/* s as a JSON string: invalid UTF-8 bytes become '?', at most max_chars characters and max_bytes bytes. */
json_t *plan_text_json(span_t s, size_t max_chars, size_t max_bytes);
/* s without markdown decoration (* _ `) and blanks at either end. */
span_t plan_strip_decor(span_t s);
/* Prefix tests; the i-version ignores ASCII case (prefix given in lowercase). */
bool plan_has_prefix(span_t s, const char *prefix);
bool plan_ihas_prefix(span_t s, const char *prefix);
const char *plan_skip_spaces(const char *p);
bool plan_in_list(const char *s, const char *const *list);
/* A cost like "$0.06" or "~$0.05-0.08" (the upper bound); -1 when unreadable. */
double plan_parse_cost(span_t v);
/* An integer JSON number when v is whole, else a real. */
json_t *plan_number_json(double v);
/* The leading name in v ("researcher" from "`Researcher` (small model)"), lowercased; "" if none. */
json_t *plan_name_json(span_t v);
/* True for tool values that mean "no tool": none, -, N/A, null, empty. */
bool plan_is_no_tool(span_t v);
/* Step numbers named in "Step 1, Step 3", "1, 3", "Steps 1 and 3", "Steps 1-3"; none/-: []. */
json_t *plan_deps_json(span_t v);
/* Reads a step number at s.p[*i] (capped at PLAN_MAX_NUMBER) and advances *i; false when no digits. */
bool plan_read_step_number(span_t s, size_t *i, long long *out);

/* ---- plan_lines.c ---- */

/* Classifies one line of a block (without its '\n'). */
void plan_classify(span_t raw, line_t *ln);
/* True for a ``` or ~~~ fence line. */
bool plan_is_fence(span_t t);
/* A title with decoration and a trailing ':' trimmed. */
span_t plan_step_title(span_t s);

#endif
