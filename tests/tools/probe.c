/* cadre-probe: sends raw frames to a broker over CURVE and prints what comes back.
 * For tests of bad input: `cadre-probe EP KEYFILE BROKERPUB HEX [HEX ...]` sends each
 * hex-encoded frame and prints each reply as one JSON line {"type":..,"code":..,"detail":..}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "keys.h"
#include "proto.h"

static size_t unhex(const char *hex, unsigned char *out, size_t cap) {
  size_t n = 0;
  for (; hex[0] && hex[1] && n < cap; hex += 2) {
    unsigned v;
    if (sscanf(hex, "%2x", &v) != 1)
      break;
    out[n++] = (unsigned char)v;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: cadre-probe ENDPOINT KEYFILE BROKERPUB HEX...\n");
    return 2;
  }
  char err[512];
  void *ctx = zmq_ctx_new();
  void *s = keys_client_dealer(ctx, argv[2], argv[3], err, sizeof err);
  if (!s) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  int linger = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_connect(s, argv[1]);
  static unsigned char buf[PROTO_MAX_FRAME + 1024];
  int rc = 0;
  for (int i = 4; i < argc; i++) {
    size_t n = unhex(argv[i], buf, sizeof buf);
    zmq_send(s, buf, n, 0);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 5000) <= 0) {
      printf("{\"type\":null}\n");
      rc = 1;
      continue;
    }
    proto_msg_t *msg = NULL;
    proto_err_t perr;
    if (proto_recv(s, NULL, NULL, NULL, &msg, &perr, 0) != 1) {
      printf("{\"type\":\"undecodable\"}\n");
      rc = 1;
    } else {
      json_t *o =
          json_pack("{s:s, s:s?, s:s?}", "type", proto_type_name(msg->type), "code", msg->code, "detail", msg->detail);
      char *line = json_dumps(o, JSON_COMPACT);
      printf("%s\n", line);
      free(line);
      json_decref(o);
      proto_msg_destroy(&msg);
    }
    fflush(stdout);
  }
  zmq_close(s);
  zmq_ctx_term(ctx);
  return rc;
}
