/* mcp_io: one connection to an MCP server (see mcp_io.h). */
#include "mcp_io.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jx.h"
#include "mcp_msg.h"
#include "sbuf.h"
#include "stream.h"
#include "util.h"

#define ERR_TAIL 600 /* bytes of the server's stderr kept for a crash message */

struct mcp_conn {
  tools_t *tools;
  const cadre_mcp_server_t *def;
  bool network;
  bool open;
  int64_t next_id;
  bool tools_changed;
  char version[32];
  /* stdio */
  tools_child_t child;
  sbuf_t line; /* what stdout sent after the last complete line */
  char err_tail[ERR_TAIL + 1];
  /* HTTP */
  char *session; /* Mcp-Session-Id, or NULL */
};

mcp_conn_t *mcp_conn_new(tools_t *tools, const cadre_mcp_server_t *def, bool network) {
  mcp_conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->tools = tools;
  c->def = def;
  c->network = network;
  c->child.pid = -1;
  c->child.in_fd = c->child.out_fd = c->child.err_fd = -1;
  c->next_id = 1;
  return c;
}

void mcp_conn_close(mcp_conn_t *self) {
  if (!self)
    return;
  if (self->def->command)
    tools_child_stop(self->tools, &self->child);
  free(self->session);
  self->session = NULL;
  sbuf_free(&self->line);
  self->open = false;
  self->version[0] = '\0';
}

/* Ends an HTTP session: DELETE with its Mcp-Session-Id (a server may refuse; that is fine). */
static void http_end_session(mcp_conn_t *c) {
  CURL *curl = c->session ? curl_easy_init() : NULL;
  if (!curl)
    return;
  char line[320];
  snprintf(line, sizeof line, "Mcp-Session-Id: %s", c->session);
  struct curl_slist *hd = curl_slist_append(NULL, line);
  curl_easy_setopt(curl, CURLOPT_URL, c->def->url);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 1000L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_perform(curl);
  curl_slist_free_all(hd);
  curl_easy_cleanup(curl);
}

void mcp_conn_destroy(mcp_conn_t **self_p) {
  mcp_conn_t *c = self_p ? *self_p : NULL;
  if (!c)
    return;
  if (c->def->url && c->open)
    http_end_session(c);
  mcp_conn_close(c);
  free(c);
  *self_p = NULL;
}

bool mcp_conn_is_open(mcp_conn_t *self) {
  if (!self->open)
    return false;
  if (self->def->command && !tools_child_alive(&self->child)) {
    mcp_conn_close(self); /* it exited between calls: the next call starts it again */
    return false;
  }
  return true;
}

bool mcp_conn_tools_changed(mcp_conn_t *self) {
  bool c = self->tools_changed;
  self->tools_changed = false;
  return c;
}

const char *mcp_conn_version(const mcp_conn_t *self) {
  return self->version;
}

/* ---- stdio ------------------------------------------------------------------------- */

/* One shell word: 'text' with ' written as '\''. */
static void shell_word(sbuf_t *b, const char *s) {
  sbuf_puts(b, " '");
  for (; *s; s++) {
    if (*s == '\'')
      sbuf_puts(b, "'\\''");
    else
      sbuf_add(b, s, 1);
  }
  sbuf_puts(b, "'");
}

/* Keeps the last ERR_TAIL bytes of what the server wrote to stderr. */
static void read_stderr(mcp_conn_t *c) {
  char buf[4096];
  ssize_t n;
  while (c->child.err_fd >= 0 && (n = read(c->child.err_fd, buf, sizeof buf)) > 0) {
    size_t have = strlen(c->err_tail), add = (size_t)n > ERR_TAIL ? ERR_TAIL : (size_t)n;
    const char *src = buf + (size_t)n - add;
    if (have + add > ERR_TAIL) {
      memmove(c->err_tail, c->err_tail + (have + add - ERR_TAIL), ERR_TAIL - add);
      have = ERR_TAIL - add;
    }
    memcpy(c->err_tail + have, src, add);
    c->err_tail[have + add] = '\0';
  }
}

/* "the server exited (status 1; its last words: ...)" into err, and closes. */
static int exited(mcp_conn_t *c, const char *doing, char *err, size_t errlen) {
  int64_t until = util_now_ms() + 500; /* its exit status, when it comes soon */
  while (tools_child_alive(&c->child) && util_now_ms() < until) {
    struct pollfd p = {.fd = c->child.err_fd, .events = POLLIN};
    poll(&p, 1, 20);
    read_stderr(c);
  }
  read_stderr(c);
  char status[64] = "";
  if (c->child.pid < 0 && WIFEXITED(c->child.exit_status))
    snprintf(status, sizeof status, " with status %d", WEXITSTATUS(c->child.exit_status));
  else if (c->child.pid < 0 && WIFSIGNALED(c->child.exit_status))
    snprintf(status, sizeof status, " (killed by signal %d)", WTERMSIG(c->child.exit_status));
  char *tail = c->err_tail, *last = NULL;
  size_t n = strlen(tail);
  for (size_t i = 0; i < n; i++) /* printable, one line per line */
    if ((unsigned char)tail[i] < 0x20 && tail[i] != '\n')
      tail[i] = ' ';
  while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == ' '))
    tail[--n] = '\0';
  if (n > 0) {
    last = strrchr(tail, '\n');
    last = last ? last + 1 : tail;
  }
  snprintf(err, errlen, "the server %s%s %s%s%.300s%s", c->child.pid < 0 ? "exited" : "closed its output", status,
           doing, last ? " (its last words: " : "", last ? last : "", last ? ")" : "");
  mcp_conn_close(c);
  return -1;
}

/* Writes all of s to the child's stdin by the deadline. */
static int stdio_write(mcp_conn_t *c, const char *s, size_t n, int64_t deadline, char *err, size_t errlen) {
  while (n > 0) {
    ssize_t w = write(c->child.in_fd, s, n);
    if (w > 0) {
      s += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EPIPE)
      return exited(c, "before it read the request", err, errlen);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      snprintf(err, errlen, "cannot write to the server: %s", strerror(errno));
      mcp_conn_close(c);
      return -1;
    }
    int64_t left = deadline - util_now_ms();
    if (left <= 0) {
      snprintf(err, errlen, "the server does not read its input");
      mcp_conn_close(c);
      return -1;
    }
    struct pollfd p = {.fd = c->child.in_fd, .events = POLLOUT};
    poll(&p, 1, left < MCP_POLL_MS ? (int)left : MCP_POLL_MS);
    read_stderr(c);
  }
  return 0;
}

static int stdio_send(mcp_conn_t *c, const json_t *msg, int64_t deadline, char *err, size_t errlen) {
  char *s = json_dumps(msg, JSON_COMPACT);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t n = strlen(s);
  s[n] = '\n'; /* over the NUL: the line is written with its end, and s freed whole */
  int rc = stdio_write(c, s, n + 1, deadline, err, errlen);
  free(s);
  return rc;
}

typedef enum { GOT_NOTHING, GOT_RESPONSE, GOT_FAILURE } got_t;

/* One message from the server while waiting for response id. */
static got_t handle_message(mcp_conn_t *c, json_t *msg, int64_t id, json_t **response, int64_t deadline, char *err,
                            size_t errlen) {
  int64_t got;
  switch (mcp_classify(msg, &got, err, errlen)) {
  case MCP_MSG_RESPONSE:
    if (got != id)
      return GOT_NOTHING; /* an answer to a request given up on */
    *response = json_incref(msg);
    return GOT_RESPONSE;
  case MCP_MSG_NOTIFICATION:
    if (strcmp(jx_str(msg, "method", ""), "notifications/tools/list_changed") == 0)
      c->tools_changed = true;
    return GOT_NOTHING;
  case MCP_MSG_REQUEST: {
    json_t *a = mcp_answer_request(msg);
    int rc = a && c->def->command ? stdio_send(c, a, deadline, err, errlen) : 0;
    json_decref(a);
    return rc < 0 ? GOT_FAILURE : GOT_NOTHING;
  }
  default: return GOT_FAILURE;
  }
}

/* A complete line of stdout, if the buffer holds one: parsed and handled. */
static got_t next_line(mcp_conn_t *c, int64_t id, json_t **response, int64_t deadline, char *err, size_t errlen) {
  char *nl = c->line.len ? memchr(c->line.s, '\n', c->line.len) : NULL;
  if (!nl)
    return GOT_NOTHING;
  size_t n = (size_t)(nl - c->line.s);
  json_error_t je;
  json_t *msg = n ? json_loadb(c->line.s, n, 0, &je) : NULL;
  got_t g = GOT_NOTHING;
  if (!msg && strspn(c->line.s, " \t\r") < n) {
    char shown[80];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof shown && i < 60; i++)
      shown[k++] = (unsigned char)c->line.s[i] < 0x20 || (unsigned char)c->line.s[i] >= 0x7f ? '?' : c->line.s[i];
    shown[k] = '\0';
    snprintf(err, errlen, "the server wrote something that is not JSON-RPC on its output: \"%s%s\"", shown,
             n > 60 ? "..." : "");
    g = GOT_FAILURE;
  } else if (msg) {
    g = handle_message(c, msg, id, response, deadline, err, errlen);
  }
  json_decref(msg);
  memmove(c->line.s, nl + 1, c->line.len - n - 1);
  c->line.len -= n + 1;
  c->line.s[c->line.len] = '\0';
  return g;
}

/* Reads what stdout holds into the line buffer; -1 at its end. */
static int read_stdout(mcp_conn_t *c) {
  char buf[65536];
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t n = read(c->child.out_fd, buf, sizeof buf);
    if (n > 0) {
      sbuf_add(&c->line, buf, (size_t)n);
      continue;
    }
    if (n == 0)
      return -1;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  }
  return 0;
}

typedef enum { WAIT_OK, WAIT_FAILED, WAIT_TIMEOUT, WAIT_CANCELLED } wait_t;

static wait_t stdio_wait(mcp_conn_t *c, int64_t id, int64_t deadline, atomic_bool *cancel, json_t **response, char *err,
                         size_t errlen) {
  for (;;) {
    got_t g;
    while ((g = next_line(c, id, response, deadline, err, errlen)) == GOT_NOTHING && c->line.len &&
           memchr(c->line.s, '\n', c->line.len))
      ;
    if (g == GOT_RESPONSE)
      return WAIT_OK;
    if (g == GOT_FAILURE)
      return WAIT_FAILED;
    if (c->line.len > MCP_MESSAGE_MAX) {
      snprintf(err, errlen, "the server sent a message over %u MiB", MCP_MESSAGE_MAX >> 20);
      return WAIT_FAILED;
    }
    if (cancel && atomic_load(cancel))
      return WAIT_CANCELLED;
    int64_t left = deadline - util_now_ms();
    if (left <= 0)
      return WAIT_TIMEOUT;
    struct pollfd p[2] = {{.fd = c->child.out_fd, .events = POLLIN}, {.fd = c->child.err_fd, .events = POLLIN}};
    if (poll(p, 2, left < MCP_POLL_MS ? (int)left : MCP_POLL_MS) <= 0)
      continue;
    read_stderr(c);
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && read_stdout(c) < 0) {
      exited(c, "before it answered", err, errlen);
      return WAIT_FAILED;
    }
  }
}

static int stdio_open(mcp_conn_t *c, char *err, size_t errlen) {
  sbuf_t cmd = {0};
  sbuf_puts(&cmd, "exec");
  shell_word(&cmd, c->def->command);
  for (size_t i = 0; c->def->args && c->def->args[i]; i++)
    shell_word(&cmd, c->def->args[i]);
  c->err_tail[0] = '\0';
  int rc =
      tools_child_start(c->tools, sbuf_str(&cmd), (const char *const *)c->def->env, c->network, &c->child, err, errlen);
  sbuf_free(&cmd);
  if (rc == 0)
    fcntl(c->child.in_fd, F_SETFL, O_NONBLOCK);
  return rc;
}

/* ---- streamable HTTP ------------------------------------------------------------ */

typedef struct {
  mcp_conn_t *c;
  CURL *curl;
  int64_t id;
  bool sse, sse_checked;
  sse_parser_t *parser;
  sbuf_t body; /* a JSON answer */
  json_t *response;
  char err[300];
  bool failed;
  atomic_bool *cancel;
} http_call_t;

static int on_event(void *ud, const char *event, const char *data, size_t len) {
  http_call_t *h = ud;
  (void)event;
  json_error_t je;
  json_t *msg = json_loadb(data, len, 0, &je);
  if (!msg)
    return 0; /* an event that is not a message: skipped */
  json_t *resp = NULL;
  got_t g = handle_message(h->c, msg, h->id, &resp, 0, h->err, sizeof h->err);
  json_decref(msg);
  if (g == GOT_RESPONSE) {
    h->response = resp;
    return 1; /* enough: the rest of the stream is not needed */
  }
  return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  http_call_t *h = ud;
  size_t len = size * n;
  if (!h->sse_checked) {
    char *ct = NULL;
    curl_easy_getinfo(h->curl, CURLINFO_CONTENT_TYPE, &ct);
    h->sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
    h->sse_checked = true;
    if (h->sse && !(h->parser = sse_parser_new(on_event, h, MCP_MESSAGE_MAX)))
      return 0;
  }
  if (h->sse)
    return sse_parser_feed(h->parser, data, len) == 0 ? len : 0;
  if (h->body.len + len > MCP_MESSAGE_MAX) {
    snprintf(h->err, sizeof h->err, "the server sent a message over %u MiB", MCP_MESSAGE_MAX >> 20);
    h->failed = true;
    return 0;
  }
  sbuf_add(&h->body, data, len);
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud) {
  http_call_t *h = ud;
  size_t len = size * n;
  static const char name[] = "mcp-session-id:";
  if (len > sizeof name && strncasecmp(data, name, sizeof name - 1) == 0) {
    const char *v = data + sizeof name - 1;
    size_t vl = len - (sizeof name - 1);
    while (vl && (*v == ' ' || *v == '\t'))
      v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
      vl--;
    if (vl > 0 && vl < 256) {
      free(h->c->session);
      h->c->session = strndup(v, vl);
    }
  }
  return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c_, curl_off_t d) {
  (void)a, (void)b, (void)c_, (void)d;
  http_call_t *h = ud;
  return h->cancel && atomic_load(h->cancel) ? 1 : 0;
}

/* POSTs one message; for a request (id >= 0) waits for its response. */
static wait_t http_post(mcp_conn_t *c, const json_t *msg, int64_t id, int64_t deadline, atomic_bool *cancel,
                        json_t **response, char *err, size_t errlen) {
  char *body = json_dumps(msg, JSON_COMPACT);
  http_call_t h = {.c = c, .id = id, .cancel = cancel, .curl = curl_easy_init()};
  struct curl_slist *hd = NULL;
  char line[320];
  hd = curl_slist_append(hd, "Content-Type: application/json");
  hd = curl_slist_append(hd, "Accept: application/json, text/event-stream");
  if (c->session) {
    snprintf(line, sizeof line, "Mcp-Session-Id: %s", c->session);
    hd = curl_slist_append(hd, line);
  }
  if (c->version[0]) {
    snprintf(line, sizeof line, "MCP-Protocol-Version: %s", c->version);
    hd = curl_slist_append(hd, line);
  }
  wait_t w = WAIT_FAILED;
  if (!body || !h.curl || !hd) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  int64_t left = deadline - util_now_ms();
  curl_easy_setopt(h.curl, CURLOPT_URL, c->def->url);
  curl_easy_setopt(h.curl, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(h.curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h.curl, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left : 1));
  curl_easy_setopt(h.curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(left > 1 ? left : 1));
  curl_easy_setopt(h.curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h.curl, CURLOPT_WRITEDATA, &h);
  curl_easy_setopt(h.curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h.curl, CURLOPT_HEADERDATA, &h);
  curl_easy_setopt(h.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h.curl, CURLOPT_XFERINFODATA, &h);
  curl_easy_setopt(h.curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h.curl, CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode rc = curl_easy_perform(h.curl);
  long status = 0;
  curl_easy_getinfo(h.curl, CURLINFO_RESPONSE_CODE, &status);
  if (h.response) { /* found in an event stream, which was then dropped */
    *response = h.response;
    h.response = NULL;
    w = WAIT_OK;
  } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
    w = WAIT_CANCELLED;
  } else if (rc == CURLE_OPERATION_TIMEDOUT) {
    w = WAIT_TIMEOUT;
  } else if (rc != CURLE_OK) {
    snprintf(err, errlen, "%s", h.failed || h.err[0] ? h.err : curl_easy_strerror(rc));
  } else if (status == 404 && c->session) {
    snprintf(err, errlen, "the server ended the session (HTTP 404)");
  } else if (status < 200 || status > 299) {
    snprintf(err, errlen, "the server answered HTTP %ld", status);
  } else if (id < 0) {
    w = WAIT_OK; /* a notification: 202 Accepted */
  } else if (h.sse) {
    snprintf(err, errlen, "%s", h.err[0] ? h.err : "the server's event stream ended without the answer");
  } else {
    json_error_t je;
    json_t *m = json_loadb(h.body.s ? h.body.s : "", h.body.len, 0, &je);
    json_t *resp = NULL;
    got_t g = m ? handle_message(c, m, id, &resp, 0, err, errlen) : GOT_FAILURE;
    if (!m)
      snprintf(err, errlen, "the server's answer is not JSON: %s", je.text);
    else if (g == GOT_NOTHING)
      snprintf(err, errlen, "the server's answer is not the response to the request");
    json_decref(m);
    if (g == GOT_RESPONSE) {
      *response = resp;
      w = WAIT_OK;
    }
  }
done:
  curl_slist_free_all(hd);
  if (h.curl)
    curl_easy_cleanup(h.curl);
  sse_parser_destroy(&h.parser);
  sbuf_free(&h.body);
  json_decref(h.response);
  free(body);
  return w;
}

/* ---- requests ------------------------------------------------------------------------ */

/* Sends msg and, for a request, waits for the response. */
static int exchange(mcp_conn_t *c, const char *method, json_t *msg, int64_t id, long timeout_ms, atomic_bool *cancel,
                    json_t **response, char *err, size_t errlen) {
  int64_t deadline = util_now_ms() + timeout_ms;
  wait_t w;
  if (c->def->url) {
    w = http_post(c, msg, id, deadline, cancel, response, err, errlen);
  } else {
    w = stdio_send(c, msg, deadline, err, errlen) < 0 ? WAIT_FAILED
        : id < 0                                      ? WAIT_OK
                                                      : stdio_wait(c, id, deadline, cancel, response, err, errlen);
  }
  if (w == WAIT_OK)
    return 0;
  if (w == WAIT_CANCELLED) {
    snprintf(err, errlen, "the call was cancelled");
    json_t *n = mcp_request(-1, "notifications/cancelled",
                            json_pack("{s:I, s:s}", "requestId", (json_int_t)id, "reason", "the turn was cancelled"));
    char ignored[64];
    if (n && c->open && c->def->command)
      stdio_send(c, n, util_now_ms() + 1000, ignored, sizeof ignored);
    json_decref(n);
    return -1;
  }
  if (w == WAIT_TIMEOUT)
    snprintf(err, errlen, "the server did not answer %s within %ld s; it was stopped and starts again at the next call",
             method, (timeout_ms + 999) / 1000);
  mcp_conn_close(c); /* out of step with the server: start afresh */
  return -1;
}

int mcp_conn_request(mcp_conn_t *self, const char *method, json_t *params, long timeout_ms, atomic_bool *cancel,
                     json_t **response, char *err, size_t errlen) {
  int64_t id = self->next_id++;
  json_t *msg = mcp_request(id, method, params);
  if (!msg) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int rc = exchange(self, method, msg, id, timeout_ms, cancel, response, err, errlen);
  json_decref(msg);
  return rc;
}

int mcp_conn_open(mcp_conn_t *self, long timeout_ms, atomic_bool *cancel, char *err, size_t errlen) {
  mcp_conn_close(self);
  if (self->def->command && stdio_open(self, err, errlen) < 0)
    return -1;
  self->open = true;
  json_t *resp = NULL;
  const json_t *result = NULL;
  char version[32];
  if (mcp_conn_request(self, "initialize", mcp_initialize_params(), timeout_ms, cancel, &resp, err, errlen) < 0 ||
      mcp_response_result(resp, &result, err, errlen) < 0 ||
      mcp_initialize_check(result, version, sizeof version, err, errlen) < 0) {
    json_decref(resp);
    mcp_conn_close(self);
    return -1;
  }
  json_decref(resp);
  snprintf(self->version, sizeof self->version, "%s", version);
  json_t *n = mcp_request(-1, "notifications/initialized", NULL);
  int rc = n ? exchange(self, "notifications/initialized", n, -1, timeout_ms, cancel, NULL, err, errlen) : -1;
  json_decref(n);
  if (rc < 0)
    mcp_conn_close(self);
  return rc;
}
