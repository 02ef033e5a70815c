/* commands: the one table of cadre's commands (the redis commands.def idea).
 *
 * Each entry names a command for `cadre NAME` and for `/NAME` in the console,
 * the broker verb it asks, its usage and help, the parser that turns its
 * words into the verb's arguments, and the renderer of the result (format.h).
 * Two drivers follow the table: cmd_run (cadre NAME ...) and the console's
 * command interpreter (console_cmds.c); `cadre --help`, `cadre NAME --help`
 * and the console's /help are generated from it. A command that is more than
 * one request (ask, watch, up, ...) names its own runner instead.
 */
#ifndef CADRE_COMMANDS_H
#define CADRE_COMMANDS_H

#include <stddef.h>

#include "ctl.h"
#include "format.h"
#include "sbuf.h"

typedef struct console console_t;

/* The words after a command's name. */
typedef struct {
  int n;
  char **w;    /* w[i]: word i */
  char **rest; /* rest[i]: the text from word i on (console: as typed; cadre: the words joined by spaces) */
} cmd_words_t;

/* Options a command takes on cadre's command line (--json always). */
enum {
  CMD_OPT_WAIT = 1,
  CMD_OPT_NO_ROLLBACK = 2,
  CMD_OPT_BUDGET = 4, /* --budget-tokens N, --budget-cost USD: the words budget_tokens N, budget_cost USD */
};

/* A request made from a command's words. */
typedef struct {
  const char *verb; /* the broker verb: the entry's, or one its parser picked */
  json_t *args;     /* its arguments (owned; NULL: none) */
  unsigned opts;    /* CMD_OPT_ options given */
  char error[256];  /* why the words were refused; "" to show the usage */
} cmd_req_t;

typedef struct cmd cmd_t;

struct cmd {
  const char *name;  /* cadre NAME; NULL: the console only */
  const char *slash; /* /NAME in the console; NULL: cadre only */
  const char *alias; /* another console name, not listed by /help */
  const char *verb;  /* the broker verb; NULL: the parser picks it (or there is none) */
  unsigned opts;     /* CMD_OPT_ options cadre NAME takes */
  const char *usage; /* cadre's arguments: "[--wait] ROLE TASK" */
  const char *args;  /* the console's arguments: "<role> <task>" */
  const char *help;  /* one line for cadre --help and /help */
  const char *hint;  /* after the console's usage line: an example, or more */
  /* Words to the request; 0, or -1 when they make none (req->error may say why). */
  int (*parse)(const cmd_words_t *w, cmd_req_t *req);
  format_fn *show; /* the result for people */
  /* cadre NAME done its own way (argv[0] is NAME); the exit status. */
  int (*run)(ctl_t *ctl, int argc, char **argv);
  /* cadre NAME --wait: follows what the request started (r: its result); the exit status. */
  int (*wait)(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r);
  /* /NAME done by the console itself (no request). */
  void (*local)(console_t *con, const cmd_words_t *w);
};

/* The table; *n gets its length. */
const cmd_t *cmd_table(size_t *n);
/* The command cadre NAME runs, or NULL. */
const cmd_t *cmd_find(const char *name);
/* The command /name runs (name without the slash; aliases too), or NULL. */
const cmd_t *cmd_find_slash(const char *name);

/* The words of a console line. Free with cmd_words_free. */
void cmd_words_line(cmd_words_t *w, const char *line);
/* cadre NAME's words (argv[0] is NAME): options go to req->opts (and --json
 * to *json); 0, or -1 for an option c does not take (req->error says which). */
int cmd_words_argv(cmd_words_t *w, const cmd_t *c, int argc, char **argv, cmd_req_t *req, bool *json);
void cmd_words_free(cmd_words_t *w);

/* Parses w for c into req (verb and args); 0, or -1 (cmd_refusal says why). */
int cmd_parse(const cmd_t *c, const cmd_words_t *w, cmd_req_t *req);
/* Frees what req holds. */
void cmd_req_clear(cmd_req_t *req);
/* "usage: cadre spawn [--wait] ROLE TASK" or "usage: /spawn <role> <task>   e.g. ..." (one line or more, no final newline). */
void cmd_usage(sbuf_t *b, const cmd_t *c, bool console);
/* What to tell the user about words that were refused: req->error, else the usage. */
void cmd_refusal(sbuf_t *b, const cmd_t *c, const cmd_req_t *req, bool console);
/* The list of commands for cadre --help (console false) or the console's /help. */
void cmd_help(sbuf_t *b, bool console);

/* cadre NAME ARGS (argv[0] is NAME): parse, ask, show; the exit status. */
int cmd_run(ctl_t *ctl, const cmd_t *c, int argc, char **argv);
/* Prints a command's result on stdout: JSON with --json, else its renderer's text. */
void cmd_print(const ctl_t *ctl, const cmd_t *c, const cmd_req_t *req, const json_t *r);

/* Runners and followers the table names (cmd_*.c, cluster.c, console*.c). */
int cmd_spawn_wait(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r);
int cmd_send_wait(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r);
int cmd_approve_wait(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r);
int cmd_keygen(ctl_t *ctl, int argc, char **argv);
int cmd_replay_diff(ctl_t *ctl, int argc, char **argv);
int cmd_budget(ctl_t *ctl, int argc, char **argv);
/* cadre dashboard: the web dashboard's address with its token (opened when a display is there). */
int cmd_dashboard(ctl_t *ctl, int argc, char **argv);
void console_stream(console_t *con, const cmd_words_t *w);
void console_thinking(console_t *con, const cmd_words_t *w);
void console_help(console_t *con, const cmd_words_t *w);
void console_exit(console_t *con, const cmd_words_t *w);

#endif
