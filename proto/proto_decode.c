/* proto_decode: frame -> proto_msg_t.
 *
 * Three steps: proto_walk() checks the raw bytes (sizes, depth, budget), then
 * msgpack-c builds objects (safe now: every count is known to fit the frame),
 * then the envelope and the fields of the message type are validated and
 * copied out (strings to malloc'd C strings, maps/arrays to jansson).
 *
 * Duplicate keys: an envelope key ("v", "type", "id"), a member field of the
 * message type, or a key of a nested map that appears twice is rejected with
 * PROTO_E_MALFORMED. Repeated unknown keys are ignored like any unknown key.
 */
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"
#include "util.h"

typedef struct {
  proto_err_t *err;
  const char *type;  /* message wire name */
  const char *field; /* field being decoded */
} dec_t;

static const char *mp_kind(msgpack_object_type t) {
  switch (t) {
  case MSGPACK_OBJECT_NIL: return "nil";
  case MSGPACK_OBJECT_BOOLEAN: return "bool";
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return "float";
  case MSGPACK_OBJECT_STR: return "string";
  case MSGPACK_OBJECT_ARRAY: return "array";
  case MSGPACK_OBJECT_MAP: return "map";
  case MSGPACK_OBJECT_BIN: return "bin";
  default: return "ext";
  }
}

static proto_errcode_t dec_fail(const dec_t *d, proto_errcode_t code, const char *what) {
  return proto_err_set(d->err, code, "field \"%s\" of %s: %s", d->field, d->type, what);
}

static proto_errcode_t wrong_type(const dec_t *d, const char *want, const msgpack_object *o) {
  char what[64];
  snprintf(what, sizeof what, "expected %s, got %s", want, mp_kind(o->type));
  return dec_fail(d, PROTO_E_FIELD_TYPE, what);
}

static proto_errcode_t dec_int(const dec_t *d, const msgpack_object *o, int64_t *v) {
  char what[96];
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
    *v = o->via.i64;
    return PROTO_OK;
  }
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return wrong_type(d, "int", o);
  if (o->via.u64 > INT64_MAX) {
    snprintf(what, sizeof what, "integer %llu out of int64 range", (unsigned long long)o->via.u64);
    return dec_fail(d, PROTO_E_VALUE, what);
  }
  *v = (int64_t)o->via.u64;
  return PROTO_OK;
}

static proto_errcode_t get_num(const dec_t *d, const msgpack_object *o, double *v) {
  int64_t i;
  proto_errcode_t rc;
  if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) {
    *v = o->via.f64;
    return isfinite(*v) ? PROTO_OK : dec_fail(d, PROTO_E_VALUE, "number is not finite");
  }
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER && o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
    return wrong_type(d, "number", o);
  if ((rc = dec_int(d, o, &i)) == PROTO_OK)
    *v = (double)i;
  return rc;
}

static proto_errcode_t check_text(const dec_t *d, const char *s, size_t len, bool allow_nul, const char *what) {
  char msg[96];
  if (!allow_nul && memchr(s, '\0', len)) {
    snprintf(msg, sizeof msg, "%s contains a NUL byte", what);
    return dec_fail(d, PROTO_E_VALUE, msg);
  }
  if (!util_utf8_valid(s, len)) {
    snprintf(msg, sizeof msg, "%s is not valid UTF-8", what);
    return dec_fail(d, PROTO_E_VALUE, msg);
  }
  return PROTO_OK;
}

static proto_errcode_t to_json(const dec_t *d, const msgpack_object *o, json_t **out);

/* A container built from msgpack: given to *out on success, freed otherwise. */
static proto_errcode_t hand_over(proto_errcode_t rc, json_t *v, json_t **out) {
  if (rc != PROTO_OK)
    json_decref(v);
  else
    *out = v;
  return rc;
}

static proto_errcode_t map_to_json(const dec_t *d, const msgpack_object_map *m, json_t **out) {
  json_t *obj = json_object(), *v = NULL;
  proto_errcode_t rc = obj ? PROTO_OK : dec_fail(d, PROTO_E_NOMEM, "out of memory");
  for (uint32_t i = 0; rc == PROTO_OK && i < m->size; i++) {
    const msgpack_object *k = &m->ptr[i].key;
    if (k->type != MSGPACK_OBJECT_STR) {
      char what[64];
      snprintf(what, sizeof what, "map key is not a string (got %s)", mp_kind(k->type));
      rc = dec_fail(d, PROTO_E_NOT_MAP, what);
    } else if ((rc = check_text(d, k->via.str.ptr, k->via.str.size, false, "map key")) != PROTO_OK) {
    } else if (json_object_getn(obj, k->via.str.ptr, k->via.str.size)) {
      rc = dec_fail(d, PROTO_E_MALFORMED, "map repeats a key");
    } else if ((rc = to_json(d, &m->ptr[i].val, &v)) == PROTO_OK &&
               json_object_setn_new_nocheck(obj, k->via.str.ptr, k->via.str.size, v) != 0) {
      rc = dec_fail(d, PROTO_E_NOMEM, "out of memory");
    }
  }
  return hand_over(rc, obj, out);
}

static proto_errcode_t array_to_json(const dec_t *d, const msgpack_object_array *a, json_t **out) {
  json_t *arr = json_array(), *v = NULL;
  proto_errcode_t rc = arr ? PROTO_OK : dec_fail(d, PROTO_E_NOMEM, "out of memory");
  for (uint32_t i = 0; rc == PROTO_OK && i < a->size; i++)
    if ((rc = to_json(d, &a->ptr[i], &v)) == PROTO_OK && json_array_append_new(arr, v) != 0)
      rc = dec_fail(d, PROTO_E_NOMEM, "out of memory");
  return hand_over(rc, arr, out);
}

/* Converts a msgpack value to a new json reference (depth is bounded by proto_walk). */
static proto_errcode_t to_json(const dec_t *d, const msgpack_object *o, json_t **out) {
  proto_errcode_t rc = PROTO_OK;
  int64_t i = 0;
  double n = 0.0;
  switch (o->type) {
  case MSGPACK_OBJECT_MAP: return map_to_json(d, &o->via.map, out);
  case MSGPACK_OBJECT_ARRAY: return array_to_json(d, &o->via.array, out);
  case MSGPACK_OBJECT_NIL: *out = json_null(); return PROTO_OK;
  case MSGPACK_OBJECT_BOOLEAN: *out = json_boolean(o->via.boolean); return PROTO_OK;
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
  case MSGPACK_OBJECT_NEGATIVE_INTEGER:
    if ((rc = dec_int(d, o, &i)) == PROTO_OK)
      *out = json_integer(i);
    break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64:
    if ((rc = get_num(d, o, &n)) == PROTO_OK)
      *out = json_real(n);
    break;
  case MSGPACK_OBJECT_STR:
    if ((rc = check_text(d, o->via.str.ptr, o->via.str.size, true, "string")) == PROTO_OK)
      *out = json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
    break;
  default: return dec_fail(d, PROTO_E_VALUE, "bin and ext values are not allowed");
  }
  if (rc == PROTO_OK && !*out)
    rc = dec_fail(d, PROTO_E_NOMEM, "out of memory");
  return rc;
}

static proto_errcode_t decode_str(const dec_t *d, const msgpack_object *o, char **out) {
  proto_errcode_t rc;
  if (o->type != MSGPACK_OBJECT_STR)
    return wrong_type(d, "string", o);
  rc = check_text(d, o->via.str.ptr, o->via.str.size, false, "string");
  if (rc != PROTO_OK)
    return rc;
  *out = malloc((size_t)o->via.str.size + 1);
  if (!*out)
    return dec_fail(d, PROTO_E_NOMEM, "out of memory");
  memcpy(*out, o->via.str.ptr, o->via.str.size);
  (*out)[o->via.str.size] = '\0';
  return PROTO_OK;
}

static proto_errcode_t decode_json(const dec_t *d, proto_kind_t kind, const msgpack_object *o, json_t **out) {
  if (kind == PROTO_KIND_MAP && o->type != MSGPACK_OBJECT_MAP)
    return wrong_type(d, "map", o);
  if (kind == PROTO_KIND_LIST && o->type != MSGPACK_OBJECT_ARRAY)
    return wrong_type(d, "array", o);
  return to_json(d, o, out);
}

/* Decodes o into field f of msg and marks it present. */
static proto_errcode_t decode_field(dec_t *d, proto_msg_t *msg, proto_field_t f, const msgpack_object *o) {
  proto_errcode_t rc = PROTO_OK;
  d->field = proto_field_name(f);
  switch (f) {
#define F(name, KIND, doc)      \
  case PROTO_F_##name:          \
    rc = DEC_##KIND(msg->name); \
    break;
#define DEC_STR(p) decode_str(d, o, &(p))
#define DEC_INT(v) dec_int(d, o, &(v))
#define DEC_BOOL(v) (o->type == MSGPACK_OBJECT_BOOLEAN ? ((v) = o->via.boolean, PROTO_OK) : wrong_type(d, "bool", o))
#define DEC_NUM(v) get_num(d, o, &(v))
#define DEC_MAP(j) decode_json(d, PROTO_KIND_MAP, o, &(j))
#define DEC_LIST(j) decode_json(d, PROTO_KIND_LIST, o, &(j))
#define DEC_ANY(j) decode_json(d, PROTO_KIND_ANY, o, &(j))
    PROTO_FIELDS(F)
#undef F
  default: break;
  }
  if (rc == PROTO_OK)
    msg->has |= UINT64_C(1) << f;
  return rc;
}

/* Positions of the envelope keys and member fields in the top-level map. */
typedef struct {
  const msgpack_object *v, *type, *id;
  const msgpack_object *field[PROTO_FIELD_COUNT];
} slots_t;

static bool key_is(const msgpack_object *k, const char *name) {
  return k->via.str.size == strlen(name) && memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

/* Checks the top level is a map with string keys and finds "v", "type", "id". */
static proto_errcode_t find_envelope(const msgpack_object *top, slots_t *s, proto_err_t *err) {
  static const char *const names[] = {"v", "type", "id"};
  if (top->type != MSGPACK_OBJECT_MAP)
    return proto_err_set(err, PROTO_E_NOT_MAP, "message is a msgpack %s, expected a map", mp_kind(top->type));
  for (uint32_t i = 0; i < top->via.map.size; i++) {
    const msgpack_object_kv *kv = &top->via.map.ptr[i];
    const msgpack_object **slot[] = {&s->v, &s->type, &s->id};
    if (kv->key.type != MSGPACK_OBJECT_STR)
      return proto_err_set(err, PROTO_E_NOT_MAP, "key %u of the message is not a string (got %s)", (unsigned)i,
                           mp_kind(kv->key.type));
    for (int n = 0; n < 3; n++) {
      if (!key_is(&kv->key, names[n]))
        continue;
      if (*slot[n])
        return proto_err_set(err, PROTO_E_MALFORMED, "key \"%s\" appears twice", names[n]);
      *slot[n] = &kv->val;
    }
  }
  return PROTO_OK;
}

static proto_errcode_t check_version(const msgpack_object *v, proto_err_t *err) {
  if (!v)
    return proto_err_set(err, PROTO_E_VERSION, "missing \"v\" (protocol version)");
  if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
    return proto_err_set(err, PROTO_E_VERSION, "protocol version %lld not supported (this side speaks %d)",
                         (long long)v->via.i64, PROTO_VERSION);
  if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return proto_err_set(err, PROTO_E_VERSION, "\"v\" must be an int, got %s", mp_kind(v->type));
  if (v->via.u64 != PROTO_VERSION)
    return proto_err_set(err, PROTO_E_VERSION, "protocol version %llu not supported (this side speaks %d)",
                         (unsigned long long)v->via.u64, PROTO_VERSION);
  return PROTO_OK;
}

static proto_errcode_t check_type(const msgpack_object *t, proto_type_t *type, proto_err_t *err) {
  char q[4 * PROTO_QUOTE_MAX + 4];
  if (!t)
    return proto_err_set(err, PROTO_E_TYPE, "missing \"type\"");
  if (t->type != MSGPACK_OBJECT_STR)
    return proto_err_set(err, PROTO_E_TYPE, "\"type\" must be a string, got %s", mp_kind(t->type));
  *type = proto_type_by_namen(t->via.str.ptr, t->via.str.size);
  if (*type != PROTO_NONE)
    return PROTO_OK;
  proto_quote(q, sizeof q, t->via.str.ptr, t->via.str.size);
  return proto_err_set(err, PROTO_E_TYPE, "unknown message type \"%s\"", q);
}

/* Records where each member field of type sits; everything else is ignored. */
static proto_errcode_t find_fields(const msgpack_object *top, proto_type_t type, slots_t *s, proto_err_t *err) {
  uint64_t member, req;
  proto_member_masks(type, &member, &req);
  for (uint32_t i = 0; i < top->via.map.size; i++) {
    const msgpack_object_kv *kv = &top->via.map.ptr[i];
    proto_field_t f = proto_field_by_namen(kv->key.via.str.ptr, kv->key.via.str.size);
    if (f == PROTO_FIELD_COUNT || !(member & (UINT64_C(1) << f)))
      continue;
    if (s->field[f])
      return proto_err_set(err, PROTO_E_MALFORMED, "%s: field \"%s\" appears twice", proto_type_name(type),
                           proto_field_name(f));
    s->field[f] = &kv->val;
  }
  return PROTO_OK;
}

static proto_errcode_t fill_message(const slots_t *s, proto_msg_t *msg, proto_err_t *err) {
  dec_t d = {.err = err, .type = proto_type_name(msg->type), .field = "id"};
  proto_errcode_t rc;
  if (!s->id)
    return proto_err_set(err, PROTO_E_MISSING, "%s: missing required field \"id\"", d.type);
  if ((rc = dec_int(&d, s->id, &msg->id)) != PROTO_OK)
    return rc;
  for (size_t i = 0; i < proto_member_row_count; i++) {
    proto_field_t f = proto_member_rows[i].field;
    if (proto_member_rows[i].type != msg->type)
      continue;
    if (s->field[f]) {
      if ((rc = decode_field(&d, msg, f, s->field[f])) != PROTO_OK)
        return rc;
    } else if (proto_member_rows[i].req == PROTO_MEMBER_REQ) {
      return proto_err_set(err, PROTO_E_MISSING, "%s: missing required field \"%s\"", d.type, proto_field_name(f));
    }
  }
  return PROTO_OK;
}

static proto_errcode_t decode_object(const msgpack_object *top, proto_msg_t **out, proto_err_t *err) {
  slots_t s = {0};
  proto_type_t type = PROTO_NONE;
  proto_msg_t *msg;
  proto_errcode_t rc = find_envelope(top, &s, err);
  if (rc == PROTO_OK)
    rc = check_version(s.v, err);
  if (rc == PROTO_OK)
    rc = check_type(s.type, &type, err);
  if (rc == PROTO_OK)
    rc = find_fields(top, type, &s, err);
  if (rc != PROTO_OK)
    return rc;
  if (!(msg = proto_msg_new(type)))
    return proto_err_set(err, PROTO_E_NOMEM, "out of memory");
  rc = fill_message(&s, msg, err);
  if (rc != PROTO_OK)
    proto_msg_destroy(&msg);
  *out = msg;
  return rc;
}

proto_errcode_t proto_decode(const void *data, size_t len, proto_msg_t **out, proto_err_t *err) {
  msgpack_unpacked up;
  msgpack_unpack_return ur;
  size_t off = 0;
  proto_msg_t *msg = NULL;
  proto_errcode_t rc;
  if (!out || (!data && len))
    return proto_err_set(err, PROTO_E_MALFORMED, "no frame or no place for the message");
  if ((rc = proto_walk(data, len, err)) != PROTO_OK)
    return rc;
  msgpack_unpacked_init(&up);
  ur = msgpack_unpack_next(&up, data, len, &off);
  if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
    rc = proto_err_set(err, PROTO_E_NOMEM, "out of memory");
  else if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
    rc = proto_err_set(err, PROTO_E_MALFORMED, "msgpack-c rejected the frame");
  else
    rc = decode_object(&up.data, &msg, err);
  msgpack_unpacked_destroy(&up);
  if (rc == PROTO_OK) {
    *out = msg;
    if (err)
      proto_err_set(err, PROTO_OK, "ok");
  }
  return rc;
}
