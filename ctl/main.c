/* cadre: the controller. One-shot subcommands (with --json for scripts). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "util.h"

static void usage(FILE *out) {
  sbuf_t b = {0};
  cmd_help(&b, false);
  fprintf(out,
          "Usage: cadre [--broker ENDPOINT] [--json] [COMMAND [ARGS]]\n"
          "\n"
          "Cadre: a main agent on a large model and sub-agents on small ones, working together.\n"
          "With no command, cadre is the interactive console (/help there lists its commands).\n"
          "cadre COMMAND --help says more about one command.\n"
          "\n"
          "Commands:\n"
          "%s"
          "\n"
          "Options:\n"
          "  --broker ENDPOINT   broker to use (or CADRE_BROKER); without one, cadre starts and\n"
          "                      uses a local cluster with state in $XDG_STATE_HOME/cadre\n"
          "  --key FILE          our CURVE key pair (or CADRE_KEY; default: the local client.key)\n"
          "  --broker-key KEY    broker public key, Z85 or file (or CADRE_BROKER_KEY)\n"
          "  --json              machine-readable output (one JSON value per line)\n"
          "  --timeout S         how long to wait for the broker (default 10)\n"
          "  --no-color          plain output (also NO_COLOR, or when not a terminal)\n"
          "  --version, --help\n",
          sbuf_str(&b));
  sbuf_free(&b);
}

int main(int argc, char **argv) {
  ctl_t ctl = {.timeout_ms = 10000};
  bool no_color = getenv("NO_COLOR") != NULL;
  /* clang-format off */
  static const struct option longopts[] = {
      {"broker", required_argument, 0, 'b'}, {"key", required_argument, 0, 'k'},
      {"broker-key", required_argument, 0, 'B'}, {"config", required_argument, 0, 'c'},
      {"json", no_argument, 0, 'j'},         {"timeout", required_argument, 0, 't'},
      {"no-color", no_argument, 0, 'N'},     {"version", no_argument, 0, 'V'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  /* clang-format on */
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
    default: return util_common_option(c, "cadre", usage, NULL, NULL);
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
  const char *name = argv[optind];
  const cmd_t *cmd = cmd_find(name);
  if (cmd)
    return cmd_run(&ctl, cmd, argc - optind, argv + optind);
  if (strcmp(name, "help") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "cadre: unknown command \"%s\"\n\n", name);
  usage(stderr);
  return 2;
}
