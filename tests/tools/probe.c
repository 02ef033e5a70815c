/* cadre-probe: sends raw frames to a broker over CURVE and prints what comes back.
 * For tests of bad input: `cadre-probe EP KEYFILE BROKERPUB HEX [HEX ...]` sends each
 * hex-encoded frame and prints each reply as one JSON line {"type":..,"code":..,"detail":..}.
 * `cadre-probe --flood N SEED EP KEYFILE BROKERPUB` sends N malformed frames (valid
 * frames cut, flipped and spliced, and random bytes; SEED makes them repeatable),
 * at most 1,000 unanswered at a time, and prints {"sent":N,"answered":M,"errors":E}. */
#include <stdint.h>
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

/* xorshift64*: the flood's bytes, repeatable from a seed. */
static uint64_t next_rand(uint64_t *x) {
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * 0x2545F4914F6CDD1DULL;
}

/* One malformed frame into buf: a valid one mangled, or noise. Its length. */
static size_t malformed(uint64_t *r, unsigned char *buf, size_t cap) {
  static const char *const valid[] = {
      /* heartbeat, request ask, delta (see tests/fuzz/corpus/proto) */
      "83a474797065a968656172746265617462a2696407a46275737902",
      "84a474797065a772657175657374a2696407a476657262a361736ba46172677382a474657874a568656c6c6fa773657373696f6e"
      "a46d61696e",
      "88a474797065a564656c7461a2696407a773657373696f6ea46d61696ea47475726e03a7617474656d707401a37365710"
      "9a46b696e64a474657874a474657874a548656c6c6f"};
  unsigned char base[512];
  size_t n = unhex(valid[next_rand(r) % 3], base, sizeof base);
  switch (next_rand(r) % 5) {
  case 0: n = next_rand(r) % (n ? n : 1); break;                                    /* cut short */
  case 1: base[next_rand(r) % n] ^= (unsigned char)(1 + next_rand(r) % 255); break; /* one byte flipped */
  case 2: base[0] = (unsigned char)(0x80 | (next_rand(r) % 16)); break;             /* wrong map size */
  case 3:                                                                           /* noise */
    n = 1 + next_rand(r) % 200;
    for (size_t i = 0; i < n; i++)
      base[i] = (unsigned char)next_rand(r);
    break;
  default: /* a type that does not exist */ memcpy(base, "\x81\xa4type\xa4nope", 11); n = 11;
  }
  if (n > cap)
    n = cap;
  memcpy(buf, base, n);
  return n;
}

static int flood(long total, uint64_t seed, void *s) {
  unsigned char buf[512];
  long sent = 0, answered = 0, errors = 0;
  uint64_t r = seed ? seed : 1;
  while (answered < total) {
    while (sent < total && sent - answered < 1000) {
      size_t n = malformed(&r, buf, sizeof buf);
      if (zmq_send(s, buf, n, ZMQ_DONTWAIT) < 0)
        break;
      sent++;
    }
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 10000) <= 0)
      break; /* silence: some frames were dropped, not answered */
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0) {
      answered++;
      proto_msg_t *msg = NULL;
      proto_err_t perr;
      if (proto_decode(zmq_msg_data(&m), zmq_msg_size(&m), &msg, &perr) == PROTO_OK && msg->type == PROTO_ERROR)
        errors++;
      proto_msg_destroy(&msg);
    }
    zmq_msg_close(&m);
  }
  printf("{\"sent\":%ld,\"answered\":%ld,\"errors\":%ld}\n", sent, answered, errors);
  return 0;
}

int main(int argc, char **argv) {
  long flood_n = 0;
  uint64_t seed = 0;
  if (argc >= 4 && strcmp(argv[1], "--flood") == 0) {
    flood_n = atol(argv[2]);
    seed = strtoull(argv[3], NULL, 10);
    argv += 3;
    argc -= 3;
  }
  if (argc < (flood_n ? 4 : 5)) {
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
  if (flood_n > 0) {
    int rc = flood(flood_n, seed, s);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
  }
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
