/* proto_zmq: Cadre's ZeroMQ framing (one message = one frame, after an
 * identity frame on a ROUTER). */
#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

#include "proto.h"

int proto_socket_setup(void *sock) {
  int64_t maxmsg = PROTO_MAX_FRAME;
  int linger = 0;
  if (!sock)
    return -EINVAL;
  if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
      zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0)
    return -zmq_errno();
  return 0;
}

/* Sends the last frame of a message whose first frame already went out: the
 * message must be completed, so EINTR is retried (a ROUTER never refuses a
 * later frame for want of room; the first frame is where EAGAIN/EHOSTUNREACH
 * show up). */
static int send_rest(void *sock, const void *data, size_t len, int flags) {
  while (zmq_send(sock, data, len, flags) < 0) {
    if (zmq_errno() != EINTR)
      return -zmq_errno();
  }
  return 0;
}

int proto_send_raw(void *sock, const void *identity, size_t idlen, const void *data, size_t len,
                   int flags) {
  flags &= ~ZMQ_SNDMORE;
  if (!sock || (!data && len))
    return -EINVAL;
  if (len > PROTO_MAX_FRAME) /* the peer would drop the connection */
    return -EMSGSIZE;
  if (identity) {
    if (zmq_send(sock, identity, idlen, flags | ZMQ_SNDMORE) < 0)
      return -zmq_errno();
    return send_rest(sock, data, len, flags);
  }
  if (zmq_send(sock, data, len, flags) < 0)
    return -zmq_errno();
  return 0;
}

int proto_send(void *sock, const void *identity, size_t idlen, const proto_msg_t *msg, int flags) {
  char *buf = NULL;
  size_t len = 0;
  int rc = proto_encode(msg, &buf, &len, NULL);
  if (rc != 0)
    return rc;
  rc = proto_send_raw(sock, identity, idlen, buf, len, flags);
  free(buf);
  return rc;
}
