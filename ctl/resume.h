/* resume: what a controller saw of the broker's events and deltas, so that
 * nothing it missed goes unnoticed.
 *
 * Events carry the broker's seq: the last one seen is where a subscribe
 * resumes after a reconnect (client.c adds it as since), and an event at or
 * below it (a replay that overlaps) is a duplicate. Deltas carry their turn
 * attempt's own seq (1, 2, ...): a jump means deltas were lost on the way
 * (or dropped here, the client's queue being full), and a turn_done that
 * says the broker forwarded more deltas than arrived means the same (those at
 * the end, or all, e.g. across a reconnect): then a gap event is made for the
 * caller, as the broker sends one. A turn's turn_done carries its whole
 * answer, so the caller can show it whole.
 */
#ifndef CADRE_RESUME_H
#define CADRE_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

typedef struct resume resume_t;

resume_t *resume_new(void);
void resume_destroy(resume_t **self_p);
/* Looks at a delta or event as it arrives. Returns false when it is a
 * duplicate (drop it). *gap_p: NULL, or a gap event (caller owns) to hand out
 * before it, when deltas of its turn were missed. */
bool resume_accept(resume_t *self, const proto_msg_t *m, proto_msg_t **gap_p);
/* The largest event seq seen; 0: none yet. */
int64_t resume_seq(const resume_t *self);
/* on: a subscribe that resumes (since) is on its way, and until its reply
 * every event with a seq is dropped, not counted: the broker sent it before
 * the subscribe (an event for every controller, once it registered again after
 * a restart) and replays it after the reply, in order with those it missed
 * (counted, it would hide them: they are older). off: the reply came, or no
 * reply will come. */
void resume_replaying(resume_t *self, bool on);

#endif
