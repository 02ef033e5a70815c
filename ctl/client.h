/* client: the controller's connection to a broker (DEALER, CURVE).
 *
 * Says hello, keeps heartbeats going, turns requests into replies, and hands
 * streamed deltas and events to the caller. Notices a broker restart (new
 * epoch, or "hello_first") and registers again by itself.
 */
#ifndef CADRE_CLIENT_H
#define CADRE_CLIENT_H

#include <jansson.h>
#include <stdbool.h>

#include "proto.h"

typedef struct {
  const char *endpoint;
  const char *key_file;   /* our CURVE key pair */
  const char *broker_key; /* broker public key: Z85 or file */
  const char *name;       /* controller name, default user@host */
  const char *workspace;  /* the directory we work in, or NULL; the broker runs our turns there */
} client_opts_t;

typedef struct client client_t;

/* Connects and waits up to timeout_ms for the broker's welcome. NULL with err. */
client_t *client_connect(const client_opts_t *opts, int timeout_ms, char *err, size_t errlen);
void client_destroy(client_t **self_p);

/* Sends a request and waits for its reply. Returns the result (caller owns)
 * or NULL with err ("code: detail"); events that arrive meanwhile are kept
 * for client_next. args is taken (may be NULL). */
json_t *client_request(client_t *self, const char *verb, json_t *args, int timeout_ms, char *err, size_t errlen);

typedef enum { CLIENT_TIMEOUT = 0, CLIENT_MSG = 1, CLIENT_RECONNECTED = 2, CLIENT_ERROR = -1 } client_next_t;
/* Waits up to timeout_ms for the next delta or event (caller destroys *out).
 * CLIENT_RECONNECTED: the broker restarted and we registered again; the caller
 * should subscribe again to what it follows. */
client_next_t client_next(client_t *self, int timeout_ms, proto_msg_t **out);

/* The DEALER socket, for zmq_poll together with other inputs (e.g. stdin);
 * read it only through client_next. */
void *client_socket(client_t *self);
/* True when messages already received wait for client_next (zmq_poll on the
 * socket cannot see them). */
bool client_pending(const client_t *self);

/* Epoch of the broker we are registered with. */
const char *client_epoch(const client_t *self);

#endif
