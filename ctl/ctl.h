/* ctl: the cadre command. Shared state of one invocation and the subcommands. */
#ifndef CADRE_CTL_H
#define CADRE_CTL_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>

#include "client.h"

typedef struct {
  const char *broker;      /* endpoint, or NULL: the local cluster */
  const char *key_file;
  const char *broker_key;
  const char *config;      /* for cadre up / the local cluster */
  bool json;
  bool color;              /* stdout is a TTY and NO_COLOR is unset */
  int timeout_ms;          /* for requests */
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

/* cluster.c */
int cluster_up(ctl_t *ctl, int argc, char **argv, bool quiet);
int cluster_down(ctl_t *ctl);
int cluster_status(ctl_t *ctl);
/* True when the local cluster's broker is running. */
bool cluster_running(ctl_t *ctl);
/* Fills ctl->broker/key_file/broker_key with the local cluster's. */
void cluster_use(ctl_t *ctl);

/* subcommands */
int cmd_ask(ctl_t *ctl, int argc, char **argv);
int cmd_nodes(ctl_t *ctl, int argc, char **argv);
int cmd_history(ctl_t *ctl, int argc, char **argv);
int cmd_sessions(ctl_t *ctl, int argc, char **argv);
/* cmd_agents.c: cadre spawn, send, agents, stop, stop-all, stats, config, reset, watch */
int cmd_spawn(ctl_t *ctl, int argc, char **argv);
int cmd_send(ctl_t *ctl, int argc, char **argv);
int cmd_agents(ctl_t *ctl, int argc, char **argv);
int cmd_stop(ctl_t *ctl, int argc, char **argv);
int cmd_stop_all(ctl_t *ctl, int argc, char **argv);
int cmd_stats(ctl_t *ctl, int argc, char **argv);
int cmd_config(ctl_t *ctl, int argc, char **argv);
int cmd_reset(ctl_t *ctl, int argc, char **argv);
int cmd_watch(ctl_t *ctl, int argc, char **argv);
/* console.c: the interactive console (cadre with no command, or cadre console). */
int cmd_console(ctl_t *ctl, int argc, char **argv);
/* cadre call VERB [ARGS-JSON]: any broker verb, the reply as JSON (for scripts and debugging). */
int cmd_call(ctl_t *ctl, int argc, char **argv);
/* cadre chat [TEXT]: single-agent mode (every tool, no sub-agents). */
int cmd_chat(ctl_t *ctl, int argc, char **argv);
/* cadre plans, plan, approve, reject, modify, cancel, pause, resume, template (cmd_plans.c). */
int cmd_plans(ctl_t *ctl, int argc, char **argv);
/* Prints one plan with progress marks (✓ done, ○ pending, ⟳ running, ✗ failed). */
void ctl_print_plan(const json_t *plan);
/* An edit for the modify verb from words OP STEP [VALUE] | add_step JSON | --edit JSON
 * (argv[0] is OP); NULL when they make none. */
json_t *ctl_plan_edit(int argc, char **argv);

#endif
