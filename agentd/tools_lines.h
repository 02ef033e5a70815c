/* tools_lines: a line reader for read_file and grep (lines of any length,
 * kept up to a maximum, the rest skipped but counted). */
#ifndef CADRE_TOOLS_LINES_H
#define CADRE_TOOLS_LINES_H

#include <stdbool.h>
#include <stddef.h>

#define TOOLS_SNIFF 8192 /* bytes tools_is_binary looks at for a NUL */

typedef struct {
  int fd;
  int err; /* errno of a failed read, else 0 */
  bool eof;
  size_t pos, len; /* of buf */
  size_t line_max;
  char *line;      /* the current line, NUL-terminated, at most line_max bytes */
  size_t line_len; /* bytes kept in line */
  size_t full_len; /* the line's whole length */
  char buf[65536];
} linerd_t;

/* Starts reading lines from fd; lines longer than line_max are cut. NULL when out of memory. */
linerd_t *linerd_new(int fd, size_t line_max);
/* The next line into r->line (without its '\n'): 1, or 0 at the end (r->err set on a read error). */
int linerd_next(linerd_t *r);
/* Frees the reader (not its fd). */
void linerd_free(linerd_t *r);
/* True when the first bytes of fd hold a NUL (a binary file). */
bool tools_is_binary(int fd);

#endif
