#include "think.h"

#include <stdlib.h>
#include <string.h>

#define OPEN_TAG "<think>"
#define CLOSE_TAG "</think>"

struct think {
  bool in_think;
  size_t held;                 /* bytes of a possible tag held back */
  char hold[sizeof CLOSE_TAG]; /* a proper prefix of the tag looked for */
};

static const char *tag_of(const think_t *t) {
  return t->in_think ? CLOSE_TAG : OPEN_TAG;
}

static int emit(const think_t *t, const char *s, size_t n, think_emit_fn fn, void *ud) {
  return n ? fn(ud, t->in_think, s, n) : 0;
}

/* Extends the held-back prefix by one byte; resolves it as a tag or as text. */
static int hold_byte(think_t *t, char c, think_emit_fn fn, void *ud) {
  const char *tag = tag_of(t);
  t->hold[t->held++] = c;
  if (memcmp(t->hold, tag, t->held) == 0) {
    if (t->held == strlen(tag)) {
      t->in_think = !t->in_think;
      t->held = 0;
    }
    return 0;
  }
  /* Not a tag: the leading '<' is plain text; the rest may start a new tag. */
  char rest[sizeof t->hold];
  size_t nrest = t->held - 1;
  memcpy(rest, t->hold + 1, nrest);
  t->held = 0;
  int rc = emit(t, "<", 1, fn, ud);
  return rc ? rc : think_feed(t, rest, nrest, fn, ud);
}

/* New splitter. */
think_t *think_new(void) {
  return calloc(1, sizeof(think_t));
}

/* Frees a splitter. */
void think_destroy(think_t **self_p) {
  if (!self_p || !*self_p)
    return;
  free(*self_p);
  *self_p = NULL;
}

/* Splits a piece: runs of plain bytes go out at once, only '<' is examined. */
int think_feed(think_t *self, const char *s, size_t n, think_emit_fn fn, void *ud) {
  size_t i = 0;
  while (i < n) {
    int rc;
    if (self->held) {
      if ((rc = hold_byte(self, s[i++], fn, ud)) != 0)
        return rc;
      continue;
    }
    const char *lt = memchr(s + i, '<', n - i);
    size_t end = lt ? (size_t)(lt - s) : n;
    if ((rc = emit(self, s + i, end - i, fn, ud)) != 0)
      return rc;
    i = end;
    if (lt) {
      self->hold[0] = '<';
      self->held = 1;
      i++;
    }
  }
  return 0;
}

/* Emits what was held back as whatever kind of text it was in. */
int think_flush(think_t *self, think_emit_fn fn, void *ud) {
  size_t n = self->held;
  self->held = 0;
  return emit(self, self->hold, n, fn, ud);
}
