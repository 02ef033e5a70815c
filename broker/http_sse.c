/* http_sse.c: /api/events, the dashboard's live view: every event and delta
 * the broker sends its controllers, as server-sent events ("data: JSON").
 * A stream is a response whose content comes from a callback; with nothing to
 * send the connection is suspended, and resumed when the broker has more.
 * Each client's backlog is capped: one that falls behind is told so and
 * closed (the page reconnects and reloads its lists). */
#include <stdlib.h>
#include <string.h>

#include "http_int.h"
#include "log.h"
#include "util.h"

struct sse_client {
  struct http *h;
  struct MHD_Connection *c;
  sbuf_t buf; /* what is not sent yet, from off */
  size_t off;
  bool suspended; /* waits for data */
  bool ending;    /* dropped (fell behind) or the daemon stops: end once buf is sent */
  sse_client_t *next;
};

static void unlink_client(struct http *h, sse_client_t *cl) {
  for (sse_client_t **p = &h->clients; *p; p = &(*p)->next)
    if (*p == cl) {
      *p = cl->next;
      h->n_clients--;
      return;
    }
}

static void wake(sse_client_t *cl) {
  if (cl->suspended) {
    cl->suspended = false;
    cl->h->kick = true;
    MHD_resume_connection(cl->c);
  }
}

/* Appends one chunk of the stream, or drops the client when it is too far behind. */
static void push(sse_client_t *cl, const char *text, size_t len) {
  if (cl->ending)
    return;
  if (cl->buf.len - cl->off + len > HTTP_SSE_MAX_PENDING) {
    sbuf_free(&cl->buf);
    cl->off = 0;
    sbuf_puts(&cl->buf, "event: dropped\ndata: {\"reason\": \"the client fell behind; reconnect\"}\n\n");
    cl->ending = true;
    log_info("http: an event stream fell behind (%zu bytes waiting); closed", HTTP_SSE_MAX_PENDING);
  } else {
    if (cl->off > 0 && cl->off == cl->buf.len) { /* all sent: start the buffer afresh */
      cl->buf.len = 0;
      cl->off = 0;
    }
    sbuf_add(&cl->buf, text, len);
  }
  wake(cl);
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  sse_client_t *cl = cls;
  size_t left = cl->buf.len - cl->off;
  if (left == 0) {
    if (cl->ending)
      return MHD_CONTENT_READER_END_OF_STREAM;
    cl->suspended = true;
    MHD_suspend_connection(cl->c);
    return 0;
  }
  size_t n = left < max ? left : max;
  memcpy(out, cl->buf.s + cl->off, n);
  cl->off += n;
  return (ssize_t)n;
}

static void on_free(void *cls) {
  sse_client_t *cl = cls;
  unlink_client(cl->h, cl);
  sbuf_free(&cl->buf);
  free(cl);
}

enum MHD_Result http_sse_open(struct http *h, struct MHD_Connection *c) {
  if (h->n_clients >= HTTP_SSE_MAX_CLIENTS) {
    static const char busy[] = "too many event streams open\n";
    return http_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", busy, sizeof busy - 1);
  }
  sse_client_t *cl = calloc(1, sizeof *cl);
  if (!cl)
    return MHD_NO;
  cl->h = h;
  cl->c = c;
  sbuf_puts(&cl->buf, "retry: 2000\nevent: hello\ndata: {}\n\n");
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, reader, cl, on_free);
  if (!r) {
    sbuf_free(&cl->buf);
    free(cl);
    return MHD_NO;
  }
  cl->next = h->clients;
  h->clients = cl;
  h->n_clients++;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r); /* on_free runs when the connection ends */
  return ok;
}

static json_t *field_json_STR(const char *s) {
  return json_string(s);
}
static json_t *field_json_INT(int64_t v) {
  return json_integer(v);
}
static json_t *field_json_BOOL(bool v) {
  return json_boolean(v);
}
#define field_json_NUM json_real
static json_t *field_json_ANY(json_t *v) {
  return json_incref(v);
}
#define field_json_MAP field_json_ANY
#define field_json_LIST field_json_ANY

json_t *http_msg_json(const proto_msg_t *m) {
  json_t *o = json_pack("{s:s}", "type", proto_type_name(m->type));
#define HTTP_FIELD(name, KIND, doc) \
  if (PROTO_HAS(m, name))           \
    json_object_set_new(o, #name, field_json_##KIND(m->name));
  PROTO_FIELDS(HTTP_FIELD)
#undef HTTP_FIELD
  return o;
}

void http_sse_feed(struct http *h, const void *data, size_t len) {
  if (!h->clients)
    return; /* nobody looks: nothing is decoded */
  proto_msg_t *m = NULL;
  proto_err_t err;
  if (proto_decode(data, len, &m, &err) != PROTO_OK)
    return;
  json_t *o = http_msg_json(m);
  proto_msg_destroy(&m);
  char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(o);
  if (!text)
    return;
  sbuf_t line = {0};
  sbuf_printf(&line, "data: %s\n\n", text); /* JSON_COMPACT: no newline inside */
  free(text);
  for (sse_client_t *cl = h->clients; cl; cl = cl->next)
    push(cl, line.s, line.len);
  sbuf_free(&line);
}

void http_sse_tick(struct http *h, int64_t now) {
  if (now - h->last_ping < HTTP_SSE_PING_MS)
    return;
  h->last_ping = now;
  static const char ping[] = ": ping\n\n";
  for (sse_client_t *cl = h->clients; cl; cl = cl->next)
    push(cl, ping, sizeof ping - 1);
}

void http_sse_close_all(struct http *h) {
  for (sse_client_t *cl = h->clients; cl; cl = cl->next) {
    cl->ending = true;
    wake(cl);
  }
}
