/* sse: a text/event-stream tokenizer (WHATWG line and field rules). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

#define SSE_MAX_EVENT_NAME 64

struct sse_parser {
  sse_event_fn fn;
  void *ud;
  size_t max_line;
  int failed;
  bool after_cr;   /* the last byte seen was CR: a LF right after it ends nothing */
  bool first_line; /* a UTF-8 BOM is skipped at the very start */
  char *line;      /* the current line when it spans pieces */
  size_t llen, lcap;
  char *data; /* data lines of the pending event, joined with LF */
  size_t dlen, dcap;
  bool has_data;
  char event[SSE_MAX_EVENT_NAME];
};

static int parser_fail(sse_parser_t *p, int rc) {
  if (!p->failed)
    p->failed = rc;
  return p->failed;
}

static int append(sse_parser_t *p, char **buf, size_t *len, size_t *cap, const char *d, size_t n) {
  if (n > p->max_line - *len)
    return parser_fail(p, -E2BIG);
  if (*len + n + 1 > *cap) {
    size_t ncap = *cap ? *cap : 256;
    while (ncap < *len + n + 1)
      ncap *= 2;
    char *nb = realloc(*buf, ncap);
    if (!nb)
      return parser_fail(p, -ENOMEM);
    *buf = nb;
    *cap = ncap;
  }
  if (n)
    memcpy(*buf + *len, d, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

static int dispatch(sse_parser_t *p) {
  int rc = 0;
  if (p->has_data)
    rc = p->fn(p->ud, p->event, p->data ? p->data : "", p->dlen);
  p->dlen = 0;
  p->has_data = false;
  p->event[0] = '\0';
  return rc ? parser_fail(p, rc) : 0;
}

static int on_field(sse_parser_t *p, const char *name, size_t nlen, const char *val, size_t vlen) {
  if (nlen == 4 && memcmp(name, "data", 4) == 0) {
    if (p->has_data && append(p, &p->data, &p->dlen, &p->dcap, "\n", 1) < 0)
      return p->failed;
    p->has_data = true;
    return append(p, &p->data, &p->dlen, &p->dcap, val, vlen);
  }
  if (nlen == 5 && memcmp(name, "event", 5) == 0) {
    size_t n = vlen < sizeof p->event - 1 ? vlen : sizeof p->event - 1;
    memcpy(p->event, val, n);
    p->event[n] = '\0';
  }
  return 0; /* id, retry and unknown fields are ignored */
}

/* One complete line (without its terminator). */
static int process_line(sse_parser_t *p, const char *s, size_t n) {
  if (p->first_line) {
    p->first_line = false;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
      s += 3, n -= 3;
  }
  if (n == 0)
    return dispatch(p);
  if (s[0] == ':')
    return 0;
  const char *colon = memchr(s, ':', n);
  if (!colon)
    return on_field(p, s, n, "", 0);
  size_t nlen = (size_t)(colon - s);
  const char *val = colon + 1;
  size_t vlen = n - nlen - 1;
  if (vlen && *val == ' ')
    val++, vlen--;
  return on_field(p, s, nlen, val, vlen);
}

static size_t find_eol(const char *s, size_t i, size_t n) {
  while (i < n && s[i] != '\n' && s[i] != '\r')
    i++;
  return i;
}

/* New tokenizer calling fn once per event. */
sse_parser_t *sse_parser_new(sse_event_fn fn, void *ud, size_t max_line) {
  if (!fn)
    return NULL;
  sse_parser_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->fn = fn;
  p->ud = ud;
  p->max_line = max_line;
  p->first_line = true;
  return p;
}

/* Frees a tokenizer; accepts NULL and nulls the pointer. */
void sse_parser_destroy(sse_parser_t **self_p) {
  if (!self_p || !*self_p)
    return;
  free((*self_p)->line);
  free((*self_p)->data);
  free(*self_p);
  *self_p = NULL;
}

/* Feeds bytes; lines end with CRLF, LF or CR, and only new bytes are scanned. */
int sse_parser_feed(sse_parser_t *self, const char *data, size_t len) {
  if (!self || (!data && len))
    return -EINVAL;
  size_t i = 0;
  while (i < len && !self->failed) {
    if (self->after_cr) {
      self->after_cr = false;
      if (data[i] == '\n') {
        i++;
        continue;
      }
    }
    size_t eol = find_eol(data, i, len);
    if (eol == len) {
      append(self, &self->line, &self->llen, &self->lcap, data + i, len - i);
      break;
    }
    if (self->llen == 0) {
      if (eol - i > self->max_line)
        return parser_fail(self, -E2BIG);
      process_line(self, data + i, eol - i);
    } else if (append(self, &self->line, &self->llen, &self->lcap, data + i, eol - i) == 0) {
      process_line(self, self->line, self->llen);
      self->llen = 0;
    }
    self->after_cr = data[eol] == '\r';
    i = eol + 1;
  }
  return self->failed;
}

/* End of stream: an unterminated last line counts, and a pending event is dispatched. */
int sse_parser_finish(sse_parser_t *self) {
  if (!self)
    return -EINVAL;
  if (self->failed)
    return self->failed;
  self->after_cr = false;
  if (self->llen) {
    size_t n = self->llen;
    self->llen = 0;
    if (process_line(self, self->line, n) != 0)
      return self->failed;
  }
  return dispatch(self);
}
