/* plan_span: the small helpers under every plan module (see plan_span.h). */
#include "plan_span.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Drops markdown decoration (and blanks) at both ends. */
span_t plan_strip_decor(span_t s) {
  s = trim(s);
  while (s.n && (is_decor(s.p[0]) || is_blank(s.p[0])))
    s.p++, s.n--;
  while (s.n && (is_decor(s.p[s.n - 1]) || is_blank(s.p[s.n - 1])))
    s.n--;
  return s;
}

/* Case-insensitive ASCII prefix test. */
bool plan_ihas_prefix(span_t s, const char *prefix) {
  size_t n = strlen(prefix);
  if (s.n < n)
    return false;
  for (size_t i = 0; i < n; i++)
    if (to_lower(s.p[i]) != prefix[i])
      return false;
  return true;
}

/* A JSON string of s: invalid UTF-8 bytes become '?', at most max_chars characters and max_bytes bytes. */
json_t *plan_text_json(span_t s, size_t max_chars, size_t max_bytes) {
  char *out = malloc(s.n + 1);
  if (!out)
    return json_string("");
  const unsigned char *u = (const unsigned char *)s.p;
  size_t len = 0, chars = 0;
  for (size_t i = 0; i < s.n && chars < max_chars;) {
    size_t k = util_utf8_seq(u + i, s.n - i), w = k ? k : 1;
    if (len + w > max_bytes)
      break;
    if (k)
      memcpy(out + len, s.p + i, k);
    else
      out[len] = '?';
    len += w, i += w, chars++;
  }
  json_t *j = json_stringn(out, len);
  free(out);
  return j ? j : json_string("");
}

/* p past blanks. */
const char *plan_skip_spaces(const char *p) {
  while (is_blank(*p))
    p++;
  return p;
}

/* A number as an integer JSON value when whole, else a real. */
json_t *plan_number_json(double v) {
  return v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v) : json_real(v);
}

/* Reads a step number (at most PLAN_MAX_NUMBER); false when no digits. */
bool plan_read_step_number(span_t s, size_t *i, long long *out) {
  long long v = 0;
  size_t j = *i;
  for (; j < s.n && is_digit(s.p[j]); j++)
    v = v < PLAN_MAX_NUMBER ? v * 10 + (s.p[j] - '0') : v;
  if (j == *i)
    return false;
  *out = v > PLAN_MAX_NUMBER ? PLAN_MAX_NUMBER : v;
  *i = j;
  return true;
}

/* True when s is one of the NULL-terminated list. */
bool plan_in_list(const char *s, const char *const *list) {
  for (; *list; list++)
    if (strcmp(s, *list) == 0)
      return true;
  return false;
}
