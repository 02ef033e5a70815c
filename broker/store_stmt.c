/* store_stmt: prepared SQLite statements kept for reuse (see store_stmt.h). */
#include "store_stmt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct store_stmt {
  char *sql; /* the key: the statement's text */
  sqlite3_stmt *st;
  bool taken;
  UT_hash_handle hh;
};

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  return sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK ? st : NULL;
}

sqlite3_stmt *store_stmt_get(store_stmt_t **cache, sqlite3 *db, const char *sql) {
  store_stmt_t *e = NULL;
  HASH_FIND_STR(*cache, sql, e);
  if (e) {
    if (e->taken)
      return prepare(db, sql); /* held by an outer query: one of its own */
    e->taken = true;
    return e->st;
  }
  sqlite3_stmt *st = prepare(db, sql);
  if (!st || HASH_COUNT(*cache) >= STORE_STMT_MAX || !(e = calloc(1, sizeof *e)) || !(e->sql = strdup(sql))) {
    free(e);
    return st;
  }
  e->st = st;
  e->taken = true;
  HASH_ADD_KEYPTR(hh, *cache, e->sql, strlen(e->sql), e);
  return st;
}

int store_stmt_put(store_stmt_t **cache, sqlite3_stmt *st) {
  if (!st)
    return SQLITE_OK;
  store_stmt_t *e = NULL;
  const char *sql = sqlite3_sql(st);
  if (sql)
    HASH_FIND_STR(*cache, sql, e);
  if (!e || e->st != st)
    return sqlite3_finalize(st);
  e->taken = false;
  int rc = sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

void store_stmt_clear(store_stmt_t **cache) {
  store_stmt_t *e, *tmp;
  HASH_ITER(hh, *cache, e, tmp) {
    HASH_DEL(*cache, e);
    sqlite3_finalize(e->st);
    free(e->sql);
    free(e);
  }
}

unsigned store_stmt_count(store_stmt_t *const *cache) {
  return HASH_COUNT(*cache);
}
