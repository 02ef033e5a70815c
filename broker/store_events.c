/* store_events.c: the broker's event log, so that a controller that missed
 * events (it reconnected, or could not keep up) gets them again.
 *
 * Every event the broker sends is kept as its encoded frame, by seq, in the
 * same database. Retention: the last STORE_EVENTS_KEEP events (older ones are
 * pruned every STORE_EVENTS_PRUNE_EVERY events); the seq goes on from the
 * largest kept across restarts. Deltas are not kept: a turn's turn_done event
 * carries its whole answer.
 */
#include <sqlite3.h>
#include <stdio.h>

#include "store.h"

static const char *schema =
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, session TEXT, frame BLOB NOT NULL);";

int store_events_init(store_t *self) {
  return sqlite3_exec(store_sqlite(self), schema, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static sqlite3_stmt *prep(store_t *self, const char *sql) {
  return store_prepare(self, sql);
}

/* Runs st (bound) to its end; gives it back. 0 or -1. */
static int run(store_t *self, sqlite3_stmt *st) {
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  store_release(self, st);
  return rc == SQLITE_DONE ? 0 : -1;
}

int store_event_put(store_t *self, int64_t seq, const char *session, const void *frame, size_t len) {
  sqlite3_stmt *st = prep(self, "INSERT OR REPLACE INTO events(seq, session, frame) VALUES(?, ?, ?)");
  if (st) {
    sqlite3_bind_int64(st, 1, seq);
    if (session)
      sqlite3_bind_text(st, 2, session, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 3, frame, len, SQLITE_STATIC);
  }
  int rc = run(self, st);
  if (rc == 0 && seq % STORE_EVENTS_PRUNE_EVERY == 0 && seq > STORE_EVENTS_KEEP) {
    sqlite3_stmt *del = prep(self, "DELETE FROM events WHERE seq <= ?");
    if (del)
      sqlite3_bind_int64(del, 1, seq - STORE_EVENTS_KEEP);
    rc = run(self, del);
  }
  return rc;
}

static int64_t one_int(store_t *self, const char *sql) {
  sqlite3_stmt *st = prep(self, sql);
  int64_t v = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  store_release(self, st);
  return v;
}

int64_t store_event_last(store_t *self) {
  return one_int(self, "SELECT coalesce(max(seq), 0) FROM events");
}

int64_t store_event_first(store_t *self) {
  return one_int(self, "SELECT coalesce(min(seq), 0) FROM events");
}

int store_events_after(store_t *self, int64_t after, int limit, store_event_fn fn, void *arg) {
  sqlite3_stmt *st = prep(self, "SELECT seq, session, frame FROM events WHERE seq > ? ORDER BY seq LIMIT ?");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, after);
  sqlite3_bind_int(st, 2, limit);
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const void *frame = sqlite3_column_blob(st, 2);
    int len = sqlite3_column_bytes(st, 2);
    const unsigned char *session = sqlite3_column_text(st, 1);
    n++;
    if (fn(arg, sqlite3_column_int64(st, 0), (const char *)session, frame, (size_t)len) != 0)
      break;
  }
  store_release(self, st);
  return n;
}
