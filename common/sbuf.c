/* sbuf.c: a growing string buffer. */
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grow(sbuf_t *b, size_t need) {
  if (b->len + need + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + need + 1)
    cap *= 2;
  char *s = realloc(b->s, cap);
  if (!s) {
    fputs("cadre: out of memory\n", stderr);
    abort();
  }
  b->s = s;
  b->cap = cap;
}

void sbuf_add(sbuf_t *b, const char *data, size_t n) {
  grow(b, n);
  memcpy(b->s + b->len, data, n);
  b->len += n;
  b->s[b->len] = '\0';
}

void sbuf_puts(sbuf_t *b, const char *s) {
  if (s)
    sbuf_add(b, s, strlen(s));
}

void sbuf_vprintf(sbuf_t *b, const char *fmt, va_list ap) {
  if (!fmt)
    return;
  va_list ap2;
  va_copy(ap2, ap);
  char probe[1];
  int n = vsnprintf(probe, sizeof probe, fmt, ap2);
  va_end(ap2);
  if (n <= 0)
    return;
  grow(b, (size_t)n);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void sbuf_printf(sbuf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sbuf_vprintf(b, fmt, ap);
  va_end(ap);
}

const char *sbuf_str(const sbuf_t *b) {
  return b->s ? b->s : "";
}

void sbuf_reset(sbuf_t *b) {
  b->len = 0;
  if (b->s)
    b->s[0] = '\0';
}

void sbuf_free(sbuf_t *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}
