/* memory.c: project memory kept by the broker (see memory.h). */
#include "memory.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "jx.h"
#include "log.h"
#include "sbuf.h"
#include "util.h"

const char *memory_workspace(broker_t *b, const char *session, char *buf, size_t len) {
  char s[STORE_ID_MAX], key[STORE_ID_MAX + 16];
  snprintf(s, sizeof s, "%s", session);
  for (int depth = 0; depth < 32; depth++) {
    snprintf(key, sizeof key, "workspace:%s", s);
    if (store_meta_get(b->store, key, buf, len) == 0)
      return buf;
    snprintf(key, sizeof key, "pin:%s", s);
    if (store_meta_get(b->store, key, buf, len) == 0)
      return buf;
    store_session_t row;
    if (store_session_row(b->store, s, &row) < 0 || !row.parent[0] || strcmp(row.parent, s) == 0)
      break;
    snprintf(s, sizeof s, "%s", row.parent);
  }
  buf[0] = '\0';
  return buf;
}

/* "a; b; c" of a list of strings. */
static void join(sbuf_t *out, const json_t *list) {
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    if (json_string_value(v))
      sbuf_printf(out, "%s%s", i ? "; " : "", json_string_value(v));
  }
}

void memory_record_summary(broker_t *b, const store_session_t *row, const json_t *summary) {
  char source[STORE_ID_MAX + 96];
  json_t *full = store_session(b->store, row->id);
  const char *task = jx_str(full, "task", "");
  sbuf_t text = {.max = 4000};
  sbuf_printf(&text, "%s %s was asked: ", row->role, row->id);
  sbuf_add_utf8(&text, task, strlen(task) > 300 ? 300 : strlen(task));
  sbuf_printf(&text, ". Outcome %s. ", jx_str(summary, "status", "?"));
  join(&text, jx_arr(summary, "key_points"));
  const char *rec = jx_str(summary, "recommendation", NULL);
  if (rec && rec[0])
    sbuf_printf(&text, ". Recommendation: %s", rec);
  if (row->in_workflow)
    snprintf(source, sizeof source, "workflow %lld step %lld (%s)", (long long)row->wf_plan, (long long)row->wf_step,
             row->id);
  else
    snprintf(source, sizeof source, "summary of %s", row->id);
  memory_record(b, row->id, sbuf_str(&text), source, jx_str(summary, "status", "?"));
  sbuf_free(&text);
  json_decref(full);
}

void memory_record(broker_t *b, const char *session, const char *text, const char *source, const char *outcome) {
  char ws[4096];
  memory_workspace(b, session, ws, sizeof ws);
  if (store_memory_add(b->store, text, source, ws, outcome) < 0)
    log_error("state: cannot keep a memory of %s: %s", source, store_errmsg(b->store));
}

/* Words that match nearly everything and say nothing of a topic. */
static bool stopword(const char *w, size_t n) {
  static const char *const words[] = {
      "the",   "and",    "for",   "are",   "but",   "not",    "you",   "all",   "any",   "can",   "had",
      "her",   "was",    "one",   "our",   "out",   "has",    "him",   "his",   "how",   "its",   "may",
      "new",   "now",    "see",   "two",   "way",   "who",    "did",   "get",   "let",   "say",   "she",
      "too",   "use",    "that",  "with",  "have",  "this",   "will",  "your",  "from",  "they",  "know",
      "want",  "been",   "good",  "much",  "some",  "time",   "very",  "when",  "come",  "here",  "just",
      "like",  "long",   "make",  "many",  "more",  "only",   "over",  "such",  "take",  "than",  "them",
      "well",  "were",   "what",  "does",  "into",  "then",   "there", "these", "which", "would", "about",
      "could", "should", "their", "other", "where", "please", "tell",  "also",  "each",  "how"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strlen(words[i]) == n && strncasecmp(words[i], w, n) == 0)
      return true;
  return false;
}

char *memory_query(const char *text) {
  sbuf_t q = {.max = 2000};
  int words = 0;
  for (const char *p = text; p && *p && words < 12;) {
    while (*p && !isalnum((unsigned char)*p))
      p++;
    const char *start = p;
    while (*p && (isalnum((unsigned char)*p) || *p == '_'))
      p++;
    size_t n = (size_t)(p - start);
    if (n >= 3 && !stopword(start, n)) { /* quoted: no word is an FTS5 operator */
      sbuf_printf(&q, "%s\"%.*s\"", words ? " OR " : "", (int)n, start);
      words++;
    }
  }
  if (!words) {
    sbuf_free(&q);
    return NULL;
  }
  return q.s;
}

static void add_line(sbuf_t *out, const json_t *m, int *n) {
  time_t secs = (time_t)(jx_int(m, "date_ms", 0) / 1000);
  struct tm tm;
  char date[16] = "?";
  if (gmtime_r(&secs, &tm))
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
  sbuf_printf(out, "\n- [memory %lld, %s%s] %s", (long long)jx_int(m, "id", 0), date,
              json_is_true(json_object_get(m, "pinned")) ? ", pinned" : "", jx_str(m, "text", ""));
  (*n)++;
}

char *memory_context(broker_t *b, const char *session, const char *query) {
  int64_t t0 = util_now_ms();
  char ws[4096];
  memory_workspace(b, session, ws, sizeof ws);
  char *match = memory_query(query);
  json_t *pinned = store_memories(b->store, ws, NULL, -MEMORY_CONTEXT_MAX),
         *found = match ? store_memories(b->store, ws, match, 8) : NULL;
  free(match);
  sbuf_t out = {0};
  sbuf_puts(&out, "[Project memory: notes kept from earlier work in this workspace, most relevant first. They may be "
                  "out of date; check before relying on them.]");
  size_t head = out.len;
  int n = 0;
  size_t i;
  json_t *m;
  json_array_foreach(pinned, i, m) {
    if (n < MEMORY_CONTEXT_MAX && json_is_true(json_object_get(m, "pinned")) &&
        out.len + strlen(jx_str(m, "text", "")) < MEMORY_CONTEXT_BYTES + head)
      add_line(&out, m, &n);
  }
  /* By relevance (bm25: lower is better); of two near ties, the newer. */
  int64_t now = util_wall_ms();
  for (int pick = 0; pick < MEMORY_CONTEXT_MAX && n < MEMORY_CONTEXT_MAX; pick++) {
    json_t *best = NULL;
    double best_score = 0;
    json_array_foreach(found, i, m) {
      if (json_is_true(json_object_get(m, "pinned")) || json_is_true(json_object_get(m, "taken")))
        continue;
      double age_days = (double)(now - jx_int(m, "date_ms", now)) / 86400000.0;
      double score = jx_num(m, "rank", 0) / (1.0 + (age_days > 0 ? age_days : 0) / 30.0);
      if (!best || score < best_score)
        best = m, best_score = score;
    }
    if (!best)
      break;
    json_object_set_new(best, "taken", json_true());
    if (out.len + strlen(jx_str(best, "text", "")) < MEMORY_CONTEXT_BYTES + head)
      add_line(&out, best, &n);
  }
  json_decref(pinned);
  json_decref(found);
  log_debug("%s: %d memories of workspace \"%s\" in %lld ms", session, n, ws, (long long)(util_now_ms() - t0));
  if (!n) {
    sbuf_free(&out);
    return NULL;
  }
  return out.s;
}
