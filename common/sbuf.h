/* sbuf: a growing string buffer (aborts when memory runs out). */
#ifndef CADRE_SBUF_H
#define CADRE_SBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
  char *s;
  size_t len, cap;
} sbuf_t;

/* Appends n bytes of data. */
void sbuf_add(sbuf_t *b, const char *data, size_t n);
/* Appends a NUL-terminated string. */
void sbuf_puts(sbuf_t *b, const char *s);
/* Appends formatted text. */
void sbuf_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends formatted text (va_list). */
void sbuf_vprintf(sbuf_t *b, const char *fmt, va_list ap);
/* The text so far ("" when empty); valid until the next change. */
const char *sbuf_str(const sbuf_t *b);
/* Empties the buffer, keeping its memory. */
void sbuf_reset(sbuf_t *b);
/* Frees the memory. */
void sbuf_free(sbuf_t *b);

#endif
