/* cadre-broker: routes messages, owns all state, schedules turns. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "log.h"
#include "util.h"

static void usage(FILE *out) {
  fprintf(out, "Usage: cadre-broker --bind ENDPOINT [--bind ENDPOINT ...] --state DIR [--config FILE]\n"
               "\n"
               "Routes Cadre messages over ZeroMQ (CURVE), keeps sessions and histories in\n"
               "SQLite under DIR, and schedules model turns onto agent daemons.\n"
               "\n"
               "  --bind ENDPOINT        tcp://HOST:PORT (PORT may be *), ipc://PATH; repeatable\n"
               "  --state DIR            state directory (database, keys, endpoint file)\n"
               "  --config FILE          agents config (JSON); built-in defaults when absent\n"
               "  --authorized-keys FILE client public keys allowed in (default DIR/authorized_keys)\n"
               "  --heartbeat-ms N       heartbeat interval (default 1000)\n"
               "  --queue-timeout S      fail a turn no daemon can serve after S seconds (default 60)\n"
               "  --http HOST:PORT       serve the dashboard, /metrics (Prometheus) and /healthz over\n"
               "                         HTTP there (off by default; PORT 0: any, written to DIR/metrics;\n"
               "                         the access token is in DIR/dashboard.token)\n"
               "  --metrics HOST:PORT    the same as --http\n"
               "  --no-curve             benchmarks only (bench/run): no encryption or keys checked;\n"
               "                         refused unless every --bind is loopback or ipc://\n"
               "  --log-json             log lines as JSON\n"
               "  -v, --verbose          debug logging\n"
               "  --version, --help\n"
               "\n"
               "On first start DIR gets broker.key (0600), broker.pub, and client.key (0600), a\n"
               "client key pair already authorised: give it to cadre and cadre-agentd with --key.\n");
}

int main(int argc, char **argv) {
  broker_opts_t opts = {.heartbeat_ms = 1000, .liveness = 3, .queue_timeout_ms = 60000, .max_turn_attempts = 3};
  const char *config_path = NULL;
  bool log_json = false, verbose = false;
  /* clang-format off */
  static const struct option longopts[] = {
      {"bind", required_argument, 0, 'b'},        {"state", required_argument, 0, 's'},
      {"config", required_argument, 0, 'c'},      {"authorized-keys", required_argument, 0, 'a'},
      {"heartbeat-ms", required_argument, 0, 'H'}, {"queue-timeout", required_argument, 0, 'Q'},
      {"metrics", required_argument, 0, 'M'},    {"no-curve", no_argument, 0, 'N'},
      {"http", required_argument, 0, 'M'},
      UTIL_COMMON_LONGOPTS};
  /* clang-format on */
  int c, status;
  while ((c = getopt_long(argc, argv, "b:s:c:vh", longopts, NULL)) != -1) {
    switch (c) {
    case 'b':
      if (opts.n_binds == BROKER_MAX_BINDS) {
        fprintf(stderr, "cadre-broker: at most %d --bind\n", BROKER_MAX_BINDS);
        return 2;
      }
      opts.binds[opts.n_binds++] = optarg;
      break;
    case 's': opts.state_dir = optarg; break;
    case 'c': config_path = optarg; break;
    case 'a': opts.authorized_keys = optarg; break;
    case 'H': opts.heartbeat_ms = atoi(optarg); break;
    case 'Q': opts.queue_timeout_ms = atoi(optarg) * 1000; break;
    case 'M': opts.metrics = optarg; break;
    case 'N': opts.no_curve = true; break;
    default:
      if ((status = util_common_option(c, "cadre-broker", usage, &log_json, &verbose)) >= 0)
        return status;
    }
  }
  if (opts.n_binds == 0 || !opts.state_dir) {
    fprintf(stderr, "cadre-broker: --bind and --state are required\n\n");
    usage(stderr);
    return 2;
  }
  if (opts.heartbeat_ms < 50 || opts.heartbeat_ms > 60000) {
    fprintf(stderr, "cadre-broker: --heartbeat-ms must be between 50 and 60000\n");
    return 2;
  }
  log_setup("cadre-broker", log_json, verbose ? LOG_DEBUG : LOG_INFO);
  if (opts.no_curve)
    log_warn("--no-curve: connections are neither encrypted nor authenticated (benchmarks only)");
  char err[1024];
  cadre_config_t *cfg = config_load(config_path, NULL, err, sizeof err);
  if (!cfg) {
    log_error("%s", err);
    return 1;
  }
  opts.config = cfg;
  volatile int *stop_flag = util_stop_signals();
  opts.reload = util_hup_signal();
  broker_t *b = broker_new(&opts, err, sizeof err);
  if (!b) {
    log_error("%s", err);
    config_destroy(&cfg);
    return 1;
  }
  int rc = broker_run(b, stop_flag);
  broker_destroy(&b);
  config_destroy(&cfg);
  return rc == 0 ? 0 : 1;
}
