/* proto_link: a peer's link to the broker (the mlm_client idea).
 *
 * The link owns one DEALER socket (CURVE client). It says hello, waits for
 * welcome, sends heartbeats every heartbeat_ms (the broker's, 50..60000 ms),
 * and says hello again when the broker restarted (a heartbeat or welcome with
 * a new epoch), forgot us (error "hello_first"), or fell silent for 3.5
 * intervals (the DEALER reconnects by itself; the new broker needs a hello).
 * The program sees only application messages and two notices: CONNECTED
 * (the first welcome) and RECONNECTED (welcomed again after the registration
 * was lost: what the program follows must be set up again).
 *
 * Every message the link sends carries the link's next id (a per-link
 * sequence), including frames encoded elsewhere and forwarded with
 * proto_link_send_frame. One thread uses a link.
 */
#ifndef CADRE_PROTO_LINK_H
#define CADRE_PROTO_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "proto.h"

typedef struct proto_link proto_link_t;

typedef struct {
  const char *endpoint;     /* the broker's endpoint */
  const char *key_file;     /* our CURVE key pair (keys_load_pair) */
  const char *broker_key;   /* the broker's public key: Z85, or a file (keys_load_public) */
  int reconnect_ivl_ms;     /* 0: 100 */
  int reconnect_ivl_max_ms; /* 0: 1000 */
  int sndhwm;               /* messages queued for the broker; 0: libzmq's default */
  /* Called before each heartbeat goes out, to add fields (e.g. busy); may be NULL. */
  void (*on_heartbeat)(proto_msg_t *heartbeat, void *arg);
  void *arg;
} proto_link_opts_t;

typedef enum {
  PROTO_LINK_TIMEOUT = 0,     /* nothing for the program within the timeout, or a signal came */
  PROTO_LINK_MSG = 1,         /* *out is an application message (caller destroys it) */
  PROTO_LINK_CONNECTED = 2,   /* the broker welcomed us for the first time */
  PROTO_LINK_RECONNECTED = 3, /* welcomed again after the registration was lost */
  PROTO_LINK_REFUSED = 4,     /* the broker refused our CURVE key (once per streak; the
                                 link goes on trying, and a later welcome ends the streak) */
} proto_link_event_t;

/* Heartbeat interval until the broker's welcome says otherwise. */
#define PROTO_LINK_HEARTBEAT_MS 1000
/* Heartbeat intervals of silence (plus half of one) after which the broker
 * counts as gone, and unanswered hellos are said again (the broker's own rule). */
#define PROTO_LINK_LIVENESS 3

/* Loads the keys, connects to the broker (on ctx, which the caller keeps) and
 * says hello. Takes ownership of *hello_p on success (the link says it again
 * on every registration) and nulls it; on failure returns NULL with err
 * filled, and the caller still owns it. Does not wait for the welcome: see
 * proto_link_recv. */
proto_link_t *proto_link_new(void *ctx, const proto_link_opts_t *opts, proto_msg_t **hello_p, char *err, size_t errlen);
/* Says bye when the broker ever welcomed us (once; the link may go on to
 * register again). */
void proto_link_bye(proto_link_t *self);
/* Says bye (see proto_link_bye), closes the socket, wipes the keys. Accepts
 * NULL; nulls *self_p. */
void proto_link_destroy(proto_link_t **self_p);

/* Serves the link for up to timeout_ms (heartbeats, liveness, re-registration)
 * and returns at the first application message or notice. Returns a
 * proto_link_event_t, or a negative errno when the socket fails. Frames that
 * do not decode are dropped. */
int proto_link_recv(proto_link_t *self, int timeout_ms, proto_msg_t **out);

/* Sends msg to the broker without blocking, setting msg->id to the link's next
 * id. 0 or a negative errno (-EAGAIN: the queue to the broker is full,
 * -EINVAL / -EMSGSIZE: msg does not encode). msg stays the caller's. */
int proto_link_send(proto_link_t *self, proto_msg_t *msg);
/* Sends a frame made by proto_encode (e.g. by another thread) from a message
 * whose id was PROTO_ID_UNSTAMPED, writing the link's next id into it first.
 * Same returns as proto_link_send; -EINVAL for a frame without room for the id. */
int proto_link_send_frame(proto_link_t *self, void *frame, size_t len);

/* The DEALER socket, for zmq_poll together with other inputs; read it only
 * through proto_link_recv. */
void *proto_link_socket(proto_link_t *self);
/* Milliseconds until the link has timed work to do (call proto_link_recv then). */
int proto_link_due_ms(const proto_link_t *self);
/* Epoch of the broker that last welcomed us ("" before the first welcome). */
const char *proto_link_epoch(const proto_link_t *self);
/* Why the link last said hello again ("" before it had to): for logs. */
const char *proto_link_why(const proto_link_t *self);
/* Our CURVE public key (Z85), for the line a broker's authorized_keys needs. */
const char *proto_link_public_key(const proto_link_t *self);
/* The heartbeat interval in use, in ms. */
int proto_link_heartbeat_ms(const proto_link_t *self);

#endif
