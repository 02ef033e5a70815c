/* cadre-bench-verbs: how long a broker takes to answer requests.
 * `cadre-bench-verbs ENDPOINT KEYFILE BROKERPUB [ROUNDS] VERB...` connects as a
 * controller, sends each verb ROUNDS times (default 20) and prints one JSON line
 * per verb: {"verb", "median_ms", "max_ms", "bytes"} (bytes: the reply's size). A reply
 * over 4 KiB is timed on arrival, not decoded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "keys.h"
#include "proto.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Receives until a reply or error to ref arrives (events are skipped). Returns its size, or -1. */
static long wait_reply(void *s, int64_t ref) {
  for (;;) {
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 10000) <= 0)
      return -1;
    zmq_msg_t f;
    zmq_msg_init(&f);
    zmq_msg_recv(&f, s, 0);
    long size = (long)zmq_msg_size(&f);
    if (size > 4096) { /* a reply: not decoded, so the figure is the broker's, not this client's */
      zmq_msg_close(&f);
      return size;
    }
    proto_msg_t *m = NULL;
    proto_err_t err;
    bool mine = proto_decode(zmq_msg_data(&f), zmq_msg_size(&f), &m, &err) == PROTO_OK &&
                (m->type == PROTO_REPLY || m->type == PROTO_ERROR || m->type == PROTO_WELCOME) &&
                (m->type == PROTO_WELCOME || m->ref == ref);
    proto_msg_destroy(&m);
    zmq_msg_close(&f);
    if (mine)
      return size;
  }
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: cadre-bench-verbs ENDPOINT KEYFILE BROKERPUB [ROUNDS] VERB...\n");
    return 2;
  }
  char err[512];
  int first = 4, rounds = 20;
  if (atoi(argv[4]) > 0) {
    rounds = atoi(argv[4]);
    first = 5;
  }
  void *ctx = zmq_ctx_new(), *s = keys_client_dealer(ctx, argv[2], argv[3], err, sizeof err);
  if (!s) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  proto_socket_setup(s);
  zmq_connect(s, argv[1]);
  proto_msg_t *hello = proto_msg_new(PROTO_HELLO);
  proto_set_str(hello, PROTO_F_role, "controller");
  proto_set_str(hello, PROTO_F_name, "bench-verbs");
  proto_set_str(hello, PROTO_F_version, CADRE_VERSION);
  hello->id = 1;
  proto_send(s, NULL, 0, hello, 0);
  proto_msg_destroy(&hello);
  if (wait_reply(s, 0) < 0) {
    fprintf(stderr, "no welcome from %s\n", argv[1]);
    return 1;
  }
  int64_t id = 1;
  double *t = calloc((size_t)rounds, sizeof *t);
  for (int v = first; v < argc; v++) {
    long bytes = 0;
    for (int i = 0; i < rounds; i++) {
      proto_msg_t *m = proto_msg_new(PROTO_REQUEST);
      proto_set_str(m, PROTO_F_verb, argv[v]);
      m->id = ++id;
      double t0 = now_ms();
      proto_send(s, NULL, 0, m, 0);
      proto_msg_destroy(&m);
      bytes = wait_reply(s, id);
      t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)rounds, sizeof *t, cmp);
    printf("{\"verb\": \"%s\", \"median_ms\": %.3f, \"max_ms\": %.3f, \"bytes\": %ld}\n", argv[v], t[rounds / 2],
           t[rounds - 1], bytes);
  }
  free(t);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}
