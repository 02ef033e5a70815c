/* zap.c: ZeroMQ authentication (ZAP, RFC 27) for CURVE clients.
 *
 * A CURVE server without a ZAP handler admits any client key. The broker
 * answers ZAP requests itself, in its poll loop, admitting only the public
 * keys listed in its authorized_keys file (re-read when the file changes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "internal.h"
#include "log.h"
#include "util.h"

int zap_start(broker_t *b) {
  b->zap = zmq_socket(b->ctx, ZMQ_REP);
  if (!b->zap)
    return -1;
  int linger = 0;
  zmq_setsockopt(b->zap, ZMQ_LINGER, &linger, sizeof linger);
  return zmq_bind(b->zap, "inproc://zeromq.zap.01");
}

/* True when the Z85 form of key is a line of the authorized keys file. */
static bool key_authorized(broker_t *b, const uint8_t key[32]) {
  char z85[KEYS_Z85_LEN + 1];
  if (!zmq_z85_encode(z85, key, 32))
    return false;
  char *text = util_read_file(b->authorized_path, 1 << 20, NULL);
  if (!text) {
    log_warn("%s: cannot read authorized keys: %s", b->authorized_path, strerror(errno));
    return false;
  }
  bool ok = false;
  for (char *line = strtok(text, "\n"); line && !ok; line = strtok(NULL, "\n")) {
    line += strspn(line, " \t");
    ok = strncmp(line, z85, KEYS_Z85_LEN) == 0 && strspn(line + KEYS_Z85_LEN, " \t\r") == strlen(line + KEYS_Z85_LEN);
  }
  free(text);
  if (!ok)
    log_warn("refused a client with unknown CURVE key %s (add it to %s)", z85, b->authorized_path);
  return ok;
}

static void send_frame(void *sock, const void *data, size_t len, bool more) {
  zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0);
}

/* Handles one ZAP request: version, request id, domain, address, identity,
 * mechanism, credentials... Replies version, request id, status, text, user, metadata. */
void zap_handle(broker_t *b) {
  zmq_msg_t parts[8];
  int n = 0;
  int more = 1;
  while (more && n < 8) {
    zmq_msg_init(&parts[n]);
    if (zmq_msg_recv(&parts[n], b->zap, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&parts[n]);
      break;
    }
    more = zmq_msg_more(&parts[n]);
    n++;
  }
  while (more) { /* drain anything beyond what we read */
    zmq_msg_t junk;
    zmq_msg_init(&junk);
    if (zmq_msg_recv(&junk, b->zap, 0) < 0)
      more = 0;
    else
      more = zmq_msg_more(&junk);
    zmq_msg_close(&junk);
  }
  if (n < 6) {
    for (int i = 0; i < n; i++)
      zmq_msg_close(&parts[i]);
    return;
  }
  const char *status = "400", *text = "not allowed";
  bool curve = zmq_msg_size(&parts[5]) == 5 && memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0;
  if (curve && n >= 7 && zmq_msg_size(&parts[6]) == 32 && key_authorized(b, zmq_msg_data(&parts[6]))) {
    status = "200";
    text = "OK";
  }
  send_frame(b->zap, "1.0", 3, true);
  send_frame(b->zap, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), true);
  send_frame(b->zap, status, 3, true);
  send_frame(b->zap, text, strlen(text), true);
  send_frame(b->zap, "", 0, true);
  send_frame(b->zap, "", 0, false);
  for (int i = 0; i < n; i++)
    zmq_msg_close(&parts[i]);
}
