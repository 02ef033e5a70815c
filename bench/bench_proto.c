/* bench_proto: how fast Cadre's wire protocol encodes, decodes and forwards.
 *
 * One run measures, side by side:
 *  - codec: proto_encode and proto_decode of typical delta frames (text of 4,
 *    64 and 1024 bytes) and of a turn carrying a 20-message history (~8 KB);
 *  - forwarding: deltas sent DEALER -> ROUTER -> DEALER over real ZeroMQ
 *    sockets (inproc, and tcp on 127.0.0.1), the ROUTER served by a thread
 *    that (a) forwards each frame as is, (d) reads the routing fields in place
 *    with proto_peek and forwards the original bytes (what cadre-broker does),
 *    (b) decodes it and forwards the original bytes, or (c) decodes, re-encodes and
 *    forwards the new bytes.
 * Every variant uses the same pre-built message set. Figures are medians of
 * --runs runs, after a warm-up. bench/README.md says what each figure means.
 */
#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "proto.h"

#define POOL 64 /* distinct messages in a set, used in turn */
#define MAX_RUNS 15
#define HISTORY 20        /* chat messages in the turn case */
#define CONTENT_LEN 380   /* bytes of each of them: the frame is ~8 KB */
#define FWD_TEXT_LEN 64   /* delta text in the forwarding runs */
#define HWM 100000        /* send and receive high-water marks, messages */
#define BATCH 256         /* sends (and receives) per turn of the driver loop */
#define WATCHDOG_MS 30000 /* a forwarding run with no progress this long fails */
#define SRC_ID "src"      /* routing id of the producing DEALER */
#define SINK_ID "sink"    /* routing id of the consuming DEALER */

/* ---- options and small helpers ----------------------------------------- */

typedef struct {
  bool json;
  bool verbose;        /* every run's figures on stderr */
  bool codec, forward; /* which parts to run */
  double seconds;      /* target duration of one codec measurement */
  long messages;       /* deltas per forwarding run */
  int runs;
  long cg_ops;    /* --callgrind-ops: only run this many codec ops */
  bool cg_encode; /* ... encodes instead of decodes */
} opts_t;

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "cadre-bench-proto: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static double now_s(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median, smallest and largest of a figure's runs. */
typedef struct {
  double med, min, max;
} stat_t;

static stat_t summarize(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return (stat_t){n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1]};
}

/* ---- message sets -------------------------------------------------------- */

typedef struct {
  const char *name;
  proto_msg_t *msg[POOL];
  char *buf[POOL]; /* msg[i] encoded */
  size_t len[POOL];
  double mean_len;
} msgset_t;

static const char *const words[] = {
    "the",    "function", "returns",  "a",      "pointer",  "to",    "parsed", "config", "value", "and",
    "checks", "each",     "field",    "before", "use;",     "if",    "it",     "fails,", "we",    "log",
    "error",  "retry",    "once.",    "Then",   "tests",    "cover", "edge",   "cases:", "empty", "input,",
    "NUL",    "bytes",    "overflow", "(see",   "proto.c)", "`make", "check`", "passes", "now.",  "\n",
};

/* n bytes of ASCII prose, different for each seed, NUL-terminated. */
static char *prose(size_t n, unsigned seed) {
  char *t = malloc(n + 1);
  if (!t)
    fail("out of memory", NULL);
  size_t i = 0;
  unsigned w = seed * 7u;
  while (i < n) {
    for (const char *s = words[w++ % (sizeof words / sizeof words[0])]; *s && i < n; s++)
      t[i++] = *s;
    if (i < n)
      t[i++] = ' ';
  }
  t[n] = '\0';
  return t;
}

static void set_str(proto_msg_t *m, proto_field_t f, const char *s) {
  if (proto_set_str(m, f, s) != 0)
    fail("out of memory", NULL);
}

static void set_json(proto_msg_t *m, proto_field_t f, json_t *v) {
  if (!v || proto_set_json(m, f, v) != 0)
    fail("cannot build a json field", proto_field_name(f));
}

static proto_msg_t *new_msg(proto_type_t type, unsigned i) {
  proto_msg_t *m = proto_msg_new(type);
  if (!m)
    fail("out of memory", NULL);
  m->id = 1000 + (int64_t)i;
  return m;
}

/* A streamed text delta, as cadre-agentd sends them. */
static proto_msg_t *make_delta(unsigned i, size_t textlen) {
  proto_msg_t *m = new_msg(PROTO_DELTA, i);
  char *text = prose(textlen, i);
  set_str(m, PROTO_F_session, "main");
  set_str(m, PROTO_F_kind, "text");
  set_str(m, PROTO_F_text, text);
  free(text);
  PROTO_SET(m, turn, 42);
  PROTO_SET(m, attempt, 1);
  PROTO_SET(m, seq, (int64_t)i);
  return m;
}

static json_t *history(unsigned seed) {
  json_t *list = json_array();
  for (unsigned k = 0; list && k < HISTORY; k++) {
    const char *role = k == 0 ? "system" : k % 2 ? "user" : "assistant";
    char *content = prose(CONTENT_LEN, seed + k);
    if (json_array_append_new(list, json_pack("{s:s, s:s}", "role", role, "content", content)) != 0)
      fail("cannot build a history", NULL);
    free(content);
  }
  return list;
}

/* A turn request, as the broker sends them to a node. */
static proto_msg_t *make_turn(unsigned i) {
  proto_msg_t *m = new_msg(PROTO_TURN, i);
  set_str(m, PROTO_F_session, "reviewer-1");
  PROTO_SET(m, turn, 7 + (int64_t)i);
  PROTO_SET(m, attempt, 1);
  set_json(m, PROTO_F_profile,
           json_pack("{s:s, s:s, s:f, s:i}", "model", "qwen2.5-coder-32b-instruct", "provider", "local", "temperature",
                     0.2, "max_tokens", 4096));
  set_json(m, PROTO_F_messages, history(i));
  return m;
}

/* Fills a set: a delta with textlen bytes of text, or a turn when textlen is 0. */
static void msgset_init(msgset_t *s, const char *name, size_t textlen) {
  double total = 0;
  s->name = name;
  for (unsigned i = 0; i < POOL; i++) {
    proto_err_t err;
    s->msg[i] = textlen ? make_delta(i, textlen) : make_turn(i);
    if (proto_encode(s->msg[i], &s->buf[i], &s->len[i], &err) != 0)
      fail("cannot encode a benchmark message", err.text);
    total += (double)s->len[i];
  }
  s->mean_len = total / POOL;
}

static void msgset_free(msgset_t *s) {
  for (unsigned i = 0; i < POOL; i++) {
    proto_msg_destroy(&s->msg[i]);
    free(s->buf[i]);
  }
}

/* ---- codec --------------------------------------------------------------- */

typedef void (*op_fn)(const msgset_t *s, unsigned i);

static void op_encode(const msgset_t *s, unsigned i) {
  char *buf;
  size_t len;
  if (proto_encode(s->msg[i], &buf, &len, NULL) != 0)
    fail("encode failed", s->name);
  free(buf);
}

static void op_decode(const msgset_t *s, unsigned i) {
  proto_msg_t *m = NULL;
  proto_err_t err;
  if (proto_decode(s->buf[i], s->len[i], &m, &err) != PROTO_OK)
    fail("decode failed", err.text);
  proto_msg_destroy(&m);
}

/* Seconds taken by n ops, cycling through the set. */
static double time_ops(op_fn op, const msgset_t *s, uint64_t n) {
  double t0 = now_s(CLOCK_MONOTONIC);
  for (uint64_t k = 0; k < n; k++)
    op(s, (unsigned)(k % POOL));
  return now_s(CLOCK_MONOTONIC) - t0;
}

/* Op count that takes about `seconds`; the doubling also warms up. */
static uint64_t calibrate(op_fn op, const msgset_t *s, double seconds) {
  uint64_t n = POOL;
  double t;
  while ((t = time_ops(op, s, n)) < seconds / 8)
    n *= 2;
  return (uint64_t)((double)n * seconds / t) + 1;
}

typedef struct {
  stat_t ns;   /* per op */
  double mbps; /* frame bytes per second at the median, 1e6 bytes */
} codec_rate_t;

static codec_rate_t bench_op(op_fn op, const msgset_t *s, const opts_t *o) {
  double ns[MAX_RUNS];
  uint64_t n = calibrate(op, s, o->seconds);
  for (int r = 0; r < o->runs; r++) {
    ns[r] = time_ops(op, s, n) * 1e9 / (double)n;
    if (o->verbose)
      fprintf(stderr, "run %d %s %s: %.0f ns/op\n", r + 1, s->name, op == op_encode ? "encode" : "decode", ns[r]);
  }
  stat_t st = summarize(ns, o->runs);
  return (codec_rate_t){st, s->mean_len / st.med * 1e3};
}

typedef struct {
  const char *name;
  size_t textlen; /* 0: the turn */
  double bytes;
  codec_rate_t enc, dec;
} codec_case_t;

static void bench_codec(codec_case_t *cases, size_t ncases, const opts_t *o) {
  for (size_t c = 0; c < ncases; c++) {
    msgset_t s;
    msgset_init(&s, cases[c].name, cases[c].textlen);
    cases[c].bytes = s.mean_len;
    cases[c].enc = bench_op(op_encode, &s, o);
    cases[c].dec = bench_op(op_decode, &s, o);
    msgset_free(&s);
  }
}

/* ---- forwarding ---------------------------------------------------------- */

typedef enum { FWD_RAW, FWD_PEEK, FWD_DECODE, FWD_REENCODE, FWD_MODES } fwd_mode_t;

static const char *const mode_names[FWD_MODES] = {"raw", "peek", "decode", "reencode"};
static const char *const mode_labels[FWD_MODES] = {"(a) raw forward", "(d) peek + fwd orig", "(b) decode + fwd orig",
                                                   "(c) decode + re-encode"};

/* The forwarder thread's state. It owns `router` while it runs. */
typedef struct {
  void *router;
  fwd_mode_t mode;
  long forwarded; /* frames forwarded, sentinel excluded */
  long bad;       /* frames that did not decode or route (never, with our sets) */
  int rc;         /* 0, or the negative errno that stopped the thread */
  double cpu_s;   /* thread CPU time from "go" to the sentinel */
} fwd_t;

/* Sends one frame to the sink DEALER; blocks while its queue is full
 * (ZMQ_ROUTER_MANDATORY), so nothing is dropped. */
static int send_sink(void *router, const void *data, size_t len) {
  int rc;
  while ((rc = proto_send_raw(router, SINK_ID, strlen(SINK_ID), data, len, 0)) == -EINTR)
    ;
  return rc;
}

/* Receives identity + one payload frame from the ROUTER, as the broker does. */
static int recv_routed(void *router, char *id, size_t idcap, size_t *idlen, zmq_msg_t *frame) {
  int n;
  while ((n = zmq_recv(router, id, idcap, 0)) < 0)
    if (zmq_errno() != EINTR)
      return -zmq_errno();
  *idlen = (size_t)n < idcap ? (size_t)n : idcap;
  while (zmq_msg_recv(frame, router, 0) < 0)
    if (zmq_errno() != EINTR)
      return -zmq_errno();
  return 0;
}

/* What the broker checks before forwarding a delta (minus its own tables). */
static bool routable(const proto_msg_t *m) {
  return m->type == PROTO_DELTA && m->session && strcmp(m->session, "main") == 0 && m->seq >= 0;
}

static int send_reencoded(void *router, const proto_msg_t *m) {
  char *buf;
  size_t len;
  if (proto_encode(m, &buf, &len, NULL) != 0)
    return -EPROTO;
  int rc = send_sink(router, buf, len);
  free(buf);
  return rc;
}

static int forward_decoded(fwd_t *f, const void *data, size_t len) {
  proto_msg_t *m = NULL;
  proto_err_t err;
  if (proto_decode(data, len, &m, &err) != PROTO_OK)
    return -EPROTO;
  int rc = routable(m) ? 0 : -EPROTO;
  if (rc == 0)
    rc = f->mode == FWD_DECODE ? send_sink(f->router, data, len) : send_reencoded(f->router, m);
  proto_msg_destroy(&m);
  return rc;
}

/* What cadre-broker does with a delta: read the routing fields in place
 * (proto_peek) and forward the original bytes. */
static int forward_peeked(fwd_t *f, const void *data, size_t len) {
  proto_peek_t pk;
  proto_err_t err;
  if (proto_peek(data, len, &pk, &err) != PROTO_OK)
    return -EPROTO;
  bool ok = pk.type == PROTO_DELTA && pk.session_len == 4 && memcmp(pk.session, "main", 4) == 0 && pk.seq >= 0;
  return ok ? send_sink(f->router, data, len) : -EPROTO;
}

/* Forwards one frame; the empty sentinel always goes through as is. */
static int forward_one(fwd_t *f, const void *data, size_t len) {
  if (len == 0 || f->mode == FWD_RAW)
    return send_sink(f->router, data, len);
  if (f->mode == FWD_PEEK)
    return forward_peeked(f, data, len);
  return forward_decoded(f, data, len);
}

static bool is_id(const char *id, size_t idlen, const char *want) {
  return idlen == strlen(want) && memcmp(id, want, idlen) == 0;
}

/* Waits for a "ready" frame from both DEALERs (so both are connected and the
 * ROUTER knows the sink), then tells the sink "go". */
static int fwd_handshake(fwd_t *f) {
  bool src = false, sink = false;
  while (!(src && sink)) {
    char id[64];
    size_t idlen = 0;
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    int rc = recv_routed(f->router, id, sizeof id, &idlen, &frame);
    zmq_msg_close(&frame);
    if (rc != 0)
      return rc;
    src = src || is_id(id, idlen, SRC_ID);
    sink = sink || is_id(id, idlen, SINK_ID);
  }
  return send_sink(f->router, "go", 2);
}

static void *fwd_main(void *arg) {
  fwd_t *f = arg;
  f->rc = fwd_handshake(f);
  double t0 = now_s(CLOCK_THREAD_CPUTIME_ID);
  while (f->rc == 0) {
    char id[64];
    size_t idlen = 0;
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    int rc = recv_routed(f->router, id, sizeof id, &idlen, &frame);
    size_t len = zmq_msg_size(&frame);
    if (rc == 0)
      rc = forward_one(f, zmq_msg_data(&frame), len);
    zmq_msg_close(&frame);
    if (rc == -EPROTO)
      f->bad++;
    else if (rc != 0)
      f->rc = rc;
    else if (len == 0)
      break;
    else
      f->forwarded++;
  }
  f->cpu_s = now_s(CLOCK_THREAD_CPUTIME_ID) - t0;
  return NULL;
}

/* Three sockets: src DEALER -> ROUTER (forwarder thread) -> sink DEALER. */
typedef struct {
  void *router, *src, *sink;
} rig_t;

static void sockopt(void *sock, int opt, const void *val, size_t len, const char *what) {
  if (zmq_setsockopt(sock, opt, val, len) != 0)
    fail(what, zmq_strerror(zmq_errno()));
}

static void *new_socket(void *ctx, int type, const char *routing_id) {
  void *s = zmq_socket(ctx, type);
  int hwm = HWM;
  if (!s || proto_socket_setup(s) != 0)
    fail("cannot create a socket", zmq_strerror(zmq_errno()));
  sockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm, "ZMQ_SNDHWM");
  sockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm, "ZMQ_RCVHWM");
  if (routing_id)
    sockopt(s, ZMQ_ROUTING_ID, routing_id, strlen(routing_id), "ZMQ_ROUTING_ID");
  return s;
}

static void rig_open(rig_t *r, void *ctx, const char *transport) {
  static int serial;
  char ep[256];
  size_t eplen = sizeof ep;
  int one = 1;
  r->router = new_socket(ctx, ZMQ_ROUTER, NULL);
  sockopt(r->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one, "ZMQ_ROUTER_MANDATORY");
  if (strcmp(transport, "inproc") == 0)
    snprintf(ep, sizeof ep, "inproc://cadre-bench-%d", serial++);
  else
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:*");
  if (zmq_bind(r->router, ep) != 0 || zmq_getsockopt(r->router, ZMQ_LAST_ENDPOINT, ep, &eplen) != 0)
    fail("cannot bind", zmq_strerror(zmq_errno()));
  r->src = new_socket(ctx, ZMQ_DEALER, SRC_ID);
  r->sink = new_socket(ctx, ZMQ_DEALER, SINK_ID);
  if (zmq_connect(r->src, ep) != 0 || zmq_connect(r->sink, ep) != 0)
    fail("cannot connect", zmq_strerror(zmq_errno()));
}

static void rig_close(rig_t *r) {
  zmq_close(r->src);
  zmq_close(r->sink);
  zmq_close(r->router);
}

static void send_blocking(void *sock, const char *s) {
  while (zmq_send(sock, s, strlen(s), 0) < 0)
    if (zmq_errno() != EINTR)
      fail("cannot send", zmq_strerror(zmq_errno()));
}

static void wait_go(void *sink) {
  char buf[8];
  int n;
  while ((n = zmq_recv(sink, buf, sizeof buf, 0)) < 0)
    if (zmq_errno() != EINTR)
      fail("no go from the forwarder", zmq_strerror(zmq_errno()));
  if (n != 2 || memcmp(buf, "go", 2) != 0)
    fail("unexpected frame before the benchmark", NULL);
}

/* The producer and consumer sides of one run, in the calling thread. */
typedef struct {
  void *src, *sink;
  const msgset_t *set;
  long total, sent, received;
  bool sentinel_sent, done;
  uint64_t bytes; /* payload bytes received, sentinel excluded */
} drive_t;

/* Sends up to BATCH frames without blocking; returns how many went out. */
static int drive_send(drive_t *d) {
  int k = 0;
  for (; k < BATCH && !d->sentinel_sent; k++) {
    bool last = d->sent == d->total;
    unsigned i = (unsigned)(d->sent % POOL);
    if (zmq_send(d->src, last ? "" : d->set->buf[i], last ? 0 : d->set->len[i], ZMQ_DONTWAIT) < 0) {
      if (zmq_errno() == EAGAIN || zmq_errno() == EINTR)
        break;
      fail("producer send failed", zmq_strerror(zmq_errno()));
    }
    if (last)
      d->sentinel_sent = true;
    else
      d->sent++;
  }
  return k;
}

/* Receives up to BATCH frames without blocking; returns how many came in. */
static int drive_recv(drive_t *d) {
  int k = 0;
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  for (; k < BATCH && !d->done; k++) {
    if (zmq_msg_recv(&msg, d->sink, ZMQ_DONTWAIT) < 0) {
      if (zmq_errno() == EAGAIN || zmq_errno() == EINTR)
        break;
      fail("consumer receive failed", zmq_strerror(zmq_errno()));
    }
    if (zmq_msg_size(&msg) == 0) {
      d->done = true;
    } else {
      d->received++;
      d->bytes += zmq_msg_size(&msg);
    }
  }
  zmq_msg_close(&msg);
  return k;
}

/* Blocks until the producer may send or the consumer may receive. */
static void drive_wait(drive_t *d) {
  zmq_pollitem_t items[2] = {{d->sink, 0, ZMQ_POLLIN, 0}, {d->src, 0, ZMQ_POLLOUT, 0}};
  int n = zmq_poll(items, d->sentinel_sent ? 1 : 2, WATCHDOG_MS);
  if (n == 0)
    fail("forwarding stalled", "no progress in 30 s");
  if (n < 0 && zmq_errno() != EINTR)
    fail("zmq_poll", zmq_strerror(zmq_errno()));
}

static void drive(drive_t *d) {
  while (!d->done) {
    int progress = drive_send(d);
    progress += drive_recv(d);
    if (!progress)
      drive_wait(d);
  }
}

static uint64_t expected_bytes(const msgset_t *s, long n) {
  uint64_t total = 0;
  for (long k = 0; k < n; k++)
    total += s->len[k % POOL];
  return total;
}

typedef struct {
  double rate;   /* messages per second, end to end */
  double cpu_ns; /* forwarder thread CPU per message */
} fwd_run_t;

typedef struct {
  stat_t rate, cpu_ns; /* over the runs */
} fwd_rate_t;

static void check_run(const fwd_t *f, const drive_t *d, const msgset_t *s) {
  char what[160];
  if (f->rc != 0)
    fail("forwarder failed", zmq_strerror(-f->rc));
  if (f->bad != 0 || f->forwarded != d->total || d->received != d->total) {
    snprintf(what, sizeof what, "%ld sent, %ld forwarded, %ld bad, %ld received", d->total, f->forwarded, f->bad,
             d->received);
    fail("lost messages", what);
  }
  if (f->mode != FWD_REENCODE && d->bytes != expected_bytes(s, d->total))
    fail("forwarded bytes differ from the bytes sent", mode_names[f->mode]);
}

/* One run: fresh sockets and forwarder thread, n deltas through them. */
static fwd_run_t run_forward(void *ctx, const char *transport, fwd_mode_t mode, const msgset_t *s, long n) {
  rig_t r;
  pthread_t thread;
  rig_open(&r, ctx, transport);
  fwd_t f = {.router = r.router, .mode = mode};
  if (pthread_create(&thread, NULL, fwd_main, &f) != 0)
    fail("cannot start the forwarder thread", NULL);
  send_blocking(r.src, "ready");
  send_blocking(r.sink, "ready");
  wait_go(r.sink);
  drive_t d = {.src = r.src, .sink = r.sink, .set = s, .total = n};
  double t0 = now_s(CLOCK_MONOTONIC);
  drive(&d);
  double wall = now_s(CLOCK_MONOTONIC) - t0;
  pthread_join(thread, NULL);
  check_run(&f, &d, s);
  rig_close(&r);
  return (fwd_run_t){(double)n / wall, f.cpu_s * 1e9 / (double)n};
}

/* Warm-up, then `runs` rounds of every mode (order rotated each round);
 * med[mode] gets the medians. */
static void bench_forward(void *ctx, const char *transport, const msgset_t *s, const opts_t *o,
                          fwd_rate_t med[FWD_MODES]) {
  double rate[FWD_MODES][MAX_RUNS], cpu[FWD_MODES][MAX_RUNS];
  for (int m = 0; m < FWD_MODES; m++)
    run_forward(ctx, transport, (fwd_mode_t)m, s, o->messages / 4 + 1);
  for (int r = 0; r < o->runs; r++) {
    for (int k = 0; k < FWD_MODES; k++) {
      int m = (r + k) % FWD_MODES;
      fwd_run_t x = run_forward(ctx, transport, (fwd_mode_t)m, s, o->messages);
      if (o->verbose)
        fprintf(stderr, "run %d %s %s: %.0f msgs/s, %.0f fwd CPU ns/msg\n", r + 1, transport, mode_names[m], x.rate,
                x.cpu_ns);
      rate[m][r] = x.rate;
      cpu[m][r] = x.cpu_ns;
    }
  }
  for (int m = 0; m < FWD_MODES; m++)
    med[m] = (fwd_rate_t){summarize(rate[m], o->runs), summarize(cpu[m], o->runs)};
}

/* ---- output -------------------------------------------------------------- */

static const char *const transports[] = {"inproc", "tcp"};
#define NTRANSPORTS (sizeof transports / sizeof transports[0])

/* Extra time per message relative to raw forwarding, in percent. */
static double overhead_pct(double raw_time, double time) {
  return (time / raw_time - 1) * 100;
}

static void print_header(const opts_t *o) {
  int maj, min, pat;
  zmq_version(&maj, &min, &pat);
  printf("cadre-bench-proto: libzmq %d.%d.%d, msgpack-c %s, jansson %s, %ld online cpus; median of %d runs\n", maj, min,
         pat, msgpack_version(), JANSSON_VERSION, sysconf(_SC_NPROCESSORS_ONLN), o->runs);
}

static void print_codec(const codec_case_t *c, size_t n, const opts_t *o) {
  printf("\ncodec (one op = encode + free, or decode + destroy; ~%.2f s per measurement)\n", o->seconds);
  printf("%-16s %7s %12s %12s %12s %12s\n", "message", "bytes", "enc ns/op", "enc MB/s", "dec ns/op", "dec MB/s");
  for (size_t i = 0; i < n; i++)
    printf("%-16s %7.0f %12.0f %12.1f %12.0f %12.1f\n", c[i].name, c[i].bytes, c[i].enc.ns.med, c[i].enc.mbps,
           c[i].dec.ns.med, c[i].dec.mbps);
}

static void print_forward(fwd_rate_t res[][FWD_MODES], const msgset_t *s, const opts_t *o) {
  printf("\nforwarding DEALER -> ROUTER thread -> DEALER: %ld deltas per run, %.0f-byte frames (text %d B)\n",
         o->messages, s->mean_len, FWD_TEXT_LEN);
  printf("%-8s %-24s %12s %9s %14s %9s\n", "transp.", "variant", "msgs/s", "overhead", "fwd CPU ns/msg", "overhead");
  for (size_t t = 0; t < NTRANSPORTS; t++) {
    for (int m = 0; m < FWD_MODES; m++) {
      const fwd_rate_t *a = &res[t][FWD_RAW], *x = &res[t][m];
      printf("%-8s %-24s %12.0f %+8.1f%% %14.0f %+8.1f%%\n", transports[t], mode_labels[m], x->rate.med,
             overhead_pct(1 / a->rate.med, 1 / x->rate.med), x->cpu_ns.med, overhead_pct(a->cpu_ns.med, x->cpu_ns.med));
    }
  }
}

static json_t *stat_json(const stat_t *st) {
  return json_pack("{s:f, s:f, s:f}", "median", st->med, "min", st->min, "max", st->max);
}

static json_t *codec_json(const codec_case_t *c, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, json_pack("{s:s, s:f, s:o, s:f, s:o, s:f}", "message", c[i].name, "bytes", c[i].bytes,
                                         "encode_ns", stat_json(&c[i].enc.ns), "encode_mb_s", c[i].enc.mbps,
                                         "decode_ns", stat_json(&c[i].dec.ns), "decode_mb_s", c[i].dec.mbps));
  return arr;
}

static json_t *forward_json(fwd_rate_t res[][FWD_MODES], const msgset_t *s, const opts_t *o) {
  json_t *arr = json_array();
  for (size_t t = 0; t < NTRANSPORTS; t++) {
    for (int m = 0; m < FWD_MODES; m++) {
      const fwd_rate_t *a = &res[t][FWD_RAW], *x = &res[t][m];
      json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:f, s:o, s:f}", "transport", transports[t], "variant",
                                           mode_names[m], "msgs_per_s", stat_json(&x->rate), "overhead_pct",
                                           overhead_pct(1 / a->rate.med, 1 / x->rate.med), "fwd_cpu_ns_per_msg",
                                           stat_json(&x->cpu_ns), "cpu_overhead_pct",
                                           overhead_pct(a->cpu_ns.med, x->cpu_ns.med)));
    }
  }
  return json_pack("{s:I, s:f, s:i, s:o}", "messages", (json_int_t)o->messages, "frame_bytes", s->mean_len,
                   "text_bytes", FWD_TEXT_LEN, "results", arr);
}

static void print_json(const codec_case_t *c, size_t nc, fwd_rate_t res[][FWD_MODES], const msgset_t *s,
                       const opts_t *o) {
  char zmqv[32];
  int maj, min, pat;
  zmq_version(&maj, &min, &pat);
  snprintf(zmqv, sizeof zmqv, "%d.%d.%d", maj, min, pat);
  json_t *root = json_pack("{s:s, s:s, s:s, s:I, s:i, s:f}", "libzmq", zmqv, "msgpack", msgpack_version(), "jansson",
                           JANSSON_VERSION, "cpus", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "runs", o->runs,
                           "codec_seconds", o->seconds);
  if (!root)
    fail("cannot build the JSON report", NULL);
  if (o->codec)
    json_object_set_new(root, "codec", codec_json(c, nc));
  if (o->forward)
    json_object_set_new(root, "forward", forward_json(res, s, o));
  json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
  putchar('\n');
  json_decref(root);
}

/* ---- callgrind mode ------------------------------------------------------ */

/* Runs just n ops on the 64-byte delta set; its inclusive instruction count
 * (callgrind --toggle-collect=cg_loop) divided by n is the cost of one op. */
__attribute__((noinline)) static void cg_loop(op_fn op, const msgset_t *s, long n) {
  for (long k = 0; k < n; k++)
    op(s, (unsigned)(k % POOL));
}

static void run_callgrind(const opts_t *o) {
  msgset_t s;
  msgset_init(&s, "delta-64", FWD_TEXT_LEN);
  cg_loop(o->cg_encode ? op_encode : op_decode, &s, o->cg_ops);
  printf("%ld %s of a %.0f-byte delta (64 B text) done\n", o->cg_ops, o->cg_encode ? "encodes" : "decodes", s.mean_len);
  msgset_free(&s);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: cadre-bench-proto [--json] [--verbose] [--codec-only | --forward-only] [--runs N]\n"
          "                         [--seconds S] [--messages N]\n"
          "       cadre-bench-proto --callgrind-ops N [--encode]\n"
          "  --json            print the results as JSON instead of tables\n"
          "  --verbose         also print every run's figures on stderr\n"
          "  --runs N          runs per figure, the median is reported (default 3, max %d)\n"
          "  --seconds S       duration of one codec measurement (default 0.5)\n"
          "  --messages N      deltas per forwarding run (default 200000)\n"
          "  --callgrind-ops N only run N decodes (or encodes, with --encode) of a 64-byte-text\n"
          "                    delta, to count instructions under valgrind --tool=callgrind\n"
          "                    --toggle-collect=cg_loop (see bench/README.md)\n",
          MAX_RUNS);
}

static long parse_long(const char *s, long min, long max, const char *opt) {
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || errno || *end || v < min || v > max)
    fail("bad value for", opt);
  return v;
}

static double parse_seconds(const char *s) {
  char *end;
  double v = s ? strtod(s, &end) : 0;
  if (!s || *end || !(v >= 0.001 && v <= 60))
    fail("bad value for", "--seconds (0.001 to 60)");
  return v;
}

static opts_t parse_args(int argc, char **argv) {
  opts_t o = {.codec = true, .forward = true, .seconds = 0.5, .messages = 200000, .runs = 3};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0)
      o.json = true;
    else if (strcmp(a, "--verbose") == 0)
      o.verbose = true;
    else if (strcmp(a, "--codec-only") == 0)
      o.forward = false;
    else if (strcmp(a, "--forward-only") == 0)
      o.codec = false;
    else if (strcmp(a, "--encode") == 0)
      o.cg_encode = true;
    else if (strcmp(a, "--runs") == 0)
      o.runs = (int)parse_long(v, 1, MAX_RUNS, a), i++;
    else if (strcmp(a, "--messages") == 0)
      o.messages = parse_long(v, 1, 1000000000L, a), i++;
    else if (strcmp(a, "--seconds") == 0)
      o.seconds = parse_seconds(v), i++;
    else if (strcmp(a, "--callgrind-ops") == 0)
      o.cg_ops = parse_long(v, 1, 1000000000L, a), i++;
    else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      usage(stdout), exit(0);
    else
      usage(stderr), exit(2);
  }
  if (!o.codec && !o.forward)
    fail("--codec-only and --forward-only exclude each other", NULL);
  return o;
}

int main(int argc, char **argv) {
  opts_t o = parse_args(argc, argv);
  if (o.cg_ops) {
    run_callgrind(&o);
    return 0;
  }
  codec_case_t cases[] = {{.name = "delta text=4", .textlen = 4},
                          {.name = "delta text=64", .textlen = 64},
                          {.name = "delta text=1024", .textlen = 1024},
                          {.name = "turn 20 msgs", .textlen = 0}};
  size_t ncases = sizeof cases / sizeof cases[0];
  fwd_rate_t res[NTRANSPORTS][FWD_MODES];
  msgset_t fwd_set;
  msgset_init(&fwd_set, "forward", FWD_TEXT_LEN);
  if (!o.json)
    print_header(&o);
  if (o.codec) {
    bench_codec(cases, ncases, &o);
    if (!o.json)
      print_codec(cases, ncases, &o);
  }
  if (o.forward) {
    void *ctx = zmq_ctx_new();
    if (!ctx)
      fail("cannot create a ZeroMQ context", zmq_strerror(zmq_errno()));
    for (size_t t = 0; t < NTRANSPORTS; t++)
      bench_forward(ctx, transports[t], &fwd_set, &o, res[t]);
    zmq_ctx_term(ctx);
    if (!o.json)
      print_forward(res, &fwd_set, &o);
  }
  if (o.json)
    print_json(cases, ncases, res, &fwd_set, &o);
  msgset_free(&fwd_set);
  return 0;
}
