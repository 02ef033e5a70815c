/* http.c: the broker's HTTP listener (libmicrohttpd), off unless asked for
 * (cadre-broker --http HOST:PORT, or --metrics): /metrics (Prometheus text
 * format), /healthz, the dashboard's pages and its JSON API (http_api.c)
 * with live events (http_sse.c). libmicrohttpd runs in the broker's own
 * thread: its epoll descriptor is polled with the broker's sockets and
 * MHD_run is called when it is ready, so a handler reads the broker's state
 * without locks. Every route but /healthz needs the access token kept in
 * STATE/dashboard.token (made at first start, mode 0600): as
 * "Authorization: Bearer TOKEN", as the cookie a page gets, or as ?token=
 * (which answers with that cookie and the same address without it). */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "http_int.h"
#include "log.h"
#include "util.h"

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_TIMEOUT_S 10

#define HTTP_TOKEN_HEX 64
#define HTTP_COOKIE "cadre_token"

/* Parses HOST:PORT (HOST an IPv4 address or "localhost"; PORT 0: any). */
static int parse_addr(const char *s, struct sockaddr_in *sa, char *err, size_t errlen) {
  const char *colon = s ? strrchr(s, ':') : NULL;
  char host[64];
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || (size_t)(colon - s) >= sizeof host || !end || *end || end == colon + 1 || port < 0 || port > 65535) {
    snprintf(err, errlen, "--http \"%s\": give HOST:PORT, e.g. 127.0.0.1:9464", s ? s : "");
    return -1;
  }
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (strcmp(host, "localhost") == 0 || host[0] == '\0')
    strcpy(host, "127.0.0.1");
  if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
    snprintf(err, errlen, "--http \"%s\": \"%s\" is no IPv4 address", s, host);
    return -1;
  }
  return 0;
}

enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  /* A page reaches nothing but the broker (no model server, no node, no other site), and is framed nowhere. */
  MHD_add_response_header(r, "Content-Security-Policy",
                          "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'");
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *body) {
  return http_reply(c, status, "text/plain; charset=utf-8", body, strlen(body));
}

static bool token_is(const struct http *h, const char *given) {
  return given && strlen(given) == HTTP_TOKEN_HEX && sodium_memcmp(given, h->token, HTTP_TOKEN_HEX) == 0;
}

/* 1: the request carries the token in a header or the cookie; 2: only in ?token=; 0: not at all. */
static int authorized(const struct http *h, struct MHD_Connection *c) {
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (auth && strncmp(auth, "Bearer ", 7) == 0 && token_is(h, auth + 7))
    return 1;
  if (token_is(h, MHD_lookup_connection_value(c, MHD_COOKIE_KIND, HTTP_COOKIE)))
    return 1;
  return token_is(h, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token")) ? 2 : 0;
}

/* A page opened with ?token=: the token becomes a cookie and the address loses it. */
static enum MHD_Result set_cookie(struct http *h, struct MHD_Connection *c, const char *url) {
  struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  char cookie[160];
  snprintf(cookie, sizeof cookie, HTTP_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict", h->token);
  MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
  MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, url);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
  (void)version;
  (void)upload;
  broker_t *b = cls;
  if (!*state) { /* the headers: answer once the body is in (and set aside: no route reads one) */
    *state = (void *)1;
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
  if (!get && !post)
    return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and POST\n");
  if (strcmp(url, "/healthz") == 0) {
    bool ok = b->store != NULL;
    return text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, ok ? "ok\n" : "no state store\n");
  }
  int auth = authorized(b->http, c);
  if (!auth)
    return text(c, MHD_HTTP_UNAUTHORIZED,
                "401: the dashboard's token is needed (cadre dashboard prints the address "
                "with it; or send Authorization: Bearer TOKEN)\n");
  if (auth == 2 && get && strncmp(url, "/api/", 5) != 0 && strcmp(url, "/metrics") != 0)
    return set_cookie(b->http, c, url);
  if (strcmp(url, "/metrics") == 0) {
    if (!get)
      return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    sbuf_t out = {0};
    metrics_render(b, &out);
    enum MHD_Result r = http_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", sbuf_str(&out), out.len);
    sbuf_free(&out);
    return r;
  }
  if (strcmp(url, "/api/events") == 0 && get)
    return http_sse_open(b->http, c);
  if (strncmp(url, "/api/", 5) == 0)
    return http_api(b, c, url + 5, post);
  size_t len = 0;
  const char *type = NULL;
  const char *body = get ? web_asset(strcmp(url, "/") == 0 ? "/index.html" : url, &type, &len) : NULL;
  if (body)
    return http_reply(c, MHD_HTTP_OK, type, body, len);
  return text(c, MHD_HTTP_NOT_FOUND, "not found: try /, /metrics or /healthz\n");
}

/* The access token: STATE/dashboard.token, made at first start. 0, or -1 with err. */
static int load_token(broker_t *b, struct http *h, char *err, size_t errlen) {
  char *path = util_path_join(b->opts.state_dir, "dashboard.token");
  size_t len = 0;
  char *old = path ? util_read_file(path, 256, &len) : NULL;
  int rc = 0;
  if (old && len >= HTTP_TOKEN_HEX && strspn(old, "0123456789abcdef") >= HTTP_TOKEN_HEX) {
    memcpy(h->token, old, HTTP_TOKEN_HEX);
  } else {
    util_random_hex(h->token, HTTP_TOKEN_HEX / 2);
    char line[HTTP_TOKEN_HEX + 2];
    snprintf(line, sizeof line, "%s\n", h->token);
    if (!path || util_write_file(path, line, HTTP_TOKEN_HEX + 1, 0600) < 0) {
      snprintf(err, errlen, "cannot write %s", path ? path : "the dashboard token");
      rc = -1;
    }
  }
  h->token[HTTP_TOKEN_HEX] = '\0';
  free(old);
  free(path);
  return rc;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char text[300];
  vsnprintf(text, sizeof text, fmt, ap);
  text[strcspn(text, "\n")] = '\0';
  log_debug("http: %s", text);
}

int http_start(broker_t *b, const char *addr, char *err, size_t errlen) {
  struct sockaddr_in sa;
  if (parse_addr(addr, &sa, err, errlen) < 0)
    return -1;
  struct http *h = calloc(1, sizeof *h);
  if (!h) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (sodium_init() < 0 || load_token(b, h, err, errlen) < 0) {
    free(h);
    return -1;
  }
  h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, b,
                          MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                          (unsigned)HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S,
                          MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_END);
  const union MHD_DaemonInfo *fd = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
  const union MHD_DaemonInfo *port = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
  if (!fd || !port) {
    snprintf(err, errlen, "--http %s: cannot listen there (%s)", addr, strerror(errno ? errno : EADDRINUSE));
    if (h->d)
      MHD_stop_daemon(h->d);
    free(h);
    return -1;
  }
  h->fd = fd->epoll_fd;
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  snprintf(h->url, sizeof h->url, "http://%s:%u", ip, (unsigned)port->port);
  b->http = h;
  /* Like the endpoint file: where a script finds the listener (its port may have been 0). */
  char *path = util_path_join(b->opts.state_dir, "metrics");
  char line[160];
  int n = snprintf(line, sizeof line, "%s\n", h->url);
  if (!path || util_write_file(path, line, (size_t)n, 0644) < 0)
    log_warn("cannot write %s", path ? path : "the metrics file");
  free(path);
  char link[256];
  snprintf(link, sizeof link, "%s/?token=%s", h->url, h->token);
  b->dashboard_url = strdup(link);
  log_info("metrics at %s/metrics, health at %s/healthz, the dashboard at %s/ (cadre dashboard)", h->url, h->url,
           h->url);
  return 0;
}

int http_fd(const broker_t *b) {
  return b->http ? b->http->fd : -1;
}

long http_timeout_ms(const broker_t *b) {
  MHD_UNSIGNED_LONG_LONG t;
  if (b->http && b->http->kick)
    return 0;
  if (!b->http || MHD_get_timeout(b->http->d, &t) != MHD_YES)
    return -1;
  return t > 60000 ? 60000 : (long)t;
}

void http_run(broker_t *b) {
  if (b->http) {
    http_sse_tick(b->http, util_now_ms());
    b->http->kick = false;
    MHD_run(b->http->d);
  }
}

void http_stop(broker_t *b) {
  if (!b->http)
    return;
  http_sse_close_all(b->http); /* MHD may not stop with suspended connections */
  MHD_run(b->http->d);
  MHD_stop_daemon(b->http->d);
  free(b->http);
  b->http = NULL;
  free(b->dashboard_url);
  b->dashboard_url = NULL;
}

void http_tap(broker_t *b, const void *data, size_t len) {
  if (b->http)
    http_sse_feed(b->http, data, len);
}
