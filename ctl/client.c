/* client.c: controller side of the protocol. */
#include "client.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "proto_link.h"
#include "resume.h"
#include "util.h"

/* Deltas kept while the caller is busy (past it they are dropped, and a gap
 * event says so); events are always kept. */
#define CLIENT_QUEUE_MAX 100000

typedef struct qitem {
  proto_msg_t *msg;
  struct qitem *next;
} qitem_t;

struct client {
  void *ctx;
  proto_link_t *link;
  bool reconnected;     /* registered again since the caller last heard */
  qitem_t *head, *tail; /* deltas/events received, not yet handed out */
  size_t queued;
  resume_t *resume; /* event seqs seen (subscribe resumes after the last), delta gaps */
};

static proto_msg_t *controller_hello(const char *name, const char *workspace) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  if (!m)
    return NULL;
  char host[256], self[300];
  util_hostname(host, sizeof host);
  if (!name) {
    struct passwd *pw = getpwuid(getuid());
    snprintf(self, sizeof self, "%s@%s/%d", pw ? pw->pw_name : "user", host, (int)getpid());
    name = self;
  }
  proto_set_str(m, PROTO_F_role, "controller");
  proto_set_str(m, PROTO_F_name, name);
  proto_set_str(m, PROTO_F_version, CADRE_VERSION);
  proto_set_str(m, PROTO_F_host, host);
  if (workspace && workspace[0])
    proto_set_str(m, PROTO_F_workspace, workspace);
  return m;
}

#define AUTH_NAME_CAP 64 /* a name in authorized_keys: at most 63 characters */

/* The broker's ZAP handler said no to our key: what to add, and where. */
static void refused_hint(client_t *c, const client_opts_t *o, char *err, size_t errlen) {
  char host[256], name[AUTH_NAME_CAP];
  util_hostname(host, sizeof host);
  struct passwd *pw = getpwuid(getuid());
  snprintf(name, sizeof name, "%.20s@%.40s", pw ? pw->pw_name : "user", host);
  for (char *p = name; *p; p++)
    if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-", *p))
      *p = '-';
  snprintf(err, errlen,
           "the broker at %s refused this key (%s); add this line to its authorized_keys, then try again:\n%s "
           "controller %s",
           o->endpoint, o->key_file, proto_link_public_key(c->link), name);
}

/* Waits for the first welcome; 0, or -1 with err. */
static int wait_welcome(client_t *c, const client_opts_t *o, int timeout_ms, char *err, size_t errlen) {
  int64_t deadline = util_now_ms() + timeout_ms;
  for (int64_t left = timeout_ms; left > 0; left = deadline - util_now_ms()) {
    proto_msg_t *m = NULL;
    int rc = proto_link_recv(c->link, (int)left, &m);
    if (rc == PROTO_LINK_CONNECTED)
      return 0;
    if (rc == PROTO_LINK_REFUSED) {
      refused_hint(c, o, err, errlen);
      return -1;
    }
    if (rc < 0)
      break;
    if (rc == PROTO_LINK_MSG && m->type == PROTO_ERROR) {
      snprintf(err, errlen, "the broker refused this controller: %s", m->detail);
      proto_msg_destroy(&m);
      return -1;
    }
    proto_msg_destroy(&m);
  }
  snprintf(err, errlen,
           "no answer from the broker at %s within %d s (is it running, and is our key in its authorized_keys?)",
           o->endpoint, timeout_ms / 1000);
  return -1;
}

client_t *client_connect(const client_opts_t *o, int timeout_ms, char *err, size_t errlen) {
  client_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->ctx = zmq_ctx_new();
  c->resume = resume_new();
  proto_msg_t *hello = controller_hello(o->name, o->workspace);
  proto_link_opts_t lo = {.endpoint = o->endpoint, .key_file = o->key_file, .broker_key = o->broker_key};
  c->link = c->ctx && hello ? proto_link_new(c->ctx, &lo, &hello, err, errlen) : NULL;
  if (!c->ctx || !hello || !c->resume)
    snprintf(err, errlen, "out of memory");
  proto_msg_destroy(&hello);
  if (c->link && wait_welcome(c, o, timeout_ms, err, errlen) == 0)
    return c;
  client_destroy(&c);
  return NULL;
}

/* The first queued message, or NULL. */
static proto_msg_t *dequeue(client_t *c) {
  qitem_t *q = c->head;
  if (!q)
    return NULL;
  c->head = q->next;
  if (!c->head)
    c->tail = NULL;
  c->queued--;
  proto_msg_t *m = q->msg;
  free(q);
  return m;
}

void client_destroy(client_t **self_p) {
  if (!self_p || !*self_p)
    return;
  client_t *c = *self_p;
  for (proto_msg_t *m; (m = dequeue(c));)
    proto_msg_destroy(&m);
  proto_link_destroy(&c->link);
  resume_destroy(&c->resume);
  if (c->ctx)
    zmq_ctx_term(c->ctx);
  free(c);
  *self_p = NULL;
}

static void enqueue(client_t *c, proto_msg_t *m) {
  qitem_t *q = calloc(1, sizeof *q);
  if (!q) {
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

/* A delta or event from the broker, queued for client_next: a replayed
 * event we have is dropped, a gap in a turn's deltas is told first. */
static void receive(client_t *c, proto_msg_t *m) {
  if (m->type == PROTO_DELTA && c->queued >= CLIENT_QUEUE_MAX) {
    proto_msg_destroy(&m); /* told as a gap: the next delta's seq, or the turn_done's count */
    return;
  }
  proto_msg_t *gap = NULL;
  if (!resume_accept(c->resume, m, &gap)) {
    proto_msg_destroy(&m);
    return;
  }
  if (gap)
    enqueue(c, gap);
  enqueue(c, m);
}

/* A subscribe after events were seen resumes after the last one: the broker
 * replays what came meanwhile (or says what is gone). */
static json_t *resume_args(client_t *c, const char *verb, json_t *args) {
  if (strcmp(verb, "subscribe") != 0 || resume_seq(c->resume) <= 0 || json_object_get(args, "since"))
    return args;
  if (!args)
    args = json_object();
  json_object_set_new(args, "since", json_integer(resume_seq(c->resume)));
  return args;
}

static json_t *wait_reply(client_t *c, const char *verb, int64_t id, int timeout_ms, char *err, size_t errlen);

json_t *client_request(client_t *c, const char *verb, json_t *args, int timeout_ms, char *err, size_t errlen) {
  proto_msg_t *req = proto_msg_new(PROTO_REQUEST);
  if (!req) {
    json_decref(args);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  proto_set_str(req, PROTO_F_verb, verb);
  args = resume_args(c, verb, args);
  bool resuming = strcmp(verb, "subscribe") == 0 && json_object_get(args, "since");
  if (args)
    proto_set_json(req, PROTO_F_args, args);
  int rc = proto_link_send(c->link, req);
  int64_t id = req->id;
  proto_msg_destroy(&req);
  if (rc < 0) {
    snprintf(err, errlen, "cannot send to the broker: %s", strerror(-rc));
    return NULL;
  }
  resume_replaying(c->resume, resuming);
  json_t *result = wait_reply(c, verb, id, timeout_ms, err, errlen);
  resume_replaying(c->resume, false);
  return result;
}

/* The reply to request id (NULL and err: an error, or none within timeout_ms);
 * deltas and events that come meanwhile are queued. */
static json_t *wait_reply(client_t *c, const char *verb, int64_t id, int timeout_ms, char *err, size_t errlen) {
  int64_t deadline = util_now_ms() + timeout_ms;
  while (util_now_ms() < deadline) {
    proto_msg_t *m = NULL;
    int ev = proto_link_recv(c->link, (int)(deadline - util_now_ms()), &m);
    if (ev == PROTO_LINK_RECONNECTED)
      c->reconnected = true;
    if (ev != PROTO_LINK_MSG)
      continue;
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
      receive(c, m);
    else
      proto_msg_destroy(&m);
  }
  snprintf(err, errlen, "timeout: the broker did not answer \"%s\" within %d s", verb, timeout_ms / 1000);
  return NULL;
}

client_next_t client_next(client_t *c, int timeout_ms, proto_msg_t **out) {
  int64_t deadline = util_now_ms() + timeout_ms;
  for (;;) {
    if ((*out = dequeue(c)))
      return CLIENT_MSG;
    if (c->reconnected) {
      c->reconnected = false;
      return CLIENT_RECONNECTED;
    }
    int64_t left = deadline - util_now_ms();
    if (left <= 0)
      return CLIENT_TIMEOUT;
    proto_msg_t *m = NULL;
    int ev = proto_link_recv(c->link, (int)left, &m);
    if (ev < 0)
      return CLIENT_ERROR;
    if (ev == PROTO_LINK_TIMEOUT)
      return CLIENT_TIMEOUT;
    if (ev == PROTO_LINK_RECONNECTED)
      c->reconnected = true;
    if (ev != PROTO_LINK_MSG)
      continue;
    if (m->type == PROTO_DELTA || m->type == PROTO_EVENT)
      receive(c, m);
    else
      proto_msg_destroy(&m);
  }
}

const char *client_epoch(const client_t *c) {
  return proto_link_epoch(c->link);
}

void *client_socket(client_t *c) {
  return proto_link_socket(c->link);
}

bool client_pending(const client_t *c) {
  return c->head != NULL || c->reconnected;
}
