/* sbuf.c: the growing string buffer. */
#include "sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

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

/* How many of n more bytes fit under max (all when there is none). */
static size_t room(const sbuf_t *b, size_t n) {
  if (!b->max || b->len + n <= b->max)
    return n;
  return b->len < b->max ? b->max - b->len : 0;
}

void sbuf_add(sbuf_t *b, const char *data, size_t n) {
  size_t k = room(b, n);
  b->full |= k < n;
  grow(b, k);
  memcpy(b->s + b->len, data, k);
  b->len += k;
  b->s[b->len] = '\0';
}

void sbuf_add_utf8(sbuf_t *b, const char *data, size_t n) {
  const unsigned char *u = (const unsigned char *)data;
  size_t i = 0;
  while (i < n && !b->full) {
    size_t run = 0, k;
    while (i + run < n && (k = util_utf8_seq(u + i + run, n - i - run)) != 0)
      run += k;
    if (room(b, run) < run) { /* cut before the first character that does not fit */
      size_t fit = 0, avail = room(b, run);
      while (fit < run && fit + (k = util_utf8_seq(u + i + fit, run - fit)) <= avail)
        fit += k;
      sbuf_add(b, data + i, fit);
      b->full = true;
      break;
    }
    sbuf_add(b, data + i, run);
    i += run;
    if (i < n) {
      sbuf_add(b, "?", 1);
      i++;
    }
  }
  if (!b->s)
    sbuf_add(b, "", 0);
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
  if (room(b, (size_t)n) < (size_t)n) { /* format whole, then keep what fits */
    char *tmp = malloc((size_t)n + 1);
    if (!tmp) {
      fputs("cadre: out of memory\n", stderr);
      abort();
    }
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    sbuf_add(b, tmp, (size_t)n);
    free(tmp);
    return;
  }
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

void sbuf_rtrim(sbuf_t *b) {
  while (b->len && strchr(" \t\r\v\f", b->s[b->len - 1]))
    b->len--;
  if (b->s)
    b->s[b->len] = '\0';
}

const char *sbuf_str(const sbuf_t *b) {
  return b->s ? b->s : "";
}

void sbuf_reset(sbuf_t *b) {
  b->len = 0;
  b->full = false;
  if (b->s)
    b->s[0] = '\0';
}

void sbuf_free(sbuf_t *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
  b->full = false;
}
