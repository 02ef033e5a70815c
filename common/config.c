/* config: loads and checks Cadre's JSON configuration (see config.h).
 *
 * Every error names the file, the key path and what is wrong, so that a user
 * can fix the file without reading code. API keys are wiped from memory when
 * they are no longer needed (the file buffer, jansson's copy, the profile).
 */
#include "config.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1024 * 1024)
#define PROMPT_MAX_BYTES (256 * 1024)
#define NAME_MAX_LEN 64
#define ROLE_MAX_LEN 32
#define MAX_TOKENS_CAP 10000000
#define MAX_AGENTS_CAP 1024
#define KEY_PATH_LEN 320
#define DEFAULT_OLLAMA_URL "http://localhost:11434/v1"

typedef struct {
  const char *file;          /* as given, for messages */
  const char *prompts_dir;   /* the caller's, may be NULL */
  char config_dir[PATH_MAX]; /* directory of the config file, "" for defaults */
  char found_dir[PATH_MAX];  /* config_find_prompts_dir(), "" when none */
  char *err;
  size_t errlen;
  const cadre_config_t *cfg; /* the config being read: its MCP servers name tools */
} loader_t;

typedef struct {
  const char *name, *role, *model;
  double temperature;
  int max_tokens;
  double cost_in, cost_out;
} default_profile_t;

/* The seed's models on a local Ollama; 120b priced 6x 20b. */
static const default_profile_t DEFAULT_PROFILES[] = {
    {"main_agent", "main", "gpt-oss:120b", 0.7, 4096, 0.60, 2.40},
    {"reviewer_agent", "reviewer", "gpt-oss:20b", 0.3, 2048, 0.10, 0.40},
    {"researcher_agent", "researcher", "gpt-oss:20b", 0.5, 2048, 0.10, 0.40},
    {"implementer_agent", "implementer", "gpt-oss:20b", 0.6, 2048, 0.10, 0.40},
    {"tester_agent", "tester", "gpt-oss:20b", 0.4, 2048, 0.10, 0.40},
    {"optimizer_agent", "optimizer", "gpt-oss:20b", 0.5, 2048, 0.10, 0.40},
};

static const struct {
  const char *word, *profile;
} DEFAULT_KEYWORDS[] = {
    {"review", "reviewer_agent"},
    {"test", "tester_agent"},
    {"research", "researcher_agent"},
    {"optimize", "optimizer_agent"},
};

/* Providers whose URL may be left out. */
static const struct {
  const char *provider, *url;
} DEFAULT_URLS[] = {
    {"ollama", DEFAULT_OLLAMA_URL},
    {"lm_studio", "http://localhost:1234/v1"},
    {"openai", "https://api.openai.com/v1"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- messages ---------------------------------------------------------- */

/* Keeps a message on one line whatever the file held (values are echoed in it). */
static void flatten_line(char *s) {
  for (; *s; s++)
    if (iscntrl((unsigned char)*s))
      *s = '?';
}

/* Records "<file>: <key>: <what>" (key may be NULL) and returns -1. */
static int loader_fail(loader_t *l, const char *key, const char *fmt, ...) {
  char what[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (l->err && l->errlen) {
    snprintf(l->err, l->errlen, "%s%s%s: %s", l->file, key ? ": " : "", key ? key : "", what);
    flatten_line(l->err);
  }
  return -1;
}

/* A short, printable description of a JSON value for "got ..." messages. */
static void describe(const json_t *v, char *buf, size_t len) {
  if (json_is_string(v))
    snprintf(buf, len, "\"%.40s%s\"", json_string_value(v), json_string_length(v) > 40 ? "..." : "");
  else if (json_is_integer(v))
    snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  else if (json_is_real(v))
    snprintf(buf, len, "%g", json_real_value(v));
  else
    snprintf(buf, len, "%s",
             json_is_true(v)     ? "true"
             : json_is_false(v)  ? "false"
             : json_is_null(v)   ? "null"
             : json_is_object(v) ? "an object"
                                 : "an array");
}

/* The kind of a value without its content (for secrets). */
static const char *type_name(const json_t *v) {
  if (json_is_string(v))
    return "a string";
  if (json_is_number(v))
    return "a number";
  if (json_is_boolean(v))
    return "a boolean";
  return json_is_object(v) ? "an object" : "an array";
}

/* "pfx.key" (or "key"); a path too long for buf is cut, which only shortens a message. */
static const char *keypath(char *buf, size_t len, const char *pfx, const char *key) {
  int n = pfx ? snprintf(buf, len, "%s.%s", pfx, key) : snprintf(buf, len, "%s", key);
  if (n < 0)
    buf[0] = '\0';
  return buf;
}

/* Records "<file>: <pfx.key>: expected <expected>, got <v>" and returns -1. */
static int wrong(loader_t *l, const char *pfx, const char *key, const json_t *v, const char *expected) {
  char kp[KEY_PATH_LEN], got[64];
  describe(v, got, sizeof got);
  return loader_fail(l, key ? keypath(kp, sizeof kp, pfx, key) : pfx, "expected %s, got %s", expected, got);
}

/* obj[key], or NULL when it is absent or null (null means "use the default"). */
static json_t *field(const json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_null(v) ? NULL : v;
}

/* ---- files ------------------------------------------------------------- */

/* Reads at most cap bytes of path into a NUL-terminated malloc'd buffer.
 * Returns 0, -EFBIG when the file is larger, or another -errno. */
static int read_capped(const char *path, size_t cap, char **out, size_t *outlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  int e = fstat(fd, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? -EISDIR : 0;
  if (e) {
    close(fd);
    return e;
  }
  char *buf = malloc(cap + 1);
  size_t n = 0;
  e = buf ? 0 : -ENOMEM;
  while (e == 0) {
    ssize_t r = read(fd, buf + n, cap + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      e = r < 0 ? -errno : 0;
      break;
    }
    n += (size_t)r;
    if (n > cap)
      e = -EFBIG;
  }
  close(fd);
  if (e) {
    if (buf)
      explicit_bzero(buf, n);
    free(buf);
    return e;
  }
  buf[n] = '\0';
  *out = buf;
  *outlen = n;
  return 0;
}

/* Parses the config file (which may hold keys: its raw bytes are wiped). */
static json_t *load_json_file(loader_t *l, const char *path) {
  char *buf = NULL, got[64];
  size_t n = 0;
  int rc = read_capped(path, CONFIG_MAX_BYTES, &buf, &n);
  if (rc < 0) {
    if (rc == -EFBIG)
      loader_fail(l, NULL, "file is larger than %d MiB; is this the right file?", CONFIG_MAX_BYTES >> 20);
    else
      loader_fail(l, NULL, "cannot read: %s", strerror(-rc));
    return NULL;
  }
  json_error_t je;
  json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
  explicit_bzero(buf, n);
  free(buf);
  if (!root && l->err && l->errlen) {
    snprintf(l->err, l->errlen, "%s:%d:%d: JSON syntax error: %s", path, je.line, je.column, je.text);
    flatten_line(l->err);
  }
  if (root && !json_is_object(root)) {
    describe(root, got, sizeof got);
    loader_fail(l, NULL, "expected a JSON object at the top level, got %s", got);
    json_decref(root);
    root = NULL;
  }
  return root;
}

/* Overwrites a jansson string's bytes (it held a secret). */
static void wipe_json_string(json_t *v) {
  if (json_is_string(v))
    explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Joins dir and rel into out; 0 when that is a regular file. */
static int try_path(const char *dir, const char *rel, char *out, size_t len) {
  int n = dir ? snprintf(out, len, "%s/%s", dir, rel) : snprintf(out, len, "%s", rel);
  if (n < 0 || (size_t)n >= len)
    return -ENAMETOOLONG;
  struct stat st;
  return stat(out, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -ENOENT;
}

/* -ENOENT when dir is not a directory, -ENAMETOOLONG when it does not fit. */
static int copy_dir(const char *dir, char *buf, size_t len) {
  if (!dir || !*dir || !is_dir(dir))
    return -ENOENT;
  if (strlen(dir) >= len)
    return -ENAMETOOLONG;
  strcpy(buf, dir);
  return 0;
}

/* <prefix>/share/cadre/prompts for an executable installed as <prefix>/bin/x. */
static int exe_share_dir(char *buf, size_t len) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return -ENOENT;
  exe[n] = '\0';
  for (int i = 0; i < 2; i++) {
    char *slash = strrchr(exe, '/');
    if (!slash)
      return -ENOENT;
    *slash = '\0';
  }
  char dir[PATH_MAX + 32];
  snprintf(dir, sizeof dir, "%s/share/cadre/prompts", exe);
  return copy_dir(dir, buf, len);
}

/* Finds the built-in prompts directory; see config.h for the order. */
int config_find_prompts_dir(char *buf, size_t len) {
  if (!buf || len == 0)
    return -EINVAL;
  buf[0] = '\0';
  int rc = copy_dir(getenv("CADRE_PROMPTS_DIR"), buf, len);
#ifdef CADRE_DATADIR
  if (rc == -ENOENT)
    rc = copy_dir(CADRE_DATADIR "/prompts", buf, len);
#endif
  if (rc == -ENOENT)
    rc = exe_share_dir(buf, len);
#ifdef CADRE_SOURCE_ROOT
  if (rc == -ENOENT)
    rc = copy_dir(CADRE_SOURCE_ROOT "/prompts", buf, len);
#endif
  if (rc < 0)
    buf[0] = '\0';
  return rc;
}

/* ---- field getters: absent or null keeps the default -------------------- */

static int set_str(loader_t *l, char **dst, const char *s) {
  char *copy = strdup(s);
  if (!copy)
    return loader_fail(l, NULL, "out of memory");
  free(*dst);
  *dst = copy;
  return 0;
}

static int get_string(loader_t *l, json_t *obj, const char *pfx, const char *key, char **out) {
  json_t *v = field(obj, key);
  if (!v)
    return 0;
  if (!json_is_string(v) || json_string_length(v) == 0)
    return wrong(l, pfx, key, v, "a non-empty string");
  return set_str(l, out, json_string_value(v));
}

/* A number in [lo, hi]; range says so in words ("between 0 and 2"). */
static int get_number(loader_t *l, json_t *obj, const char *pfx, const char *key, double lo, double hi,
                      const char *range, double *out) {
  json_t *v = field(obj, key);
  if (!v)
    return 0;
  if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
    char expected[64];
    snprintf(expected, sizeof expected, "a number %s", range);
    return wrong(l, pfx, key, v, expected);
  }
  *out = json_number_value(v);
  return 0;
}

static int get_int(loader_t *l, json_t *obj, const char *pfx, const char *key, int lo, int hi, int *out) {
  json_t *v = field(obj, key);
  if (!v)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
    char expected[64];
    snprintf(expected, sizeof expected, "an integer from %d to %d", lo, hi);
    return wrong(l, pfx, key, v, expected);
  }
  *out = (int)json_integer_value(v);
  return 0;
}

static int get_bool(loader_t *l, json_t *obj, const char *pfx, const char *key, bool *out) {
  json_t *v = field(obj, key);
  if (v && !json_is_boolean(v))
    return wrong(l, pfx, key, v, "true or false");
  if (v)
    *out = json_is_true(v);
  return 0;
}

/* max_tokens_field: "max_tokens" or "max_completion_tokens" (absent: NULL). */
static int get_max_tokens_field(loader_t *l, json_t *obj, const char *pfx, char **out) {
  json_t *v = field(obj, "max_tokens_field");
  const char *s = json_string_value(v);
  if (v && (!s || (strcmp(s, "max_tokens") != 0 && strcmp(s, "max_completion_tokens") != 0)))
    return wrong(l, pfx, "max_tokens_field", v, "\"max_tokens\" or \"max_completion_tokens\"");
  return v ? set_str(l, out, s) : 0;
}

/* think (Ollama): a bool or a level string such as "high" (absent: NULL). */
static int get_think(loader_t *l, json_t *obj, const char *pfx, json_t **out) {
  json_t *v = field(obj, "think");
  if (v && !json_is_boolean(v) && !(json_is_string(v) && json_string_length(v) > 0))
    return wrong(l, pfx, "think", v, "true, false or a level such as \"high\"");
  if (v) {
    json_decref(*out);
    *out = json_incref(v);
  }
  return 0;
}

/* labels: {"key": "value", ...}, strings only: the node labels a turn needs. */
static int get_labels(loader_t *l, json_t *obj, const char *pfx, json_t **out) {
  json_t *v = field(obj, "labels");
  if (!v)
    return 0;
  if (!json_is_object(v))
    return wrong(l, pfx, "labels", v, "an object of strings, e.g. {\"gpu\": \"1\"}");
  const char *k;
  json_t *x;
  json_object_foreach(v, k, x) {
    if (!json_is_string(x) || !config_label_ok(k) || !config_label_ok(json_string_value(x)))
      return wrong(l, pfx, "labels", v,
                   "an object of strings (keys and values: 1 to 63 letters, digits, '.', '_', '-', '/')");
  }
  json_decref(*out);
  *out = json_deep_copy(v);
  return 0;
}

bool config_label_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  return n > 0 && n < 64 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/") == n;
}

/* api_key: a string or null; the parsed copy is wiped once taken. */
static int get_api_key(loader_t *l, json_t *obj, const char *pfx, char **out) {
  json_t *v = field(obj, "api_key");
  char kp[KEY_PATH_LEN];
  if (!v)
    return 0;
  if (!json_is_string(v)) /* not describe(): never echo what may be a key */
    return loader_fail(l, keypath(kp, sizeof kp, pfx, "api_key"), "expected a string or null, got %s", type_name(v));
  int rc = json_string_length(v) > 0 ? set_str(l, out, json_string_value(v)) : 0;
  wipe_json_string(v);
  return rc;
}

/* ---- profiles ---------------------------------------------------------- */

/* True when s is 1 to max bytes long and every byte passes ok. */
static bool valid_chars(const char *s, size_t max, bool (*ok)(unsigned char c)) {
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return false;
  for (; *s; s++)
    if (!ok((unsigned char)*s))
      return false;
  return true;
}

static bool role_char(unsigned char c) {
  return islower(c) || isdigit(c) || c == '_' || c == '-';
}

static bool name_char(unsigned char c) {
  return !iscntrl(c);
}

static bool valid_role(const char *s) {
  return valid_chars(s, ROLE_MAX_LEN, role_char);
}

static bool valid_name(const char *s) {
  return valid_chars(s, NAME_MAX_LEN, name_char);
}

static bool valid_url(const char *u) {
  size_t skip = strncmp(u, "http://", 7) == 0 ? 7 : strncmp(u, "https://", 8) == 0 ? 8 : 0;
  if (skip == 0 || u[skip] == '\0' || u[skip] == '/')
    return false;
  for (; *u; u++)
    if (isspace((unsigned char)*u) || iscntrl((unsigned char)*u))
      return false;
  return true;
}

static const char *default_url(const char *provider) {
  for (size_t i = 0; i < COUNT(DEFAULT_URLS); i++)
    if (strcmp(provider, DEFAULT_URLS[i].provider) == 0)
      return DEFAULT_URLS[i].url;
  return NULL;
}

static int check_url(loader_t *l, cadre_profile_t *p, const char *pfx) {
  char kp[KEY_PATH_LEN];
  keypath(kp, sizeof kp, pfx, "url");
  if (!p->url) {
    const char *def = default_url(p->provider);
    if (!def)
      return loader_fail(l, kp,
                         "missing; provider \"%s\" has no default URL, so give one "
                         "(e.g. \"http://localhost:8000/v1\")",
                         p->provider);
    return set_str(l, &p->url, def);
  }
  if (!valid_url(p->url))
    return loader_fail(l, kp, "expected an http:// or https:// URL, got \"%.80s\"", p->url);
  return 0;
}

static int check_required(loader_t *l, cadre_profile_t *p, const char *pfx) {
  char kp[KEY_PATH_LEN];
  if (!p->model)
    return loader_fail(l, keypath(kp, sizeof kp, pfx, "model"), "missing (required), e.g. \"gpt-oss:20b\"");
  if (!p->role)
    return loader_fail(l, keypath(kp, sizeof kp, pfx, "role"), "missing (required), e.g. \"reviewer\"");
  if (!valid_role(p->role))
    return loader_fail(l, keypath(kp, sizeof kp, pfx, "role"),
                       "expected lowercase letters, digits, '_' or '-' (at most %d), got \"%.40s\"", ROLE_MAX_LEN,
                       p->role);
  return 0;
}

/* ---- tools ------------------------------------------------------------ */

static const char *const node_tools[] = {
#define CONFIG_TOOL_NAME(n) #n,
    CADRE_NODE_TOOLS(CONFIG_TOOL_NAME)
#undef CONFIG_TOOL_NAME
};

static bool node_tool(const char *name) {
  for (size_t i = 0; i < COUNT(node_tools); i++)
    if (strcmp(node_tools[i], name) == 0)
      return true;
  return false;
}

/* True when name is "<server>__<tool>" or "<server>__*" for a configured MCP server. */
static bool mcp_tool_entry(const loader_t *l, const char *name) {
  const char *sep = strstr(name, "__");
  if (!sep || !sep[2] || !l->cfg)
    return false;
  for (size_t i = 0; i < l->cfg->n_mcp_servers; i++) {
    const char *s = l->cfg->mcp_servers[i].name;
    if (strlen(s) == (size_t)(sep - name) && strncmp(s, name, (size_t)(sep - name)) == 0)
      return true;
  }
  return false;
}

/* A list of known tool names ("*" alone means all of them): node tools into
 * *out, MCP tools ("<server>__<tool>", "<server>__*") into *mcp (absent when
 * none is named; mcp may be NULL only where MCP names are not allowed). */
static int parse_tool_list(loader_t *l, json_t *v, const char *pfx, const char *key, json_t **out, json_t **mcp) {
  char kp[KEY_PATH_LEN];
  if (!v || json_is_null(v))
    return 0;
  keypath(kp, sizeof kp, pfx, key);
  if (!json_is_array(v))
    return wrong(l, kp, NULL, v, "an array of tool names");
  json_t *list = json_array(), *mcp_list = json_array();
  size_t i;
  json_t *t;
  json_array_foreach(v, i, t) {
    const char *name = json_string_value(t);
    if (name && strcmp(name, "*") == 0) {
      for (size_t k = 0; k < COUNT(node_tools); k++)
        json_array_append_new(list, json_string(node_tools[k]));
      continue;
    }
    if (name && mcp && mcp_tool_entry(l, name)) {
      json_array_append_new(mcp_list, json_string(name));
      continue;
    }
    if (!name || !node_tool(name)) {
      json_decref(list);
      json_decref(mcp_list);
      char ik[KEY_PATH_LEN + 32];
      snprintf(ik, sizeof ik, "%s[%zu]", kp, i);
      return loader_fail(l, ik,
                         "unknown tool %s%.64s%s (known: execute_bash, read_file, write_file_tool, edit_file, "
                         "list_files, grep, \"*\", or \"<mcp server>__<tool>\" of a server in mcp_servers)",
                         name ? "\"" : "", name ? name : "(not a string)", name ? "\"" : "");
    }
    json_array_append_new(list, json_string(name));
  }
  json_decref(*out);
  *out = list;
  if (mcp && json_array_size(mcp_list) > 0) {
    json_decref(*mcp);
    *mcp = mcp_list;
  } else {
    json_decref(mcp_list);
  }
  return 0;
}

static json_t *names(const char *const *list) {
  json_t *a = json_array();
  for (; *list; list++)
    json_array_append_new(a, json_string(*list));
  return a;
}

/* Read-only roles look; implementers and testers change things; see README. */
static void default_tools(cadre_tools_config_t *t) {
  static const char *const all[] = {"execute_bash", "read_file", "write_file_tool", "edit_file", "list_files",
                                    "grep",         NULL};
  static const char *const look[] = {"read_file", "list_files", "grep", NULL};
  static const char *const measure[] = {"read_file", "list_files", "grep", "execute_bash", NULL};
  t->policy = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "main", names(all), "implementer", names(all), "tester",
                        names(all), "optimizer", names(measure), "reviewer", names(look), "researcher", names(look),
                        "*", names(look));
  t->network = json_object();
  t->mcp_policy = json_object();
  snprintf(t->approval, sizeof t->approval, "mutating");
  t->timeout_s = 120;
  t->max_iterations = 25;
  t->max_tool_calls = 100;
  t->max_tokens_per_agent = 0;
}

/* The top-level object root[key] into *out (NULL when absent); -1 when it is not an object. */
static int section(loader_t *l, json_t *root, const char *key, json_t **out) {
  *out = field(root, key);
  if (*out && !json_is_object(*out))
    return wrong(l, key, NULL, *out, "an object");
  return 0;
}

/* One role's policy: a list of tools, or {"tools": [...], "network": bool}. */
static int parse_policy(loader_t *l, cadre_config_t *c, const char *role, json_t *v, json_t **list, json_t **mcp) {
  if (!json_is_object(v))
    return parse_tool_list(l, v, "tools.policy", role, list, mcp);
  char kp[KEY_PATH_LEN];
  keypath(kp, sizeof kp, "tools.policy", role);
  bool network = false;
  if (parse_tool_list(l, field(v, "tools"), kp, "tools", list, mcp) < 0 || get_bool(l, v, kp, "network", &network) < 0)
    return -1;
  if (network)
    json_object_set_new(c->tools.network, role, json_true());
  else
    json_object_del(c->tools.network, role);
  return 0;
}

/* Each profile's network switch: its own, else its role's, else "*"'s. */
static void resolve_network(cadre_config_t *c) {
  for (size_t i = 0; i < c->n_profiles; i++) {
    cadre_profile_t *p = &c->profiles[i];
    if (p->network_given)
      continue;
    json_t *v = p->role ? json_object_get(c->tools.policy, p->role) : NULL;
    p->network = json_is_true(json_object_get(c->tools.network, v ? p->role : "*"));
  }
}

/* Each profile's MCP tool list: its own tools' MCP entries, else its role's
 * policy's, else "*"'s (none: every tool of its servers). */
static void resolve_mcp_tools(cadre_config_t *c) {
  for (size_t i = 0; i < c->n_profiles; i++) {
    cadre_profile_t *p = &c->profiles[i];
    if (p->tools || !p->mcp_servers)
      continue;
    json_t *role = p->role ? json_object_get(c->tools.policy, p->role) : NULL;
    json_t *mcp = json_object_get(c->tools.mcp_policy, role ? p->role : "*");
    if (mcp)
      p->mcp_tools = json_incref(mcp);
  }
}

static int parse_tools(loader_t *l, cadre_config_t *c, json_t *root) {
  json_t *t;
  if (section(l, root, "tools", &t) < 0 || !t)
    return t ? -1 : 0;
  json_t *policy = field(t, "policy");
  if (policy && !json_is_object(policy))
    return wrong(l, "tools.policy", NULL, policy, "an object mapping roles to tool lists");
  const char *role;
  json_t *v;
  json_object_foreach(policy, role, v) {
    json_t *list = NULL, *mcp = NULL;
    if (parse_policy(l, c, role, v, &list, &mcp) < 0) {
      json_decref(list);
      json_decref(mcp);
      return -1;
    }
    json_object_set_new(c->tools.policy, role, list ? list : json_array());
    if (mcp)
      json_object_set_new(c->tools.mcp_policy, role, mcp);
  }
  char *approval = NULL;
  if (get_string(l, t, "tools", "approval", &approval) < 0)
    return -1;
  if (approval && strcmp(approval, "never") && strcmp(approval, "mutating") && strcmp(approval, "always")) {
    free(approval);
    return loader_fail(l, "tools.approval", "expected \"never\", \"mutating\" or \"always\"");
  }
  if (approval)
    snprintf(c->tools.approval, sizeof c->tools.approval, "%s", approval);
  free(approval);
  int tokens = 0;
  if (get_int(l, t, "tools", "timeout_s", 1, 3600, &c->tools.timeout_s) < 0 ||
      get_int(l, t, "tools", "max_iterations", 1, 1000, &c->tools.max_iterations) < 0 ||
      get_int(l, t, "tools", "max_tool_calls", 1, 10000, &c->tools.max_tool_calls) < 0 ||
      get_int(l, t, "tools", "max_tokens_per_agent", 0, 2000000000, &tokens) < 0)
    return -1;
  if (tokens)
    c->tools.max_tokens_per_agent = tokens;
  return 0;
}

/* The node tools a profile may use. */
json_t *config_tools_for(const cadre_config_t *self, const cadre_profile_t *p) {
  if (p && p->tools)
    return json_incref(p->tools);
  json_t *list = p ? json_object_get(self->tools.policy, p->role) : NULL;
  if (!list)
    list = json_object_get(self->tools.policy, "*");
  return list ? json_incref(list) : json_array();
}

/* A profile's mcp_servers: names of servers in the top-level mcp_servers. */
static int get_profile_mcp(loader_t *l, json_t *obj, const char *pfx, json_t **out) {
  json_t *v = field(obj, "mcp_servers");
  char kp[KEY_PATH_LEN], ik[KEY_PATH_LEN + 32];
  if (!v)
    return 0;
  keypath(kp, sizeof kp, pfx, "mcp_servers");
  if (!json_is_array(v))
    return wrong(l, kp, NULL, v, "an array of MCP server names (keys of the top-level mcp_servers)");
  size_t i;
  json_t *s;
  json_array_foreach(v, i, s) {
    snprintf(ik, sizeof ik, "%s[%zu]", kp, i);
    if (!json_is_string(s))
      return wrong(l, ik, NULL, s, "the name of an MCP server");
    if (!config_mcp_server(l->cfg, json_string_value(s)))
      return loader_fail(l, ik, "unknown MCP server \"%.64s\"; define it in the top-level mcp_servers",
                         json_string_value(s));
  }
  json_decref(*out);
  *out = json_array_size(v) ? json_deep_copy(v) : NULL;
  return 0;
}

static int parse_fields(loader_t *l, json_t *v, cadre_profile_t *p, const char *pfx) {
  if (get_string(l, v, pfx, "provider", &p->provider) < 0 || (!p->provider && set_str(l, &p->provider, "ollama") < 0) ||
      get_string(l, v, pfx, "url", &p->url) < 0 || check_url(l, p, pfx) < 0 ||
      get_string(l, v, pfx, "model", &p->model) < 0 || get_api_key(l, v, pfx, &p->api_key) < 0 ||
      get_string(l, v, pfx, "role", &p->role) < 0 || check_required(l, p, pfx) < 0)
    return -1;
  if (get_number(l, v, pfx, "temperature", 0, 2, "between 0 and 2", &p->temperature) < 0 ||
      get_int(l, v, pfx, "max_tokens", 1, MAX_TOKENS_CAP, &p->max_tokens) < 0 ||
      get_int(l, v, pfx, "context_tokens", 256, MAX_TOKENS_CAP, &p->context_tokens) < 0 ||
      get_int(l, v, pfx, "turn_timeout_s", 1, 86400, &p->turn_timeout_s) < 0 ||
      get_bool(l, v, pfx, "stream", &p->stream) < 0 ||
      get_bool(l, v, pfx, "summarize_context", &p->summarize_context) < 0 ||
      get_bool(l, v, pfx, "compact", &p->compact) < 0 ||
      get_string(l, v, pfx, "system_prompt_file", &p->system_prompt_file) < 0 ||
      get_number(l, v, pfx, "cost_per_1m_input", 0, DBL_MAX, "of 0 or more (USD)", &p->cost_per_1m_input) < 0 ||
      get_number(l, v, pfx, "cost_per_1m_output", 0, DBL_MAX, "of 0 or more (USD)", &p->cost_per_1m_output) < 0 ||
      get_number(l, v, pfx, "tokens_per_second", 0, 1e6, "between 0 and 1000000", &p->tokens_per_second) < 0 ||
      parse_tool_list(l, field(v, "tools"), pfx, "tools", &p->tools, &p->mcp_tools) < 0 ||
      get_profile_mcp(l, v, pfx, &p->mcp_servers) < 0 || get_max_tokens_field(l, v, pfx, &p->max_tokens_field) < 0 ||
      get_think(l, v, pfx, &p->think) < 0 || get_labels(l, v, pfx, &p->labels) < 0 ||
      get_bool(l, v, pfx, "network", &p->network) < 0)
    return -1;
  p->network_given = field(v, "network") != NULL;
  return 0;
}

/* ---- prompts ----------------------------------------------------------- */

/* Reads a prompt file into *text. */
static int read_prompt_text(loader_t *l, const char *path, const char *kp, char **text) {
  char *buf = NULL;
  size_t n = 0;
  int rc = read_capped(path, PROMPT_MAX_BYTES, &buf, &n);
  if (rc == -EFBIG)
    return loader_fail(l, kp, "prompt file \"%s\" is larger than %d KiB", path, PROMPT_MAX_BYTES / 1024);
  if (rc < 0)
    return loader_fail(l, kp, "cannot read prompt file \"%s\": %s", path, strerror(-rc));
  json_t *probe = memchr(buf, '\0', n) ? NULL : json_stringn(buf, n);
  if (!probe) {
    free(buf);
    return loader_fail(l, kp, "prompt file \"%s\" is not UTF-8 text", path);
  }
  json_decref(probe);
  char *shrunk = realloc(buf, n + 1);
  *text = shrunk ? shrunk : buf;
  return 0;
}

static int default_prompt(loader_t *l, cadre_profile_t *p, char **out);

/* The profile's prompt from path, and its short form for a small context:
 * path's "<base>.short.txt" twin when there is one, else (roles other than
 * main) the built-in role prompt, which is short. */
static int read_prompt(loader_t *l, cadre_profile_t *p, const char *path, const char *kp) {
  if (read_prompt_text(l, path, kp, &p->system_prompt) < 0 || set_str(l, &p->system_prompt_path, path) < 0)
    return -1;
  char twin[PATH_MAX], found[PATH_MAX];
  size_t n = strlen(path);
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  size_t base = dot && (!slash || dot > slash) ? (size_t)(dot - path) : n;
  if (snprintf(twin, sizeof twin, "%.*s.short.txt", (int)base, path) < (int)sizeof twin &&
      try_path(NULL, twin, found, sizeof found) == 0)
    return read_prompt_text(l, found, kp, &p->system_prompt_short);
  return strcmp(p->role, "main") == 0 ? 0 : default_prompt(l, p, &p->system_prompt_short);
}

/* Looks for rel (then its base name) in the prompts directories. */
static int find_in_prompt_dirs(const loader_t *l, const char *rel, char *out, size_t len) {
  const char *slash = strrchr(rel, '/');
  const char *base = slash ? slash + 1 : rel;
  const char *dirs[] = {l->prompts_dir, l->found_dir[0] ? l->found_dir : NULL};
  for (size_t i = 0; i < COUNT(dirs); i++) {
    if (!dirs[i] || !*dirs[i])
      continue;
    if (try_path(dirs[i], rel, out, len) == 0 || (base != rel && try_path(dirs[i], base, out, len) == 0))
      return 0;
  }
  return -ENOENT;
}

static int load_named_prompt(loader_t *l, cadre_profile_t *p, const char *kp) {
  const char *f = p->system_prompt_file;
  char path[PATH_MAX];
  bool found;
  if (f[0] == '/')
    found = try_path(NULL, f, path, sizeof path) == 0;
  else
    found = (l->config_dir[0] && try_path(l->config_dir, f, path, sizeof path) == 0) ||
            find_in_prompt_dirs(l, f, path, sizeof path) == 0;
  if (found)
    return read_prompt(l, p, path, kp);
  if (f[0] == '/')
    return loader_fail(l, kp, "prompt file \"%s\" not found", f);
  return loader_fail(l, kp, "prompt file \"%s\" not found in %s%s%s%s%s", f, l->config_dir[0] ? l->config_dir : "",
                     l->prompts_dir ? ", " : "", l->prompts_dir ? l->prompts_dir : "", l->found_dir[0] ? ", " : "",
                     l->found_dir);
}

/* The prompt of a sub-agent role that has no prompt file: without it the
 * agent would never be asked for the [SUMMARY] its parent waits for. */
static const char DEFAULT_ROLE_PROMPT[] =
    "You are the %s agent in Cadre, a multi-agent coding system. The main agent gave you a task; do it\n"
    "with the tools you have, in the workspace you are given, and keep to the task.\n"
    "\n"
    "End every final answer with exactly one summary block in this format, as plain text (not in a code\n"
    "fence), with nothing after it:\n"
    "\n"
    "[SUMMARY]\n"
    "Status: PASS/FAIL\n"
    "Key Points:\n"
    "- Point 1\n"
    "- Point 2\n"
    "Recommendation: Action to take\n"
    "[/SUMMARY]\n"
    "\n"
    "Status: PASS if the task is done, FAIL if it is not (say why in Key Points).\n";

static int default_prompt(loader_t *l, cadre_profile_t *p, char **out) {
  int n = snprintf(NULL, 0, DEFAULT_ROLE_PROMPT, p->role);
  char *buf = n > 0 ? malloc((size_t)n + 1) : NULL;
  if (!buf)
    return loader_fail(l, "agents", "out of memory");
  snprintf(buf, (size_t)n + 1, DEFAULT_ROLE_PROMPT, p->role);
  *out = buf;
  return 0;
}

/* The profile's prompt: its system_prompt_file, else <role>_prompt.txt if any,
 * else (roles other than main) a built-in one that asks for the [SUMMARY]. */
static int load_prompt(loader_t *l, cadre_profile_t *p) {
  char kp[KEY_PATH_LEN], fname[ROLE_MAX_LEN + 16], path[PATH_MAX];
  snprintf(kp, sizeof kp, "agents.%s.system_prompt_file", p->name);
  if (p->system_prompt_file)
    return load_named_prompt(l, p, kp);
  snprintf(fname, sizeof fname, "%s_prompt.txt", p->role);
  if (find_in_prompt_dirs(l, fname, path, sizeof path) < 0)
    return strcmp(p->role, "main") == 0 ? 0 : default_prompt(l, p, &p->system_prompt);
  return read_prompt(l, p, path, kp);
}

static int parse_profile(loader_t *l, const char *name, json_t *v, cadre_profile_t *p) {
  char pfx[KEY_PATH_LEN];
  snprintf(pfx, sizeof pfx, "agents.%s", name);
  if (!valid_name(name))
    return loader_fail(l, "agents", "profile name \"%.80s\" must be 1 to %d printable characters", name, NAME_MAX_LEN);
  if (!json_is_object(v))
    return wrong(l, pfx, NULL, v, "an object (an agent profile)");
  p->temperature = 0.7;
  p->max_tokens = 2048;
  p->stream = true;
  p->summarize_context = true;
  if (set_str(l, &p->name, name) < 0 || parse_fields(l, v, p, pfx) < 0)
    return -1;
  return load_prompt(l, p);
}

static int check_main(loader_t *l, const cadre_config_t *c) {
  const cadre_profile_t *main_p = NULL;
  for (size_t i = 0; i < c->n_profiles; i++) {
    const cadre_profile_t *p = &c->profiles[i];
    if (strcmp(p->role, "main") != 0)
      continue;
    if (main_p)
      return loader_fail(l, "agents", "profiles \"%s\" and \"%s\" both have role \"main\"; exactly one may",
                         main_p->name, p->name);
    main_p = p;
  }
  if (!main_p)
    return loader_fail(l, "agents", "no profile has role \"main\"; one profile must be the main agent");
  return 0;
}

/* calloc that records "out of memory" in the loader when it fails. */
static void *loader_calloc(loader_t *l, size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p)
    loader_fail(l, NULL, "out of memory");
  return p;
}

/* For an object v at key: zeroed room for one element of size per member
 * plus one. NULL, with the error recorded, when v is not an object (what: what
 * it should be) or memory runs out. */
static void *object_slots(loader_t *l, json_t *v, const char *key, const char *what, size_t size) {
  if (!json_is_object(v)) {
    wrong(l, key, NULL, v, what);
    return NULL;
  }
  return loader_calloc(l, json_object_size(v) + 1, size);
}

static int parse_agents(loader_t *l, cadre_config_t *c, json_t *root) {
  json_t *agents = json_object_get(root, "agents");
  if (!agents)
    return loader_fail(l, "agents",
                       "missing; expected an object of agent profiles, "
                       "e.g. {\"main_agent\": {\"role\": \"main\", \"model\": \"...\"}}");
  if (!(c->profiles = object_slots(l, agents, "agents", "an object of agent profiles", sizeof *c->profiles)))
    return -1;
  const char *name;
  json_t *v;
  json_object_foreach(agents, name, v) {
    if (parse_profile(l, name, v, &c->profiles[c->n_profiles++]) < 0)
      return -1;
  }
  return check_main(l, c);
}

/* ---- spawning rules ---------------------------------------------------- */

static int add_keyword(loader_t *l, cadre_config_t *c, const char *word, const char *profile) {
  cadre_keyword_rule_t *r = &c->keywords[c->n_keywords++];
  if (set_str(l, &r->keyword, word) < 0 || set_str(l, &r->profile, profile) < 0)
    return -1;
  return 0;
}

static int parse_keywords(loader_t *l, cadre_config_t *c, json_t *kw) {
  char kp[KEY_PATH_LEN];
  if (!kw)
    return 0;
  if (!(c->keywords = object_slots(l, kw, "spawning_rules.keywords", "an object mapping words to profile names",
                                   sizeof *c->keywords)))
    return -1;
  const char *word;
  json_t *v;
  json_object_foreach(kw, word, v) {
    keypath(kp, sizeof kp, "spawning_rules.keywords", word);
    if (!*word)
      return loader_fail(l, kp, "a keyword must not be empty");
    if (!json_is_string(v))
      return wrong(l, kp, NULL, v, "a profile name");
    if (!config_profile(c, json_string_value(v)))
      return loader_fail(l, kp, "names profile \"%.80s\", which is not in agents", json_string_value(v));
    if (add_keyword(l, c, word, json_string_value(v)) < 0)
      return -1;
  }
  return 0;
}

/* spawning_rules.context: "full", "none" or "last:N". */
static int parse_context(loader_t *l, cadre_config_t *c, json_t *v) {
  if (!v || json_is_null(v))
    return 0;
  const char *s = json_string_value(v);
  int n = 0;
  char extra;
  if (s && strcmp(s, "full") == 0)
    c->spawn_context = -1;
  else if (s && strcmp(s, "none") == 0)
    c->spawn_context = 0;
  else if (s && sscanf(s, "last:%d%c", &n, &extra) == 1 && n > 0 && n <= 100000)
    c->spawn_context = n;
  else
    return wrong(l, "spawning_rules.context", NULL, v, "\"full\", \"none\" or \"last:N\" (N > 0)");
  return 0;
}

static int parse_spawning(loader_t *l, cadre_config_t *c, json_t *root) {
  json_t *sr;
  if (section(l, root, "spawning_rules", &sr) < 0 || !sr)
    return sr ? -1 : 0;
  if (get_bool(l, sr, "spawning_rules", "auto_spawn_on_keywords", &c->auto_spawn_on_keywords) < 0 ||
      get_bool(l, sr, "spawning_rules", "require_confirmation", &c->require_confirmation) < 0 ||
      get_bool(l, sr, "spawning_rules", "delegation", &c->delegation) < 0 ||
      get_int(l, sr, "spawning_rules", "max_depth", 0, 8, &c->max_spawn_depth) < 0 ||
      parse_context(l, c, field(sr, "context")) < 0)
    return -1;
  return parse_keywords(l, c, field(sr, "keywords"));
}

/* ---- loading ----------------------------------------------------------- */

static void set_config_dir(loader_t *l, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    strcpy(l->config_dir, ".");
    return;
  }
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  if (n >= sizeof l->config_dir)
    n = sizeof l->config_dir - 1;
  memcpy(l->config_dir, path, n);
  l->config_dir[n] = '\0';
}

/* budgets: {"role": {"tokens": N, "cost": USD}}: each session of that role,
 * with its sub-agents, may use at most that (0 or absent: no limit). */
static int parse_budgets(loader_t *l, cadre_config_t *c, json_t *root) {
  json_t *b;
  if (section(l, root, "budgets", &b) < 0 || !b)
    return 0;
  const char *role;
  json_t *v;
  json_object_foreach(b, role, v) {
    char pfx[KEY_PATH_LEN];
    int tokens = 0;
    double cost = 0;
    keypath(pfx, sizeof pfx, "budgets", role);
    if (!json_is_object(v))
      return wrong(l, pfx, NULL, v, "an object such as {\"tokens\": 50000, \"cost\": 0.50}");
    if (get_int(l, v, pfx, "tokens", 0, 2000000000, &tokens) < 0 ||
        get_number(l, v, pfx, "cost", 0, DBL_MAX, "of 0 or more (USD)", &cost) < 0)
      return -1;
  }
  json_decref(c->budgets);
  c->budgets = json_deep_copy(b);
  return 0;
}

/* ---- MCP servers ------------------------------------------------------- */

/* A server name: 1 to 32 of letters, digits, '-' and '_', without "__" (the
 * separator of "<server>__<tool>"). */
static bool valid_mcp_name(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n <= 32 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n &&
         !strstr(s, "__");
}

/* A NULL-terminated copy of an array of strings (v may be NULL: empty). */
static int string_list(loader_t *l, json_t *v, const char *kp, char ***out) {
  if (v && !json_is_array(v))
    return wrong(l, kp, NULL, v, "an array of strings");
  char **list = loader_calloc(l, json_array_size(v) + 1, sizeof *list);
  if (!list)
    return -1;
  *out = list;
  size_t i;
  json_t *s;
  json_array_foreach(v, i, s) {
    if (!json_is_string(s)) {
      char ik[KEY_PATH_LEN + 32];
      snprintf(ik, sizeof ik, "%s[%zu]", kp, i);
      return wrong(l, ik, NULL, s, "a string");
    }
    if (set_str(l, &list[i], json_string_value(s)) < 0)
      return -1;
  }
  return 0;
}

/* env: {"NAME": "value"}, as "NAME=value" strings. Values are never echoed. */
static int mcp_env(loader_t *l, json_t *v, const char *pfx, char ***out) {
  char kp[KEY_PATH_LEN];
  keypath(kp, sizeof kp, pfx, "env");
  if (v && !json_is_object(v))
    return loader_fail(l, kp, "expected an object of strings, got %s", type_name(v));
  char **list = loader_calloc(l, json_object_size(v) + 1, sizeof *list);
  if (!list)
    return -1;
  *out = list;
  const char *k;
  json_t *x;
  size_t n = 0;
  json_object_foreach(v, k, x) {
    char ik[KEY_PATH_LEN + 80];
    keypath(ik, sizeof ik, kp, k);
    if (!*k || strchr(k, '='))
      return loader_fail(l, ik, "not a valid environment variable name");
    if (!json_is_string(x))
      return loader_fail(l, ik, "expected a string, got %s", type_name(x));
    size_t len = strlen(k) + json_string_length(x) + 2;
    if (!(list[n] = malloc(len)))
      return loader_fail(l, NULL, "out of memory");
    snprintf(list[n++], len, "%s=%s", k, json_string_value(x));
    wipe_json_string(x);
  }
  return 0;
}

static int parse_mcp_server(loader_t *l, const char *name, json_t *v, cadre_mcp_server_t *m) {
  char pfx[KEY_PATH_LEN], kp[KEY_PATH_LEN];
  keypath(pfx, sizeof pfx, "mcp_servers", name);
  if (!valid_mcp_name(name))
    return loader_fail(l, pfx, "a server name is 1 to 32 letters, digits, '-' or '_', without \"__\"");
  if (!json_is_object(v))
    return wrong(l, pfx, NULL, v, "an object: {\"command\": ..., \"args\": [...]} or {\"url\": ...}");
  if (set_str(l, &m->name, name) < 0 || get_string(l, v, pfx, "command", &m->command) < 0 ||
      get_string(l, v, pfx, "url", &m->url) < 0 ||
      string_list(l, field(v, "args"), keypath(kp, sizeof kp, pfx, "args"), &m->args) < 0 ||
      mcp_env(l, field(v, "env"), pfx, &m->env) < 0 || get_int(l, v, pfx, "timeout_s", 1, 3600, &m->timeout_s) < 0)
    return -1;
  if (!m->command == !m->url)
    return loader_fail(l, pfx,
                       m->command ? "give either command (stdio) or url (streamable HTTP), not both"
                                  : "needs a command (a stdio server) or a url (streamable HTTP)");
  if (m->url && strncmp(m->url, "http://", 7) != 0 && strncmp(m->url, "https://", 8) != 0)
    return loader_fail(l, keypath(kp, sizeof kp, pfx, "url"), "expected an http:// or https:// URL");
  if (m->url && (m->args[0] || m->env[0]))
    return loader_fail(l, pfx, "args and env are for a command; a url server takes neither");
  return 0;
}

static int parse_mcp_servers(loader_t *l, cadre_config_t *c, json_t *root) {
  json_t *ms;
  if (section(l, root, "mcp_servers", &ms) < 0 || !ms)
    return ms ? -1 : 0;
  if (!(c->mcp_servers = loader_calloc(l, json_object_size(ms) + 1, sizeof *c->mcp_servers)))
    return -1;
  const char *name;
  json_t *v;
  json_object_foreach(ms, name, v) {
    if (parse_mcp_server(l, name, v, &c->mcp_servers[c->n_mcp_servers++]) < 0)
      return -1;
  }
  return 0;
}

// The MCP server of that name, or NULL.
const cadre_mcp_server_t *config_mcp_server(const cadre_config_t *self, const char *name) {
  for (size_t i = 0; self && name && i < self->n_mcp_servers; i++)
    if (strcmp(self->mcp_servers[i].name, name) == 0)
      return &self->mcp_servers[i];
  return NULL;
}

static int load_file(loader_t *l, cadre_config_t *c, const char *path) {
  set_config_dir(l, path);
  if (set_str(l, &c->path, path) < 0)
    return -1;
  json_t *root = load_json_file(l, path);
  if (!root)
    return -1;
  int rc = -1;
  if (parse_mcp_servers(l, c, root) == 0 && parse_agents(l, c, root) == 0 && parse_spawning(l, c, root) == 0 &&
      parse_tools(l, c, root) == 0 && parse_budgets(l, c, root) == 0 &&
      get_int(l, root, NULL, "max_concurrent_agents", 1, MAX_AGENTS_CAP, &c->max_concurrent_agents) == 0)
    rc = 0;
  if (rc == 0) {
    resolve_network(c);
    resolve_mcp_tools(c);
  }
  json_decref(root);
  return rc;
}

static int default_profile(loader_t *l, const default_profile_t *d, cadre_profile_t *p) {
  if (set_str(l, &p->name, d->name) < 0 || set_str(l, &p->provider, "ollama") < 0 ||
      set_str(l, &p->url, DEFAULT_OLLAMA_URL) < 0 || set_str(l, &p->model, d->model) < 0 ||
      set_str(l, &p->role, d->role) < 0)
    return -1;
  p->temperature = d->temperature;
  p->max_tokens = d->max_tokens;
  p->stream = true;
  p->summarize_context = true;
  p->cost_per_1m_input = d->cost_in;
  p->cost_per_1m_output = d->cost_out;
  return load_prompt(l, p);
}

static int load_defaults(loader_t *l, cadre_config_t *c) {
  c->profiles = calloc(COUNT(DEFAULT_PROFILES), sizeof *c->profiles);
  c->keywords = calloc(COUNT(DEFAULT_KEYWORDS), sizeof *c->keywords);
  if (!c->profiles || !c->keywords)
    return loader_fail(l, NULL, "out of memory");
  for (size_t i = 0; i < COUNT(DEFAULT_PROFILES); i++)
    if (default_profile(l, &DEFAULT_PROFILES[i], &c->profiles[c->n_profiles++]) < 0)
      return -1;
  for (size_t i = 0; i < COUNT(DEFAULT_KEYWORDS); i++)
    if (add_keyword(l, c, DEFAULT_KEYWORDS[i].word, DEFAULT_KEYWORDS[i].profile) < 0)
      return -1;
  c->require_confirmation = true;
  return 0;
}

/* Loads a config file, or the built-in defaults when path is NULL. */
cadre_config_t *config_load(const char *path, const char *prompts_dir, char *err, size_t errlen) {
  loader_t l = {.file = path ? path : "(built-in defaults)", .prompts_dir = prompts_dir, .err = err, .errlen = errlen};
  if (err && errlen)
    err[0] = '\0';
  (void)config_find_prompts_dir(l.found_dir, sizeof l.found_dir);
  cadre_config_t *c = calloc(1, sizeof *c);
  if (!c) {
    loader_fail(&l, NULL, "out of memory");
    return NULL;
  }
  l.cfg = c;
  c->max_concurrent_agents = 5;
  c->spawn_context = -1;
  c->delegation = true;
  c->max_spawn_depth = 1;
  default_tools(&c->tools);
  if ((path ? load_file(&l, c, path) : load_defaults(&l, c)) < 0)
    config_destroy(&c);
  return c;
}

static void profile_free(cadre_profile_t *p) {
  if (p->api_key)
    explicit_bzero(p->api_key, strlen(p->api_key));
  json_decref(p->tools);
  json_decref(p->mcp_servers);
  json_decref(p->mcp_tools);
  json_decref(p->think);
  json_decref(p->labels);
  char *fields[] = {p->api_key,
                    p->name,
                    p->provider,
                    p->url,
                    p->model,
                    p->role,
                    p->system_prompt_file,
                    p->system_prompt_path,
                    p->system_prompt,
                    p->system_prompt_short,
                    p->max_tokens_field};
  for (size_t i = 0; i < COUNT(fields); i++)
    free(fields[i]);
}

/* Frees the config (wiping API keys) and nulls the caller's pointer. */
void config_destroy(cadre_config_t **self_p) {
  if (!self_p || !*self_p)
    return;
  cadre_config_t *c = *self_p;
  for (size_t i = 0; i < c->n_profiles; i++)
    profile_free(&c->profiles[i]);
  for (size_t i = 0; i < c->n_keywords; i++) {
    free(c->keywords[i].keyword);
    free(c->keywords[i].profile);
  }
  for (size_t i = 0; i < c->n_mcp_servers; i++) {
    cadre_mcp_server_t *m = &c->mcp_servers[i];
    free(m->name);
    free(m->command);
    free(m->url);
    util_strv_free(m->args, false);
    util_strv_free(m->env, true);
  }
  free(c->mcp_servers);
  free(c->profiles);
  free(c->keywords);
  json_decref(c->budgets);
  json_decref(c->tools.policy);
  json_decref(c->tools.network);
  json_decref(c->tools.mcp_policy);
  free(c->path);
  free(c);
  *self_p = NULL;
}

/* ---- lookups and JSON views -------------------------------------------- */

/* Profile by name, or NULL. */
const cadre_profile_t *config_profile(const cadre_config_t *self, const char *name) {
  for (size_t i = 0; self && name && i < self->n_profiles; i++)
    if (self->profiles[i].name && strcmp(self->profiles[i].name, name) == 0)
      return &self->profiles[i];
  return NULL;
}

/* First profile with this role, or NULL. */
const cadre_profile_t *config_profile_for_role(const cadre_config_t *self, const char *role) {
  for (size_t i = 0; self && role && i < self->n_profiles; i++)
    if (self->profiles[i].role && strcmp(self->profiles[i].role, role) == 0)
      return &self->profiles[i];
  return NULL;
}

/* The main agent's profile. */
const cadre_profile_t *config_main(const cadre_config_t *self) {
  return config_profile_for_role(self, "main");
}

/* The profile for a node: no api_key, no prompt. */
json_t *config_profile_wire(const cadre_profile_t *p) {
  if (!p)
    return NULL;
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:f, s:i, s:b, s:f, s:f}", "name", p->name, "provider", p->provider,
                   "url", p->url, "model", p->model, "role", p->role, "temperature", p->temperature, "max_tokens",
                   p->max_tokens, "stream", (int)p->stream, "cost_per_1m_input", p->cost_per_1m_input,
                   "cost_per_1m_output", p->cost_per_1m_output);
}

static json_t *profile_display(const cadre_profile_t *p) {
  json_t *o = config_profile_wire(p);
  if (!o)
    return NULL;
  json_object_del(o, "name");
  if (p->max_tokens_field)
    json_object_set_new(o, "max_tokens_field", json_string(p->max_tokens_field));
  if (p->context_tokens)
    json_object_set_new(o, "context_tokens", json_integer(p->context_tokens));
  if (p->turn_timeout_s)
    json_object_set_new(o, "turn_timeout_s", json_integer(p->turn_timeout_s));
  if (!p->summarize_context)
    json_object_set_new(o, "summarize_context", json_false());
  if (p->compact)
    json_object_set_new(o, "compact", json_true());
  if (json_object_size(p->labels) > 0)
    json_object_set(o, "labels", p->labels);
  if (p->network)
    json_object_set_new(o, "network", json_true());
  if (p->think)
    json_object_set(o, "think", p->think);
  if (p->mcp_servers)
    json_object_set(o, "mcp_servers", p->mcp_servers);
  json_object_set_new(o, "api_key", p->api_key ? json_string("***") : json_null());
  json_object_set_new(o, "system_prompt_file",
                      p->system_prompt_file ? json_string(p->system_prompt_file) : json_null());
  json_object_set_new(o, "system_prompt_path",
                      p->system_prompt_path ? json_string(p->system_prompt_path) : json_null());
  return o;
}

/* The MCP servers for display: env values left out (they may be keys). */
static json_t *mcp_display(const cadre_config_t *self) {
  json_t *o = json_object();
  for (size_t i = 0; o && i < self->n_mcp_servers; i++) {
    const cadre_mcp_server_t *m = &self->mcp_servers[i];
    json_t *args = json_array(), *env = json_array();
    for (size_t k = 0; m->args && m->args[k]; k++)
      json_array_append_new(args, json_string(m->args[k]));
    for (size_t k = 0; m->env && m->env[k]; k++)
      json_array_append_new(env, json_stringn(m->env[k], strcspn(m->env[k], "=")));
    json_object_set_new(o, m->name,
                        json_pack("{s:s?, s:s?, s:o, s:o, s:i}", "command", m->command, "url", m->url, "args", args,
                                  "env_names", env, "timeout_s", m->timeout_s));
  }
  return o;
}

/* The whole config for display, with API keys masked. */
json_t *config_to_json(const cadre_config_t *self) {
  if (!self)
    return NULL;
  json_t *agents = json_object(), *kw = json_object();
  for (size_t i = 0; agents && i < self->n_profiles; i++)
    json_object_set_new(agents, self->profiles[i].name, profile_display(&self->profiles[i]));
  for (size_t i = 0; kw && i < self->n_keywords; i++)
    json_object_set_new(kw, self->keywords[i].keyword, json_string(self->keywords[i].profile));
  char context[32];
  if (self->spawn_context < 0)
    snprintf(context, sizeof context, "full");
  else if (self->spawn_context == 0)
    snprintf(context, sizeof context, "none");
  else
    snprintf(context, sizeof context, "last:%d", self->spawn_context);
  json_t *o = json_pack("{s:s?, s:o, s:{s:o, s:b, s:b, s:s, s:b, s:i}, s:i}", "path", self->path, "agents", agents,
                        "spawning_rules", "keywords", kw, "auto_spawn_on_keywords", (int)self->auto_spawn_on_keywords,
                        "require_confirmation", (int)self->require_confirmation, "context", context, "delegation",
                        (int)self->delegation, "max_depth", self->max_spawn_depth, "max_concurrent_agents",
                        self->max_concurrent_agents);
  if (o && self->n_mcp_servers)
    json_object_set_new(o, "mcp_servers", mcp_display(self));
  return o;
}
