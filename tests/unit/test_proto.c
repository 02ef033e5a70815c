/* Tests of proto: round trips of every message (driven by the X-macro tables,
 * so new messages and fields are covered automatically), the encoder's
 * checks, a corpus of malformed frames each with its expected error, forward
 * compatibility, a seeded fuzz loop, and real ZeroMQ framing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>
#include <zmq.h>

#include "proto.h"

/* Every decode in this file also peeks at the same bytes, and the two must
 * agree: a frame decode accepts, peek accepts with the same routing fields;
 * a frame decode rejects, peek rejects too (but for the checks only a decoder
 * needs) and leaves its output untouched. */
static proto_errcode_t (*const real_decode)(const void *, size_t, proto_msg_t **, proto_err_t *) = proto_decode;
static proto_errcode_t decode_and_peek(const void *data, size_t len, proto_msg_t **out, proto_err_t *err);
#define proto_decode decode_and_peek

/* ---- helpers ------------------------------------------------------------ */

#define BIT(f) (UINT64_C(1) << (f))

/* A growable frame built by the test itself (independent of proto_encode). */
typedef struct {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} frame_t;

static void frame_init(frame_t *fr) {
  msgpack_sbuffer_init(&fr->sb);
  msgpack_packer_init(&fr->pk, &fr->sb, msgpack_sbuffer_write);
}

static void frame_free(frame_t *fr) {
  msgpack_sbuffer_destroy(&fr->sb);
}

static void frame_raw(frame_t *fr, const void *bytes, size_t len) {
  if (len == 0)
    return;
  assert_int_equal(msgpack_sbuffer_write(&fr->sb, bytes, len), 0);
}

static void pk_str(frame_t *fr, const char *s) {
  msgpack_pack_str_with_body(&fr->pk, s, strlen(s));
}

/* Packs a json value the plain way (strings may hold NUL). */
static void pk_json(frame_t *fr, const json_t *v) {
  const char *key;
  size_t i, keylen;
  json_t *item;
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    msgpack_pack_map(&fr->pk, json_object_size(v));
    json_object_keylen_foreach((json_t *)v, key, keylen, item) {
      msgpack_pack_str_with_body(&fr->pk, key, keylen);
      pk_json(fr, item);
    }
    break;
  case JSON_ARRAY:
    msgpack_pack_array(&fr->pk, json_array_size(v));
    json_array_foreach(v, i, item) pk_json(fr, item);
    break;
  case JSON_STRING: msgpack_pack_str_with_body(&fr->pk, json_string_value(v), json_string_length(v)); break;
  case JSON_INTEGER: msgpack_pack_int64(&fr->pk, json_integer_value(v)); break;
  case JSON_REAL: msgpack_pack_double(&fr->pk, json_real_value(v)); break;
  case JSON_TRUE: msgpack_pack_true(&fr->pk); break;
  case JSON_FALSE: msgpack_pack_false(&fr->pk); break;
  case JSON_NULL: msgpack_pack_nil(&fr->pk); break;
  }
}

/* Frame from JSON text (NUL allowed in strings via \u0000). */
static void frame_json(frame_t *fr, const char *text) {
  json_error_t jerr;
  json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!v)
    fail_msg("bad test JSON %s: %s", text, jerr.text);
  pk_json(fr, v);
  json_decref(v);
}

/* Replaces the first occurrence of `from` in the frame by `to` (same length). */
static void frame_patch(frame_t *fr, const char *from, const char *to, size_t n) {
  for (size_t i = 0; i + n <= fr->sb.size; i++) {
    if (memcmp(fr->sb.data + i, from, n) == 0) {
      memcpy(fr->sb.data + i, to, n);
      return;
    }
  }
  fail_msg("patch marker %s not found", from);
}

/* Replaces the last occurrence of from (n bytes) by to. */
static void frame_patch_last(frame_t *fr, const char *from, const char *to, size_t n) {
  for (size_t i = fr->sb.size - n + 1; i-- > 0;) {
    if (memcmp(fr->sb.data + i, from, n) == 0) {
      memcpy(fr->sb.data + i, to, n);
      return;
    }
  }
  fail_msg("patch marker not found");
}

/* Packs the envelope of a map with extra entries still to come. */
static void frame_env(frame_t *fr, const char *type, size_t extra) {
  msgpack_pack_map(&fr->pk, 3 + extra);
  pk_str(fr, "v");
  msgpack_pack_int(&fr->pk, PROTO_VERSION);
  pk_str(fr, "type");
  pk_str(fr, type);
  pk_str(fr, "id");
  msgpack_pack_int(&fr->pk, 7);
}

/* A hello envelope with role/name/version, plus `extra` entries to come. */
static void frame_hello(frame_t *fr, size_t extra) {
  frame_env(fr, "hello", 3 + extra);
  pk_str(fr, "role");
  pk_str(fr, "node");
  pk_str(fr, "name");
  pk_str(fr, "n1");
  pk_str(fr, "version");
  pk_str(fr, "0.1");
}

static proto_errcode_t decode_frame(const frame_t *fr, proto_msg_t **out, proto_err_t *err) {
  return proto_decode(fr->sb.data, fr->sb.size, out, err);
}

/* Decode failures that proto_peek() does not check: the decoder's memory
 * budget and repeated keys inside nested maps. */
static bool peek_may_accept(proto_errcode_t rc, const proto_err_t *err, size_t len) {
  return (rc == PROTO_E_OVERSIZE && len <= PROTO_MAX_FRAME) || rc == PROTO_E_NOMEM ||
         (rc == PROTO_E_MALFORMED && strstr(err->text, "repeats a key"));
}

static void peek_matches(const proto_peek_t *pk, const proto_msg_t *m) {
  assert_int_equal(pk->type, m->type);
  assert_int_equal(pk->id, m->id);
  assert_int_equal(!!(pk->has & PROTO_PEEK_SESSION), PROTO_HAS(m, session));
  if (PROTO_HAS(m, session)) {
    assert_int_equal(pk->session_len, strlen(m->session));
    assert_memory_equal(pk->session, m->session, pk->session_len);
  }
  assert_int_equal(!!(pk->has & PROTO_PEEK_TURN), PROTO_HAS(m, turn));
  assert_int_equal(!!(pk->has & PROTO_PEEK_ATTEMPT), PROTO_HAS(m, attempt));
  assert_int_equal(!!(pk->has & PROTO_PEEK_SEQ), PROTO_HAS(m, seq));
  if (PROTO_HAS(m, turn))
    assert_int_equal(pk->turn, m->turn);
  if (PROTO_HAS(m, attempt))
    assert_int_equal(pk->attempt, m->attempt);
  if (PROTO_HAS(m, seq))
    assert_int_equal(pk->seq, m->seq);
}

static proto_errcode_t decode_and_peek(const void *data, size_t len, proto_msg_t **out, proto_err_t *err) {
  proto_peek_t pk, untouched;
  proto_err_t perr, derr;
  memset(&pk, 0xab, sizeof pk);
  untouched = pk;
  proto_errcode_t prc = proto_peek(data, len, &pk, &perr);
  proto_errcode_t rc = real_decode(data, len, out, err ? err : &derr);
  if (rc == PROTO_OK && prc != PROTO_OK)
    fail_msg("peek rejects a frame that decodes: %s", perr.text);
  if (rc == PROTO_OK)
    peek_matches(&pk, *out);
  if (rc != PROTO_OK && prc == PROTO_OK && !peek_may_accept(rc, err ? err : &derr, len))
    fail_msg("peek accepts a frame that decode rejects (%s)", (err ? err : &derr)->text);
  if (prc != PROTO_OK && memcmp(&pk, &untouched, sizeof pk) != 0)
    fail_msg("peek touched its output on error");
  return rc;
}

/* ---- building full messages from the tables ---------------------------- */

static json_t *sample_map(int salt) {
  return json_pack("{s:i, s:s, s:[i, f, n, b, s], s:{s:s}, s:s#}", "n", salt, "s", "väl", "l", -5, 2.5, true, "x", "o",
                   "k", "v", "z", "a\0b", (size_t)3);
}

static json_t *sample_list(int salt) {
  return json_pack("[s, i, {s:[]}, f, n]", "*", salt, "nested", -0.125);
}

/* Sets field f of m to a value derived from f (so fields differ). */
static void set_sample(proto_msg_t *m, proto_field_t f) {
  char buf[64];
  switch (f) {
#define F(name, KIND, doc) \
  case PROTO_F_##name:     \
    SET_##KIND(name);      \
    break;
#define SET_STR(name) \
  (snprintf(buf, sizeof buf, "%s-ü-✓", #name), assert_int_equal(proto_set_str(m, PROTO_F_##name, buf), 0))
#define SET_INT(name) PROTO_SET(m, name, -(INT64_C(1) << 40) - (int64_t)f)
#define SET_BOOL(name) PROTO_SET(m, name, true)
#define SET_NUM(name) PROTO_SET(m, name, 3.25 + f)
#define SET_MAP(name) assert_int_equal(proto_set_json(m, PROTO_F_##name, sample_map((int)f)), 0)
#define SET_LIST(name) assert_int_equal(proto_set_json(m, PROTO_F_##name, sample_list((int)f)), 0)
#define SET_ANY(name) assert_int_equal(proto_set_json(m, PROTO_F_##name, sample_map((int)f)), 0)
    PROTO_FIELDS(F)
#undef F
  default: fail();
  }
}

/* Bit mask of the member fields of type t. */
static uint64_t member_mask(proto_type_t t) {
  uint64_t mask = 0;
#define X(M, f, R)    \
  if (PROTO_##M == t) \
    mask |= BIT(PROTO_F_##f);
  PROTO_MEMBERS(X)
#undef X
  return mask;
}

/* A message of type t with every member field set. */
static proto_msg_t *full_message(proto_type_t t) {
  proto_msg_t *m = proto_msg_new(t);
  assert_non_null(m);
  m->id = 1000 + t;
  for (int f = 0; f < PROTO_FIELD_COUNT; f++)
    if (member_mask(t) & BIT(f))
      set_sample(m, (proto_field_t)f);
  return m;
}

/* Asserts field f is equal in a and b. */
static void assert_field_equal(const proto_msg_t *a, const proto_msg_t *b, proto_field_t f) {
  switch (f) {
#define F(name, KIND, doc) \
  case PROTO_F_##name:     \
    EQ_##KIND(name);       \
    break;
#define EQ_STR(name) assert_string_equal(a->name, b->name)
#define EQ_INT(name) assert_true(a->name == b->name)
#define EQ_BOOL(name) assert_true(a->name == b->name)
#define EQ_NUM(name) assert_true(a->name == b->name)
#define EQ_MAP(name) assert_true(json_equal(a->name, b->name))
#define EQ_LIST(name) EQ_MAP(name)
#define EQ_ANY(name) EQ_MAP(name)
    PROTO_FIELDS(F)
#undef F
  default: fail();
  }
}

static void encode_ok(const proto_msg_t *m, char **buf, size_t *len) {
  proto_err_t err = {0};
  int rc = proto_encode(m, buf, len, &err);
  if (rc != 0)
    fail_msg("encode %s: %d %s", proto_type_name(m->type), rc, err.text);
}

/* ---- round trips and the encoder --------------------------------------- */

static void test_every_message_round_trips_with_all_fields(void **state) {
  (void)state;
  for (int t = PROTO_NONE + 1; t < PROTO_TYPE_COUNT; t++) {
    proto_msg_t *m = full_message((proto_type_t)t), *back = NULL;
    proto_err_t err = {0};
    char *buf;
    size_t len;
    encode_ok(m, &buf, &len);
    if (proto_decode(buf, len, &back, &err) != PROTO_OK)
      fail_msg("decode %s: %s", proto_type_name((proto_type_t)t), err.text);
    assert_int_equal(back->type, t);
    assert_true(back->id == m->id);
    assert_true(back->has == member_mask((proto_type_t)t));
    for (int f = 0; f < PROTO_FIELD_COUNT; f++)
      if (back->has & BIT(f))
        assert_field_equal(m, back, (proto_field_t)f);
    free(buf);
    proto_msg_destroy(&m);
    proto_msg_destroy(&back);
    assert_null(back);
  }
}

static void test_minimal_messages_round_trip_with_only_required_fields(void **state) {
  (void)state;
  for (int t = PROTO_NONE + 1; t < PROTO_TYPE_COUNT; t++) {
    proto_msg_t *m = full_message((proto_type_t)t), *back = NULL;
    proto_err_t err;
    char *buf;
    size_t len;
#define X(M, f, R)                                            \
  if (PROTO_##M == t && PROTO_MEMBER_##R == PROTO_MEMBER_OPT) \
    m->has &= ~BIT(PROTO_F_##f);
    PROTO_MEMBERS(X)
#undef X
    encode_ok(m, &buf, &len);
    assert_int_equal(proto_decode(buf, len, &back, &err), PROTO_OK);
    assert_true(back->has == (m->has & member_mask((proto_type_t)t)));
    free(buf);
    proto_msg_destroy(&m);
    proto_msg_destroy(&back);
  }
}

static void test_encode_fails_naming_each_missing_required_field(void **state) {
  (void)state;
  int checked = 0;
#define X(M, f, R)                                                 \
  if (PROTO_MEMBER_##R == PROTO_MEMBER_REQ) {                      \
    proto_msg_t *m = full_message(PROTO_##M);                      \
    proto_err_t err = {0};                                         \
    char *buf = NULL;                                              \
    size_t len = 0;                                                \
    m->has &= ~BIT(PROTO_F_##f);                                   \
    assert_int_equal(proto_encode(m, &buf, &len, &err), -EINVAL);  \
    assert_int_equal(err.code, PROTO_E_MISSING);                   \
    assert_non_null(strstr(err.text, "\"" #f "\""));               \
    assert_non_null(strstr(err.text, proto_type_name(PROTO_##M))); \
    assert_null(buf);                                              \
    proto_msg_destroy(&m);                                         \
    checked++;                                                     \
  }
  PROTO_MEMBERS(X)
#undef X
  assert_true(checked > 0);
}

/* Encodes a full message of type t, renames field f's key on the wire (same
 * length, so it becomes an unknown key), and expects PROTO_E_MISSING naming f.
 * The last match is the key: the envelope's "type" value may spell the same
 * bytes ("turn"), and sample values never do. */
static void check_decode_missing(proto_type_t t, proto_field_t f) {
  proto_msg_t *m = full_message(t), *back = NULL;
  proto_err_t err = {0};
  const char *name = proto_field_name(f);
  char key[64], quoted[70], *buf;
  size_t len;
  frame_t fr;
  encode_ok(m, &buf, &len);
  frame_init(&fr);
  frame_raw(&fr, buf, len);
  snprintf(key, sizeof key, "%c%s", (char)(0xa0 | (int)strlen(name)), name);
  char renamed[64];
  memcpy(renamed, key, sizeof key);
  renamed[1] = 'Z';
  frame_patch_last(&fr, key, renamed, strlen(key));
  assert_int_equal(decode_frame(&fr, &back, &err), PROTO_E_MISSING);
  snprintf(quoted, sizeof quoted, "\"%s\"", name);
  if (!strstr(err.text, quoted) || !strstr(err.text, proto_type_name(t)))
    fail_msg("%s without %s: %s", proto_type_name(t), name, err.text);
  assert_null(back);
  frame_free(&fr);
  free(buf);
  proto_msg_destroy(&m);
}

static void test_decode_fails_naming_each_missing_required_field(void **state) {
  (void)state;
#define X(M, f, R)                          \
  if (PROTO_MEMBER_##R == PROTO_MEMBER_REQ) \
    check_decode_missing(PROTO_##M, PROTO_F_##f);
  PROTO_MEMBERS(X)
#undef X
}

static void test_encode_ignores_fields_that_are_not_members(void **state) {
  (void)state;
  proto_msg_t *m = full_message(PROTO_HELLO), *back = NULL;
  proto_err_t err;
  char *buf;
  size_t len;
  assert_int_equal(proto_set_str(m, PROTO_F_text, "not a hello field"), 0);
  PROTO_SET(m, turn, 5);
  encode_ok(m, &buf, &len);
  assert_null(memmem(buf, len, "not a hello field", 17));
  assert_int_equal(proto_decode(buf, len, &back, &err), PROTO_OK);
  assert_false(PROTO_HAS(back, text));
  assert_false(PROTO_HAS(back, turn));
  free(buf);
  proto_msg_destroy(&m);
  proto_msg_destroy(&back);
}

static void test_encode_rejects_values_the_decoder_would_reject(void **state) {
  (void)state;
  proto_msg_t *m = full_message(PROTO_REQUEST);
  proto_err_t err;
  char *buf = NULL;
  size_t len;
  json_t *deep = json_object(), *cur = deep;

  assert_int_equal(proto_set_str(m, PROTO_F_verb, "bad \xff utf8"), 0);
  assert_int_equal(proto_encode(m, &buf, &len, &err), -EINVAL);
  assert_int_equal(err.code, PROTO_E_VALUE);
  assert_non_null(strstr(err.text, "\"verb\""));
  assert_int_equal(proto_set_str(m, PROTO_F_verb, "status"), 0);

  /* args sits at level 2 (the envelope is 1): 10 more maps reach the limit */
  for (int i = 0; i < PROTO_MAX_DEPTH - 2; i++) {
    json_t *next = json_object();
    json_object_set_new(cur, "d", next);
    cur = next;
  }
  assert_int_equal(proto_set_json(m, PROTO_F_args, json_incref(deep)), 0);
  assert_int_equal(proto_encode(m, &buf, &len, &err), 0);
  free(buf);
  buf = NULL;
  json_object_set_new(cur, "d", json_array()); /* level 13 */
  assert_int_equal(proto_encode(m, &buf, &len, &err), -EINVAL);
  assert_int_equal(err.code, PROTO_E_DEPTH);
  assert_non_null(strstr(err.text, "\"args\""));
  json_decref(deep);

  /* a nested key with a NUL byte would not decode, so it does not encode */
  json_t *labels = json_object();
  json_object_setn_new(labels, "a\0b", 3, json_true());
  assert_int_equal(proto_set_json(m, PROTO_F_args, labels), 0);
  assert_int_equal(proto_encode(m, &buf, &len, &err), -EINVAL);
  assert_int_equal(err.code, PROTO_E_VALUE);
  assert_non_null(strstr(err.text, "NUL"));

  /* a MAP field holding a json array (set behind the setter's back) is refused */
  json_decref(m->args);
  m->args = json_array();
  assert_int_equal(proto_encode(m, &buf, &len, &err), -EINVAL);
  assert_int_equal(err.code, PROTO_E_FIELD_TYPE);
  assert_null(buf);
  proto_msg_destroy(&m);
}

static void test_encode_refuses_frames_over_the_limit(void **state) {
  (void)state;
  proto_msg_t *m = proto_msg_new(PROTO_DELTA);
  proto_err_t err;
  char *big = malloc(PROTO_MAX_FRAME + 1), *buf = NULL;
  size_t len;
  memset(big, 'a', PROTO_MAX_FRAME);
  big[PROTO_MAX_FRAME] = '\0';
  proto_set_str(m, PROTO_F_session, "main");
  proto_set_str(m, PROTO_F_kind, "text");
  proto_set_str(m, PROTO_F_text, big);
  PROTO_SET(m, turn, 1);
  PROTO_SET(m, attempt, 1);
  PROTO_SET(m, seq, 1);
  assert_int_equal(proto_encode(m, &buf, &len, &err), -EMSGSIZE);
  assert_int_equal(err.code, PROTO_E_OVERSIZE);
  assert_null(buf);
  free(big);
  proto_msg_destroy(&m);
}

static void test_setters_check_kinds_and_own_values(void **state) {
  (void)state;
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  char name[] = "node-7";
  assert_int_equal(proto_set_str(m, PROTO_F_name, name), 0);
  name[0] = 'X'; /* copied */
  assert_string_equal(m->name, "node-7");
  assert_true(PROTO_HAS(m, name));
  assert_int_equal(proto_set_str(m, PROTO_F_name, NULL), 0);
  assert_false(PROTO_HAS(m, name));
  assert_null(m->name);
  assert_int_equal(proto_set_str(m, PROTO_F_slots, "3"), -EINVAL);
  assert_int_equal(proto_set_json(m, PROTO_F_labels, json_array()), -EINVAL); /* released */
  assert_int_equal(proto_set_json(m, PROTO_F_models, json_object()), -EINVAL);
  assert_int_equal(proto_set_json(m, PROTO_F_name, json_string("x")), -EINVAL);
  assert_int_equal(proto_set_json(m, PROTO_F_labels, json_object()), 0);
  assert_int_equal(proto_set_json(m, PROTO_F_labels, json_object()), 0); /* replaces, no leak */
  assert_int_equal(proto_set_json(m, PROTO_F_models, json_array()), 0);
  assert_true(PROTO_HAS(m, labels) && PROTO_HAS(m, models));
  assert_int_equal(proto_set_json(m, PROTO_F_labels, NULL), 0);
  assert_false(PROTO_HAS(m, labels));
  proto_msg_destroy(&m);
  assert_null(m);
  proto_msg_destroy(&m);
  proto_msg_destroy(NULL);
  assert_null(proto_msg_new(PROTO_NONE));
  assert_null(proto_msg_new(PROTO_TYPE_COUNT));
}

static void test_tables_and_names(void **state) {
  (void)state;
  static const char *const names[] = {"ok",        "oversize",    "malformed", "too_deep",       "bad_count",
                                      "not_map",   "bad_version", "bad_type",  "bad_field_type", "missing_field",
                                      "bad_value", "nomem"};
  for (int c = PROTO_OK; c <= PROTO_E_NOMEM; c++) {
    assert_string_equal(proto_errcode_name((proto_errcode_t)c), names[c]);
    assert_string_not_equal(proto_errcode_doc((proto_errcode_t)c), "?");
  }
  assert_string_equal(proto_errcode_name((proto_errcode_t)99), "?");
  for (int t = PROTO_NONE + 1; t < PROTO_TYPE_COUNT; t++)
    assert_int_equal(proto_type_by_name(proto_type_name((proto_type_t)t)), t);
  assert_int_equal(proto_type_by_name("nope"), PROTO_NONE);
  assert_int_equal(proto_type_by_name(NULL), PROTO_NONE);
  assert_string_equal(proto_type_name(PROTO_TURN_DONE), "turn_done");
  assert_string_equal(proto_field_name(PROTO_F_heartbeat_ms), "heartbeat_ms");
  assert_int_equal(proto_field_kind(PROTO_F_labels), PROTO_KIND_MAP);
  assert_string_equal(proto_kind_name(PROTO_KIND_LIST), "list");
  assert_int_equal(proto_member(PROTO_HELLO, PROTO_F_name), PROTO_MEMBER_REQ);
  assert_int_equal(proto_member(PROTO_HELLO, PROTO_F_host), PROTO_MEMBER_OPT);
  assert_int_equal(proto_member(PROTO_HELLO, PROTO_F_text), PROTO_MEMBER_NONE);
}

/* ---- malformed corpus --------------------------------------------------- */

typedef struct {
  const char *name;
  const char *json;       /* frame from JSON text, or NULL */
  const char *patch_from; /* optional same-length byte patch of the packed JSON */
  const char *patch_to;
  const char *raw; /* or raw bytes */
  size_t rawlen;
  void (*build)(frame_t *); /* or a builder */
  proto_errcode_t want;
  const char *mention; /* text err.text must contain, or NULL */
} bad_case_t;

#define HELLO_ENV "\"v\":1,\"type\":\"hello\",\"id\":1"
#define HELLO_OK HELLO_ENV ",\"role\":\"node\",\"name\":\"n1\",\"version\":\"0.1\""

static void build_trailing(frame_t *fr) {
  frame_hello(fr, 0);
  frame_raw(fr, "\xc0", 1);
}

static void build_array32_in_field(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "tools");
  msgpack_pack_array(&fr->pk, UINT32_MAX);
  frame_raw(fr, "\x01\x02\x03\x04", 4);
}

static void build_str32_in_field(frame_t *fr) {
  frame_env(fr, "hello", 3);
  pk_str(fr, "role");
  pk_str(fr, "node");
  pk_str(fr, "version");
  pk_str(fr, "0.1");
  pk_str(fr, "name");
  frame_raw(fr,
            "\xdb\xff\xff\xff\xff"
            "abc",
            8);
}

static void build_deep(frame_t *fr) {
  frame_env(fr, "request", 2);
  pk_str(fr, "verb");
  pk_str(fr, "x");
  pk_str(fr, "args");
  frame_raw(fr,
            "\x81\xa1"
            "a",
            3);
  for (int i = 0; i < 100; i++)
    frame_raw(fr, "\x91", 1);
  frame_raw(fr, "\x01", 1);
}

static void build_oversize(frame_t *fr) {
  static char chunk[4096];
  memset(chunk, 'a', sizeof chunk);
  frame_hello(fr, 1);
  pk_str(fr, "host");
  msgpack_pack_str(&fr->pk, PROTO_MAX_FRAME);
  for (size_t n = 0; n < PROTO_MAX_FRAME; n += sizeof chunk)
    frame_raw(fr, chunk, sizeof chunk);
}

static void build_uint64_slots(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "slots");
  msgpack_pack_uint64(&fr->pk, (uint64_t)INT64_MAX + 1);
}

static void build_uint64_id(frame_t *fr) {
  msgpack_pack_map(&fr->pk, 3);
  pk_str(fr, "v");
  msgpack_pack_int(&fr->pk, 1);
  pk_str(fr, "type");
  pk_str(fr, "bye");
  pk_str(fr, "id");
  msgpack_pack_uint64(&fr->pk, UINT64_MAX);
}

static void build_bin(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "host");
  msgpack_pack_bin_with_body(&fr->pk, "abc", 3);
}

static void build_ext(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "labels");
  msgpack_pack_map(&fr->pk, 1);
  pk_str(fr, "when");
  msgpack_pack_ext_with_body(&fr->pk, "\x00\x00\x00\x01", 4, -1);
}

static void build_int_key_in_args(frame_t *fr) {
  frame_env(fr, "request", 2);
  pk_str(fr, "verb");
  pk_str(fr, "x");
  pk_str(fr, "args");
  msgpack_pack_map(&fr->pk, 1);
  msgpack_pack_int(&fr->pk, 1);
  msgpack_pack_int(&fr->pk, 2);
}

static void build_nul_in_nested_key(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "labels");
  msgpack_pack_map(&fr->pk, 1);
  msgpack_pack_str_with_body(&fr->pk, "a\0b", 3);
  pk_str(fr, "x");
}

static void build_duplicate_field(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "name");
  pk_str(fr, "other");
}

static void build_duplicate_type(frame_t *fr) {
  frame_env(fr, "bye", 1);
  pk_str(fr, "type");
  pk_str(fr, "hello");
}

static void build_duplicate_nested_key(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "labels");
  msgpack_pack_map(&fr->pk, 2);
  pk_str(fr, "k");
  pk_str(fr, "1");
  pk_str(fr, "k");
  pk_str(fr, "2");
}

static void build_nan_nested(frame_t *fr) {
  frame_hello(fr, 1);
  pk_str(fr, "labels");
  msgpack_pack_map(&fr->pk, 1);
  pk_str(fr, "x");
  msgpack_pack_double(&fr->pk, 0.0 / 0.0);
}

static void build_many_empty_maps(frame_t *fr) {
  enum { N = 200000 };
  frame_env(fr, "request", 2);
  pk_str(fr, "verb");
  pk_str(fr, "x");
  pk_str(fr, "args");
  msgpack_pack_map(&fr->pk, 1);
  pk_str(fr, "a");
  msgpack_pack_array(&fr->pk, N);
  for (int i = 0; i < N; i++)
    frame_raw(fr, "\x80", 1);
}

static const bad_case_t bad_cases[] = {
    {"empty frame", .raw = "", .rawlen = 0, .want = PROTO_E_MALFORMED, .mention = "empty"},
    {"garbage byte 0xc1", .raw = "\xc1", .rawlen = 1, .want = PROTO_E_MALFORMED, .mention = "0xc1"},
    {"truncated map", .raw = "\x83\xa1v\x01\xa4type\xa5hello", .rawlen = 15, .want = PROTO_E_MALFORMED,
     .mention = "truncated"},
    {"truncated int", .raw = "\x81\xa1v\xcd\x01", .rawlen = 5, .want = PROTO_E_MALFORMED},
    {"trailing bytes", .build = build_trailing, .want = PROTO_E_MALFORMED, .mention = "trailing"},
    {"top level array", .json = "[1, 2]", .want = PROTO_E_NOT_MAP},
    {"top level int", .json = "1", .want = PROTO_E_NOT_MAP},
    {"top level string", .json = "\"hello\"", .want = PROTO_E_NOT_MAP},
    {"map with int key", .raw = "\x81\x01\x01", .rawlen = 3, .want = PROTO_E_NOT_MAP},
    {"map32 claiming 2^32-1 entries in 16 bytes", .raw = "\xdf\xff\xff\xff\xff\0\0\0\0\0\0\0\0\0\0\0", .rawlen = 16,
     .want = PROTO_E_COUNT},
    {"array16 claiming more than follows", .raw = "\xdc\x00\x05\x01\x01", .rawlen = 5, .want = PROTO_E_COUNT},
    {"array32 claiming a huge count in a field", .build = build_array32_in_field, .want = PROTO_E_COUNT,
     .mention = "\"tools\""},
    {"str32 claiming 4 GB", .build = build_str32_in_field, .want = PROTO_E_COUNT, .mention = "\"name\""},
    {"nesting 100 deep", .build = build_deep, .want = PROTO_E_DEPTH, .mention = "\"args\""},
    {"frame over PROTO_MAX_FRAME", .build = build_oversize, .want = PROTO_E_OVERSIZE},
    {"many empty maps (decode budget)", .build = build_many_empty_maps, .want = PROTO_E_OVERSIZE,
     .mention = "\"args\""},
    {"v missing", .json = "{\"type\":\"bye\",\"id\":1}", .want = PROTO_E_VERSION, .mention = "missing \"v\""},
    {"v=2", .json = "{\"v\":2,\"type\":\"bye\",\"id\":1}", .want = PROTO_E_VERSION,
     .mention = "protocol version 2 not supported (this side speaks 1)"},
    {"v negative", .json = "{\"v\":-1,\"type\":\"bye\",\"id\":1}", .want = PROTO_E_VERSION},
    {"v as string", .json = "{\"v\":\"1\",\"type\":\"bye\",\"id\":1}", .want = PROTO_E_VERSION, .mention = "string"},
    {"type unknown", .json = "{\"v\":1,\"type\":\"foo\",\"id\":1}", .want = PROTO_E_TYPE,
     .mention = "unknown message type \"foo\""},
    {"type missing", .json = "{\"v\":1,\"id\":1}", .want = PROTO_E_TYPE, .mention = "\"type\""},
    {"type int", .json = "{\"v\":1,\"type\":3,\"id\":1}", .want = PROTO_E_TYPE},
    {"id missing", .json = "{\"v\":1,\"type\":\"bye\"}", .want = PROTO_E_MISSING, .mention = "\"id\""},
    {"id as string", .json = "{\"v\":1,\"type\":\"bye\",\"id\":\"1\"}", .want = PROTO_E_FIELD_TYPE,
     .mention = "\"id\""},
    {"id above int64", .build = build_uint64_id, .want = PROTO_E_VALUE, .mention = "\"id\""},
    {"hello with slots as string", .json = "{" HELLO_OK ",\"slots\":\"4\"}", .want = PROTO_E_FIELD_TYPE,
     .mention = "field \"slots\" of hello: expected int, got string"},
    {"hello without name", .json = "{" HELLO_ENV ",\"role\":\"node\",\"version\":\"1\"}", .want = PROTO_E_MISSING,
     .mention = "hello: missing required field \"name\""},
    {"invalid UTF-8 in a STR field", .json = "{" HELLO_OK ",\"host\":\"@@BAD@@\"}", .patch_from = "@@BAD@@",
     .patch_to = "ab\xc3\x28"
                 "cde",
     .want = PROTO_E_VALUE, .mention = "\"host\""},
    {"surrogate in a STR field", .json = "{" HELLO_OK ",\"host\":\"@@BAD@@\"}", .patch_from = "@@BAD@@",
     .patch_to = "ab\xed\xa0\x80"
                 "de",
     .want = PROTO_E_VALUE, .mention = "\"host\""},
    {"invalid UTF-8 in a nested map string", .json = "{" HELLO_OK ",\"labels\":{\"k\":\"@@BAD@@\"}}",
     .patch_from = "@@BAD@@",
     .patch_to = "\xff\xfe"
                 "abcde",
     .want = PROTO_E_VALUE, .mention = "\"labels\""},
    {"invalid UTF-8 in a nested map key", .json = "{" HELLO_OK ",\"labels\":{\"@@BAD@@\":1}}", .patch_from = "@@BAD@@",
     .patch_to = "\xc0\xaf"
                 "abcde",
     .want = PROTO_E_VALUE, .mention = "\"labels\""},
    {"NUL byte in a STR field",
     .json = "{" HELLO_ENV ",\"role\":\"node\",\"name\":\"a\\u0000b\","
             "\"version\":\"1\"}",
     .want = PROTO_E_VALUE, .mention = "\"name\""},
    {"NUL byte in a nested map key", .build = build_nul_in_nested_key, .want = PROTO_E_VALUE, .mention = "\"labels\""},
    {"uint64 above INT64_MAX in an INT field", .build = build_uint64_slots, .want = PROTO_E_VALUE,
     .mention = "\"slots\""},
    {"bin value", .build = build_bin, .want = PROTO_E_VALUE, .mention = "\"host\""},
    {"ext value", .build = build_ext, .want = PROTO_E_VALUE, .mention = "\"labels\""},
    {"MAP field given an array", .json = "{" HELLO_OK ",\"labels\":[1]}", .want = PROTO_E_FIELD_TYPE,
     .mention = "\"labels\""},
    {"LIST field given a map", .json = "{" HELLO_OK ",\"models\":{}}", .want = PROTO_E_FIELD_TYPE,
     .mention = "\"models\""},
    {"BOOL field given an int",
     .json = "{\"v\":1,\"type\":\"turn_failed\",\"id\":1,"
             "\"session\":\"s\",\"turn\":1,\"attempt\":1,\"code\":\"c\",\"detail\":\"d\",\"retryable\":1}",
     .want = PROTO_E_FIELD_TYPE, .mention = "\"retryable\""},
    {"map inside args with a non-string key", .build = build_int_key_in_args, .want = PROTO_E_NOT_MAP,
     .mention = "\"args\""},
    {"duplicate field", .build = build_duplicate_field, .want = PROTO_E_MALFORMED, .mention = "\"name\""},
    {"duplicate type", .build = build_duplicate_type, .want = PROTO_E_MALFORMED, .mention = "\"type\""},
    {"duplicate key in a nested map", .build = build_duplicate_nested_key, .want = PROTO_E_MALFORMED,
     .mention = "\"labels\""},
    {"NaN in a nested map", .build = build_nan_nested, .want = PROTO_E_VALUE, .mention = "\"labels\""},
};

static void build_case(const bad_case_t *c, frame_t *fr) {
  frame_init(fr);
  if (c->build)
    c->build(fr);
  else if (c->json)
    frame_json(fr, c->json);
  else
    frame_raw(fr, c->raw, c->rawlen);
  if (c->patch_from)
    frame_patch(fr, c->patch_from, c->patch_to, strlen(c->patch_from));
}

static void test_malformed_corpus_is_rejected_with_the_right_error(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case_t *c = &bad_cases[i];
    proto_msg_t *sentinel = (proto_msg_t *)&bad_cases[0], *out = sentinel;
    proto_err_t err = {0};
    frame_t fr;
    proto_errcode_t rc;
    build_case(c, &fr);
    rc = decode_frame(&fr, &out, &err);
    if (rc != c->want || err.code != c->want)
      fail_msg("case \"%s\": got %s (%s), want %s", c->name, proto_errcode_name(rc), err.text,
               proto_errcode_name(c->want));
    if (c->mention && !strstr(err.text, c->mention))
      fail_msg("case \"%s\": text \"%s\" does not mention %s", c->name, err.text, c->mention);
    if (out != sentinel)
      fail_msg("case \"%s\": *out was touched", c->name);
    if (getenv("PROTO_TEST_VERBOSE"))
      printf("%-45s %-15s %s\n", c->name, proto_errcode_name(rc), err.text);
    frame_free(&fr);
  }
}

static void test_error_text_quotes_at_most_a_short_sanitized_name(void **state) {
  (void)state;
  frame_t fr;
  proto_msg_t *out = NULL;
  proto_err_t err;
  char type[300];
  memset(type, 'S', sizeof type - 1);
  type[sizeof type - 1] = '\0';
  memcpy(type, "t\x01\"", 3);
  frame_init(&fr);
  frame_env(&fr, type, 0);
  assert_int_equal(decode_frame(&fr, &out, &err), PROTO_E_TYPE);
  assert_null(strstr(err.text, "SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS")); /* > 32 chars */
  assert_null(strchr(err.text, '\x01'));
  assert_non_null(strstr(err.text, "unknown message type \"t??"));
  frame_free(&fr);

  frame_init(&fr); /* a bad secret string is named, never echoed */
  frame_json(&fr, "{" HELLO_OK ",\"host\":\"SECRET-TOKEN-@@BAD@@\"}");
  frame_patch(&fr, "@@BAD@@", "\xff\xff\xff\xff\xff\xff\xff", 7);
  assert_int_equal(decode_frame(&fr, &out, &err), PROTO_E_VALUE);
  assert_null(strstr(err.text, "SECRET"));
  frame_free(&fr);
}

static void test_unknown_keys_and_foreign_fields_are_ignored(void **state) {
  (void)state;
  frame_t fr;
  proto_msg_t *out = NULL;
  proto_err_t err;
  frame_init(&fr);
  frame_json(&fr, "{" HELLO_OK ",\"future\":{\"x\":[1,2,{\"y\":null}]},\"also_new\":3.5,"
                  "\"text\":\"delta text\",\"turn\":\"not even an int\",\"slots\":4}");
  if (decode_frame(&fr, &out, &err) != PROTO_OK)
    fail_msg("%s", err.text);
  assert_int_equal(out->type, PROTO_HELLO);
  assert_string_equal(out->name, "n1");
  assert_true(out->slots == 4);
  assert_false(PROTO_HAS(out, text));
  assert_false(PROTO_HAS(out, turn));
  assert_true(out->has == (PROTO_BIT(role) | PROTO_BIT(name) | PROTO_BIT(version) | PROTO_BIT(slots)));
  proto_msg_destroy(&out);
  frame_free(&fr);
}

/* An int beyond int64 or a map with a non-string key is refused in a field,
 * but an unknown key may hold one (decode ignores it, and so must peek). */
static void test_unknown_keys_may_hold_ints_beyond_int64(void **state) {
  (void)state;
  frame_t fr;
  proto_msg_t *out = NULL;
  proto_err_t err;
  frame_init(&fr);
  frame_hello(&fr, 2);
  pk_str(&fr, "future");
  msgpack_pack_uint64(&fr.pk, UINT64_MAX);
  pk_str(&fr, "future_list");
  msgpack_pack_array(&fr.pk, 2);
  msgpack_pack_uint64(&fr.pk, (uint64_t)INT64_MAX + 1);
  msgpack_pack_map(&fr.pk, 1); /* and a map with an int key */
  msgpack_pack_int(&fr.pk, 1);
  msgpack_pack_nil(&fr.pk);
  if (decode_frame(&fr, &out, &err) != PROTO_OK)
    fail_msg("%s", err.text);
  proto_msg_destroy(&out);
  frame_free(&fr);
  frame_init(&fr);
  frame_hello(&fr, 1);
  pk_str(&fr, "labels");
  msgpack_pack_map(&fr.pk, 1);
  pk_str(&fr, "big");
  msgpack_pack_uint64(&fr.pk, UINT64_MAX);
  assert_int_equal(decode_frame(&fr, &out, &err), PROTO_E_VALUE);
  frame_free(&fr);
}

static void test_decode_accepts_any_int_width_and_nested_nil(void **state) {
  (void)state;
  frame_t fr;
  proto_msg_t *out = NULL;
  proto_err_t err;
  frame_init(&fr);
  frame_env(&fr, "reply", 2);
  pk_str(&fr, "ref");
  msgpack_pack_int8(&fr.pk, -3);
  pk_str(&fr, "result");
  msgpack_pack_nil(&fr.pk);
  assert_int_equal(decode_frame(&fr, &out, &err), PROTO_OK);
  assert_true(out->ref == -3);
  assert_true(json_is_null(out->result));
  proto_msg_destroy(&out);
  frame_free(&fr);

  frame_init(&fr); /* uint64 encoding of INT64_MAX is fine */
  frame_env(&fr, "reply", 1);
  pk_str(&fr, "ref");
  msgpack_pack_uint64(&fr.pk, INT64_MAX);
  assert_int_equal(decode_frame(&fr, &out, &err), PROTO_OK);
  assert_true(out->ref == INT64_MAX);
  proto_msg_destroy(&out);
  frame_free(&fr);
}

/* A request whose args nest `levels` containers below the envelope (args itself
 * included), holding an int at the bottom. */
static void build_nested_args(frame_t *fr, int levels) {
  frame_env(fr, "request", 2);
  pk_str(fr, "verb");
  pk_str(fr, "x");
  pk_str(fr, "args");
  frame_raw(fr,
            "\x81\xa1"
            "a",
            3);
  for (int i = 1; i < levels; i++)
    frame_raw(fr, "\x91", 1);
  frame_raw(fr, "\x01", 1);
}

static void test_nesting_is_accepted_up_to_the_limit_and_not_beyond(void **state) {
  (void)state;
  frame_t fr;
  proto_msg_t *out = NULL;
  proto_err_t err;
  frame_init(&fr);
  build_nested_args(&fr, PROTO_MAX_DEPTH - 1); /* envelope + 11 = 12 levels */
  if (decode_frame(&fr, &out, &err) != PROTO_OK)
    fail_msg("%s", err.text);
  proto_msg_destroy(&out);
  frame_free(&fr);
  frame_init(&fr);
  build_nested_args(&fr, PROTO_MAX_DEPTH);
  assert_int_equal(decode_frame(&fr, &out, &err), PROTO_E_DEPTH);
  frame_free(&fr);
}

/* ---- fuzz ---------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void decode_and_drop(const char *buf, size_t len) {
  proto_msg_t *out = NULL;
  proto_err_t err;
  proto_errcode_t rc = proto_decode(buf, len, &out, &err);
  assert_true(rc == PROTO_OK ? out != NULL : out == NULL);
  assert_true(rc == err.code);
  proto_msg_destroy(&out);
}

static void test_fuzz_mutated_and_truncated_frames_never_crash(void **state) {
  (void)state;
  uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
  char *bufs[PROTO_TYPE_COUNT] = {0};
  size_t lens[PROTO_TYPE_COUNT] = {0};
  static const unsigned char interesting[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc7,
                                              0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};
  for (int t = PROTO_NONE + 1; t < PROTO_TYPE_COUNT; t++) {
    proto_msg_t *m = full_message((proto_type_t)t);
    encode_ok(m, &bufs[t], &lens[t]);
    proto_msg_destroy(&m);
    for (size_t cut = 0; cut < lens[t]; cut++)
      decode_and_drop(bufs[t], cut);
  }
  for (int i = 0; i < 20000; i++) {
    int t = PROTO_NONE + 1 + (int)(xorshift(&seed) % (PROTO_TYPE_COUNT - 1));
    size_t len = lens[t];
    char *copy = malloc(len);
    int flips = 1 + (int)(xorshift(&seed) % 4);
    memcpy(copy, bufs[t], len);
    for (int k = 0; k < flips; k++) {
      uint64_t r = xorshift(&seed);
      size_t at = (size_t)(r % len);
      copy[at] = (r >> 32) & 1 ? (char)interesting[(r >> 40) % sizeof interesting] : (char)(r >> 48);
    }
    if (xorshift(&seed) % 4 == 0)
      len = (size_t)(xorshift(&seed) % (len + 1));
    decode_and_drop(copy, len);
    free(copy);
  }
  for (int t = 0; t < PROTO_TYPE_COUNT; t++)
    free(bufs[t]);
}

/* ---- ZeroMQ ---------------------------------------------------------------- */

/* Waits up to ms for sock to become readable. */
static bool readable(void *sock, long ms) {
  zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
  return zmq_poll(&item, 1, ms) == 1;
}

/* Receives one frame into a malloc'd buffer; *more tells if more frames follow. */
static char *recv_frame(void *sock, size_t *len, int *more) {
  zmq_msg_t msg;
  size_t more_len = sizeof *more;
  char *out;
  zmq_msg_init(&msg);
  assert_true(zmq_msg_recv(&msg, sock, 0) >= 0);
  *len = zmq_msg_size(&msg);
  out = malloc(*len + 1);
  memcpy(out, zmq_msg_data(&msg), *len);
  zmq_msg_close(&msg);
  assert_int_equal(zmq_getsockopt(sock, ZMQ_RCVMORE, more, &more_len), 0);
  return out;
}

static proto_msg_t *hello_msg(const char *name) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  proto_set_str(m, PROTO_F_role, "node");
  proto_set_str(m, PROTO_F_name, name);
  proto_set_str(m, PROTO_F_version, "0.1.0");
  PROTO_SET(m, slots, 4);
  m->id = 1;
  return m;
}

static void test_zmq_router_dealer_round_trip(void **state) {
  (void)state;
  void *ctx = zmq_ctx_new();
  void *router = zmq_socket(ctx, ZMQ_ROUTER), *dealer = zmq_socket(ctx, ZMQ_DEALER);
  int one = 1, more;
  size_t idlen, len;
  proto_msg_t *m = hello_msg("node-1"), *got = NULL;
  proto_err_t err;
  char *id, *payload;

  assert_int_equal(proto_socket_setup(router), 0);
  assert_int_equal(proto_socket_setup(dealer), 0);
  assert_int_equal(zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof one), 0);
  assert_int_equal(zmq_setsockopt(dealer, ZMQ_ROUTING_ID, "node-1", 6), 0);
  assert_int_equal(zmq_bind(router, "inproc://proto-test"), 0);
  assert_int_equal(zmq_connect(dealer, "inproc://proto-test"), 0);

  assert_int_equal(proto_send(dealer, NULL, 0, m, 0), 0);
  assert_true(readable(router, 5000));
  id = recv_frame(router, &idlen, &more);
  assert_true(more);
  assert_int_equal(idlen, 6);
  assert_memory_equal(id, "node-1", 6);
  payload = recv_frame(router, &len, &more);
  assert_false(more);
  assert_int_equal(proto_decode(payload, len, &got, &err), PROTO_OK);
  assert_int_equal(got->type, PROTO_HELLO);
  assert_string_equal(got->name, "node-1");
  assert_true(got->slots == 4);
  proto_msg_destroy(&got);
  free(payload);

  proto_msg_t *w = proto_msg_new(PROTO_WELCOME);
  proto_set_str(w, PROTO_F_epoch, "e-1");
  proto_set_str(w, PROTO_F_version, "0.1.0");
  PROTO_SET(w, heartbeat_ms, 1000);
  w->id = 9;
  assert_int_equal(proto_send(router, id, idlen, w, ZMQ_DONTWAIT), 0);
  assert_true(readable(dealer, 5000));
  payload = recv_frame(dealer, &len, &more);
  assert_false(more);
  assert_int_equal(proto_decode(payload, len, &got, &err), PROTO_OK);
  assert_int_equal(got->type, PROTO_WELCOME);
  assert_true(got->id == 9 && got->heartbeat_ms == 1000);
  proto_msg_destroy(&got);
  free(payload);

  assert_int_equal(proto_send(router, "nobody", 6, w, ZMQ_DONTWAIT), -EHOSTUNREACH);
  assert_int_equal(proto_send_raw(router, id, idlen, "\x80", 1, ZMQ_DONTWAIT), 0); /* still ok */
  assert_true(readable(dealer, 5000));
  payload = recv_frame(dealer, &len, &more);
  assert_int_equal(len, 1);
  free(payload);

  m->has &= ~PROTO_BIT(name); /* does not encode: nothing is sent */
  assert_int_equal(proto_send(dealer, NULL, 0, m, 0), -EINVAL);
  assert_false(readable(router, 0));

  free(id);
  proto_msg_destroy(&m);
  proto_msg_destroy(&w);
  zmq_close(dealer);
  zmq_close(router);
  zmq_ctx_term(ctx);
}

static void test_zmq_socket_setup_sets_maxmsgsize_and_linger(void **state) {
  (void)state;
  void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
  int64_t max = 0;
  int linger = -1;
  size_t sz = sizeof max;
  assert_int_equal(proto_socket_setup(s), 0);
  assert_int_equal(zmq_getsockopt(s, ZMQ_MAXMSGSIZE, &max, &sz), 0);
  assert_true(max == PROTO_MAX_FRAME);
  sz = sizeof linger;
  assert_int_equal(zmq_getsockopt(s, ZMQ_LINGER, &linger, &sz), 0);
  assert_int_equal(linger, 0);
  assert_int_equal(proto_send_raw(s, NULL, 0, "x", (size_t)PROTO_MAX_FRAME + 1, 0), -EMSGSIZE);
  zmq_close(s);
  zmq_ctx_term(ctx);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Waits (polling, up to 10 s) for a monitor event; true when it came. */
static bool wait_event(void *mon, uint16_t want) {
  double deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    zmq_msg_t ev;
    uint16_t event;
    if (!readable(mon, (long)(deadline - now_ms()) + 1))
      return false;
    zmq_msg_init(&ev);
    assert_true(zmq_msg_recv(&ev, mon, 0) >= 6);
    memcpy(&event, zmq_msg_data(&ev), sizeof event);
    zmq_msg_close(&ev);
    zmq_msg_init(&ev);
    assert_true(zmq_msg_recv(&ev, mon, 0) >= 0); /* endpoint frame */
    zmq_msg_close(&ev);
    if (event == want)
      return true;
  }
  return false;
}

static void test_zmq_oversize_frame_is_dropped_not_delivered(void **state) {
  (void)state;
  void *ctx = zmq_ctx_new();
  void *router = zmq_socket(ctx, ZMQ_ROUTER), *raw = zmq_socket(ctx, ZMQ_DEALER);
  void *mon = zmq_socket(ctx, ZMQ_PAIR), *dealer2 = zmq_socket(ctx, ZMQ_DEALER);
  char endpoint[256];
  size_t eplen = sizeof endpoint, len, idlen;
  size_t big = (size_t)PROTO_MAX_FRAME + 1;
  char *buf = calloc(1, big), *payload, *id;
  proto_msg_t *m = hello_msg("after"), *got = NULL;
  proto_err_t err;
  int more, zero = 0;

  assert_int_equal(proto_socket_setup(router), 0);
  assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
  assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &eplen), 0);
  assert_int_equal(zmq_socket_monitor(router, "inproc://proto-mon", ZMQ_EVENT_DISCONNECTED), 0);
  assert_int_equal(zmq_connect(mon, "inproc://proto-mon"), 0);
  zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero); /* raw: no MAXMSGSIZE */
  assert_int_equal(zmq_connect(raw, endpoint), 0);

  assert_int_equal(zmq_send(raw, buf, big, 0), (int)big);
  assert_true(wait_event(mon, ZMQ_EVENT_DISCONNECTED));
  assert_false(readable(router, 0)); /* the frame was never delivered */

  /* the ROUTER still serves well-behaved peers */
  assert_int_equal(proto_socket_setup(dealer2), 0);
  assert_int_equal(zmq_connect(dealer2, endpoint), 0);
  assert_int_equal(proto_send(dealer2, NULL, 0, m, 0), 0);
  assert_true(readable(router, 10000));
  id = recv_frame(router, &idlen, &more);
  assert_true(more);
  payload = recv_frame(router, &len, &more);
  assert_int_equal(proto_decode(payload, len, &got, &err), PROTO_OK);
  assert_string_equal(got->name, "after");

  free(id);
  free(payload);
  free(buf);
  proto_msg_destroy(&got);
  proto_msg_destroy(&m);
  zmq_socket_monitor(router, NULL, 0);
  zmq_close(mon);
  zmq_close(raw);
  zmq_close(dealer2);
  zmq_close(router);
  zmq_ctx_term(ctx);
}

/* ---- the application layer: verb arguments, events, errors, profile ----- */

/* A sample value of a kind, and one of another kind. */
static json_t *sample_of(proto_kind_t kind) {
  switch (kind) {
  case PROTO_KIND_STR: return json_string("s");
  case PROTO_KIND_INT: return json_integer(7);
  case PROTO_KIND_BOOL: return json_true();
  case PROTO_KIND_NUM: return json_real(0.5);
  case PROTO_KIND_MAP: return json_object();
  case PROTO_KIND_LIST: return json_array();
  case PROTO_KIND_ANY: return json_string("any");
  }
  return NULL;
}

static json_t *wrong_of(proto_kind_t kind) {
  return kind == PROTO_KIND_STR ? json_integer(1) : kind == PROTO_KIND_MAP ? json_array() : json_string("x");
}

static const char *const all_verbs[] = {
#define V(name, doc, result) #name,
    PROTO_VERBS(V)
#undef V
};

/* Sets every key of owner (every key when owner is NULL) to a sample value. */
static void put_samples(json_t *obj, const proto_key_t *keys, size_t n, const char *owner) {
  for (size_t i = 0; i < n; i++)
    if (!owner || strcmp(keys[i].owner, owner) == 0)
      json_object_set_new(obj, keys[i].name, sample_of(keys[i].kind));
}

/* Every declared argument of verb with a sample value. */
static json_t *full_args(const char *verb) {
  size_t n;
  const proto_key_t *keys = proto_arg_keys(&n);
  json_t *args = json_object();
  put_samples(args, keys, n, verb);
  return args;
}

static void expect_args(const char *what, const char *verb, const json_t *args, int want_rc, proto_errcode_t want_code,
                        const char *mention) {
  proto_err_t err = {0};
  int rc = proto_args_check(verb, args, &err);
  if (rc != want_rc)
    fail_msg("%s: proto_args_check(%s) = %d (%s), want %d", what, verb, rc, err.text, want_rc);
  if (want_rc != 0 && err.code != want_code)
    fail_msg("%s: code %s, want %s", what, proto_errcode_name(err.code), proto_errcode_name(want_code));
  if (mention && !strstr(err.text, mention))
    fail_msg("%s: text \"%s\" does not mention %s", what, err.text, mention);
}

static void test_every_verb_rejects_required_args_missing_or_of_the_wrong_kind(void **state) {
  (void)state;
  for (size_t v = 0; v < sizeof all_verbs / sizeof all_verbs[0]; v++) {
    json_t *args = full_args(all_verbs[v]);
    expect_args("all arguments", all_verbs[v], args, 0, PROTO_OK, NULL);
    json_decref(args);
  }
  size_t n, want = 0;
  const proto_key_t *arg_keys = proto_arg_keys(&n);
#define K(verb, name, KIND, R, doc) want++;
  PROTO_ARGS(K)
#undef K
  assert_int_equal(n, want);
  for (size_t i = 0; i < n; i++) {
    const proto_key_t *k = &arg_keys[i];
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", k->name);
    json_t *args = full_args(k->owner);
    json_object_set_new(args, k->name, wrong_of(k->kind));
    expect_args("wrong kind", k->owner, args, -EINVAL, PROTO_E_FIELD_TYPE, quoted);
    json_object_set_new(args, k->name, json_null());
    expect_args("null", k->owner, args, k->required ? -EINVAL : 0, PROTO_E_MISSING, k->required ? quoted : NULL);
    json_object_del(args, k->name);
    expect_args("absent", k->owner, args, k->required ? -EINVAL : 0, PROTO_E_MISSING, k->required ? quoted : NULL);
    json_decref(args);
  }
}

typedef struct {
  const char *name;
  const char *verb;
  const char *args; /* JSON, or NULL for no args */
  int want;         /* 0, -EINVAL or -ENOENT */
  proto_errcode_t code;
  const char *mention;
} args_case_t;

static const args_case_t args_cases[] = {
    {"ask without text", "ask", "{}", -EINVAL, PROTO_E_MISSING, "ask: argument \"text\" (str) is required"},
    {"ask without args at all", "ask", NULL, -EINVAL, PROTO_E_MISSING, "\"text\""},
    {"ask with text", "ask", "{\"text\":\"hi\"}", 0, PROTO_OK, NULL},
    {"ask.solo is a bool", "ask", "{\"text\":\"hi\",\"solo\":\"yes\"}", -EINVAL, PROTO_E_FIELD_TYPE,
     "ask: argument \"solo\" must be a bool, not a string"},
    {"ask.session is a string", "ask", "{\"text\":\"hi\",\"session\":3}", -EINVAL, PROTO_E_FIELD_TYPE,
     "\"session\" must be a str, not an int"},
    {"template_run.session is a string", "template_run", "{\"name\":\"t\",\"session\":[]}", -EINVAL, PROTO_E_FIELD_TYPE,
     "template_run: argument \"session\""},
    {"template_run.values is a map", "template_run", "{\"name\":\"t\",\"values\":[1]}", -EINVAL, PROTO_E_FIELD_TYPE,
     "\"values\" must be a map, not a list"},
    {"cancel.turn as a string", "cancel", "{\"turn\":\"5\"}", -EINVAL, PROTO_E_FIELD_TYPE, "\"turn\" must be an int"},
    {"cancel.turn as a real", "cancel", "{\"turn\":5.5}", -EINVAL, PROTO_E_FIELD_TYPE, "not a number"},
    {"approve_tool without allow", "approve_tool", "{\"turn\":1,\"seq\":2}", -EINVAL, PROTO_E_MISSING, "\"allow\""},
    {"null optional is absent", "cancel_workflow", "{\"id\":null,\"rollback\":null}", 0, PROTO_OK, NULL},
    {"unknown arguments are ignored", "nodes", "{\"whatever\":[1,2]}", 0, PROTO_OK, NULL},
    {"args must be a map", "status", "[1]", -EINVAL, PROTO_E_FIELD_TYPE, "args must be a map"},
    {"unknown verb", "frobnicate", "{}", -ENOENT, PROTO_E_VALUE, "unknown verb \"frobnicate\""},
    {"spawn: task required, role optional", "spawn", "{\"role\":\"reviewer\"}", -EINVAL, PROTO_E_MISSING, "\"task\""},
};

static void test_args_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof args_cases / sizeof args_cases[0]; i++) {
    const args_case_t *c = &args_cases[i];
    json_t *args = c->args ? json_loads(c->args, JSON_DECODE_ANY, NULL) : NULL;
    if (c->args)
      assert_non_null(args);
    expect_args(c->name, c->verb, args, c->want, c->code, c->mention);
    json_decref(args);
  }
  assert_true(proto_verb_known("ask"));
  assert_false(proto_verb_known("ask2"));
  assert_false(proto_verb_known(NULL));
}

#define IS_WF_PLAIN false
#define IS_WF_WORKFLOW true
static const struct {
  const char *kind;
  bool workflow;
} all_events[] = {
#define E(kind, BODY, doc) {#kind, IS_WF_##BODY},
    PROTO_EVENTS(E)
#undef E
};

static json_t *full_payload(size_t e) {
  size_t n;
  const proto_key_t *keys = proto_workflow_keys(&n);
  json_t *p = json_object();
  assert_int_equal(proto_event_is_workflow(all_events[e].kind), all_events[e].workflow);
  if (all_events[e].workflow)
    put_samples(p, keys, n, NULL);
  keys = proto_event_keys(&n);
  put_samples(p, keys, n, all_events[e].kind);
  return p;
}

static void expect_event(const char *what, const char *kind, const json_t *payload, int want_rc, const char *mention) {
  proto_err_t err = {0};
  int rc = proto_event_check(kind, payload, &err);
  if (rc != want_rc)
    fail_msg("%s: proto_event_check(%s) = %d (%s), want %d", what, kind, rc, err.text, want_rc);
  if (mention && !strstr(err.text, mention))
    fail_msg("%s: text \"%s\" does not mention %s", what, err.text, mention);
}

static void test_every_event_checks_its_payload_fields(void **state) {
  (void)state;
  for (size_t e = 0; e < sizeof all_events / sizeof all_events[0]; e++) {
    const char *kind = all_events[e].kind;
    json_t *p = full_payload(e);
    expect_event("full payload", kind, p, 0, NULL);
    size_t n;
    const proto_key_t *event_keys = proto_event_keys(&n);
    for (size_t i = 0; i < n; i++) {
      const proto_key_t *k = &event_keys[i];
      if (strcmp(k->owner, kind) != 0)
        continue;
      json_t *bad = json_deep_copy(p);
      json_object_set_new(bad, k->name, wrong_of(k->kind));
      expect_event("wrong kind", kind, k->kind == PROTO_KIND_ANY ? p : bad, k->kind == PROTO_KIND_ANY ? 0 : -EINVAL,
                   k->kind == PROTO_KIND_ANY ? NULL : k->name);
      json_object_del(bad, k->name);
      expect_event("absent", kind, bad, k->required ? -EINVAL : 0, k->required ? k->name : NULL);
      json_decref(bad);
    }
    if (all_events[e].workflow) {
      json_t *bad = json_deep_copy(p);
      json_object_del(bad, "steps");
      expect_event("workflow without steps", kind, bad, -EINVAL, "workflow field \"steps\" (list) is required");
      json_decref(bad);
    }
    json_decref(p);
  }
  expect_event("unknown kind", "nope", NULL, -ENOENT, "unknown event kind \"nope\"");
  json_t *arr = json_array();
  expect_event("payload not a map", "turn_waiting", arr, -EINVAL, "must be a map");
  json_decref(arr);
  json_t *p = json_pack("{s:s, s:s, s:i, s:n}", "node", "n1", "model", "m", "attempt", 1, "after");
  expect_event("turn_started as the broker sends it", "turn_started", p, 0, NULL);
  json_decref(p);
}

/* Every row belongs to a declared verb or event, once, with a doc. */
static void test_key_rows_name_known_owners_once(void **state) {
  (void)state;
  size_t n;
  const proto_key_t *keys = proto_arg_keys(&n);
  for (size_t i = 0; i < n; i++) {
    if (!proto_verb_known(keys[i].owner))
      fail_msg("argument %s of unknown verb %s", keys[i].name, keys[i].owner);
    assert_true(keys[i].doc && keys[i].doc[0]);
    for (size_t j = 0; j < i; j++)
      if (strcmp(keys[i].owner, keys[j].owner) == 0 && strcmp(keys[i].name, keys[j].name) == 0)
        fail_msg("argument %s.%s is declared twice", keys[i].owner, keys[i].name);
  }
  keys = proto_event_keys(&n);
  for (size_t i = 0; i < n; i++) {
    if (proto_event_check(keys[i].owner, NULL, NULL) == -ENOENT)
      fail_msg("field %s of unknown event %s", keys[i].name, keys[i].owner);
    assert_true(keys[i].doc && keys[i].doc[0]);
    for (size_t j = 0; j < i; j++)
      if (strcmp(keys[i].owner, keys[j].owner) == 0 && strcmp(keys[i].name, keys[j].name) == 0)
        fail_msg("field %s.%s is declared twice", keys[i].owner, keys[i].name);
  }
}

static void test_error_codes_have_unique_names_and_docs(void **state) {
  (void)state;
  size_t n = proto_error_count();
  assert_true(n >= 35);
  for (size_t i = 0; i < n; i++) {
    const char *name = proto_error_name(i), *doc = proto_error_doc(i);
    assert_non_null(name);
    assert_non_null(doc);
    assert_true(strlen(name) > 0 && strspn(name, "abcdefghijklmnopqrstuvwxyz_") == strlen(name));
    if (strlen(doc) < 10 || doc[strlen(doc) - 1] != '.')
      fail_msg("error %s: doc \"%s\" is not a sentence", name, doc);
    for (size_t j = 0; j < i; j++)
      if (strcmp(proto_error_name(j), name) == 0)
        fail_msg("error %s is declared twice", name);
    assert_ptr_equal(proto_error_doc_of(name), doc);
  }
  assert_null(proto_error_name(n));
  assert_null(proto_error_doc_of("no_such_code"));
  assert_string_equal(PROTO_ERR_bad_args, "bad_args");
  assert_string_equal(PROTO_ERR_spawn_failed, "spawn_failed");
  assert_string_equal(PROTO_ERR_hello_first, "hello_first");
}

/* A config written to a temporary file and loaded. */
static cadre_config_t *load_config_text(const char *text) {
  char path[] = "/tmp/cadre-test-proto-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  char err[512] = "";
  cadre_config_t *c = config_load(path, NULL, err, sizeof err);
  unlink(path);
  if (!c)
    fail_msg("config: %s", err);
  return c;
}

/* The profile as a node gets it: written, carried in a turn, decoded, read. */
static void profile_through_the_wire(const cadre_config_t *c, proto_profile_t *out, proto_msg_t **keep) {
  proto_msg_t *m = proto_msg_new(PROTO_TURN), *back = NULL;
  proto_err_t err = {0};
  char *buf = NULL;
  size_t len = 0;
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, 1);
  PROTO_SET(m, attempt, 1);
  assert_int_equal(proto_set_json(m, PROTO_F_profile, proto_profile_wire(config_main(c), &c->tools)), 0);
  proto_set_json(m, PROTO_F_messages, json_array());
  assert_int_equal(proto_encode(m, &buf, &len, &err), 0);
  assert_int_equal(proto_decode(buf, len, &back, &err), PROTO_OK);
  proto_profile_read(back->profile, out);
  assert_null(json_object_get(back->profile, "api_key"));
  free(buf);
  proto_msg_destroy(&m);
  *keep = back; /* out borrows from it */
}

static void test_profile_writer_and_reader_round_trip(void **state) {
  (void)state;
  cadre_config_t *c = load_config_text(
      "{\"mcp_servers\": {\"fs\": {\"command\": \"srv\", \"env\": {\"K\": \"MCPSECRET\"}}}, "
      "\"agents\": {\"main_agent\": {\"provider\": \"openai\", \"url\": \"http://127.0.0.1:9/v1\", "
      "\"model\": \"o3-mini\", \"role\": \"main\", \"api_key\": \"SECRET\", \"temperature\": 0.25, "
      "\"max_tokens\": 321, \"stream\": false, \"max_tokens_field\": \"max_completion_tokens\", "
      "\"think\": \"high\", \"network\": true, \"cost_per_1m_input\": 1.5, \"cost_per_1m_output\": 6, "
      "\"mcp_servers\": [\"fs\"]}},"
      " \"tools\": {\"approval\": \"mutating\", \"timeout_s\": 33, \"max_iterations\": 7, \"max_tool_calls\": 9, "
      "\"policy\": {\"main\": [\"read_file\", \"fs__read\"]}}}");
  proto_profile_t pp;
  proto_msg_t *back;
  profile_through_the_wire(c, &pp, &back);
  for (int f = 0; f < PROTO_P_COUNT; f++)
    if (!(pp.has & (UINT32_C(1) << f)))
      fail_msg("profile field %d did not reach the node", f);
  for (int t = 0; t < PROTO_T_COUNT; t++)
    assert_true(pp.tool_has & (UINT32_C(1) << t));
  assert_string_equal(pp.name, "main_agent");
  /* MCP: the server names and the policy's MCP entries, never the server's command or env. */
  assert_string_equal(json_string_value(json_array_get(pp.mcp_servers, 0)), "fs");
  assert_int_equal(json_array_size(pp.mcp_tools), 1);
  assert_string_equal(json_string_value(json_array_get(pp.mcp_tools, 0)), "fs__read");
  char *wire = json_dumps(back->profile, 0);
  assert_null(strstr(wire, "MCPSECRET"));
  assert_null(strstr(wire, "srv"));
  free(wire);
  assert_string_equal(pp.provider, "openai");
  assert_string_equal(pp.url, "http://127.0.0.1:9/v1");
  assert_string_equal(pp.model, "o3-mini");
  assert_string_equal(pp.role, "main");
  assert_true(pp.temperature == 0.25);
  assert_int_equal(pp.max_tokens, 321);
  assert_false(pp.stream);
  assert_true(pp.cost_per_1m_input == 1.5 && pp.cost_per_1m_output == 6);
  assert_string_equal(pp.max_tokens_field, "max_completion_tokens");
  assert_string_equal(json_string_value(pp.think), "high");
  assert_true(pp.network);
  assert_string_equal(pp.tool.approval, "mutating");
  assert_int_equal(pp.tool.timeout_s, 33);
  assert_int_equal(pp.tool.max_iterations, 7);
  assert_int_equal(pp.tool.max_tool_calls, 9);
  char *dump = json_dumps(back->profile, 0);
  assert_null(strstr(dump, "SECRET"));
  free(dump);
  proto_msg_destroy(&back);
  config_destroy(&c);

  /* think as a bool; max_tokens_field absent is left out, not sent empty. */
  c = load_config_text("{\"agents\": {\"main_agent\": {\"provider\": \"ollama\", \"url\": \"http://127.0.0.1:9\", "
                       "\"model\": \"qwen3\", \"role\": \"main\", \"think\": false}}}");
  profile_through_the_wire(c, &pp, &back);
  assert_true(PROTO_PROFILE_HAS(&pp, think) && json_is_false(pp.think));
  assert_true(PROTO_PROFILE_HAS(&pp, network) && !pp.network); /* off by default, and said so */
  assert_false(PROTO_PROFILE_HAS(&pp, max_tokens_field));
  assert_null(json_object_get(back->profile, "max_tokens_field"));
  proto_msg_destroy(&back);
  config_destroy(&c);

  /* A profile map with fields of the wrong kind reads as if they were absent. */
  json_t *w = json_pack("{s:i, s:s, s:s, s:{s:s}}", "model", 5, "temperature", "hot", "stream", "no", "tool_settings",
                        "timeout_s", "10");
  proto_profile_read(w, &pp);
  assert_int_equal(pp.has, 0);
  assert_int_equal(pp.tool_has, 0);
  json_decref(w);
  proto_profile_read(NULL, &pp);
  assert_int_equal(pp.has, 0);
  assert_null(proto_profile_wire(NULL, NULL));
}

static void test_config_rejects_bad_max_tokens_field_and_think(void **state) {
  (void)state;
  const char *bad[] = {"\"max_tokens_field\": \"tokens\"", "\"max_tokens_field\": 5", "\"think\": 1",
                       "\"think\": \"\""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[512], path[] = "/tmp/cadre-test-proto-XXXXXX", err[512] = "";
    snprintf(
        text, sizeof text,
        "{\"agents\": {\"main_agent\": {\"url\": \"http://127.0.0.1:9\", \"model\": \"m\", \"role\": \"main\", %s}}}",
        bad[i]);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cadre_config_t *c = config_load(path, NULL, err, sizeof err);
    unlink(path);
    if (c)
      fail_msg("config with %s was accepted", bad[i]);
    assert_non_null(strstr(err, "agents.main_agent."));
  }
}

static void test_tool_call_map_travels_and_text_stays(void **state) {
  (void)state;
  proto_msg_t *m = proto_msg_new(PROTO_DELTA);
  json_t *call = json_pack("{s:s, s:s, s:s}", "id", "c1", "name", "read_file", "arguments", "{\"path\":\"a\"}");
  char *text = json_dumps(call, JSON_COMPACT);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, 1);
  PROTO_SET(m, attempt, 1);
  PROTO_SET(m, seq, 1);
  proto_set_str(m, PROTO_F_kind, "tool_call");
  proto_set_str(m, PROTO_F_text, text);
  assert_int_equal(proto_set_json(m, PROTO_F_call, json_incref(call)), 0);
  char *buf = NULL;
  size_t len = 0;
  proto_err_t err = {0};
  proto_msg_t *back = NULL;
  assert_int_equal(proto_encode(m, &buf, &len, &err), 0);
  assert_int_equal(proto_decode(buf, len, &back, &err), PROTO_OK);
  assert_string_equal(back->text, text);
  json_t *got = proto_msg_call(back);
  assert_true(json_equal(got, call));
  json_decref(got);
  /* From an older node: no call, the JSON in text. */
  json_decref(back->call);
  back->call = NULL;
  back->has &= ~PROTO_BIT(call);
  got = proto_msg_call(back);
  assert_true(json_equal(got, call));
  json_decref(got);
  proto_set_str(back, PROTO_F_text, "not json");
  assert_null(proto_msg_call(back));
  assert_null(proto_msg_call(NULL));
  /* An approval carries the call too; a map is required of it. */
  assert_int_equal(proto_member(PROTO_APPROVAL, PROTO_F_call), PROTO_MEMBER_OPT);
  assert_int_equal(proto_member(PROTO_DELTA, PROTO_F_call), PROTO_MEMBER_OPT);
  assert_int_equal(proto_set_json(back, PROTO_F_call, json_string("x")), -EINVAL);
  free(buf);
  free(text);
  json_decref(call);
  proto_msg_destroy(&m);
  proto_msg_destroy(&back);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_message_round_trips_with_all_fields),
      cmocka_unit_test(test_minimal_messages_round_trip_with_only_required_fields),
      cmocka_unit_test(test_encode_fails_naming_each_missing_required_field),
      cmocka_unit_test(test_decode_fails_naming_each_missing_required_field),
      cmocka_unit_test(test_encode_ignores_fields_that_are_not_members),
      cmocka_unit_test(test_encode_rejects_values_the_decoder_would_reject),
      cmocka_unit_test(test_encode_refuses_frames_over_the_limit),
      cmocka_unit_test(test_setters_check_kinds_and_own_values),
      cmocka_unit_test(test_tables_and_names),
      cmocka_unit_test(test_malformed_corpus_is_rejected_with_the_right_error),
      cmocka_unit_test(test_error_text_quotes_at_most_a_short_sanitized_name),
      cmocka_unit_test(test_unknown_keys_and_foreign_fields_are_ignored),
      cmocka_unit_test(test_unknown_keys_may_hold_ints_beyond_int64),
      cmocka_unit_test(test_decode_accepts_any_int_width_and_nested_nil),
      cmocka_unit_test(test_nesting_is_accepted_up_to_the_limit_and_not_beyond),
      cmocka_unit_test(test_fuzz_mutated_and_truncated_frames_never_crash),
      cmocka_unit_test(test_zmq_router_dealer_round_trip),
      cmocka_unit_test(test_zmq_socket_setup_sets_maxmsgsize_and_linger),
      cmocka_unit_test(test_zmq_oversize_frame_is_dropped_not_delivered),
      cmocka_unit_test(test_every_verb_rejects_required_args_missing_or_of_the_wrong_kind),
      cmocka_unit_test(test_args_cases),
      cmocka_unit_test(test_every_event_checks_its_payload_fields),
      cmocka_unit_test(test_key_rows_name_known_owners_once),
      cmocka_unit_test(test_error_codes_have_unique_names_and_docs),
      cmocka_unit_test(test_profile_writer_and_reader_round_trip),
      cmocka_unit_test(test_config_rejects_bad_max_tokens_field_and_think),
      cmocka_unit_test(test_tool_call_map_travels_and_text_stays),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
