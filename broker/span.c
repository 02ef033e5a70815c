/* span.c: the text readers the plan and summary parsers share (see span.h). */
#include "span.h"

bool span_label(span_t name, char *out, size_t max, unsigned flags) {
  size_t n = 0;
  int depth = 0;
  for (size_t i = 0; i < name.n; i++) {
    char c = name.p[i] == '-' || name.p[i] == '_' ? ' ' : to_lower(name.p[i]);
    if (c == '(' || c == ')') {
      depth += c == '(' ? 1 : -1;
      if (!(flags & SPAN_LABEL_PAREN_BLANK))
        continue;
      c = ' ';
    }
    if (depth > 0 || (c == '.' && (flags & SPAN_LABEL_NO_DOTS)) || (c == ' ' && (n == 0 || out[n - 1] == ' ')))
      continue;
    if (n == max)
      return false;
    out[n++] = c;
  }
  while (n && out[n - 1] == ' ')
    n--;
  out[n] = '\0';
  return true;
}
