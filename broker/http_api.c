/* http_api.c: the dashboard's JSON API under /api/, over the very verbs a
 * controller asks for (requests_local): what a page shows and does is what
 * cadre shows and does. Writes are POSTs (approve, reject). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_int.h"
#include "jx.h"
#include "perf.h"
#include "util.h"

/* A route: method, path (a trailing "/N" is the plan id, "/N/approve" its action) and verb. */
typedef struct {
  bool post;
  const char *path, *verb;
  int id;              /* 0: none; 1: /path/N; 2: /path/N/<action> */
  const char *arg;     /* a query argument passed on as a string, or NULL */
  const char *int_arg; /* one passed on as an integer, or NULL */
} route_t;

/* clang-format off */
static const route_t routes[] = {
    {false, "nodes", "nodes", 0, NULL, NULL},
    {false, "agents", "agents", 0, NULL, NULL},
    {false, "sessions", "sessions", 0, NULL, NULL},
    {false, "history", "history", 0, "session", NULL},
    {false, "stats", "stats", 0, NULL, "window_s"},
    {false, "status", "status", 0, NULL, NULL},
    {false, "plans", "plans", 0, NULL, NULL},
    {false, "plans", "plan", 1, NULL, NULL},
    {true, "plans", "approve", 2, NULL, NULL},
    {true, "plans", "reject", 2, NULL, NULL},
};
/* clang-format on */

static unsigned status_of(const char *code) {
  if (strcmp(code, PROTO_ERR_not_found) == 0)
    return MHD_HTTP_NOT_FOUND;
  if (strcmp(code, PROTO_ERR_bad_args) == 0)
    return MHD_HTTP_BAD_REQUEST;
  return MHD_HTTP_CONFLICT;
}

static enum MHD_Result json_reply(struct MHD_Connection *c, unsigned status, json_t *v) {
  char *text = json_dumps(v, JSON_COMPACT);
  json_decref(v);
  enum MHD_Result r = text ? http_reply(c, status, "application/json", text, strlen(text)) : MHD_NO;
  free(text);
  return r;
}

/* Splits "plans/12/approve" into its name, id and action; 0, or -1 when it is no such shape. */
static int split(const char *path, char *name, size_t len, int64_t *id, const char **action) {
  const char *slash = strchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : strlen(path);
  if (n == 0 || n >= len)
    return -1;
  memcpy(name, path, n);
  name[n] = '\0';
  *id = 0;
  *action = NULL;
  if (!slash)
    return 0;
  char *end = NULL;
  long long v = strtoll(slash + 1, &end, 10);
  if (end == slash + 1 || v <= 0)
    return -1;
  *id = v;
  if (*end == '/' && end[1])
    *action = end + 1;
  else if (*end)
    return -1;
  return 0;
}

static json_t *args_of(struct MHD_Connection *c, const route_t *rt, int64_t id) {
  json_t *args = json_object();
  if (rt->id)
    json_object_set_new(args, "id", json_integer(id));
  const char *v = rt->arg ? MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, rt->arg) : NULL;
  if (v)
    json_object_set_new(args, rt->arg, json_string(v));
  v = rt->int_arg ? MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, rt->int_arg) : NULL;
  if (v)
    json_object_set_new(args, rt->int_arg, json_integer(strtoll(v, NULL, 10)));
  return args;
}

enum MHD_Result http_api(broker_t *b, struct MHD_Connection *c, const char *path, bool post) {
  /* No verb for these: the store's records as they are. */
  if (strcmp(path, "costs") == 0 && !post) {
    const char *w = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "window_s");
    return json_reply(c, MHD_HTTP_OK, perf_costs(b->store, b->opts.config, w ? strtoll(w, NULL, 10) : 0));
  }
  if (strcmp(path, "search") == 0 && !post) {
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
    return json_reply(c, MHD_HTTP_OK, store_search(b->store, q, HTTP_SEARCH_MAX));
  }
  char name[32];
  int64_t id;
  const char *action;
  if (split(path, name, sizeof name, &id, &action) < 0)
    return json_reply(c, MHD_HTTP_NOT_FOUND, json_pack("{s:s}", "error", "no such route"));
  int shape = action ? 2 : id ? 1 : 0;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    const route_t *rt = &routes[i];
    if (strcmp(rt->path, name) != 0 || rt->id != shape || (shape == 2 && strcmp(action, rt->verb) != 0))
      continue;
    if (rt->post != post)
      return json_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, json_pack("{s:s}", "error", rt->post ? "use POST" : "use GET"));
    json_t *args = args_of(c, rt, id);
    const char *code = NULL;
    char detail[512] = "";
    json_t *result = requests_local(b, rt->verb, args, &code, detail, sizeof detail);
    json_decref(args);
    if (!result)
      return json_reply(c, status_of(code ? code : ""),
                        json_pack("{s:s, s:s}", "error", code ? code : "failed", "detail", detail));
    return json_reply(c, MHD_HTTP_OK, result);
  }
  return json_reply(c, MHD_HTTP_NOT_FOUND, json_pack("{s:s}", "error", "no such route"));
}
