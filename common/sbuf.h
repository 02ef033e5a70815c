/* sbuf: the growing string buffer of every program (aborts when memory runs out).
 *
 * Start one as `sbuf_t b = {0}` (no limit) or `sbuf_t b = {.max = N}`: a buffer
 * with a max never holds more than max bytes; an append that would pass it is
 * cut there and `full` is set. The text is always NUL-terminated. */
#ifndef CADRE_SBUF_H
#define CADRE_SBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char *s;
  size_t len, cap;
  size_t max; /* 0: no limit; else the most bytes the text may hold */
  bool full;  /* an append was cut at max */
} sbuf_t;

/* Appends n bytes of data (cut at max). */
void sbuf_add(sbuf_t *b, const char *data, size_t n);
/* Appends n bytes as valid UTF-8: a byte that is not part of a valid sequence
 * becomes '?', and a cut at max never splits a character. */
void sbuf_add_utf8(sbuf_t *b, const char *data, size_t n);
/* Appends a NUL-terminated string. */
void sbuf_puts(sbuf_t *b, const char *s);
/* Appends formatted text. */
void sbuf_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends formatted text (va_list). */
void sbuf_vprintf(sbuf_t *b, const char *fmt, va_list ap);
/* Drops blanks (space, tab, CR, VT, FF) at the end of the text. */
void sbuf_rtrim(sbuf_t *b);
/* The text so far ("" when empty); valid until the next change. */
const char *sbuf_str(const sbuf_t *b);
/* Empties the buffer (and clears full), keeping its memory and max. */
void sbuf_reset(sbuf_t *b);
/* Frees the memory; the buffer is empty and usable again. */
void sbuf_free(sbuf_t *b);

#endif
