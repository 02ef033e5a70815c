/* proto: the Cadre wire protocol (codec, validation, ZeroMQ framing).
 *
 * The messages and their fields are defined once, in proto/messages.def.
 * A message is a flat struct holding every field of every message type; the
 * bit `has` says which are set. Strings and json_t fields are owned by the
 * message and released by proto_msg_destroy().
 */
#ifndef CADRE_PROTO_H
#define CADRE_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "messages.def"

struct zmq_msg_t;

#define PROTO_VERSION 1
/* Largest frame any Cadre socket accepts (also set as ZMQ_MAXMSGSIZE). */
#define PROTO_MAX_FRAME (8 * 1024 * 1024)
/* Deepest nesting of maps/arrays accepted in a frame (the envelope map is depth 1). */
#define PROTO_MAX_DEPTH 12
/* Most memory a frame of len bytes may decode to (msgpack objects plus json_t
 * values, estimated per value before decoding). Ordinary data stays far below
 * it (text ~1-10x, an array of small ints ~72x, 100k tiny {"a":1} maps ~112x);
 * a frame stuffed with tens of thousands of empty maps or arrays (~170-280x)
 * is rejected with PROTO_E_OVERSIZE. Worst case: ~1 GiB for an 8 MiB frame. */
#define PROTO_DECODE_BUDGET(len) ((size_t)(len)*128u + (size_t)1024 * 1024)

typedef enum {
  PROTO_NONE = 0,
#define PROTO_M_ENUM(NAME, wire, doc) PROTO_##NAME,
  PROTO_MESSAGES(PROTO_M_ENUM)
#undef PROTO_M_ENUM
      PROTO_TYPE_COUNT
} proto_type_t;

/* Field ids, used as bit numbers in proto_msg_t.has. */
typedef enum {
#define PROTO_F_ENUM(name, KIND, doc) PROTO_F_##name,
  PROTO_FIELDS(PROTO_F_ENUM)
#undef PROTO_F_ENUM
      PROTO_FIELD_COUNT
} proto_field_t;

typedef enum {
  PROTO_KIND_STR,
  PROTO_KIND_INT,
  PROTO_KIND_BOOL,
  PROTO_KIND_NUM,
  PROTO_KIND_MAP,
  PROTO_KIND_LIST,
  PROTO_KIND_ANY
} proto_kind_t;

#define PROTO_CTYPE_STR char *
#define PROTO_CTYPE_INT int64_t
#define PROTO_CTYPE_BOOL bool
#define PROTO_CTYPE_NUM double
#define PROTO_CTYPE_MAP json_t *
#define PROTO_CTYPE_LIST json_t *
#define PROTO_CTYPE_ANY json_t *

typedef struct proto_msg {
  proto_type_t type;
  int64_t id;   /* sender's sequence number */
  uint64_t has; /* bit (1 << PROTO_F_x) set when field x is present */
#define PROTO_F_MEMBER(name, KIND, doc) PROTO_CTYPE_##KIND name;
  PROTO_FIELDS(PROTO_F_MEMBER)
#undef PROTO_F_MEMBER
} proto_msg_t;

#define PROTO_BIT(field) (UINT64_C(1) << PROTO_F_##field)
/* True when the field is present in the message. */
#define PROTO_HAS(msg, field) (((msg)->has & PROTO_BIT(field)) != 0)
/* Set a scalar field (INT, BOOL, NUM) and mark it present. */
#define PROTO_SET(msg, field, value) ((msg)->field = (value), (msg)->has |= PROTO_BIT(field))

/* Decode/validation error codes. */
typedef enum {
  PROTO_OK = 0,
  PROTO_E_OVERSIZE,   /* frame larger than PROTO_MAX_FRAME */
  PROTO_E_MALFORMED,  /* not valid msgpack, truncated, or trailing bytes */
  PROTO_E_DEPTH,      /* nesting deeper than PROTO_MAX_DEPTH */
  PROTO_E_COUNT,      /* an element count larger than the bytes that follow */
  PROTO_E_NOT_MAP,    /* top level is not a map, or a map key is not a string */
  PROTO_E_VERSION,    /* "v" missing or not PROTO_VERSION */
  PROTO_E_TYPE,       /* "type" missing or not a known message */
  PROTO_E_FIELD_TYPE, /* a field has the wrong msgpack type */
  PROTO_E_MISSING,    /* a required field is absent */
  PROTO_E_VALUE,      /* a value is unusable: bad UTF-8, NUL in a string, int out of range, ext/bin */
  PROTO_E_NOMEM,
} proto_errcode_t;

typedef struct {
  proto_errcode_t code;
  char text[256]; /* precise: names the field and what was wrong */
} proto_err_t;

/* Stable lowercase name of an error code ("oversize", "bad_version", ...). */
const char *proto_errcode_name(proto_errcode_t code);
/* One-sentence description of an error code (for docs and logs). */
const char *proto_errcode_doc(proto_errcode_t code);

/* Wire name of a message type ("hello"), or "?" */
const char *proto_type_name(proto_type_t type);
/* Message type by wire name, or PROTO_NONE. */
proto_type_t proto_type_by_name(const char *name);
/* Field name and kind by id. */
const char *proto_field_name(proto_field_t field);
proto_kind_t proto_field_kind(proto_field_t field);
/* Lowercase name of a field kind ("str", "int", "bool", "num", "map", "list", "any"). */
const char *proto_kind_name(proto_kind_t kind);

typedef enum { PROTO_MEMBER_NONE = 0, PROTO_MEMBER_OPT, PROTO_MEMBER_REQ } proto_member_t;
/* Whether field belongs to message type, and if so whether it is required. */
proto_member_t proto_member(proto_type_t type, proto_field_t field);

/* New empty message of a type. Returns NULL on allocation failure, or for
 * PROTO_NONE / an out-of-range type (errno EINVAL). */
proto_msg_t *proto_msg_new(proto_type_t type);
/* Frees a message, its strings and json references. Accepts NULL; nulls *msg_p. */
void proto_msg_destroy(proto_msg_t **msg_p);

/* Set a STR field to a copy of s (NULL clears it). Returns 0 or -ENOMEM. */
int proto_set_str(proto_msg_t *msg, proto_field_t field, const char *s);
/* Set a MAP/LIST/ANY field, taking ownership of the reference `value`
 * (NULL clears it). Returns 0, or -EINVAL when the JSON type does not fit the
 * field's kind (the reference is then released). */
int proto_set_json(proto_msg_t *msg, proto_field_t field, json_t *value);

/* Encodes msg as one msgpack map. On success *buf (caller frees with free())
 * and *len are set and 0 is returned; on failure returns a negative errno and
 * fills err: -EINVAL (a required field missing, a value the decoder would
 * reject), -EMSGSIZE (frame over PROTO_MAX_FRAME or PROTO_DECODE_BUDGET),
 * -ENOMEM. Present fields that are not members of the type are ignored. */
int proto_encode(const proto_msg_t *msg, char **buf, size_t *len, proto_err_t *err);

/* Decodes and validates one frame. On success *out is a new message (caller
 * destroys it) and PROTO_OK is returned; otherwise the error code, err->text
 * names the problem, and *out is untouched. Never allocates more than a small
 * multiple of len. */
proto_errcode_t proto_decode(const void *data, size_t len, proto_msg_t **out, proto_err_t *err);

/* ---- Reading routing fields in place (the broker's hot path) ------------ */

#define PROTO_PEEK_SESSION (1u << 0)
#define PROTO_PEEK_TURN (1u << 1)
#define PROTO_PEEK_ATTEMPT (1u << 2)
#define PROTO_PEEK_SEQ (1u << 3)

/* What routing needs of a frame. session points into the frame (not
 * NUL-terminated) and is valid while the frame is; has says which are set. */
typedef struct {
  proto_type_t type;
  int64_t id;
  const char *session;
  size_t session_len;
  int64_t turn, attempt, seq;
  uint32_t has; /* PROTO_PEEK_* bits */
} proto_peek_t;

/* Reads type, id, session, turn, attempt and seq from a frame without
 * allocating, checking the envelope and every known field's kind as
 * proto_decode() does (nested values: structure only). On success fills *out
 * and returns PROTO_OK; otherwise the error code, err names the problem, and
 * *out is untouched. */
proto_errcode_t proto_peek(const void *data, size_t len, proto_peek_t *out, proto_err_t *err);

/* ---- The application layer: verb arguments, events, errors (proto_app.c) -- */

/* The application error codes as string constants: PROTO_ERR_bad_args is
 * "bad_args". Use them, not literals, wherever a code is sent or compared. */
#define PROTO_ERR_DECL(name, doc) extern const char PROTO_ERR_##name[];
PROTO_ERRORS(PROTO_ERR_DECL)
#undef PROTO_ERR_DECL

/* How many application error codes there are, and the i-th one's name and doc
 * (NULL when i is out of range). */
size_t proto_error_count(void);
const char *proto_error_name(size_t i);
const char *proto_error_doc(size_t i);
/* The doc of an application error code by name, or NULL when unknown. */
const char *proto_error_doc_of(const char *code);

/* Whether a JSON value has a field kind (an int for NUM too; NULL fits nothing). */
bool proto_kind_fits(proto_kind_t kind, const json_t *v);

/* The tool call of a delta (tool_call, tool_result) or an approval: its call
 * map, or, from an older sender, its text parsed when that is a JSON map.
 * Returns a new reference (caller releases it), or NULL. */
json_t *proto_msg_call(const proto_msg_t *m);

/* One declared key: an argument of a verb, a payload field of an event, or a
 * field of the workflow that WORKFLOW events carry. */
typedef struct {
  const char *owner; /* the verb, the event kind, or "workflow" */
  const char *name;
  proto_kind_t kind;
  bool required;
  const char *doc;
} proto_key_t;

/* PROTO_ARGS, PROTO_EVENT_FIELDS and PROTO_WORKFLOW_FIELDS as data, in table
 * order; *n is set to the number of rows. */
const proto_key_t *proto_arg_keys(size_t *n);
const proto_key_t *proto_event_keys(size_t *n);
const proto_key_t *proto_workflow_keys(size_t *n);

/* Whether a WORKFLOW event (its payload is the workflow plus its own fields);
 * false for PLAIN and unknown kinds. */
bool proto_event_is_workflow(const char *kind);

/* True when verb is in PROTO_VERBS. */
bool proto_verb_known(const char *verb);

/* Checks a request's args (NULL: none) against the verb's PROTO_ARGS rows:
 * every REQ argument present, every declared argument of its kind (null
 * counts as absent; unknown keys are ignored). Returns 0; -ENOENT for an
 * unknown verb; -EINVAL with err->code PROTO_E_MISSING or PROTO_E_FIELD_TYPE
 * and err->text naming the verb and the argument. */
int proto_args_check(const char *verb, const json_t *args, proto_err_t *err);

/* Checks an event's payload (NULL: none) against PROTO_EVENT_FIELDS (and
 * PROTO_WORKFLOW_FIELDS for WORKFLOW events), the same way. Returns 0,
 * -ENOENT for an unknown kind, or -EINVAL with err set. */
int proto_event_check(const char *kind, const json_t *payload, proto_err_t *err);

/* ---- The profile a turn carries (proto_profile.c) ---------------------- */

#define PROTO_PTYPE_STR const char *
#define PROTO_PTYPE_INT int64_t
#define PROTO_PTYPE_BOOL bool
#define PROTO_PTYPE_NUM double
#define PROTO_PTYPE_MAP const json_t *
#define PROTO_PTYPE_LIST const json_t *
#define PROTO_PTYPE_ANY const json_t *

typedef enum {
#define PROTO_P_ENUM(name, KIND, doc) PROTO_P_##name,
  PROTO_PROFILE_FIELDS(PROTO_P_ENUM)
#undef PROTO_P_ENUM
      PROTO_P_COUNT
} proto_profile_field_t;

typedef enum {
#define PROTO_T_ENUM(name, KIND, doc) PROTO_T_##name,
  PROTO_TOOL_SETTINGS(PROTO_T_ENUM)
#undef PROTO_T_ENUM
      PROTO_T_COUNT
} proto_tool_setting_t;

/* A turn's profile as a node reads it. Pointers borrow from the map read. */
typedef struct {
  uint32_t has;      /* bit (1 << PROTO_P_x): field x was present, of its kind */
  uint32_t tool_has; /* bit (1 << PROTO_T_x): tool setting x was present, of its kind */
#define PROTO_P_MEMBER(name, KIND, doc) PROTO_PTYPE_##KIND name;
  PROTO_PROFILE_FIELDS(PROTO_P_MEMBER)
  struct {
    PROTO_TOOL_SETTINGS(PROTO_P_MEMBER)
  } tool;
#undef PROTO_P_MEMBER
} proto_profile_t;

#define PROTO_PROFILE_HAS(pp, field) ((((pp)->has) >> PROTO_P_##field) & 1u)
#define PROTO_TOOL_HAS(pp, setting) ((((pp)->tool_has) >> PROTO_T_##setting) & 1u)

/* The profile map sent to nodes in a turn, written from a config profile and
 * the config's tool settings (tc may be NULL: no tool_settings). Absent
 * optional strings (max_tokens_field) and think are left out; the API key
 * never goes in. Caller owns the result; NULL when p is NULL or on ENOMEM. */
json_t *proto_profile_wire(const cadre_profile_t *p, const cadre_tools_config_t *tc);

/* Reads a turn's profile map (NULL or not a map: nothing). A field of the
 * wrong kind counts as absent. *out is overwritten; it borrows from wire. */
void proto_profile_read(const json_t *wire, proto_profile_t *out);

/* ---- ZeroMQ framing ---------------------------------------------------- */

/* True when sock has a message to read now (ZMQ_EVENTS): loops that drain a
 * socket in bounded batches after zmq_poll ask this before each receive. */
bool proto_readable(void *sock);

/* Apply Cadre's socket options: ZMQ_MAXMSGSIZE = PROTO_MAX_FRAME, linger. */
int proto_socket_setup(void *sock);

/* Sends msg (stamping v and id are the encoder's job; id is taken from msg->id)
 * on a DEALER socket, or on a ROUTER when identity is not NULL (identity frame
 * first). flags are ZMQ send flags (ZMQ_DONTWAIT). Returns 0 or a negative
 * errno (-EHOSTUNREACH for an unknown ROUTER peer, -EAGAIN when full, -EINVAL
 * when the message does not encode). The message stays owned by the caller. */
int proto_send(void *sock, const void *identity, size_t idlen, const proto_msg_t *msg, int flags);

/* Sends already-encoded bytes (used to forward a frame unchanged). Same
 * returns as proto_send, plus -EMSGSIZE when len > PROTO_MAX_FRAME (the peer
 * would drop the connection). */
int proto_send_raw(void *sock, const void *identity, size_t idlen, const void *data, size_t len, int flags);

/* Receives one message from sock: one frame on a DEALER or PULL (identity
 * NULL), an identity frame and one frame on a ROUTER (identity has room for
 * *idlen bytes; *idlen is set to the identity's length). flags: ZMQ_DONTWAIT
 * or 0. raw: NULL, or an initialised zmq_msg_t that receives the frame (the
 * caller closes it) for forwarding it unchanged. out: NULL (with raw) to
 * receive without decoding (the caller peeks, as the broker does for deltas).
 * Returns 1 with *out set (caller destroys it); 0 when nothing waits (EAGAIN)
 * or a signal came; -EPROTO when a message came but is unusable, its frames
 * all read: more or fewer than one frame (err: PROTO_E_MALFORMED) or a frame
 * that does not decode (err says why), with the identity set; another negative
 * errno when the socket fails. *out is untouched unless 1 is returned. */
int proto_recv(void *sock, void *identity, size_t *idlen, struct zmq_msg_t *raw, proto_msg_t **out, proto_err_t *err,
               int flags);

/* The id a message leaves for someone else to stamp (a worker thread's
 * message that its daemon's link sends): proto_encode writes it in 9 bytes,
 * room for any id. */
#define PROTO_ID_UNSTAMPED INT64_MAX
/* Writes id into an encoded frame's envelope in place: a frame made by
 * proto_encode from a message whose id was PROTO_ID_UNSTAMPED (or any id
 * that took 9 bytes). 0, or -EINVAL when the frame does not start with the
 * envelope as proto_encode writes it, or its id has no room. */
int proto_frame_set_id(void *frame, size_t len, int64_t id);

#endif
