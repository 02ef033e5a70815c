/* plan_edit: edits to a pending plan and template instantiation (see plan.h).
 *
 * An edit works on a deep copy, so a failed edit leaves nothing half done. The
 * setters read their field from a JSON object: the edit itself, or the new
 * step of an add_step, so both accept the same values. */
#include "jx.h"
#include "plan.h"
#include "plan_span.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEMPLATE_MAX_TEXT (256 * 1024) /* bytes of one string after substitution */
#define PARAM_MAX 64                   /* bytes of a {{name}} */

typedef bool (*setter_fn)(json_t *step, const json_t *src, char *err, size_t errlen);

/* Sets err (printf-style) and returns false. */
__attribute__((format(printf, 3, 4))) static bool fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen)
    vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return false;
}

static bool is_space(char c) {
  return is_blank(c) || c == '\n';
}

/* A copy of s trimmed, ASCII lowercased when lower, cut at max bytes (on a character boundary). */
static json_t *clean_string(const char *s, size_t max, bool lower) {
  while (is_space(*s))
    s++;
  size_t n = strlen(s);
  while (n && is_space(s[n - 1]))
    n--;
  if (n > max)
    for (n = max; n && ((unsigned char)s[n] & 0xC0) == 0x80; n--)
      ;
  char *out = strndup(s, n);
  if (!out)
    return NULL;
  for (char *p = out; lower && *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');
  json_t *j = json_string(out);
  free(out);
  return j;
}

/* Byte length of the first max characters of s. */
static size_t chars_to_bytes(const char *s, size_t max) {
  size_t i = 0;
  for (size_t chars = 0; s[i] && chars < max; chars++)
    for (i++; ((unsigned char)s[i] & 0xC0) == 0x80; i++)
      ;
  return i;
}

/* ---- setters ------------------------------------------------------------ */

/* Sets step[key] to v (taken) when it is a non-empty string; else fails with why. */
static bool set_text(json_t *step, const char *key, json_t *v, const char *why, char *err, size_t errlen) {
  if (!v || !json_string_length(v)) {
    json_decref(v);
    return fail(err, errlen, "%s", why);
  }
  json_object_set_new(step, key, v);
  return true;
}

/* A new role runs on its own profile: a profile the step named goes. */
static bool set_agent(json_t *step, const json_t *src, char *err, size_t errlen) {
  const char *a = jx_str(src, "agent", NULL);
  json_t *v = a ? clean_string(a, PLAN_NAME_MAX, true) : NULL;
  if (!set_text(step, "agent", v, "\"agent\" must be a role name", err, errlen))
    return false;
  json_object_del(step, "profile");
  return true;
}

/* src[key] as a cleaned name in *out (NULL: null, absent, or blank); false when it is neither a string nor null. */
static bool name_or_null(const json_t *src, const char *key, json_t **out) {
  const json_t *t = json_object_get(src, key);
  *out = json_is_string(t) ? clean_string(json_string_value(t), PLAN_NAME_MAX, false) : NULL;
  if (*out && !json_string_length(*out))
    json_decref(*out), *out = NULL;
  return json_is_null(t) || json_is_string(t);
}

/* The profile (a name; null, "" or "default": the role's own) and, when given, its role as the step's agent. */
static bool set_profile(json_t *step, const json_t *src, char *err, size_t errlen) {
  json_t *v;
  if (!name_or_null(src, "profile", &v))
    return fail(err, errlen, "\"profile\" must be a profile name, or null for the role's own");
  if (!v || strcmp(json_string_value(v), "default") == 0) {
    json_decref(v);
    json_object_del(step, "profile");
    return true;
  }
  const char *role = jx_str(src, "role", NULL);
  json_t *r = role ? clean_string(role, PLAN_NAME_MAX, true) : NULL;
  if (r && !set_text(step, "agent", r, "\"role\" must be a role name", err, errlen)) {
    json_decref(v);
    return false;
  }
  json_object_set_new(step, "profile", v);
  return true;
}

static bool set_tool(json_t *step, const json_t *src, char *err, size_t errlen) {
  json_t *v;
  if (!name_or_null(src, "tool", &v))
    return fail(err, errlen, "\"tool\" must be a tool name or null");
  if (v && strcasecmp(json_string_value(v), "none") == 0)
    json_decref(v), v = NULL;
  json_object_set_new(step, "tool", v ? v : json_null());
  return true;
}

/* Arguments as an object, null, or JSON text (kept as arguments_text when it is no object). */
static bool set_arguments(json_t *step, const json_t *src, char *err, size_t errlen) {
  const json_t *a = json_object_get(src, "arguments");
  if (!a || !(json_is_object(a) || json_is_null(a) || json_is_string(a)))
    return fail(err, errlen, "\"arguments\" must be a JSON object, null or JSON text");
  size_t size = json_is_string(a) ? json_string_length(a) : json_dumpb(a, NULL, 0, JSON_COMPACT);
  if (size > PLAN_MAX_ARGS)
    return fail(err, errlen, "\"arguments\" are longer than %d bytes", PLAN_MAX_ARGS);
  json_object_del(step, "arguments_text");
  json_object_del(step, "arguments_truncated");
  if (!json_is_string(a)) {
    json_object_set_new(step, "arguments", json_deep_copy(a));
    return true;
  }
  json_t *j = json_loads(json_string_value(a), JSON_DECODE_ANY, NULL);
  if (json_is_object(j)) {
    json_object_set_new(step, "arguments", j);
    return true;
  }
  json_decref(j);
  json_object_set_new(step, "arguments", json_null());
  if (json_string_length(a))
    json_object_set(step, "arguments_text", (json_t *)a);
  return true;
}

static bool has_number(const json_t *arr, json_int_t n) {
  for (size_t i = 0; i < json_array_size(arr); i++)
    if (json_integer_value(json_array_get(arr, i)) == n)
      return true;
  return false;
}

/* Step numbers from text: every number in it ("Step 1, Step 3", "1 3"). */
static json_t *numbers_in(const char *s) {
  json_t *out = json_array();
  while (*s && json_array_size(out) < PLAN_MAX_DEPS) {
    if (!is_digit(*s)) {
      s++;
      continue;
    }
    json_int_t n = 0;
    for (; is_digit(*s); s++)
      n = n < PLAN_MAX_NUMBER ? n * 10 + (*s - '0') : n;
    if (!has_number(out, n))
      json_array_append_new(out, json_integer(n));
  }
  return out;
}

/* Dependencies as an array of step numbers, or text naming them; duplicates dropped. */
static bool set_dependencies(json_t *step, const json_t *src, char *err, size_t errlen) {
  const json_t *d = json_object_get(src, "dependencies");
  if (json_is_string(d)) {
    json_object_set_new(step, "dependencies", numbers_in(json_string_value(d)));
    return true;
  }
  if (!json_is_array(d) && !json_is_null(d))
    return fail(err, errlen, "\"dependencies\" must be an array of step numbers");
  json_t *out = json_array();
  for (size_t i = 0; i < json_array_size(d); i++) {
    const json_t *n = json_array_get(d, i);
    if (!json_is_integer(n)) {
      json_decref(out);
      return fail(err, errlen, "\"dependencies\" must be an array of step numbers");
    }
    if (!has_number(out, json_integer_value(n)) && json_array_size(out) < PLAN_MAX_DEPS)
      json_array_append_new(out, json_integer(json_integer_value(n)));
  }
  json_object_set_new(step, "dependencies", out);
  return true;
}

static bool set_title(json_t *step, const json_t *src, char *err, size_t errlen) {
  const char *t = jx_str(src, "title", NULL);
  json_t *v = t ? clean_string(t, chars_to_bytes(t, PLAN_MAX_TITLE), false) : NULL;
  return set_text(step, "title", v, "\"title\" must be a non-empty string", err, errlen);
}

/* Seconds as a number, or a duration like "2m 30s"; from "seconds" or "estimated_seconds". */
static bool set_estimate(json_t *step, const json_t *src, char *err, size_t errlen) {
  const json_t *s = json_object_get(src, "seconds");
  if (!s)
    s = json_object_get(src, "estimated_seconds");
  double v = json_is_number(s) ? json_number_value(s) : plan_parse_duration(json_string_value(s));
  if (!(v >= 0 && v <= 1e8))
    return fail(err, errlen, "\"seconds\" must be a number of seconds or a duration like \"2m 30s\"");
  json_object_set_new(step, "estimated_seconds", plan_number_json(v));
  json_object_del(step, "estimated_seconds_default");
  return true;
}

/* ---- edits on the plan -------------------------------------------------- */

/* Index of the step numbered num, or -1. */
static long find_step(const json_t *steps, json_int_t num) {
  for (size_t i = 0; i < json_array_size(steps); i++)
    if (jx_int(json_array_get(steps, i), "number", 0) == num)
      return (long)i;
  return -1;
}

/* Removes step num and every dependency on it. */
static void remove_step(json_t *steps, json_int_t num) {
  long i = find_step(steps, num);
  json_array_remove(steps, (size_t)i);
  for (size_t k = 0; k < json_array_size(steps); k++) {
    json_t *deps = jx_arr(json_array_get(steps, k), "dependencies");
    for (size_t d = json_array_size(deps); d-- > 0;)
      if (json_integer_value(json_array_get(deps, d)) == num)
        json_array_remove(deps, d);
  }
}

static json_int_t next_number(const json_t *steps) {
  json_int_t max = 0;
  for (size_t i = 0; i < json_array_size(steps); i++) {
    json_int_t n = jx_int(json_array_get(steps, i), "number", 0);
    max = n > max ? n : max;
  }
  return max + 1;
}

/* Sets the new step's optional fields that src holds. */
static bool fill_step(json_t *step, const json_t *src, char *err, size_t errlen) {
  static const struct {
    const char *key;
    setter_fn fn;
  } fields[] = {{"agent", set_agent},
                {"profile", set_profile},
                {"tool", set_tool},
                {"arguments", set_arguments},
                {"dependencies", set_dependencies},
                {"seconds", set_estimate},
                {"estimated_seconds", set_estimate}};
  if (!set_title(step, src, err, errlen))
    return false;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (json_object_get(src, fields[i].key) && !fields[i].fn(step, src, err, errlen))
      return false;
  const char *desc = jx_str(src, "description", NULL);
  if (desc && *desc)
    json_object_set_new(step, "description", json_string(desc));
  return true;
}

/* Adds a step (number given and free, or the next one), kept in number order. */
static bool add_step(json_t *steps, const json_t *src, char *err, size_t errlen) {
  if (!json_is_object(src))
    return fail(err, errlen, "\"step\" must be an object with the new step's fields");
  if (json_array_size(steps) >= PLAN_MAX_STEPS)
    return fail(err, errlen, "the plan already has %d steps", PLAN_MAX_STEPS);
  const json_t *n = json_object_get(src, "number");
  if (n && (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 999999999))
    return fail(err, errlen, "\"number\" must be a step number");
  json_int_t num = n ? json_integer_value(n) : next_number(steps);
  if (find_step(steps, num) >= 0)
    return fail(err, errlen, "Step %lld already exists", (long long)num);
  json_t *step =
      json_pack("{s:I,s:s,s:s,s:n,s:n,s:[],s:i,s:b}", "number", (json_int_t)num, "title", "", "agent", "", "tool",
                "arguments", "dependencies", "estimated_seconds", PLAN_DEFAULT_SECONDS, "estimated_seconds_default", 1);
  if (!step || !fill_step(step, src, err, errlen)) {
    json_decref(step);
    return false;
  }
  size_t at = 0;
  while (at < json_array_size(steps) && jx_int(json_array_get(steps, at), "number", 0) < num)
    at++;
  json_array_insert_new(steps, at, step);
  return true;
}

/* One edit on the copy; the step ops find their step first. */
static bool apply(json_t *plan, const json_t *edit, const char *op, char *err, size_t errlen) {
  static const struct {
    const char *op;
    setter_fn fn;
  } ops[] = {{"set_agent", set_agent},
             {"set_profile", set_profile},
             {"set_arguments", set_arguments},
             {"set_tool", set_tool},
             {"set_dependencies", set_dependencies},
             {"set_title", set_title},
             {"set_estimate", set_estimate},
             {"remove_step", NULL}};
  json_t *steps = jx_arr(plan, "steps");
  if (strcmp(op, "add_step") == 0)
    return add_step(steps, json_object_get(edit, "step"), err, errlen);
  size_t k = 0;
  while (k < sizeof ops / sizeof ops[0] && strcmp(ops[k].op, op) != 0)
    k++;
  if (k == sizeof ops / sizeof ops[0])
    return fail(err, errlen,
                "unknown edit op \"%.64s\" (known: set_agent, set_profile, set_arguments, set_tool, "
                "set_dependencies, set_title, set_estimate, remove_step, add_step)",
                op);
  const json_t *n = json_object_get(edit, "step");
  if (!json_is_integer(n))
    return fail(err, errlen, "%.64s needs \"step\" (a step number)", op);
  long i = find_step(steps, json_integer_value(n));
  if (i < 0)
    return fail(err, errlen, "Step %lld does not exist", (long long)json_integer_value(n));
  if (!ops[k].fn) {
    remove_step(steps, json_integer_value(n));
    return true;
  }
  return ops[k].fn(json_array_get(steps, (size_t)i), edit, err, errlen);
}

/* {"op":"replace","text":...}: the plan the text holds (a [PLAN] block, or its inside), read by plan_parse. */
static json_t *replace(const json_t *edit, char *err, size_t errlen) {
  const char *text = jx_str(edit, "text", NULL);
  if (!text) {
    fail(err, errlen, "replace needs \"text\" (the plan as text)");
    return NULL;
  }
  char *wrapped = NULL;
  if (!strstr(text, "[PLAN]") && !strstr(text, "[plan]")) {
    size_t n = strlen(text) + 32;
    wrapped = malloc(n);
    if (!wrapped) {
      fail(err, errlen, "out of memory");
      return NULL;
    }
    snprintf(wrapped, n, "[PLAN]\n%s\n[/PLAN]\n", text);
  }
  json_t *plan = plan_parse(wrapped ? wrapped : text, err, errlen);
  free(wrapped);
  if (!plan && err && errlen && !err[0])
    fail(err, errlen, "the text holds no plan (expected \"### Step 1: title\" lines)");
  return plan;
}

/* Applies one edit to a copy of a pending plan; NULL with err set when it cannot. */
json_t *plan_edit(const json_t *plan, const json_t *edit, char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!jx_arr(plan, "steps")) {
    fail(err, errlen, "not a plan (no \"steps\" array)");
    return NULL;
  }
  const char *op = jx_str(edit, "op", NULL);
  if (!op) {
    fail(err, errlen, "an edit needs \"op\"");
    return NULL;
  }
  if (strcmp(op, "replace") == 0)
    return replace(edit, err, errlen);
  json_t *copy = json_deep_copy(plan);
  if (!copy || !apply(copy, edit, op, err, errlen)) {
    json_decref(copy);
    return NULL;
  }
  return copy;
}

/* ---- templates ---------------------------------------------------------- */

/* The text a value stands for in a template: strings as they are, numbers and booleans written out. */
static bool value_text(const json_t *v, char *tmp, size_t size, const char **out) {
  if (json_is_string(v))
    *out = json_string_value(v);
  else if (json_is_integer(v))
    snprintf(tmp, size, "%lld", (long long)json_integer_value(v)), *out = tmp;
  else if (json_is_real(v))
    snprintf(tmp, size, "%g", json_real_value(v)), *out = tmp;
  else if (json_is_boolean(v))
    *out = json_is_true(v) ? "true" : "false";
  else
    return false;
  return true;
}

static void note_missing(json_t *missing, const char *name, size_t n) {
  for (size_t i = 0; i < json_array_size(missing); i++) {
    const char *m = json_string_value(json_array_get(missing, i));
    if (strlen(m) == n && memcmp(m, name, n) == 0)
      return;
  }
  json_array_append_new(missing, json_stringn(name, n));
}

/* Length of the placeholder name in "{{ name }}" at p (name start and length out), else 0. */
static size_t placeholder(const char *p, const char **name, size_t *n) {
  if (p[0] != '{' || p[1] != '{')
    return 0;
  const char *s = p + 2;
  while (*s == ' ')
    s++;
  const char *e = s;
  while (is_alpha(*e) || is_digit(*e) || *e == '_' || *e == '-' || *e == '.')
    e++;
  const char *q = e;
  while (*q == ' ')
    q++;
  if (e == s || e - s > PARAM_MAX || q[0] != '}' || q[1] != '}')
    return 0;
  *name = s, *n = (size_t)(e - s);
  return (size_t)(q + 2 - p);
}

/* s with its placeholders replaced; NULL when it has none to replace. */
static char *substitute(const char *s, const json_t *values, json_t *missing) {
  char *out = NULL, tmp[64];
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  bool changed = false;
  if (!f)
    return NULL;
  for (const char *p = s; *p;) {
    const char *name, *text;
    size_t n, k = placeholder(p, &name, &n);
    char key[PARAM_MAX + 1];
    if (k) {
      memcpy(key, name, n);
      key[n] = '\0';
    }
    if (k && value_text(json_object_get(values, key), tmp, sizeof tmp, &text) &&
        (size_t)ftell(f) + strlen(text) <= TEMPLATE_MAX_TEXT) {
      fputs(text, f), p += k, changed = true;
      continue;
    }
    if (k)
      note_missing(missing, name, n);
    size_t run = k ? k : 1;
    fwrite(p, 1, run, f);
    p += run;
  }
  fclose(f);
  if (!changed)
    free(out), out = NULL;
  return out;
}

static json_t *string_or_empty(const char *s) {
  json_t *j = json_string(s);
  return j ? j : json_string("");
}

static void substitute_all(json_t *v, const json_t *values, json_t *missing);

/* A string item with its placeholders filled (a new string), or NULL when
 * there were none; containers are filled in place (NULL). */
static json_t *filled(json_t *item, const json_t *values, json_t *missing) {
  if (!json_is_string(item)) {
    substitute_all(item, values, missing);
    return NULL;
  }
  char *s = substitute(json_string_value(item), values, missing);
  json_t *j = s ? string_or_empty(s) : NULL;
  free(s);
  return j;
}

/* Substitutes in every string under v (values of objects and arrays; keys stay). */
static void substitute_all(json_t *v, const json_t *values, json_t *missing) {
  const char *key;
  json_t *item, *j;
  if (json_is_object(v)) {
    json_object_foreach(v, key, item) if ((j = filled(item, values, missing))) json_object_set_new(v, key, j);
  } else if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if ((j = filled(json_array_get(v, i), values, missing)))
        json_array_set_new(v, i, j);
  }
}

/* Arguments text that became a JSON object once the placeholders were filled moves to "arguments". */
static void reparse_arguments(json_t *plan) {
  json_t *steps = jx_arr(plan, "steps");
  for (size_t i = 0; i < json_array_size(steps); i++) {
    json_t *st = json_array_get(steps, i);
    const char *text = jx_str(st, "arguments_text", NULL);
    json_t *j = text && !jx_bool(st, "arguments_truncated", false) ? json_loads(text, 0, NULL) : NULL;
    if (json_is_object(j)) {
      json_object_set_new(st, "arguments", j);
      json_object_del(st, "arguments_text");
    } else {
      json_decref(j);
    }
  }
}

/* Substitutes {{name}} placeholders in every string of the plan with values; unknown names listed in *missing. */
json_t *plan_instantiate(const json_t *plan, const json_t *values, json_t **missing) {
  json_t *copy = json_deep_copy(plan), *miss = json_array();
  if (copy) {
    substitute_all(copy, values, miss);
    reparse_arguments(copy);
  }
  if (missing)
    *missing = miss;
  else
    json_decref(miss);
  return copy;
}
