/* cluster.c: the local cluster (a broker and one agent daemon on this machine),
 * started in the background when cadre is used without a broker. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "jx.h"
#include "util.h"

static void state_path(const ctl_t *ctl, const char *file, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s", ctl->state_dir, file);
}

void cluster_use(ctl_t *ctl) {
  snprintf(ctl->epbuf, sizeof ctl->epbuf, "ipc://%s/broker.sock", ctl->state_dir);
  state_path(ctl, "client.key", ctl->keybuf, sizeof ctl->keybuf);
  state_path(ctl, "broker.pub", ctl->pubbuf, sizeof ctl->pubbuf);
  if (!ctl->broker)
    ctl->broker = ctl->epbuf;
  if (!ctl->key_file)
    ctl->key_file = ctl->keybuf;
  if (!ctl->broker_key)
    ctl->broker_key = ctl->pubbuf;
}

static json_t *read_cluster(const ctl_t *ctl) {
  char path[PATH_MAX + 32];
  state_path(ctl, "cluster.json", path, sizeof path);
  return json_load_file(path, 0, NULL);
}

static bool pid_alive(json_t *info, const char *key) {
  json_int_t pid = jx_int(info, key, 0);
  return pid > 0 && kill((pid_t)pid, 0) == 0;
}

bool cluster_running(ctl_t *ctl) {
  json_t *info = read_cluster(ctl);
  bool alive = info && pid_alive(info, "broker_pid");
  json_decref(info);
  return alive;
}

/* Finds a sibling program: $ENV, next to cadre, in the build tree, or on PATH. */
static int find_program(const char *name, const char *env, const char *subdir, char *out, size_t len) {
  const char *override = getenv(env);
  if (override && access(override, X_OK) == 0 && strlen(override) < len) {
    memcpy(out, override, strlen(override) + 1);
    return 0;
  }
  char dir[PATH_MAX - 64];
  if (util_exe_dir(dir, sizeof dir) == 0) {
    snprintf(out, len, "%s/%s", dir, name);
    if (access(out, X_OK) == 0)
      return 0;
    snprintf(out, len, "%s/../%s/%s", dir, subdir, name);
    if (access(out, X_OK) == 0)
      return 0;
  }
  const char *path = getenv("PATH");
  char *copy = strdup(path ? path : "/usr/local/bin:/usr/bin");
  for (char *d = strtok(copy, ":"); d; d = strtok(NULL, ":")) {
    snprintf(out, len, "%s/%s", d, name);
    if (access(out, X_OK) == 0) {
      free(copy);
      return 0;
    }
  }
  free(copy);
  return -1;
}

/* Starts argv in the background in its own session, output to log. */
static pid_t spawn(char *const argv[], const char *log) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  setsid();
  int in = open("/dev/null", O_RDONLY);
  int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (in >= 0)
    dup2(in, 0);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  execv(argv[0], argv);
  fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

/* Waits for a file to appear while the process lives. */
static int wait_for_file(const char *path, pid_t pid, int timeout_ms) {
  int64_t deadline = util_now_ms() + timeout_ms;
  while (util_now_ms() < deadline) {
    if (access(path, R_OK) == 0)
      return 0;
    if (waitpid(pid, NULL, WNOHANG) == pid)
      return -1;
    usleep(20 * 1000);
  }
  return -1;
}

static const char *default_config(char *buf, size_t len) {
  const char *env = getenv("CADRE_CONFIG");
  if (env)
    return env;
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  if (xdg && xdg[0] == '/')
    snprintf(buf, len, "%s/cadre/config.json", xdg);
  else if (home)
    snprintf(buf, len, "%s/.config/cadre/config.json", home);
  else
    return NULL;
  return access(buf, R_OK) == 0 ? buf : NULL;
}

static const char *default_secrets(const char *config, char *buf, size_t len) {
  const char *env = getenv("CADRE_SECRETS");
  if (env)
    return env;
  if (config) {
    snprintf(buf, len, "%s", config);
    char *slash = strrchr(buf, '/');
    snprintf(slash ? slash + 1 : buf, len - (size_t)(slash ? slash + 1 - buf : 0), "secrets.json");
    if (access(buf, R_OK) == 0)
      return buf;
  }
  const char *home = getenv("HOME");
  if (home) {
    snprintf(buf, len, "%s/.config/cadre/secrets.json", home);
    if (access(buf, R_OK) == 0)
      return buf;
  }
  return NULL;
}

typedef struct {
  const char *config, *secrets, *workspace;
  const char *slots;
} up_opts_t;

static int start_broker(ctl_t *ctl, const up_opts_t *o, pid_t *pid) {
  char prog[PATH_MAX], log[PATH_MAX + 32], bind[PATH_MAX + 32], ep[PATH_MAX + 32];
  if (find_program("cadre-broker", "CADRE_BROKER_BIN", "broker", prog, sizeof prog) < 0) {
    fprintf(stderr, "cadre: cannot find cadre-broker (next to cadre, or on PATH)\n");
    return -1;
  }
  state_path(ctl, "broker.log", log, sizeof log);
  state_path(ctl, "endpoint", ep, sizeof ep);
  snprintf(bind, sizeof bind, "ipc://%s/broker.sock", ctl->state_dir);
  unlink(ep);
  char *argv[12] = {prog, "--bind", bind, "--state", ctl->state_dir};
  int n = 5;
  if (o->config) {
    argv[n++] = "--config";
    argv[n++] = (char *)o->config;
  }
  *pid = spawn(argv, log);
  if (*pid < 0 || wait_for_file(ep, *pid, 10000) < 0) {
    fprintf(stderr, "cadre: the broker did not start; see %s\n", log);
    return -1;
  }
  return 0;
}

static int start_agentd(ctl_t *ctl, const up_opts_t *o, pid_t *pid) {
  char prog[PATH_MAX], log[PATH_MAX + 32], host[200], name[256];
  if (find_program("cadre-agentd", "CADRE_AGENTD_BIN", "agentd", prog, sizeof prog) < 0) {
    fprintf(stderr, "cadre: cannot find cadre-agentd (next to cadre, or on PATH)\n");
    return -1;
  }
  state_path(ctl, "agentd.log", log, sizeof log);
  util_hostname(host, sizeof host);
  snprintf(name, sizeof name, "%s-local", host);
  char *argv[24] = {prog,          "--broker", ctl->epbuf,          "--key",       ctl->keybuf,
                    "--broker-key", ctl->pubbuf, "--name",           name,          "--slots",
                    (char *)o->slots, "--workspace", (char *)o->workspace};
  int n = 13;
  if (o->config) {
    argv[n++] = "--config";
    argv[n++] = (char *)o->config;
  }
  if (o->secrets) {
    argv[n++] = "--secrets";
    argv[n++] = (char *)o->secrets;
  }
  *pid = spawn(argv, log);
  return *pid < 0 ? -1 : 0;
}

/* Waits until at least one node is registered. */
static int wait_for_node(ctl_t *ctl) {
  char err[512];
  client_opts_t co = {ctl->epbuf, ctl->keybuf, ctl->pubbuf, NULL};
  client_t *c = client_connect(&co, 10000, err, sizeof err);
  if (!c) {
    fprintf(stderr, "cadre: %s\n", err);
    return -1;
  }
  int64_t deadline = util_now_ms() + 10000;
  int rc = -1;
  while (rc < 0 && util_now_ms() < deadline) {
    json_t *nodes = client_request(c, "nodes", NULL, 5000, err, sizeof err);
    if (nodes && json_array_size(nodes) > 0)
      rc = 0;
    json_decref(nodes);
    if (rc < 0)
      usleep(50 * 1000);
  }
  client_destroy(&c);
  if (rc < 0)
    fprintf(stderr, "cadre: the agent daemon did not register; see %s/agentd.log\n", ctl->state_dir);
  return rc;
}

int cluster_up(ctl_t *ctl, int argc, char **argv, bool quiet) {
  char cfgbuf[PATH_MAX], secbuf[PATH_MAX], cwd[PATH_MAX];
  up_opts_t o = {.config = ctl->config, .slots = "4", .workspace = getcwd(cwd, sizeof cwd)};
  static const struct option longopts[] = {{"config", required_argument, 0, 'c'},
                                           {"secrets", required_argument, 0, 'S'},
                                           {"workspace", required_argument, 0, 'w'},
                                           {"slots", required_argument, 0, 's'},
                                           {0, 0, 0, 0}};
  optind = 1;
  int c;
  while (argc > 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'c': o.config = optarg; break;
    case 'S': o.secrets = optarg; break;
    case 'w': o.workspace = optarg; break;
    case 's': o.slots = optarg; break;
    default: return 2;
    }
  }
  if (cluster_running(ctl)) {
    if (!quiet)
      return cluster_status(ctl);
    return 0;
  }
  if (!o.config)
    o.config = default_config(cfgbuf, sizeof cfgbuf);
  if (!o.secrets)
    o.secrets = default_secrets(o.config, secbuf, sizeof secbuf);
  if (util_mkdir_p(ctl->state_dir, 0700) < 0) {
    fprintf(stderr, "cadre: cannot create %s: %s\n", ctl->state_dir, strerror(errno));
    return 1;
  }
  cluster_use(ctl);
  pid_t bpid = -1, apid = -1;
  if (start_broker(ctl, &o, &bpid) < 0)
    return 1;
  if (start_agentd(ctl, &o, &apid) < 0) {
    kill(bpid, SIGTERM);
    return 1;
  }
  char path[PATH_MAX + 32], *ws = realpath(o.workspace, NULL);
  json_t *info = json_pack("{s:i, s:i, s:s, s:s?, s:s?, s:I}", "broker_pid", (int)bpid, "agentd_pid", (int)apid,
                           "endpoint", ctl->epbuf, "config", o.config, "workspace", ws, "started_ms",
                           (json_int_t)util_wall_ms());
  free(ws);
  state_path(ctl, "cluster.json", path, sizeof path);
  json_dump_file(info, path, JSON_INDENT(2));
  json_decref(info);
  if (wait_for_node(ctl) < 0)
    return 1;
  if (!quiet)
    fprintf(stderr, "cadre: local cluster started (state %s)\n", ctl->state_dir);
  return quiet ? 0 : cluster_status(ctl);
}

static void stop_pid(pid_t pid) {
  if (pid <= 0 || kill(pid, SIGTERM) < 0)
    return;
  int64_t deadline = util_now_ms() + 5000;
  while (kill(pid, 0) == 0 && util_now_ms() < deadline)
    usleep(20 * 1000);
  if (kill(pid, 0) == 0)
    kill(pid, SIGKILL);
}

int cluster_down(ctl_t *ctl) {
  json_t *info = read_cluster(ctl);
  if (!info) {
    fprintf(stderr, "cadre: no local cluster is running (state %s)\n", ctl->state_dir);
    return 0;
  }
  stop_pid((pid_t)jx_int(info, "agentd_pid", 0));
  stop_pid((pid_t)jx_int(info, "broker_pid", 0));
  json_decref(info);
  char path[PATH_MAX + 32];
  state_path(ctl, "cluster.json", path, sizeof path);
  unlink(path);
  if (ctl->json)
    printf("{\"stopped\":true}\n");
  else
    printf("local cluster stopped\n");
  return 0;
}

int cluster_status(ctl_t *ctl) {
  json_t *info = NULL;
  bool local = !ctl->broker;
  if (local) {
    info = read_cluster(ctl);
    if (!info || !pid_alive(info, "broker_pid")) {
      if (ctl->json)
        printf("{\"running\":false,\"state_dir\":\"%s\"}\n", ctl->state_dir);
      else
        printf("no local cluster is running (state %s); start one with: cadre up\n", ctl->state_dir);
      json_decref(info);
      return 3;
    }
    cluster_use(ctl);
  }
  client_t *c = ctl_connect(ctl);
  json_t *st = c ? ctl_request(ctl, c, "status", NULL) : NULL;
  json_t *nodes = c ? ctl_request(ctl, c, "nodes", NULL) : NULL;
  client_destroy(&c);
  if (!st || !nodes) {
    json_decref(info);
    json_decref(st);
    json_decref(nodes);
    return 1;
  }
  json_object_set(st, "node_list", nodes);
  if (info) {
    json_object_set(st, "local", info);
  }
  if (ctl->json) {
    json_object_set_new(st, "running", json_true());
    ctl_print_json(st);
  } else {
    printf("broker    %s (cadre %s, up %lld s, epoch %s)\n", ctl->broker,
           jx_str(st, "version", NULL),
           (long long)jx_int(st, "uptime_ms", 0) / 1000,
           jx_str(st, "epoch", NULL));
    printf("state     %s\n", jx_str(st, "state_dir", NULL));
    const char *cfg = jx_str(st, "config", NULL);
    printf("config    %s\n", cfg ? cfg : "(built-in defaults)");
    if (info)
      printf("local     broker pid %lld, agent daemon pid %lld%s\n",
             (long long)jx_int(info, "broker_pid", 0),
             (long long)jx_int(info, "agentd_pid", 0),
             pid_alive(info, "agentd_pid") ? "" : " (not running)");
    printf("nodes     %lld (%lld slots, %lld busy)\n", (long long)jx_int(st, "nodes", 0),
           (long long)jx_int(st, "slots", 0),
           (long long)jx_int(st, "busy", 0));
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) printf("  %-20s %s  workspace %s\n", jx_str(n, "name", NULL),
                                           jx_str(n, "host", NULL),
                                           jx_str(n, "workspace", NULL));
    printf("turns     %lld running, %lld queued; %lld sessions\n",
           (long long)jx_int(st, "turns_running", 0),
           (long long)jx_int(st, "turns_queued", 0),
           (long long)jx_int(st, "sessions", 0));
  }
  json_decref(info);
  json_decref(st);
  json_decref(nodes);
  return 0;
}
