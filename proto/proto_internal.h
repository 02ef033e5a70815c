/* proto internals shared by proto.c and proto_walk.c (not installed, not API). */
#ifndef CADRE_PROTO_INTERNAL_H
#define CADRE_PROTO_INTERNAL_H

#include <stdarg.h>

#include "proto.h"

/* One row of PROTO_MEMBERS. */
typedef struct {
  proto_type_t type;
  proto_field_t field;
  proto_member_t req;
} proto_member_row_t;

/* PROTO_MEMBERS as data, in table order. */
extern const proto_member_row_t proto_member_rows[];
extern const size_t proto_member_row_count;

/* The fields of a message type as bit masks over proto_field_t: all its
 * members, and the required ones (0 for an unknown type). */
void proto_member_masks(proto_type_t type, uint64_t *all, uint64_t *req);

/* Message type named by s[0..len) (not NUL-terminated), or PROTO_NONE. */
proto_type_t proto_type_by_namen(const char *s, size_t len);
/* Field named by s[0..len), or PROTO_FIELD_COUNT. */
proto_field_t proto_field_by_namen(const char *s, size_t len);

/* Longest wire-supplied name (a type name, a top-level key) quoted in error text. */
#define PROTO_QUOTE_MAX 32

/* Sets err (when not NULL) to code and the formatted text; returns code. */
proto_errcode_t proto_err_set(proto_err_t *err, proto_errcode_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes at most PROTO_QUOTE_MAX bytes of s into out (size >= 4 * PROTO_QUOTE_MAX + 4),
 * replacing anything but printable ASCII (and '"', '\\') by '?', "..." when cut. */
void proto_quote(char *out, size_t outsz, const char *s, size_t len);

/* Structural check of a raw frame before msgpack-c sees it: size, exactly one
 * msgpack object and nothing after it, every declared count/length fitting the
 * bytes that follow, nesting <= PROTO_MAX_DEPTH, no 0xc1, no bin/ext, and a
 * decoded-size budget (see PROTO_DECODE_BUDGET). Returns PROTO_OK or the error. */
proto_errcode_t proto_walk(const unsigned char *data, size_t len, proto_err_t *err);

#endif
