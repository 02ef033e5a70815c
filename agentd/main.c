/* cadre-agentd: runs model turns for a broker. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd.h"
#include "keys.h"
#include "llm.h"
#include "llm_record.h"
#include "log.h"
#include "util.h"

static void usage(FILE *out) {
  fprintf(out, "Usage: cadre-agentd --broker ENDPOINT --name NAME --slots N --workspace DIR [--secrets FILE]\n"
               "\n"
               "Connects to a Cadre broker and runs model turns: calls OpenAI-compatible APIs\n"
               "(Ollama, LM Studio, vLLM, llama.cpp, OpenAI) and streams the answers back.\n"
               "\n"
               "  --broker ENDPOINT     broker address, e.g. tcp://10.0.0.5:7700 (or CADRE_BROKER)\n"
               "  --broker-key KEY      broker public key, Z85 or a file (default: broker.pub beside --key)\n"
               "  --key FILE            this daemon's CURVE key pair (default: the local cluster's client.key)\n"
               "  --name NAME           node name (default: host name)\n"
               "  --slots N             turns run at the same time (default 4)\n"
               "  --workspace DIR       directory tools act in (default: current directory)\n"
               "  --secrets FILE        secrets.json with ollama_api_key, lm_studio_api_key, openai_api_key\n"
               "  --config FILE         agents config, for api_key values of profiles\n"
               "  --models LIST         comma-separated models served (default: any)\n"
               "  --providers LIST      comma-separated providers served (default: any)\n"
               "  --connect-timeout S   model server connect timeout (default 10)\n"
               "  --stall-timeout S     fail a response that makes no progress for S seconds (default 120;\n"
               "                        keep-alive comments and empty events are no progress)\n"
               "  --turn-timeout S      the longest one model call may take, tries and every byte\n"
               "                        included (default 600)\n"
               "  --label KEY=VALUE     a label the broker places work by (repeatable; e.g. gpu=1,\n"
               "                        workspace=shared-nfs: nodes with the same workspace label share files)\n"
               "  --drain-timeout S     on SIGTERM, finish running work for at most S seconds, then exit\n"
               "                        (default 60; SIGINT exits at once)\n"
               "  --record DIR          write every model exchange (request, raw answer; no keys) to DIR\n"
               "  --replay DIR          answer model requests from DIR's recordings, not the server:\n"
               "                        a rerun offline, exactly as recorded (see cadre replay-diff)\n"
               "  --no-sandbox          run commands unconfined (default: in a bubblewrap sandbox; see\n"
               "                        docs/SANDBOX.md); without it, a node that cannot make the\n"
               "                        sandbox refuses commands\n"
               "  --hide PATH           a file or directory commands and file tools must not see (repeatable;\n"
               "                        the secrets, key, config files and the state directory always are)\n"
               "  --writable DIR        another directory commands may write, e.g. ~/.cache (repeatable)\n"
               "  --readable PATH       a path under /tmp (which commands see as an empty, private /tmp)\n"
               "                        that commands and MCP servers may read (repeatable)\n"
               "  --sandbox-memory MIB  address space per command process (default 4096; 0: no limit)\n"
               "  --sandbox-procs N     processes per command (default 512; 0: no limit)\n"
               "  --log-json, -v/--verbose, --version, --help\n"
               "\n"
               "API keys come from the profile (--config), else --secrets, else OLLAMA_API_KEY /\n"
               "OPENAI_API_KEY / LM_STUDIO_API_KEY. They never leave this host except to the model server.\n");
}

#define MAX_HIDE 64

/* The node's own files: what the sandbox masks and the file tools refuse. */
static int own_files(const char **list, const char *const *given, size_t n_given, char *state, size_t statelen) {
  int n = 0;
  for (size_t i = 0; i < n_given; i++)
    if (given[i])
      list[n++] = given[i];
  if (util_state_dir(state, statelen) == 0)
    list[n++] = state;
  list[n] = NULL;
  return n;
}

/* The secret values the daemon knows (API keys, the CURVE secret key), for
 * scrubbing tool results. kp receives the key pair (wiped by the caller). */
static void own_secrets(const char **list, size_t max, const secrets_t *secrets, const cadre_config_t *cfg,
                        const char *key_file, keys_pair_t *kp) {
  size_t n = 0;
  for (size_t i = 0; n + 1 < max && i < secrets_count(secrets); i++)
    if (secrets_value(secrets, i))
      list[n++] = secrets_value(secrets, i);
  for (size_t i = 0; cfg && n + 1 < max && i < cfg->n_profiles; i++)
    if (cfg->profiles[i].api_key && *cfg->profiles[i].api_key)
      list[n++] = cfg->profiles[i].api_key;
  for (size_t i = 0; cfg && i < cfg->n_mcp_servers; i++) /* keys in MCP servers' env */
    for (char **e = cfg->mcp_servers[i].env; e && *e && n + 1 < max; e++)
      if (strchr(*e, '=')[1])
        list[n++] = strchr(*e, '=') + 1;
  char err[256];
  if (key_file && keys_load_pair(key_file, kp, err, sizeof err) == 0 && n + 1 < max)
    list[n++] = kp->secret_key;
  list[n] = NULL;
}

static json_t *split_list(const char *s) {
  json_t *out = json_array();
  char *copy = strdup(s ? s : "*");
  for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ","))
    if (*tok)
      json_array_append_new(out, json_string(tok));
  free(copy);
  return out;
}

/* KEY=VALUE into labels; -1 when it is not one. */
static int add_label(json_t *labels, const char *kv) {
  const char *eq = strchr(kv, '=');
  char key[64];
  if (!eq || (size_t)(eq - kv) >= sizeof key)
    return -1;
  memcpy(key, kv, (size_t)(eq - kv));
  key[eq - kv] = '\0';
  if (!config_label_ok(key) || !config_label_ok(eq + 1))
    return -1;
  return json_object_set_new(labels, key, json_string(eq + 1));
}

static volatile int drain_requested;

static void on_sigterm(int sig) {
  (void)sig;
  drain_requested = 1;
}

/* Default key files come from the local cluster's state directory. */
static const char *default_in_state(char *buf, size_t len, const char *file) {
  char dir[4096];
  if (util_state_dir(dir, sizeof dir) < 0)
    return NULL;
  snprintf(buf, len, "%s/%s", dir, file);
  return buf;
}

/* What the command line gives beside agentd_opts_t. */
typedef struct {
  json_t *labels;
  const char *secrets_path, *config_path, *models, *providers, *record_dir, *replay_dir;
  bool log_json, verbose;
  const char *hide[MAX_HIDE + 8], *writable[MAX_HIDE + 1], *readable[MAX_HIDE + 1];
  size_t n_hide, n_writable, n_readable;
} cli_t;

/* Appends a repeatable path option; -1 (said) past MAX_HIDE. */
static int add_path(const char **list, size_t *n, const char *what, const char *path) {
  if (*n >= MAX_HIDE) {
    fprintf(stderr, "cadre-agentd: at most %d %s\n", MAX_HIDE, what);
    return -1;
  }
  list[(*n)++] = path;
  return 0;
}

/* Reads the options into o and cli; -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, agentd_opts_t *o, cli_t *cli) {
  /* clang-format off */
  static const struct option longopts[] = {
      {"broker", required_argument, 0, 'b'},    {"broker-key", required_argument, 0, 'B'},
      {"key", required_argument, 0, 'k'},       {"name", required_argument, 0, 'n'},
      {"slots", required_argument, 0, 's'},     {"workspace", required_argument, 0, 'w'},
      {"secrets", required_argument, 0, 'S'},   {"config", required_argument, 0, 'c'},
      {"models", required_argument, 0, 'm'},    {"providers", required_argument, 0, 'p'},
      {"connect-timeout", required_argument, 0, 'T'}, {"stall-timeout", required_argument, 0, 't'},
      {"turn-timeout", required_argument, 0, 'D'},
      {"record", required_argument, 0, 'C'},    {"replay", required_argument, 0, 'Y'},
      {"label", required_argument, 0, 'L'},     {"drain-timeout", required_argument, 0, 'R'},
      {"no-sandbox", no_argument, 0, 'N'},      {"hide", required_argument, 0, 'H'},
      {"writable", required_argument, 0, 'W'},  {"readable", required_argument, 0, 'E'},
      {"sandbox-memory", required_argument, 0, 'M'}, {"sandbox-procs", required_argument, 0, 'P'},
      UTIL_COMMON_LONGOPTS};
  /* clang-format on */
  int c, status;
  while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
    switch (c) {
    case 'b': o->broker = optarg; break;
    case 'B': o->broker_key = optarg; break;
    case 'k': o->key_file = optarg; break;
    case 'n': o->name = optarg; break;
    case 's': o->slots = atoi(optarg); break;
    case 'w': o->workspace = optarg; break;
    case 'S': cli->secrets_path = optarg; break;
    case 'c': cli->config_path = optarg; break;
    case 'm': cli->models = optarg; break;
    case 'p': cli->providers = optarg; break;
    case 'T': o->connect_timeout_ms = atol(optarg) * 1000; break;
    case 't': o->stall_timeout_ms = (long)(atof(optarg) * 1000); break;
    case 'D': o->turn_timeout_ms = (long)(atof(optarg) * 1000); break;
    case 'L':
      if (add_label(cli->labels, optarg) < 0) {
        fprintf(stderr,
                "cadre-agentd: --label \"%s\": give KEY=VALUE, each 1 to 63 letters, digits, '.', '_', "
                "'-' or '/'\n",
                optarg);
        return 2;
      }
      break;
    case 'R': o->drain_timeout_ms = (long)(atof(optarg) * 1000); break;
    case 'C': cli->record_dir = optarg; break;
    case 'Y': cli->replay_dir = optarg; break;
    case 'N': o->no_sandbox = true; break;
    case 'H':
      if (add_path(cli->hide, &cli->n_hide, "--hide paths", optarg) < 0)
        return 2;
      break;
    case 'W':
      if (add_path(cli->writable, &cli->n_writable, "--writable directories", optarg) < 0)
        return 2;
      break;
    case 'E':
      if (add_path(cli->readable, &cli->n_readable, "--readable paths", optarg) < 0)
        return 2;
      break;
    case 'M': o->sandbox_memory = atoll(optarg) > 0 ? (unsigned long long)atoll(optarg) << 20 : ~0ull; break;
    case 'P': o->sandbox_procs = atol(optarg) > 0 ? atol(optarg) : -1; break;
    default:
      if ((status = util_common_option(c, "cadre-agentd", usage, &cli->log_json, &cli->verbose)) >= 0)
        return status;
    }
  }
  if (!o->broker)
    o->broker = getenv("CADRE_BROKER");
  if (!o->broker) {
    fprintf(stderr, "cadre-agentd: --broker is required\n\n");
    usage(stderr);
    return 2;
  }
  if (o->slots < 1 || o->slots > 256) {
    fprintf(stderr, "cadre-agentd: --slots must be between 1 and 256\n");
    return 2;
  }
  if (o->stall_timeout_ms < 100 || o->connect_timeout_ms < 100 || o->turn_timeout_ms < 100) {
    fprintf(stderr, "cadre-agentd: timeouts must be positive\n");
    return 2;
  }
  if (o->drain_timeout_ms < 0)
    o->drain_timeout_ms = 0;
  return -1;
}

/* Runs the daemon with its options complete; the exit status. kp is wiped
 * once the daemon has its own copy of the secrets for scrubbing. */
static int run(agentd_opts_t *o, keys_pair_t *kp) {
  char err[1024];
  volatile int *stop_flag = util_stop_signals();
  /* SIGTERM drains (SIGINT still stops at once). */
  struct sigaction term = {.sa_handler = on_sigterm};
  sigaction(SIGTERM, &term, NULL);
  o->drain = &drain_requested;
  llm_global_init();
  int rc = 1;
  agentd_t *d = agentd_new(o, err, sizeof err);
  keys_wipe(kp);
  if (!d) {
    log_error("%s", err);
  } else {
    log_info("agent daemon %s: %d slots, broker %s", o->name, o->slots, o->broker);
    rc = agentd_run(d, stop_flag) == 0 ? 0 : 1;
    agentd_destroy(&d);
  }
  llm_global_cleanup();
  return rc;
}

int main(int argc, char **argv) {
  agentd_opts_t o = {.slots = 4,
                     .workspace = ".",
                     .connect_timeout_ms = 10000,
                     .stall_timeout_ms = 120000,
                     .turn_timeout_ms = 600000,
                     .drain_timeout_ms = 60000};
  cli_t cli = {.labels = json_object()};
  char host[256], keybuf[4200], pubbuf[4200];
  /* Not dumpable: no core file, and other processes of our user (a command
   * run with --no-sandbox, say) cannot read /proc/PID/environ or mem. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  int status = parse_options(argc, argv, &o, &cli);
  if (status >= 0) {
    json_decref(cli.labels);
    return status;
  }
  if (!o.name) {
    util_hostname(host, sizeof host);
    o.name = host;
  }
  if (!o.key_file)
    o.key_file = getenv("CADRE_KEY") ? getenv("CADRE_KEY") : default_in_state(keybuf, sizeof keybuf, "client.key");
  if (!o.broker_key)
    o.broker_key =
        getenv("CADRE_BROKER_KEY") ? getenv("CADRE_BROKER_KEY") : default_in_state(pubbuf, sizeof pubbuf, "broker.pub");
  log_setup("cadre-agentd", cli.log_json, cli.verbose ? LOG_DEBUG : LOG_INFO);
  char err[1024];
  if ((cli.record_dir || cli.replay_dir) && llm_record_setup(cli.record_dir, cli.replay_dir, err, sizeof err) < 0) {
    log_error("%s", err);
    json_decref(cli.labels);
    return 1;
  }
  if (cli.replay_dir)
    log_info("replaying model answers from %s (no model server is called)", cli.replay_dir);
  secrets_t *secrets = NULL;
  cadre_config_t *cfg = NULL;
  if (cli.secrets_path && !(secrets = secrets_load(cli.secrets_path, err, sizeof err))) {
    log_error("%s", err);
    json_decref(cli.labels);
    return 1;
  }
  if (secrets && secrets_warning(secrets))
    log_warn("%s", secrets_warning(secrets));
  if (cli.config_path && !(cfg = config_load(cli.config_path, NULL, err, sizeof err))) {
    log_error("%s", err);
    secrets_destroy(&secrets);
    json_decref(cli.labels);
    return 1;
  }
  o.secrets = secrets;
  o.config = cfg;
  const char *hidden[MAX_HIDE + 8], *secret_values[256];
  char state[PATH_MAX];
  const char *given[] = {cli.secrets_path, cli.config_path, o.key_file,
                         o.broker_key && access(o.broker_key, F_OK) == 0 ? o.broker_key : NULL};
  for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
    cli.hide[cli.n_hide++] = given[i];
  own_files(hidden, cli.hide, cli.n_hide, state, sizeof state);
  keys_pair_t kp;
  memset(&kp, 0, sizeof kp);
  own_secrets(secret_values, 256, secrets, cfg, o.key_file, &kp);
  o.hidden = hidden;
  o.writable = cli.writable;
  o.readable = cli.readable;
  o.secret_values = secret_values;
  o.models = split_list(cli.models);
  o.providers = split_list(cli.providers);
  o.labels = cli.labels;
  int rc = run(&o, &kp);
  json_decref(o.models);
  json_decref(o.providers);
  json_decref(cli.labels);
  secrets_destroy(&secrets);
  config_destroy(&cfg);
  return rc;
}
