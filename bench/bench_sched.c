/* bench_sched.c: the broker's cost per turn with many turns queued.
 *
 * For each size N (default 100, 1000, 10000), a broker without sockets (the
 * unit tests' fixture: in-memory store, recording writer) gets N asks in N
 * sessions while one node with 4 slots is connected; the node then answers
 * every turn it is sent (turn_done), which lets the next queued turn start,
 * until all N are done. Reported per turn: the time to queue it (ask) and the
 * time to run the queue through (dispatch + done + the next dispatch), in
 * microseconds. Flat figures across N mean linear scheduling. With --agents,
 * the N turns are N sub-agents spawned from main (agents_spawn), at most
 * max_concurrent_agents (5) running, each answering with a [SUMMARY].
 * See bench/README.md. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker_fixture.h"
#include "log.h"

#define SLOTS 4

/* The turns the node was sent and has not answered yet (a FIFO). */
typedef struct {
  int64_t *turn, *attempt;
  char (*session)[32];
  size_t head, tail, cap;
} pending_t;

static int count_turns(void *ctx, const void *id, size_t idlen, const void *data, size_t len) {
  (void)id, (void)idlen;
  pending_t *q = ctx;
  proto_peek_t pk;
  proto_err_t err;
  if (proto_peek(data, len, &pk, &err) != PROTO_OK)
    return -EINVAL;
  if (pk.type != PROTO_TURN)
    return 0;
  if (q->tail >= q->cap || pk.session_len >= sizeof q->session[0])
    abort();
  memcpy(q->session[q->tail], pk.session, pk.session_len);
  q->session[q->tail][pk.session_len] = '\0';
  q->turn[q->tail] = pk.turn;
  q->attempt[q->tail++] = pk.attempt;
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char SUMMARY[] = "Done.\n[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: none\n[/SUMMARY]";

static void answer(fx_t *fx, peer_t *node, pending_t *q) {
  size_t i = q->head++;
  proto_msg_t *m = proto_msg_new(PROTO_TURN_DONE);
  proto_set_str(m, PROTO_F_session, q->session[i]);
  PROTO_SET(m, turn, q->turn[i]);
  PROTO_SET(m, attempt, q->attempt[i]);
  proto_set_json(m, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", SUMMARY));
  proto_set_json(m, PROTO_F_usage, json_pack("{s:i, s:i}", "prompt_tokens", 10, "completion_tokens", 5));
  proto_set_str(m, PROTO_F_finish_reason, "stop");
  sessions_on_done(fx->b, node, m);
  proto_msg_destroy(&m);
}

/* Queues n turns, then runs them all; writes microseconds per turn. */
static int run(size_t n, bool agents, double *queue_us, double *run_us) {
  pending_t q = {.cap = n + SLOTS};
  q.turn = calloc(q.cap, sizeof *q.turn);
  q.attempt = calloc(q.cap, sizeof *q.attempt);
  q.session = calloc(q.cap, sizeof *q.session);
  fx_t *fx = fx_new(NULL);
  outbox_set_writer(fx->b, count_turns, &q);
  peer_t *node = fx_node(fx, "n1", SLOTS);
  json_decref(node->models);
  node->models = json_pack("[s, s]", "big", "small");
  char session[32], err[256];
  double t0 = now_s();
  for (size_t i = 0; i < n; i++) {
    snprintf(session, sizeof session, "s%zu", i);
    int rc =
        agents ? agents_spawn(fx->b, "reviewer", false, "look", "main", NULL, session, sizeof session, err, sizeof err)
               : (int)sessions_ask(fx->b, session, "hello", err, sizeof err);
    if (rc < 0) {
      fprintf(stderr, "%s: %s\n", agents ? "spawn" : "ask", err);
      return -1;
    }
  }
  double t1 = now_s();
  while (q.head < q.tail)
    answer(fx, node, &q);
  double t2 = now_s();
  int rc = q.head == n && sessions_count_turns(fx->b, false) == 0 ? 0 : -1;
  if (rc < 0)
    fprintf(stderr, "only %zu of %zu turns ran\n", q.head, n);
  *queue_us = (t1 - t0) * 1e6 / (double)n;
  *run_us = (t2 - t1) * 1e6 / (double)n;
  fx_destroy(&fx);
  free(q.turn);
  free(q.attempt);
  free(q.session);
  return rc;
}

int main(int argc, char **argv) {
  size_t sizes[16] = {100, 1000, 10000}, n_sizes = 0;
  bool agents = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--agents") == 0)
      agents = true;
    else if (n_sizes < 16)
      sizes[n_sizes++] = strtoul(argv[i], NULL, 10);
  }
  if (n_sizes == 0)
    n_sizes = 3;
  log_setup("cadre-bench-sched", false, LOG_ERROR);
  printf("%s\nqueued turns  queue us/turn  run us/turn  total s\n",
         agents ? "sub-agents spawned from main (5 at a time)" : "asks in as many sessions");
  for (size_t i = 0; i < n_sizes; i++) {
    double qu = 0, ru = 0;
    if (sizes[i] == 0 || run(sizes[i], agents, &qu, &ru) < 0)
      return 1;
    printf("%12zu  %13.1f  %11.1f  %7.2f\n", sizes[i], qu, ru, (qu + ru) * (double)sizes[i] / 1e6);
    fflush(stdout);
  }
  return 0;
}
