/* turn: one turn on a node: model calls and the tool loop between them.
 * Internal to agentd (worker.c runs it in a slot thread). */
#ifndef CADRE_TURN_H
#define CADRE_TURN_H

#include <jansson.h>
#include <stdint.h>

#include "agentd.h"
#include "proto.h"

typedef struct {
  jobq_t *q;
  job_t *job;
  void *push;        /* this worker's PUSH socket to the main thread */
  int64_t seq;       /* delta sequence of this turn attempt */
} run_t;

/* Runs the job's turn to its end and reports turn_done or turn_failed. */
void turn_run(run_t *r);

/* Hands a message to the main thread (for the broker). */
void turn_push(run_t *r, proto_msg_t *m);
/* A new message of type with the job's session, turn and attempt set. */
proto_msg_t *turn_msg(run_t *r, proto_type_t type);

#endif
