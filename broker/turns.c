/* turns.c: the broker's table of queued and running turns.
 *
 * Every lookup that scheduling does per turn is O(1) here, whatever the
 * number of turns queued: a turn by id (a hash), a session's turns in order
 * (a hash of per-session queues), and the heads of all sessions' queues in
 * turn-id order (the only turns that may be dispatched). The hashes are
 * uthash's (Debian's uthash-dev), with out-of-memory made non-fatal.
 */
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "internal.h"

/* A session with turns in the table: its turns in order (t->snext). */
typedef struct turn_session {
  char *id; /* the key */
  turn_t *first, *last;
  bool sub;
  UT_hash_handle hh;
} turn_session_t;

turn_t *turn_find(broker_t *b, int64_t id) {
  turn_t *t = NULL;
  HASH_FIND(hh, b->turn_ids, &id, sizeof id, t);
  return t;
}

static turn_session_t *session_find(broker_t *b, const char *session) {
  turn_session_t *s = NULL;
  HASH_FIND_STR(b->turn_sessions, session, s);
  return s;
}

turn_t *turns_session_first(broker_t *b, const char *session) {
  turn_session_t *s = session_find(b, session);
  return s ? s->first : NULL;
}

int turns_sub_sessions(const broker_t *b) {
  return b->n_sub_sessions;
}

/* Heads are kept in id order; a new head is nearly always the newest, so
 * the search starts at the tail. */
static void heads_insert(broker_t *b, turn_t *t) {
  turn_t *after = b->heads_tail;
  while (after && after->id > t->id)
    after = after->hprev;
  t->hprev = after;
  t->hnext = after ? after->hnext : b->heads;
  if (t->hnext)
    t->hnext->hprev = t;
  else
    b->heads_tail = t;
  if (after)
    after->hnext = t;
  else
    b->heads = t;
  turns_recheck(b, t);
}

static void heads_remove(broker_t *b, turn_t *t) {
  if (t->hprev)
    t->hprev->hnext = t->hnext;
  else
    b->heads = t->hnext;
  if (t->hnext)
    t->hnext->hprev = t->hprev;
  else
    b->heads_tail = t->hprev;
  t->hprev = t->hnext = NULL;
}

void turns_recheck(broker_t *b, turn_t *t) {
  if (t->in_recheck)
    return;
  t->in_recheck = true;
  t->rnext = NULL;
  if (b->recheck_tail)
    b->recheck_tail->rnext = t;
  else
    b->recheck = t;
  b->recheck_tail = t;
}

turn_t *turns_recheck_pop(broker_t *b) {
  turn_t *t = b->recheck;
  if (!t)
    return NULL;
  b->recheck = t->rnext;
  if (!b->recheck)
    b->recheck_tail = NULL;
  t->in_recheck = false;
  t->rnext = NULL;
  return t;
}

void turns_recheck_clear(broker_t *b) {
  while (turns_recheck_pop(b))
    ;
}

static void recheck_remove(broker_t *b, turn_t *t) {
  if (!t->in_recheck)
    return;
  turn_t **pp = &b->recheck, *prev = NULL;
  while (*pp != t) {
    prev = *pp;
    pp = &(*pp)->rnext;
  }
  *pp = t->rnext;
  if (b->recheck_tail == t)
    b->recheck_tail = prev;
  t->in_recheck = false;
}

static turn_session_t *session_get(broker_t *b, const char *session, bool sub) {
  turn_session_t *s = session_find(b, session);
  if (s)
    return s;
  if (!(s = calloc(1, sizeof *s)) || !(s->id = strdup(session))) {
    free(s);
    return NULL;
  }
  unsigned before = HASH_COUNT(b->turn_sessions);
  HASH_ADD_KEYPTR(hh, b->turn_sessions, s->id, strlen(s->id), s);
  if (HASH_COUNT(b->turn_sessions) == before) {
    free(s->id);
    free(s);
    return NULL;
  }
  s->sub = sub;
  b->n_sub_sessions += sub;
  return s;
}

turn_t *turns_add(broker_t *b, int64_t id, const char *session, int attempt, bool sub) {
  turn_t *t = calloc(1, sizeof *t);
  turn_session_t *s = t ? session_get(b, session, sub) : NULL;
  if (!s || !(t->session = strdup(session))) {
    free(t);
    return NULL;
  }
  t->id = id;
  t->attempt = attempt;
  t->sub = sub;
  unsigned before = HASH_COUNT(b->turn_ids);
  HASH_ADD(hh, b->turn_ids, id, sizeof t->id, t);
  if (HASH_COUNT(b->turn_ids) == before) {
    free(t->session);
    free(t);
    return NULL;
  }
  t->prev = b->turns_tail;
  if (b->turns_tail)
    b->turns_tail->next = t;
  else
    b->turns = t;
  b->turns_tail = t;
  if (s->last)
    s->last->snext = t;
  else
    s->first = t;
  s->last = t;
  if (s->first == t)
    heads_insert(b, t);
  return t;
}

/* Takes t out of its session's queue; the next turn, if any, becomes a head. */
static void session_unlink(broker_t *b, turn_t *t) {
  turn_session_t *s = session_find(b, t->session);
  if (!s)
    return;
  turn_t **pp = &s->first, *prev = NULL;
  while (*pp && *pp != t) {
    prev = *pp;
    pp = &(*pp)->snext;
  }
  if (!*pp)
    return;
  *pp = t->snext;
  if (s->last == t)
    s->last = prev;
  if (!prev) {
    heads_remove(b, t);
    if (s->first)
      heads_insert(b, s->first);
  }
  if (!s->first) {
    b->n_sub_sessions -= s->sub;
    HASH_DEL(b->turn_sessions, s);
    free(s->id);
    free(s);
  }
}

static void turn_free(turn_t *t) {
  free(t->session);
  free(t);
}

void turns_remove(broker_t *b, turn_t *t) {
  HASH_DEL(b->turn_ids, t);
  if (t->prev)
    t->prev->next = t->next;
  else
    b->turns = t->next;
  if (t->next)
    t->next->prev = t->prev;
  else
    b->turns_tail = t->prev;
  recheck_remove(b, t);
  session_unlink(b, t);
  turn_free(t);
}

void turns_free_all(broker_t *b) {
  while (b->turns)
    turns_remove(b, b->turns);
}
