/* think: splits inline <think>...</think> blocks out of a streamed answer.
 *
 * The tags may arrive split across pieces at any byte; a possible partial tag
 * is held back until it is certain, and flushed at the end. Text inside the
 * tags (or after an unterminated <think>) is thinking, the rest is answer.
 */
#ifndef CADRE_THINK_H
#define CADRE_THINK_H

#include <stdbool.h>
#include <stddef.h>

typedef struct think think_t;

/* Receives a piece of answer (thinking false) or thinking text. Non-zero stops. */
typedef int (*think_emit_fn)(void *ud, bool thinking, const char *s, size_t n);

/* New splitter, outside any <think> block. Returns NULL on allocation failure. */
think_t *think_new(void);
/* Frees a splitter; accepts NULL and nulls the pointer. */
void think_destroy(think_t **self_p);
/* Splits the next piece. Returns 0 or the first non-zero result of fn. */
int think_feed(think_t *self, const char *s, size_t n, think_emit_fn fn, void *ud);
/* Emits held-back bytes (a partial tag that never completed). */
int think_flush(think_t *self, think_emit_fn fn, void *ud);

#endif
