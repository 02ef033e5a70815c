/* broker: Cadre's broker. One ROUTER socket, one poll loop with timers, all state. */
#ifndef CADRE_BROKER_H
#define CADRE_BROKER_H

#include <stdbool.h>

#include "config.h"

#define BROKER_MAX_BINDS 8

typedef struct {
  const char *binds[BROKER_MAX_BINDS];
  int n_binds;
  const char *state_dir;
  const char *authorized_keys; /* NULL: <state>/authorized_keys */
  cadre_config_t *config;      /* borrowed */
  int heartbeat_ms;            /* default 1000 */
  int liveness;                /* missed heartbeats before a peer is dead, default 3 */
  int queue_timeout_ms;        /* a turn no node can serve fails after this, default 60000 */
  int max_turn_attempts;       /* node lost mid-turn: re-run up to this many attempts, default 3 */
  volatile int *reload;        /* set (by SIGHUP): read authorized_keys again at once; may be NULL */
  const char *metrics;         /* HOST:PORT for /metrics and /healthz, or NULL: none */
  bool no_curve;               /* benchmarks only: no CURVE, loopback binds only (bench/run) */
} broker_opts_t;

typedef struct broker broker_t;

/* Creates the broker: opens state, keys, binds. NULL with err on failure. */
broker_t *broker_new(const broker_opts_t *opts, char *err, size_t errlen);
/* Runs until *stop becomes true (set from a signal handler). Returns 0 or -1. */
int broker_run(broker_t *self, volatile int *stop);
void broker_destroy(broker_t **self_p);

#endif
