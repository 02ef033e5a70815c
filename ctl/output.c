/* output.c: the multiplexed display (see output.h). */
#include "output.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include "render.h"
#include "sbuf.h"
#include "util.h"

#define RESET "\033[0m"
#define DIM "\033[2m"
#define PART_MAX 8192 /* an unfinished line longer than this is printed anyway */
#define STATUS_MAX 6  /* status rows of other agents' unfinished lines; more are counted in one row */

typedef struct {
  char id[128];
  char role[64];
  sbuf_t part;     /* unfinished line */
  bool thinking;   /* kind of the unfinished line */
  bool in_summary; /* between [SUMMARY] and [/SUMMARY]: not printed, the summary event shows it formatted */
} agent_t;

struct out {
  FILE *f;
  bool color, term;
  out_prompt_t prompt;
  bool has_prompt, prompt_shown;
  agent_t *agents;
  size_t n, cap;
  int idw;        /* widest id, for aligned prefixes */
  sbuf_t pending; /* whole lines not yet written */
  char live[128]; /* the agent shown live ("" none) */
  int live_rows;  /* rows the live region occupies on screen */
  bool dirty;     /* the live region changed */
};

static const struct {
  const char *role, *emoji, *color;
} roles[] = {{"main", "🧠", "\033[1m"},         {"reviewer", "🔍", "\033[33m"},  {"researcher", "📚", "\033[34m"},
             {"implementer", "🛠", "\033[32m"}, {"tester", "🧪", "\033[35m"}, {"optimizer", "⚡", "\033[36m"}};

/* Roles the config adds get one of these, picked by a hash of the name. */
static const char *other_colors[] = {"\033[91m", "\033[92m", "\033[93m", "\033[94m", "\033[95m", "\033[96m"};

const char *out_role_emoji(const char *role) {
  for (size_t i = 0; role && i < sizeof roles / sizeof roles[0]; i++)
    if (strcmp(role, roles[i].role) == 0)
      return roles[i].emoji;
  return "🤖";
}

const char *out_role_color(const out_t *o, const char *role) {
  if (!o->color)
    return "";
  for (size_t i = 0; role && i < sizeof roles / sizeof roles[0]; i++)
    if (strcmp(role, roles[i].role) == 0)
      return roles[i].color;
  unsigned h = 5381;
  for (const char *p = role ? role : ""; *p; p++)
    h = h * 33u + (unsigned char)*p;
  return other_colors[h % (sizeof other_colors / sizeof other_colors[0])];
}

bool out_color(const out_t *o) {
  return o->color;
}

int out_width(const char *s, size_t len) {
  mbstate_t st;
  memset(&st, 0, sizeof st);
  int w = 0;
  size_t i = 0;
  while (i < len) {
    if (s[i] == '\033') { /* CSI ... final byte */
      i++;
      if (i < len && s[i] == '[') {
        i++;
        while (i < len && !(s[i] >= 0x40 && s[i] <= 0x7e))
          i++;
      }
      i++;
      continue;
    }
    wchar_t wc;
    size_t n = mbrtowc(&wc, s + i, len - i, &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
      memset(&st, 0, sizeof st);
      w++;
      i++;
      continue;
    }
    int cw = wcwidth(wc);
    w += cw > 0 ? cw : 0;
    i += n;
  }
  return w;
}

int out_columns(const out_t *o) {
  struct winsize ws;
  if (o->term && ioctl(fileno(o->f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

static int screen_rows(const out_t *o) {
  struct winsize ws;
  if (o->term && ioctl(fileno(o->f), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0)
    return ws.ws_row;
  return 24;
}

out_t *out_new(FILE *f, bool color, bool term) {
  out_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->f = f;
  o->color = color;
  o->term = term;
  o->idw = 4;
  return o;
}

void out_free(out_t **self_p) {
  if (!self_p || !*self_p)
    return;
  out_t *o = *self_p;
  for (size_t i = 0; i < o->n; i++)
    sbuf_free(&o->agents[i].part);
  free(o->agents);
  sbuf_free(&o->pending);
  free(o);
  *self_p = NULL;
}

void out_set_prompt(out_t *o, const out_prompt_t *p) {
  o->has_prompt = p != NULL;
  if (p)
    o->prompt = *p;
}

void out_prompt_visible(out_t *o, bool visible) {
  o->prompt_shown = visible && o->has_prompt;
}

void out_set_live(out_t *o, const char *id) {
  snprintf(o->live, sizeof o->live, "%s", o->term && id ? id : "");
  o->dirty = true;
}

/* The role an id implies when nobody said: "reviewer-2" -> "reviewer". */
static void role_from_id(const char *id, char *role, size_t len) {
  size_t n = strnlen(id, len - 1);
  memcpy(role, id, n);
  role[n] = '\0';
  char *dash = strrchr(role, '-');
  if (dash && dash[1] && strspn(dash + 1, "0123456789") == strlen(dash + 1))
    *dash = '\0';
}

static agent_t *agent(out_t *o, const char *id) {
  for (size_t i = 0; i < o->n; i++)
    if (strcmp(o->agents[i].id, id) == 0)
      return &o->agents[i];
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 8;
    agent_t *a = realloc(o->agents, cap * sizeof *a);
    if (!a)
      abort();
    o->agents = a;
    o->cap = cap;
  }
  agent_t *a = &o->agents[o->n++];
  memset(a, 0, sizeof *a);
  snprintf(a->id, sizeof a->id, "%s", id);
  role_from_id(a->id, a->role, sizeof a->role);
  int w = out_width(a->id, strlen(a->id));
  if (w > o->idw && w <= 24)
    o->idw = w;
  return a;
}

void out_agent(out_t *o, const char *id, const char *role) {
  if (id && role)
    snprintf(agent(o, id)->role, sizeof agent(o, id)->role, "%s", role);
}

static void add_prefix(out_t *o, sbuf_t *b, const agent_t *a) {
  const char *emoji = out_role_emoji(a->role);
  int pad = o->idw - out_width(a->id, strlen(a->id));
  const char *epad = out_width(emoji, strlen(emoji)) < 2 ? " " : "";
  if (o->color)
    sbuf_printf(b, "%s%s%s %s%*s" RESET " " DIM "│" RESET " ", out_role_color(o, a->role), emoji, epad, a->id,
                pad > 0 ? pad : 0, "");
  else
    sbuf_printf(b, "%s%s %s%*s │ ", emoji, epad, a->id, pad > 0 ? pad : 0, "");
}

/* Copies text that came from a model, without terminal control characters. */
static void add_clean(sbuf_t *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\t')
      sbuf_add(b, "    ", 4);
    else if (ch < 0x20 || ch == 0x7f)
      continue;
    else if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f)
      i++; /* a C1 control character */
    else
      sbuf_add(b, s + i, 1);
  }
}

const char *out_style_start(bool color, out_style_t style) {
  if (!color)
    return "";
  switch (style) {
  case OUT_DIM: return DIM;
  case OUT_BOLD: return "\033[1m";
  case OUT_ERROR: return "\033[1;31m";
  case OUT_GOOD: return "\033[1;32m";
  case OUT_WARN: return "\033[1;33m";
  default: return "";
  }
}

/* One whole line of agent a into b. */
static void format_line(out_t *o, sbuf_t *b, const agent_t *a, out_style_t style, bool thinking, const char *text,
                        size_t n) {
  add_prefix(o, b, a);
  if (thinking) {
    sbuf_puts(b, render_thinking_mark(o->color));
    style = OUT_DIM;
  } else {
    sbuf_puts(b, out_style_start(o->color, style));
  }
  add_clean(b, text, n);
  if (o->color && style != OUT_PLAIN)
    sbuf_puts(b, RESET);
  sbuf_add(b, "\n", 1);
}

/* Whether n bytes at s hold nothing but spaces. */
static bool blank(const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\t'))
    s++, n--;
  return n == 0;
}

/* A whole line of streamed text: printed, except inside a [SUMMARY] block (the summary
 * event shows it once, formatted); text before [SUMMARY] or after [/SUMMARY] is kept. */
static void emit_part(out_t *o, agent_t *a) {
  const char *text = sbuf_str(&a->part);
  bool sub = strcmp(a->id, "main") != 0; /* only a sub-agent's summary has an event of its own */
  const char *open = a->thinking || !sub ? NULL : strcasestr(text, "[SUMMARY]");
  const char *close = a->thinking ? NULL : strcasestr(open ? open : text, "[/SUMMARY]");
  size_t n = a->part.len;
  if (open) {
    if (!a->in_summary && !blank(text, (size_t)(open - text)))
      format_line(o, &o->pending, a, OUT_PLAIN, false, text, (size_t)(open - text));
    a->in_summary = true;
  } else if (!a->in_summary || a->thinking) {
    format_line(o, &o->pending, a, OUT_PLAIN, a->thinking, text, n);
  }
  if (close && a->in_summary) {
    a->in_summary = false;
    const char *after = close + strlen("[/SUMMARY]");
    if (!blank(after, n - (size_t)(after - text)))
      format_line(o, &o->pending, a, OUT_PLAIN, false, after, n - (size_t)(after - text));
  }
  sbuf_reset(&a->part);
  o->dirty |= o->term;
}

void out_delta(out_t *o, const char *id, bool thinking, const char *text) {
  agent_t *a = agent(o, id);
  if (a->part.len && a->thinking != thinking)
    emit_part(o, a);
  a->thinking = thinking;
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    sbuf_add(&a->part, p, n);
    if (nl || a->part.len > PART_MAX)
      emit_part(o, a);
    p += n + (nl ? 1 : 0);
  }
  o->dirty |= o->term; /* its live line changed */
}

void out_end_line(out_t *o, const char *id) {
  agent_t *a = agent(o, id);
  if (a->part.len)
    emit_part(o, a);
  a->in_summary = false;
}

void out_drop_line(out_t *o, const char *id) {
  agent_t *a = agent(o, id);
  sbuf_reset(&a->part);
  o->dirty |= o->term;
}

void out_agent_line(out_t *o, const char *id, out_style_t style, const char *fmt, ...) {
  sbuf_t text = {0};
  va_list ap;
  va_start(ap, fmt);
  sbuf_vprintf(&text, fmt, ap);
  va_end(ap);
  agent_t *a = agent(o, id);
  if (a->part.len) /* its unfinished line first: a message never splits it */
    emit_part(o, a);
  const char *p = sbuf_str(&text);
  for (;;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (n || nl)
      format_line(o, &o->pending, a, style, false, p, n);
    if (!nl)
      break;
    p = nl + 1;
  }
  sbuf_free(&text);
}

void out_puts(out_t *o, const char *text) {
  sbuf_puts(&o->pending, text);
  if (o->pending.len && o->pending.s[o->pending.len - 1] != '\n')
    sbuf_add(&o->pending, "\n", 1);
}

void out_printf(out_t *o, const char *fmt, ...) {
  sbuf_t text = {0};
  va_list ap;
  va_start(ap, fmt);
  sbuf_vprintf(&text, fmt, ap);
  va_end(ap);
  out_puts(o, sbuf_str(&text));
  sbuf_free(&text);
}

static void erase_bottom(out_t *o) {
  int up = o->live_rows + (o->prompt_shown ? o->prompt.rows_above(o->prompt.ud) : 0);
  if (!o->prompt_shown && o->live_rows == 0)
    return;
  if (up > 0)
    fprintf(o->f, "\r\033[%dA\033[J", up);
  else
    fputs("\r\033[J", o->f);
  if (o->color)
    fputs(RESET, o->f); /* whatever the prompt left set */
  o->live_rows = 0;
}

/* Keeps the live region small: a long unfinished line is printed up to its
 * last space, the rest stays live. */
static void trim_live(out_t *o, agent_t *a) {
  int cols = out_columns(o), max_rows = screen_rows(o) / 3;
  if (max_rows < 1)
    max_rows = 1;
  int w = o->idw + 6 + out_width(a->part.s, a->part.len);
  if (w <= cols * max_rows)
    return;
  char *cut = a->part.s + a->part.len / 2;
  char *space = memrchr(a->part.s, ' ', a->part.len);
  if (space && space > a->part.s)
    cut = space;
  size_t keep_from = (size_t)(cut - a->part.s) + (*cut == ' ' ? 1 : 0);
  format_line(o, &o->pending, a, OUT_PLAIN, a->thinking, a->part.s, (size_t)(cut - a->part.s));
  memmove(a->part.s, a->part.s + keep_from, a->part.len - keep_from + 1);
  a->part.len -= keep_from;
}

/* The last columns of n bytes at s that fit width, after "…" when cut. */
static void add_tail(sbuf_t *b, const char *s, size_t n, int width) {
  int w = out_width(s, n);
  size_t i = 0;
  if (w > width) {
    sbuf_puts(b, "…");
    while (i < n && w > width - 1) {
      size_t k = util_utf8_seq((const unsigned char *)s + i, n - i);
      k = k ? k : 1;
      w -= out_width(s + i, k);
      i += k;
    }
  }
  add_clean(b, s + i, n - i);
}

/* One row per other agent whose line is unfinished (its current line, as a multiplexed tail
 * shows it), above the live agent's region; returns the rows drawn into b. */
static int status_rows(out_t *o, sbuf_t *b) {
  int rows = 0, more = 0, cols = out_columns(o);
  for (size_t i = 0; i < o->n; i++) {
    agent_t *a = &o->agents[i];
    if (!a->part.len || strcmp(a->id, o->live) == 0 || (a->in_summary && !a->thinking))
      continue;
    if (rows == STATUS_MAX) {
      more++;
      continue;
    }
    size_t start = b->len;
    add_prefix(o, b, a);
    int pw = out_width(b->s + start, b->len - start);
    sbuf_puts(b, a->thinking ? render_thinking_mark(o->color) : out_style_start(o->color, OUT_DIM));
    add_tail(b, a->part.s, a->part.len, cols - pw - 2);
    sbuf_puts(b, o->color ? RESET "\n" : "\n");
    rows++;
  }
  if (more) {
    sbuf_printf(b, "%s… %d more agents are writing%s\n", o->color ? DIM : "", more, o->color ? RESET : "");
    rows++;
  }
  return rows;
}

void out_flush(out_t *o) {
  agent_t *live = o->live[0] ? agent(o, o->live) : NULL;
  bool show_live = o->term && live && live->part.len;
  if (!o->pending.len && !o->dirty)
    return;
  if (show_live)
    trim_live(o, live);
  erase_bottom(o);
  fwrite(sbuf_str(&o->pending), 1, o->pending.len, o->f);
  sbuf_reset(&o->pending);
  if (o->term) {
    sbuf_t st = {0};
    o->live_rows += status_rows(o, &st);
    fwrite(st.s ? st.s : "", 1, st.len, o->f);
    sbuf_free(&st);
  }
  if (show_live) {
    sbuf_t b = {0};
    format_line(o, &b, live, OUT_PLAIN, live->thinking, live->part.s, live->part.len);
    int cols = out_columns(o), w = out_width(b.s, b.len - 1);
    o->live_rows += w > 0 ? (w + cols - 1) / cols : 1;
    fwrite(b.s, 1, b.len, o->f);
    sbuf_free(&b);
  }
  if (o->prompt_shown)
    o->prompt.redraw(o->prompt.ud);
  fflush(o->f);
  o->dirty = false;
}

void out_clear_bottom(out_t *o) {
  erase_bottom(o);
  o->prompt_shown = false;
  o->dirty = true;
  fflush(o->f);
}
