/* console: the interactive console (`cadre` with no command).
 *
 * One loop (console.c) polls the broker socket and stdin together. On a
 * terminal, the line editor (console_edit.c, libedit) reads keys one at a
 * time so that output can arrive while the user types; otherwise lines are
 * read from stdin (scripts can pipe commands in). Lines go to the command
 * interpreter (console_cmds.c); broker messages to the view (view.c) on the
 * multiplexed display (output.c).
 */
#ifndef CADRE_CONSOLE_H
#define CADRE_CONSOLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctl.h"
#include "output.h"
#include "sbuf.h"
#include "view.h"

typedef struct edit edit_t;

typedef struct console {
  ctl_t *ctl;
  client_t *c;
  out_t *out;
  view_t *view;
  edit_t *ed; /* the line editor; NULL when stdin or stdout is not a terminal */
  bool quit;
  int64_t main_turn; /* the main agent's running (or queued) turn, 0: none */
  bool cancel_sent;  /* for main_turn */
  int64_t chain;     /* our question's turn, followed through delegation; 0: answered */
  bool delegating;   /* the main agent waits for sub-agents' summaries */
  int64_t last_int_ms;
  json_t *ids;        /* agent id -> role, for completion and prefixes */
  json_t *roles;      /* role names the config offers */
  json_t *status;     /* sub-agent id -> its last status (queued, running, idle, done, ...) */
  json_t *questions;  /* waiting for an answer: {"q": "spawn", proposal...}, {"q": "tool", turn, seq, call_id}
                      * (y/n) or {"q": "plan", id} (a/r/m/v) */
  json_t *mine;       /* sub-agents this console spawned that have not reported yet */
  sbuf_t in;          /* stdin bytes not yet a whole line (no line editor) */
  bool stream_chosen; /* /stream was used: each ask says whether the model streams */
  bool eof;
} console_t;

/* The question a valid proposed plan asks ({"q": "plan", "id": ...} in questions). */
#define CONSOLE_PLAN_PROMPT "Your decision [A]pprove / [R]eject / [M]odify / [V]iew: "
#define CONSOLE_TOOL_PROMPT "allow it? [y] once, [a] this session, [n] no: "

/* console_cmds.c */
/* Interprets one line the user entered (a command, @id text, or a question). */
void console_line(console_t *con, const char *line);
/* A request whose failure is shown on the console; NULL then. args is taken. */
json_t *console_request(console_t *con, const char *verb, json_t *args);
/* The prompt text for the current state (a question about a proposal, or the normal prompt). */
const char *console_prompt_text(const console_t *con);

/* console_edit.c */
/* Sets up libedit on the terminal (history from <state dir>/console_history). */
edit_t *edit_new(console_t *con);
/* Saves the history and gives the terminal back. */
void edit_free(edit_t **self_p);
/* Reads what the terminal has for us; whole lines go to console_line. */
void edit_read(edit_t *ed);
/* Shows the prompt for the console's current state. */
void edit_update_prompt(edit_t *ed);
/* True when the user has typed something not yet entered. */
bool edit_has_text(const edit_t *ed);
/* Throws away the text being typed. */
void edit_clear_line(edit_t *ed);
/* Lends the terminal to another program (its own mode, no bracketed paste), or takes it back. */
void edit_lend_terminal(edit_t *ed, bool lend);
/* Draws the prompt again: the terminal changed size, or (reset_mode) the
 * program was continued after Ctrl-Z and the terminal's mode must be set again. */
void edit_redraw(edit_t *ed, bool reset_mode);

#endif
