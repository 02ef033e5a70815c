/* client.c: controller side of the protocol. */
#include "client.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "keys.h"
#include "util.h"

#define CLIENT_QUEUE_MAX 100000

typedef struct qitem {
  proto_msg_t *msg;
  struct qitem *next;
} qitem_t;

struct client {
  void *ctx, *dealer;
  keys_pair_t keys;
  char broker_pub[KEYS_Z85_LEN + 1];
  char name[300];
  char epoch[64];
  int heartbeat_ms;
  int64_t next_id;
  int64_t last_heard, next_hb;
  bool reconnected;      /* registered again since the caller last heard */
  qitem_t *head, *tail;  /* deltas/events received while waiting for a reply */
  size_t queued;
};

/* Never blocks: a DEALER whose handshakes fail (e.g. a key the broker refuses)
 * has no pipe to queue on, and a blocking send would hang the command. */
static int send_msg(client_t *c, proto_msg_t *m) {
  m->id = ++c->next_id;
  return proto_send(c->dealer, NULL, 0, m, ZMQ_DONTWAIT);
}

static int send_hello(client_t *c) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  if (!m)
    return -ENOMEM;
  char host[256];
  util_hostname(host, sizeof host);
  proto_set_str(m, PROTO_F_role, "controller");
  proto_set_str(m, PROTO_F_name, c->name);
  proto_set_str(m, PROTO_F_version, CADRE_VERSION);
  proto_set_str(m, PROTO_F_host, host);
  int rc = send_msg(c, m);
  proto_msg_destroy(&m);
  return rc;
}

static void heartbeat_if_due(client_t *c) {
  int64_t now = util_now_ms();
  if (now < c->next_hb)
    return;
  c->next_hb = now + c->heartbeat_ms;
  proto_msg_t *m = proto_msg_new(PROTO_HEARTBEAT);
  if (m) {
    send_msg(c, m);
    proto_msg_destroy(&m);
  }
}

/* Receives one decoded message, waiting up to timeout_ms. 1, 0 (timeout), -1. */
static int recv_one(client_t *c, int timeout_ms, proto_msg_t **out) {
  zmq_pollitem_t item = {c->dealer, 0, ZMQ_POLLIN, 0};
  int64_t deadline = util_now_ms() + timeout_ms;
  for (;;) {
    heartbeat_if_due(c);
    int64_t left = deadline - util_now_ms();
    int64_t wait = left < c->heartbeat_ms ? left : c->heartbeat_ms;
    int rc = zmq_poll(&item, 1, wait < 0 ? 0 : (long)wait);
    if (rc < 0 && errno != EINTR)
      return -1;
    if (rc < 0)
      return 0; /* a signal: let the caller look at its flags */
    if (rc > 0) {
      zmq_msg_t f;
      zmq_msg_init(&f);
      if (zmq_msg_recv(&f, c->dealer, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        continue;
      }
      proto_err_t perr;
      proto_errcode_t e = proto_decode(zmq_msg_data(&f), zmq_msg_size(&f), out, &perr);
      zmq_msg_close(&f);
      if (e != PROTO_OK)
        continue; /* a broker we cannot understand: ignore the frame */
      c->last_heard = util_now_ms();
      return 1;
    }
    if (util_now_ms() >= deadline)
      return 0;
  }
}

/* Handles protocol housekeeping; returns true when msg was consumed. */
static bool housekeeping(client_t *c, proto_msg_t *m) {
  if (m->type == PROTO_HEARTBEAT) {
    if (m->epoch && c->epoch[0] && strcmp(m->epoch, c->epoch) != 0)
      send_hello(c);
    return true;
  }
  if (m->type == PROTO_WELCOME) {
    if (c->epoch[0] && strcmp(c->epoch, m->epoch) != 0)
      c->reconnected = true;
    snprintf(c->epoch, sizeof c->epoch, "%s", m->epoch);
    if (m->heartbeat_ms >= 50 && m->heartbeat_ms <= 60000)
      c->heartbeat_ms = (int)m->heartbeat_ms;
    /* The broker's interval applies from now, not after the default one runs out. */
    c->next_hb = util_now_ms() + c->heartbeat_ms;
    return true;
  }
  if (m->type == PROTO_ERROR && strcmp(m->code, "hello_first") == 0) {
    send_hello(c);
    return true;
  }
  return m->type == PROTO_BYE;
}

client_t *client_connect(const client_opts_t *o, int timeout_ms, char *err, size_t errlen) {
  client_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->heartbeat_ms = 1000;
  if (o->name) {
    snprintf(c->name, sizeof c->name, "%s", o->name);
  } else {
    char host[256];
    util_hostname(host, sizeof host);
    struct passwd *pw = getpwuid(getuid());
    snprintf(c->name, sizeof c->name, "%s@%s/%d", pw ? pw->pw_name : "user", host, (int)getpid());
  }
  if (keys_load_pair(o->key_file, &c->keys, err, errlen) < 0 ||
      keys_load_public(o->broker_key, c->broker_pub, err, errlen) < 0)
    goto fail;
  c->ctx = zmq_ctx_new();
  c->dealer = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
  int ivl = 100, ivl_max = 1000;
  if (!c->dealer || proto_socket_setup(c->dealer) < 0 || keys_setup_client(c->dealer, &c->keys, c->broker_pub) < 0 ||
      zmq_setsockopt(c->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) < 0 ||
      zmq_setsockopt(c->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) < 0 ||
      zmq_connect(c->dealer, o->endpoint) < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", o->endpoint, zmq_strerror(errno));
    goto fail;
  }
  send_hello(c);
  int64_t deadline = util_now_ms() + timeout_ms;
  while (!c->epoch[0]) {
    proto_msg_t *m = NULL;
    int64_t left = deadline - util_now_ms();
    if (left <= 0 || recv_one(c, (int)left, &m) <= 0) {
      if (util_now_ms() < deadline)
        continue;
      snprintf(err, errlen,
               "no answer from the broker at %s within %d s (is it running, and is our key in its authorized_keys?)",
               o->endpoint, timeout_ms / 1000);
      goto fail;
    }
    if (m->type == PROTO_ERROR) {
      snprintf(err, errlen, "broker refused us: %s: %s", m->code, m->detail);
      proto_msg_destroy(&m);
      goto fail;
    }
    housekeeping(c, m);
    proto_msg_destroy(&m);
  }
  c->reconnected = false;
  return c;
fail:
  client_destroy(&c);
  return NULL;
}

void client_destroy(client_t **self_p) {
  if (!self_p || !*self_p)
    return;
  client_t *c = *self_p;
  if (c->dealer && c->epoch[0]) {
    proto_msg_t *bye = proto_msg_new(PROTO_BYE);
    if (bye) {
      bye->id = ++c->next_id;
      proto_send(c->dealer, NULL, 0, bye, ZMQ_DONTWAIT);
      proto_msg_destroy(&bye);
    }
  }
  while (c->head) {
    qitem_t *q = c->head;
    c->head = q->next;
    proto_msg_destroy(&q->msg);
    free(q);
  }
  if (c->dealer)
    zmq_close(c->dealer);
  if (c->ctx)
    zmq_ctx_term(c->ctx);
  keys_wipe(&c->keys);
  free(c);
  *self_p = NULL;
}

static void enqueue(client_t *c, proto_msg_t *m) {
  qitem_t *q = calloc(1, sizeof *q);
  if (!q || c->queued >= CLIENT_QUEUE_MAX) {
    free(q);
    proto_msg_destroy(&m);
    return;
  }
  q->msg = m;
  if (c->tail)
    c->tail->next = q;
  else
    c->head = q;
  c->tail = q;
  c->queued++;
}

json_t *client_request(client_t *c, const char *verb, json_t *args, int timeout_ms, char *err, size_t errlen) {
  proto_msg_t *req = proto_msg_new(PROTO_REQUEST);
  if (!req) {
    json_decref(args);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  proto_set_str(req, PROTO_F_verb, verb);
  if (args)
    proto_set_json(req, PROTO_F_args, args);
  int rc = send_msg(c, req);
  int64_t id = req->id;
  proto_msg_destroy(&req);
  if (rc < 0) {
    snprintf(err, errlen, "cannot send to the broker: %s", strerror(-rc));
    return NULL;
  }
  int64_t deadline = util_now_ms() + timeout_ms;
  while (util_now_ms() < deadline) {
    proto_msg_t *m = NULL;
    if (recv_one(c, (int)(deadline - util_now_ms()), &m) <= 0)
      continue;
    if (housekeeping(c, m)) {
      proto_msg_destroy(&m);
      continue;
    }
    if (m->type == PROTO_REPLY && m->ref == id) {
      json_t *result = m->result ? json_incref(m->result) : json_object();
      proto_msg_destroy(&m);
      return result;
    }
    if (m->type == PROTO_ERROR && PROTO_HAS(m, ref) && m->ref == id) {
      snprintf(err, errlen, "%s: %s", m->code, m->detail);
      proto_msg_destroy(&m);
      return NULL;
    }
    if (m->type == PROTO_DELTA || m->type == PROTO_EVENT)
      enqueue(c, m);
    else
      proto_msg_destroy(&m);
  }
  snprintf(err, errlen, "timeout: the broker did not answer \"%s\" within %d s", verb, timeout_ms / 1000);
  return NULL;
}

client_next_t client_next(client_t *c, int timeout_ms, proto_msg_t **out) {
  if (c->head) {
    qitem_t *q = c->head;
    c->head = q->next;
    if (!c->head)
      c->tail = NULL;
    c->queued--;
    *out = q->msg;
    free(q);
    return CLIENT_MSG;
  }
  int64_t deadline = util_now_ms() + timeout_ms;
  for (;;) {
    if (c->reconnected) {
      c->reconnected = false;
      return CLIENT_RECONNECTED;
    }
    int64_t left = deadline - util_now_ms();
    if (left <= 0)
      return CLIENT_TIMEOUT;
    proto_msg_t *m = NULL;
    int rc = recv_one(c, (int)left, &m);
    if (rc < 0)
      return CLIENT_ERROR;
    if (rc == 0)
      return CLIENT_TIMEOUT;
    if (housekeeping(c, m)) {
      proto_msg_destroy(&m);
      continue;
    }
    if (m->type == PROTO_DELTA || m->type == PROTO_EVENT) {
      *out = m;
      return CLIENT_MSG;
    }
    proto_msg_destroy(&m);
  }
}

const char *client_epoch(const client_t *c) {
  return c->epoch;
}

void *client_socket(client_t *c) {
  return c->dealer;
}

bool client_pending(const client_t *c) {
  return c->head != NULL || c->reconnected;
}
