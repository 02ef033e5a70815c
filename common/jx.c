/* jx.c: typed reads of JSON objects. */
#include "jx.h"

#include <math.h>

static json_t *get(const json_t *obj, const char *key) {
  return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

const char *jx_str(const json_t *obj, const char *key, const char *dflt) {
  json_t *v = get(obj, key);
  return json_is_string(v) ? json_string_value(v) : dflt;
}

json_int_t jx_int(const json_t *obj, const char *key, json_int_t dflt) {
  json_t *v = get(obj, key);
  if (json_is_integer(v))
    return json_integer_value(v);
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d == floor(d) && fabs(d) < 9e15)
      return (json_int_t)d;
  }
  return dflt;
}

double jx_num(const json_t *obj, const char *key, double dflt) {
  json_t *v = get(obj, key);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

bool jx_bool(const json_t *obj, const char *key, bool dflt) {
  json_t *v = get(obj, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *jx_obj(const json_t *obj, const char *key) {
  json_t *v = get(obj, key);
  return json_is_object(v) ? v : NULL;
}

json_t *jx_arr(const json_t *obj, const char *key) {
  json_t *v = get(obj, key);
  return json_is_array(v) ? v : NULL;
}

bool jx_has_str(const json_t *obj, const char *key) {
  const char *s = jx_str(obj, key, NULL);
  return s && *s;
}
