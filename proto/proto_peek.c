/* proto_peek: the routing fields of a frame, read in place.
 *
 * The broker forwards deltas (the bulk of the traffic) as the bytes the node
 * sent. To route one it needs five fields, not a decoded message: this reader
 * walks the frame once, without allocating, and checks the envelope as
 * proto_decode() does (version, type, id, the kind of every known field, UTF-8
 * strings without NUL, required members, no repeated field, nothing after the
 * map) and nested values as well (nesting, counts against the remaining
 * bytes, no bin/ext, UTF-8, finite numbers), all but the decoder's memory
 * budget and its repeated-key check inside nested maps, which only a decoding
 * reader needs.
 * It hands back the routing fields, the session pointing into the frame.
 */
#include <math.h>
#include <string.h>

#include "proto_internal.h"
#include "util.h"

typedef struct {
  const unsigned char *p;
  size_t len, pos;
  proto_err_t *err;
} rd_t;

/* MP_BIGINT: an unsigned int beyond int64, which only a skipped value may be. */
typedef enum { MP_NIL, MP_BOOL, MP_INT, MP_BIGINT, MP_FLOAT, MP_STR, MP_ARRAY, MP_MAP, MP_BAD } mp_t;

static proto_errcode_t rd_fail(const rd_t *r, proto_errcode_t code, const char *what) {
  return proto_err_set(r->err, code, "%s at byte %zu", what, r->pos);
}

static bool need(const rd_t *r, size_t n) {
  return r->len - r->pos >= n;
}

static uint64_t be(const unsigned char *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

/* Reads a header: the value's msgpack type, and its count (strings: bytes;
 * arrays: elements; maps: pairs) or integer, or the float's size in bytes. */
static proto_errcode_t header(rd_t *r, mp_t *t, uint64_t *n, int64_t *i) {
  if (!need(r, 1))
    return rd_fail(r, PROTO_E_MALFORMED, "frame truncated");
  unsigned c = r->p[r->pos++];
  static const unsigned char extra[] = {
      [0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8, [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8, [0xd9] = 1,
      [0xda] = 2, [0xdb] = 4, [0xdc] = 2, [0xdd] = 4, [0xde] = 2, [0xdf] = 4, [0xca] = 0, [0xcb] = 0};
  *n = 0;
  if (c <= 0x7f || c >= 0xe0) {
    *t = MP_INT, *i = (int8_t)c;
    return PROTO_OK;
  }
  if (c >= 0x80 && c <= 0x9f) {
    *t = c <= 0x8f ? MP_MAP : MP_ARRAY, *n = c & 0x0f;
    return PROTO_OK;
  }
  if (c >= 0xa0 && c <= 0xbf) {
    *t = MP_STR, *n = c & 0x1f;
    return PROTO_OK;
  }
  switch (c) {
  case 0xc0: *t = MP_NIL; return PROTO_OK;
  case 0xc2:
  case 0xc3: *t = MP_BOOL; return PROTO_OK;
  case 0xca:
  case 0xcb: *t = MP_FLOAT, *n = c == 0xca ? 4 : 8; return PROTO_OK;
  case 0xcc:
  case 0xcd:
  case 0xce:
  case 0xcf:
  case 0xd0:
  case 0xd1:
  case 0xd2:
  case 0xd3:
  case 0xd9:
  case 0xda:
  case 0xdb:
  case 0xdc:
  case 0xdd:
  case 0xde:
  case 0xdf: break;
  default: r->pos--; return rd_fail(r, PROTO_E_VALUE, "bin, ext or reserved byte");
  }
  size_t k = extra[c];
  if (!need(r, k))
    return rd_fail(r, PROTO_E_MALFORMED, "frame truncated");
  uint64_t v = be(r->p + r->pos, k);
  r->pos += k;
  if (c >= 0xcc && c <= 0xcf) {
    *t = v > INT64_MAX ? MP_BIGINT : MP_INT, *i = (int64_t)v;
  } else if (c >= 0xd0 && c <= 0xd3) {
    *t = MP_INT, *i = k == 1 ? (int8_t)v : k == 2 ? (int16_t)v : k == 4 ? (int32_t)v : (int64_t)v;
  } else {
    *t = c <= 0xdb ? MP_STR : c <= 0xdd ? MP_ARRAY : MP_MAP, *n = v;
  }
  return PROTO_OK;
}

/* Checks a string body of n bytes at the cursor (UTF-8; NUL only when
 * allow_nul) and moves past it. */
static proto_errcode_t read_str(rd_t *r, uint64_t n, bool allow_nul, const char **s) {
  if (!need(r, n))
    return rd_fail(r, PROTO_E_COUNT, "length larger than the bytes that follow");
  *s = (const char *)r->p + r->pos;
  if (((!allow_nul && memchr(*s, 0, n)) || !util_utf8_valid(*s, n)))
    return rd_fail(r, PROTO_E_VALUE, "string with a NUL byte or invalid UTF-8");
  r->pos += n;
  return PROTO_OK;
}

/* Moves past a string body of n bytes, unchecked (top-level keys and the
 * type name, which are compared against known names, never passed on). */
static proto_errcode_t read_raw(rd_t *r, uint64_t n, const char **s) {
  if (!need(r, n))
    return rd_fail(r, PROTO_E_COUNT, "length larger than the bytes that follow");
  *s = (const char *)r->p + r->pos;
  r->pos += n;
  return PROTO_OK;
}

/* Checks a float body of n (4 or 8) bytes at the cursor and moves past it. */
static proto_errcode_t read_float(rd_t *r, uint64_t n) {
  double d;
  if (!need(r, n))
    return rd_fail(r, PROTO_E_MALFORMED, "frame truncated");
  if (n == 8) {
    uint64_t bits = be(r->p + r->pos, 8);
    memcpy(&d, &bits, sizeof d);
  } else {
    uint32_t bits = (uint32_t)be(r->p + r->pos, 4);
    float fl;
    memcpy(&fl, &bits, sizeof fl);
    d = fl;
  }
  if (!isfinite(d))
    return rd_fail(r, PROTO_E_VALUE, "number is not finite");
  r->pos += n;
  return PROTO_OK;
}

/* Moves past one value whose header (t, n) was read. Structure is always
 * checked (depth, counts), as proto_walk checks it; with deep, also what the
 * decoder checks of a field's value (string keys, UTF-8, NUL-free keys,
 * finite numbers, ints within int64). A value decode skips (an unknown key's)
 * is not deep. */
static proto_errcode_t skip_body(rd_t *r, mp_t t, uint64_t n, int depth, bool deep) {
  const char *s;
  if (t == MP_STR) {
    if (deep)
      return read_str(r, n, true, &s);
    if (!need(r, n))
      return rd_fail(r, PROTO_E_COUNT, "length larger than the bytes that follow");
    r->pos += n;
    return PROTO_OK;
  }
  if (t == MP_FLOAT) {
    if (deep)
      return read_float(r, n);
    if (!need(r, n))
      return rd_fail(r, PROTO_E_MALFORMED, "frame truncated");
    r->pos += n;
    return PROTO_OK;
  }
  if (t == MP_BIGINT && deep)
    return rd_fail(r, PROTO_E_VALUE, "integer out of range");
  if (t != MP_ARRAY && t != MP_MAP)
    return PROTO_OK;
  if (depth >= PROTO_MAX_DEPTH)
    return rd_fail(r, PROTO_E_DEPTH, "nesting too deep");
  uint64_t items = t == MP_MAP ? n * 2 : n;
  if (n > r->len || !need(r, items))
    return rd_fail(r, PROTO_E_COUNT, "count larger than the bytes that follow");
  for (uint64_t k = 0; k < items; k++) {
    mp_t et;
    uint64_t en;
    int64_t ei;
    bool key = t == MP_MAP && k % 2 == 0;
    proto_errcode_t rc = header(r, &et, &en, &ei);
    if (rc == PROTO_OK && key && deep && et != MP_STR)
      rc = rd_fail(r, PROTO_E_NOT_MAP, "a map key is not a string");
    if (rc == PROTO_OK && key && deep)
      rc = read_str(r, en, false, &s);
    else if (rc == PROTO_OK)
      rc = skip_body(r, et, en, depth + 1, deep);
    if (rc != PROTO_OK)
      return rc;
  }
  return PROTO_OK;
}

static bool kind_fits(proto_kind_t kind, mp_t t) {
  switch (kind) {
  case PROTO_KIND_STR: return t == MP_STR;
  case PROTO_KIND_INT: return t == MP_INT;
  case PROTO_KIND_BOOL: return t == MP_BOOL;
  case PROTO_KIND_NUM: return t == MP_INT || t == MP_FLOAT;
  case PROTO_KIND_MAP: return t == MP_MAP;
  case PROTO_KIND_LIST: return t == MP_ARRAY;
  case PROTO_KIND_ANY: return t != MP_BAD;
  }
  return false;
}

/* Where the envelope and each known field sit in the top-level map. */
typedef struct {
  bool has_v, has_id;
  int64_t v;
  uint64_t present, twice;      /* fields seen, and seen more than once */
  size_t at[PROTO_FIELD_COUNT]; /* offset of a present field's value header */
} scan_t;

/* An envelope int ("v" or "id"): once, and an int (else the error code kind). */
static proto_errcode_t envelope_int(rd_t *r, const char *name, mp_t t, int64_t i, proto_errcode_t kind, bool *seen,
                                    int64_t *out) {
  if (*seen)
    return proto_err_set(r->err, PROTO_E_MALFORMED, "key \"%s\" appears twice", name);
  if (t != MP_INT)
    return proto_err_set(r->err, kind, "\"%s\" must be an int", name);
  *seen = true, *out = i;
  return PROTO_OK;
}

/* Pass 1: one top-level value named key[0..klen): the envelope is read, a
 * known field's place noted, and the value skipped (structure only). */
static proto_errcode_t scan_value(rd_t *r, const char *key, size_t klen, proto_peek_t *out, scan_t *sc) {
  mp_t t;
  uint64_t n;
  int64_t i = 0;
  const char *s = NULL;
  size_t at = r->pos;
  proto_errcode_t rc = header(r, &t, &n, &i);
  if (rc != PROTO_OK)
    return rc;
  if (klen == 1 && key[0] == 'v')
    return envelope_int(r, "v", t, i, PROTO_E_VERSION, &sc->has_v, &sc->v);
  if (klen == 4 && memcmp(key, "type", 4) == 0) {
    if (out->type != PROTO_NONE)
      return proto_err_set(r->err, PROTO_E_MALFORMED, "key \"type\" appears twice");
    if (t != MP_STR)
      return proto_err_set(r->err, PROTO_E_TYPE, "\"type\" must be a string");
    if ((rc = read_raw(r, n, &s)) != PROTO_OK)
      return rc;
    out->type = proto_type_by_namen(s, n);
    return out->type == PROTO_NONE ? proto_err_set(r->err, PROTO_E_TYPE, "unknown message type") : PROTO_OK;
  }
  if (klen == 2 && memcmp(key, "id", 2) == 0)
    return envelope_int(r, "id", t, i, PROTO_E_FIELD_TYPE, &sc->has_id, &out->id);
  proto_field_t f = proto_field_by_namen(key, klen);
  if (f != PROTO_FIELD_COUNT) {
    uint64_t bit = UINT64_C(1) << f;
    sc->twice |= sc->present & bit;
    sc->present |= bit;
    sc->at[f] = at;
  }
  return skip_body(r, t, n, 1, false);
}

/* Notes a routing field's value in out. */
static void keep(proto_peek_t *out, proto_field_t f, const char *s, uint64_t n, int64_t i) {
  switch (f) {
  case PROTO_F_session: out->session = s, out->session_len = n, out->has |= PROTO_PEEK_SESSION; break;
  case PROTO_F_turn: out->turn = i, out->has |= PROTO_PEEK_TURN; break;
  case PROTO_F_attempt: out->attempt = i, out->has |= PROTO_PEEK_ATTEMPT; break;
  case PROTO_F_seq: out->seq = i, out->has |= PROTO_PEEK_SEQ; break;
  default: break;
  }
}

/* Pass 2: a member field's value, checked as the decoder checks it. */
static proto_errcode_t check_member(rd_t *r, proto_field_t f, size_t at, proto_peek_t *out) {
  mp_t t;
  uint64_t n;
  int64_t i = 0;
  const char *s = NULL;
  r->pos = at;
  proto_errcode_t rc = header(r, &t, &n, &i);
  if (rc == PROTO_OK && !kind_fits(proto_field_kind(f), t))
    return proto_err_set(r->err, PROTO_E_FIELD_TYPE, "field \"%s\" of %s must be %s", proto_field_name(f),
                         proto_type_name(out->type), proto_kind_name(proto_field_kind(f)));
  if (rc == PROTO_OK)
    rc = t == MP_STR ? read_str(r, n, false, &s) : skip_body(r, t, n, 1, true);
  if (rc == PROTO_OK)
    keep(out, f, s, n, i);
  return rc;
}

static proto_errcode_t check_members(rd_t *r, const scan_t *sc, proto_peek_t *out) {
  uint64_t all, req, present = sc->present;
  if (!sc->has_v)
    return proto_err_set(r->err, PROTO_E_VERSION, "missing \"v\" (protocol version)");
  if (sc->v != PROTO_VERSION)
    return proto_err_set(r->err, PROTO_E_VERSION, "protocol version %lld not supported", (long long)sc->v);
  if (out->type == PROTO_NONE)
    return proto_err_set(r->err, PROTO_E_TYPE, "missing \"type\"");
  const char *type = proto_type_name(out->type);
  proto_member_masks(out->type, &all, &req);
  if (sc->twice & all)
    return proto_err_set(r->err, PROTO_E_MALFORMED, "%s: field \"%s\" appears twice", type,
                         proto_field_name((proto_field_t)__builtin_ctzll(sc->twice & all)));
  if (!sc->has_id)
    return proto_err_set(r->err, PROTO_E_MISSING, "%s: missing required field \"id\"", type);
  if (req & ~present)
    return proto_err_set(r->err, PROTO_E_MISSING, "%s: missing required field \"%s\"", type,
                         proto_field_name((proto_field_t)__builtin_ctzll(req & ~present)));
  for (uint64_t m = all & present; m; m &= m - 1) {
    proto_field_t f = (proto_field_t)__builtin_ctzll(m);
    proto_errcode_t rc = check_member(r, f, sc->at[f], out);
    if (rc != PROTO_OK)
      return rc;
  }
  return PROTO_OK;
}

proto_errcode_t proto_peek(const void *data, size_t len, proto_peek_t *out, proto_err_t *err) {
  proto_err_t scratch;
  rd_t r = {data, len, 0, err ? err : &scratch};
  proto_peek_t p = {0};
  scan_t sc; /* at[] is read only where present says */
  sc.has_v = sc.has_id = false, sc.v = 0, sc.present = sc.twice = 0;
  mp_t t;
  uint64_t n;
  int64_t i;
  if (!data || len == 0)
    return proto_err_set(r.err, PROTO_E_MALFORMED, "empty frame");
  if (len > PROTO_MAX_FRAME)
    return proto_err_set(r.err, PROTO_E_OVERSIZE, "frame of %zu bytes is over %d", len, PROTO_MAX_FRAME);
  proto_errcode_t rc = header(&r, &t, &n, &i);
  if (rc == PROTO_OK && t != MP_MAP)
    rc = proto_err_set(r.err, PROTO_E_NOT_MAP, "message is not a map");
  if (rc == PROTO_OK && !need(&r, n * 2))
    rc = rd_fail(&r, PROTO_E_COUNT, "count larger than the bytes that follow");
  for (uint64_t k = 0; rc == PROTO_OK && k < n; k++) {
    const char *key = NULL;
    mp_t kt;
    uint64_t kn;
    rc = header(&r, &kt, &kn, &i);
    if (rc == PROTO_OK && kt != MP_STR)
      rc = proto_err_set(r.err, PROTO_E_NOT_MAP, "key %llu of the message is not a string", (unsigned long long)k);
    if (rc == PROTO_OK)
      rc = read_raw(&r, kn, &key);
    if (rc == PROTO_OK)
      rc = scan_value(&r, key, kn, &p, &sc);
  }
  if (rc == PROTO_OK && r.pos != len)
    rc = proto_err_set(r.err, PROTO_E_MALFORMED, "%zu bytes after the message", len - r.pos);
  if (rc == PROTO_OK)
    rc = check_members(&r, &sc, &p);
  if (rc == PROTO_OK)
    *out = p;
  return rc;
}
