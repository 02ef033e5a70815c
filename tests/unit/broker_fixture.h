/* A broker without sockets for unit tests: an in-memory store, a config from
 * a JSON text, and an outbox writer that records every frame it would send. */
#ifndef CADRE_TEST_BROKER_FIXTURE_H
#define CADRE_TEST_BROKER_FIXTURE_H

#include "internal.h"

#define FX_SENT_MAX 512

typedef struct {
  uint8_t id[PEER_ID_MAX];
  size_t idlen;
  char *data; /* the encoded frame, as it would go on the wire */
  size_t len;
  proto_msg_t *msg; /* decoded, for assertions */
} fx_sent_t;

typedef struct {
  broker_t *b;
  cadre_config_t *config;
  fx_sent_t sent[FX_SENT_MAX];
  int n_sent;
  int fail_rc;            /* the writer's answer while fail_count > 0 */
  int fail_count;         /* frames still to refuse */
  proto_type_t fail_type; /* only frames of this type are refused (PROTO_NONE: all) */
  char dir[256];
} fx_t;

/* A fixture with the default config (main and reviewer profiles) plus extra
 * top-level JSON members (e.g. "\"spawning_rules\": {\"context\": \"none\"}"), or NULL. */
fx_t *fx_new(const char *extra_json);
void fx_destroy(fx_t **fx_p);
/* Registers a node (slots) or a controller watching every session. */
peer_t *fx_node(fx_t *fx, const char *name, int slots);
peer_t *fx_controller(fx_t *fx, const char *name);
/* Frames sent so far of a type (and event kind, or NULL); the last one, or NULL. */
int fx_count(const fx_t *fx, proto_type_t type, const char *kind);
const fx_sent_t *fx_last(const fx_t *fx, proto_type_t type, const char *kind);
/* The node's answer to the last turn sent: turn_done with this assistant text. */
void fx_turn_done(fx_t *fx, peer_t *node, const char *content);
/* Forgets the frames recorded so far. */
void fx_clear(fx_t *fx);

#endif
