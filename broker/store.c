#include "store.h"
#include "jx.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <errno.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_stmt.h"
#include "util.h"

struct store {
  sqlite3 *db;
  store_stmt_t *stmts; /* prepared statements, kept (store_stmt.c) */
  json_t *rows;        /* session id -> [rev, listing row]: a listing builds only the rows that changed */
};

static const char *schema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA foreign_keys=ON;"
    "PRAGMA secure_delete=ON;" /* a deleted memory (or message) leaves no readable trace in the file */
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS sessions("
    "  id TEXT PRIMARY KEY, role TEXT NOT NULL, profile TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'idle', parent TEXT, created_ms INTEGER NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cost REAL NOT NULL DEFAULT 0, task TEXT, depth INTEGER NOT NULL DEFAULT 0,"
    "  summary TEXT, summary_asked INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,"
    "  call_id TEXT, turns INTEGER NOT NULL DEFAULT 0, solo INTEGER NOT NULL DEFAULT 0,"
    "  wf_plan INTEGER, wf_step INTEGER, ctx_count INTEGER NOT NULL DEFAULT 0,"
    "  ctx_cleared INTEGER NOT NULL DEFAULT 0, n_messages INTEGER NOT NULL DEFAULT 0, rev INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS proposals(id INTEGER PRIMARY KEY, profile TEXT NOT NULL, task TEXT NOT NULL,"
    "  keyword TEXT, created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS messages("
    "  session TEXT NOT NULL REFERENCES sessions(id), seq INTEGER NOT NULL, turn INTEGER,"
    "  body TEXT NOT NULL, thinking TEXT, created_ms INTEGER NOT NULL, cleared INTEGER NOT NULL DEFAULT 0,"
    "  plain INTEGER, PRIMARY KEY(session, seq));"
    /* A sub-agent's seed context: segments of other sessions' messages, by
     * reference (messages are never rewritten, only set aside). */
    "CREATE TABLE IF NOT EXISTS contexts(session TEXT NOT NULL, pos INTEGER NOT NULL, src TEXT NOT NULL,"
    "  from_seq INTEGER NOT NULL, upto_seq INTEGER NOT NULL, PRIMARY KEY(session, pos));"
    "CREATE TABLE IF NOT EXISTS turns("
    "  id INTEGER PRIMARY KEY, session TEXT NOT NULL REFERENCES sessions(id),"
    "  status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, node TEXT,"
    "  created_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER,"
    "  finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost REAL,"
    "  error_code TEXT, error_detail TEXT);"
    "CREATE TABLE IF NOT EXISTS workflows(id INTEGER PRIMARY KEY, doc TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS checkpoints(id INTEGER PRIMARY KEY, workflow INTEGER NOT NULL, step INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT, existed INTEGER,"
    "  content TEXT, sha256 TEXT, created_ms INTEGER NOT NULL, mode INTEGER);"
    "CREATE TABLE IF NOT EXISTS templates(name TEXT PRIMARY KEY, doc TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '1');";

/* Columns added since schema 1, for state directories made before them. */
static const char *migrations[] = {
    "ALTER TABLE sessions ADD COLUMN ctx_count INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN ctx_cleared INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN n_messages INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE messages ADD COLUMN plain INTEGER",
    "ALTER TABLE sessions ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
    /* A workflow's top-level members written since its document (store_workflow_head). */
    "ALTER TABLE workflows ADD COLUMN head TEXT",
};

/* Indexes and derived values, for new and old databases alike. */
static const char *upgrade =
    /* Every change of a session row moves its rev (listings rebuild only such rows). */
    "CREATE TRIGGER IF NOT EXISTS sessions_rev AFTER UPDATE ON sessions WHEN NEW.rev = OLD.rev"
    "  BEGIN UPDATE sessions SET rev = OLD.rev + 1 WHERE rowid = NEW.rowid; END;"
    /* Spending limits: scope is a session (with its whole tree of sub-agents) or "workflow:N". */
    "CREATE TABLE IF NOT EXISTS budgets(scope TEXT PRIMARY KEY, tokens INTEGER NOT NULL DEFAULT 0,"
    "  cost REAL NOT NULL DEFAULT 0, set_ms INTEGER NOT NULL);"
    /* Project memory: what sub-agents and workflows found, per workspace, searchable (FTS5). */
    "CREATE VIRTUAL TABLE IF NOT EXISTS memories USING fts5(text, source UNINDEXED, workspace UNINDEXED,"
    "  outcome UNINDEXED, created_ms UNINDEXED, pinned UNINDEXED);"
    "CREATE INDEX IF NOT EXISTS sessions_parent ON sessions(parent);"
    "CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status);"
    /* Admission reads the oldest few queued sub-agents: in index order, no sort of them all. */
    "CREATE INDEX IF NOT EXISTS sessions_queue ON sessions(status, created_ms);"
    "CREATE INDEX IF NOT EXISTS turns_session ON turns(session);"
    "CREATE INDEX IF NOT EXISTS turns_status ON turns(status);"
    "UPDATE messages SET plain = (json_extract(body, '$.role') IN ('user', 'assistant')"
    "  AND json_type(body, '$.content') = 'text' AND json_extract(body, '$.content') != ''"
    "  AND json_type(body, '$.tool_calls') IS NULL) WHERE plain IS NULL;"
    "UPDATE sessions SET n_messages = (SELECT count(*) FROM messages m WHERE m.session = sessions.id"
    "  AND m.cleared = 0) WHERE (SELECT value FROM meta WHERE key = 'counts') IS NULL;"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('counts', '1');"
    /* One row per ended turn or delivered summary: the agents' performance (store_perf.c). */
    "CREATE TABLE IF NOT EXISTS perf(ts INTEGER NOT NULL, kind TEXT NOT NULL, model TEXT NOT NULL,"
    "  role TEXT NOT NULL, ok INTEGER, retries INTEGER, latency_ms INTEGER, ttft_ms INTEGER, tokens INTEGER,"
    "  cost REAL, tool_calls INTEGER, tool_errors INTEGER, verdict TEXT, prompt_tokens INTEGER);"
    "CREATE INDEX IF NOT EXISTS perf_ts ON perf(ts);"
    /* The pinned memories by workspace: read on every turn, so an index rather than a scan of the FTS5
     * table's content (its UNINDEXED columns have none). Filled from the memories once. */
    "CREATE TABLE IF NOT EXISTS memory_pinned(id INTEGER PRIMARY KEY, workspace TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS memory_pinned_ws ON memory_pinned(workspace);"
    "INSERT OR IGNORE INTO memory_pinned(id, workspace) SELECT rowid, workspace FROM memories"
    "  WHERE pinned = 1 AND (SELECT value FROM meta WHERE key = 'memory_pinned') IS NULL;"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('memory_pinned', '1');"
    /* A workflow step's state written since its workflow's document (store_workflow_step_put). */
    "CREATE TABLE IF NOT EXISTS workflow_steps(workflow INTEGER NOT NULL, step INTEGER NOT NULL,"
    "  state TEXT NOT NULL, PRIMARY KEY(workflow, step)) WITHOUT ROWID;";

static int migrate(sqlite3 *db, char **emsg) {
  for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++)
    sqlite3_exec(db, migrations[i], NULL, NULL, NULL); /* fails when the column exists */
  return sqlite3_exec(db, upgrade, NULL, NULL, emsg);
}

store_t *store_open(const char *dir, char *err, size_t errlen) {
  char *path = strcmp(dir, STORE_MEMORY) == 0 ? strdup(STORE_MEMORY) : util_path_join(dir, "state.db");
  store_t *self = calloc(1, sizeof *self);
  if (!path || !self) {
    snprintf(err, errlen, "out of memory");
    free(path);
    free(self);
    return NULL;
  }
  int rc = sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  char *emsg = NULL;
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(self->db, 5000);
    rc = sqlite3_exec(self->db, schema, NULL, NULL, &emsg);
  }
  if (rc == SQLITE_OK)
    rc = migrate(self->db, &emsg);
  if (rc == SQLITE_OK && store_events_init(self) < 0)
    rc = SQLITE_ERROR;
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "%s: %s", path, emsg ? emsg : sqlite3_errmsg(self->db));
    sqlite3_free(emsg);
    sqlite3_close(self->db);
    free(self);
    free(path);
    return NULL;
  }
  free(path);
  self->rows = json_object();
  return self;
}

struct sqlite3 *store_sqlite(store_t *self) {
  return self->db;
}

void store_close(store_t **self_p) {
  if (!self_p || !*self_p)
    return;
  store_stmt_clear(&(*self_p)->stmts);
  sqlite3_close((*self_p)->db);
  json_decref((*self_p)->rows);
  free(*self_p);
  *self_p = NULL;
}

const char *store_errmsg(store_t *self) {
  return sqlite3_errmsg(self->db);
}

/* Prepares sql; returns NULL on error (logged by caller via store_errmsg). */
static sqlite3_stmt *prep(store_t *self, const char *sql) {
  return store_prepare(self, sql);
}

sqlite3_stmt *store_prepare(store_t *self, const char *sql) {
  return store_stmt_get(&self->stmts, self->db, sql);
}

int store_release(store_t *self, sqlite3_stmt *st) {
  return store_stmt_put(&self->stmts, st);
}

/* prep with parameters bound in order from the arguments, one per letter of
 * types: 't' text (const char *), 'i' int64_t, 'w' the wall clock now (no
 * argument). NULL when the statement does not prepare. */
static sqlite3_stmt *prep_bind(store_t *self, const char *sql, const char *types, ...) {
  sqlite3_stmt *st = prep(self, sql);
  va_list ap;
  va_start(ap, types);
  for (int i = 0; st && types[i]; i++) {
    if (types[i] == 't')
      sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    else
      sqlite3_bind_int64(st, i + 1, types[i] == 'i' ? va_arg(ap, int64_t) : util_wall_ms());
  }
  va_end(ap);
  return st;
}

/* The first column of the first row of st as an int (dflt with no row);
 * gives st back, accepts NULL. */
static int64_t one_int(store_t *self, sqlite3_stmt *st, int64_t dflt) {
  int64_t v = dflt;
  if (st && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  store_release(self, st);
  return v;
}

/* Steps a statement that returns no rows and gives it back. */
static int exec_done(store_t *self, sqlite3_stmt *st) {
  if (!st)
    return -1;
  int rc = sqlite3_step(st);
  store_release(self, st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int exec_sql(store_t *self, const char *sql) {
  return sqlite3_exec(self->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static const char *col_text(sqlite3_stmt *st, int i);

/* The first column of the first row of st as text into out (len bytes), and
 * gives st back. 0, or -1 with no row, a NULL or a text that does not fit. */
static int one_text(store_t *self, sqlite3_stmt *st, char *out, size_t len) {
  if (!st)
    return -1;
  const char *v = sqlite3_step(st) == SQLITE_ROW ? col_text(st, 0) : NULL;
  int rc = v && strlen(v) < len ? 0 : -1;
  if (rc == 0)
    memcpy(out, v, strlen(v) + 1);
  store_release(self, st);
  return rc;
}

int store_meta_get(store_t *self, const char *key, char *value, size_t len) {
  return one_text(self, prep_bind(self, "SELECT value FROM meta WHERE key = ?", "t", key), value, len);
}

int store_meta_set(store_t *self, const char *key, const char *value) {
  return exec_done(self, prep_bind(self, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", "tt", key, value));
}

int store_meta_delete(store_t *self, const char *key) {
  return exec_done(self, prep_bind(self, "DELETE FROM meta WHERE key = ?", "t", key));
}

int store_session_ensure(store_t *self, const char *id, const char *role, const char *profile) {
  return exec_done(self,
                   prep_bind(self, "INSERT OR IGNORE INTO sessions(id, role, profile, created_ms) VALUES(?,?,?,?)",
                             "tttw", id, role, profile));
}

bool store_session_exists(store_t *self, const char *id) {
  sqlite3_stmt *st = prep(self, "SELECT 1 FROM sessions WHERE id = ?");
  if (!st)
    return false;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
  bool found = sqlite3_step(st) == SQLITE_ROW;
  store_release(self, st);
  return found;
}

static const char *col_text(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? (const char *)t : NULL;
}

static const char *status_names[] = {
    [STORE_SESSION_IDLE] = "idle", [STORE_SESSION_QUEUED] = "queued", [STORE_SESSION_RUNNING] = "running",
    [STORE_SESSION_DONE] = "done", [STORE_SESSION_FAILED] = "failed", [STORE_SESSION_STOPPED] = "stopped",
};

const char *store_status_name(store_status_t status) {
  switch (status) {
  case STORE_SESSION_IDLE:
  case STORE_SESSION_QUEUED:
  case STORE_SESSION_RUNNING:
  case STORE_SESSION_DONE:
  case STORE_SESSION_FAILED:
  case STORE_SESSION_STOPPED: return status_names[status];
  }
  return "idle";
}

int store_status_parse(const char *name, store_status_t *out) {
  for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++) {
    if (name && strcmp(name, status_names[i]) == 0) {
      *out = (store_status_t)i;
      return 0;
    }
  }
  return -1;
}

/* The columns a session row is read from, in the order read_row expects. */
#define ROW_COLUMNS                                                                                          \
  "s.id, s.role, s.profile, s.status, s.parent, s.created_ms, s.prompt_tokens, s.completion_tokens, s.cost," \
  " s.n_messages + CASE WHEN s.ctx_cleared THEN 0 ELSE s.ctx_count END, s.depth, s.turns, s.summary_asked,"  \
  " s.delivered, s.call_id, s.solo, s.wf_plan, s.wf_step, s.summary, s.task"

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int i) {
  const char *t = col_text(st, i);
  snprintf(dst, n, "%s", t ? t : "");
}

static void read_row(sqlite3_stmt *st, store_session_t *r) {
  memset(r, 0, sizeof *r);
  copy_col(r->id, sizeof r->id, st, 0);
  copy_col(r->role, sizeof r->role, st, 1);
  copy_col(r->profile, sizeof r->profile, st, 2);
  if (store_status_parse(col_text(st, 3), &r->status) < 0)
    r->status = STORE_SESSION_IDLE;
  copy_col(r->parent, sizeof r->parent, st, 4);
  r->created_ms = sqlite3_column_int64(st, 5);
  r->usage.prompt_tokens = sqlite3_column_int64(st, 6);
  r->usage.completion_tokens = sqlite3_column_int64(st, 7);
  r->usage.cost = sqlite3_column_double(st, 8);
  r->messages = sqlite3_column_int64(st, 9);
  r->depth = sqlite3_column_int(st, 10);
  r->turns = sqlite3_column_int64(st, 11);
  r->summary_asked = sqlite3_column_int(st, 12) != 0;
  r->delivered = sqlite3_column_int(st, 13) != 0;
  copy_col(r->call_id, sizeof r->call_id, st, 14);
  r->solo = sqlite3_column_int(st, 15) != 0;
  r->in_workflow = sqlite3_column_type(st, 16) != SQLITE_NULL;
  r->wf_plan = sqlite3_column_int64(st, 16);
  r->wf_step = sqlite3_column_int64(st, 17);
}

int store_session_row(store_t *self, const char *id, store_session_t *out) {
  sqlite3_stmt *st = prep(self, "SELECT " ROW_COLUMNS " FROM sessions s WHERE s.id = ?");
  int rc = -1;
  if (!st)
    return -1;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) == SQLITE_ROW) {
    read_row(st, out);
    rc = 0;
  }
  store_release(self, st);
  return rc;
}

/* The listing form of the row under st (summary and task from their columns). */
static json_t *row_json(sqlite3_stmt *st, const store_session_t *r) {
  json_t *o = json_object(), *u = json_object();
  if (!o || !u) {
    json_decref(o);
    json_decref(u);
    return NULL;
  }
  json_object_set_new(o, "id", json_string(r->id));
  json_object_set_new(o, "role", json_string(r->role));
  json_object_set_new(o, "profile", json_string(r->profile));
  json_object_set_new(o, "status", json_string(store_status_name(r->status)));
  json_object_set_new(o, "parent", r->parent[0] ? json_string(r->parent) : json_null());
  json_object_set_new(o, "created_ms", json_integer(r->created_ms));
  json_object_set_new(o, "messages", json_integer(r->messages));
  json_object_set_new(u, "prompt_tokens", json_integer(r->usage.prompt_tokens));
  json_object_set_new(u, "completion_tokens", json_integer(r->usage.completion_tokens));
  json_object_set_new(u, "cost", json_real(r->usage.cost));
  json_object_set_new(o, "usage", u);
  json_object_set_new(o, "task", col_text(st, 19) ? json_string(col_text(st, 19)) : json_null());
  json_object_set_new(o, "depth", json_integer(r->depth));
  json_t *summary = col_text(st, 18) ? json_loads(col_text(st, 18), 0, NULL) : NULL;
  json_object_set_new(o, "summary", summary ? summary : json_null());
  json_object_set_new(o, "turns", json_integer(r->turns));
  return o;
}

/* The cache entry of the session under st: [rev, listing row, and one slot
 * per derived form (null until asked)], rebuilt when its rev moved. Borrowed. */
static json_t *cached_entry(store_t *self, sqlite3_stmt *st) {
  const char *id = col_text(st, 0);
  int64_t rev = sqlite3_column_int64(st, 20);
  json_t *entry = id ? json_object_get(self->rows, id) : NULL;
  if (entry && json_integer_value(json_array_get(entry, 0)) == rev)
    return entry;
  store_session_t r;
  read_row(st, &r);
  json_t *o = row_json(st, &r);
  if (!o || !id) {
    json_decref(o);
    return NULL;
  }
  entry = json_pack("[I, o, n, n]", (json_int_t)rev, o);
  json_object_set_new(self->rows, id, entry);
  return entry;
}

/* Every session's listing row (slot 1), or a form derived from it (slots 2
 * and up, made by derive once per change of the row). */
static json_t *list_rows(store_t *self, size_t slot, store_derive_fn derive, void *ctx) {
  json_t *out = json_array();
  sqlite3_stmt *st = prep(self, "SELECT " ROW_COLUMNS ", s.rev FROM sessions s ORDER BY s.created_ms, s.rowid");
  if (!st)
    return out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *entry = cached_entry(self, st);
    json_t *row = json_array_get(entry, slot);
    if (entry && slot > 1 && json_is_null(row)) {
      row = derive(json_array_get(entry, 1), ctx);
      json_array_set_new(entry, slot, row);
    }
    if (row)
      json_array_append(out, row);
  }
  store_release(self, st);
  return out;
}

json_t *store_sessions(store_t *self) {
  return list_rows(self, 1, NULL, NULL);
}

json_t *store_sessions_derived(store_t *self, int form, store_derive_fn derive, void *ctx) {
  return list_rows(self, 2 + (size_t)(form & 1), derive, ctx);
}

int64_t store_session_count(store_t *self) {
  return one_int(self, prep(self, "SELECT count(*) FROM sessions"), 0);
}

int64_t store_message_rows(store_t *self) {
  return one_int(self, prep(self, "SELECT count(*) FROM messages"), 0);
}

json_t *store_session(store_t *self, const char *id) {
  sqlite3_stmt *st = prep(self, "SELECT " ROW_COLUMNS " FROM sessions s WHERE s.id = ?");
  json_t *out = NULL;
  if (!st)
    return NULL;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
  store_session_t r;
  if (sqlite3_step(st) == SQLITE_ROW) {
    read_row(st, &r);
    out = row_json(st, &r);
  }
  store_release(self, st);
  if (!out)
    return NULL;
  /* Fields kept out of listings. */
  json_object_set_new(out, "summary_asked", json_boolean(r.summary_asked));
  json_object_set_new(out, "delivered", json_boolean(r.delivered));
  if (r.call_id[0])
    json_object_set_new(out, "call_id", json_string(r.call_id));
  if (r.in_workflow)
    json_object_set_new(out, "workflow",
                        json_pack("{s:I, s:I}", "id", (json_int_t)r.wf_plan, "step", (json_int_t)r.wf_step));
  return out;
}

/* A failed or cancelled turn's messages (its user message among them) stay in
 * the history shown, marked, and are left out of what later turns send: the
 * model never sees an unanswered question next to the new one. */
#define LEFT_OUT_TURNS "(SELECT id FROM turns WHERE status IN ('failed', 'cancelled'))"
#define NOT_LEFT_OUT "(turn IS NULL OR turn NOT IN " LEFT_OUT_TURNS ")"

/* A message a sub-agent's context may carry: user or assistant text, no tool traffic. */
static bool is_plain(const json_t *m) {
  const char *role = jx_str(m, "role", NULL);
  const char *content = jx_str(m, "content", NULL);
  return role && content && content[0] && !json_object_get(m, "tool_calls") &&
         (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0);
}

/* Appends the plain messages of one context segment, as {role, content}. */
static void read_segment(store_t *self, json_t *out, const char *src, int64_t from, int64_t upto, bool with_meta) {
  sqlite3_stmt *st = prep(self, "SELECT body, created_ms FROM messages WHERE session = ? AND seq > ? AND seq <= ?"
                                " AND plain = 1 AND " NOT_LEFT_OUT " ORDER BY seq");
  if (!st)
    return;
  sqlite3_bind_text(st, 1, src, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, from);
  sqlite3_bind_int64(st, 3, upto);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *m = json_loads(col_text(st, 0), 0, NULL);
    if (is_plain(m)) {
      json_t *c = json_pack("{s:O, s:O}", "role", json_object_get(m, "role"), "content", json_object_get(m, "content"));
      if (c && with_meta) { /* seq 0: inherited context, not one of this session's own messages */
        json_object_set_new(c, "seq", json_integer(0));
        json_object_set_new(c, "context_of", json_string(src));
        json_object_set_new(c, "created_ms", json_integer(sqlite3_column_int64(st, 1)));
      }
      if (c)
        json_array_append_new(out, c);
    }
    json_decref(m);
  }
  store_release(self, st);
}

/* Appends the session's inherited context (empty unless it is a sub-agent's, or once cleared). */
static void read_context(store_t *self, json_t *out, const char *session, bool with_meta) {
  sqlite3_stmt *st =
      prep(self, "SELECT c.src, c.from_seq, c.upto_seq FROM contexts c JOIN sessions s ON s.id = c.session"
                 " WHERE c.session = ? AND s.ctx_cleared = 0 ORDER BY c.pos");
  if (!st)
    return;
  sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
  while (sqlite3_step(st) == SQLITE_ROW)
    read_segment(self, out, col_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2), with_meta);
  store_release(self, st);
}

/* The session's latest summary of its older messages: its body (caller owns)
 * and the last seq it covers; NULL when it has none. */
static json_t *latest_summary(store_t *self, const char *session, int64_t *upto) {
  sqlite3_stmt *st = prep(self, "SELECT body, json_extract(body, '$.context_summary') FROM messages WHERE session = ?"
                                " AND cleared = 0 AND json_type(body, '$.context_summary') = 'integer'"
                                " ORDER BY seq DESC LIMIT 1");
  json_t *m = NULL;
  *upto = 0;
  if (!st)
    return NULL;
  sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) == SQLITE_ROW) {
    m = json_loads(col_text(st, 0), 0, NULL);
    *upto = sqlite3_column_int64(st, 1);
  }
  store_release(self, st);
  return m;
}

json_t *store_history_model(store_t *self, const char *session, json_t *seqs) {
  json_t *out = json_array();
  read_context(self, out, session, false);
  for (size_t i = json_array_size(seqs); i < json_array_size(out); i++)
    json_array_append_new(seqs, json_integer(0));
  int64_t upto = 0;
  json_t *summary = latest_summary(self, session, &upto);
  if (summary) {
    json_array_append_new(out, summary);
    json_array_append_new(seqs, json_integer(0));
  }
  sqlite3_stmt *st =
      prep(self, "SELECT seq, body FROM messages WHERE session = ? AND cleared = 0 AND seq > ? AND " NOT_LEFT_OUT
                 " AND json_type(body, '$.context_summary') IS NULL ORDER BY seq");
  if (!st)
    return out;
  sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, upto);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *msg = json_loads(col_text(st, 1), 0, NULL);
    if (!json_is_object(msg)) {
      json_decref(msg);
      continue;
    }
    json_array_append_new(out, msg);
    json_array_append_new(seqs, json_integer(sqlite3_column_int64(st, 0)));
  }
  store_release(self, st);
  return out;
}

json_t *store_history(store_t *self, const char *session, bool with_meta) {
  if (!with_meta) {
    json_t *seqs = json_array(), *out = store_history_model(self, session, seqs);
    json_decref(seqs);
    return out;
  }
  json_t *out = json_array();
  read_context(self, out, session, with_meta);
  sqlite3_stmt *st = prep(self, "SELECT seq, turn, body, thinking, created_ms, NOT " NOT_LEFT_OUT
                                " FROM messages WHERE session = ? AND cleared = 0 ORDER BY seq");
  if (!st)
    return out;
  sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *msg = json_loads(col_text(st, 2), 0, NULL);
    if (!json_is_object(msg)) {
      json_decref(msg);
      continue;
    }
    if (with_meta) {
      json_object_set_new(msg, "seq", json_integer(sqlite3_column_int64(st, 0)));
      if (sqlite3_column_type(st, 1) != SQLITE_NULL)
        json_object_set_new(msg, "turn", json_integer(sqlite3_column_int64(st, 1)));
      if (col_text(st, 3) && col_text(st, 3)[0])
        json_object_set_new(msg, "thinking", json_string(col_text(st, 3)));
      json_object_set_new(msg, "created_ms", json_integer(sqlite3_column_int64(st, 4)));
      if (sqlite3_column_int(st, 5))
        json_object_set_new(msg, "left_out", json_true()); /* its turn failed or was cancelled */
    }
    json_array_append_new(out, msg);
  }
  store_release(self, st);
  return out;
}

static int set_column(store_t *self, const char *id, const char *sql, const char *text, int64_t num, bool is_text);

/* The integer the query gives for (?1 text, ?2 a, ?3 b), -1 when none. Parameters the SQL does not name are ignored. */
static int64_t query_int(store_t *self, const char *sql, const char *text, int64_t a, int64_t b) {
  sqlite3_stmt *st = prep(self, sql);
  int64_t v = -1;
  if (!st)
    return -1;
  int n = sqlite3_bind_parameter_count(st);
  sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
  if (n >= 2)
    sqlite3_bind_int64(st, 2, a);
  if (n >= 3)
    sqlite3_bind_int64(st, 3, b);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  store_release(self, st);
  return v;
}

typedef struct {
  char src[STORE_ID_MAX];
  int64_t from, upto;
} segment_t;

#define SEGMENTS_MAX 64

/* The parent's visible conversation as segments: its own inherited context
 * (unless cleared), then its own messages not set aside. */
static int parent_segments(store_t *self, const char *parent, segment_t *seg, int *n) {
  sqlite3_stmt *st =
      prep_bind(self,
                "SELECT c.src, c.from_seq, c.upto_seq FROM contexts c JOIN sessions s ON s.id = c.session"
                " WHERE c.session = ? AND s.ctx_cleared = 0 ORDER BY c.pos",
                "t", parent);
  if (!st)
    return -1;
  *n = 0;
  while (sqlite3_step(st) == SQLITE_ROW && *n < SEGMENTS_MAX - 1) {
    copy_col(seg[*n].src, sizeof seg[*n].src, st, 0);
    seg[*n].from = sqlite3_column_int64(st, 1);
    seg[*n].upto = sqlite3_column_int64(st, 2);
    (*n)++;
  }
  store_release(self, st);
  snprintf(seg[*n].src, sizeof seg[*n].src, "%s", parent);
  seg[*n].from =
      query_int(self, "SELECT coalesce(max(seq), 0) FROM messages WHERE session = ?1 AND cleared = 1", parent, 0, 0);
  seg[*n].upto = query_int(self, "SELECT coalesce(max(seq), 0) FROM messages WHERE session = ?1", parent, 0, 0);
  (*n)++;
  return seg[*n - 1].from < 0 || seg[*n - 1].upto < 0 ? -1 : 0;
}

static const char *count_plain =
    "SELECT count(*) FROM messages WHERE session = ? AND seq > ? AND seq <= ? AND plain = 1";

/* Keeps only the last keep plain messages of the segments: moves the first
 * kept segment's start and returns its index. Writes the count kept. */
static int keep_last(store_t *self, segment_t *seg, int n, int keep, int64_t *kept) {
  int64_t total = 0;
  for (int i = n - 1; i >= 0; i--) {
    int64_t c = query_int(self, count_plain, seg[i].src, seg[i].from, seg[i].upto);
    if (keep >= 0 && total + c >= keep) {
      int64_t need = keep - total; /* the last `need` plain messages of this segment */
      sqlite3_stmt *st = prep(self, "SELECT seq FROM messages WHERE session = ? AND seq > ? AND seq <= ? AND plain = 1"
                                    " ORDER BY seq DESC LIMIT 1 OFFSET ?");
      if (need > 0 && st) {
        sqlite3_bind_text(st, 1, seg[i].src, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, seg[i].from);
        sqlite3_bind_int64(st, 3, seg[i].upto);
        sqlite3_bind_int64(st, 4, need - 1);
        if (sqlite3_step(st) == SQLITE_ROW)
          seg[i].from = sqlite3_column_int64(st, 0) - 1;
      }
      store_release(self, st);
      *kept = keep;
      return need > 0 ? i : i + 1;
    }
    total += c;
  }
  *kept = total;
  return 0;
}

int64_t store_context_link(store_t *self, const char *child, const char *parent, int keep) {
  if (keep == 0)
    return 0;
  segment_t seg[SEGMENTS_MAX];
  int n = 0;
  int64_t kept = 0;
  if (parent_segments(self, parent, seg, &n) < 0 || exec_sql(self, "SAVEPOINT link") < 0)
    return -1;
  int first = keep_last(self, seg, n, keep, &kept);
  int rc = 0;
  for (int i = first; i < n && rc == 0; i++) {
    sqlite3_stmt *st = prep(self, "INSERT INTO contexts(session, pos, src, from_seq, upto_seq) VALUES(?, ?, ?, ?, ?)");
    if (!st) {
      rc = -1;
      break;
    }
    sqlite3_bind_text(st, 1, child, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, i - first);
    sqlite3_bind_text(st, 3, seg[i].src, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, seg[i].from);
    sqlite3_bind_int64(st, 5, seg[i].upto);
    rc = exec_done(self, st);
  }
  if (rc == 0)
    rc = set_column(self, child, "UPDATE sessions SET ctx_count = ? WHERE id = ?", NULL, kept, false);
  exec_sql(self, rc == 0 ? "RELEASE link" : "ROLLBACK TO link");
  if (rc < 0)
    exec_sql(self, "RELEASE link");
  return rc == 0 ? kept : -1;
}

int64_t store_append(store_t *self, const char *session, int64_t turn, const json_t *message, const char *thinking) {
  char *body = json_dumps(message, JSON_COMPACT);
  sqlite3_stmt *st =
      prep(self, "INSERT INTO messages(session, seq, turn, body, thinking, created_ms, plain)"
                 " VALUES(?1, (SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE session = ?1), ?2, ?3, ?4, ?5, ?6)"
                 " RETURNING seq");
  int64_t seq = -1;
  if (body && st) {
    sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
    if (turn > 0)
      sqlite3_bind_int64(st, 2, turn);
    sqlite3_bind_text(st, 3, body, -1, SQLITE_TRANSIENT);
    if (thinking && thinking[0])
      sqlite3_bind_text(st, 4, thinking, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, util_wall_ms());
    sqlite3_bind_int(st, 6, is_plain(message));
    if (sqlite3_step(st) == SQLITE_ROW)
      seq = sqlite3_column_int64(st, 0);
  }
  store_release(self, st);
  free(body);
  if (seq > 0 &&
      set_column(self, session, "UPDATE sessions SET n_messages = n_messages + ? WHERE id = ?", NULL, 1, false) < 0)
    seq = -1;
  return seq;
}

int64_t store_turn_new(store_t *self, const char *session) {
  sqlite3_stmt *st = prep(self, "INSERT INTO turns(session, status, created_ms) VALUES(?, 'queued', ?)");
  if (!st)
    return -1;
  sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, util_wall_ms());
  if (exec_done(self, st) < 0)
    return -1;
  return sqlite3_last_insert_rowid(self->db);
}

int64_t store_turn_ask(store_t *self, const char *session, const char *role, const char *profile, const json_t *message,
                       char *err, size_t errlen) {
  int64_t turn = exec_sql(self, "BEGIN IMMEDIATE") == 0 && store_session_ensure(self, session, role, profile) == 0
                     ? store_turn_new(self, session)
                     : -1;
  if (turn > 0 && store_append(self, session, turn, message, NULL) < 0)
    turn = -1;
  if (turn > 0 && exec_sql(self, "COMMIT") == 0)
    return turn;
  snprintf(err, errlen, "%s", sqlite3_errmsg(self->db));
  if (!sqlite3_get_autocommit(self->db)) /* SQLite may have rolled back already (a full disk) */
    exec_sql(self, "ROLLBACK");
  return -1;
}

int store_turn_running(store_t *self, int64_t turn, int attempt, const char *node) {
  sqlite3_stmt *st =
      prep(self, "UPDATE turns SET status = 'running', attempt = ?, node = ?, started_ms = ? WHERE id = ?");
  if (!st)
    return -1;
  sqlite3_bind_int(st, 1, attempt);
  sqlite3_bind_text(st, 2, node, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 3, util_wall_ms());
  sqlite3_bind_int64(st, 4, turn);
  return exec_done(self, st);
}

static int turn_finish_row(store_t *self, int64_t turn, const char *finish_reason, const store_usage_t *u) {
  sqlite3_stmt *st = prep(self, "UPDATE turns SET status = 'done', finished_ms = ?, finish_reason = ?,"
                                " prompt_tokens = ?, completion_tokens = ?, cost = ? WHERE id = ?");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, util_wall_ms());
  if (finish_reason)
    sqlite3_bind_text(st, 2, finish_reason, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 3, u->prompt_tokens);
  sqlite3_bind_int64(st, 4, u->completion_tokens);
  sqlite3_bind_double(st, 5, u->cost);
  sqlite3_bind_int64(st, 6, turn);
  return exec_done(self, st);
}

static int session_add_usage(store_t *self, const char *session, const store_usage_t *u) {
  sqlite3_stmt *st = prep(self, "UPDATE sessions SET prompt_tokens = prompt_tokens + ?, completion_tokens ="
                                " completion_tokens + ?, cost = cost + ? WHERE id = ?");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, u->prompt_tokens);
  sqlite3_bind_int64(st, 2, u->completion_tokens);
  sqlite3_bind_double(st, 3, u->cost);
  sqlite3_bind_text(st, 4, session, -1, SQLITE_TRANSIENT);
  return exec_done(self, st);
}

int store_session_usage(store_t *self, const char *session, const store_usage_t *usage) {
  return session_add_usage(self, session, usage);
}

/* Appends the turn's messages (thinking goes with the last). */
static int append_all(store_t *self, const char *session, int64_t turn, const json_t *messages, const char *thinking) {
  size_t n = json_array_size(messages);
  for (size_t i = 0; i < n; i++)
    if (store_append(self, session, turn, json_array_get(messages, i), i + 1 == n ? thinking : NULL) < 0)
      return -1;
  return 0;
}

int store_turn_done(store_t *self, int64_t turn, const char *session, const json_t *messages, const char *thinking,
                    const char *finish_reason, const store_usage_t *usage) {
  if (exec_sql(self, "BEGIN IMMEDIATE") < 0)
    return -1;
  if (append_all(self, session, turn, messages, thinking) < 0 ||
      turn_finish_row(self, turn, finish_reason, usage) < 0 || session_add_usage(self, session, usage) < 0) {
    exec_sql(self, "ROLLBACK");
    return -1;
  }
  return exec_sql(self, "COMMIT");
}

int store_turn_failed(store_t *self, int64_t turn, const char *status, const char *code, const char *detail) {
  return store_turn_failed_with(self, turn, NULL, NULL, status, code, detail);
}

int store_turn_failed_with(store_t *self, int64_t turn, const char *session, const json_t *messages, const char *status,
                           const char *code, const char *detail) {
  if (session && json_array_size(messages) > 0 && append_all(self, session, turn, messages, NULL) < 0)
    return -1;
  sqlite3_stmt *st =
      prep(self, "UPDATE turns SET status = ?, finished_ms = ?, error_code = ?, error_detail = ? WHERE id = ?");
  if (!st)
    return -1;
  sqlite3_bind_text(st, 1, status, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, util_wall_ms());
  sqlite3_bind_text(st, 3, code, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, detail, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 5, turn);
  return exec_done(self, st);
}

json_t *store_unfinished_turns(store_t *self) {
  json_t *out = json_array();
  sqlite3_stmt *st =
      prep(self, "SELECT id, session, attempt FROM turns WHERE status IN ('queued', 'running') ORDER BY id");
  if (!st)
    return out;
  while (sqlite3_step(st) == SQLITE_ROW)
    json_array_append_new(out, json_pack("{s:I, s:s, s:i}", "id", (json_int_t)sqlite3_column_int64(st, 0), "session",
                                         col_text(st, 1), "attempt", sqlite3_column_int(st, 2)));
  store_release(self, st);
  return out;
}

int store_session_create(store_t *self, const char *id, const char *role, const char *profile, const char *parent,
                         const char *task, int depth, const char *call_id) {
  return exec_done(self,
                   prep_bind(self,
                             "INSERT INTO sessions(id, role, profile, status, parent, created_ms, task, depth, call_id)"
                             " VALUES(?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                             "ttttwtit", id, role, profile, parent, task, (int64_t)depth, call_id));
}

/* UPDATE sessions SET <column> = value WHERE id = ?, for text or int columns. */
static int set_column(store_t *self, const char *id, const char *sql, const char *text, int64_t num, bool is_text) {
  sqlite3_stmt *st = prep(self, sql);
  if (!st)
    return -1;
  if (is_text)
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_int64(st, 1, num);
  sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
  return exec_done(self, st);
}

int store_session_status(store_t *self, const char *id, const char *status) {
  return set_column(self, id, "UPDATE sessions SET status = ? WHERE id = ?", status, 0, true);
}

int store_session_summary(store_t *self, const char *id, const json_t *summary) {
  char *text = json_dumps(summary, JSON_COMPACT);
  int rc =
      text ? set_column(self, id, "UPDATE sessions SET summary = ?, delivered = 1 WHERE id = ?", text, 0, true) : -1;
  free(text);
  if (rc == 0)
    store_perf_summary(self, id, json_string_value(json_object_get(summary, "status")));
  return rc;
}

int store_session_flag(store_t *self, const char *id, const char *flag, int value) {
  if (strcmp(flag, "summary_asked") == 0)
    return set_column(self, id, "UPDATE sessions SET summary_asked = ? WHERE id = ?", NULL, value, false);
  if (strcmp(flag, "delivered") == 0)
    return set_column(self, id, "UPDATE sessions SET delivered = ? WHERE id = ?", NULL, value, false);
  if (strcmp(flag, "turns") == 0)
    return set_column(self, id, "UPDATE sessions SET turns = turns + ? WHERE id = ?", NULL, value, false);
  return -1;
}

/* The scan of every session of the role: once per role, then meta's counter. */
static int scan_next_number(store_t *self, const char *role) {
  sqlite3_stmt *st = prep(self, "SELECT id FROM sessions WHERE role = ?");
  int next = 1;
  if (!st)
    return next;
  sqlite3_bind_text(st, 1, role, -1, SQLITE_TRANSIENT);
  size_t rl = strlen(role);
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *id = col_text(st, 0);
    if (id && strncmp(id, role, rl) == 0 && id[rl] == '-' && atoi(id + rl + 1) >= next)
      next = atoi(id + rl + 1) + 1;
  }
  store_release(self, st);
  return next;
}

int store_next_number(store_t *self, const char *role) {
  char key[160], val[32];
  snprintf(key, sizeof key, "next_number:%s", role);
  int next = store_meta_get(self, key, val, sizeof val) == 0 ? atoi(val) : 0;
  if (next < 1)
    next = scan_next_number(self, role);
  for (;;) { /* an id made some other way is never taken twice */
    snprintf(key, sizeof key, "%s-%d", role, next);
    if (!store_session_exists(self, key))
      break;
    next++;
  }
  snprintf(key, sizeof key, "next_number:%s", role);
  snprintf(val, sizeof val, "%d", next + 1);
  store_meta_set(self, key, val);
  return next;
}

json_t *store_queued_agents(store_t *self, int limit) {
  json_t *out = json_array();
  sqlite3_stmt *st = prep(self, "SELECT id FROM sessions WHERE status = 'queued' AND parent IS NOT NULL"
                                " ORDER BY created_ms, rowid LIMIT ?");
  if (!st)
    return out;
  sqlite3_bind_int(st, 1, limit);
  while (sqlite3_step(st) == SQLITE_ROW)
    json_array_append_new(out, json_string(col_text(st, 0)));
  store_release(self, st);
  return out;
}

int store_clear(store_t *self, const char *session) {
  int64_t ctx = query_int(self, "SELECT CASE WHEN ctx_cleared THEN 0 ELSE ctx_count END FROM sessions WHERE id = ?1",
                          session, 0, 0);
  sqlite3_stmt *st = prep(self, "UPDATE messages SET cleared = 1 WHERE session = ? AND cleared = 0");
  if (!st)
    return -1;
  sqlite3_bind_text(st, 1, session, -1, SQLITE_TRANSIENT);
  if (exec_done(self, st) < 0)
    return -1;
  int n = sqlite3_changes(self->db);
  /* The inherited context is set aside with the session's own messages. */
  if (set_column(self, session, "UPDATE sessions SET n_messages = 0, ctx_cleared = ? WHERE id = ?", NULL, 1, false) < 0)
    return -1;
  return n + (int)(ctx > 0 ? ctx : 0);
}

int64_t store_proposal_new(store_t *self, const char *profile, const char *task, const char *keyword) {
  if (exec_done(self, prep_bind(self, "INSERT INTO proposals(profile, task, keyword, created_ms) VALUES(?, ?, ?, ?)",
                                "tttw", profile, task, keyword)) < 0)
    return -1;
  return sqlite3_last_insert_rowid(self->db);
}

json_t *store_proposal_take(store_t *self, int64_t id) {
  sqlite3_stmt *st = prep(self, "DELETE FROM proposals WHERE id = ? RETURNING profile, task, keyword");
  json_t *out = NULL;
  if (!st)
    return NULL;
  sqlite3_bind_int64(st, 1, id);
  if (sqlite3_step(st) == SQLITE_ROW)
    out =
        json_pack("{s:s, s:s, s:s?}", "profile", col_text(st, 0), "task", col_text(st, 1), "keyword", col_text(st, 2));
  store_release(self, st);
  return out;
}

int store_turn_session(store_t *self, int64_t turn, char *session, size_t len) {
  return one_text(self, prep_bind(self, "SELECT session FROM turns WHERE id = ?", "i", turn), session, len);
}

int64_t store_last_turn(store_t *self, const char *session) {
  return one_int(self, prep_bind(self, "SELECT max(id) FROM turns WHERE session = ?", "t", session), 0);
}

json_t *store_pending_children(store_t *self, const char *parent) {
  json_t *out = json_array();
  sqlite3_stmt *st = prep(self, "SELECT id FROM sessions WHERE parent = ? AND call_id IS NOT NULL AND delivered = 0");
  if (!st)
    return out;
  sqlite3_bind_text(st, 1, parent, -1, SQLITE_TRANSIENT);
  while (sqlite3_step(st) == SQLITE_ROW)
    json_array_append_new(out, json_string(col_text(st, 0)));
  store_release(self, st);
  return out;
}

int store_session_set_solo(store_t *self, const char *id, bool solo) {
  return set_column(self, id, "UPDATE sessions SET solo = ? WHERE id = ?", NULL, solo, false);
}

/* ---- workflows: one JSON document each, a head and a row per step written since (see store.h) ---- */

/* Runs sql with doc (as compact JSON) bound to ?1 and, when key is not NULL, the
 * text key (else the id) to ?2. 0 or -1. */
static int write_doc(store_t *self, const char *sql, const json_t *doc, const char *key, int64_t id) {
  char *text = json_dumps(doc, JSON_COMPACT);
  sqlite3_stmt *st = text ? prep(self, sql) : NULL;
  int rc = -1;
  if (st) {
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    if (key)
      sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
    else if (id >= 0)
      sqlite3_bind_int64(st, 2, id);
    rc = exec_done(self, st);
  }
  free(text);
  return rc;
}

/* The documents sql selects (key in column 0, doc in column 1), each with its
 * key set as field key_name (an int when int_key). Rows that are not objects are skipped. */
static json_t *read_docs(store_t *self, const char *sql, const char *key_name, bool int_key) {
  json_t *out = json_array();
  sqlite3_stmt *st = prep(self, sql);
  if (!st)
    return out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *doc = json_loads(col_text(st, 1), 0, NULL);
    if (!json_is_object(doc)) {
      json_decref(doc);
      continue;
    }
    json_object_set_new(doc, key_name,
                        int_key ? json_integer(sqlite3_column_int64(st, 0)) : json_string(col_text(st, 0)));
    json_array_append_new(out, doc);
  }
  store_release(self, st);
  return out;
}

int64_t store_workflow_insert(store_t *self, const json_t *doc) {
  if (write_doc(self, "INSERT INTO workflows(doc) VALUES(?)", doc, NULL, -1) < 0)
    return -1;
  return sqlite3_last_insert_rowid(self->db);
}

/* The whole document; the step rows written since the last one are in it now, and go. */
int store_workflow_update(store_t *self, int64_t id, const json_t *doc) {
  if (exec_sql(self, "SAVEPOINT wf_doc") < 0)
    return -1;
  int rc = write_doc(self, "UPDATE workflows SET doc = ?1, head = NULL WHERE id = ?2", doc, NULL, id);
  if (rc == 0)
    rc = exec_done(self, prep_bind(self, "DELETE FROM workflow_steps WHERE workflow = ?", "i", id));
  if (rc < 0)
    exec_sql(self, "ROLLBACK TO wf_doc");
  exec_sql(self, "RELEASE wf_doc");
  return rc;
}

int store_workflow_step_put(store_t *self, int64_t id, int64_t step, const json_t *state) {
  char *text = json_dumps(state, JSON_COMPACT);
  sqlite3_stmt *st =
      text ? prep_bind(self, "INSERT OR REPLACE INTO workflow_steps(workflow, step, state) VALUES(?, ?, ?)", "iit", id,
                       step, text)
           : NULL;
  int rc = exec_done(self, st);
  free(text);
  return rc;
}

int store_workflow_head(store_t *self, int64_t id, const json_t *head) {
  return write_doc(self, "UPDATE workflows SET head = ?1 WHERE id = ?2", head, NULL, id);
}

int store_batch(store_t *self, bool begin) {
  if (begin)
    return exec_done(self, prep(self, "SAVEPOINT batch"));
  if (sqlite3_get_autocommit(self->db))
    return 0; /* none open (it could not begin): each write was committed by itself */
  if (exec_done(self, prep(self, "RELEASE batch")) == 0)
    return 0;
  exec_sql(self, "ROLLBACK TO batch"); /* the commit failed (a full disk): nothing of it is kept */
  exec_sql(self, "RELEASE batch");
  return -1;
}

/* Each workflow's document with its head's members and the step rows written since laid over it. */
json_t *store_workflows(store_t *self) {
  json_t *docs = read_docs(self, "SELECT id, doc FROM workflows ORDER BY id", "id", true), *by_id = json_object();
  size_t i;
  json_t *doc;
  char key[32];
  json_array_foreach(docs, i, doc) {
    snprintf(key, sizeof key, "%lld", (long long)jx_int(doc, "id", 0));
    json_object_set(by_id, key, doc);
  }
  sqlite3_stmt *st = prep(self, "SELECT id, head FROM workflows WHERE head IS NOT NULL");
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    snprintf(key, sizeof key, "%lld", (long long)sqlite3_column_int64(st, 0));
    json_t *head = json_loads(col_text(st, 1), 0, NULL);
    doc = json_object_get(by_id, key);
    if (json_is_object(head) && doc)
      json_object_update(doc, head);
    json_decref(head);
  }
  store_release(self, st);
  st = prep(self, "SELECT workflow, step, state FROM workflow_steps ORDER BY workflow, step");
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    snprintf(key, sizeof key, "%lld", (long long)sqlite3_column_int64(st, 0));
    json_t *doc_of = json_object_get(by_id, key), *steps = json_object_get(doc_of, "steps");
    json_t *state = json_loads(col_text(st, 2), 0, NULL);
    if (doc_of && !json_is_object(steps)) /* an older document without step states */
      json_object_set_new(doc_of, "steps", steps = json_object());
    if (!json_is_object(steps) || !json_is_object(state)) {
      json_decref(state);
      continue;
    }
    snprintf(key, sizeof key, "%lld", (long long)sqlite3_column_int64(st, 1));
    json_object_set_new(steps, key, state);
  }
  store_release(self, st);
  json_decref(by_id);
  return docs;
}

int store_checkpoint_add(store_t *self, int64_t workflow, int64_t step, int64_t attempt, int64_t seq, const char *kind,
                         const char *path, int existed, const char *content, const char *sha256, int mode) {
  sqlite3_stmt *st =
      prep(self, "INSERT INTO checkpoints(workflow, step, attempt, seq, kind, path, existed, content, sha256,"
                 " created_ms, mode) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, workflow);
  sqlite3_bind_int64(st, 2, step);
  sqlite3_bind_int64(st, 3, attempt);
  sqlite3_bind_int64(st, 4, seq);
  sqlite3_bind_text(st, 5, kind, -1, SQLITE_TRANSIENT);
  if (path)
    sqlite3_bind_text(st, 6, path, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 7, existed);
  if (content)
    sqlite3_bind_text(st, 8, content, -1, SQLITE_TRANSIENT);
  if (sha256)
    sqlite3_bind_text(st, 9, sha256, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 10, util_wall_ms());
  if (mode > 0)
    sqlite3_bind_int(st, 11, mode);
  return exec_done(self, st);
}

int store_checkpoints_forget(store_t *self, int64_t workflow, int64_t step, int64_t attempt) {
  sqlite3_stmt *st = prep(self, "DELETE FROM checkpoints WHERE workflow = ? AND step = ? AND attempt = ?");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, workflow);
  sqlite3_bind_int64(st, 2, step);
  sqlite3_bind_int64(st, 3, attempt);
  return exec_done(self, st);
}

json_t *store_checkpoints(store_t *self, int64_t workflow, bool with_content) {
  json_t *out = json_array();
  sqlite3_stmt *st =
      prep(self, "SELECT id, step, attempt, seq, kind, path, existed, content, sha256, mode FROM checkpoints"
                 " WHERE workflow = ? ORDER BY id");
  if (!st)
    return out;
  sqlite3_bind_int64(st, 1, workflow);
  while (sqlite3_step(st) == SQLITE_ROW) {
    json_t *c =
        json_pack("{s:I, s:I, s:I, s:I, s:s, s:s?, s:b, s:s?}", "id", (json_int_t)sqlite3_column_int64(st, 0), "step",
                  (json_int_t)sqlite3_column_int64(st, 1), "attempt", (json_int_t)sqlite3_column_int64(st, 2), "seq",
                  (json_int_t)sqlite3_column_int64(st, 3), "kind", col_text(st, 4), "path", col_text(st, 5), "existed",
                  sqlite3_column_int(st, 6), "sha256", col_text(st, 8));
    if (c && with_content && col_text(st, 7))
      json_object_set_new(c, "content", json_string(col_text(st, 7)));
    if (c && sqlite3_column_type(st, 9) != SQLITE_NULL)
      json_object_set_new(c, "mode", json_integer(sqlite3_column_int(st, 9)));
    if (c)
      json_array_append_new(out, c);
  }
  store_release(self, st);
  return out;
}

int store_template_put(store_t *self, const char *name, const json_t *doc) {
  return write_doc(self, "INSERT OR REPLACE INTO templates(doc, name) VALUES(?1, ?2)", doc, name, -1);
}

json_t *store_templates(store_t *self) {
  return read_docs(self, "SELECT name, doc FROM templates ORDER BY name", "name", false);
}

int store_session_set_step(store_t *self, const char *id, int64_t workflow, int64_t step) {
  sqlite3_stmt *st = prep(self, "UPDATE sessions SET wf_plan = ?, wf_step = ? WHERE id = ?");
  if (!st)
    return -1;
  sqlite3_bind_int64(st, 1, workflow);
  sqlite3_bind_int64(st, 2, step);
  sqlite3_bind_text(st, 3, id, -1, SQLITE_TRANSIENT);
  return exec_done(self, st);
}

/* ---- budgets ------------------------------------------------------------- */

int store_budget_set(store_t *self, const char *scope, int64_t tokens, double cost) {
  if (tokens <= 0 && cost <= 0)
    return exec_done(self, prep_bind(self, "DELETE FROM budgets WHERE scope = ?", "t", scope));
  sqlite3_stmt *st = prep_bind(self, "INSERT OR REPLACE INTO budgets(scope, tokens, cost, set_ms) VALUES(?, ?, ?, ?)",
                               "ti", scope, (int64_t)(tokens > 0 ? tokens : 0));
  if (!st)
    return -1;
  sqlite3_bind_double(st, 3, cost > 0 ? cost : 0);
  sqlite3_bind_int64(st, 4, util_wall_ms());
  return exec_done(self, st);
}

/* Reads (tokens, cost) from the one row st gives and gives st back; -1 when there is none. */
static int read_tokens_cost(store_t *self, sqlite3_stmt *st, int64_t *tokens, double *cost) {
  int rc = -1;
  if (st && sqlite3_step(st) == SQLITE_ROW) {
    *tokens = sqlite3_column_int64(st, 0);
    *cost = sqlite3_column_double(st, 1);
    rc = 0;
  }
  if (st)
    store_release(self, st);
  return rc;
}

int store_budget_get(store_t *self, const char *scope, int64_t *tokens, double *cost) {
  sqlite3_stmt *st = prep_bind(self, "SELECT tokens, cost FROM budgets WHERE scope = ?", "t", scope);
  return read_tokens_cost(self, st, tokens, cost);
}

/* What a session and all its sub-agents used, or (workflow > 0) what every
 * session of the workflow's steps and their sub-agents used. */
int store_spent(store_t *self, const char *session, int64_t workflow, int64_t *tokens, double *cost) {
  static const char sql_session[] =
      "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT s.id FROM sessions s JOIN tree t ON s.parent = t.id)"
      " SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost), 0) FROM sessions"
      " WHERE id IN (SELECT id FROM tree)";
  static const char sql_workflow[] =
      "WITH RECURSIVE tree(id) AS (SELECT id FROM sessions WHERE wf_plan = ?"
      "  UNION SELECT s.id FROM sessions s JOIN tree t ON s.parent = t.id)"
      " SELECT coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost), 0) FROM sessions"
      " WHERE id IN (SELECT id FROM tree)";
  sqlite3_stmt *st =
      workflow > 0 ? prep_bind(self, sql_workflow, "i", (int64_t)workflow) : prep_bind(self, sql_session, "t", session);
  return read_tokens_cost(self, st, tokens, cost);
}

json_t *store_budget_scopes(store_t *self) {
  json_t *out = json_array();
  sqlite3_stmt *st = prep(self, "SELECT scope FROM budgets ORDER BY set_ms");
  while (st && sqlite3_step(st) == SQLITE_ROW)
    json_array_append_new(out, json_string((const char *)sqlite3_column_text(st, 0)));
  if (st)
    store_release(self, st);
  return out;
}

/* ---- project memory ---------------------------------------------------- */

int64_t store_memory_add(store_t *self, const char *text, const char *source, const char *workspace,
                         const char *outcome) {
  sqlite3_stmt *st = prep_bind(self,
                               "INSERT INTO memories(text, source, workspace, outcome, created_ms, pinned)"
                               " VALUES(?, ?, ?, ?, ?, 0)",
                               "ttttw", text, source, workspace, outcome);
  if (exec_done(self, st) < 0)
    return -1;
  return sqlite3_last_insert_rowid(self->db);
}

static json_t *memory_row(sqlite3_stmt *st) {
  int64_t ms = sqlite3_column_int64(st, 5);
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  char date[32] = "";
  if (gmtime_r(&secs, &tm))
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:b}", "id", (json_int_t)sqlite3_column_int64(st, 0), "text",
                   col_text(st, 1), "source", col_text(st, 2), "date", date, "workspace", col_text(st, 3), "outcome",
                   col_text(st, 4), "date_ms", (json_int_t)ms, "pinned", sqlite3_column_int(st, 6) != 0);
}

json_t *store_memories(store_t *self, const char *workspace, const char *match, int limit) {
  json_t *out = json_array();
  char sql[1024];
  static const char cols[] = "m.rowid, m.text, m.source, m.workspace, m.outcome, m.created_ms, m.pinned";
  if (limit < 0) /* pinned ones: through their index */
    snprintf(sql, sizeof sql,
             "SELECT %s FROM memories m WHERE m.rowid IN (SELECT id FROM memory_pinned%s)"
             " ORDER BY m.created_ms DESC LIMIT ?",
             cols, workspace ? " WHERE workspace = ?" : "");
  else if (match) /* pinned first, then by relevance */
    snprintf(sql, sizeof sql,
             "SELECT %s, bm25(memories) FROM memories m WHERE memories MATCH ?%s"
             " ORDER BY m.pinned DESC, bm25(memories) LIMIT ?",
             cols, workspace ? " AND m.workspace = ?" : "");
  else
    snprintf(sql, sizeof sql, "SELECT %s FROM memories m%s ORDER BY m.created_ms DESC LIMIT ?", cols,
             workspace ? " WHERE m.workspace = ?" : "");
  sqlite3_stmt *st = prep(self, sql);
  int i = 1;
  if (st && match && limit >= 0)
    sqlite3_bind_text(st, i++, match, -1, SQLITE_TRANSIENT);
  if (st && workspace)
    sqlite3_bind_text(st, i++, workspace, -1, SQLITE_TRANSIENT);
  if (st)
    sqlite3_bind_int(st, i, limit < 0 ? -limit : limit);
  while (st && sqlite3_step(st) == SQLITE_ROW) {
    json_t *m = memory_row(st);
    if (match && limit >= 0)
      json_object_set_new(m, "rank", json_real(sqlite3_column_double(st, 7)));
    json_array_append_new(out, m);
  }
  if (st)
    store_release(self, st);
  return out;
}

int store_memory_pin(store_t *self, int64_t id, bool pinned) {
  sqlite3_stmt *st = prep_bind(self, "UPDATE memories SET pinned = ? WHERE rowid = ?", "ii", (int64_t)pinned, id);
  if (exec_done(self, st) < 0)
    return -1;
  if (sqlite3_changes(self->db) == 0)
    return -ENOENT;
  st = pinned ? prep_bind(self,
                          "INSERT OR REPLACE INTO memory_pinned(id, workspace) SELECT rowid, workspace FROM memories"
                          " WHERE rowid = ?",
                          "i", id)
              : prep_bind(self, "DELETE FROM memory_pinned WHERE id = ?", "i", id);
  return exec_done(self, st);
}

int store_memory_forget(store_t *self, int64_t id) {
  if (exec_done(self, prep_bind(self, "DELETE FROM memories WHERE rowid = ?", "i", id)) < 0)
    return -1;
  if (sqlite3_changes(self->db) == 0)
    return -ENOENT;
  exec_done(self, prep_bind(self, "DELETE FROM memory_pinned WHERE id = ?", "i", id));
  /* Really gone: the index merged (no segment keeps its words), the freed pages zeroed
   * (secure_delete), and the write-ahead log, which still holds the old pages, emptied. */
  sqlite3_exec(self->db, "INSERT INTO memories(memories) VALUES('optimize')", NULL, NULL, NULL);
  sqlite3_wal_checkpoint_v2(self->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
  return 0;
}
