/* proto_profile.c: the profile a turn carries, written by the broker from its
 * config and read by the node, both driven by PROTO_PROFILE_FIELDS and
 * PROTO_TOOL_SETTINGS in proto/messages.def. */
#include <string.h>

#include "proto.h"

/* Writers per kind: absent strings and JSON values are left out. */
static void put_STR(json_t *o, const char *key, const char *v) {
  if (v)
    json_object_set_new(o, key, json_string(v));
}

static void put_INT(json_t *o, const char *key, int64_t v) {
  json_object_set_new(o, key, json_integer(v));
}

static void put_NUM(json_t *o, const char *key, double v) {
  json_object_set_new(o, key, json_real(v));
}

static void put_BOOL(json_t *o, const char *key, bool v) {
  json_object_set_new(o, key, json_boolean(v));
}

static void put_ANY(json_t *o, const char *key, const json_t *v) {
  if (v && !json_is_null(v))
    json_object_set(o, key, (json_t *)v);
}

json_t *proto_profile_wire(const cadre_profile_t *p, const cadre_tools_config_t *tc) {
  json_t *o = p ? json_object() : NULL;
  if (!o)
    return NULL;
#define PUT(name, KIND, doc) put_##KIND(o, #name, p->name);
  PROTO_PROFILE_FIELDS(PUT)
#undef PUT
  if (tc) {
    json_t *settings = json_object();
#define PUT(name, KIND, doc) put_##KIND(settings, #name, tc->name);
    PROTO_TOOL_SETTINGS(PUT)
#undef PUT
    json_object_set_new(o, "tool_settings", settings);
  }
  return o;
}

/* Readers per kind: true (and *out set) when v has the kind. */
static bool get_STR(const json_t *v, const char **out) {
  return json_is_string(v) ? (*out = json_string_value(v), true) : false;
}

static bool get_INT(const json_t *v, int64_t *out) {
  return json_is_integer(v) ? (*out = json_integer_value(v), true) : false;
}

static bool get_NUM(const json_t *v, double *out) {
  return json_is_number(v) ? (*out = json_number_value(v), true) : false;
}

static bool get_BOOL(const json_t *v, bool *out) {
  return json_is_boolean(v) ? (*out = json_is_true(v), true) : false;
}

static bool get_ANY(const json_t *v, const json_t **out) {
  return v && !json_is_null(v) ? (*out = v, true) : false;
}

void proto_profile_read(const json_t *wire, proto_profile_t *out) {
  memset(out, 0, sizeof *out);
  if (!json_is_object(wire))
    return;
#define GET(name, KIND, doc)                                \
  if (get_##KIND(json_object_get(wire, #name), &out->name)) \
    out->has |= UINT32_C(1) << PROTO_P_##name;
  PROTO_PROFILE_FIELDS(GET)
#undef GET
  const json_t *settings = json_object_get(wire, "tool_settings");
#define GET(name, KIND, doc)                                         \
  if (get_##KIND(json_object_get(settings, #name), &out->tool.name)) \
    out->tool_has |= UINT32_C(1) << PROTO_T_##name;
  PROTO_TOOL_SETTINGS(GET)
#undef GET
}
