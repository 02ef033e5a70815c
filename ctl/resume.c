/* resume.c: event seqs and delta seqs as a controller sees them (resume.h). */
#include "resume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESUME_TURNS_MAX 4096 /* turns followed at once; past it, forgotten (a gap may go unseen, never a dup) */

struct resume {
  int64_t seq;    /* largest event seq seen */
  bool replaying; /* a resuming subscribe waits for its reply (resume_replaying) */
  json_t *turns;  /* "turn" -> [attempt, last delta seq, deltas received, deltas already told missing] */
};

resume_t *resume_new(void) {
  resume_t *r = calloc(1, sizeof *r);
  if (r && !(r->turns = json_object())) {
    free(r);
    return NULL;
  }
  return r;
}

void resume_destroy(resume_t **self_p) {
  if (!self_p || !*self_p)
    return;
  json_decref((*self_p)->turns);
  free(*self_p);
  *self_p = NULL;
}

int64_t resume_seq(const resume_t *self) {
  return self->seq;
}

void resume_replaying(resume_t *self, bool on) {
  self->replaying = on;
}

static proto_msg_t *gap_event(const resume_t *r, int64_t turn, int64_t deltas) {
  proto_msg_t *g = proto_msg_new(PROTO_EVENT);
  if (!g)
    return NULL;
  proto_set_str(g, PROTO_F_kind, "gap");
  proto_set_json(g, PROTO_F_payload,
                 json_pack("{s:I, s:I, s:i, s:I, s:[I]}", "from", (json_int_t)r->seq, "to", (json_int_t)r->seq, "count",
                           0, "deltas", (json_int_t)deltas, "turns", (json_int_t)turn));
  return g;
}

/* The record of the turn's attempt (made, reset for a new attempt). */
static json_t *turn_rec(resume_t *r, int64_t turn, int64_t attempt) {
  char key[24];
  snprintf(key, sizeof key, "%lld", (long long)turn);
  json_t *rec = json_object_get(r->turns, key);
  if (rec && json_integer_value(json_array_get(rec, 0)) == attempt)
    return rec;
  if (json_object_size(r->turns) >= RESUME_TURNS_MAX)
    json_object_clear(r->turns);
  rec = json_pack("[I, i, i, i]", (json_int_t)attempt, 0, 0, 0);
  json_object_set_new(r->turns, key, rec);
  return rec;
}

static json_int_t at(const json_t *rec, size_t i) {
  return json_integer_value(json_array_get(rec, i));
}

static bool on_event(resume_t *r, const proto_msg_t *m, proto_msg_t **gap_p) {
  if (PROTO_HAS(m, seq)) {
    if (m->seq <= r->seq || r->replaying)
      return false; /* a replay we already have, or one that comes after the subscribe's reply */
    r->seq = m->seq;
  }
  if (strcmp(m->kind, "gap") == 0) {
    /* The broker told of these turns: not told again at their turn_done. */
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(m->payload, "turns"), i, t) {
      char key[24];
      snprintf(key, sizeof key, "%lld", (long long)json_integer_value(t));
      json_t *rec = json_object_get(r->turns, key);
      if (rec)
        json_array_set_new(rec, 3, json_integer(INT32_MAX));
    }
    return true;
  }
  if (!PROTO_HAS(m, turn) || strcmp(m->kind, "turn_done") != 0)
    return true;
  /* The broker says how many deltas it forwarded: fewer got here, some were missed. */
  json_t *sent = json_object_get(m->payload, "deltas");
  json_t *rec = turn_rec(r, m->turn, json_integer_value(json_object_get(m->payload, "attempt")));
  json_int_t missed = json_integer_value(sent) - at(rec, 2) - at(rec, 3);
  if (json_is_integer(sent) && missed > 0)
    *gap_p = gap_event(r, m->turn, missed);
  char key[24];
  snprintf(key, sizeof key, "%lld", (long long)m->turn);
  json_object_del(r->turns, key);
  return true;
}

bool resume_accept(resume_t *self, const proto_msg_t *m, proto_msg_t **gap_p) {
  *gap_p = NULL;
  if (m->type == PROTO_EVENT)
    return on_event(self, m, gap_p);
  if (m->type != PROTO_DELTA)
    return true;
  json_t *rec = turn_rec(self, m->turn, m->attempt);
  json_int_t last = at(rec, 1);
  if (m->seq > last + 1) {
    *gap_p = gap_event(self, m->turn, m->seq - last - 1);
    json_array_set_new(rec, 3, json_integer(at(rec, 3) + m->seq - last - 1));
  }
  if (m->seq > last)
    json_array_set_new(rec, 1, json_integer(m->seq));
  json_array_set_new(rec, 2, json_integer(at(rec, 2) + 1));
  return true;
}
