/* agentd: the agent daemon. A stateless worker that runs model turns for a broker.
 *
 * Threads: the main thread owns the link to the broker (proto_link) and a
 * PULL socket on which slot workers hand it encoded messages (deltas, turn
 * ends) to forward; the link stamps their ids. Each worker owns one PUSH
 * socket and runs one turn at a time (llm_run, blocking, one CURL handle) or
 * one workflow step; one more worker runs rollback restores (worker.c, over
 * the job queue of jobs.c). Cancel is an atomic flag per job.
 */
#ifndef CADRE_AGENTD_H
#define CADRE_AGENTD_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"
#include "secrets.h"

typedef struct {
  const char *broker;     /* endpoint */
  const char *broker_key; /* Z85 or file */
  const char *key_file;   /* our key pair */
  const char *name;
  const char *workspace;
  int slots;
  json_t *models; /* strings; ["*"] = any */
  json_t *providers;
  secrets_t *secrets;     /* borrowed, may be NULL */
  cadre_config_t *config; /* borrowed, may be NULL: api keys of profiles */
  long connect_timeout_ms;
  long stall_timeout_ms;
  long turn_timeout_ms;  /* the deadline of every model call (--turn-timeout) */
  json_t *labels;        /* {key: value} advertised in the hello, or NULL */
  volatile int *drain;   /* set (SIGTERM): take no new work, finish what runs, then stop; may be NULL */
  long drain_timeout_ms; /* how long a drain waits for running work before it stops anyway */
  /* Commands: in the sandbox (sandbox.h) unless no_sandbox; hidden are the
   * node's own files (masked in the sandbox, refused by the file tools);
   * secret_values are scrubbed from tool results. Borrowed, NULL-terminated. */
  bool no_sandbox;
  const char *const *hidden;
  const char *const *writable; /* more directories commands may write (--writable) */
  const char *const *readable; /* more paths commands may read, e.g. under /tmp (--readable) */
  const char *const *secret_values;
  unsigned long long sandbox_memory; /* 0: the default; ULLONG_MAX: none */
  long sandbox_procs;                /* 0: the default; -1: none */
} agentd_opts_t;

typedef struct agentd agentd_t;

/* Connects to the broker (registration goes on in agentd_run) and starts the
 * workers. NULL with err. */
agentd_t *agentd_new(const agentd_opts_t *opts, char *err, size_t errlen);
/* Serves the broker until *stop is set, or until a drain (*opts.drain) has
 * seen the running work finish or its timeout pass; says bye. 0, or -1 when
 * polling fails. */
int agentd_run(agentd_t *self, volatile int *stop);
/* Stops and joins the workers, closes the link. Accepts NULL; nulls *self_p. */
void agentd_destroy(agentd_t **self_p);

#endif
