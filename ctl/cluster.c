/* cluster.c: the local cluster, started in the background when cadre is used
 * without a broker: one broker and one agent daemon per workspace (the
 * directory cadre runs in, or its git root), each started when cadre is first
 * used there. What runs is written in cluster.json in the state directory:
 *   {broker_pid, endpoint, config, secrets, slots, started_ms,
 *    agents: [{workspace, name, pid, log}],
 *    agentd_pid, workspace}   (the first agent's, as before)
 * Starting and changing it happens under a lock (cluster.lock), so two cadre
 * commands at once never start two brokers or two daemons for one workspace.
 * A start that fails stops what it started and leaves no cluster.json. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "jx.h"
#include "secrets.h"
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

/* True when the process runs: exists and is not a zombie nobody has reaped. */
static bool pid_alive(json_t *info, const char *key) {
  json_int_t pid = jx_int(info, key, 0);
  if (pid <= 0 || kill((pid_t)pid, 0) != 0)
    return false;
  char path[64], stat[512] = "";
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
  if (f)
    fclose(f);
  stat[n] = '\0';
  const char *end = strrchr(stat, ')');
  return !(end && end[1] == ' ' && end[2] == 'Z');
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

/* $XDG_CONFIG_HOME/cadre (~/.config/cadre), or NULL without a home. */
static const char *config_dir(char *buf, size_t len) {
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  if (xdg && xdg[0] == '/')
    snprintf(buf, len, "%s/cadre", xdg);
  else if (home && home[0])
    snprintf(buf, len, "%s/.config/cadre", home);
  else
    return NULL;
  return buf;
}

static const char *default_config(char *buf, size_t len) {
  const char *env = getenv("CADRE_CONFIG");
  if (env)
    return env;
  char dir[PATH_MAX - 32];
  if (!config_dir(dir, sizeof dir))
    return NULL;
  snprintf(buf, len, "%s/config.json", dir);
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
  char dir[PATH_MAX - 32];
  if (config_dir(dir, sizeof dir)) {
    snprintf(buf, len, "%s/secrets.json", dir);
    if (access(buf, R_OK) == 0)
      return buf;
  }
  return NULL;
}

int cluster_workspace(char *buf, size_t len) {
  char cwd[PATH_MAX], dir[PATH_MAX], probe[PATH_MAX + 8];
  if (!getcwd(cwd, sizeof cwd) || !realpath(cwd, dir))
    return -errno;
  for (size_t n = strlen(dir); n > 0;) {
    snprintf(probe, sizeof probe, "%.*s/.git", (int)n, dir);
    if (access(probe, F_OK) == 0) {
      snprintf(buf, len, "%.*s", (int)(n ? n : 1), n ? dir : "/");
      return 0;
    }
    while (n > 0 && dir[n - 1] != '/')
      n--;
    if (n > 0)
      n--; /* drop the slash: the parent */
  }
  if (strlen(dir) >= len)
    return -ENAMETOOLONG;
  memcpy(buf, dir, strlen(dir) + 1);
  return 0;
}

/* Checks the config and secrets files the programs will read, so that their
 * errors are printed here, with what to do, and nothing starts. */
static int check_files(const char *config, const char *secrets) {
  char err[1024];
  cadre_config_t *cfg = config ? config_load(config, NULL, err, sizeof err) : NULL;
  if (config && !cfg) {
    fprintf(stderr,
            "cadre: %s\ncadre: nothing was started; fix the file, or start with another: cadre up "
            "--config FILE\n",
            err);
    return -1;
  }
  config_destroy(&cfg);
  secrets_t *sec = secrets ? secrets_load(secrets, err, sizeof err) : NULL;
  if (secrets && !sec) {
    fprintf(stderr,
            "cadre: %s\ncadre: nothing was started; fix the file (a JSON object such as "
            "{\"openai_api_key\": \"...\"}), or give another: cadre up --secrets FILE\n",
            err);
    return -1;
  }
  secrets_destroy(&sec);
  return 0;
}

/* Prints what a program wrote to its log since offset from: why it stopped. */
static void print_log_since(const char *log, off_t from) {
  FILE *f = fopen(log, "r");
  if (!f)
    return;
  fseeko(f, from, SEEK_SET);
  char line[1024];
  int shown = 0;
  while (shown < 20 && fgets(line, sizeof line, f)) {
    const char *text = line;
    const char *z = line[0] >= '0' && line[0] <= '9' ? strstr(line, "Z ") : NULL;
    if (z && z - line < 40)
      text = z + 2; /* the timestamp adds nothing here */
    fprintf(stderr, "  %s%s", text, strchr(text, '\n') ? "" : "\n");
    shown++;
  }
  fclose(f);
}

static off_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : 0;
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
  /* The dashboard on loopback, any free port (cadre dashboard says where, with its token). */
  char *argv[12] = {prog, "--bind", bind, "--state", ctl->state_dir, "--http", "127.0.0.1:0"};
  int n = 7;
  if (o->config) {
    argv[n++] = "--config";
    argv[n++] = (char *)o->config;
  }
  off_t before = file_size(log);
  *pid = spawn(argv, log);
  if (*pid < 0 || wait_for_file(ep, *pid, 10000) < 0) {
    fprintf(stderr, "cadre: the broker did not start (log %s):\n", log);
    print_log_since(log, before);
    if (*pid > 0 && kill(*pid, SIGKILL) == 0)
      waitpid(*pid, NULL, 0);
    *pid = -1;
    return -1;
  }
  return 0;
}

/* A node name for a workspace: host-basename, unique among the cluster's. */
static void node_name(const json_t *agents, const char *ws, char *out, size_t len) {
  char host[128];
  util_hostname(host, sizeof host);
  const char *base = strrchr(ws, '/');
  base = base && base[1] ? base + 1 : "root";
  for (int i = 1;; i++) {
    if (i == 1)
      snprintf(out, len, "%.60s-%.60s", host, base);
    else
      snprintf(out, len, "%.60s-%.60s-%d", host, base, i);
    bool taken = false;
    size_t k;
    json_t *a;
    json_array_foreach(agents, k, a) taken = taken || strcmp(jx_str(a, "name", ""), out) == 0;
    if (!taken)
      return;
  }
}

static int start_agentd(ctl_t *ctl, const json_t *info, const char *ws, const char *name, const char *log, pid_t *pid) {
  char prog[PATH_MAX];
  if (find_program("cadre-agentd", "CADRE_AGENTD_BIN", "agentd", prog, sizeof prog) < 0) {
    fprintf(stderr, "cadre: cannot find cadre-agentd (next to cadre, or on PATH)\n");
    return -1;
  }
  const char *config = jx_str(info, "config", NULL), *secrets = jx_str(info, "secrets", NULL);
  char *argv[24] = {prog,
                    "--broker",
                    ctl->epbuf,
                    "--key",
                    ctl->keybuf,
                    "--broker-key",
                    ctl->pubbuf,
                    "--name",
                    (char *)name,
                    "--slots",
                    (char *)jx_str(info, "slots", "4"),
                    "--workspace",
                    (char *)ws};
  int n = 13;
  if (config) {
    argv[n++] = "--config";
    argv[n++] = (char *)config;
  }
  if (secrets) {
    argv[n++] = "--secrets";
    argv[n++] = (char *)secrets;
  }
  *pid = spawn(argv, log);
  return *pid < 0 ? -1 : 0;
}

/* Waits until the node called name is registered, while pid lives. */
static int wait_for_node(ctl_t *ctl, const char *name, pid_t pid) {
  char err[512];
  client_opts_t co = {ctl->epbuf, ctl->keybuf, ctl->pubbuf, NULL, NULL};
  client_t *c = client_connect(&co, 10000, err, sizeof err);
  if (!c) {
    fprintf(stderr, "cadre: %s\n", err);
    return -1;
  }
  int64_t deadline = util_now_ms() + 10000;
  int rc = -1;
  while (rc < 0 && util_now_ms() < deadline && kill(pid, 0) == 0 && waitpid(pid, NULL, WNOHANG) != pid) {
    json_t *nodes = client_request(c, "nodes", NULL, 5000, err, sizeof err);
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) if (strcmp(jx_str(n, "name", ""), name) == 0) rc = 0;
    json_decref(nodes);
    if (rc < 0)
      usleep(50 * 1000);
  }
  client_destroy(&c);
  return rc;
}

static void stop_pid(pid_t pid) {
  if (pid <= 0 || kill(pid, SIGTERM) < 0)
    return;
  int64_t deadline = util_now_ms() + 5000;
  while (kill(pid, 0) == 0 && waitpid(pid, NULL, WNOHANG) != pid && util_now_ms() < deadline)
    usleep(20 * 1000);
  if (kill(pid, 0) == 0)
    kill(pid, SIGKILL);
  waitpid(pid, NULL, WNOHANG);
}

static void write_cluster(const ctl_t *ctl, json_t *info) {
  char path[PATH_MAX + 32], tmp[PATH_MAX + 40];
  state_path(ctl, "cluster.json", path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  if (json_dump_file(info, tmp, JSON_INDENT(2)) == 0)
    rename(tmp, path);
}

/* Removes cluster.json and what the broker leaves behind when killed. */
static void forget_cluster(const ctl_t *ctl) {
  static const char *files[] = {"cluster.json", "endpoint", "broker.sock"};
  char path[PATH_MAX + 32];
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    state_path(ctl, files[i], path, sizeof path);
    unlink(path);
  }
}

static void stop_all(const ctl_t *ctl, json_t *info) {
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(info, "agents"), i, a) stop_pid((pid_t)jx_int(a, "pid", 0));
  stop_pid((pid_t)jx_int(info, "broker_pid", 0));
  forget_cluster(ctl);
}

/* The agents entry serving ws, or NULL. */
static json_t *agent_of(json_t *info, const char *ws) {
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(info, "agents"), i, a) if (strcmp(jx_str(a, "workspace", ""), ws) == 0) return a;
  return NULL;
}

/* Makes sure an agent daemon serves ws: starts one (again) when none runs. */
static int ensure_agent(ctl_t *ctl, json_t *info, const char *ws) {
  json_t *agents = json_object_get(info, "agents");
  json_t *a = agent_of(info, ws);
  if (a && pid_alive(a, "pid"))
    return 0;
  char name[256], log[PATH_MAX + 300];
  if (a)
    snprintf(name, sizeof name, "%s", jx_str(a, "name", "local"));
  else
    node_name(agents, ws, name, sizeof name);
  snprintf(log, sizeof log, "%s/agentd-%s.log", ctl->state_dir, name);
  off_t before = file_size(log);
  pid_t pid = -1;
  if (start_agentd(ctl, info, ws, name, log, &pid) < 0)
    return -1;
  bool added = !a;
  if (added) {
    a = json_object();
    json_array_append_new(agents, a);
  }
  json_object_set_new(a, "workspace", json_string(ws));
  json_object_set_new(a, "name", json_string(name));
  json_object_set_new(a, "pid", json_integer(pid));
  json_object_set_new(a, "log", json_string(log));
  if (json_array_get(agents, 0) == a) {
    json_object_set_new(info, "agentd_pid", json_integer(pid));
    json_object_set_new(info, "workspace", json_string(ws));
  }
  write_cluster(ctl, info);
  if (wait_for_node(ctl, name, pid) == 0)
    return 0;
  fprintf(stderr, "cadre: the agent daemon for %s did not start (log %s):\n", ws, log);
  print_log_since(log, before);
  stop_pid(pid);
  if (added)
    json_array_remove(agents, json_array_size(agents) - 1); /* never served: forget it */
  else
    json_object_set_new(a, "pid", json_integer(0)); /* status says it is down */
  write_cluster(ctl, info);
  return -1;
}

/* Reads cluster.json, giving an older one (one agentd_pid) its agents list. */
static json_t *read_cluster_agents(const ctl_t *ctl) {
  json_t *info = read_cluster(ctl);
  if (info && !json_is_array(json_object_get(info, "agents"))) {
    json_t *agents = json_array();
    char host[128], name[200];
    util_hostname(host, sizeof host);
    snprintf(name, sizeof name, "%s-local", host); /* what the single daemon was called */
    if (jx_int(info, "agentd_pid", 0) > 0)
      json_array_append_new(agents, json_pack("{s:s, s:s, s:I}", "workspace", jx_str(info, "workspace", ""), "name",
                                              name, "pid", jx_int(info, "agentd_pid", 0)));
    json_object_set_new(info, "agents", agents);
  }
  return info;
}

/* Starts the broker and the first agent daemon; on failure stops both. */
static json_t *start_cluster(ctl_t *ctl, const up_opts_t *o, const char *ws) {
  json_t *old = read_cluster_agents(ctl);
  if (old)
    stop_all(ctl, old); /* daemons of a broker that died: they would wait for it forever */
  json_decref(old);
  if (check_files(o->config, o->secrets) < 0)
    return NULL;
  pid_t bpid = -1;
  if (start_broker(ctl, o, &bpid) < 0) {
    forget_cluster(ctl);
    return NULL;
  }
  json_t *info = json_pack("{s:i, s:s, s:s?, s:s?, s:s, s:I, s:[]}", "broker_pid", (int)bpid, "endpoint", ctl->epbuf,
                           "config", o->config, "secrets", o->secrets, "slots", o->slots, "started_ms",
                           (json_int_t)util_wall_ms(), "agents");
  write_cluster(ctl, info);
  if (ensure_agent(ctl, info, ws) < 0) {
    fprintf(stderr, "cadre: stopped the broker again; nothing runs\n");
    stop_all(ctl, info);
    json_decref(info);
    return NULL;
  }
  return info;
}

/* Takes the state directory's lock (LOCK_EX to change the cluster, LOCK_SH to
 * look at it); close the result to release it. */
static int lock_state(const ctl_t *ctl, int how) {
  char path[PATH_MAX + 32];
  state_path(ctl, "cluster.lock", path, sizeof path);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0)
    flock(fd, how);
  return fd;
}

static int show_status(ctl_t *ctl);

int cluster_up(ctl_t *ctl, int argc, char **argv, bool quiet) {
  char cfgbuf[PATH_MAX], secbuf[PATH_MAX], ws[PATH_MAX];
  up_opts_t o = {.config = ctl->config, .slots = "4"};
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
  if (o.workspace ? !realpath(o.workspace, ws) : cluster_workspace(ws, sizeof ws) < 0) {
    fprintf(stderr, "cadre: workspace %s: %s\n", o.workspace ? o.workspace : ".", strerror(errno));
    return 1;
  }
  snprintf(ctl->workspace, sizeof ctl->workspace, "%s", ws);
  if (!o.config)
    o.config = default_config(cfgbuf, sizeof cfgbuf);
  if (!o.secrets)
    o.secrets = default_secrets(o.config, secbuf, sizeof secbuf);
  if (util_mkdir_p(ctl->state_dir, 0700) < 0) {
    fprintf(stderr, "cadre: cannot create %s: %s\n", ctl->state_dir, strerror(errno));
    return 1;
  }
  cluster_use(ctl);
  int lock = lock_state(ctl, LOCK_EX);
  json_t *info = read_cluster_agents(ctl);
  bool started = false;
  int rc = 0;
  if (info && pid_alive(info, "broker_pid")) {
    const char *cfg = jx_str(info, "config", NULL);
    if (!quiet && argc > 0 && o.config && (!cfg || strcmp(cfg, o.config) != 0))
      fprintf(stderr, "cadre: the local cluster already runs with config %s; `cadre down` first to use %s\n",
              cfg ? cfg : "(built-in defaults)", o.config);
    rc = ensure_agent(ctl, info, ws) < 0 ? 1 : 0;
  } else {
    json_decref(info);
    info = start_cluster(ctl, &o, ws);
    rc = info ? 0 : 1;
    started = info != NULL;
  }
  json_decref(info);
  if (rc == 0 && !quiet) {
    if (started)
      fprintf(stderr, "cadre: local cluster started (state %s)\n", ctl->state_dir);
    rc = show_status(ctl); /* still locked: no daemon is half started by another cadre */
  }
  if (lock >= 0)
    close(lock);
  return rc;
}

int cluster_down(ctl_t *ctl) {
  json_t *info = read_cluster_agents(ctl);
  if (!info) {
    fprintf(stderr, "cadre: no local cluster is running (state %s)\n", ctl->state_dir);
    return 0;
  }
  stop_all(ctl, info);
  json_decref(info);
  if (ctl->json)
    printf("{\"stopped\":true}\n");
  else
    printf("local cluster stopped\n");
  return 0;
}

/* Marks each local agent daemon running and registered; true when all are. */
static bool check_agents(json_t *info, const json_t *nodes) {
  bool healthy = json_array_size(json_object_get(info, "agents")) > 0;
  size_t i, k;
  json_t *a, *n;
  json_array_foreach(json_object_get(info, "agents"), i, a) {
    bool registered = false;
    json_array_foreach(nodes, k, n) registered =
        registered || strcmp(jx_str(n, "name", ""), jx_str(a, "name", "")) == 0;
    bool running = pid_alive(a, "pid");
    json_object_set_new(a, "running", json_boolean(running));
    json_object_set_new(a, "registered", json_boolean(registered));
    healthy = healthy && running && registered;
  }
  return healthy;
}

static void print_local(const json_t *info) {
  printf("programs  cadre-broker  pid %lld, running\n", (long long)jx_int(info, "broker_pid", 0));
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(info, "agents"), i, a) {
    bool running = jx_bool(a, "running", false), registered = jx_bool(a, "registered", false);
    printf("          cadre-agentd  pid %lld, %s, node %s, workspace %s\n", (long long)jx_int(a, "pid", 0),
           !running     ? "NOT RUNNING"
           : registered ? "running"
                        : "running but NOT REGISTERED",
           jx_str(a, "name", ""), jx_str(a, "workspace", ""));
    if (!running)
      printf("          (see %s; `cadre up` in that directory starts it again)\n", jx_str(a, "log", "its log"));
  }
}

int cluster_status(ctl_t *ctl) {
  /* A cadre starting a daemon holds the lock: wait for it rather than report it half started. */
  int lock = !ctl->broker ? lock_state(ctl, LOCK_SH) : -1;
  int rc = show_status(ctl);
  if (lock >= 0)
    close(lock);
  return rc;
}

static int show_status(ctl_t *ctl) {
  json_t *info = NULL;
  bool local = !ctl->broker || ctl->broker == ctl->epbuf; /* cadre up has just used it */
  if (local) {
    info = read_cluster_agents(ctl);
    if (!info || !pid_alive(info, "broker_pid")) {
      if (ctl->json)
        printf("{\"running\":false,\"healthy\":false,\"state_dir\":\"%s\"}\n", ctl->state_dir);
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
  bool healthy = info ? check_agents(info, nodes) : json_array_size(nodes) > 0;
  json_object_set(st, "node_list", nodes);
  if (info) {
    json_object_set(st, "local", info);
  }
  if (ctl->json) {
    json_object_set_new(st, "running", json_true());
    json_object_set_new(st, "healthy", json_boolean(healthy));
    ctl_print_json(st);
  } else {
    printf("broker    %s (cadre %s, up %lld s, epoch %s)\n", ctl->broker, jx_str(st, "version", NULL),
           (long long)jx_int(st, "uptime_ms", 0) / 1000, jx_str(st, "epoch", NULL));
    printf("state     %s\n", jx_str(st, "state_dir", NULL));
    const char *cfg = jx_str(st, "config", NULL);
    printf("config    %s\n", cfg ? cfg : "(built-in defaults)");
    if (info)
      print_local(info);
    printf("nodes     %lld (%lld slots, %lld busy)\n", (long long)jx_int(st, "nodes", 0),
           (long long)jx_int(st, "slots", 0), (long long)jx_int(st, "busy", 0));
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) printf("  %-20s %s  workspace %s\n", jx_str(n, "name", NULL),
                                           jx_str(n, "host", NULL), jx_str(n, "workspace", NULL));
    printf("turns     %lld running, %lld queued; %lld sessions\n", (long long)jx_int(st, "turns_running", 0),
           (long long)jx_int(st, "turns_queued", 0), (long long)jx_int(st, "sessions", 0));
    if (!healthy)
      printf("health    NOT HEALTHY: %s\n",
             info ? "an agent daemon is not up (see above)" : "no agent daemon is registered");
  }
  json_decref(info);
  json_decref(st);
  json_decref(nodes);
  return healthy ? 0 : 1;
}
