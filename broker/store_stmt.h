/* store_stmt: prepared SQLite statements kept for reuse, by their SQL text.
 *
 * Preparing a statement (parsing and planning its SQL) cost the broker more
 * than running it: an ask parsed a dozen statements. A statement taken from
 * the cache is handed out once at a time; a second taker of the same text
 * while the first still holds it (a nested query) gets one of its own, which
 * giving back finalizes. */
#ifndef CADRE_BROKER_STORE_STMT_H
#define CADRE_BROKER_STORE_STMT_H

#include <sqlite3.h>

#define STORE_STMT_MAX 256 /* distinct texts kept; beyond, statements are prepared each time */

typedef struct store_stmt store_stmt_t;

/* A statement for sql on db: the cached one when it is free, else a new one.
 * NULL when sql does not prepare. Give it back with store_stmt_put. */
sqlite3_stmt *store_stmt_get(store_stmt_t **cache, sqlite3 *db, const char *sql);
/* Gives st back: a cached statement is reset (its bindings cleared) for the
 * next taker, any other finalized. Returns what sqlite3_reset or
 * sqlite3_finalize returned (SQLITE_OK, or the error of its last step);
 * accepts NULL. */
int store_stmt_put(store_stmt_t **cache, sqlite3_stmt *st);
/* Finalizes every cached statement (before the database closes). */
void store_stmt_clear(store_stmt_t **cache);
/* Texts in the cache (for tests). */
unsigned store_stmt_count(store_stmt_t *const *cache);

#endif
