/* llm_http: one HTTP try of a model call (see llm_http.h). */
#include "llm_http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef CADRE_VERSION
#define CADRE_VERSION "dev"
#endif

long llm_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- request headers ---------------------------------------------------- */

struct curl_slist *llm_http_headers(const char *api_key, bool streaming, bool native) {
  const char *accept = !streaming ? "Accept: application/json"
                       : native   ? "Accept: application/x-ndjson, application/json"
                                  : "Accept: text/event-stream, application/json";
  const char *fixed[] = {"Content-Type: application/json", accept, "Expect:" /* no 100-continue round trip */};
  struct curl_slist *list = NULL;
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    struct curl_slist *n = curl_slist_append(list, fixed[i]);
    if (!n)
      goto fail;
    list = n;
  }
  if (api_key && *api_key) {
    size_t len = strlen("Authorization: Bearer ") + strlen(api_key) + 1;
    char *line = malloc(len);
    if (!line)
      goto fail;
    snprintf(line, len, "Authorization: Bearer %s", api_key);
    struct curl_slist *n = curl_slist_append(list, line);
    explicit_bzero(line, len);
    free(line);
    if (!n)
      goto fail;
    list = n;
  }
  return list;
fail:
  llm_http_headers_free(list);
  return NULL;
}

void llm_http_headers_free(struct curl_slist *headers) {
  for (struct curl_slist *n = headers; n; n = n->next)
    if (n->data)
      explicit_bzero(n->data, strlen(n->data));
  curl_slist_free_all(headers);
}

/* ---- response headers --------------------------------------------------- */

/* True when line (len bytes) starts with name, case-insensitively; *value
 * then points after the name, past blanks. */
static bool header_is(const char *line, size_t len, const char *name, const char **value, size_t *vlen) {
  size_t n = strlen(name);
  if (len < n || strncasecmp(line, name, n) != 0)
    return false;
  const char *v = line + n, *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && isspace((unsigned char)end[-1]))
    end--;
  *value = v;
  *vlen = (size_t)(end - v);
  return true;
}

/* Copies the header value into dst (NUL-terminated, truncated). */
static void copy_value(char *dst, size_t dstlen, const char *v, size_t vlen) {
  if (vlen >= dstlen)
    vlen = dstlen - 1;
  memcpy(dst, v, vlen);
  dst[vlen] = '\0';
}

/* Retry-After: delta-seconds or an HTTP-date; -1 when unparsable. */
static long parse_retry_after(const char *v, size_t vlen) {
  char buf[96];
  copy_value(buf, sizeof buf, v, vlen);
  char *end = NULL;
  errno = 0;
  double secs = strtod(buf, &end);
  if (end != buf && *end == '\0' && errno == 0) {
    if (secs < 0)
      return -1;
    return secs > 86400.0 ? 86400000L : (long)(secs * 1000.0);
  }
  time_t when = curl_getdate(buf, NULL);
  if (when == (time_t)-1)
    return -1;
  double delta = difftime(when, time(NULL));
  if (delta < 0)
    return 0;
  return delta > 86400.0 ? 86400000L : (long)(delta * 1000.0);
}

/* retry-after-ms (OpenAI and Azure send it): milliseconds; -1 when unparsable. */
static long parse_retry_after_ms(const char *v, size_t vlen) {
  char buf[64];
  copy_value(buf, sizeof buf, v, vlen);
  char *end = NULL;
  double ms = strtod(buf, &end);
  if (end == buf || *end != '\0' || ms < 0)
    return -1;
  return ms > 86400000.0 ? 86400000L : (long)ms;
}

/* "HTTP/1.1 429 Too Many Requests": a new response head begins (there may
 * be several, e.g. after 100 Continue); forget the previous one. */
static void on_status_line(llm_try_t *t, const char *line, size_t len) {
  char buf[128];
  while (len && isspace((unsigned char)line[len - 1]))
    len--;
  copy_value(buf, sizeof buf, line, len);
  const char *sp = strchr(buf, ' ');
  t->status = sp ? strtol(sp + 1, NULL, 10) : 0;
  const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
  copy_value(t->reason, sizeof t->reason, sp2 ? sp2 + 1 : "", sp2 ? strlen(sp2 + 1) : 0);
  t->ctype[0] = '\0';
  t->ra_header_ms = t->ra_ms_header_ms = -1;
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *ud) {
  llm_try_t *t = ud;
  size_t len = size * nitems;
  const char *v;
  size_t vlen;
  t->got_any = true;
  if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
    t->t_last = llm_now_ms(); /* header lines after it are no progress: a server may send them forever */
    on_status_line(t, data, len);
  } else if (header_is(data, len, "content-type:", &v, &vlen))
    copy_value(t->ctype, sizeof t->ctype, v, vlen);
  else if (header_is(data, len, "retry-after:", &v, &vlen))
    t->ra_header_ms = parse_retry_after(v, vlen);
  else if (header_is(data, len, "retry-after-ms:", &v, &vlen))
    t->ra_ms_header_ms = parse_retry_after_ms(v, vlen);
  t->retry_after_ms = t->ra_ms_header_ms >= 0 ? t->ra_ms_header_ms : t->ra_header_ms;
  return len;
}

/* ---- response body ------------------------------------------------------ */

/* Passes a non-empty piece to the caller's callback fn (which may be NULL). */
static void pass(llm_try_t *t, void (*fn)(void *, const char *, size_t), const char *s, size_t n) {
  if (n == 0)
    return;
  t->delivered = true;
  if (fn)
    fn(t->call->ud, s, n);
}

static void pass_text(void *ud, const char *s, size_t n) {
  llm_try_t *t = ud;
  pass(t, t->call->cb.on_text, s, n);
}

static void pass_thinking(void *ud, const char *s, size_t n) {
  llm_try_t *t = ud;
  pass(t, t->call->cb.on_thinking, s, n);
}

/* Body format: Ollama native is NDJSON whatever the Content-Type; otherwise
 * the Content-Type decides (servers that ignore "stream" answer JSON), and
 * without one, what was asked for. */
static llm_format_t choose_format(const llm_try_t *t) {
  if (t->native)
    return LLM_FORMAT_OLLAMA_NDJSON;
  if (strcasestr(t->ctype, "event-stream"))
    return LLM_FORMAT_OPENAI_SSE;
  if (strcasestr(t->ctype, "json"))
    return LLM_FORMAT_OPENAI_JSON;
  return t->streaming ? LLM_FORMAT_OPENAI_SSE : LLM_FORMAT_OPENAI_JSON;
}

static bool is_2xx(long status) {
  return status >= 200 && status < 300;
}

/* Keeps a non-2xx body (up to LLM_ERRBODY_CAP) for the error detail. */
static void keep_errbody(llm_try_t *t, const char *data, size_t len) {
  if (t->errlen >= LLM_ERRBODY_CAP)
    return;
  if (len > LLM_ERRBODY_CAP - t->errlen)
    len = LLM_ERRBODY_CAP - t->errlen;
  char *p = realloc(t->errbody, t->errlen + len + 1);
  if (!p)
    return;
  memcpy(p + t->errlen, data, len);
  t->errlen += len;
  p[t->errlen] = '\0';
  t->errbody = p;
}

static bool cancelled(const llm_try_t *t) {
  return t->call->cancel && atomic_load(t->call->cancel);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
  llm_try_t *t = ud;
  size_t len = size * nmemb;
  if (cancelled(t)) {
    t->abort = LLM_ABORT_CANCEL;
    return 0;
  }
  t->got_any = true;
  t->body_bytes += len;
  if (t->tee)
    sbuf_add(t->tee, data, len);
  if (t->body_bytes == len) /* first piece of the body */
    t->html = is_2xx(t->status) && !t->native && strncasecmp(t->ctype, "text/html", 9) == 0;
  if (!is_2xx(t->status) || t->html) {
    t->t_last = llm_now_ms();
    keep_errbody(t, data, len);
    return len;
  }
  if (!t->parser) {
    static const llm_stream_cb_t pass = {pass_text, pass_thinking};
    t->format = choose_format(t);
    t->parser = llm_stream_new(t->format, &pass, t);
    if (!t->parser) {
      t->feed_rc = -ENOMEM;
      return 0;
    }
  }
  uint64_t before = llm_stream_progress(t->parser);
  int rc = llm_stream_feed(t->parser, data, len);
  if (rc < 0) {
    t->feed_rc = rc;
    return 0;
  }
  if (llm_stream_progress(t->parser) != before)
    t->t_last = llm_now_ms();
  return len;
}

/* Cancel, first-byte and stall checks; true (and t->abort set) to stop. */
static bool should_abort(llm_try_t *t) {
  if (cancelled(t)) {
    t->abort = LLM_ABORT_CANCEL;
    return true;
  }
  long now = llm_now_ms(), silent = now - t->t_last;
  if (t->deadline_at > 0 && now >= t->deadline_at) {
    t->abort = LLM_ABORT_DEADLINE;
    return true;
  }
  if (!t->got_any && t->first_byte_ms > 0 && silent > t->first_byte_ms) {
    t->abort = LLM_ABORT_FIRST_BYTE;
    return true;
  }
  if (t->got_any && t->stall_ms > 0 && silent > t->stall_ms) {
    t->abort = LLM_ABORT_STALL;
    return true;
  }
  return false;
}

/* libcurl's progress callback: the same checks while data flows. */
static int progress_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  return should_abort(ud) ? 1 : 0;
}

/* Drives the transfer with the multi interface, waking at least every
 * LLM_POLL_MS so that cancel and the timeouts are noticed promptly even
 * while the server sends nothing (curl_easy_perform would check only about
 * once a second). */
static CURLcode perform(CURLM *multi, CURL *h, llm_try_t *t) {
  t->mcode = curl_multi_add_handle(multi, h);
  if (t->mcode != CURLM_OK)
    return CURLE_FAILED_INIT;
  CURLcode rc = CURLE_OK;
  int running = 1;
  for (;;) {
    t->mcode = curl_multi_perform(multi, &running);
    if (t->mcode != CURLM_OK) {
      rc = CURLE_FAILED_INIT;
      break;
    }
    if (!running) {
      int left;
      CURLMsg *msg;
      while ((msg = curl_multi_info_read(multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
          rc = msg->data.result;
      break;
    }
    if (should_abort(t)) {
      rc = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    t->mcode = curl_multi_poll(multi, NULL, 0, LLM_POLL_MS, NULL);
    if (t->mcode != CURLM_OK) {
      rc = CURLE_FAILED_INIT;
      break;
    }
  }
  curl_multi_remove_handle(multi, h);
  return rc;
}

/* ---- the try ------------------------------------------------------------ */

int llm_http_setup(CURL *h, const char *url, const char *body, size_t bodylen, struct curl_slist *headers,
                   long connect_timeout_ms) {
  CURLcode rc = CURLE_OK;
#define SET(opt, val) \
  if (rc == CURLE_OK) \
  rc = curl_easy_setopt(h, opt, val)
  SET(CURLOPT_URL, url);
  SET(CURLOPT_POST, 1L);
  SET(CURLOPT_POSTFIELDS, body);
  SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bodylen);
  SET(CURLOPT_HTTPHEADER, headers);
  SET(CURLOPT_USERAGENT, "cadre-agentd/" CADRE_VERSION);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_NOPROGRESS, 0L);
  SET(CURLOPT_VERBOSE, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
  return rc == CURLE_OK ? 0 : -1;
}

void llm_http_play(llm_try_t *t, long status, const char *ctype, const char *body, size_t len) {
  enum { PIECE = 256 }; /* a streamed answer arrives in pieces: so does a replayed one */
  t->t_start = t->t_last = llm_now_ms();
  t->got_any = true;
  t->status = status;
  snprintf(t->ctype, sizeof t->ctype, "%s", ctype ? ctype : "");
  for (size_t at = 0; at < len; at += PIECE) {
    size_t n = len - at < PIECE ? len - at : PIECE;
    if (write_cb((char *)body + at, 1, n, t) != n) {
      t->rc = CURLE_WRITE_ERROR;
      return;
    }
  }
  t->rc = CURLE_OK;
}

void llm_try_init(llm_try_t *t) {
  llm_try_t in = {.call = t->call,
                  .native = t->native,
                  .streaming = t->streaming,
                  .stall_ms = t->stall_ms,
                  .first_byte_ms = t->first_byte_ms,
                  .deadline_at = t->deadline_at,
                  .tee = t->tee};
  *t = in;
  t->retry_after_ms = t->ra_header_ms = t->ra_ms_header_ms = -1;
}

void llm_try_clear(llm_try_t *t) {
  llm_stream_destroy(&t->parser);
  free(t->errbody);
  t->errbody = NULL;
  t->errlen = 0;
}

CURLcode llm_http_try(CURLM *multi, CURL *h, llm_try_t *t) {
  t->t_start = t->t_last = llm_now_ms();
  t->curl_err[0] = '\0';
  /* Every callback's data is this try. */
  static const CURLoption data_opts[] = {CURLOPT_WRITEDATA, CURLOPT_HEADERDATA, CURLOPT_XFERINFODATA};
  CURLcode rc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->curl_err);
  rc = rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  rc = rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
  rc = rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
  for (size_t i = 0; rc == CURLE_OK && i < sizeof data_opts / sizeof data_opts[0]; i++)
    rc = curl_easy_setopt(h, data_opts[i], t);
  if (rc == CURLE_OK)
    rc = perform(multi, h, t);
  if (rc != CURLE_OK && t->abort == LLM_ABORT_NONE && cancelled(t))
    t->abort = LLM_ABORT_CANCEL;
  t->rc = rc;
  return rc;
}
