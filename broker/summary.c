/* summary: finds and parses a sub-agent's [SUMMARY] block (see summary.h).
 *
 * The text is searched for the last block, then read line by line: each line
 * is classified (blank, decoration, bullet, plain; with an optional "Label:"
 * and value), a first pass finds which Status and Recommendation lines are the
 * real fields, and a second pass collects the fields and the key points.
 * Everything copied out is valid UTF-8 (invalid bytes become '?') and capped
 * without cutting a multi-byte sequence. */
#include "summary.h"
#include "sbuf.h"
#include "span.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUMMARY_MAX_POINTS 50
#define SUMMARY_MAX_TEXT 2000 /* bytes per key point and for the recommendation */
#define SUMMARY_MAX_RAW (64 * 1024)
#define SUMMARY_MAX_STATUS 32
#define LABEL_MAX 64
#define LABEL_MAX_WORDS 8
#define TAG_MAX 256 /* longest "[SUMMARY from id (role)]" tag accepted */

enum { LN_BLANK, LN_SKIP, LN_BULLET, LN_PLAIN };
enum { LB_NONE, LB_STATUS, LB_REC, LB_KP, LB_OTHER };
enum { ST_BEFORE, ST_BODY, ST_REC };

/* One line of the block, classified. */
typedef struct {
  int kind;
  size_t indent; /* leading blanks, a tab counting 4 */
  span_t line;   /* the trimmed line */
  span_t text;   /* the line without its bullet marker */
  int label;     /* LB_*: what "name: value" names, LB_NONE if not a label line */
  bool strong;   /* the label is the canonical one ("Status", "Recommendation(s)") */
  span_t name, value;
} line_t;

typedef struct {
  sbuf_t status_b, rec_b, cur_b; /* capped: SUMMARY_MAX_STATUS, _TEXT, _TEXT */
  json_t *points;
  bool cur_on;               /* cur holds a key point being built */
  int status_rank, rec_rank; /* rank of the lines that count as the fields */
  bool status_set, pending_status;
  int state;       /* ST_* */
  span_t sec, sub; /* label prefixes of the current section and bullet sub-section */
  bool sec_on, sub_on;
  size_t sub_indent;
  long last_bullet; /* indent of the previous line if it was a bullet, else -1 */
} parser_t;

/* ---- bytes and UTF-8 ---------------------------------------------------- */

/* Length of a symbol or emoji sequence at s (U+2000..U+2FFF, U+1Fxxx, U+FE0F), else 0. */
static size_t symbol_len(const unsigned char *s, size_t n) {
  size_t k = util_utf8_seq(s, n);
  if (k == 3 && (s[0] == 0xE2 || (s[0] == 0xEF && s[1] == 0xB8 && s[2] == 0x8F)))
    return k;
  if (k == 4 && s[0] == 0xF0 && s[1] == 0x9F)
    return k;
  return 0;
}

/* Case-insensitive ASCII prefix test on a NUL-terminated string. */
static bool ihas_prefix(const char *s, const char *prefix) {
  for (; *prefix; s++, prefix++)
    if (to_lower(*s) != *prefix)
      return false;
  return true;
}

/* Trims blanks and newlines at both ends. */
static span_t trim_lines(span_t s) {
  while (s.n && (is_blank(s.p[0]) || s.p[0] == '\n'))
    s.p++, s.n--;
  while (s.n && (is_blank(s.p[s.n - 1]) || s.p[s.n - 1] == '\n'))
    s.n--;
  return s;
}

/* ---- bounded buffers ---------------------------------------------------- */

/* Empties b and caps it at max bytes. */
static void sb_restart(sbuf_t *b, size_t max) {
  sbuf_reset(b);
  b->max = max;
}

static void sb_span(sbuf_t *b, span_t s) {
  sbuf_add_utf8(b, s.p, s.n);
}

static void sb_str(sbuf_t *b, const char *s) {
  sbuf_add_utf8(b, s, strlen(s));
}

/* ---- finding the block -------------------------------------------------- */

static const char *skip_blanks(const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

/* Length of an opening tag at p: "[SUMMARY]" (any case, blanks inside) or "[SUMMARY from ...]"; else 0. */
static size_t open_tag_len(const char *p) {
  const char *q = skip_blanks(p + 1);
  if (!ihas_prefix(q, "summary"))
    return 0;
  const char *r = skip_blanks(q + 7);
  if (*r == ']')
    return (size_t)(r + 1 - p);
  if (r == q + 7 || !ihas_prefix(r, "from") || !is_blank(r[4]))
    return 0;
  for (const char *e = r; *e && *e != '\n' && *e != '[' && e - p < TAG_MAX; e++)
    if (*e == ']')
      return (size_t)(e + 1 - p);
  return 0;
}

/* Length of a closing tag "[/SUMMARY]" (any case, blanks inside) at p, else 0. */
static size_t close_tag_len(const char *p) {
  const char *q = skip_blanks(p + 1);
  if (*q != '/')
    return 0;
  q = skip_blanks(q + 1);
  if (!ihas_prefix(q, "summary"))
    return 0;
  q = skip_blanks(q + 7);
  return *q == ']' ? (size_t)(q + 1 - p) : 0;
}

/* True when p directly follows a closing tag ("[/SUMMARY][SUMMARY]"). */
static bool after_close_tag(const char *text, const char *p) {
  for (const char *q = p - 1; q >= text && p - q <= 16; q--)
    if (*q == '[')
      return close_tag_len(q) == (size_t)(p - q);
  return false;
}

/* True when only blanks or markdown decoration stand between the line start (or a closing tag) and p. */
static bool at_line_start(const char *text, const char *p) {
  while (p > text && strchr(" \t*_>#`", p[-1]))
    p--;
  return p == text || p[-1] == '\n' || (p[-1] == ']' && after_close_tag(text, p));
}

/* Next opening tag at or after from; with line_start, only tags that begin a line. */
static const char *next_open(const char *text, const char *from, bool line_start, size_t *len) {
  for (const char *q = strchr(from, '['); q; q = strchr(q + 1, '['))
    if ((*len = open_tag_len(q)) && (!line_start || at_line_start(text, q)))
      return q;
  return NULL;
}

static const char *next_close(const char *from, size_t *len) {
  for (const char *q = strchr(from, '['); q; q = strchr(q + 1, '['))
    if ((*len = close_tag_len(q)))
      return q;
  return NULL;
}

static bool is_fence(span_t line) {
  line = trim(line);
  return span_has_prefix(line, "```") || span_has_prefix(line, "~~~");
}

/* The line before the one holding p, or an empty span. */
static span_t line_before(const char *text, const char *p) {
  while (p > text && p[-1] != '\n')
    p--;
  if (p == text)
    return (span_t){p, 0};
  const char *e = p - 1, *b = e;
  while (b > text && b[-1] != '\n')
    b--;
  return span_from(b, e);
}

/* End of a block missing its closing tag: the end of the text, or the closing fence when the tag opened inside one. */
static const char *trailing_end(const char *text, const char *tag, const char *body) {
  const char *end = body + strlen(body);
  if (!is_fence(line_before(text, tag)))
    return end;
  for (const char *b = body; b < end;) {
    const char *nl = strchr(b, '\n');
    const char *e = nl ? nl : end;
    if (b != body && is_fence(span_from(b, e)))
      return b;
    b = nl ? nl + 1 : end;
  }
  return end;
}

/* Finds the last complete (or trailing, unclosed) block; tags that begin a line win over tags inside prose. */
static bool find_block(const char *text, span_t *out) {
  size_t olen = 0, clen = 0, l2 = 0;
  bool line_start = next_open(text, text, true, &olen) != NULL;
  bool found = false;
  const char *o, *o2, *p = text;
  while ((o = next_open(text, p, line_start, &olen))) {
    const char *body = o + olen, *c = next_close(body, &clen);
    while ((o2 = next_open(text, body, line_start, &l2)) && (!c || o2 < c))
      o = o2, body = o2 + l2;
    found = true;
    if (!c) {
      *out = span_from(body, trailing_end(text, o, body));
      break;
    }
    *out = span_from(body, c);
    p = c + clen;
  }
  return found;
}

/* ---- labels ------------------------------------------------------------- */

static bool in_list(const char *s, const char *const *list) {
  for (; *list; list++)
    if (strcmp(s, *list) == 0)
      return true;
  return false;
}

/* What a label names: LB_STATUS, LB_REC, LB_KP or LB_OTHER; *strong for the canonical names. */
static int label_kind(span_t name, bool *strong) {
  static const char *const status_strong[] = {"status", "overall status", "final status", NULL};
  static const char *const status_weak[] = {"review status", "test status", "verdict", NULL};
  static const char *const rec_strong[] = {"recommendation", "recommendations", NULL};
  static const char *const rec_weak[] = {"recommended action", "recommended next step", "next step", "next steps",
                                         "next action",        "suggested action",      NULL};
  static const char *const kp[] = {"key points",   "key point",     "key findings", "key finding", "findings",
                                   "issues found", "issues",        "key issues",   "main points", "points",
                                   "highlights",   "key takeaways", "summary",      "details",     NULL};
  char norm[LABEL_MAX + 1];
  *strong = false;
  if (!span_label(name, norm, LABEL_MAX, SPAN_LABEL_PAREN_BLANK))
    return LB_OTHER;
  if ((*strong = in_list(norm, status_strong)) || in_list(norm, status_weak))
    return LB_STATUS;
  if ((*strong = in_list(norm, rec_strong)) || in_list(norm, rec_weak))
    return LB_REC;
  return in_list(norm, kp) ? LB_KP : LB_OTHER;
}

static bool is_word_char(char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '\'' || c == '/' || c == '&' || c == '(' || c == ')';
}

/* End of up to LABEL_MAX_WORDS words starting at p (the first starting with a letter); p if none. */
static const char *scan_words(const char *p, const char *end) {
  const char *ne = p;
  for (int words = 0; words < LABEL_MAX_WORDS && p < end && (is_alpha(*p) || (words && (is_digit(*p) || *p == '(')));
       words++) {
    while (p < end && is_word_char(*p))
      p++;
    ne = p;
    while (p < end && *p == ' ')
      p++;
  }
  return ne;
}

/* Length of a "-", "=", en dash or em dash separator followed by a blank (or the end) at p, else 0. */
static size_t dash_len(const char *p, const char *end) {
  size_t k = 0;
  if (p < end && (*p == '-' || *p == '='))
    k = 1;
  else if (end - p >= 3 && (memcmp(p, "\xe2\x80\x93", 3) == 0 || memcmp(p, "\xe2\x80\x94", 3) == 0))
    k = 3;
  return k && (p + k == end || is_blank(p[k])) ? k : 0;
}

/* Skips up to max decoration characters at p. */
static const char *skip_decor(const char *p, const char *end, size_t max) {
  for (; p < end && max && is_decor(*p); max--)
    p++;
  return p;
}

/* Value after the separator: trimmed, with closing decoration matching the opening one removed. */
static span_t clean_value(const char *p, const char *end, size_t open) {
  span_t v = trim(span_from(p, end));
  for (size_t k = 0; k < open && v.n && is_decor(v.p[v.n - 1]); k++)
    v.n--;
  return trim(v);
}

/* Fills ln->label, name and value when ln->text reads "Label: value" (or a bare known label / heading). */
static void parse_label(line_t *ln) {
  const char *p = ln->text.p, *end = p + ln->text.n;
  bool heading = ln->kind == LN_PLAIN && *p == '#';
  while (p < end && (*p == '#' || *p == ' '))
    p++;
  const char *ns = p;
  while (p < end && is_decor(*p))
    p++;
  size_t open = (size_t)(p - ns);
  ns = p;
  const char *ne = scan_words(p, end);
  if (ne == ns || ne - ns > LABEL_MAX)
    return;
  p = skip_decor(ne, end, open);
  size_t close = (size_t)(p - ne);
  while (p < end && is_blank(*p))
    p++;
  bool strong;
  int kind = label_kind(span_from(ns, ne), &strong);
  if (p < end && *p == ':') {
    p = skip_decor(p + 1, end, open - close);
    if (kind == LB_OTHER && p < end && !is_blank(*p))
      return;
  } else if (kind != LB_OTHER && dash_len(p, end)) {
    p += dash_len(p, end);
  } else if (p != end || !((kind != LB_OTHER && ln->kind == LN_PLAIN) || heading || (open && close))) {
    return;
  }
  ln->label = kind;
  ln->strong = strong;
  ln->name = span_from(ns, ne);
  ln->value = clean_value(p, end, open);
}

/* ---- lines -------------------------------------------------------------- */

/* Length of a bullet marker (-, *, +, •, ‣, ◦, ▪, ●, –, "1." or "1)") at the start of t, else 0. */
static size_t bullet_len(span_t t) {
  static const char *const marks[] = {
      "\xe2\x80\xa2", "\xe2\x80\xa3", "\xe2\x97\xa6", "\xe2\x96\xaa", "\xe2\x97\x8f", "\xe2\x80\x93", NULL};
  if ((t.p[0] == '-' || t.p[0] == '*' || t.p[0] == '+') && t.n > 1 && is_blank(t.p[1]))
    return 1;
  size_t j = 0;
  while (j < t.n && j < 3 && is_digit(t.p[j]))
    j++;
  if (j && j < t.n && (t.p[j] == '.' || t.p[j] == ')') && (j + 1 == t.n || is_blank(t.p[j + 1])))
    return j + 1;
  for (const char *const *m = marks; *m; m++)
    if (span_has_prefix(t, *m))
      return strlen(*m);
  return 0;
}

/* True for lines made only of markdown decoration: rules, lone markers, "**". */
static bool is_decoration(span_t t) {
  for (size_t i = 0; i < t.n; i++)
    if (!strchr("-*_=~#`> \t", t.p[i]))
      return false;
  return true;
}

/* Classifies one line of the block (without its '\n'). */
static void classify(span_t raw, line_t *ln) {
  memset(ln, 0, sizeof *ln);
  size_t i = 0;
  for (; i < raw.n && (raw.p[i] == ' ' || raw.p[i] == '\t'); i++)
    ln->indent += raw.p[i] == '\t' ? 4 : 1;
  span_t t = trim(span_from(raw.p + i, raw.p + raw.n));
  while (t.n && t.p[0] == '>')
    t = trim(span_from(t.p + 1, t.p + t.n));
  ln->line = ln->text = t;
  if (!t.n) {
    ln->kind = LN_BLANK;
    return;
  }
  ln->kind = LN_SKIP;
  if (is_fence(t) || is_decoration(t))
    return;
  size_t m = bullet_len(t);
  ln->text = trim(span_from(t.p + m, t.p + t.n));
  if (!ln->text.n)
    return;
  ln->kind = m ? LN_BULLET : LN_PLAIN;
  parse_label(ln);
  if (ln->kind == LN_PLAIN && t.p[0] == '#' && ln->label == LB_NONE)
    ln->kind = LN_SKIP; /* a heading that is no label, e.g. "## 1. Setup" */
}

/* Calls fn on each line of the block in order. */
static void each_line(span_t block, parser_t *ps, void (*fn)(parser_t *, const line_t *)) {
  const char *p = block.p, *end = block.p + block.n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    line_t ln;
    classify(span_from(p, e), &ln);
    fn(ps, &ln);
    p = nl ? nl + 1 : end;
  }
}

/* ---- status ------------------------------------------------------------- */

/* PASS / FAIL / PARTIAL for a status symbol at s, else NULL. */
static const char *symbol_status(const unsigned char *s, size_t k) {
  static const char *const map[][2] = {
      {"\xe2\x9c\x85", "PASS"},       {"\xe2\x9c\x94", "PASS"},     {"\xe2\x98\x91", "PASS"},
      {"\xf0\x9f\x9f\xa2", "PASS"},   {"\xe2\x9d\x8c", "FAIL"},     {"\xe2\x9c\x96", "FAIL"},
      {"\xe2\x9c\x97", "FAIL"},       {"\xe2\x9c\x98", "FAIL"},     {"\xe2\x9b\x94", "FAIL"},
      {"\xf0\x9f\x94\xb4", "FAIL"},   {"\xf0\x9f\x9a\xab", "FAIL"}, {"\xe2\x9a\xa0", "PARTIAL"},
      {"\xf0\x9f\x9f\xa1", "PARTIAL"}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strlen(map[i][0]) == k && memcmp(s, map[i][0], k) == 0)
      return map[i][1];
  return NULL;
}

/* PASS / FAIL / PARTIAL for a lowercase status word, else NULL. */
static const char *word_status(const char *w) {
  static const char *const pass[] = {"pass", "passed", "passes", "passing",  "success",   "successful", "succeeded",
                                     "ok",   "okay",   "done",   "complete", "completed", "approved",   NULL};
  static const char *const fail[] = {"fail",  "failed", "fails",   "failing",  "failure",
                                     "error", "errors", "blocked", "rejected", NULL};
  static const char *const partial[] = {"partial", "partially", "mixed", "warning", "warnings", NULL};
  return in_list(w, pass) ? "PASS" : in_list(w, fail) ? "FAIL" : in_list(w, partial) ? "PARTIAL" : NULL;
}

/* True at bytes that end a status word: blanks, punctuation but - _ /, symbols, invalid UTF-8. */
static bool is_word_stop(const unsigned char *s, size_t n) {
  char c = (char)s[0];
  if (is_blank(c) || symbol_len(s, n) || !util_utf8_seq(s, n))
    return true;
  return s[0] < 0x80 && !is_alpha(c) && !is_digit(c) && c != '-' && c != '_' && c != '/';
}

/* The next word of v at or after *i, skipping blanks, punctuation and symbols; *sym gets a status symbol met first. */
static span_t next_word(span_t v, size_t *i, const char **sym) {
  const unsigned char *u = (const unsigned char *)v.p;
  *sym = NULL;
  while (*i < v.n && is_word_stop(u + *i, v.n - *i)) {
    size_t k = symbol_len(u + *i, v.n - *i);
    if (k && (*sym = symbol_status(u + *i, k)))
      return (span_t){v.p + *i, 0};
    *i += k ? k : 1;
  }
  size_t b = *i;
  while (*i < v.n && !is_word_stop(u + *i, v.n - *i))
    *i += util_utf8_seq(u + *i, v.n - *i);
  span_t w = span_from(v.p + b, v.p + *i);
  while (w.n && strchr("-_/", w.p[w.n - 1]))
    w.n--;
  return w;
}

/* Lowercase copy of w into out (SUMMARY_MAX_STATUS + 1 bytes); empty if too long. */
static void lower_word(span_t w, char *out) {
  size_t n = w.n <= SUMMARY_MAX_STATUS ? w.n : 0;
  for (size_t i = 0; i < n; i++)
    out[i] = to_lower(w.p[i]);
  out[n] = '\0';
}

/* Normalises a status value into ps->status: PASS, FAIL, PARTIAL, else its first word uppercased. */
static void set_status(parser_t *ps, span_t v) {
  char w1[SUMMARY_MAX_STATUS + 1], w2[SUMMARY_MAX_STATUS + 1];
  const char *sym, *sym2, *st;
  size_t i = 0;
  span_t first = next_word(v, &i, &sym);
  sb_restart(&ps->status_b, SUMMARY_MAX_STATUS);
  if (sym) {
    sb_str(&ps->status_b, sym);
    return;
  }
  lower_word(first, w1);
  lower_word(next_word(v, &i, &sym2), w2);
  if ((!strcmp(w1, "needs") || !strcmp(w1, "need")) && (!strcmp(w2, "work") || !strcmp(w2, "changes")))
    st = "PARTIAL";
  else if ((!strcmp(w1, "not") || !strcmp(w1, "no")) && (st = word_status(w2)) && strcmp(st, "PARTIAL"))
    st = strcmp(st, "PASS") ? "PASS" : "FAIL";
  else
    st = word_status(w1);
  if (st) {
    sb_str(&ps->status_b, st);
    return;
  }
  sb_span(&ps->status_b, first);
  for (size_t k = 0; k < ps->status_b.len; k++)
    if (ps->status_b.s[k] >= 'a' && ps->status_b.s[k] <= 'z')
      ps->status_b.s[k] = (char)(ps->status_b.s[k] - 'a' + 'A');
}

/* ---- key points and recommendation ------------------------------------- */

/* Moves the key point being built into the array. */
static void point_flush(parser_t *ps) {
  if (!ps->cur_on)
    return;
  ps->cur_on = false;
  sbuf_rtrim(&ps->cur_b);
  if (ps->cur_b.len)
    json_array_append_new(ps->points, json_stringn(ps->cur_b.s, ps->cur_b.len));
}

/* Starts a key point "prefix: head: text" (empty parts left out), unless the cap is reached. */
static void point_start(parser_t *ps, span_t prefix, span_t head, span_t text) {
  point_flush(ps);
  if (!text.n || json_array_size(ps->points) >= SUMMARY_MAX_POINTS)
    return;
  sb_restart(&ps->cur_b, SUMMARY_MAX_TEXT);
  span_t parts[] = {prefix, head, text};
  for (size_t i = 0; i < 3; i++) {
    if (!parts[i].n)
      continue;
    if (ps->cur_b.len)
      sb_str(&ps->cur_b, ": ");
    sb_span(&ps->cur_b, parts[i]);
  }
  ps->cur_on = true;
}

/* Appends a wrapped line to the key point being built. */
static void point_more(parser_t *ps, span_t text) {
  sb_str(&ps->cur_b, " ");
  sb_span(&ps->cur_b, text);
}

static void rec_add(parser_t *ps, const char *sep, span_t text) {
  if (!text.n)
    return;
  if (ps->rec_b.len)
    sb_str(&ps->rec_b, sep);
  sb_span(&ps->rec_b, text);
}

/* The label prefix for key points here: the bullet sub-section's, else the section's (none for Key Points). */
static span_t prefix(const parser_t *ps) {
  return ps->sub_on ? ps->sub : ps->sec_on ? ps->sec : (span_t){"", 0};
}

/* ---- the two passes ----------------------------------------------------- */

/* How strongly a line claims to be the Status field: canonical plain > other plain > canonical bullet. */
static int status_rank(const line_t *ln) {
  if (ln->label != LB_STATUS)
    return 0;
  if (ln->kind == LN_PLAIN)
    return ln->strong ? 3 : ln->value.n ? 2 : 0;
  return ln->strong ? 1 : 0;
}

static int rec_rank(const line_t *ln) {
  if (ln->label != LB_REC)
    return 0;
  return ln->kind == LN_PLAIN ? (ln->strong ? 3 : 2) : ln->strong ? 1 : 0;
}

/* First pass: the best-ranked Status and Recommendation lines are the fields. */
static void prescan_line(parser_t *ps, const line_t *ln) {
  if (status_rank(ln) > ps->status_rank)
    ps->status_rank = status_rank(ln);
  if (rec_rank(ln) > ps->rec_rank)
    ps->rec_rank = rec_rank(ln);
}

static void close_sections(parser_t *ps, int state) {
  point_flush(ps);
  ps->state = state;
  ps->sec_on = ps->sub_on = false;
  ps->last_bullet = -1;
}

/* Handles Status, Recommendation and Key Points lines; false for any other line. */
static bool take_field(parser_t *ps, const line_t *ln) {
  if (!ps->status_set && status_rank(ln) && status_rank(ln) == ps->status_rank) {
    close_sections(ps, ST_BODY);
    ps->status_set = true;
    if (ln->value.n)
      set_status(ps, ln->value);
    else
      ps->pending_status = true;
    return true;
  }
  if (rec_rank(ln) && rec_rank(ln) == ps->rec_rank) {
    close_sections(ps, ST_REC);
    rec_add(ps, " ", ln->value);
    return true;
  }
  if (ln->label == LB_KP && (ln->kind == LN_PLAIN || !ln->value.n)) {
    close_sections(ps, ST_BODY);
    ps->sec_on = true;
    ps->sec = (span_t){"", 0};
    point_start(ps, ps->sec, (span_t){"", 0}, ln->value);
    return true;
  }
  return false;
}

/* A label line without a value opens a section whose bullets get the label as prefix. */
static void open_section(parser_t *ps, const line_t *ln) {
  point_flush(ps);
  ps->state = ST_BODY;
  ps->last_bullet = -1;
  if (ln->kind == LN_BULLET) {
    ps->sub_on = true;
    ps->sub = ln->name;
    ps->sub_indent = ln->indent;
  } else {
    ps->sec_on = true;
    ps->sec = ln->name;
    ps->sub_on = false;
  }
}

static void bullet_line(parser_t *ps, const line_t *ln) {
  if (ps->sub_on && ln->indent <= ps->sub_indent)
    ps->sub_on = false;
  ps->state = ST_BODY;
  point_start(ps, prefix(ps), (span_t){"", 0}, ln->text);
  ps->last_bullet = (long)ln->indent;
}

/* A plain line: a wrapped bullet, a "Label: value" point (ending the section), a point in a section, or prose. */
static void plain_line(parser_t *ps, const line_t *ln) {
  if (ps->last_bullet >= 0 && (long)ln->indent > ps->last_bullet && ps->cur_on) {
    point_more(ps, ln->text);
    return;
  }
  ps->last_bullet = -1;
  if (ln->label != LB_NONE && ps->state != ST_BEFORE) {
    ps->sec_on = ps->sub_on = false; /* a sibling of the section's label, not part of it */
    point_start(ps, (span_t){"", 0}, ln->name, ln->value);
  } else if (ps->sec_on || ps->sub_on)
    point_start(ps, prefix(ps), (span_t){"", 0}, ln->text);
}

/* Second pass: one line of the block. */
static void feed_line(parser_t *ps, const line_t *ln) {
  if (ln->kind == LN_BLANK)
    ps->last_bullet = -1;
  if (ln->kind == LN_BLANK || ln->kind == LN_SKIP)
    return;
  if (ps->pending_status) {
    ps->pending_status = false;
    if (ln->label == LB_NONE) {
      set_status(ps, ln->text);
      return;
    }
  }
  if (take_field(ps, ln))
    return;
  if (ps->state == ST_REC)
    rec_add(ps, ln->kind == LN_BULLET ? "\n" : " ", ln->line);
  else if (ln->label != LB_NONE && !ln->value.n)
    open_section(ps, ln);
  else if (ln->kind == LN_BULLET)
    bullet_line(ps, ln);
  else
    plain_line(ps, ln);
}

/* ---- results ------------------------------------------------------------ */

static int set_text(json_t *obj, const char *key, const char *s, size_t n) {
  return json_object_set_new(obj, key, json_stringn(s, n));
}

/* The summary object; takes ps->points. NULL on allocation failure. */
static json_t *build(parser_t *ps, span_t block) {
  json_t *obj = json_object();
  sbuf_t raw = {.max = SUMMARY_MAX_RAW};
  if (!obj) {
    json_decref(ps->points);
    return NULL;
  }
  sb_span(&raw, block);
  sbuf_rtrim(&ps->rec_b);
  int rc = set_text(obj, "status", ps->status_b.len ? ps->status_b.s : "UNKNOWN",
                    ps->status_b.len ? ps->status_b.len : strlen("UNKNOWN"));
  rc |= json_object_set_new(obj, "key_points", ps->points);
  rc |= set_text(obj, "recommendation", sbuf_str(&ps->rec_b), ps->rec_b.len);
  rc |= set_text(obj, "raw", sbuf_str(&raw), raw.len);
  sbuf_free(&raw);
  if (rc) {
    json_decref(obj);
    return NULL;
  }
  return obj;
}

/* Parses the last summary block in text (see summary.h). */
json_t *summary_parse(const char *text) {
  span_t block;
  if (!text || !find_block(text, &block))
    return NULL;
  block = trim_lines(block);
  parser_t *ps = calloc(1, sizeof *ps);
  if (!ps)
    return NULL;
  sb_restart(&ps->status_b, SUMMARY_MAX_STATUS);
  sb_restart(&ps->rec_b, SUMMARY_MAX_TEXT);
  sb_restart(&ps->cur_b, SUMMARY_MAX_TEXT);
  ps->last_bullet = -1;
  ps->points = json_array();
  json_t *out = NULL;
  if (ps->points) {
    each_line(block, ps, prescan_line);
    each_line(block, ps, feed_line);
    point_flush(ps);
    out = build(ps, block);
  }
  sbuf_free(&ps->status_b);
  sbuf_free(&ps->rec_b);
  sbuf_free(&ps->cur_b);
  free(ps);
  return out;
}

/* A FAIL summary whose one key point is reason (see summary.h). */
json_t *summary_failed(const char *reason) {
  sbuf_t b = {.max = SUMMARY_MAX_TEXT};
  sb_str(&b, reason && reason[0] ? reason : "the agent gave no summary");
  json_t *out = json_pack("{s:s, s:[s%], s:s, s:s}", "status", "FAIL", "key_points", sbuf_str(&b), b.len,
                          "recommendation", "", "raw", "");
  sbuf_free(&b);
  return out;
}
/* Writes s with every line after the first indented by indent. */
static void put_lines(FILE *f, const char *s, const char *indent) {
  for (; *s; s++) {
    fputc(*s, f);
    if (*s == '\n')
      fputs(indent, f);
  }
}

static const char *get_str(const json_t *obj, const char *key, const char *fallback) {
  const char *s = json_string_value(json_object_get(obj, key));
  return s && s[0] ? s : fallback;
}

/* The block for the main agent's history: labelled with id and role, in the seed's format. */
char *summary_render(const char *id, const char *role, const json_t *summary) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  fprintf(f, "[SUMMARY from %s", id && id[0] ? id : "agent");
  if (role && role[0])
    fprintf(f, " (%s)", role);
  fprintf(f, "]\nStatus: %s\nKey Points:\n", get_str(summary, "status", "UNKNOWN"));
  size_t i;
  const json_t *kp;
  json_array_foreach(json_object_get(summary, "key_points"), i, kp) {
    if (!json_is_string(kp))
      continue;
    fputs("- ", f);
    put_lines(f, json_string_value(kp), "  ");
    fputc('\n', f);
  }
  const char *rec = get_str(summary, "recommendation", "");
  fprintf(f, "Recommendation:%s", rec[0] ? " " : "");
  fputs(rec, f);
  fputs("\n[/SUMMARY]", f);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
