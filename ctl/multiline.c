/* multiline.c: several-line input without a terminal (see multiline.h). */
#include "multiline.h"

#include <string.h>

#include "output.h"
#include "util.h"

void ml_clean_paste(sbuf_t *out, const char *in, size_t n) {
  const unsigned char *s = (const unsigned char *)in;
  for (size_t i = 0; i < n;) {
    unsigned char ch = s[i];
    if (ch == '\r') {
      sbuf_add(out, "\n", 1);
      i += i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
    } else if (ch == '\n' || ch == '\t') {
      sbuf_add(out, in + i, 1);
      i++;
    } else if (ch < 0x20 || ch == 0x7f) {
      i++;
    } else {
      size_t k = util_utf8_seq(s + i, n - i);
      bool c1 = k == 2 && ch == 0xc2 && s[i + 1] <= 0x9f; /* C1 control characters */
      if (k && !c1)
        sbuf_add(out, in + i, k);
      i += k ? k : 1;
    }
  }
}

bool ml_continues(const char *line) {
  size_t n = strlen(line), k = 0;
  while (k < n && line[n - 1 - k] == '\\')
    k++;
  return k % 2 == 1;
}

/* One line of text (no '\n' in it) cut to width columns, tabs as 4 spaces. */
static void add_cut(sbuf_t *out, const char *s, size_t n, int width) {
  int w = 0;
  for (size_t i = 0; i < n;) {
    size_t k = util_utf8_seq((const unsigned char *)s + i, n - i);
    k = k ? k : 1;
    int cw = s[i] == '\t' ? 4 : out_width(s + i, k);
    if (w + cw > width - 1 && (w + cw > width || i + k < n)) {
      sbuf_puts(out, "…");
      return;
    }
    if (s[i] == '\t')
      sbuf_puts(out, "    ");
    else
      sbuf_add(out, s + i, k);
    w += cw;
    i += k;
  }
}

void ml_preview(sbuf_t *out, const char *text, int cols, int max_rows, const char *first_prefix,
                const char *cont_prefix, bool end_rows, int *rows) {
  size_t lines = 1;
  for (const char *p = text; (p = strchr(p, '\n')); p++)
    lines++;
  if (max_rows < 3)
    max_rows = 3;
  size_t head = lines <= (size_t)max_rows ? lines : (size_t)max_rows - 2; /* then "… more …" and the last */
  int drawn = 0;
  const char *p = text;
  for (size_t i = 0; i < lines; i++) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    const char *prefix = i == 0 ? first_prefix : cont_prefix;
    bool show = i < head || i == lines - 1, more = !show && i == head;
    if (show || more) {
      if (drawn)
        sbuf_add(out, "\n", 1);
      if (show) {
        sbuf_puts(out, prefix);
        add_cut(out, p, n, cols - out_width(prefix, strlen(prefix)) - 1);
      } else {
        sbuf_printf(out, "%s… %zu more lines …", cont_prefix, lines - head - 1);
      }
      drawn++;
    }
    p = nl ? nl + 1 : p + n;
  }
  if (end_rows)
    sbuf_add(out, "\n", 1);
  *rows = drawn;
}
