/* proto_zmq: Cadre's ZeroMQ framing (one message = one frame, after an
 * identity frame on a ROUTER). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "proto.h"
#include "proto_internal.h"

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

int proto_send_raw(void *sock, const void *identity, size_t idlen, const void *data, size_t len, int flags) {
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

/* Reads and drops what is left of a multi-frame message. */
static void drain_rest(void *sock) {
  int more = 1;
  size_t ml = sizeof more;
  while (more) {
    zmq_msg_t junk;
    zmq_msg_init(&junk);
    int rc = zmq_msg_recv(&junk, sock, 0);
    zmq_msg_close(&junk);
    if (rc < 0 && zmq_errno() != EINTR)
      return;
    if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml) != 0)
      return;
  }
}

static bool has_more(void *sock) {
  int more = 0;
  size_t ml = sizeof more;
  return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml) == 0 && more;
}

/* Receives the identity frame of a routed message. 1, 0 (nothing waits), -errno. */
static int recv_identity(void *sock, void *identity, size_t *idlen, int flags) {
  int n = zmq_recv(sock, identity, *idlen, flags);
  if (n < 0)
    return zmq_errno() == EAGAIN || zmq_errno() == EINTR ? 0 : -zmq_errno();
  if ((size_t)n < *idlen)
    *idlen = (size_t)n; /* a longer identity stays truncated to the room given */
  return 1;
}

/* Receives the one payload frame into f. 1, 0 (nothing waits), -EPROTO (not
 * exactly one frame, all read), -errno. */
static int recv_payload(void *sock, zmq_msg_t *f, bool routed, int flags, proto_err_t *err) {
  if (routed && !has_more(sock)) {
    proto_err_set(err, PROTO_E_MALFORMED, "a message is exactly one frame (it had none)");
    return -EPROTO;
  }
  while (zmq_msg_recv(f, sock, routed ? 0 : flags) < 0) {
    if (zmq_errno() != EINTR || !routed)
      return zmq_errno() == EAGAIN || zmq_errno() == EINTR ? 0 : -zmq_errno();
  }
  if (zmq_msg_more(f)) {
    drain_rest(sock);
    proto_err_set(err, PROTO_E_MALFORMED, "a message is exactly one frame");
    return -EPROTO;
  }
  return 1;
}

int proto_recv(void *sock, void *identity, size_t *idlen, zmq_msg_t *raw, proto_msg_t **out, proto_err_t *err,
               int flags) {
  if (!sock || (!out && !raw) || (identity && !idlen))
    return -EINVAL;
  if (identity) {
    int rc = recv_identity(sock, identity, idlen, flags);
    if (rc <= 0)
      return rc;
  }
  zmq_msg_t own;
  zmq_msg_t *f = raw ? raw : &own;
  if (!raw)
    zmq_msg_init(&own);
  int rc = recv_payload(sock, f, identity != NULL, flags, err);
  if (rc == 1 && out && proto_decode(zmq_msg_data(f), zmq_msg_size(f), out, err) != PROTO_OK)
    rc = -EPROTO;
  if (!raw)
    zmq_msg_close(&own);
  return rc;
}

/* Steps *p over a msgpack string (fixstr or str8) within end; when want is
 * not NULL the string must be it. False when *p holds no such string. */
static bool skip_str(unsigned char **p, const unsigned char *end, const char *want) {
  unsigned char *s = *p;
  size_t head, n;
  if (s < end && (*s & 0xe0) == 0xa0)
    head = 1, n = *s & 0x1f;
  else if (end - s >= 2 && *s == 0xd9)
    head = 2, n = s[1];
  else
    return false;
  if ((size_t)(end - s) < head + n || (want && (strlen(want) != n || memcmp(s + head, want, n) != 0)))
    return false;
  *p = s + head + n;
  return true;
}

int proto_frame_set_id(void *frame, size_t len, int64_t id) {
  unsigned char *p = frame, *end = p + len;
  if (!frame || len == 0)
    return -EINVAL;
  p += (*p & 0xf0) == 0x80 ? 1 : *p == 0xde ? 3 : *p == 0xdf ? 5 : len;
  /* proto_encode writes "v" (a positive fixint), "type" (a string), then "id"
   * (9 bytes for PROTO_ID_UNSTAMPED: uint64, or int64 when negative). */
  if (!skip_str(&p, end, "v") || p >= end || *p++ > 0x7f || !skip_str(&p, end, "type") || !skip_str(&p, end, NULL) ||
      !skip_str(&p, end, "id") || end - p < 9 || (*p != 0xcf && *p != 0xd3))
    return -EINVAL;
  *p = 0xd3; /* int64: right for any id */
  uint64_t v = (uint64_t)id;
  for (int i = 8; i >= 1; i--, v >>= 8)
    p[i] = (unsigned char)(v & 0xff);
  return 0;
}

bool proto_readable(void *sock) {
  int ev = 0;
  size_t len = sizeof ev;
  return zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &len) == 0 && (ev & ZMQ_POLLIN);
}
