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
#include "util.h"

static const char *label(const peer_t *p) {
  return p->name ? p->name : "?";
}

/* Sends the frame being handled as it came: the message sent shares its
 * buffer (a reference is taken, nothing is copied), as a raw forwarder's would. */
static int send_shared(void *sock, const void *id, size_t idlen, zmq_msg_t *frame) {
  zmq_msg_t m;
  zmq_msg_init(&m);
  int rc = zmq_msg_copy(&m, frame) < 0 || zmq_send(sock, id, idlen, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0 ? -zmq_errno() : 0;
  /* the first frame went: the message must be completed (EINTR is tried again) */
  while (rc == 0 && zmq_msg_send(&m, sock, ZMQ_DONTWAIT) < 0)
    rc = zmq_errno() == EINTR ? 0 : -zmq_errno();
  zmq_msg_close(&m);
  return rc;
}

static int router_write(void *ctx, const void *id, size_t idlen, const void *data, size_t len) {
  broker_t *b = ctx;
  zmq_msg_t *frame = b->frame; /* a delta forwarded: the received frame's own bytes */
  if (frame && data == zmq_msg_data(frame) && len == zmq_msg_size(frame))
    return send_shared(b->router, id, idlen, frame);
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

/* broker_send without the log line. */
static int send_msg(broker_t *b, peer_t *p, proto_msg_t *msg) {
  if (p->dead)
    return -EHOSTUNREACH;
  msg->id = ++b->next_msg_id;
  char *buf = NULL;
  size_t len = 0;
  int rc = proto_encode(msg, &buf, &len, NULL);
  if (rc == 0)
    rc = write_peer(b, p, buf, len);
  free(buf);
  return rc;
}

int broker_send(broker_t *b, peer_t *p, proto_msg_t *msg) {
  int rc = send_msg(b, p, msg);
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

/* A controller's queue is full: from now on it catches up from the log,
 * starting after cursor. */
static void fall_behind(peer_t *p, int64_t cursor) {
  if (p->behind)
    return;
  p->behind = true;
  p->cursor = p->behind_from = cursor;
  p->next_try = util_now_ms() + OUTBOX_RETRY_MS;
  log_warn("controller %s cannot keep up (its queue is full); it gets the events it misses from the log", label(p));
}

static void missed_delta(peer_t *p, int64_t turn) {
  p->missed_deltas++;
  if (!p->missed_turns)
    p->missed_turns = json_array();
  size_t n = json_array_size(p->missed_turns);
  if (turn <= 0 || n >= 64 || json_integer_value(json_array_get(p->missed_turns, n - 1)) == turn)
    return;
  for (size_t i = 0; i < n; i++)
    if (json_integer_value(json_array_get(p->missed_turns, i)) == turn)
      return;
  json_array_append_new(p->missed_turns, json_integer(turn));
}

/* Sends one encoded frame to every watcher of session (NULL: every
 * controller): an event's (seq > 0), or a delta of turn (seq 0). A watcher
 * that is behind gets it later from the log (an event) or not at all (a
 * delta, counted). */
static void write_watchers(broker_t *b, const char *session, size_t session_len, int64_t seq, int64_t turn,
                           const void *data, size_t len) {
  if (b->hooks.tap)
    b->hooks.tap(b, data, len);
  peer_t *next;
  for (peer_t *p = b->controllers; p; p = next) {
    next = p->cnext; /* an unreachable peer is removed (marked dead, freed later) */
    if (!outbox_watches(p, session, session_len))
      continue;
    if (!p->behind && write_peer(b, p, data, len) == -EAGAIN)
      fall_behind(p, seq > 0 ? seq - 1 : b->event_seq);
    if (p->behind && seq == 0)
      missed_delta(p, turn);
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

typedef struct held_event {
  char *session; /* or NULL */
  int64_t seq, turn;
  char *buf;
  size_t len;
  struct held_event *next;
} held_event_t;

/* Keeps an encoded event (buf taken) until broker_events_release; false when out of memory. */
static bool keep_event(broker_t *b, const char *session, int64_t seq, int64_t turn, char *buf, size_t len) {
  held_event_t *h = calloc(1, sizeof *h);
  char *s = session ? strdup(session) : NULL;
  if (!h || (session && !s)) {
    free(h), free(s);
    return false;
  }
  *h = (held_event_t){s, seq, turn, buf, len, NULL};
  if (b->events_held_tail)
    b->events_held_tail->next = h;
  else
    b->events_held = h;
  b->events_held_tail = h;
  return true;
}

void broker_events_hold(broker_t *b) {
  b->events_hold++;
}

/* Sends the held events (send false: drops them) and forgets them. */
static void held_events_out(broker_t *b, bool send) {
  while (b->events_held) {
    held_event_t *h = b->events_held;
    b->events_held = h->next;
    if (!b->events_held)
      b->events_held_tail = NULL;
    if (send)
      write_watchers(b, h->session, h->session ? strlen(h->session) : 0, h->seq, h->turn, h->buf, h->len);
    free(h->session), free(h->buf), free(h);
  }
}

void broker_events_release(broker_t *b) {
  if (b->events_hold <= 0 || --b->events_hold > 0)
    return;
  held_events_out(b, true);
}

void broker_events_drop(broker_t *b) {
  b->events_hold = 0;
  held_events_out(b, false);
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
  if (proto_encode(m, &buf, &len, &err) == 0) {
    /* Kept before it is sent: a controller that misses it gets it from the log. */
    if (b->store && store_event_put(b->store, m->seq, session, buf, len) < 0)
      log_error("state: cannot keep event %lld in the log: %s", (long long)m->seq, store_errmsg(b->store));
    if (b->events_hold > 0 && keep_event(b, session, m->seq, turn, buf, len))
      buf = NULL; /* sent once the transaction holding its log row is committed */
    else
      write_watchers(b, session, session ? strlen(session) : 0, m->seq, turn, buf, len);
  } else
    log_warn("event %s does not encode: %s", kind, err.text);
  free(buf);
  proto_msg_destroy(&m);
}

void broker_forward(broker_t *b, const char *session, size_t session_len, int64_t turn, const void *data, size_t len) {
  write_watchers(b, session, session_len, 0, turn, data, len);
}

/* ---- catching up ---------------------------------------------------------- */

/* Tells one controller what it missed and will not get (a gap event, no seq). */
static int send_gap(broker_t *b, peer_t *p, int64_t from, int64_t to, int64_t count) {
  json_t *payload =
      json_pack("{s:I, s:I, s:I}", "from", (json_int_t)from, "to", (json_int_t)to, "count", (json_int_t)count);
  if (p->missed_deltas > 0) {
    json_object_set_new(payload, "deltas", json_integer(p->missed_deltas));
    json_object_set(payload, "turns", p->missed_turns ? p->missed_turns : json_array());
  }
  check_event("gap", payload);
  proto_msg_t *m = proto_msg_new(PROTO_EVENT);
  if (!m) {
    json_decref(payload);
    return -ENOMEM;
  }
  proto_set_str(m, PROTO_F_kind, "gap");
  proto_set_json(m, PROTO_F_payload, payload);
  int rc = send_msg(b, p, m); /* a full queue is tried again: no log line each time */
  proto_msg_destroy(&m);
  if (rc == 0)
    log_warn("controller %s: told of a gap (events %lld..%lld: %lld gone, %lld deltas not sent)", label(p),
             (long long)from, (long long)to, (long long)count, (long long)p->missed_deltas);
  return rc;
}

void outbox_resume(broker_t *b, peer_t *p, int64_t since) {
  if (since < 0)
    since = 0;
  if (since >= b->event_seq || (p->behind && p->cursor <= since))
    return;
  if (!p->behind)
    p->behind_from = since;
  p->behind = true;
  p->cursor = since;
  p->next_try = 0;
}

typedef struct {
  broker_t *b;
  peer_t *p;
  bool blocked;
} replay_t;

static int replay_one(void *arg, int64_t seq, const char *session, const void *frame, size_t len) {
  replay_t *r = arg;
  if (outbox_watches(r->p, session, session ? strlen(session) : 0) && write_peer(r->b, r->p, frame, len) < 0) {
    r->blocked = true;
    return 1;
  }
  r->p->cursor = seq;
  return 0;
}

/* One try for one controller: true while it is still behind. */
static bool catch_up(broker_t *b, peer_t *p, int64_t now) {
  if (now < p->next_try)
    return true;
  int64_t first = store_event_first(b->store);
  if (first == 0 || first > p->cursor + 1) {
    /* Older than the log keeps (or never kept): gone, and said so. */
    int64_t upto = first == 0 ? b->event_seq : first - 1;
    if (upto > p->cursor && send_gap(b, p, p->cursor + 1, upto, upto - p->cursor) < 0)
      goto full;
    if (upto > p->cursor)
      p->cursor = upto;
    p->missed_deltas = 0;
  }
  if (p->cursor < b->event_seq) {
    replay_t r = {b, p, false};
    int n = store_events_after(b->store, p->cursor, OUTBOX_REPLAY_BATCH, replay_one, &r);
    if (r.blocked)
      goto full;
    if (n == OUTBOX_REPLAY_BATCH)
      return true; /* more next time round the loop */
    if (p->cursor < b->event_seq) {
      /* not in the log (it could not be written): gone, and said so */
      if (send_gap(b, p, p->cursor + 1, b->event_seq, b->event_seq - p->cursor) < 0)
        goto full;
      p->missed_deltas = 0;
      p->cursor = b->event_seq;
    }
  }
  if (p->missed_deltas > 0 && send_gap(b, p, p->behind_from + 1, b->event_seq, 0) < 0)
    goto full;
  log_info("controller %s caught up at event %lld", label(p), (long long)b->event_seq);
  p->behind = false;
  p->missed_deltas = 0;
  json_decref(p->missed_turns);
  p->missed_turns = NULL;
  return false;
full:
  p->next_try = now + OUTBOX_RETRY_MS;
  return true;
}

int outbox_catch_up(broker_t *b, int64_t now) {
  int64_t wait = -1;
  for (peer_t *p = b->controllers; p; p = p->cnext) {
    if (p->dead || p->role != PEER_CONTROLLER || !p->behind || !catch_up(b, p, now))
      continue;
    int64_t left = p->next_try > now ? p->next_try - now : 0;
    if (wait < 0 || left < wait)
      wait = left;
  }
  return (int)wait;
}
