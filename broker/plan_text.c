/* plan_text: the values inside a plan's lines (see plan_text.h), and
 * plan_parse_duration (see plan.h): "30s", "2m 30s", "90 seconds", "1.5 min",
 * "1h 5m", "1:30", "~30s", "about 2 minutes", ranges "30-60s" / "1 to 2 min"
 * (the upper bound counts). Everything copied out is valid UTF-8. */
#include "plan.h"
#include "plan_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_MAX_SECONDS 1e8 /* a little over three years: anything longer is a typo */
#define DEPS_TEXT_MAX 4096   /* bytes of a Dependencies value read */

/* Reads "12", "1.5" or ".5" at *p; advances past it. */
static bool read_number(const char **p, double *out) {
  const char *s = *p;
  double v = 0, scale = 1;
  int digits = 0;
  for (; is_digit(*s); s++, digits++)
    v = v * 10 + (*s - '0');
  if (*s == '.' && is_digit(s[1]))
    for (s++; is_digit(*s); s++, digits++)
      v += (*s - '0') * (scale /= 10);
  if (!digits)
    return false;
  *p = s, *out = v;
  return true;
}

/* Length of a range separator ("-", en dash, "to") followed by a number at p, else 0. */
static size_t range_len(const char *p) {
  const char *q = plan_skip_spaces(p);
  if (*q == '-')
    q++;
  else if (strncmp(q, "\xe2\x80\x93", 3) == 0 || strncmp(q, "\xe2\x80\x94", 3) == 0)
    q += 3;
  else if (to_lower(q[0]) == 't' && to_lower(q[1]) == 'o' && is_blank(q[2]))
    q += 2;
  else
    return 0;
  q = plan_skip_spaces(q);
  if (*q == '$' || *q == '~')
    q++;
  return is_digit(*q) || (*q == '.' && is_digit(q[1])) ? (size_t)(q - p) : 0;
}

/* A cost like "$0.06", "~$0.05-0.08" (upper bound) or "0.06 USD"; -1 when unreadable. */
double plan_parse_cost(span_t v) {
  char tmp[64];
  size_t n = v.n < sizeof tmp - 1 ? v.n : sizeof tmp - 1;
  memcpy(tmp, v.p, n);
  tmp[n] = '\0';
  const char *s = tmp;
  while (*s && !is_digit(*s) && !(*s == '.' && is_digit(s[1])))
    s++;
  double c;
  if (!read_number(&s, &c))
    return -1;
  size_t r = range_len(s);
  if (r) {
    s += r;
    if (!read_number(&s, &c))
      return -1;
  }
  return isfinite(c) && c < 1e9 ? c : -1;
}

/* Seconds per unit word, 1 for none, -1 when the word is no time unit. */
static double unit_seconds(const char *w, size_t n) {
  static const struct {
    const char *name;
    double secs;
  } units[] = {{"s", 1},      {"sec", 1},   {"secs", 1},    {"second", 1},   {"seconds", 1},
               {"m", 60},     {"min", 60},  {"mins", 60},   {"minute", 60},  {"minutes", 60},
               {"h", 3600},   {"hr", 3600}, {"hrs", 3600},  {"hour", 3600},  {"hours", 3600},
               {"ms", 0.001}, {"d", 86400}, {"day", 86400}, {"days", 86400}, {"sek", 1}};
  if (!n)
    return 1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strlen(units[i].name) == n && memcmp(units[i].name, w, n) == 0)
      return units[i].secs;
  return -1;
}

/* Skips "~", "about", "approx." and the like before a duration; false at an unknown word. */
static bool skip_approx(const char **p) {
  static const char *const words[] = {
      "about", "approx", "approximately", "around", "roughly", "circa", "ca", "est", "estimated",
      "up",    "to",     "under",         "max",    "maybe",   "~",     NULL};
  const char *s = *p;
  while (*s && !is_digit(*s) && !(*s == '.' && is_digit(s[1]))) {
    if (!is_alpha(*s)) {
      s++;
      continue;
    }
    const char *w = s;
    char low[16];
    size_t n = 0;
    for (; is_alpha(*s); s++)
      if (n < sizeof low - 1)
        low[n++] = to_lower(*s);
    low[n] = '\0';
    bool known = false;
    for (const char *const *k = words; *k && !known; k++)
      known = (size_t)(s - w) == n && strcmp(low, *k) == 0;
    if (!known)
      return false;
  }
  *p = s;
  return true;
}

/* Reads "1:30" or "1:02:03" at p (first number already read as v); false if no clock. */
static bool read_clock(const char **p, double v, double *out) {
  const char *s = *p;
  double parts[3] = {v, 0, 0};
  int n = 1;
  while (n < 3 && *s == ':' && is_digit(s[1])) {
    s++;
    if (!read_number(&s, &parts[n++]))
      return false;
  }
  if (n == 1)
    return false;
  *out = n == 2 ? parts[0] * 60 + parts[1] : parts[0] * 3600 + parts[1] * 60 + parts[2];
  *p = s;
  return true;
}

/* Seconds from "30s", "2m 30s", "90 seconds", "1.5 min", "1h", "45"; -1 when unreadable. */
double plan_parse_duration(const char *s) {
  if (!s || !skip_approx(&s))
    return -1;
  double total = 0, v, c;
  bool any = false;
  while (read_number(&s, &v)) {
    size_t r = range_len(s);
    if (r) {
      s += r; /* "30-60s", "1 to 2 min": the upper bound counts */
      continue;
    }
    if (read_clock(&s, v, &c)) {
      total += c, any = true;
    } else {
      const char *w = s = plan_skip_spaces(s);
      char low[16];
      size_t n = 0;
      for (; is_alpha(*s); s++)
        if (n < sizeof low)
          low[n++] = to_lower(*s);
      double unit = (size_t)(s - w) > sizeof low ? -1 : unit_seconds(low, n);
      if (unit < 0) {
        if (!any)
          return -1;
        break;
      }
      total += v * unit, any = true;
      if (*s == '.')
        s++;
    }
    if ((r = range_len(s)))
      total = 0, s += r; /* "1m - 2m" */
    s = plan_skip_spaces(s);
    if (*s == ',')
      s = plan_skip_spaces(s + 1);
    if (to_lower(s[0]) == 'a' && to_lower(s[1]) == 'n' && to_lower(s[2]) == 'd' && is_blank(s[3]))
      s = plan_skip_spaces(s + 3);
  }
  return any && isfinite(total) && total <= PLAN_MAX_SECONDS ? total : -1;
}

/* The leading name in v ("researcher" from "`Researcher` (small model)"), lowercased; empty if none. */
json_t *plan_name_json(span_t v) {
  char out[PLAN_NAME_MAX + 1];
  size_t n = 0;
  size_t i = 0;
  while (i < v.n && (is_decor(v.p[i]) || is_blank(v.p[i]) || v.p[i] == '"' || v.p[i] == '\'' || v.p[i] == '('))
    i++;
  for (; i < v.n && n < PLAN_NAME_MAX; i++) {
    char c = v.p[i];
    if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '-' && c != '.')
      break;
    out[n++] = to_lower(c);
  }
  while (n && (out[n - 1] == '.' || out[n - 1] == '-'))
    n--;
  return json_stringn(out, n);
}

/* True for tool values that mean "no tool": none, -, N/A, null, empty. */
bool plan_is_no_tool(span_t v) {
  static const char *const none[] = {"none",      "n/a",      "na",           "null",         "nil",   "no",
                                     "no tool",   "-",        "\xe2\x80\x94", "\xe2\x80\x93", "agent", "agent step",
                                     "sub-agent", "subagent", "(none)",       "n.a.",         "",      NULL};
  char low[32];
  v = plan_strip_decor(v);
  while (v.n && (v.p[0] == '"' || v.p[0] == '\'' || v.p[0] == '('))
    v.p++, v.n--;
  if (v.n >= sizeof low)
    return plan_ihas_prefix(v, "none ") || plan_ihas_prefix(v, "none(");
  for (size_t i = 0; i < v.n; i++)
    low[i] = to_lower(v.p[i]);
  low[v.n] = '\0';
  while (v.n && strchr(".\"')", low[v.n - 1]))
    low[--v.n] = '\0';
  return plan_in_list(low, none) || plan_ihas_prefix(v, "none ") || plan_ihas_prefix(v, "none(") ||
         plan_ihas_prefix(v, "none,");
}

/* Step numbers named in "Step 1, Step 3", "1, 3", "Steps 1 and 3", "Steps 1-3"; none, '-' or no digits: []. */
json_t *plan_deps_json(span_t v) {
  json_t *deps = json_array();
  int paren = 0;
  if (v.n > DEPS_TEXT_MAX)
    v.n = DEPS_TEXT_MAX;
  span_t w = plan_strip_decor(v);
  if (plan_ihas_prefix(w, "none") || plan_ihas_prefix(w, "n/a") || plan_ihas_prefix(w, "no ") ||
      plan_ihas_prefix(w, "nothing"))
    return deps; /* "None (runs alongside Step 2)" */
  for (size_t i = 0; i < v.n && json_array_size(deps) < PLAN_MAX_DEPS;) {
    char c = v.p[i];
    if (c == '(' || c == ')') {
      paren += c == '(' ? 1 : (paren > 0 ? -1 : 0);
      i++;
      continue;
    }
    long long a, b;
    if (paren || !plan_read_step_number(v, &i, &a)) {
      i += paren || !is_digit(c);
      continue;
    }
    b = a;
    char tmp[32];
    size_t k = v.n - i < sizeof tmp - 1 ? v.n - i : sizeof tmp - 1;
    memcpy(tmp, v.p + i, k);
    tmp[k] = '\0';
    size_t r = range_len(tmp);
    if (r) {
      size_t j = i + r;
      if (plan_read_step_number(v, &j, &b) && b >= a && b - a < PLAN_MAX_DEPS)
        i = j;
      else
        b = a;
    }
    for (long long n = a; n <= b && json_array_size(deps) < PLAN_MAX_DEPS; n++) {
      bool seen = false;
      for (size_t x = 0; x < json_array_size(deps) && !seen; x++)
        seen = json_integer_value(json_array_get(deps, x)) == n;
      if (!seen)
        json_array_append_new(deps, json_integer(n));
    }
  }
  return deps;
}
