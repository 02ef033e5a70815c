/* mcp: the MCP servers an agent daemon uses as tools (see mcp.h). */
#include "mcp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"
#include "log.h"
#include "mcp_io.h"
#include "mcp_msg.h"
#include "sbuf.h"
#include "tools_util.h"
#include "util.h"

/* One server as this node runs it: per name and network switch (a server
 * started with the network never serves a turn without it). */
typedef struct server {
  const cadre_mcp_server_t *def;
  bool network;
  pthread_mutex_t lock; /* one request at a time */
  mcp_conn_t *conn;
  json_t *tools;     /* tools/list as mcp_tools_page entries, or NULL: to be listed */
  int64_t failed_at; /* when a turn last could not start or list it (0: it worked) */
  struct server *next;
} server_t;

struct mcp {
  tools_t *tools;
  const cadre_config_t *config;
  pthread_mutex_t lock; /* the list */
  server_t *servers;
};

mcp_t *mcp_new(tools_t *tools, const cadre_config_t *config) {
  mcp_t *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->tools = tools;
  m->config = config;
  pthread_mutex_init(&m->lock, NULL);
  return m;
}

void mcp_destroy(mcp_t **self_p) {
  mcp_t *m = self_p ? *self_p : NULL;
  if (!m)
    return;
  for (server_t *s = m->servers, *next; s; s = next) {
    next = s->next;
    mcp_conn_destroy(&s->conn);
    json_decref(s->tools);
    pthread_mutex_destroy(&s->lock);
    free(s);
  }
  pthread_mutex_destroy(&m->lock);
  free(m);
  *self_p = NULL;
}

/* The server for name and network, made on first use; NULL when the node's
 * config has no such server (or memory runs out). */
static server_t *server_get(mcp_t *m, const char *name, bool network) {
  const cadre_mcp_server_t *def = config_mcp_server(m->config, name);
  if (!def)
    return NULL;
  network = network && def->command; /* an HTTP server is called by the daemon itself */
  pthread_mutex_lock(&m->lock);
  server_t *s = m->servers;
  while (s && !(s->def == def && s->network == network))
    s = s->next;
  if (!s && (s = calloc(1, sizeof *s))) {
    s->def = def;
    s->network = network;
    pthread_mutex_init(&s->lock, NULL);
    if (!(s->conn = mcp_conn_new(m->tools, def, network))) {
      pthread_mutex_destroy(&s->lock);
      free(s);
      s = NULL;
    } else {
      s->next = m->servers;
      m->servers = s;
    }
  }
  pthread_mutex_unlock(&m->lock);
  return s;
}

static long timeout_ms(const server_t *s, const mcp_call_opts_t *o) {
  int t = s->def->timeout_s > 0 ? s->def->timeout_s : o->timeout_s > 0 ? o->timeout_s : TOOLS_DEFAULT_TIMEOUT_S;
  return (long)t * 1000;
}

/* Lock held: opens the connection when it is not open (a crashed server
 * starts again here). */
static int ensure_open(server_t *s, const mcp_call_opts_t *o, char *err, size_t errlen) {
  if (mcp_conn_is_open(s->conn))
    return 0;
  json_decref(s->tools);
  s->tools = NULL;
  int64_t t0 = util_now_ms();
  if (mcp_conn_open(s->conn, timeout_ms(s, o), o->cancel, err, errlen) < 0)
    return -1;
  log_info("mcp server %s: %s, protocol %s, in %lld ms", s->def->name,
           s->def->command ? (s->network ? "started (with network)" : "started") : "connected",
           mcp_conn_version(s->conn), (long long)(util_now_ms() - t0));
  return 0;
}

/* Lock held: tools/list, every page. */
static int list_tools(server_t *s, const mcp_call_opts_t *o, char *err, size_t errlen) {
  json_t *tools = json_array();
  char *cursor = NULL;
  size_t skipped = 0;
  int rc = 0;
  int64_t t0 = util_now_ms();
  for (int page = 0; rc == 0 && page < MCP_PAGES_MAX; page++) {
    json_t *params = cursor ? json_pack("{s:s}", "cursor", cursor) : NULL, *resp = NULL;
    const json_t *result = NULL;
    free(cursor);
    cursor = NULL;
    rc = mcp_conn_request(s->conn, "tools/list", params, timeout_ms(s, o), o->cancel, &resp, err, errlen);
    if (rc == 0)
      rc = mcp_response_result(resp, &result, err, errlen);
    if (rc == 0)
      rc = mcp_tools_page(result, s->def->name, tools, &skipped, &cursor, err, errlen);
    json_decref(resp);
    if (!cursor)
      break;
  }
  free(cursor);
  if (rc < 0) {
    json_decref(tools);
    return -1;
  }
  if (skipped)
    log_warn("mcp server %s: %zu tools left out (no usable name or input schema, a duplicate, or over %d)",
             s->def->name, skipped, MCP_TOOLS_MAX);
  log_info("mcp server %s: %zu tools listed in %lld ms", s->def->name, json_array_size(tools),
           (long long)(util_now_ms() - t0));
  json_decref(s->tools);
  s->tools = tools;
  return 0;
}

/* True when the policy lets the agent use tool t (offered as name) of
 * server: an entry names the tool or "<server>__*"; else, when no entry
 * names the server, any of its tools, but for a read-only agent only those
 * the server marks read-only. */
static bool allowed(const mcp_call_opts_t *o, const char *server, const char *name, const json_t *t) {
  size_t i, plen = strlen(server);
  json_t *v;
  bool named = false;
  json_array_foreach(o->allow, i, v) {
    const char *e = json_string_value(v);
    if (!e || strncmp(e, server, plen) != 0 || strncmp(e + plen, "__", 2) != 0)
      continue;
    if (strcmp(e, name) == 0 || strcmp(e + plen + 2, "*") == 0)
      return true;
    named = true;
  }
  return !named && (!o->read_only || jx_bool(t, "read_only", false));
}

/* Replaces the node's secret values in err (a server's stderr may show its keys). */
static void scrub(mcp_t *m, char *err, size_t len) {
  tool_result_t r = {.text = strdup(err)};
  if (!r.text)
    return;
  tools_scrub_result(m->tools, &r);
  snprintf(err, len, "%s", r.text ? r.text : "");
  tool_result_free(&r);
}

#define MCP_RETRY_MS 30000 /* a server that could not be started is left out of turns this long */

/* One server's tools into defs and offered. */
static void offer_server(mcp_t *m, const char *name, const mcp_call_opts_t *o, json_t *defs, json_t *offered) {
  server_t *s = server_get(m, name, o->network);
  if (!s) {
    log_warn("mcp server %s: not in this node's config (cadre-agentd --config, mcp_servers); its tools are left out",
             name);
    return;
  }
  char err[512] = "";
  pthread_mutex_lock(&s->lock);
  /* Not every turn waits for a server that failed a moment ago (one that
   * hangs at start would cost each turn its timeout). */
  if (s->failed_at && util_now_ms() - s->failed_at < MCP_RETRY_MS) {
    pthread_mutex_unlock(&s->lock);
    return;
  }
  int rc = ensure_open(s, o, err, sizeof err);
  if (rc == 0 && (!s->tools || mcp_conn_tools_changed(s->conn)))
    rc = list_tools(s, o, err, sizeof err);
  s->failed_at = rc == 0 ? 0 : util_now_ms();
  json_t *tools = rc == 0 ? json_incref(s->tools) : NULL;
  pthread_mutex_unlock(&s->lock);
  if (rc < 0) {
    scrub(m, err, sizeof err);
    log_warn("mcp server %s: %s; its tools are left out of turns for %d s", name, err, MCP_RETRY_MS / 1000);
    return;
  }
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *tname = jx_str(t, "name", "");
    if (!allowed(o, name, tname, t) || json_object_get(offered, tname))
      continue;
    json_array_append(defs, json_object_get(t, "def"));
    json_object_set_new(offered, tname,
                        json_pack("{s:s, s:s, s:b}", "server", name, "tool", jx_str(t, "tool", ""), "read_only",
                                  jx_bool(t, "read_only", false)));
  }
  json_decref(tools);
}

void mcp_offer(mcp_t *self, const json_t *servers, const mcp_call_opts_t *opts, json_t *defs, json_t *offered) {
  size_t i;
  json_t *v;
  json_array_foreach(servers, i, v) {
    if (self && json_is_string(v) && !(opts->cancel && atomic_load(opts->cancel)))
      offer_server(self, json_string_value(v), opts, defs, offered);
  }
}

/* The result's text, capped like the built-in tools' (the head and the end kept). */
static void cap_text(sbuf_t *b, size_t cap) {
  if (b->len <= cap)
    return;
  size_t half = cap / 2, omitted = b->len - 2 * half;
  sbuf_t out = {0};
  sbuf_add(&out, b->s, half);
  sbuf_printf(&out, "\n[... %zu bytes omitted ...]\n", omitted);
  sbuf_add(&out, b->s + b->len - half, half);
  sbuf_free(b);
  *b = out;
}

/* tools/call on an open server (lock held). */
static void call_locked(server_t *s, const char *tool, json_t *args, const mcp_call_opts_t *o, size_t cap,
                        tool_result_t *out) {
  char err[600] = "";
  json_t *resp = NULL;
  const json_t *result = NULL;
  sbuf_t text = {0};
  bool is_error = false;
  if (mcp_conn_request(s->conn, "tools/call", json_pack("{s:s, s:O}", "name", tool, "arguments", args),
                       timeout_ms(s, o), o->cancel, &resp, err, sizeof err) < 0 ||
      mcp_response_result(resp, &result, err, sizeof err) < 0 ||
      mcp_call_result(result, &text, &is_error, err, sizeof err) < 0) {
    tr_error(out, "MCP server %s, tool %s: %s", s->def->name, tool, err);
  } else {
    size_t lines = 1;
    for (size_t i = 0; i < text.len; i++)
      lines += text.s[i] == '\n';
    cap_text(&text, cap);
    tr_text(out, &text, is_error);
    tr_summary(out, "%s, %zu line%s", is_error ? "MCP tool error" : "MCP ok", lines, lines == 1 ? "" : "s");
  }
  sbuf_free(&text);
  json_decref(resp);
}

void mcp_call(mcp_t *self, const json_t *entry, const char *arguments, const mcp_call_opts_t *opts,
              tool_result_t *out) {
  memset(out, 0, sizeof *out);
  const char *name = jx_str(entry, "server", ""), *tool = jx_str(entry, "tool", "");
  server_t *s = self ? server_get(self, name, opts->network) : NULL;
  json_error_t je;
  json_t *args = arguments && *arguments ? json_loads(arguments, 0, &je) : json_object();
  if (!s) {
    tr_error(out, "MCP server %s is not configured on this node", name);
  } else if (!json_is_object(args)) {
    tr_error(out, "the arguments of %s__%s are not a JSON object%s%s", name, tool, args ? "" : ": ",
             args ? "" : je.text);
  } else {
    char err[512] = "";
    pthread_mutex_lock(&s->lock);
    if (ensure_open(s, opts, err, sizeof err) < 0)
      tr_error(out, "MCP server %s could not be started: %s", name, err);
    else
      call_locked(s, tool, args, opts, tools_output_cap(self->tools), out);
    pthread_mutex_unlock(&s->lock);
  }
  json_decref(args);
  out->exit_code = 0;
  if (!out->text)
    tr_error(out, "MCP server %s, tool %s: no result", name, tool);
  tools_scrub_result(self ? self->tools : NULL, out);
}
