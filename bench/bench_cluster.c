/* cadre-bench-cluster: simulated nodes and a controller against a running
 * cadre-broker, or against a minimal forwarder (the reference). bench/run drives it.
 *
 *   forwarder --bind EP [--server-key PAIRFILE]
 *       the reference: one ROUTER, every frame from a node forwarded as it came to
 *       the controller (the peer that said "C"); CURVE server with --server-key.
 *   fwd --endpoint EP --target broker|raw|json --nodes N --deltas TOTAL --window W [--pid PID]
 *       N simulated nodes each stream TOTAL/N deltas (64-byte text) of one turn, at most
 *       W unreceived per node, to one controller. broker: real hello/ask/turn; raw: msgpack
 *       frames through `forwarder`; json: JSON frames through bench/py_forwarder.py.
 *       Prints {"msgs_per_s","p50_us","p99_us","lost","reordered",...}.
 *   sessions --endpoint EP --count N [--pid PID] [--no-node]
 *       asks N sessions (at most 512 at a time); unless --no-node a built-in node (1024
 *       slots) answers each turn at once. Prints {"done","failed","seconds","rss_*"}.
 *   ask --endpoint EP --rounds R
 *       one controller connection: time from ask to the first delta, and between deltas.
 * CURVE: --key KEYFILE --broker-key PUB on the clients (none: no CURVE). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "keys.h"
#include "proto.h"

static struct {
  const char *endpoint, *bind, *target, *key, *broker_key, *server_key;
  long nodes, deltas, window, count, rounds;
  int pid;
  bool no_node;
} opt = {.target = "broker", .nodes = 1, .deltas = 100000, .window = 64, .count = 1000, .rounds = 20};

static void *ctx;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long rss_kb(void) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof path, "/proc/%d/status", opt.pid);
  FILE *f = opt.pid ? fopen(path, "r") : NULL;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = atol(line + 6);
  if (f)
    fclose(f);
  return kb;
}

/* CPU time (user + system) of --pid so far, in ns; -1 without one. */
static int64_t cpu_ns(void) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", opt.pid);
  FILE *f = opt.pid ? fopen(path, "r") : NULL;
  if (!f)
    return -1;
  char *got = fgets(line, sizeof line, f);
  fclose(f);
  char *p = got ? strrchr(line, ')') : NULL;
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (int64_t)(ut + st) * (1000000000 / sysconf(_SC_CLK_TCK));
}

__attribute__((noreturn)) static void die(const char *what) {
  fprintf(stderr, "cadre-bench-cluster: %s\n", what);
  exit(1);
}

static void *client(void) {
  char err[512];
  void *s;
  if (opt.key) {
    s = keys_client_dealer(ctx, opt.key, opt.broker_key, err, sizeof err);
    if (!s)
      die(err);
  } else {
    s = zmq_socket(ctx, ZMQ_DEALER);
  }
  int hwm = 100000;
  zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
  proto_socket_setup(s);
  if (zmq_connect(s, opt.endpoint) < 0)
    die("cannot connect");
  return s;
}

static void hello(void *s, const char *role, const char *name, int slots) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  proto_set_str(m, PROTO_F_role, role);
  proto_set_str(m, PROTO_F_name, name);
  proto_set_str(m, PROTO_F_version, CADRE_VERSION);
  if (slots)
    PROTO_SET(m, slots, slots);
  m->id = 1;
  proto_send(s, NULL, 0, m, 0);
  proto_msg_destroy(&m);
}

/* Next decoded message on s within ms, or NULL. */
static proto_msg_t *recv_msg(void *s, int ms) {
  zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&it, 1, ms) <= 0)
    return NULL;
  proto_msg_t *m = NULL;
  proto_err_t err;
  if (proto_recv(s, NULL, NULL, NULL, &m, &err, 0) != 1)
    return NULL;
  return m;
}

static void wait_welcome(void *s) {
  for (int64_t end = now_ns() + 20000000000; now_ns() < end;) {
    proto_msg_t *m = recv_msg(s, 1000);
    bool ok = m && m->type == PROTO_WELCOME;
    if (m && m->type == PROTO_ERROR)
      fprintf(stderr, "error: %s: %s\n", m->code, m->detail);
    proto_msg_destroy(&m);
    if (ok)
      return;
  }
  die("no welcome");
}

static void request(void *s, int64_t id, const char *verb, json_t *args) {
  proto_msg_t *m = proto_msg_new(PROTO_REQUEST);
  proto_set_str(m, PROTO_F_verb, verb);
  if (args)
    proto_set_json(m, PROTO_F_args, args);
  m->id = id;
  proto_send(s, NULL, 0, m, 0);
  proto_msg_destroy(&m);
}

static void ask(void *s, int64_t id, const char *session) {
  request(s, id, "ask", json_pack("{s:s, s:s}", "session", session, "text", "go"));
}

static void send_heartbeat(void *s) {
  proto_msg_t *m = proto_msg_new(PROTO_HEARTBEAT);
  proto_send(s, NULL, 0, m, ZMQ_DONTWAIT);
  proto_msg_destroy(&m);
}

/* ---- forwarding -------------------------------------------------------- */

typedef struct {
  void *s;
  char session[32];
  int64_t turn, attempt;
  long sent, recvd, last_seq;
} node_t;

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* One delta of node n into buf: msgpack (the wire protocol) or JSON (as the Python peer speaks);
 * the last 16 bytes of its text are the send time in hex. */
static size_t frame(node_t *n, long seq, bool json, char *buf, size_t cap) {
  char text[65];
  snprintf(text, sizeof text, "%048d%016" PRIx64, 0, (uint64_t)now_ns());
  if (json)
    return (size_t)snprintf(buf, cap,
                            "{\"type\": \"delta\", \"id\": %ld, \"session\": \"%s\", \"turn\": %" PRId64
                            ", \"attempt\": %" PRId64 ", \"seq\": %ld, \"kind\": \"text\", \"text\": \"%s\"}",
                            seq, n->session, n->turn, n->attempt, seq, text);
  proto_msg_t *m = proto_msg_new(PROTO_DELTA);
  proto_set_str(m, PROTO_F_session, n->session);
  PROTO_SET(m, turn, n->turn);
  PROTO_SET(m, attempt, n->attempt);
  PROTO_SET(m, seq, seq);
  proto_set_str(m, PROTO_F_kind, "text");
  proto_set_str(m, PROTO_F_text, text);
  m->id = seq;
  char *out = NULL;
  size_t len = 0;
  proto_err_t err;
  if (proto_encode(m, &out, &len, &err) != 0 || len > cap)
    die("delta does not encode");
  memcpy(buf, out, len);
  free(out);
  proto_msg_destroy(&m);
  return len;
}

/* Reads session index, seq and send time of a received delta; false if it is none. */
static bool parse_delta(const char *d, size_t len, bool json, long *node, long *seq, int64_t *sent) {
  const char *tail;
  if (json) {
    const char *p = memmem(d, len, "\"session\": \"s", 13), *q = memmem(d, len, "\"seq\": ", 7);
    if (!p || !q || len < 18)
      return false;
    *node = strtol(p + 13, NULL, 10);
    *seq = strtol(q + 7, NULL, 10);
    tail = d + len - 18;
  } else {
    proto_peek_t pk;
    proto_err_t err;
    if (proto_peek(d, len, &pk, &err) != PROTO_OK || pk.type != PROTO_DELTA || pk.session_len < 2)
      return false;
    *node = strtol(pk.session + 1, NULL, 10);
    *seq = pk.seq;
    tail = d + len - 16;
  }
  char hex[17];
  memcpy(hex, tail, 16);
  hex[16] = 0;
  *sent = (int64_t)strtoull(hex, NULL, 16);
  return true;
}

/* Broker target: nodes say hello, the controller asks one session per node, each node gets its turn. */
static void setup_broker(node_t *nodes, void *ctl) {
  char name[32];
  for (long i = 0; i < opt.nodes; i++) {
    snprintf(name, sizeof name, "sim%ld", i);
    hello(nodes[i].s, "node", name, 1);
  }
  for (long i = 0; i < opt.nodes; i++)
    wait_welcome(nodes[i].s);
  hello(ctl, "controller", "bench", 0);
  wait_welcome(ctl);
  for (long i = 0; i < opt.nodes; i++)
    ask(ctl, i + 2, nodes[i].session);
  long got = 0;
  int64_t end = now_ns() + 60000000000, beat = now_ns();
  while (got < opt.nodes && now_ns() < end) {
    for (long i = 0; i < opt.nodes; i++) {
      proto_msg_t *m = NULL;
      proto_err_t err;
      while (proto_recv(nodes[i].s, NULL, NULL, NULL, &m, &err, ZMQ_DONTWAIT) == 1) {
        if (m->type == PROTO_TURN && !nodes[i].turn) {
          snprintf(nodes[i].session, sizeof nodes[i].session, "%s", m->session);
          nodes[i].turn = m->turn;
          nodes[i].attempt = m->attempt;
          got++;
        }
        proto_msg_destroy(&m);
      }
    }
    if (now_ns() - beat > 1000000000) {
      for (long i = 0; i < opt.nodes; i++)
        send_heartbeat(nodes[i].s);
      beat = now_ns();
    }
    proto_msg_t *m = recv_msg(ctl, 1);
    proto_msg_destroy(&m);
  }
  if (got < opt.nodes)
    die("not every node got its turn");
}

/* Reference targets: the controller says "C" and waits for "ok"; each node's "N" comes through. */
static void setup_forwarder(node_t *nodes, void *ctl) {
  zmq_send(ctl, "C", 1, 0);
  char buf[16];
  zmq_pollitem_t it = {ctl, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&it, 1, 10000) <= 0 || zmq_recv(ctl, buf, sizeof buf, 0) != 2)
    die("no answer from the forwarder");
  for (long i = 0; i < opt.nodes; i++) {
    nodes[i].turn = i + 1;
    nodes[i].attempt = 1;
    zmq_send(nodes[i].s, "N", 1, 0);
  }
  for (long got = 0; got < opt.nodes;) {
    if (zmq_poll(&it, 1, 20000) <= 0)
      die("nodes did not all connect");
    zmq_recv(ctl, buf, sizeof buf, 0);
    got++;
  }
}

static int cmd_fwd(void) {
  bool json = strcmp(opt.target, "json") == 0, broker = strcmp(opt.target, "broker") == 0;
  long per = opt.deltas / opt.nodes, total = per * opt.nodes;
  node_t *nodes = calloc((size_t)opt.nodes, sizeof *nodes);
  int64_t *lat = calloc((size_t)total + 1, sizeof *lat);
  long rss0 = rss_kb();
  for (long i = 0; i < opt.nodes; i++) {
    nodes[i].s = client();
    snprintf(nodes[i].session, sizeof nodes[i].session, "s%06ld", i);
  }
  void *ctl = client();
  if (broker)
    setup_broker(nodes, ctl);
  else
    setup_forwarder(nodes, ctl);
  long rss1 = rss_kb();
  long received = 0, lost = 0, reordered = 0, bad = 0;
  char buf[512];
  int64_t t0 = now_ns(), last_progress = t0, beat = t0, cpu0 = cpu_ns();
  while (received + lost < total) {
    bool progress = false;
    for (long i = 0; i < opt.nodes; i++) {
      node_t *n = &nodes[i];
      while (n->sent < per && n->sent - n->recvd < opt.window) {
        size_t len = frame(n, n->sent + 1, json, buf, sizeof buf);
        if (zmq_send(n->s, buf, len, ZMQ_DONTWAIT) < 0)
          break;
        n->sent++;
        progress = true;
      }
    }
    zmq_msg_t f;
    zmq_msg_init(&f);
    for (int k = 0; k < 4096 && zmq_msg_recv(&f, ctl, ZMQ_DONTWAIT) >= 0; k++) {
      long node, seq;
      int64_t sent;
      if (!parse_delta(zmq_msg_data(&f), zmq_msg_size(&f), json, &node, &seq, &sent) || node < 0 || node >= opt.nodes) {
        bad++; /* events (the broker's turn_started) are not deltas */
        continue;
      }
      node_t *n = &nodes[node];
      if (seq != n->last_seq + 1) {
        if (seq > n->last_seq + 1)
          lost += seq - n->last_seq - 1;
        else
          reordered++;
      }
      if (seq > n->last_seq)
        n->last_seq = seq;
      n->recvd++;
      lat[received++] = now_ns() - sent;
      progress = true;
    }
    zmq_msg_close(&f);
    int64_t now = now_ns();
    if (progress) {
      last_progress = now;
    } else {
      if (now - last_progress > 10000000000)
        break; /* nothing for 10 s: the rest is lost */
      zmq_pollitem_t it = {ctl, 0, ZMQ_POLLIN, 0};
      zmq_poll(&it, 1, 1);
    }
    if (broker && now - beat > 1000000000) { /* heartbeats both ways, so long runs keep their nodes */
      for (long i = 0; i < opt.nodes; i++) {
        send_heartbeat(nodes[i].s);
        while (zmq_recv(nodes[i].s, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
        }
      }
      beat = now;
    }
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  int64_t cpu1 = cpu_ns();
  long missing = total - received;
  qsort(lat, (size_t)received, sizeof *lat, cmp_i64);
  printf("{\"target\": \"%s\", \"nodes\": %ld, \"deltas\": %ld, \"received\": %ld, \"lost\": %ld, \"reordered\": %ld, "
         "\"seconds\": %.4f, \"msgs_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"other_frames\": %ld, "
         "\"rss_before_kb\": %ld, \"rss_nodes_kb\": %ld, \"cpu_ns_per_msg\": %.0f}\n",
         opt.target, opt.nodes, total, received, missing, reordered, secs, (double)received / secs,
         received ? (double)lat[received / 2] / 1e3 : 0, received ? (double)lat[received * 99 / 100] / 1e3 : 0, bad,
         rss0, rss1, cpu0 >= 0 && received ? (double)(cpu1 - cpu0) / (double)received : -1.0);
  for (long i = 0; i < opt.nodes; i++)
    zmq_close(nodes[i].s);
  zmq_close(ctl);
  free(nodes);
  free(lat);
  return missing || reordered ? 3 : 0;
}

/* ---- the reference forwarder -------------------------------------------- */

static int cmd_forwarder(void) {
  void *r = zmq_socket(ctx, ZMQ_ROUTER);
  int one = 1, hwm = 100000;
  zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_setsockopt(r, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm);
  proto_socket_setup(r);
  if (opt.server_key) {
    keys_pair_t kp;
    char err[512];
    if (keys_load_pair(opt.server_key, &kp, err, sizeof err) < 0)
      die(err);
    /* CURVE as the broker has it, without its ZAP handler (keys are checked once per connection) */
    zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, kp.secret_key, strlen(kp.secret_key));
  }
  if (zmq_bind(r, opt.bind) < 0)
    die("cannot bind");
  char ep[256];
  size_t eplen = sizeof ep;
  zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &eplen);
  printf("%s\n", ep);
  fflush(stdout);
  uint8_t id[256], ctl[256];
  size_t ctllen = 0;
  zmq_msg_t f;
  zmq_msg_init(&f);
  for (;;) {
    int idlen = zmq_recv(r, id, sizeof id, 0);
    if (idlen < 0 || zmq_msg_recv(&f, r, 0) < 0)
      continue;
    if (zmq_msg_size(&f) == 1 && *(char *)zmq_msg_data(&f) == 'C') {
      memcpy(ctl, id, (size_t)idlen);
      ctllen = (size_t)idlen;
      zmq_send(r, ctl, ctllen, ZMQ_SNDMORE);
      zmq_send(r, "ok", 2, 0);
    } else if (ctllen) {
      zmq_send(r, ctl, ctllen, ZMQ_SNDMORE);
      zmq_msg_send(&f, r, 0);
    }
  }
}

/* ---- many sessions, one turn each --------------------------------------- */

static void answer_turns(void *node) {
  proto_msg_t *m = NULL;
  proto_err_t err;
  while (proto_recv(node, NULL, NULL, NULL, &m, &err, ZMQ_DONTWAIT) == 1) {
    if (m->type == PROTO_TURN) {
      proto_msg_t *d = proto_msg_new(PROTO_TURN_DONE);
      proto_set_str(d, PROTO_F_session, m->session);
      PROTO_SET(d, turn, m->turn);
      PROTO_SET(d, attempt, m->attempt);
      proto_set_json(d, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", "ok"));
      d->id = m->turn;
      proto_send(node, NULL, 0, d, 0);
      proto_msg_destroy(&d);
    } else if (m->type == PROTO_HEARTBEAT) {
      send_heartbeat(node);
    }
    proto_msg_destroy(&m);
  }
}

static int cmd_sessions(void) {
  long rss0 = rss_kb();
  void *node = NULL, *ctl = client();
  if (!opt.no_node) {
    node = client();
    hello(node, "node", "sim", 1024);
    wait_welcome(node);
  }
  hello(ctl, "controller", "bench", 0);
  wait_welcome(ctl);
  long rss1 = rss_kb(), asked = 0, done = 0, failed = 0;
  char session[32];
  int64_t t0 = now_ns(), last = t0;
  while (done + failed < opt.count && now_ns() - last < 60000000000) {
    while (asked < opt.count && asked - done - failed < 512) {
      snprintf(session, sizeof session, "s%06ld", asked);
      ask(ctl, ++asked + 1, session);
    }
    if (node)
      answer_turns(node);
    proto_msg_t *m = recv_msg(ctl, node ? 1 : 100);
    if (m && m->type == PROTO_EVENT && m->kind && strcmp(m->kind, "turn_done") == 0)
      done++, last = now_ns();
    else if (m && m->type == PROTO_EVENT && m->kind && strcmp(m->kind, "turn_failed") == 0)
      failed++, last = now_ns();
    proto_msg_destroy(&m);
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  printf("{\"count\": %ld, \"done\": %ld, \"failed\": %ld, \"seconds\": %.3f, \"rss_before_kb\": %ld, "
         "\"rss_connected_kb\": %ld, \"rss_after_kb\": %ld}\n",
         opt.count, done, failed, secs, rss0, rss1, rss_kb());
  if (node)
    zmq_close(node);
  zmq_close(ctl);
  return done == opt.count ? 0 : 3;
}

/* ---- end to end: ask -> first delta, delta -> delta ---------------------- */

static int cmd_ask(void) {
  void *ctl = client();
  hello(ctl, "controller", "bench", 0);
  wait_welcome(ctl);
  char session[32];
  int64_t *ttft = calloc((size_t)opt.rounds, sizeof *ttft), *gaps = NULL;
  int64_t *asked = calloc((size_t)opt.rounds, sizeof *asked); /* when each ask went out (monotonic) */
  size_t ngaps = 0, capgaps = 0;
  for (long r = 0; r < opt.rounds; r++) {
    snprintf(session, sizeof session, "e2e%ld", r);
    int64_t t0 = now_ns(), prev = 0;
    asked[r] = t0;
    ask(ctl, r + 2, session);
    for (;;) {
      proto_msg_t *m = recv_msg(ctl, 20000);
      if (!m)
        die("a turn did not finish within 20 s");
      int64_t t = now_ns();
      bool failed = m->type == PROTO_EVENT && m->kind && strcmp(m->kind, "turn_failed") == 0;
      bool end = failed || (m->type == PROTO_EVENT && m->kind && strcmp(m->kind, "turn_done") == 0);
      if (failed || (end && !prev))
        die("a turn failed, or ended without text");
      if (m->type == PROTO_DELTA && m->kind && strcmp(m->kind, "text") == 0) {
        if (!prev) {
          ttft[r] = t - t0;
        } else {
          if (ngaps == capgaps)
            gaps = realloc(gaps, (capgaps = capgaps * 2 + 64) * sizeof *gaps);
          gaps[ngaps++] = t - prev;
        }
        prev = t;
      }
      proto_msg_destroy(&m);
      if (end)
        break;
    }
  }
  /* per round: ask sent and first delta received, seconds of CLOCK_MONOTONIC (to match with the model server's log) */
  printf("{\"asked_s\": [");
  for (long r = 0; r < opt.rounds; r++)
    printf("%s%.6f", r ? ", " : "", (double)asked[r] / 1e9);
  printf("], \"first_s\": [");
  for (long r = 0; r < opt.rounds; r++)
    printf("%s%.6f", r ? ", " : "", (double)(asked[r] + ttft[r]) / 1e9);
  printf("]}\n");
  free(asked);
  qsort(ttft, (size_t)opt.rounds, sizeof *ttft, cmp_i64);
  if (ngaps)
    qsort(gaps, ngaps, sizeof *gaps, cmp_i64);
  printf("{\"rounds\": %ld, \"ttft_p50_ms\": %.3f, \"ttft_p99_ms\": %.3f, \"token_p50_ms\": %.3f, \"tokens\": %zu}\n",
         opt.rounds, (double)ttft[opt.rounds / 2] / 1e6, (double)ttft[opt.rounds * 99 / 100] / 1e6,
         ngaps ? (double)gaps[ngaps / 2] / 1e6 : 0.0, ngaps);
  free(ttft);
  free(gaps);
  zmq_close(ctl);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cadre-bench-cluster forwarder|fwd|sessions|ask [options] (see bench/README.md)\n");
    return 2;
  }
  const char *cmd = argv[1];
  static const struct option lo[] = {{"endpoint", 1, 0, 'e'},   {"bind", 1, 0, 'b'},
                                     {"target", 1, 0, 't'},     {"key", 1, 0, 'k'},
                                     {"broker-key", 1, 0, 'B'}, {"server-key", 1, 0, 'S'},
                                     {"nodes", 1, 0, 'n'},      {"deltas", 1, 0, 'd'},
                                     {"window", 1, 0, 'w'},     {"count", 1, 0, 'c'},
                                     {"rounds", 1, 0, 'r'},     {"pid", 1, 0, 'p'},
                                     {"no-node", 0, 0, 'N'},    {0, 0, 0, 0}};
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'e': opt.endpoint = optarg; break;
    case 'b': opt.bind = optarg; break;
    case 't': opt.target = optarg; break;
    case 'k': opt.key = optarg; break;
    case 'B': opt.broker_key = optarg; break;
    case 'S': opt.server_key = optarg; break;
    case 'n': opt.nodes = atol(optarg); break;
    case 'd': opt.deltas = atol(optarg); break;
    case 'w': opt.window = atol(optarg); break;
    case 'c': opt.count = atol(optarg); break;
    case 'r': opt.rounds = atol(optarg); break;
    case 'p': opt.pid = atoi(optarg); break;
    case 'N': opt.no_node = true; break;
    default: return 2;
    }
  }
  ctx = zmq_ctx_new();
  int maxs = 4096;
  zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, maxs);
  if (strcmp(cmd, "forwarder") == 0 && opt.bind)
    return cmd_forwarder();
  if (!opt.endpoint || opt.nodes < 1 || opt.rounds < 1)
    die("--endpoint is required");
  if (strcmp(cmd, "fwd") == 0)
    return cmd_fwd();
  if (strcmp(cmd, "sessions") == 0)
    return cmd_sessions();
  if (strcmp(cmd, "ask") == 0)
    return cmd_ask();
  die("unknown command");
}
