/* cadre: the controller. One-shot subcommands (with --json for scripts). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "keys.h"
#include "util.h"

static void usage(FILE *out) {
  fprintf(out,
          "Usage: cadre [--broker ENDPOINT] [--json] [COMMAND [ARGS]]\n"
          "\n"
          "Cadre: a main agent on a large model and sub-agents on small ones, working together.\n"
          "With no command, cadre is the interactive console (/help there lists its commands).\n"
          "\n"
          "Commands:\n"
          "  console                   the interactive console (the default)\n"
          "  ask [--session ID] TEXT   ask the main agent; the answer streams as it is written\n"
          "  chat [TEXT]               single-agent mode: one agent with every tool, no sub-agents\n"
          "  call VERB [JSON]          any broker verb; the reply as JSON\n"
          "  plans / plan ID           workflow plans proposed by agents, with progress\n"
          "  approve ID [--wait] | reject ID | modify ID OP STEP [VALUE] | cancel [ID] | pause ID | resume ID\n"
          "  template save ID NAME | template list | template run NAME [key=value ...]\n"
          "  spawn [--wait] ROLE TASK  spawn a sub-agent; --wait prints its summary when it reports\n"
          "  send [--wait] ID TEXT     a message to an agent; --wait prints its answer\n"
          "  agents                    the agents: role, model, status, messages, tokens, cost\n"
          "  stop ID / stop-all        stop a sub-agent / every sub-agent\n"
          "  stats                     usage and cost per agent, and the savings against the main model\n"
          "  config                    the broker's configuration (API keys masked)\n"
          "  reset [SESSION]           clear a conversation (default: main)\n"
          "  watch                     follow every agent's output and events (JSON lines with --json)\n"
          "  nodes                     agent daemons registered with the broker\n"
          "  history [SESSION]         a session's conversation (default: main)\n"
          "  sessions                  all sessions with their usage\n"
          "  status                    what runs where\n"
          "  up [--config F] [--secrets F] [--workspace DIR] [--slots N]\n"
          "                            start the local cluster (a broker and one agent daemon)\n"
          "  down                      stop the local cluster\n"
          "  keygen FILE               write a new CURVE key pair (for a remote node or controller)\n"
          "\n"
          "Options:\n"
          "  --broker ENDPOINT   broker to use (or CADRE_BROKER); without one, cadre starts and\n"
          "                      uses a local cluster with state in $XDG_STATE_HOME/cadre\n"
          "  --key FILE          our CURVE key pair (or CADRE_KEY; default: the local client.key)\n"
          "  --broker-key KEY    broker public key, Z85 or file (or CADRE_BROKER_KEY)\n"
          "  --json              machine-readable output (one JSON value per line)\n"
          "  --timeout S         how long to wait for the broker (default 10)\n"
          "  --no-color          plain output (also NO_COLOR, or when not a terminal)\n"
          "  --version, --help\n");
}

static int cmd_keygen_impl(ctl_t *ctl, int argc, char **argv) {
  if (argc < 2) {
    ctl_error(ctl, "usage: cadre keygen FILE");
    return 2;
  }
  if (access(argv[1], F_OK) == 0) {
    ctl_error(ctl, "%s exists; not overwriting it", argv[1]);
    return 1;
  }
  keys_pair_t kp;
  if (keys_generate(&kp) < 0 || keys_save_pair(argv[1], &kp) < 0) {
    ctl_error(ctl, "cannot write %s", argv[1]);
    return 1;
  }
  if (ctl->json)
    printf("{\"file\":\"%s\",\"public_key\":\"%s\"}\n", argv[1], kp.public_key);
  else
    printf("%s\n# add this line to the broker's authorized_keys to let the key in\n", kp.public_key);
  keys_wipe(&kp);
  return 0;
}

int main(int argc, char **argv) {
  ctl_t ctl = {.timeout_ms = 10000};
  bool no_color = getenv("NO_COLOR") != NULL;
  static const struct option longopts[] = {
      {"broker", required_argument, 0, 'b'}, {"key", required_argument, 0, 'k'},
      {"broker-key", required_argument, 0, 'B'}, {"config", required_argument, 0, 'c'},
      {"json", no_argument, 0, 'j'},         {"timeout", required_argument, 0, 't'},
      {"no-color", no_argument, 0, 'N'},     {"version", no_argument, 0, 'V'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "+hj", longopts, NULL)) != -1) {
    switch (c) {
    case 'b': ctl.broker = optarg; break;
    case 'k': ctl.key_file = optarg; break;
    case 'B': ctl.broker_key = optarg; break;
    case 'c': ctl.config = optarg; break;
    case 'j': ctl.json = true; break;
    case 't': ctl.timeout_ms = atoi(optarg) * 1000; break;
    case 'N': no_color = true; break;
    case 'V': printf("cadre %s\n", CADRE_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!ctl.broker)
    ctl.broker = getenv("CADRE_BROKER");
  if (!ctl.key_file)
    ctl.key_file = getenv("CADRE_KEY");
  if (!ctl.broker_key)
    ctl.broker_key = getenv("CADRE_BROKER_KEY");
  if (ctl.timeout_ms <= 0)
    ctl.timeout_ms = 10000;
  ctl.color = !no_color && !ctl.json && isatty(STDOUT_FILENO);
  if (util_state_dir(ctl.state_dir, sizeof ctl.state_dir) < 0) {
    fprintf(stderr, "cadre: state directory path too long\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  if (optind >= argc)
    return cmd_console(&ctl, 0, argv + argc);
  const char *cmd = argv[optind];
  int sub_argc = argc - optind;
  char **sub_argv = argv + optind;
  static const struct {
    const char *name;
    int (*fn)(ctl_t *, int, char **);
  } commands[] = {{"ask", cmd_ask},         {"call", cmd_call},         {"nodes", cmd_nodes},
                  {"history", cmd_history}, {"sessions", cmd_sessions}, {"keygen", cmd_keygen_impl},
                  {"spawn", cmd_spawn},     {"send", cmd_send},         {"agents", cmd_agents},
                  {"stop", cmd_stop},       {"stop-all", cmd_stop_all}, {"stats", cmd_stats},
                  {"config", cmd_config},   {"reset", cmd_reset},       {"watch", cmd_watch},
                  {"console", cmd_console},  {"chat", cmd_chat}, {"plans", cmd_plans}, {"plan", cmd_plans},
                  {"approve", cmd_plans},   {"reject", cmd_plans}, {"modify", cmd_plans}, {"cancel", cmd_plans},
                  {"pause", cmd_plans},     {"resume", cmd_plans}, {"template", cmd_plans}};
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(cmd, commands[i].name) == 0)
      return commands[i].fn(&ctl, sub_argc, sub_argv);
  if (strcmp(cmd, "up") == 0)
    return cluster_up(&ctl, sub_argc, sub_argv, false);
  if (strcmp(cmd, "down") == 0)
    return cluster_down(&ctl);
  if (strcmp(cmd, "status") == 0)
    return cluster_status(&ctl);
  if (strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "cadre: unknown command \"%s\"\n\n", cmd);
  usage(stderr);
  return 2;
}
