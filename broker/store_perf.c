/* store_perf.c: the agents' performance records (see store.h): one row per
 * ended turn and per delivered summary, kept with the rest of the state so
 * the figures survive restarts; perf.c turns them into figures. And the
 * dashboard's search through every conversation. */
#include <sqlite3.h>
#include <string.h>

#include "store.h"
#include "util.h"

static sqlite3_stmt *prepare(store_t *self, const char *sql) {
  return store_prepare(self, sql);
}

/* Runs st to its end and gives it back: 0, or -1. */
static int run(store_t *self, sqlite3_stmt *st) {
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
  store_release(self, st);
  return rc;
}

/* Runs an insert into perf; every STORE_PERF_PRUNE_EVERY rows, the rows
 * older than the newest STORE_PERF_MAX go (nothing reads them any more). */
static int insert(store_t *self, sqlite3_stmt *st) {
  if (run(self, st) < 0)
    return -1;
  sqlite3_int64 last = sqlite3_last_insert_rowid(store_sqlite(self));
  if (last % STORE_PERF_PRUNE_EVERY == 0 && last > STORE_PERF_MAX) {
    sqlite3_stmt *del = prepare(self, "DELETE FROM perf WHERE rowid <= ?");
    if (del) {
      sqlite3_bind_int64(del, 1, last - STORE_PERF_MAX);
      run(self, del);
    }
  }
  return 0;
}

static const char *or_unknown(const char *s) {
  return s && s[0] ? s : "?";
}

int store_perf_turn(store_t *self, const store_perf_t *t) {
  sqlite3_stmt *st = prepare(self, "INSERT INTO perf(ts, kind, model, role, ok, retries, latency_ms, ttft_ms, tokens,"
                                   " cost, tool_calls, tool_errors, prompt_tokens)"
                                   " VALUES(?, 'turn', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, util_wall_ms());
  sqlite3_bind_text(st, 2, or_unknown(t->model), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, or_unknown(t->role), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 4, t->ok);
  sqlite3_bind_int(st, 5, t->retries);
  sqlite3_bind_int64(st, 6, t->latency_ms);
  if (t->ttft_ms >= 0)
    sqlite3_bind_int64(st, 7, t->ttft_ms);
  sqlite3_bind_int64(st, 8, t->tokens);
  sqlite3_bind_double(st, 9, t->cost);
  sqlite3_bind_int(st, 10, t->tool_calls);
  sqlite3_bind_int(st, 11, t->tool_errors);
  sqlite3_bind_int64(st, 12, t->prompt_tokens);
  return insert(self, st);
}

int store_perf_summary(store_t *self, const char *id, const char *status) {
  sqlite3_stmt *st = prepare(self, "INSERT INTO perf(ts, kind, model, role, verdict)"
                                   " SELECT ?, 'summary', profile, role, ? FROM sessions WHERE id = ?");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, util_wall_ms());
  sqlite3_bind_text(st, 2, or_unknown(status), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, id, -1, SQLITE_TRANSIENT);
  return insert(self, st);
}

static json_t *column(sqlite3_stmt *st, int i) {
  switch (sqlite3_column_type(st, i)) {
  case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, i));
  case SQLITE_FLOAT: return json_real(sqlite3_column_double(st, i));
  case SQLITE_TEXT: return json_string((const char *)sqlite3_column_text(st, i));
  default: return json_null();
  }
}

json_t *store_perf_rows(store_t *self, int64_t since_ms) {
  json_t *rows = json_array();
  sqlite3_stmt *st =
      prepare(self, "SELECT kind, model, role, ok, retries, latency_ms, ttft_ms, tokens, cost, tool_calls,"
                    " tool_errors, verdict, prompt_tokens, ts FROM (SELECT rowid AS r, * FROM perf WHERE ts >= ?"
                    " ORDER BY ts DESC LIMIT ?) ORDER BY r");
  if (!st)
    return rows;
  sqlite3_bind_int64(st, 1, since_ms);
  sqlite3_bind_int(st, 2, STORE_PERF_MAX);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *row = json_array();
    for (int i = 0; i < 14; i++)
      json_array_append_new(row, column(st, i));
    json_array_append_new(rows, row);
  }
  store_release(self, st);
  return rows;
}

json_t *store_search(store_t *self, const char *text, int limit) {
  json_t *hits = json_array();
  sqlite3_stmt *st = prepare(self, "SELECT session, seq, json_extract(body, '$.role'), json_extract(body, '$.content')"
                                   " FROM messages WHERE cleared = 0 AND instr(lower(body), lower(?)) > 0"
                                   " ORDER BY created_ms DESC, rowid DESC LIMIT ?");
  if (!st || !text || !text[0]) {
    store_release(self, st);
    return hits;
  }
  sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 2, limit);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *hit = json_pack("{s:o, s:o, s:o, s:o}", "session", column(st, 0), "seq", column(st, 1), "role",
                            column(st, 2), "content", column(st, 3));
    json_array_append_new(hits, hit);
  }
  store_release(self, st);
  return hits;
}
