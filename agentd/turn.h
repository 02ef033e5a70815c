/* turn: one turn on a node: model calls and the tool loop between them.
 * Internal to agentd (worker.c runs it in a slot thread). */
#ifndef CADRE_TURN_H
#define CADRE_TURN_H

#include <jansson.h>
#include <stdint.h>

#include "jobs.h"
#include "proto.h"

/* Runs the job's turn to its end and reports turn_done or turn_failed. */
void turn_run(run_t *r);

/* Hands a message to the main thread (for the broker): run_push. */
void turn_push(run_t *r, proto_msg_t *m);
/* A new message of type with the job's session, turn and attempt set. */
proto_msg_t *turn_msg(run_t *r, proto_type_t type);

#endif
