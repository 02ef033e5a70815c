/* http.c: the broker's HTTP listener (libmicrohttpd), off unless asked for
 * (cadre-broker --metrics HOST:PORT): /metrics (Prometheus text format) and
 * /healthz. libmicrohttpd runs in the broker's own thread: its epoll
 * descriptor is polled with the broker's sockets and MHD_run is called when
 * it is ready, so a handler reads the broker's state without locks. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "util.h"

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_TIMEOUT_S 10

struct http {
  struct MHD_Daemon *d;
  int fd;
  char url[128];
};

/* Parses HOST:PORT (HOST an IPv4 address or "localhost"; PORT 0: any). */
static int parse_addr(const char *s, struct sockaddr_in *sa, char *err, size_t errlen) {
  const char *colon = s ? strrchr(s, ':') : NULL;
  char host[64];
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || (size_t)(colon - s) >= sizeof host || !end || *end || end == colon + 1 || port < 0 || port > 65535) {
    snprintf(err, errlen, "--metrics \"%s\": give HOST:PORT, e.g. 127.0.0.1:9464", s ? s : "");
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
    snprintf(err, errlen, "--metrics \"%s\": \"%s\" is no IPv4 address", s, host);
    return -1;
  }
  return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                             size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
  (void)version;
  (void)upload;
  broker_t *b = cls;
  if (!*state) { /* the headers: answer once the (empty) body is in */
    *state = (void *)1;
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    static const char text[] = "only GET\n";
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", text, sizeof text - 1);
  }
  if (strcmp(url, "/healthz") == 0) {
    bool ok = b->store != NULL;
    const char *text = ok ? "ok\n" : "no state store\n";
    return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", text, strlen(text));
  }
  if (strcmp(url, "/metrics") == 0) {
    sbuf_t out = {0};
    metrics_render(b, &out);
    enum MHD_Result r = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", sbuf_str(&out), out.len);
    sbuf_free(&out);
    return r;
  }
  static const char text[] = "not found: try /metrics or /healthz\n";
  return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", text, sizeof text - 1);
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
  h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, b, MHD_OPTION_SOCK_ADDR,
                          (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_EXTERNAL_LOGGER,
                          on_mhd_log, NULL, MHD_OPTION_END);
  const union MHD_DaemonInfo *fd = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
  const union MHD_DaemonInfo *port = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
  if (!fd || !port) {
    snprintf(err, errlen, "--metrics %s: cannot listen there (%s)", addr, strerror(errno ? errno : EADDRINUSE));
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
  log_info("metrics at %s/metrics, health at %s/healthz", h->url, h->url);
  return 0;
}

int http_fd(const broker_t *b) {
  return b->http ? b->http->fd : -1;
}

long http_timeout_ms(const broker_t *b) {
  MHD_UNSIGNED_LONG_LONG t;
  if (!b->http || MHD_get_timeout(b->http->d, &t) != MHD_YES)
    return -1;
  return t > 60000 ? 60000 : (long)t;
}

void http_run(broker_t *b) {
  if (b->http)
    MHD_run(b->http->d);
}

void http_stop(broker_t *b) {
  if (!b->http)
    return;
  MHD_stop_daemon(b->http->d);
  free(b->http);
  b->http = NULL;
}
