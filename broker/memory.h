/* memory: the project's memory. When a sub-agent's summary is recorded (a
 * workflow step's result included) and when a workflow ends, the broker keeps it as a memory of its
 * workspace: what was done, what was learned, the outcome, the date. A
 * top-level session's turns get the few most relevant memories of their
 * workspace in the system message (pinned ones first, then by FTS5 relevance
 * to the latest user message, recency breaking near ties), within a budget,
 * marked as such. Memories stay in the broker's state; cadre memory lists,
 * searches, pins and forgets them. */
#ifndef CADRE_BROKER_MEMORY_H
#define CADRE_BROKER_MEMORY_H

#include "internal.h"

/* The workspace a session's memories belong to (its controller's directory,
 * else the node workspace its files are in, else its parent's); "" when none. */
const char *memory_workspace(broker_t *b, const char *session, char *buf, size_t len);
/* Keeps a summary as a memory of the session's workspace. */
void memory_record_summary(broker_t *b, const store_session_t *row, const json_t *summary);
/* Keeps text as a memory of session's workspace, from source (e.g. "workflow 3"), with its outcome. */
void memory_record(broker_t *b, const char *session, const char *text, const char *source, const char *outcome);
/* The memory block for a turn of session whose latest user message is query,
 * or NULL when none applies. Caller frees. */
char *memory_context(broker_t *b, const char *session, const char *query);
/* An FTS5 query that matches any of the words of text (NULL when it has none). Caller frees. */
char *memory_query(const char *text);

#define MEMORY_CONTEXT_BYTES 1200 /* about 300 tokens */
#define MEMORY_CONTEXT_MAX 3

#endif
