/* console_edit.c: line editing for the console with libedit's native API.
 *
 * libedit runs unbuffered: each call to el_gets reads what one key sent and
 * returns, so the console's loop can poll the broker between keys. A line is
 * complete when el_gets returns it ending in '\n'. The prompt is kept intact
 * by output.c through two hooks: how many rows lie between the prompt's first
 * row and the cursor, and a redraw (EL_REFRESH).
 *
 * Several lines make one message: Alt-Enter, a line ending in `\`, or a
 * pasted block (bracketed paste, ESC[200~ ... ESC[201~, read whole by one key
 * binding) move what is before the cursor into a block that waits above the
 * prompt (multiline.h draws it); Enter sends the block and the line together.
 * Keys are read in bursts: everything the terminal has sent is handled before
 * the loop goes back to the broker, so typing or pasting costs no round trip
 * per character.
 */
#include <histedit.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include "commands.h"
#include "console.h"
#include "multiline.h"
#include "util.h"

#define HISTORY_SIZE 1000
#define READ_BURST 200000   /* keys handled before the loop looks at the broker again */
#define PASTE_WAIT_MS 1000  /* a paste whose end does not come within this is taken as it is */
#define BLOCK_ROWS 8        /* rows the waiting block may take above the prompt */
#define ECHO_WHOLE_MAX 2000 /* a message longer than this is echoed cut to the screen's width */
#define ECHO_WHOLE_LINES 20 /* and one of more lines than this, shortened like the block */
#define BURST_MIN 32        /* bytes waiting at once that no one types: taken as one insertion */
#define BRACKETED_PASTE_ON "\033[?2004h"
#define BRACKETED_PASTE_OFF "\033[?2004l"

struct edit {
  console_t *con;
  EditLine *el;
  History *hist;
  char history_path[PATH_MAX + 32];
  char prompt[512];  /* with \1-delimited escapes for libedit */
  char visible[512]; /* the same without escapes */
  char base[512];    /* the console's prompt text (visible is "  … " while a block waits) */
  sbuf_t block;      /* the lines of this message entered so far (several-line input) */
  bool line_done;    /* the cursor is one row below the line just entered */
  bool active;       /* the prompt is on screen (not while a line is being run) */
  bool burst;        /* the paste binding reads a burst of typed text, not a bracketed paste */
  char stop_key;     /* the control key that ended a burst (read, not yet handled); 0: none */
};

static const char *modify_ops[] = {"set_agent", "set_profile",  "set_arguments", "set_dependencies", "set_tool",
                                   "set_title", "set_estimate", "remove_step",   "add_step"};
static const char *template_subs[] = {"save", "list", "run"};

static char *prompt_fn(EditLine *el) {
  edit_t *ed = NULL;
  el_get(el, EL_CLIENTDATA, &ed);
  return ed ? ed->prompt : "> ";
}

static int text_width(const char *s, size_t n) {
  return out_width(s, n);
}

/* The waiting block as rows above the prompt (its last line break is the edited line's). */
static int block_view(const edit_t *ed, sbuf_t *b) {
  if (!ed->block.len)
    return 0;
  const out_t *o = ed->con->out;
  char first[600], *text = strndup(ed->block.s, ed->block.len - (ed->block.s[ed->block.len - 1] == '\n'));
  snprintf(first, sizeof first, "%s%s%s", out_color(o) ? "\033[1m" : "", ed->base, out_color(o) ? "\033[0m" : "");
  int rows = 0;
  ml_preview(b, text ? text : "", out_columns(o), BLOCK_ROWS, first, ed->visible, true, &rows);
  free(text);
  return rows;
}

static int block_rows(const edit_t *ed) {
  sbuf_t b = {0};
  int rows = block_view(ed, &b);
  sbuf_free(&b);
  return rows;
}

static int rows_above(void *ud) {
  edit_t *ed = ud;
  const LineInfo *li = el_line(ed->el);
  int cols = out_columns(ed->con->out);
  int pw = text_width(ed->visible, strlen(ed->visible)), br = block_rows(ed);
  if (ed->line_done)
    return br + (pw + text_width(li->buffer, (size_t)(li->lastchar - li->buffer))) / cols + 1;
  return br + (pw + text_width(li->buffer, (size_t)(li->cursor - li->buffer))) / cols;
}

static void redraw(void *ud) {
  edit_t *ed = ud;
  sbuf_t b = {0};
  if (block_view(ed, &b))
    fwrite(b.s, 1, b.len, stdout);
  sbuf_free(&b);
  el_set(ed->el, EL_REFRESH);
}

/* Sets the prompt text for the console's state into ed->prompt and ed->visible. */
static void set_prompt(edit_t *ed) {
  const char *text = console_prompt_text(ed->con);
  bool color = out_color(ed->con->out);
  snprintf(ed->base, sizeof ed->base, "%s", text);
  char cont[128];
  if (ed->block.len) { /* a continuation: "  … " as wide as the prompt */
    int pad = text_width(text, strlen(text)) - 2;
    snprintf(cont, sizeof cont, "%*s… ", pad > 0 && pad < 100 ? pad : 0, "");
    text = cont;
  }
  snprintf(ed->visible, sizeof ed->visible, "%s", text);
  /* libedit drops escapes after the prompt's last visible character: the
   * reset goes before the final space, or the typed text would be bold. */
  size_t n = strlen(text), head = n && text[n - 1] == ' ' ? n - 1 : n;
  snprintf(ed->prompt, sizeof ed->prompt, "%s%.*s%s%s", color ? "\1\033[1m\1" : "", (int)head, text,
           color ? "\1\033[0m\1" : "", text + head);
}

void edit_update_prompt(edit_t *ed) {
  if (strcmp(ed->base, console_prompt_text(ed->con)) == 0)
    return;
  if (!ed->active) {
    set_prompt(ed);
    return;
  }
  out_clear_bottom(ed->con->out); /* the old prompt, measured with the old text */
  set_prompt(ed);
  out_prompt_visible(ed->con->out, true); /* drawn again at the next flush */
}

/* Candidates for the word being completed: commands, roles or agent ids. */
static json_t *candidates(const edit_t *ed, const char *line, size_t word_start, const char *word) {
  json_t *all = json_array();
  if (word_start == 0 && word[0] == '/') {
    size_t n;
    const cmd_t *t = cmd_table(&n);
    for (size_t i = 0; i < n; i++) {
      char name[64];
      snprintf(name, sizeof name, "/%s", t[i].slash ? t[i].slash : "");
      if (t[i].slash)
        json_array_append_new(all, json_string(name));
    }
  } else if (word_start == 0 && word[0] == '@') {
    const char *id;
    json_t *v;
    json_object_foreach(ed->con->ids, id, v) {
      char at[160];
      snprintf(at, sizeof at, "@%s", id);
      json_array_append_new(all, json_string(at));
    }
  } else if (strncmp(line, "/spawn ", 7) == 0 && word_start >= 7 && !memchr(line + 7, ' ', word_start - 7)) {
    json_array_extend(all, ed->con->roles);
  } else if (strncmp(line, "/template ", 10) == 0 && word_start == 10) {
    for (size_t i = 0; i < sizeof template_subs / sizeof template_subs[0]; i++)
      json_array_append_new(all, json_string(template_subs[i]));
  } else if (strncmp(line, "/modify ", 8) == 0 && word_start > 8 && !memchr(line + 8, ' ', word_start - 9) &&
             line[word_start - 1] == ' ') {
    /* the word after the plan id: the op */
    for (size_t i = 0; i < sizeof modify_ops / sizeof modify_ops[0]; i++)
      json_array_append_new(all, json_string(modify_ops[i]));
  } else if (strncmp(line, "/modify ", 8) == 0 && strstr(line, " set_agent ") &&
             strstr(line, " set_agent ") + 11 < line + word_start) {
    json_array_extend(all, ed->con->roles); /* the value: a role */
  } else if ((strncmp(line, "/stop ", 6) == 0 || strncmp(line, "/history ", 9) == 0 ||
              strncmp(line, "/reset ", 7) == 0) &&
             !memchr(line, ' ', word_start - 1)) {
    const char *id;
    json_t *v;
    json_object_foreach(ed->con->ids, id, v) json_array_append_new(all, json_string(id));
  }
  json_t *out = json_array();
  size_t i, n = strlen(word);
  json_t *c;
  json_array_foreach(all, i, c) if (strncmp(json_string_value(c), word, n) == 0) json_array_append(out, c);
  json_decref(all);
  return out;
}

static size_t common_prefix(const json_t *list) {
  const char *first = json_string_value(json_array_get(list, 0));
  size_t n = strlen(first), i;
  json_t *c;
  json_array_foreach(list, i, c) {
    size_t k = 0;
    const char *s = json_string_value(c);
    while (k < n && s[k] == first[k])
      k++;
    n = k;
  }
  return n;
}

static unsigned char complete(EditLine *el, int ch) {
  (void)ch;
  edit_t *ed = NULL;
  el_get(el, EL_CLIENTDATA, &ed);
  const LineInfo *li = el_line(el);
  size_t cur = (size_t)(li->cursor - li->buffer), ws = cur;
  while (ws > 0 && li->buffer[ws - 1] != ' ')
    ws--;
  char line[1024], word[256];
  snprintf(line, sizeof line, "%.*s", (int)(li->lastchar - li->buffer), li->buffer);
  snprintf(word, sizeof word, "%.*s", (int)(cur - ws), li->buffer + ws);
  json_t *c = candidates(ed, line, ws, word);
  unsigned char rc = CC_REFRESH;
  size_t n = json_array_size(c), wl = strlen(word);
  if (n == 0) {
    rc = CC_REFRESH_BEEP;
  } else if (n == 1) {
    char ins[300];
    snprintf(ins, sizeof ins, "%s ", json_string_value(json_array_get(c, 0)) + wl);
    el_insertstr(el, ins);
  } else if (common_prefix(c) > wl) {
    char ins[300];
    snprintf(ins, sizeof ins, "%.*s", (int)(common_prefix(c) - wl), json_string_value(json_array_get(c, 0)) + wl);
    el_insertstr(el, ins);
  } else {
    sbuf_t b = {0};
    size_t i;
    json_t *s;
    json_array_foreach(c, i, s) sbuf_printf(&b, "%s%s", i ? "  " : "", json_string_value(s));
    out_puts(ed->con->out, sbuf_str(&b));
    sbuf_free(&b);
    out_flush(ed->con->out);
  }
  json_decref(c);
  return rc;
}

/* n wide characters at w as a multibyte string; caller owns the result. */
static char *wide_mb(const wchar_t *w, size_t n) {
  wchar_t *copy = calloc(n + 1, sizeof *copy);
  char *mb = NULL;
  if (copy) {
    wmemcpy(copy, w, n);
    size_t len = wcstombs(NULL, copy, 0);
    mb = len == (size_t)-1 ? NULL : malloc(len + 1);
    if (mb)
      wcstombs(mb, copy, len + 1);
  }
  free(copy);
  return mb ? mb : strdup("");
}

/* The edited text before the cursor, then the n bytes at insert up to their last line break, go to the
 * block; the rest of insert (when short enough) and what was after the cursor stay on the edited line. */
static void split_at_cursor(edit_t *ed, const char *insert, size_t n) {
  const LineInfoW *w = el_wline(ed->el);
  int before = (int)(w->cursor - w->buffer), total = (int)(w->lastchar - w->buffer);
  char *head = wide_mb(w->buffer, (size_t)before), *tail = wide_mb(w->cursor, (size_t)(total - before));
  const char *nl = memrchr(insert, '\n', n);
  size_t to_block = nl && n - (size_t)(nl + 1 - insert) <= ML_INLINE_MAX ? (size_t)(nl + 1 - insert) : n;
  sbuf_puts(&ed->block, head);
  sbuf_add(&ed->block, insert, to_block);
  el_cursor(ed->el, total - before);
  if (total > 0)
    el_deletestr(ed->el, total);
  char *rest = strndup(insert + to_block, n - to_block);
  if (rest && rest[0])
    el_insertstr(ed->el, rest);
  if (tail[0]) {
    el_insertstr(ed->el, tail);
    el_cursor(ed->el, -(total - before));
  }
  free(rest);
  free(head);
  free(tail);
}

/* The block changed while the line is edited (inside a key binding): draw it again. */
static unsigned char block_changed(edit_t *ed, void (*change)(edit_t *ed, const char *s, size_t n), const char *s,
                                   size_t n) {
  out_t *o = ed->con->out;
  out_clear_bottom(o);
  change(ed, s, n);
  set_prompt(ed);
  redraw(ed);
  out_prompt_visible(o, true);
  fflush(stdout);
  return CC_REFRESH;
}

/* Alt-Enter: a line break in the message. */
static unsigned char newline(EditLine *el, int ch) {
  (void)ch;
  edit_t *ed = NULL;
  el_get(el, EL_CLIENTDATA, &ed);
  return block_changed(ed, split_at_cursor, "\n", 1);
}

/* Reads a bracketed paste's bytes up to ESC[201~ (consumed, nothing after it), at most ML_PASTE_MAX kept. */
static void read_paste(sbuf_t *raw, size_t *dropped) {
  const size_t end_len = strlen(ML_PASTE_END);
  char tail[8] = {0};
  for (;;) {
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    char c;
    if (poll(&p, 1, PASTE_WAIT_MS) <= 0 || read(STDIN_FILENO, &c, 1) != 1)
      return;
    memmove(tail, tail + 1, end_len - 1);
    tail[end_len - 1] = c;
    if (raw->len < ML_PASTE_MAX)
      sbuf_add(raw, &c, 1);
    else
      (*dropped)++;
    if (memcmp(tail, ML_PASTE_END, end_len) == 0) {
      if (raw->len >= end_len && memcmp(raw->s + raw->len - end_len, ML_PASTE_END, end_len) == 0)
        raw->len -= end_len;
      else
        *dropped -= *dropped >= end_len ? end_len : *dropped;
      raw->s[raw->len] = '\0';
      return;
    }
  }
}

/* Whether the terminal has sent more than libedit has read. */
static bool input_waiting(void) {
  struct pollfd p = {STDIN_FILENO, POLLIN, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Text typed faster than a person types (a terminal without bracketed paste, or keys sent by a
 * program): the printable bytes waiting, up to the first control key (kept in *stop, for the
 * editor to handle as usual). A character cut at the end of what was waiting is completed. */
static void read_burst(sbuf_t *raw, char *stop) {
  unsigned char c;
  while (raw->len < ML_PASTE_MAX && input_waiting() && read(STDIN_FILENO, &c, 1) == 1) {
    if (c < 0x20 || c == 0x7f) {
      *stop = (char)c;
      return;
    }
    sbuf_add(raw, (const char *)&c, 1);
  }
  size_t start = raw->len;
  while (start > 0 && raw->len - start < 4 && ((unsigned char)raw->s[start - 1] & 0xc0) == 0x80)
    start--;
  if (start > 0 && (unsigned char)raw->s[start - 1] >= 0xc0)
    start--;
  for (int i = 0; i < 3 && start < raw->len && !util_utf8_seq((unsigned char *)raw->s + start, raw->len - start); i++) {
    struct pollfd p = {STDIN_FILENO, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0 || read(STDIN_FILENO, &c, 1) != 1)
      break;
    sbuf_add(raw, (const char *)&c, 1);
  }
}

/* ESC[200~: a pasted block, read whole. One line of modest length joins the edited line; anything
 * else goes to the block, so that it is sent as it was pasted, line breaks and indentation included. */
static unsigned char paste(EditLine *el, int ch) {
  (void)ch;
  edit_t *ed = NULL;
  el_get(el, EL_CLIENTDATA, &ed);
  sbuf_t raw = {0}, text = {0};
  size_t dropped = 0;
  if (ed->burst)
    read_burst(&raw, &ed->stop_key);
  else
    read_paste(&raw, &dropped);
  ml_clean_paste(&text, raw.s ? raw.s : "", raw.len);
  sbuf_free(&raw);
  unsigned char rc = CC_REFRESH;
  if (text.len && !memchr(text.s, '\n', text.len) && text.len <= ML_INLINE_MAX)
    el_insertstr(el, text.s);
  else if (text.len)
    rc = block_changed(ed, split_at_cursor, text.s, text.len);
  if (dropped) {
    out_printf(ed->con->out, "[the paste was cut at %d KiB: %zu bytes were left out]", ML_PASTE_MAX / 1024, dropped);
    out_flush(ed->con->out);
  }
  sbuf_free(&text);
  return rc;
}

static void load_history(edit_t *ed) {
  HistEvent ev;
  ed->hist = history_init();
  if (!ed->hist)
    return;
  history(ed->hist, &ev, H_SETSIZE, HISTORY_SIZE);
  history(ed->hist, &ev, H_SETUNIQUE, 1);
  util_mkdir_p(ed->con->ctl->state_dir, 0700);
  snprintf(ed->history_path, sizeof ed->history_path, "%s/console_history", ed->con->ctl->state_dir);
  history(ed->hist, &ev, H_LOAD, ed->history_path);
  el_set(ed->el, EL_HIST, history, ed->hist);
}

edit_t *edit_new(console_t *con) {
  edit_t *ed = calloc(1, sizeof *ed);
  if (!ed)
    return NULL;
  ed->con = con;
  ed->el = el_init("cadre", stdin, stdout, stderr);
  if (!ed->el) {
    free(ed);
    return NULL;
  }
  set_prompt(ed);
  el_set(ed->el, EL_CLIENTDATA, ed);
  el_set(ed->el, EL_EDITOR, "emacs");
  el_set(ed->el, EL_SIGNAL, 0);
  el_set(ed->el, EL_PROMPT_ESC, prompt_fn, '\1');
  /* el_wset: the narrow EL_ADDFN copies both strings and never frees them */
  el_wset(ed->el, EL_ADDFN, L"cadre-complete", L"complete a command, role or agent id", complete);
  el_set(ed->el, EL_BIND, "^I", "cadre-complete", NULL);
  el_set(ed->el, EL_BIND, "^R", "em-inc-search-prev", NULL);
  el_wset(ed->el, EL_ADDFN, L"cadre-newline", L"a line break in the message", newline);
  el_wset(ed->el, EL_ADDFN, L"cadre-paste", L"a bracketed paste, read whole", paste);
  el_set(ed->el, EL_BIND, "\033\r", "cadre-newline", NULL);
  el_set(ed->el, EL_BIND, "\033\n", "cadre-newline", NULL);
  el_set(ed->el, EL_BIND, ML_PASTE_START, "cadre-paste", NULL);
  el_source(ed->el, NULL); /* the user's ~/.editrc */
  load_history(ed);
  out_prompt_t hooks = {rows_above, redraw, ed};
  out_set_prompt(con->out, &hooks);
  el_set(ed->el, EL_UNBUFFERED, 1); /* raw mode; draws the prompt */
  ed->active = true;
  out_prompt_visible(con->out, true);
  fputs(BRACKETED_PASTE_ON, stdout);
  fflush(stdout);
  return ed;
}

void edit_free(edit_t **self_p) {
  if (!self_p || !*self_p)
    return;
  edit_t *ed = *self_p;
  out_clear_bottom(ed->con->out);
  out_set_prompt(ed->con->out, NULL);
  fputs(BRACKETED_PASTE_OFF, stdout);
  fflush(stdout);
  el_set(ed->el, EL_UNBUFFERED, 0); /* back to the terminal's own mode */
  if (ed->hist) {
    HistEvent ev;
    if (ed->history_path[0])
      history(ed->hist, &ev, H_SAVE, ed->history_path);
    chmod(ed->history_path, 0600);
  }
  el_end(ed->el);
  if (ed->hist)
    history_end(ed->hist);
  sbuf_free(&ed->block);
  free(ed);
  *self_p = NULL;
}

/* Enter on a line ending in `\`: the line (without it) joins the block, and another is edited. */
static void line_continued(edit_t *ed, const char *line) {
  out_t *o = ed->con->out;
  ed->line_done = true;
  out_clear_bottom(o);
  ed->line_done = false;
  el_set(ed->el, EL_UNBUFFERED, 0);
  sbuf_add(&ed->block, line, strlen(line) - 1);
  sbuf_add(&ed->block, "\n", 1);
  set_prompt(ed);
  sbuf_t b = {0};
  block_view(ed, &b);
  fwrite(b.s, 1, b.len, stdout);
  sbuf_free(&b);
  el_set(ed->el, EL_UNBUFFERED, 1);
  out_prompt_visible(o, true);
  fflush(stdout);
}

/* The message as it stays on screen: whole when short, else shortened as the waiting block is. */
static void echo(edit_t *ed, const char *msg) {
  out_t *o = ed->con->out;
  char first[600];
  snprintf(first, sizeof first, "%s%s%s", out_color(o) ? "\033[1m" : "", ed->base, out_color(o) ? "\033[0m" : "");
  int pad = text_width(ed->base, strlen(ed->base)) - 2, rows = 0;
  char cont[128];
  snprintf(cont, sizeof cont, "%*s… ", pad > 0 && pad < 100 ? pad : 0, "");
  size_t lines = 1;
  for (const char *p = msg; (p = strchr(p, '\n')); p++)
    lines++;
  bool whole = strlen(msg) <= ECHO_WHOLE_MAX && lines <= ECHO_WHOLE_LINES;
  sbuf_t b = {0};
  ml_preview(&b, msg, whole ? INT_MAX / 2 : out_columns(o), whole ? INT_MAX / 2 : BLOCK_ROWS, first, cont, true, &rows);
  out_puts(o, sbuf_str(&b));
  sbuf_free(&b);
}

/* A whole line was entered: echo the message above, then run it (the terminal stays in raw mode, so
 * that what is typed meanwhile is not echoed into the output; it waits for the prompt). */
static void line_entered(edit_t *ed, const char *buf, int count) {
  char *line = strndup(buf, (size_t)count - 1);
  out_t *o = ed->con->out;
  if (ml_continues(line)) {
    line_continued(ed, line);
    free(line);
    return;
  }
  ed->line_done = true;
  out_clear_bottom(o);
  ed->line_done = false;
  ed->active = false;
  el_set(ed->el, EL_UNBUFFERED, 0);
  el_set(ed->el, EL_PREP_TERM, 1); /* keys typed meanwhile wait, not echoed, for the prompt */
  sbuf_t msg = {0};
  sbuf_add(&msg, ed->block.s ? ed->block.s : "", ed->block.len);
  sbuf_puts(&msg, line);
  sbuf_reset(&ed->block);
  echo(ed, sbuf_str(&msg));
  if (line[strspn(line, " ")] && ed->hist && !memchr(msg.s, '\n', msg.len)) {
    HistEvent ev;
    history(ed->hist, &ev, H_ENTER, line);
  }
  console_line(ed->con, sbuf_str(&msg));
  sbuf_free(&msg);
  free(line);
  out_flush(o);
  if (!ed->con->quit) {
    set_prompt(ed);
    el_set(ed->el, EL_UNBUFFERED, 1);
    ed->active = true;
    out_prompt_visible(o, true);
    fflush(stdout);
  }
}

/* Whether stdin has hung up (el_gets gives NULL for an empty line too). */
static bool input_gone(void) {
  struct pollfd p = {STDIN_FILENO, POLLIN, 0};
  return poll(&p, 1, 0) < 0 || (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

/* One key (el_gets in unbuffered mode reads what one key sent). */
static void read_key(edit_t *ed) {
  int count = 0;
  const char *buf = el_gets(ed->el, &count);
  if (!buf && !input_gone())
    return;                                  /* the line is empty now (e.g. Ctrl-U) */
  if (!buf || (count == 1 && buf[0] == 4)) { /* end of input, or Ctrl-D on an empty line */
    ed->con->eof = true;
    ed->con->quit = true;
    return;
  }
  if (count > 0 && buf[count - 1] == '\n')
    line_entered(ed, buf, count);
}

/* Whether at least BURST_MIN bytes wait: more than a key sends. */
static bool burst_waiting(void) {
  int avail = 0;
  return ioctl(STDIN_FILENO, FIONREAD, &avail) == 0 && avail >= BURST_MIN;
}

/* A burst goes in through the paste binding (one insertion, one redraw, instead of one per
 * character); the control key that ended it is then handled as the key it is. */
static void read_typed_burst(edit_t *ed) {
  ed->burst = true;
  el_push(ed->el, ML_PASTE_START);
  read_key(ed);
  ed->burst = false;
  if (ed->stop_key && !ed->con->quit) {
    char key[2] = {ed->stop_key == '\n' ? '\r' : ed->stop_key, '\0'};
    ed->stop_key = 0;
    el_push(ed->el, key);
    read_key(ed);
  }
  ed->stop_key = 0;
}

void edit_read(edit_t *ed) {
  for (int i = 0; i < READ_BURST && !ed->con->quit; i++) {
    if (burst_waiting())
      read_typed_burst(ed);
    else
      read_key(ed);
    if (!ed->active || !input_waiting())
      break;
  }
}

bool edit_has_text(const edit_t *ed) {
  const LineInfo *li = el_line(ed->el);
  return li->lastchar > li->buffer || ed->block.len;
}

void edit_clear_line(edit_t *ed) {
  out_t *o = ed->con->out;
  out_clear_bottom(o);
  sbuf_reset(&ed->block);
  set_prompt(ed);
  const LineInfoW *li = el_wline(ed->el);
  int len = (int)(li->lastchar - li->buffer);
  el_cursor(ed->el, len);
  if (len > 0)
    el_deletestr(ed->el, len);
  out_prompt_visible(o, true);
  out_flush(o);
}

void edit_redraw(edit_t *ed, bool reset_mode) {
  if (reset_mode) {
    el_set(ed->el, EL_PREP_TERM, 0);
    el_set(ed->el, EL_PREP_TERM, 1);
    fputs(BRACKETED_PASTE_ON, stdout);
  }
  el_resize(ed->el);
  int above = block_rows(ed); /* the waiting block's rows, drawn again too */
  if (above > 0)
    printf("\r\033[%dA", above);
  fputs("\r\033[J", stdout);
  redraw(ed);
  fflush(stdout);
}

void edit_lend_terminal(edit_t *ed, bool lend) {
  fputs(lend ? BRACKETED_PASTE_OFF : BRACKETED_PASTE_ON, stdout);
  fflush(stdout);
  el_set(ed->el, EL_PREP_TERM, lend ? 0 : 1);
}
