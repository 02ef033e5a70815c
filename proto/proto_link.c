/* proto_link: hello, welcome, heartbeats and re-registration, once (see proto_link.h). */
#include "proto_link.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "util.h"

/* An answer to a hello_first sooner than this after our hello is about a
 * message sent before it: no need to say hello once more. */
#define HELLO_GRACE_MS 500

struct proto_link {
  void *dealer;
  proto_msg_t *hello;
  void (*on_heartbeat)(proto_msg_t *heartbeat, void *arg);
  void *arg;
  int64_t next_id;
  bool registered; /* welcomed since our last hello */
  bool welcomed;   /* welcomed at least once */
  char epoch[64];
  char why[96];
  int heartbeat_ms;
  int64_t last_heard; /* monotonic ms of the last message from the broker */
  int64_t hello_sent;
  int64_t next_hb; /* when our next heartbeat is due */
  void *monitor;   /* PAIR on the DEALER's socket monitor: the broker refusing our key */
  bool refused;    /* said PROTO_LINK_REFUSED since the last welcome */
  char public_key[KEYS_Z85_LEN + 1];
};

/* The DEALER, a CURVE client of the broker. 0, or -1 with err filled. */
static int setup_socket(proto_link_t *l, void *ctx, const proto_link_opts_t *o, char *err, size_t errlen) {
  int ivl = o->reconnect_ivl_ms > 0 ? o->reconnect_ivl_ms : 100;
  int ivl_max = o->reconnect_ivl_max_ms > 0 ? o->reconnect_ivl_max_ms : 1000;
  if (!(l->dealer = keys_client_dealer(ctx, o->key_file, o->broker_key, err, errlen)))
    return -1;
  keys_pair_t kp;
  char kerr[256];
  if (keys_load_pair(o->key_file, &kp, kerr, sizeof kerr) == 0) {
    memcpy(l->public_key, kp.public_key, sizeof l->public_key);
    keys_wipe(&kp);
  }
  /* libzmq tells a socket monitor when the server refused our key (ZAP said no). */
  char ep[64];
  snprintf(ep, sizeof ep, "inproc://cadre-link-monitor-%p", (void *)l);
  if (zmq_socket_monitor(l->dealer, ep, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0 &&
      (l->monitor = zmq_socket(ctx, ZMQ_PAIR)) && zmq_connect(l->monitor, ep) < 0) {
    zmq_close(l->monitor);
    l->monitor = NULL;
  }
  if (proto_socket_setup(l->dealer) < 0 ||
      (o->sndhwm > 0 && zmq_setsockopt(l->dealer, ZMQ_SNDHWM, &o->sndhwm, sizeof o->sndhwm) < 0) ||
      zmq_setsockopt(l->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) < 0 ||
      zmq_setsockopt(l->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) < 0 ||
      zmq_connect(l->dealer, o->endpoint) < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", o->endpoint, zmq_strerror(errno));
    return -1;
  }
  return 0;
}

int proto_link_send(proto_link_t *l, proto_msg_t *m) {
  m->id = ++l->next_id;
  return proto_send(l->dealer, NULL, 0, m, ZMQ_DONTWAIT);
}

int proto_link_send_frame(proto_link_t *l, void *frame, size_t len) {
  int rc = proto_frame_set_id(frame, len, l->next_id + 1);
  if (rc < 0)
    return rc;
  l->next_id++;
  return proto_send_raw(l->dealer, NULL, 0, frame, len, ZMQ_DONTWAIT);
}

/* Says hello (again); why says what made us, for proto_link_why. */
static void say_hello(proto_link_t *l, const char *why) {
  if (why)
    snprintf(l->why, sizeof l->why, "%s", why);
  proto_link_send(l, l->hello);
  l->hello_sent = util_now_ms();
  l->registered = false;
}

proto_link_t *proto_link_new(void *ctx, const proto_link_opts_t *o, proto_msg_t **hello_p, char *err, size_t errlen) {
  if (!ctx || !o || !o->endpoint || !o->key_file || !o->broker_key || !hello_p || !*hello_p ||
      (*hello_p)->type != PROTO_HELLO) {
    snprintf(err, errlen, "proto_link_new: missing endpoint, keys or hello");
    return NULL;
  }
  proto_link_t *l = calloc(1, sizeof *l);
  if (!l) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  l->on_heartbeat = o->on_heartbeat;
  l->arg = o->arg;
  l->heartbeat_ms = PROTO_LINK_HEARTBEAT_MS;
  if (setup_socket(l, ctx, o, err, errlen) < 0) {
    proto_link_destroy(&l);
    return NULL;
  }
  l->hello = *hello_p;
  *hello_p = NULL;
  say_hello(l, NULL);
  l->last_heard = util_now_ms();
  l->next_hb = l->last_heard + l->heartbeat_ms;
  return l;
}

void proto_link_bye(proto_link_t *l) {
  if (!l->dealer || !l->welcomed)
    return;
  proto_msg_t *bye = proto_msg_new(PROTO_BYE);
  if (bye) {
    proto_link_send(l, bye);
    proto_msg_destroy(&bye);
  }
  l->welcomed = l->registered = false;
}

void proto_link_destroy(proto_link_t **self_p) {
  if (!self_p || !*self_p)
    return;
  proto_link_t *l = *self_p;
  proto_link_bye(l);
  if (l->dealer && l->monitor)
    zmq_socket_monitor(l->dealer, NULL, 0);
  if (l->monitor)
    zmq_close(l->monitor);
  if (l->dealer)
    zmq_close(l->dealer);
  proto_msg_destroy(&l->hello);
  free(l);
  *self_p = NULL;
}

static void send_heartbeat(proto_link_t *l) {
  proto_msg_t *m = proto_msg_new(PROTO_HEARTBEAT);
  if (!m)
    return;
  if (l->on_heartbeat)
    l->on_heartbeat(m, l->arg);
  proto_link_send(l, m);
  proto_msg_destroy(&m);
}

/* A broker silent for PROTO_LINK_LIVENESS intervals and a half is gone, and
 * so is a hello unanswered for PROTO_LINK_LIVENESS intervals: hello again. */
static void check_liveness(proto_link_t *l, int64_t now) {
  int64_t silent = now - l->last_heard;
  if (!l->registered) {
    if (now - l->hello_sent >= (int64_t)PROTO_LINK_LIVENESS * l->heartbeat_ms)
      say_hello(l, NULL);
    return;
  }
  if (silent > (int64_t)PROTO_LINK_LIVENESS * l->heartbeat_ms + l->heartbeat_ms / 2) {
    char why[96];
    snprintf(why, sizeof why, "no word from the broker for %lld ms", (long long)silent);
    say_hello(l, why);
  }
}

static void tick(proto_link_t *l) {
  int64_t now = util_now_ms();
  if (now < l->next_hb)
    return;
  send_heartbeat(l);
  check_liveness(l, now);
  l->next_hb = now + l->heartbeat_ms;
}

/* A welcome: registered; returns the notice for the program. */
static int on_welcome(proto_link_t *l, const proto_msg_t *m) {
  bool notice = !l->registered || strcmp(l->epoch, m->epoch) != 0;
  snprintf(l->epoch, sizeof l->epoch, "%s", m->epoch);
  if (m->heartbeat_ms >= 50 && m->heartbeat_ms <= 60000)
    l->heartbeat_ms = (int)m->heartbeat_ms;
  /* The broker's interval applies from now, not after the default one runs out. */
  if (l->next_hb > util_now_ms() + l->heartbeat_ms)
    l->next_hb = util_now_ms() + l->heartbeat_ms;
  l->registered = true;
  l->refused = false;
  if (!notice)
    return PROTO_LINK_TIMEOUT; /* the answer to a repeated hello */
  bool first = !l->welcomed;
  l->welcomed = true;
  return first ? PROTO_LINK_CONNECTED : PROTO_LINK_RECONNECTED;
}

/* Protocol housekeeping: PROTO_LINK_MSG when m is for the program, a notice,
 * or PROTO_LINK_TIMEOUT when the link consumed m. */
static int housekeeping(proto_link_t *l, const proto_msg_t *m) {
  switch (m->type) {
  case PROTO_WELCOME: return on_welcome(l, m);
  case PROTO_HEARTBEAT:
    if (m->epoch && l->registered && strcmp(m->epoch, l->epoch) != 0)
      say_hello(l, "the broker restarted (new epoch)");
    return PROTO_LINK_TIMEOUT;
  case PROTO_ERROR:
    if (strcmp(m->code, PROTO_ERR_hello_first) != 0)
      return PROTO_LINK_MSG;
    l->registered = false;
    if (util_now_ms() - l->hello_sent > HELLO_GRACE_MS)
      say_hello(l, "the broker did not know us (restarted?)");
    return PROTO_LINK_TIMEOUT;
  default: return PROTO_LINK_MSG;
  }
}

/* Waits up to ms (at most until the next heartbeat) for the socket. 0, or -errno
 * (-EINTR: a signal came). */
static int wait_readable(proto_link_t *l, int64_t ms) {
  int64_t due = l->next_hb - util_now_ms();
  if (due < ms)
    ms = due;
  zmq_pollitem_t items[] = {{l->dealer, 0, ZMQ_POLLIN, 0}, {l->monitor, 0, ZMQ_POLLIN, 0}};
  if (zmq_poll(items, l->monitor ? 2 : 1, ms < 0 ? 0 : (long)ms) < 0)
    return -zmq_errno();
  return 0;
}

/* True once per refusal streak when the monitor saw the broker refuse our key. */
static bool key_refused(proto_link_t *l) {
  bool seen = false;
  for (int i = 0; l->monitor && i < 16; i++) {
    zmq_msg_t head;
    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, l->monitor, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&head);
      break;
    }
    uint16_t event = 0;
    if (zmq_msg_size(&head) >= 2)
      memcpy(&event, zmq_msg_data(&head), 2);
    while (zmq_msg_more(&head)) { /* the endpoint frame */
      zmq_msg_close(&head);
      zmq_msg_init(&head);
      if (zmq_msg_recv(&head, l->monitor, 0) < 0)
        break;
    }
    zmq_msg_close(&head);
    seen |= event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  }
  if (!seen || l->refused)
    return false;
  l->refused = true;
  snprintf(l->why, sizeof l->why, "the broker refused this key");
  return true;
}

int proto_link_recv(proto_link_t *l, int timeout_ms, proto_msg_t **out) {
  int64_t deadline = util_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    tick(l);
    if (key_refused(l))
      return PROTO_LINK_REFUSED;
    proto_msg_t *m = NULL;
    proto_err_t err;
    int rc = proto_recv(l->dealer, NULL, NULL, NULL, &m, &err, ZMQ_DONTWAIT);
    if (rc == 1) {
      l->last_heard = util_now_ms();
      int ev = housekeeping(l, m);
      if (ev == PROTO_LINK_MSG) {
        *out = m;
        return ev;
      }
      proto_msg_destroy(&m);
      if (ev != PROTO_LINK_TIMEOUT)
        return ev;
      continue;
    }
    if (rc == -EPROTO)
      continue; /* a frame we cannot understand: dropped */
    if (rc < 0)
      return rc;
    int64_t left = deadline - util_now_ms();
    if (left <= 0)
      return PROTO_LINK_TIMEOUT;
    rc = wait_readable(l, left);
    if (rc == -EINTR)
      return PROTO_LINK_TIMEOUT; /* let the program look at its flags */
    if (rc < 0)
      return rc;
  }
}

void *proto_link_socket(proto_link_t *l) {
  return l->dealer;
}

int proto_link_due_ms(const proto_link_t *l) {
  int64_t due = l->next_hb - util_now_ms();
  return due < 0 ? 0 : due > INT32_MAX ? INT32_MAX : (int)due;
}

const char *proto_link_epoch(const proto_link_t *l) {
  return l->epoch;
}

const char *proto_link_public_key(const proto_link_t *l) {
  return l->public_key;
}

const char *proto_link_why(const proto_link_t *l) {
  return l->why;
}

int proto_link_heartbeat_ms(const proto_link_t *l) {
  return l->heartbeat_ms;
}
