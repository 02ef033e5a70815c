/* tools_lines: the line reader read_file and grep share (see tools_lines.h). */
#include "tools_lines.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the line reader ---------------------------------------------------------- */

// Starts reading lines from fd; lines longer than line_max are cut.
linerd_t *linerd_new(int fd, size_t line_max) {
  linerd_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->fd = fd;
  r->line_max = line_max;
  r->line = malloc(line_max + 1);
  if (!r->line) {
    free(r);
    return NULL;
  }
  return r;
}

// Frees the reader (not its fd).
void linerd_free(linerd_t *r) {
  if (!r)
    return;
  free(r->line);
  free(r);
}

/* Refills the buffer: false at the end of the file or on an error (r->err). */
static bool linerd_fill(linerd_t *r) {
  if (r->eof)
    return false;
  for (;;) {
    ssize_t n = util_read(r->fd, r->buf, sizeof r->buf);
    if (n <= 0) {
      r->eof = true;
      if (n < 0)
        r->err = errno;
      return false;
    }
    r->pos = 0;
    r->len = (size_t)n;
    return true;
  }
}

// The next line into r->line (without its '\n'): 1, or 0 at the end.
int linerd_next(linerd_t *r) {
  r->line_len = r->full_len = 0;
  bool any = false;
  for (;;) {
    if (r->pos == r->len && !linerd_fill(r))
      break;
    any = true;
    char *start = r->buf + r->pos, *nl = memchr(start, '\n', r->len - r->pos);
    size_t n = nl ? (size_t)(nl - start) : r->len - r->pos;
    size_t keep = r->line_len + n > r->line_max ? r->line_max - r->line_len : n;
    memcpy(r->line + r->line_len, start, keep);
    r->line_len += keep;
    r->full_len += n;
    r->pos += n + (nl ? 1 : 0);
    if (nl)
      break;
  }
  r->line[r->line_len] = '\0';
  return any ? 1 : 0;
}

// True when the first bytes of fd hold a NUL (a binary file).
bool tools_is_binary(int fd) {
  char buf[TOOLS_SNIFF];
  ssize_t n = pread(fd, buf, sizeof buf, 0);
  return n > 0 && memchr(buf, '\0', (size_t)n) != NULL;
}
