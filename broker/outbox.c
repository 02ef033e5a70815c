/* outbox.c: everything the broker sends leaves through here.
 *
 * One writer puts encoded frames on the wire (the ROUTER socket by default;
 * unit tests install one that records). A send to a peer that is gone is
 * reported upwards through hooks.unreachable; nothing here knows about
 * sessions or workflows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "internal.h"
#include "log.h"

static const char *label(const peer_t *p) {
  return p->name ? p->name : "?";
}

static int router_write(void *ctx, const void *id, size_t idlen, const void *data, size_t len) {
  broker_t *b = ctx;
  return proto_send_raw(b->router, id, idlen, data, len, ZMQ_DONTWAIT);
}

void outbox_set_writer(broker_t *b, outbox_write_fn fn, void *ctx) {
  b->write = fn ? fn : router_write;
  b->write_ctx = fn ? ctx : b;
}

/* Writes an encoded frame to a peer; an unreachable peer is reported. */
static int write_peer(broker_t *b, peer_t *p, const void *data, size_t len) {
  if (p->dead)
    return -EHOSTUNREACH;
  int rc = b->write(b->write_ctx, p->id, p->idlen, data, len);
  if (rc == -EHOSTUNREACH) {
    log_warn("%s is unreachable; removing it", label(p));
    if (b->hooks.unreachable)
      b->hooks.unreachable(b, p);
  }
  return rc;
}

int broker_send(broker_t *b, peer_t *p, proto_msg_t *msg) {
  if (p->dead)
    return -EHOSTUNREACH;
  msg->id = ++b->next_msg_id;
  char *buf = NULL;
  size_t len = 0;
  int rc = proto_encode(msg, &buf, &len, NULL);
  if (rc == 0)
    rc = write_peer(b, p, buf, len);
  free(buf);
  if (rc < 0 && rc != -EHOSTUNREACH)
    log_warn("send %s to %s failed: %s", proto_type_name(msg->type), label(p), strerror(-rc));
  return rc;
}

int broker_send_error(broker_t *b, const void *id, size_t idlen, const char *code, const char *detail, int64_t ref) {
  proto_msg_t *m = proto_msg_new(PROTO_ERROR);
  if (!m)
    return -ENOMEM;
  m->id = ++b->next_msg_id;
  proto_set_str(m, PROTO_F_code, code);
  proto_set_str(m, PROTO_F_detail, detail);
  if (ref > 0)
    PROTO_SET(m, ref, ref);
  char *buf = NULL;
  size_t len = 0;
  int rc = proto_encode(m, &buf, &len, NULL);
  if (rc == 0)
    rc = b->write(b->write_ctx, id, idlen, buf, len);
  free(buf);
  proto_msg_destroy(&m);
  return rc;
}

bool outbox_watches(const peer_t *p, const char *session, size_t session_len) {
  if (p->dead || p->role != PEER_CONTROLLER)
    return false;
  if (p->watch_all || !session)
    return true;
  if (!p->watch)
    return false;
  char key[OUTBOX_SESSION_MAX + 1];
  if (session_len > OUTBOX_SESSION_MAX)
    return false;
  memcpy(key, session, session_len);
  key[session_len] = '\0';
  return json_object_get(p->watch, key) != NULL;
}

/* Sends one encoded frame to every watcher of session (NULL: every controller). */
static void write_watchers(broker_t *b, const char *session, size_t session_len, const void *data, size_t len) {
  peer_t *next;
  for (peer_t *p = b->peers; p; p = next) {
    next = p->next; /* an unreachable peer is removed (marked dead, freed later) */
    if (outbox_watches(p, session, session_len))
      write_peer(b, p, data, len);
  }
}

/* An event that does not match its table in proto/messages.def is a bug:
 * logged, and fatal when CADRE_STRICT_PROTO is set (the tests set it). */
static void check_event(const char *kind, const json_t *payload) {
  proto_err_t err;
  if (proto_event_check(kind, payload, &err) == 0)
    return;
  log_error("event does not match the protocol table: %s", err.text);
  if (getenv("CADRE_STRICT_PROTO"))
    abort();
}

void broker_event(broker_t *b, const char *kind, const char *session, int64_t turn, json_t *payload) {
  proto_msg_t *m = proto_msg_new(PROTO_EVENT);
  if (!m) {
    json_decref(payload);
    return;
  }
  proto_set_str(m, PROTO_F_kind, kind);
  check_event(kind, payload);
  if (session)
    proto_set_str(m, PROTO_F_session, session);
  if (turn > 0)
    PROTO_SET(m, turn, turn);
  PROTO_SET(m, seq, ++b->event_seq);
  if (payload)
    proto_set_json(m, PROTO_F_payload, payload);
  /* Encoded once, whatever the number of watchers. */
  m->id = ++b->next_msg_id;
  char *buf = NULL;
  size_t len = 0;
  proto_err_t err;
  if (proto_encode(m, &buf, &len, &err) == 0)
    write_watchers(b, session, session ? strlen(session) : 0, buf, len);
  else
    log_warn("event %s does not encode: %s", kind, err.text);
  free(buf);
  proto_msg_destroy(&m);
}

void broker_forward(broker_t *b, const char *session, size_t session_len, const void *data, size_t len) {
  write_watchers(b, session, session_len, data, len);
}
