/* The HTTP listener's parts (http.c, http_api.c, http_sse.c, and the web
 * files compiled in): not a public interface. */
#ifndef CADRE_BROKER_HTTP_INT_H
#define CADRE_BROKER_HTTP_INT_H

#include <microhttpd.h>

#include "internal.h"

typedef struct sse_client sse_client_t;

struct http {
  struct MHD_Daemon *d;
  int fd;
  char url[128];
  char token[65]; /* hex; STATE/dashboard.token */
  sse_client_t *clients;
  int n_clients;
  int64_t last_ping; /* monotonic ms */
  bool kick;         /* a stream was resumed: MHD_run is due at once (the broker's loop asks http_timeout_ms) */
};

/* Most messages /api/search?q= answers with (the newest). */
#define HTTP_SEARCH_MAX 200
/* Queues body (copied) with status and type. */
enum MHD_Result http_reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len);
/* /api/<path>: the JSON API over the broker's verbs (post: a POST). */
enum MHD_Result http_api(broker_t *b, struct MHD_Connection *c, const char *path, bool post);

/* ---- server-sent events (http_sse.c) ---- */
/* Most clients of /api/events at once, and the bytes one may have waiting: a
 * client that falls that far behind gets a last event "dropped" and is closed. */
#define HTTP_SSE_MAX_CLIENTS 32
#define HTTP_SSE_MAX_PENDING ((size_t)1 << 20)
#define HTTP_SSE_PING_MS 15000
/* Answers /api/events: a stream of every event and delta the broker sends controllers. */
enum MHD_Result http_sse_open(struct http *h, struct MHD_Connection *c);
/* An encoded frame the broker sent (an event or a delta), for every client. */
void http_sse_feed(struct http *h, const void *data, size_t len);
/* A comment line to every client now and then (finds the ones that left). */
void http_sse_tick(struct http *h, int64_t now);
/* Ends every stream (before the daemon stops). */
void http_sse_close_all(struct http *h);
/* A proto message as JSON: {"type": NAME, field: value...}. Caller owns. */
json_t *http_msg_json(const proto_msg_t *m);

/* ---- the dashboard's files (generated from web/ by scripts/embed_web.py) ---- */
/* The file at path ("/index.html"), its Content-Type and length; NULL when there is none. */
const char *web_asset(const char *path, const char **type, size_t *len);

#endif
