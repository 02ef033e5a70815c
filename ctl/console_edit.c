/* console_edit.c: line editing for the console with libedit's native API.
 *
 * libedit runs unbuffered: each call to el_gets reads what one key sent and
 * returns, so the console's loop can poll the broker between keys. A line is
 * complete when el_gets returns it ending in '\n'. The prompt is kept intact
 * by output.c through two hooks: how many rows lie between the prompt's first
 * row and the cursor, and a redraw (EL_REFRESH).
 */
#include <histedit.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "console.h"
#include "util.h"

#define HISTORY_SIZE 1000

struct edit {
  console_t *con;
  EditLine *el;
  History *hist;
  char history_path[PATH_MAX + 32];
  char prompt[512];  /* with \1-delimited escapes for libedit */
  char visible[512]; /* the same without escapes */
  bool line_done;    /* the cursor is one row below the line just entered */
  bool active;       /* the prompt is on screen (not while a line is being run) */
};

static const char *modify_ops[] = {"set_agent", "set_arguments", "set_dependencies", "set_tool",
                                   "set_title", "set_estimate",  "remove_step",      "add_step"};
static const char *template_subs[] = {"save", "list", "run"};

static char *prompt_fn(EditLine *el) {
  edit_t *ed = NULL;
  el_get(el, EL_CLIENTDATA, &ed);
  return ed ? ed->prompt : "> ";
}

static int text_width(const char *s, size_t n) {
  return out_width(s, n);
}

static int rows_above(void *ud) {
  edit_t *ed = ud;
  const LineInfo *li = el_line(ed->el);
  int cols = out_columns(ed->con->out);
  int pw = text_width(ed->visible, strlen(ed->visible));
  if (ed->line_done)
    return (pw + text_width(li->buffer, (size_t)(li->lastchar - li->buffer))) / cols + 1;
  return (pw + text_width(li->buffer, (size_t)(li->cursor - li->buffer))) / cols;
}

static void redraw(void *ud) {
  edit_t *ed = ud;
  el_set(ed->el, EL_REFRESH);
}

/* Sets the prompt text for the console's state into ed->prompt and ed->visible. */
static void set_prompt(edit_t *ed) {
  const char *text = console_prompt_text(ed->con);
  bool color = out_color(ed->con->out);
  snprintf(ed->visible, sizeof ed->visible, "%s", text);
  /* libedit drops escapes after the prompt's last visible character: the
   * reset goes before the final space, or the typed text would be bold. */
  size_t n = strlen(text), head = n && text[n - 1] == ' ' ? n - 1 : n;
  snprintf(ed->prompt, sizeof ed->prompt, "%s%.*s%s%s", color ? "\1\033[1m\1" : "", (int)head, text,
           color ? "\1\033[0m\1" : "", text + head);
}

void edit_update_prompt(edit_t *ed) {
  if (strcmp(ed->visible, console_prompt_text(ed->con)) == 0)
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
  el_source(ed->el, NULL); /* the user's ~/.editrc */
  load_history(ed);
  out_prompt_t hooks = {rows_above, redraw, ed};
  out_set_prompt(con->out, &hooks);
  el_set(ed->el, EL_UNBUFFERED, 1); /* raw mode; draws the prompt */
  ed->active = true;
  out_prompt_visible(con->out, true);
  fflush(stdout);
  return ed;
}

void edit_free(edit_t **self_p) {
  if (!self_p || !*self_p)
    return;
  edit_t *ed = *self_p;
  out_clear_bottom(ed->con->out);
  out_set_prompt(ed->con->out, NULL);
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
  free(ed);
  *self_p = NULL;
}

/* A whole line was entered: echo it above, then run it with the terminal in its normal mode. */
static void line_entered(edit_t *ed, const char *buf, int count) {
  char *line = strndup(buf, (size_t)count - 1);
  out_t *o = ed->con->out;
  ed->line_done = true;
  out_clear_bottom(o);
  ed->line_done = false;
  ed->active = false;
  el_set(ed->el, EL_UNBUFFERED, 0);
  out_printf(o, "%s%s%s%s", out_color(o) ? "\033[1m" : "", ed->visible, out_color(o) ? "\033[0m" : "", line);
  if (line[strspn(line, " ")] && ed->hist) {
    HistEvent ev;
    history(ed->hist, &ev, H_ENTER, line);
  }
  console_line(ed->con, line);
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

void edit_read(edit_t *ed) {
  int count = 0;
  const char *buf = el_gets(ed->el, &count);
  if (!buf && !input_gone())
    return; /* the line is empty now (e.g. Ctrl-U) */
  if (!buf || (count == 1 && buf[0] == 4)) { /* end of input, or Ctrl-D on an empty line */
    ed->con->eof = true;
    ed->con->quit = true;
    return;
  }
  if (count > 0 && buf[count - 1] == '\n')
    line_entered(ed, buf, count);
}

bool edit_has_text(const edit_t *ed) {
  const LineInfo *li = el_line(ed->el);
  return li->lastchar > li->buffer;
}

void edit_clear_line(edit_t *ed) {
  out_t *o = ed->con->out;
  out_clear_bottom(o);
  const LineInfo *li = el_line(ed->el);
  int len = (int)(li->lastchar - li->buffer);
  el_cursor(ed->el, len);
  el_deletestr(ed->el, len);
  out_prompt_visible(o, true);
  out_flush(o);
}

void edit_redraw(edit_t *ed, bool reset_mode) {
  if (reset_mode) {
    el_set(ed->el, EL_PREP_TERM, 0);
    el_set(ed->el, EL_PREP_TERM, 1);
  }
  el_resize(ed->el);
  fputs("\r\033[J", stdout);
  el_set(ed->el, EL_REFRESH);
  fflush(stdout);
}
