/* Broker internals shared by the broker sources (not a public interface). */
#ifndef CADRE_BROKER_INTERNAL_H
#define CADRE_BROKER_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "config.h"
#include "keys.h"
#include "proto.h"
#include "store.h"

#define PEER_ID_MAX 256

typedef enum { PEER_NODE, PEER_CONTROLLER } peer_role_t;

typedef struct peer {
  uint8_t id[PEER_ID_MAX]; /* ROUTER routing id */
  size_t idlen;
  peer_role_t role;
  char *name, *host, *version, *workspace;
  json_t *models, *providers, *tools, *labels;
  int slots;
  int busy;           /* turns assigned by us */
  int64_t last_seen;  /* monotonic ms */
  int64_t joined;     /* wall ms */
  bool watch_all;     /* controller: receives every session's events */
  json_t *watch;      /* controller: object used as a set of watched session ids */
  bool dead;          /* removed; freed by peers_sweep() once no caller can hold it */
  struct peer *next;
} peer_t;

typedef struct turn {
  int64_t id;
  char *session;
  int attempt;
  peer_t *node;          /* NULL while queued */
  int64_t queued_at;     /* monotonic ms */
  int64_t started_at;
  bool warned_no_node;
  struct turn *next;
} turn_t;

struct broker {
  broker_opts_t opts;
  void *ctx, *router, *zap;
  keys_pair_t keys;
  char *authorized_path;
  store_t *store;
  char epoch[17];
  int64_t started_ms;
  int64_t next_msg_id;
  int64_t event_seq;
  peer_t *peers;
  turn_t *turns;         /* queued and running, in arrival order */
  char endpoints[BROKER_MAX_BINDS][256];
  int n_endpoints;
};

/* ---- peers (nodes.c) ---- */
peer_t *peer_find(broker_t *b, const void *id, size_t idlen);
peer_t *peer_find_name(broker_t *b, peer_role_t role, const char *name);
/* Registers or refreshes a peer from its hello. Returns the peer or NULL. */
peer_t *peer_hello(broker_t *b, const void *id, size_t idlen, const proto_msg_t *hello, char *err, size_t errlen);
/* Removes a peer; its running turns are re-queued. The memory stays valid
 * (p->dead) until peers_sweep(), so callers iterating or replying are safe. */
void peer_remove(broker_t *b, peer_t *p, const char *why);
/* Frees removed peers; called between messages. */
void peers_sweep(broker_t *b);
/* Frees one peer's memory. */
void peer_free(peer_t *p);
/* True when node p can run a turn for this profile. */
bool peer_serves(const peer_t *p, const char *model, const char *provider);
json_t *peer_to_json(const peer_t *p, int64_t now);
const char *peer_label(const peer_t *p);

/* ---- sending (broker.c) ---- */
/* Sends msg to a peer; on an unreachable peer removes it. Returns 0 or -errno. */
int broker_send(broker_t *b, peer_t *p, proto_msg_t *msg);
int broker_send_error(broker_t *b, const void *id, size_t idlen, const char *code, const char *detail,
                      int64_t ref);
/* Sends an event to every controller watching the session (NULL: all). Takes payload. */
void broker_event(broker_t *b, const char *kind, const char *session, int64_t turn, json_t *payload);
/* Forwards an encoded frame unchanged to the controllers watching session. */
void broker_forward(broker_t *b, const char *session, const void *data, size_t len);

/* ---- sessions and turns (sessions.c) ---- */
int sessions_start(broker_t *b);
/* Appends the user's text to a session and queues a turn. Returns the turn id or -1 with err. */
int64_t sessions_ask(broker_t *b, const char *session, const char *text, char *err, size_t errlen);
void sessions_schedule(broker_t *b);
void sessions_on_delta(broker_t *b, peer_t *from, const proto_msg_t *m, const void *raw, size_t len);
void sessions_on_done(broker_t *b, peer_t *from, const proto_msg_t *m);
void sessions_on_failed(broker_t *b, peer_t *from, const proto_msg_t *m);
/* A node went away: re-queue or fail its turns. */
void sessions_node_lost(broker_t *b, peer_t *node);
/* Cancels a turn by id. Returns 0, or -1 when unknown/finished. */
int sessions_cancel(broker_t *b, int64_t turn, const char *why);
void sessions_tick(broker_t *b, int64_t now);
turn_t *turn_find(broker_t *b, int64_t id);
int sessions_count_turns(broker_t *b, bool running);

/* ---- requests (requests.c) ---- */
void requests_handle(broker_t *b, peer_t *from, const proto_msg_t *m);

/* ---- ZAP (zap.c) ---- */
int zap_start(broker_t *b);
void zap_handle(broker_t *b);

#endif
