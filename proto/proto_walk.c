/* proto_walk: the structural validator every frame passes before msgpack-c.
 *
 * msgpack-c trusts the count in an array/map header and allocates for it up
 * front (a 16-byte frame claiming a map32 of 2^32-1 entries asks for 64 GiB).
 * This walker reads the raw bytes first and rejects anything whose declared
 * sizes do not fit the bytes that actually follow, anything nested deeper than
 * PROTO_MAX_DEPTH, the never-used byte 0xc1, bin and ext values, trailing
 * bytes, and frames whose decoded form would cost more than
 * PROTO_DECODE_BUDGET(len) bytes of memory. Only a frame that passes is given
 * to msgpack-c, so every later allocation is bounded by a multiple of len.
 */
#include <stdio.h>
#include <string.h>

#include "proto_internal.h"
#include "util.h"

/* Estimated memory of one decoded value: its msgpack_object in the zone (24
 * bytes) plus its jansson counterpart with allocator overhead, as measured with
 * glibc malloc, jansson 2.14 and msgpack-c 4.0 (int 32, string 80 + length,
 * empty array 138, empty object 224, growth of a parent's table per element).
 * Map keys are charged as strings (jansson stores them in the hash pair). */
#define COST_SCALAR 56u
#define COST_STR 104u /* plus the string's length */
#define COST_ARRAY 160u
#define COST_ARRAY_ELEM 16u /* per element, on top of the element itself */
#define COST_MAP 256u
#define COST_MAP_ENTRY 16u /* per entry, on top of key and value */

typedef struct {
  const unsigned char *p;
  size_t len;
  size_t pos;
  size_t cost;   /* estimated decoded size so far */
  size_t budget; /* PROTO_DECODE_BUDGET(len) */
  proto_err_t *err;
  const char *key; /* top-level key whose value is being walked, or NULL */
  size_t keylen;
} walker_t;

/* Error text prefix naming the top-level field being walked, if any. */
static void where(const walker_t *w, char *out, size_t outsz) {
  char q[4 * PROTO_QUOTE_MAX + 4];
  if (!w->key) {
    snprintf(out, outsz, "%s", "");
    return;
  }
  proto_quote(q, sizeof q, w->key, w->keylen);
  snprintf(out, outsz, "field \"%s\": ", q);
}

static proto_errcode_t walk_reject(const walker_t *w, proto_errcode_t code, const char *what) {
  char pre[4 * PROTO_QUOTE_MAX + 16];
  where(w, pre, sizeof pre);
  return proto_err_set(w->err, code, "%s%s", pre, what);
}

static proto_errcode_t truncated(const walker_t *w) {
  char what[96];
  snprintf(what, sizeof what, "frame truncated at byte %zu of %zu", w->pos, w->len);
  return walk_reject(w, PROTO_E_MALFORMED, what);
}

/* Reads an n-byte big-endian unsigned integer (n <= 8) at the cursor. */
static proto_errcode_t read_be(walker_t *w, size_t n, uint64_t *v) {
  if (w->len - w->pos < n)
    return truncated(w);
  *v = 0;
  for (size_t i = 0; i < n; i++)
    *v = (*v << 8) | w->p[w->pos + i];
  w->pos += n;
  return PROTO_OK;
}

static proto_errcode_t skip(walker_t *w, size_t n) {
  if (w->len - w->pos < n)
    return truncated(w);
  w->pos += n;
  return PROTO_OK;
}

static proto_errcode_t charge(walker_t *w, uint64_t bytes) {
  char what[160];
  if (bytes <= w->budget - w->cost) {
    w->cost += (size_t)bytes;
    return PROTO_OK;
  }
  snprintf(what, sizeof what, "frame of %zu bytes would decode to more than %zu bytes (too many small values)", w->len,
           w->budget);
  return walk_reject(w, PROTO_E_OVERSIZE, what);
}

/* A declared count of n items of at least `per` bytes each must fit the bytes that follow. */
static proto_errcode_t fits(walker_t *w, uint64_t n, uint64_t per, const char *noun) {
  char what[160];
  if (n <= (w->len - w->pos) / per)
    return PROTO_OK;
  snprintf(what, sizeof what, "%s of %llu cannot fit in the %zu bytes that follow", noun, (unsigned long long)n,
           w->len - w->pos);
  return walk_reject(w, PROTO_E_COUNT, what);
}

static proto_errcode_t walk_value(walker_t *w, int depth, const char **str, size_t *strlen_out);

static proto_errcode_t walk_str(walker_t *w, uint64_t n, const char **str, size_t *slen) {
  proto_errcode_t rc = fits(w, n, 1, "string length");
  if (rc == PROTO_OK)
    rc = charge(w, COST_STR + n);
  if (rc != PROTO_OK)
    return rc;
  if (str) {
    *str = (const char *)w->p + w->pos;
    *slen = (size_t)n;
  }
  w->pos += (size_t)n;
  return PROTO_OK;
}

static proto_errcode_t enter(walker_t *w, int depth) {
  char what[64];
  if (depth < PROTO_MAX_DEPTH)
    return PROTO_OK;
  snprintf(what, sizeof what, "nesting deeper than %d levels", PROTO_MAX_DEPTH);
  return walk_reject(w, PROTO_E_DEPTH, what);
}

/* What every array or map header is checked for before its elements: depth,
 * n elements of per values each fitting the bytes left, and its cost. */
static proto_errcode_t open_container(walker_t *w, uint64_t n, int depth, unsigned per, const char *what) {
  proto_errcode_t rc = enter(w, depth);
  if (rc == PROTO_OK)
    rc = fits(w, n, per, what);
  if (rc == PROTO_OK)
    rc = charge(w, per == 1 ? COST_ARRAY + n * COST_ARRAY_ELEM : COST_MAP + n * COST_MAP_ENTRY);
  return rc;
}

static proto_errcode_t walk_array(walker_t *w, uint64_t n, int depth) {
  proto_errcode_t rc = open_container(w, n, depth, 1, "array count");
  for (uint64_t i = 0; rc == PROTO_OK && i < n; i++)
    rc = walk_value(w, depth + 1, NULL, NULL);
  return rc;
}

static proto_errcode_t walk_map(walker_t *w, uint64_t n, int depth) {
  proto_errcode_t rc = open_container(w, n, depth, 2, "map count");
  for (uint64_t i = 0; rc == PROTO_OK && i < n; i++) {
    const char *key = NULL;
    size_t keylen = 0;
    rc = walk_value(w, depth + 1, &key, &keylen);
    if (rc != PROTO_OK)
      break;
    if (depth == 0) { /* the envelope: name the field in errors below it */
      w->key = key;
      w->keylen = keylen;
    }
    rc = walk_value(w, depth + 1, NULL, NULL);
    if (depth == 0)
      w->key = NULL;
  }
  return rc;
}

static proto_errcode_t reject_byte(walker_t *w, unsigned char b) {
  char what[96];
  if ((b >= 0xc4 && b <= 0xc6))
    return walk_reject(w, PROTO_E_VALUE, "bin values are not allowed");
  if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))
    return walk_reject(w, PROTO_E_VALUE, "ext values are not allowed");
  snprintf(what, sizeof what, "invalid msgpack byte 0x%02x at offset %zu", b, w->pos - 1);
  return walk_reject(w, PROTO_E_MALFORMED, what);
}

/* Walks the header byte's variable part; depth = containers enclosing it. */
static proto_errcode_t walk_tagged(walker_t *w, unsigned char b, int depth, const char **str, size_t *slen) {
  uint64_t n = 0;
  proto_errcode_t rc;
  switch (b) {
  case 0xc0:
  case 0xc2:
  case 0xc3: return charge(w, COST_SCALAR);
  case 0xcc:
  case 0xd0:
  case 0xcd:
  case 0xd1:
  case 0xca:
  case 0xce:
  case 0xd2:
  case 0xcb:
  case 0xcf:
  case 0xd3: {
    static const size_t width[] = {[0xca - 0xca] = 4, [0xcb - 0xca] = 8, [0xcc - 0xca] = 1, [0xcd - 0xca] = 2,
                                   [0xce - 0xca] = 4, [0xcf - 0xca] = 8, [0xd0 - 0xca] = 1, [0xd1 - 0xca] = 2,
                                   [0xd2 - 0xca] = 4, [0xd3 - 0xca] = 8};
    rc = skip(w, width[b - 0xca]);
    return rc == PROTO_OK ? charge(w, COST_SCALAR) : rc;
  }
  case 0xd9:
  case 0xda:
  case 0xdb: rc = read_be(w, (size_t)1 << (b - 0xd9), &n); return rc == PROTO_OK ? walk_str(w, n, str, slen) : rc;
  case 0xdc:
  case 0xdd: rc = read_be(w, b == 0xdc ? 2 : 4, &n); return rc == PROTO_OK ? walk_array(w, n, depth) : rc;
  case 0xde:
  case 0xdf: rc = read_be(w, b == 0xde ? 2 : 4, &n); return rc == PROTO_OK ? walk_map(w, n, depth) : rc;
  default: return reject_byte(w, b);
  }
}

static proto_errcode_t walk_value(walker_t *w, int depth, const char **str, size_t *slen) {
  unsigned char b;
  if (w->pos >= w->len)
    return truncated(w);
  b = w->p[w->pos++];
  if (b <= 0x7f || b >= 0xe0)
    return charge(w, COST_SCALAR);
  if (b <= 0x8f)
    return walk_map(w, b & 0x0fu, depth);
  if (b <= 0x9f)
    return walk_array(w, b & 0x0fu, depth);
  if (b <= 0xbf)
    return walk_str(w, b & 0x1fu, str, slen);
  return walk_tagged(w, b, depth, str, slen);
}

proto_errcode_t proto_walk(const unsigned char *data, size_t len, proto_err_t *err) {
  walker_t w = {.p = data, .len = len, .err = err, .budget = PROTO_DECODE_BUDGET(len)};
  proto_errcode_t rc;
  if (len == 0)
    return proto_err_set(err, PROTO_E_MALFORMED, "empty frame");
  if (len > PROTO_MAX_FRAME)
    return proto_err_set(err, PROTO_E_OVERSIZE, "frame of %zu bytes exceeds the limit of %d bytes", len,
                         PROTO_MAX_FRAME);
  rc = walk_value(&w, 0, NULL, NULL);
  if (rc != PROTO_OK)
    return rc;
  if (w.pos != len)
    return proto_err_set(err, PROTO_E_MALFORMED, "%zu trailing byte(s) after the message", len - w.pos);
  return PROTO_OK;
}

proto_errcode_t proto_err_set(proto_err_t *err, proto_errcode_t code, const char *fmt, ...) {
  va_list ap;
  if (!err)
    return code;
  err->code = code;
  va_start(ap, fmt);
  vsnprintf(err->text, sizeof err->text, fmt, ap);
  va_end(ap);
  return code;
}

void proto_quote(char *out, size_t outsz, const char *s, size_t len) {
  size_t n = len < PROTO_QUOTE_MAX ? len : PROTO_QUOTE_MAX, o = 0;
  if (outsz == 0)
    return;
  for (size_t i = 0; i < n && o + 1 < outsz; i++) {
    unsigned char c = (unsigned char)s[i];
    out[o++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
  }
  if (len > n)
    for (int i = 0; i < 3 && o + 1 < outsz; i++)
      out[o++] = '.';
  out[o] = '\0';
}
