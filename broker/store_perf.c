/* store_perf.c: the agents' performance records (see store.h): one row per
 * ended turn and per delivered summary, kept with the rest of the state so
 * the figures survive restarts; perf.c turns them into figures. */
#include <sqlite3.h>
#include <string.h>

#include "store.h"
#include "util.h"

int store_perf_turn(store_t *self, const store_perf_t *t) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(store_sqlite(self),
                         "INSERT INTO perf(ts, kind, model, role, ok, retries, latency_ms, ttft_ms, tokens, cost,"
                         " tool_calls, tool_errors, prompt_tokens) VALUES(?, 'turn', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         -1, &st, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(st, 1, util_wall_ms());
  sqlite3_bind_text(st, 2, t->model && t->model[0] ? t->model : "?", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, t->role && t->role[0] ? t->role : "?", -1, SQLITE_TRANSIENT);
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
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
  sqlite3_finalize(st);
  return rc;
}

int store_perf_summary(store_t *self, const char *id, const char *status) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(store_sqlite(self),
                         "INSERT INTO perf(ts, kind, model, role, verdict)"
                         " SELECT ?, 'summary', profile, role, ? FROM sessions WHERE id = ?",
                         -1, &st, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(st, 1, util_wall_ms());
  sqlite3_bind_text(st, 2, status && status[0] ? status : "?", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, id, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
  sqlite3_finalize(st);
  return rc;
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
  sqlite3_stmt *st = NULL;
  json_t *rows = json_array();
  if (sqlite3_prepare_v2(store_sqlite(self),
                         "SELECT kind, model, role, ok, retries, latency_ms, ttft_ms, tokens, cost, tool_calls,"
                         " tool_errors, verdict, prompt_tokens, ts FROM (SELECT rowid AS r, * FROM perf WHERE ts >= ?"
                         " ORDER BY ts DESC LIMIT ?) ORDER BY r",
                         -1, &st, NULL) != SQLITE_OK)
    return rows;
  sqlite3_bind_int64(st, 1, since_ms);
  sqlite3_bind_int(st, 2, STORE_PERF_MAX);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *row = json_array();
    for (int i = 0; i < 14; i++)
      json_array_append_new(row, column(st, i));
    json_array_append_new(rows, row);
  }
  sqlite3_finalize(st);
  return rows;
}
