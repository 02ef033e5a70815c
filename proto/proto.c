/* proto: tables, message lifetime and encoder of the Cadre wire protocol.
 *
 * Everything here follows from the X-macro tables in messages.def. The decoder
 * is in proto_decode.c, the structural walker in proto_walk.c.
 */
#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"
#include "util.h"

_Static_assert(PROTO_FIELD_COUNT <= 64, "proto_msg_t.has holds at most 64 fields");

#define PROTO_REQ_REQ PROTO_MEMBER_REQ
#define PROTO_REQ_OPT PROTO_MEMBER_OPT

const proto_member_row_t proto_member_rows[] = {
#define X(M, f, R) {PROTO_##M, PROTO_F_##f, PROTO_REQ_##R},
    PROTO_MEMBERS(X)
#undef X
};
const size_t proto_member_row_count = sizeof proto_member_rows / sizeof proto_member_rows[0];

static const char *const type_names[PROTO_TYPE_COUNT] = {[PROTO_NONE] = "?",
#define M(NAME, wire, doc) [PROTO_##NAME] = wire,
                                                         PROTO_MESSAGES(M)
#undef M
};

static const struct {
  const char *name;
  size_t len; /* compile-time strlen: key lookup is on the decode hot path */
  proto_kind_t kind;
} fields[PROTO_FIELD_COUNT] = {
#define F(name, KIND, doc) [PROTO_F_##name] = {#name, sizeof #name - 1, PROTO_KIND_##KIND},
    PROTO_FIELDS(F)
#undef F
};

static const char *const errcode_names[] = {
    [PROTO_OK] = "ok",
    [PROTO_E_OVERSIZE] = "oversize",
    [PROTO_E_MALFORMED] = "malformed",
    [PROTO_E_DEPTH] = "too_deep",
    [PROTO_E_COUNT] = "bad_count",
    [PROTO_E_NOT_MAP] = "not_map",
    [PROTO_E_VERSION] = "bad_version",
    [PROTO_E_TYPE] = "bad_type",
    [PROTO_E_FIELD_TYPE] = "bad_field_type",
    [PROTO_E_MISSING] = "missing_field",
    [PROTO_E_VALUE] = "bad_value",
    [PROTO_E_NOMEM] = "nomem",
};

static const char *const errcode_docs[] = {
    [PROTO_OK] = "No error.",
    [PROTO_E_OVERSIZE] = "The frame is larger than PROTO_MAX_FRAME, or would decode to more "
                         "memory than PROTO_DECODE_BUDGET allows.",
    [PROTO_E_MALFORMED] = "Not valid msgpack: empty, truncated, an invalid byte, trailing bytes "
                          "after the map, or a repeated key.",
    [PROTO_E_DEPTH] = "Maps and arrays nested deeper than PROTO_MAX_DEPTH.",
    [PROTO_E_COUNT] = "An array/map count or string length larger than the bytes that follow.",
    [PROTO_E_NOT_MAP] = "The top level is not a map, or a map key is not a string.",
    [PROTO_E_VERSION] = "\"v\" is missing, not an int, or not the version this side speaks.",
    [PROTO_E_TYPE] = "\"type\" is missing, not a string, or not a known message.",
    [PROTO_E_FIELD_TYPE] = "A field (or \"id\") has the wrong msgpack type for its kind.",
    [PROTO_E_MISSING] = "A required field (or \"id\") is absent.",
    [PROTO_E_VALUE] = "A value is unusable: invalid UTF-8, NUL in a string or key, integer out "
                      "of int64 range, non-finite number, bin or ext.",
    [PROTO_E_NOMEM] = "Out of memory while decoding or encoding.",
};

static const char *const kind_names[] = {
    [PROTO_KIND_STR] = "str", [PROTO_KIND_INT] = "int",   [PROTO_KIND_BOOL] = "bool", [PROTO_KIND_NUM] = "num",
    [PROTO_KIND_MAP] = "map", [PROTO_KIND_LIST] = "list", [PROTO_KIND_ANY] = "any",
};

/* ---- tables ------------------------------------------------------------ */

const char *proto_errcode_name(proto_errcode_t code) {
  if ((unsigned)code >= sizeof errcode_names / sizeof errcode_names[0])
    return "?";
  return errcode_names[code];
}

const char *proto_errcode_doc(proto_errcode_t code) {
  if ((unsigned)code >= sizeof errcode_docs / sizeof errcode_docs[0])
    return "?";
  return errcode_docs[code];
}

const char *proto_type_name(proto_type_t type) {
  if ((unsigned)type >= PROTO_TYPE_COUNT)
    return "?";
  return type_names[type];
}

/* Unrolled from the table: each length is a constant, so the compiler turns
 * every memcmp into a few word compares (this is on the decode hot path). */
proto_type_t proto_type_by_namen(const char *s, size_t len) {
#define M(NAME, wire, doc)                                             \
  if (len == sizeof wire - 1 && memcmp(s, wire, sizeof wire - 1) == 0) \
    return PROTO_##NAME;
  PROTO_MESSAGES(M)
#undef M
  return PROTO_NONE;
}

proto_type_t proto_type_by_name(const char *name) {
  return name ? proto_type_by_namen(name, strlen(name)) : PROTO_NONE;
}

const char *proto_field_name(proto_field_t field) {
  if ((unsigned)field >= PROTO_FIELD_COUNT)
    return "?";
  return fields[field].name;
}

proto_kind_t proto_field_kind(proto_field_t field) {
  if ((unsigned)field >= PROTO_FIELD_COUNT)
    return PROTO_KIND_ANY;
  return fields[field].kind;
}

const char *proto_kind_name(proto_kind_t kind) {
  if ((unsigned)kind >= sizeof kind_names / sizeof kind_names[0])
    return "?";
  return kind_names[kind];
}

proto_member_t proto_member(proto_type_t type, proto_field_t field) {
  for (size_t i = 0; i < proto_member_row_count; i++)
    if (proto_member_rows[i].type == type && proto_member_rows[i].field == field)
      return proto_member_rows[i].req;
  return PROTO_MEMBER_NONE;
}

/* Member masks per type, built once from PROTO_MEMBERS (read-only after). */
static uint64_t member_all[PROTO_TYPE_COUNT], member_req[PROTO_TYPE_COUNT];
static pthread_once_t member_once = PTHREAD_ONCE_INIT;

static void member_masks_build(void) {
  for (size_t i = 0; i < proto_member_row_count; i++) {
    const proto_member_row_t *r = &proto_member_rows[i];
    member_all[r->type] |= UINT64_C(1) << r->field;
    if (r->req == PROTO_MEMBER_REQ)
      member_req[r->type] |= UINT64_C(1) << r->field;
  }
}

void proto_member_masks(proto_type_t type, uint64_t *all, uint64_t *req) {
  pthread_once(&member_once, member_masks_build);
  bool known = (unsigned)type < PROTO_TYPE_COUNT;
  *all = known ? member_all[type] : 0;
  *req = known ? member_req[type] : 0;
}

proto_field_t proto_field_by_namen(const char *s, size_t len) {
#define F(name, KIND, doc)                                                \
  if (len == sizeof #name - 1 && memcmp(s, #name, sizeof #name - 1) == 0) \
    return PROTO_F_##name;
  PROTO_FIELDS(F)
#undef F
  return PROTO_FIELD_COUNT;
}

static bool is_json_kind(proto_kind_t kind) {
  return kind == PROTO_KIND_MAP || kind == PROTO_KIND_LIST || kind == PROTO_KIND_ANY;
}

/* ---- message lifetime -------------------------------------------------- */

proto_msg_t *proto_msg_new(proto_type_t type) {
  proto_msg_t *msg;
  if (type <= PROTO_NONE || type >= PROTO_TYPE_COUNT) {
    errno = EINVAL;
    return NULL;
  }
  msg = calloc(1, sizeof *msg);
  if (msg)
    msg->type = type;
  return msg;
}

/* Releases whatever field f holds and clears its bit. */
static void clear_field(proto_msg_t *msg, proto_field_t f) {
  switch (f) {
#define F(name, KIND, doc)   \
  case PROTO_F_##name:       \
    CLEAR_##KIND(msg->name); \
    break;
#define CLEAR_STR(p) (free(p), (p) = NULL)
#define CLEAR_INT(v) ((v) = 0)
#define CLEAR_BOOL(v) ((v) = false)
#define CLEAR_NUM(v) ((v) = 0.0)
#define CLEAR_MAP(j) (json_decref(j), (j) = NULL)
#define CLEAR_LIST(j) CLEAR_MAP(j)
#define CLEAR_ANY(j) CLEAR_MAP(j)
    PROTO_FIELDS(F)
#undef F
  default: break;
  }
  msg->has &= ~(UINT64_C(1) << f);
}

void proto_msg_destroy(proto_msg_t **msg_p) {
  if (!msg_p || !*msg_p)
    return;
  for (int f = 0; f < PROTO_FIELD_COUNT; f++)
    clear_field(*msg_p, (proto_field_t)f);
  free(*msg_p);
  *msg_p = NULL;
}

/* Address of a STR field's pointer, or NULL when f is not a STR field. */
static char **str_slot(proto_msg_t *msg, proto_field_t f) {
  switch (f) {
#define F(name, KIND, doc) \
  case PROTO_F_##name:     \
    return SLOT_##KIND(msg->name);
#define SLOT_STR(p) &(p)
#define SLOT_INT(v) NULL
#define SLOT_BOOL(v) NULL
#define SLOT_NUM(v) NULL
#define SLOT_MAP(j) NULL
#define SLOT_LIST(j) NULL
#define SLOT_ANY(j) NULL
    PROTO_FIELDS(F)
#undef F
  default: return NULL;
  }
}

/* Address of a MAP/LIST/ANY field's pointer, or NULL for other kinds. */
static json_t **json_slot(proto_msg_t *msg, proto_field_t f) {
  switch (f) {
#define F(name, KIND, doc) \
  case PROTO_F_##name:     \
    return JSLOT_##KIND(msg->name);
#define JSLOT_STR(p) NULL
#define JSLOT_INT(v) NULL
#define JSLOT_BOOL(v) NULL
#define JSLOT_NUM(v) NULL
#define JSLOT_MAP(j) &(j)
#define JSLOT_LIST(j) &(j)
#define JSLOT_ANY(j) &(j)
    PROTO_FIELDS(F)
#undef F
  default: return NULL;
  }
}

int proto_set_str(proto_msg_t *msg, proto_field_t field, const char *s) {
  char **slot = msg && (unsigned)field < PROTO_FIELD_COUNT ? str_slot(msg, field) : NULL;
  char *copy = NULL;
  if (!slot)
    return -EINVAL;
  if (s && !(copy = strdup(s)))
    return -ENOMEM;
  clear_field(msg, field);
  *slot = copy;
  if (copy)
    msg->has |= UINT64_C(1) << field;
  return 0;
}

static bool json_fits_kind(const json_t *v, proto_kind_t kind) {
  return kind == PROTO_KIND_ANY || (kind == PROTO_KIND_MAP && json_is_object(v)) ||
         (kind == PROTO_KIND_LIST && json_is_array(v));
}

int proto_set_json(proto_msg_t *msg, proto_field_t field, json_t *value) {
  json_t **slot = msg && (unsigned)field < PROTO_FIELD_COUNT ? json_slot(msg, field) : NULL;
  if (!slot || (value && !json_fits_kind(value, fields[field].kind))) {
    json_decref(value);
    return -EINVAL;
  }
  clear_field(msg, field);
  *slot = value;
  if (value)
    msg->has |= UINT64_C(1) << field;
  return 0;
}

/* ---- encoder ----------------------------------------------------------- */

typedef struct {
  msgpack_packer pk;
  proto_err_t *err;
  const char *type;  /* message wire name, for error text */
  const char *field; /* field being packed */
} enc_t;

/* Negative errno for an encoder error code. */
static int enc_fail(enc_t *e, proto_errcode_t code, const char *what) {
  proto_err_set(e->err, code, "field \"%s\" of %s: %s", e->field, e->type, what);
  return code == PROTO_E_NOMEM ? -ENOMEM : -EINVAL;
}

static int pack_str(enc_t *e, const char *s, size_t len) {
  if (!util_utf8_valid(s, len))
    return enc_fail(e, PROTO_E_VALUE, "string is not valid UTF-8");
  if (msgpack_pack_str_with_body(&e->pk, s, len) != 0)
    return enc_fail(e, PROTO_E_NOMEM, "out of memory");
  return 0;
}

static int pack_json(enc_t *e, const json_t *v, int depth);

static int pack_object(enc_t *e, const json_t *v, int depth) {
  const char *key;
  size_t keylen;
  json_t *item;
  int rc = 0;
  if (msgpack_pack_map(&e->pk, json_object_size(v)) != 0)
    return enc_fail(e, PROTO_E_NOMEM, "out of memory");
  json_object_keylen_foreach((json_t *)v, key, keylen, item) {
    if (memchr(key, '\0', keylen))
      return enc_fail(e, PROTO_E_VALUE, "map key contains a NUL byte");
    if ((rc = pack_str(e, key, keylen)) != 0 || (rc = pack_json(e, item, depth + 1)) != 0)
      return rc;
  }
  return 0;
}

static int pack_array(enc_t *e, const json_t *v, int depth) {
  size_t i;
  json_t *item;
  int rc;
  if (msgpack_pack_array(&e->pk, json_array_size(v)) != 0)
    return enc_fail(e, PROTO_E_NOMEM, "out of memory");
  json_array_foreach(v, i, item) {
    if ((rc = pack_json(e, item, depth + 1)) != 0)
      return rc;
  }
  return 0;
}

/* Packs a json value found at nesting level depth (the envelope map is 1). */
static int pack_json(enc_t *e, const json_t *v, int depth) {
  char what[64];
  int rc = 0;
  if ((json_is_object(v) || json_is_array(v)) && depth > PROTO_MAX_DEPTH) {
    snprintf(what, sizeof what, "nesting deeper than %d levels", PROTO_MAX_DEPTH);
    return enc_fail(e, PROTO_E_DEPTH, what);
  }
  switch (json_typeof(v)) {
  case JSON_OBJECT: return pack_object(e, v, depth);
  case JSON_ARRAY: return pack_array(e, v, depth);
  case JSON_STRING: return pack_str(e, json_string_value(v), json_string_length(v));
  case JSON_INTEGER: rc = msgpack_pack_int64(&e->pk, json_integer_value(v)); break;
  case JSON_REAL: rc = msgpack_pack_double(&e->pk, json_real_value(v)); break;
  case JSON_TRUE: rc = msgpack_pack_true(&e->pk); break;
  case JSON_FALSE: rc = msgpack_pack_false(&e->pk); break;
  case JSON_NULL: rc = msgpack_pack_nil(&e->pk); break;
  }
  return rc == 0 ? 0 : enc_fail(e, PROTO_E_NOMEM, "out of memory");
}

static int pack_int(enc_t *e, int64_t v) {
  return msgpack_pack_int64(&e->pk, v) ? enc_fail(e, PROTO_E_NOMEM, "out of memory") : 0;
}

static int pack_bool(enc_t *e, bool v) {
  int rc = v ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk);
  return rc ? enc_fail(e, PROTO_E_NOMEM, "out of memory") : 0;
}

__attribute__((unused)) static int pack_num(enc_t *e, double v) {
  if (!isfinite(v))
    return enc_fail(e, PROTO_E_VALUE, "number is not finite");
  return msgpack_pack_double(&e->pk, v) ? enc_fail(e, PROTO_E_NOMEM, "out of memory") : 0;
}

static int pack_json_field(enc_t *e, proto_kind_t kind, const json_t *j) {
  if (!json_fits_kind(j, kind))
    return enc_fail(e, PROTO_E_FIELD_TYPE, kind == PROTO_KIND_MAP ? "expected a json object" : "expected a json array");
  return pack_json(e, j, 2);
}

/* Packs the value of field f (its key already packed). */
static int pack_field(enc_t *e, const proto_msg_t *msg, proto_field_t f) {
  switch (f) {
#define F(name, KIND, doc) \
  case PROTO_F_##name:     \
    return PACK_##KIND(msg->name);
#define PACK_STR(p) pack_str(e, (p), strlen(p))
#define PACK_INT(v) pack_int(e, (v))
#define PACK_BOOL(v) pack_bool(e, (v))
#define PACK_NUM(v) pack_num(e, (v))
#define PACK_MAP(j) pack_json_field(e, PROTO_KIND_MAP, (j))
#define PACK_LIST(j) pack_json_field(e, PROTO_KIND_LIST, (j))
#define PACK_ANY(j) pack_json_field(e, PROTO_KIND_ANY, (j))
    PROTO_FIELDS(F)
#undef F
  default: return -EINVAL;
  }
}

/* True when field f is present with a usable value (a set STR/json pointer). */
static bool present(const proto_msg_t *msg, proto_field_t f) {
  proto_msg_t *m = (proto_msg_t *)msg;
  if (!(msg->has & (UINT64_C(1) << f)))
    return false;
  if (fields[f].kind == PROTO_KIND_STR)
    return *str_slot(m, f) != NULL;
  if (is_json_kind(fields[f].kind))
    return *json_slot(m, f) != NULL;
  return true;
}

/* Counts the member fields to pack; fails naming the first required one absent. */
static int count_fields(const proto_msg_t *msg, size_t *n, proto_err_t *err) {
  *n = 0;
  for (size_t i = 0; i < proto_member_row_count; i++) {
    if (proto_member_rows[i].type != msg->type)
      continue;
    if (present(msg, proto_member_rows[i].field))
      (*n)++;
    else if (proto_member_rows[i].req == PROTO_MEMBER_REQ) {
      proto_err_set(err, PROTO_E_MISSING, "%s: missing required field \"%s\"", type_names[msg->type],
                    fields[proto_member_rows[i].field].name);
      return -EINVAL;
    }
  }
  return 0;
}

static int pack_envelope(enc_t *e, const proto_msg_t *msg, size_t nfields) {
  const char *t = type_names[msg->type];
  if (msgpack_pack_map(&e->pk, 3 + nfields) || msgpack_pack_str_with_body(&e->pk, "v", 1) ||
      msgpack_pack_int64(&e->pk, PROTO_VERSION) || msgpack_pack_str_with_body(&e->pk, "type", 4) ||
      msgpack_pack_str_with_body(&e->pk, t, strlen(t)) || msgpack_pack_str_with_body(&e->pk, "id", 2) ||
      msgpack_pack_int64(&e->pk, msg->id)) {
    proto_err_set(e->err, PROTO_E_NOMEM, "%s: out of memory", t);
    return -ENOMEM;
  }
  return 0;
}

static int pack_message(enc_t *e, const proto_msg_t *msg) {
  size_t n;
  int rc = count_fields(msg, &n, e->err);
  if (rc == 0)
    rc = pack_envelope(e, msg, n);
  for (size_t i = 0; rc == 0 && i < proto_member_row_count; i++) {
    proto_field_t f = proto_member_rows[i].field;
    if (proto_member_rows[i].type != msg->type || !present(msg, f))
      continue;
    e->field = fields[f].name;
    if (msgpack_pack_str_with_body(&e->pk, e->field, strlen(e->field)) != 0)
      rc = enc_fail(e, PROTO_E_NOMEM, "out of memory");
    else
      rc = pack_field(e, msg, f);
  }
  return rc;
}

/* The finished frame must pass the decoder's structural limits too. */
static int check_frame(const msgpack_sbuffer *sb, proto_err_t *err) {
  proto_errcode_t rc = proto_walk((const unsigned char *)sb->data, sb->size, err);
  if (rc == PROTO_OK)
    return 0;
  return rc == PROTO_E_OVERSIZE ? -EMSGSIZE : -EINVAL;
}

int proto_encode(const proto_msg_t *msg, char **buf, size_t *len, proto_err_t *err) {
  msgpack_sbuffer sb;
  enc_t e = {.err = err};
  int rc;
  if (!msg || !buf || !len || msg->type <= PROTO_NONE || msg->type >= PROTO_TYPE_COUNT) {
    proto_err_set(err, PROTO_E_TYPE, "cannot encode: no message or unknown message type");
    return -EINVAL;
  }
  e.type = type_names[msg->type];
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&e.pk, &sb, msgpack_sbuffer_write);
  rc = pack_message(&e, msg);
  if (rc == 0)
    rc = check_frame(&sb, err);
  if (rc != 0) {
    msgpack_sbuffer_destroy(&sb);
    return rc;
  }
  *len = sb.size;
  *buf = msgpack_sbuffer_release(&sb); /* malloc'd by sbuffer (realloc), freed with free() */
  return 0;
}
