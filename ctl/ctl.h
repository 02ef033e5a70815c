/* ctl: the cadre command. Shared state of one invocation and the subcommands. */
#ifndef CADRE_CTL_H
#define CADRE_CTL_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>

#include "client.h"

typedef struct {
  const char *broker; /* endpoint, or NULL: the local cluster */
  const char *key_file;
  const char *broker_key;
  const char *config; /* for cadre up / the local cluster */
  bool json;
  bool color;               /* stdout is a TTY and NO_COLOR is unset */
  int timeout_ms;           /* for requests */
  char workspace[PATH_MAX]; /* local cluster: the directory our turns run in ("" otherwise) */
  char state_dir[PATH_MAX];
  char keybuf[PATH_MAX + 32], pubbuf[PATH_MAX + 32], epbuf[PATH_MAX + 32];
} ctl_t;

/* Connects to the broker (starting the local cluster first when no broker
 * was given and none runs). Prints the error and returns NULL on failure. */
client_t *ctl_connect(ctl_t *ctl);
/* One request, printing errors; caller owns the result. */
json_t *ctl_request(ctl_t *ctl, client_t *c, const char *verb, json_t *args);
/* Connects, asks one verb, disconnects; the result (caller owns) or NULL, error printed. args is taken. */
json_t *ctl_once(ctl_t *ctl, const char *verb, json_t *args);
/* Prints a JSON value on one line to stdout. */
void ctl_print_json(const json_t *v);
/* Reports an error: plain to stderr, or as {"error":...} with --json. */
void ctl_error(const ctl_t *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A broker's error ("code: detail", as client_request writes it) for a person:
 * the detail without the internal code (--json output keeps the code). */
const char *ctl_error_text(const char *err);

/* cluster.c */
/* Starts the local cluster when none runs, and an agent daemon for this
 * workspace (ctl->workspace, filled in) when none serves it. Errors printed. */
int cluster_up(ctl_t *ctl, int argc, char **argv, bool quiet);
int cluster_down(ctl_t *ctl);
int cluster_status(ctl_t *ctl);
/* Fills ctl->broker/key_file/broker_key with the local cluster's. */
void cluster_use(ctl_t *ctl);
/* The workspace cadre works in: the git root of the current directory, or the
 * directory itself (real path). 0, or -errno. */
int cluster_workspace(char *buf, size_t len);

/* Commands that run their own way (the rest are entries of the command table, commands.h). */
int cmd_ask(ctl_t *ctl, int argc, char **argv);
/* cadre chat [TEXT]: single-agent mode (every tool, no sub-agents). */
int cmd_chat(ctl_t *ctl, int argc, char **argv);
/* cadre watch: follow every agent's output and events. */
int cmd_watch(ctl_t *ctl, int argc, char **argv);
/* console.c: the interactive console (cadre with no command, or cadre console). */
int cmd_console(ctl_t *ctl, int argc, char **argv);
/* cadre call VERB [ARGS-JSON]: any broker verb, the reply as JSON (for scripts and debugging). */
int cmd_call(ctl_t *ctl, int argc, char **argv);

#endif
