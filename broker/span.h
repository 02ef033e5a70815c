/* span: a piece of text (pointer and length, not NUL-terminated) and the byte
 * classes and small readers that the two text parsers of the broker, the
 * [PLAN] parser (plan_*.c) and the [SUMMARY] parser (summary.c), share. */
#ifndef CADRE_SPAN_H
#define CADRE_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct {
  const char *p;
  size_t n;
} span_t;

static inline bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static inline bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static inline char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static inline bool is_decor(char c) {
  return c == '*' || c == '_' || c == '`';
}

static inline span_t span_from(const char *b, const char *e) {
  return (span_t){b, (size_t)(e - b)};
}

/* s without blanks at either end. */
static inline span_t trim(span_t s) {
  while (s.n && is_blank(s.p[0]))
    s.p++, s.n--;
  while (s.n && is_blank(s.p[s.n - 1]))
    s.n--;
  return s;
}

/* Exact prefix test. */
static inline bool span_has_prefix(span_t s, const char *prefix) {
  size_t n = strlen(prefix);
  return s.n >= n && memcmp(s.p, prefix, n) == 0;
}

/* How span_label treats parentheses and dots. */
#define SPAN_LABEL_PAREN_BLANK 1u /* a parenthesis leaves a blank (else nothing) */
#define SPAN_LABEL_NO_DOTS 2u     /* dots are dropped */

/* A label ("Estimated time (s)") in the form lists compare with: lowercase,
 * what is in parentheses dropped, '-' and '_' as blanks, blanks collapsed and
 * trimmed. Writes at most max bytes and a NUL into out (max + 1 bytes); false
 * when the label is longer. */
bool span_label(span_t name, char *out, size_t max, unsigned flags);

#endif
