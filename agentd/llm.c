/* llm: one model call over HTTP (see llm.h).
 *
 * This file: the endpoint, the request body, the retry loop and the
 * classification of a try's outcome. llm_http.c runs a single try.
 *
 * Retry policy (at most max_tries tries in all):
 *   retried      connect / DNS failures, a connection closed or reset before
 *                any text reached the callbacks, connect and first-byte
 *                timeouts, HTTP 408, 409, 429 and 5xx
 *   not retried  other statuses; a 429 that says the quota or billing is
 *                exhausted; a Retry-After longer than retry_after_cap_ms; a
 *                stall or a cut once text was delivered (never stream an
 *                answer twice); an error object in a 200 body; cancel
 *   cut short    a stream that ends cleanly without [DONE] (Ollama: done:
 *                true) and without a finish reason fails as "cut", retried
 *                like a cut connection only when no text was delivered
 *   wait         Retry-After (or retry-after-ms) when the server sent one,
 *                else backoff_base_ms * 2^(try-1) capped at 30 s, with equal
 *                jitter; sliced so a cancel is noticed within 50 ms
 * Cancel, the first-byte timeout, the stall timeout and the call's deadline
 * (deadline_ms: all tries and waits together; a call past it fails with
 * "timeout" and is not retried) are checked at least every 100 ms during a
 * try (llm_http.c drives curl's multi interface). Only progress of the answer
 * resets the stall timer, not keep-alive comments or empty events.
 * Keys go only into the Authorization header; every detail is scrubbed of
 * the key in case a server echoes it.
 */
#include "llm.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "llm_http.h"
#include "llm_record.h"
#include "log.h"
#include "proto.h"

#define BACKOFF_CAP_MS 30000L
#define WAIT_SLICE_MS 50L
#define NONSTREAM_FIRST_BYTE_MS 600000L
#define SNIPPET_MAX 200

/* curl_global_init; once, before threads. */
int llm_global_init(void) {
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

/* curl_global_cleanup; once, after the last call. */
void llm_global_cleanup(void) {
  curl_global_cleanup();
}

/* ---- endpoint ----------------------------------------------------------- */

static bool ends_with(const char *s, size_t n, const char *suffix) {
  size_t m = strlen(suffix);
  return n >= m && strncasecmp(s + n - m, suffix, m) == 0;
}

static bool is_provider(const proto_profile_t *pp, const char *name) {
  return pp->provider && strcasecmp(pp->provider, name) == 0;
}

/* The chat URL for the profile's url: base/v1 + /chat/completions, or Ollama's /api/chat. */
char *llm_endpoint(const json_t *profile, bool *ollama_native) {
  bool native = false;
  if (ollama_native)
    *ollama_native = false;
  proto_profile_t pp;
  proto_profile_read(profile, &pp);
  const char *url = pp.url;
  if (!url)
    return NULL;
  while (isspace((unsigned char)*url))
    url++;
  size_t n = strcspn(url, "?#"); /* the path ends at a query (Azure's api-version) */
  const char *query = url + n;
  size_t qlen = strcspn(query, "#");
  while (qlen && isspace((unsigned char)query[qlen - 1]))
    qlen--;
  while (n && (url[n - 1] == '/' || isspace((unsigned char)url[n - 1])))
    n--;
  if (n == 0 || !strstr(url, "://"))
    return NULL;
  const char *suffix = "/chat/completions";
  if (ends_with(url, n, "/chat/completions")) {
    suffix = "";
  } else if (ends_with(url, n, "/api/chat")) {
    suffix = "";
    native = true;
  } else if (is_provider(&pp, "ollama") && !ends_with(url, n, "/v1")) {
    suffix = ends_with(url, n, "/api") ? "/chat" : "/api/chat";
    native = true;
  }
  size_t len = n + strlen(suffix) + qlen + 1;
  char *out = malloc(len);
  if (!out)
    return NULL;
  snprintf(out, len, "%.*s%s%.*s", (int)n, url, suffix, (int)qlen, query);
  if (ollama_native)
    *ollama_native = native;
  return out;
}

/* ---- request body ------------------------------------------------------- */

/* OpenAI's newer models take max_completion_tokens instead of max_tokens;
 * a profile may say which with "max_tokens_field". */
static const char *max_tokens_field(const proto_profile_t *pp) {
  const char *f = pp->max_tokens_field;
  if (f && (strcmp(f, "max_tokens") == 0 || strcmp(f, "max_completion_tokens") == 0))
    return f;
  const char *model = pp->model;
  if (is_provider(pp, "openai") && model) {
    static const char *const newer[] = {"o1", "o3", "o4", "gpt-5"};
    for (size_t i = 0; i < sizeof newer / sizeof newer[0]; i++)
      if (strncasecmp(model, newer[i], strlen(newer[i])) == 0)
        return "max_completion_tokens";
  }
  return "max_tokens";
}

static const char *part_text(const json_t *part) {
  const char *t = json_string_value(json_object_get(part, "text"));
  return t ? t : "";
}

/* The text of OpenAI content parts ([{"type":"text","text":...}, ...]) joined. */
static json_t *parts_text(const json_t *parts) {
  size_t i, len = 0;
  json_t *part;
  json_array_foreach(parts, i, part) len += strlen(part_text(part));
  char *text = calloc(1, len + 1);
  if (!text)
    return NULL;
  json_array_foreach(parts, i, part) strcat(text, part_text(part));
  json_t *out = json_string(text);
  free(text);
  return out;
}

/* Ollama native wants tool-call arguments as objects and content as a string. */
static json_t *ollama_message(const json_t *msg) {
  json_t *m = json_deep_copy(msg);
  if (!json_is_object(m))
    return m;
  json_t *content = json_object_get(m, "content");
  if (json_is_array(content))
    json_object_set_new(m, "content", parts_text(content));
  else if (json_is_null(content))
    json_object_set_new(m, "content", json_string(""));
  size_t i;
  json_t *tc;
  json_array_foreach(json_object_get(m, "tool_calls"), i, tc) {
    json_t *fn = json_object_get(tc, "function");
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    if (!args)
      continue;
    json_t *obj = json_loads(args, JSON_DECODE_ANY, NULL);
    if (!json_is_object(obj)) {
      json_decref(obj);
      obj = json_object();
    }
    json_object_set_new(fn, "arguments", obj);
  }
  return m;
}

static json_t *ollama_messages(const json_t *messages) {
  json_t *out = json_array();
  size_t i;
  json_t *m;
  json_array_foreach(messages, i, m) json_array_append_new(out, ollama_message(m));
  return out;
}

/* The JSON request body for the OpenAI route or Ollama native. */
json_t *llm_build_body(const json_t *profile, const json_t *messages, const json_t *tools, bool ollama_native) {
  json_t *body = json_object();
  if (!body)
    return NULL;
  proto_profile_t pp;
  proto_profile_read(profile, &pp);
  const char *model = pp.model;
  bool stream = PROTO_PROFILE_HAS(&pp, stream) ? pp.stream : true;
  bool has_temp = PROTO_PROFILE_HAS(&pp, temperature);
  bool has_max = PROTO_PROFILE_HAS(&pp, max_tokens) && pp.max_tokens > 0;
  if (model)
    json_object_set_new(body, "model", json_string(model));
  if (ollama_native) {
    json_object_set_new(body, "messages", json_is_array(messages) ? ollama_messages(messages) : json_array());
  } else {
    json_t *copy = json_is_array(messages) ? json_deep_copy(messages) : NULL;
    json_object_set_new(body, "messages", copy ? copy : json_array());
  }
  json_object_set_new(body, "stream", json_boolean(stream));
  if (ollama_native) {
    json_t *options = json_object();
    if (has_temp)
      json_object_set_new(options, "temperature", json_real(pp.temperature));
    if (has_max)
      json_object_set_new(options, "num_predict", json_integer(pp.max_tokens));
    if (json_object_size(options))
      json_object_set(body, "options", options);
    json_decref(options);
    const json_t *think = pp.think;
    if (json_is_boolean(think) || json_is_string(think))
      json_object_set(body, "think", (json_t *)think);
  } else {
    if (has_temp)
      json_object_set_new(body, "temperature", json_real(pp.temperature));
    if (has_max)
      json_object_set_new(body, max_tokens_field(&pp), json_integer(pp.max_tokens));
    if (stream)
      json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
  }
  if (json_is_array(tools) && json_array_size(tools) > 0)
    json_object_set_new(body, "tools", json_deep_copy(tools));
  return body;
}

/* ---- details ------------------------------------------------------------ */

/* Replaces every occurrence of key in s with "***" (in place). */
static void scrub(char *s, const char *key) {
  if (!key || !*key)
    return;
  size_t klen = strlen(key);
  char *p = s;
  while ((p = strstr(p, key)) != NULL) {
    memmove(p + 3, p + klen, strlen(p + klen) + 1);
    memcpy(p, "***", 3);
    p += 3;
  }
}

/* A truncated string may end in the first bytes of the key: mask them. */
static void scrub_tail(char *s, size_t cap, const char *key) {
  if (!key || !*key)
    return;
  size_t klen = strlen(key), slen = strlen(s);
  for (size_t l = klen - 1 < slen ? klen - 1 : slen; l >= 4; l--) {
    if (memcmp(s + slen - l, key, l) == 0) {
      snprintf(s + slen - l, cap - (slen - l), "***");
      return;
    }
  }
}

/* printf into out->detail, scrubbed of the key (whole or cut off by the
 * truncation) and of control bytes. */
__attribute__((format(printf, 3, 4))) static void set_detail(llm_outcome_t *out, const char *key, const char *fmt,
                                                             ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  scrub(buf, key);
  scrub_tail(buf, sizeof buf, key);
  size_t n = strnlen(buf, sizeof out->detail - 1);
  memcpy(out->detail, buf, n);
  out->detail[n] = '\0';
  scrub_tail(out->detail, sizeof out->detail, key);
  explicit_bzero(buf, sizeof buf);
  for (char *p = out->detail; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = ' ';
}

static void fail(llm_outcome_t *out, const char *code, bool retryable) {
  out->ok = false;
  snprintf(out->code, sizeof out->code, "%s", code);
  out->retryable = retryable;
}

/* The URL without user info and query, for details. */
static void display_url(const char *url, char *dst, size_t dstlen) {
  const char *scheme_end = strstr(url, "://");
  const char *host = scheme_end ? scheme_end + 3 : url;
  const char *at = strchr(host, '@');
  const char *slash = strchr(host, '/');
  if (at && (!slash || at < slash))
    host = at + 1;
  size_t n = strcspn(host, "?#");
  snprintf(dst, dstlen, "%.*s%.*s", scheme_end ? (int)(scheme_end + 3 - url) : 0, url, (int)n, host);
}

/* ---- HTTP error bodies -------------------------------------------------- */

typedef struct {
  char message[300];
  char code[64];
  char type[64];
} http_error_t;

static void copy_json_str(char *dst, size_t n, const json_t *v) {
  if (json_is_string(v))
    snprintf(dst, n, "%s", json_string_value(v));
  else if (json_is_integer(v))
    snprintf(dst, n, "%lld", (long long)json_integer_value(v));
}

/* OpenAI {"error":{"message","type","code"}}, Ollama {"error":"..."},
 * vLLM {"object":"error","message",...}, FastAPI {"detail":"..."}; else a
 * snippet of the body. */
static void parse_http_error(const char *body, size_t len, http_error_t *e) {
  memset(e, 0, sizeof *e);
  if (!body || !len)
    return;
  json_t *root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
  json_t *err = json_object_get(root, "error");
  if (json_is_object(err)) {
    copy_json_str(e->message, sizeof e->message, json_object_get(err, "message"));
    copy_json_str(e->code, sizeof e->code, json_object_get(err, "code"));
    copy_json_str(e->type, sizeof e->type, json_object_get(err, "type"));
  } else if (json_is_string(err)) {
    copy_json_str(e->message, sizeof e->message, err);
  } else if (json_is_object(root)) {
    copy_json_str(e->message, sizeof e->message, json_object_get(root, "message"));
    if (!e->message[0])
      copy_json_str(e->message, sizeof e->message, json_object_get(root, "detail"));
    copy_json_str(e->code, sizeof e->code, json_object_get(root, "code"));
    copy_json_str(e->type, sizeof e->type, json_object_get(root, "type"));
  }
  json_decref(root);
  if (!e->message[0]) { /* not JSON (an HTML page from a proxy, plain text) */
    size_t n = len < SNIPPET_MAX ? len : SNIPPET_MAX;
    snprintf(e->message, sizeof e->message, "%.*s%s", (int)n, body, len > n ? "..." : "");
  }
}

static bool quota_exhausted(const http_error_t *e) {
  static const char *const codes[] = {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active",
                                      "quota_exceeded"};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (strcasecmp(e->code, codes[i]) == 0 || strcasecmp(e->type, codes[i]) == 0)
      return true;
  return strcasestr(e->message, "insufficient_quota") || strcasestr(e->message, "billing") ||
         strcasestr(e->message, "quota exhausted") || strcasestr(e->message, "exceeded your current quota");
}

static bool status_retryable(long status) {
  return status == 408 || status == 409 || status == 429 || (status >= 500 && status <= 599);
}

/* ---- classification of one try ------------------------------------------ */

typedef struct {
  const char *key;
  const char *url; /* for details, already cleaned */
  bool may_retry;  /* out: llm_run may try again */
  bool taken;      /* out: the parser's result was moved to out->result */
} classify_t;

static void classify_abort(const llm_try_t *t, llm_outcome_t *out, classify_t *c) {
  if (t->abort == LLM_ABORT_CANCEL) {
    fail(out, PROTO_ERR_cancelled, false);
    out->cancelled = true;
    set_detail(out, c->key, "model call cancelled");
  } else if (t->abort == LLM_ABORT_DEADLINE) {
    fail(out, PROTO_ERR_timeout, false);
    set_detail(out, c->key,
               "model server %s did not finish its answer within the deadline of %g s for a model call "
               "(%zu bytes of body; cadre-agentd --turn-timeout)",
               c->url, (double)t->call->deadline_ms / 1000.0, t->body_bytes);
  } else if (t->abort == LLM_ABORT_STALL) {
    fail(out, PROTO_ERR_stalled, true);
    set_detail(out, c->key, "model server %s sent nothing for %ld ms (no progress of the answer; %zu bytes of body)",
               c->url, t->stall_ms, t->body_bytes);
  } else {
    fail(out, PROTO_ERR_timeout, true);
    set_detail(out, c->key, "no answer from model server %s within %ld ms", c->url, t->first_byte_ms);
    c->may_retry = !t->delivered;
  }
}

static void classify_transport(const llm_try_t *t, llm_outcome_t *out, classify_t *c) {
  const char *why = t->curl_err[0] ? t->curl_err : curl_easy_strerror(t->rc);
  switch (t->rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
    fail(out, PROTO_ERR_connect, true);
    set_detail(out, c->key, "cannot connect to model server %s: %s", c->url, why);
    c->may_retry = true;
    return;
  case CURLE_OPERATION_TIMEDOUT:
    fail(out, PROTO_ERR_timeout, true);
    set_detail(out, c->key, "timed out connecting to model server %s: %s", c->url, why);
    c->may_retry = true;
    return;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    fail(out, PROTO_ERR_connect, false);
    set_detail(out, c->key, "cannot talk to model server %s: %s", c->url, why);
    return;
  default: break;
  }
  if (t->delivered) {
    fail(out, PROTO_ERR_cut, true);
    set_detail(out, c->key, "connection to model server lost mid-stream after %zu bytes (%s)", t->body_bytes, why);
  } else if (!t->got_any) {
    fail(out, PROTO_ERR_connect, true);
    set_detail(out, c->key, "model server %s closed the connection without answering: %s", c->url, why);
    c->may_retry = true;
  } else {
    fail(out, PROTO_ERR_cut, true);
    set_detail(out, c->key, "connection to model server lost after %zu bytes, before any text (%s)", t->body_bytes,
               why);
    c->may_retry = true;
  }
}

static void classify_http_error(const llm_try_t *t, llm_outcome_t *out, classify_t *c, long retry_cap_ms) {
  http_error_t e;
  char code[16];
  parse_http_error(t->errbody, t->errlen, &e);
  snprintf(code, sizeof code, "http_%ld", t->status);
  bool quota = t->status == 429 && quota_exhausted(&e);
  bool retryable = status_retryable(t->status) && !quota;
  fail(out, code, retryable);
  const char *msg = e.message[0] ? e.message : t->reason[0] ? t->reason : "no detail";
  const char *ecode = e.code[0] ? e.code : e.type;
  char extra[160] = "";
  if (t->status >= 300 && t->status < 400)
    snprintf(extra, sizeof extra, " (redirects are not followed; check the url)");
  if (retryable && t->retry_after_ms > retry_cap_ms)
    snprintf(extra, sizeof extra, " (asks to retry after %ld s)", (t->retry_after_ms + 999) / 1000);
  set_detail(out, c->key, "model server answered %ld: %s%s%s%s%s", t->status, msg, ecode[0] ? " [" : "", ecode,
             ecode[0] ? "]" : "", extra);
  c->may_retry = retryable && t->retry_after_ms <= retry_cap_ms;
}

/* Counted usage when the server sent none: bytes / 4, rounded up. */
static void count_usage(llm_outcome_t *out, size_t request_bytes) {
  llm_result_t *r = &out->result;
  size_t n = (r->text ? strlen(r->text) : 0) + (r->thinking ? strlen(r->thinking) : 0);
  for (size_t i = 0; i < r->n_tool_calls; i++)
    n += (r->tool_calls[i].name ? strlen(r->tool_calls[i].name) : 0) +
         (r->tool_calls[i].arguments ? strlen(r->tool_calls[i].arguments) : 0);
  r->prompt_tokens = (int64_t)((request_bytes + 3) / 4);
  r->completion_tokens = (int64_t)((n + 3) / 4);
  r->total_tokens = r->prompt_tokens + r->completion_tokens;
  r->has_usage = true;
  out->usage_counted = true;
}

/* A parser that produced callbacks for nothing (a non-streamed body): hand
 * the answer to the callbacks now so the caller always sees it there. */
static void deliver_late(llm_try_t *t, const llm_result_t *r) {
  if (t->delivered)
    return;
  const llm_call_t *call = t->call;
  if (r->thinking && *r->thinking && call->cb.on_thinking)
    call->cb.on_thinking(call->ud, r->thinking, strlen(r->thinking));
  if (r->text && *r->text && call->cb.on_text)
    call->cb.on_text(call->ud, r->text, strlen(r->text));
}

static bool result_empty(const llm_result_t *r) {
  return !r->done && !r->finish_reason && r->n_tool_calls == 0 && (!r->text || !*r->text) &&
         (!r->thinking || !*r->thinking) && !r->refusal;
}

static void classify_2xx(llm_try_t *t, llm_outcome_t *out, classify_t *c, size_t request_bytes) {
  if (t->html) {
    http_error_t e;
    parse_http_error(t->errbody, t->errlen, &e);
    fail(out, PROTO_ERR_bad_response, false);
    set_detail(out, c->key, "model server %s answered %ld with an HTML page, not a chat completion (check the url): %s",
               c->url, t->status, e.message);
    return;
  }
  if (!t->parser) {
    fail(out, PROTO_ERR_bad_response, true);
    set_detail(out, c->key, "model server %s answered %ld with an empty body", c->url, t->status);
    return;
  }
  int rc = llm_stream_finish(t->parser);
  llm_stream_take_result(t->parser, &out->result);
  c->taken = true;
  llm_result_t *r = &out->result;
  if (rc < 0) {
    fail(out, PROTO_ERR_bad_response, false);
    set_detail(out, c->key, "cannot read the model server's answer: %s", strerror(-rc));
  } else if (r->has_error) {
    fail(out, PROTO_ERR_model_error, false);
    set_detail(out, c->key, "model server reported an error: %s%s%s%s",
               r->error_message ? r->error_message : "no message", r->error_code ? " [" : "",
               r->error_code ? r->error_code : "", r->error_code ? "]" : "");
  } else if (result_empty(r)) {
    fail(out, PROTO_ERR_bad_response, true);
    set_detail(out, c->key, "model server %s sent no answer (%zu bytes, no text, no finish)", c->url, t->body_bytes);
  } else if (!r->done && !r->finish_reason) { /* the connection closed cleanly, but the answer is not all there */
    fail(out, PROTO_ERR_cut, true);
    set_detail(out, c->key,
               "model server %s ended its answer after %zu bytes without %s or a finish reason: the answer was cut "
               "short",
               c->url, t->body_bytes, t->format == LLM_FORMAT_OLLAMA_NDJSON ? "done: true" : "[DONE]");
    c->may_retry = !t->delivered;
  } else {
    out->ok = true;
    deliver_late(t, r);
    if (!r->has_usage)
      count_usage(out, request_bytes);
  }
}

/* What one try came to: out's code, detail, flags (and result), and whether to try again. */
static void classify(llm_try_t *t, llm_outcome_t *out, classify_t *c, long retry_cap_ms, size_t request_bytes) {
  c->may_retry = false;
  c->taken = false;
  if (t->errbody) { /* a server may echo the key; the body is cut below */
    scrub(t->errbody, c->key);
    t->errlen = strlen(t->errbody);
  }
  out->ok = out->retryable = out->cancelled = false;
  out->code[0] = out->detail[0] = '\0';
  out->http_status = (int)t->status;
  if (t->abort != LLM_ABORT_NONE) {
    classify_abort(t, out, c);
  } else if (t->feed_rc != 0) {
    fail(out, PROTO_ERR_bad_response, false);
    if (t->feed_rc == -E2BIG)
      set_detail(out, c->key, "model server's answer is over the size cap (%d MiB of text or %d MiB in one line)",
                 LLM_MAX_TEXT >> 20, LLM_MAX_LINE >> 20);
    else
      set_detail(out, c->key, "cannot read the model server's answer: %s", strerror(-t->feed_rc));
  } else if (t->mcode != CURLM_OK) {
    fail(out, PROTO_ERR_internal, true);
    set_detail(out, c->key, "libcurl failed while talking to %s: %s", c->url, curl_multi_strerror(t->mcode));
    c->may_retry = !t->delivered;
  } else if (t->rc != CURLE_OK) {
    classify_transport(t, out, c);
  } else if (t->status < 200 || t->status > 299) {
    classify_http_error(t, out, c, retry_cap_ms);
  } else {
    classify_2xx(t, out, c, request_bytes);
  }
  if (!out->ok && t->parser && !c->taken) /* keep what arrived before the failure */
    llm_stream_take_result(t->parser, &out->result);
}

/* ---- the call ----------------------------------------------------------- */

typedef struct {
  long connect_ms, stall_ms, first_byte_ms, backoff_ms, retry_cap_ms;
  int max_tries;
} limits_t;

static void limits_of(const llm_call_t *call, bool streaming, limits_t *l) {
  l->connect_ms = call->connect_timeout_ms > 0 ? call->connect_timeout_ms : 10000;
  l->stall_ms = call->stall_timeout_ms > 0 ? call->stall_timeout_ms : 120000;
  l->first_byte_ms = call->first_byte_timeout_ms;
  if (l->first_byte_ms <= 0)
    l->first_byte_ms = streaming || l->stall_ms > NONSTREAM_FIRST_BYTE_MS ? l->stall_ms : NONSTREAM_FIRST_BYTE_MS;
  l->max_tries = call->max_tries > 0 ? call->max_tries : 3;
  l->backoff_ms = call->backoff_base_ms > 0 ? call->backoff_base_ms : 500;
  l->retry_cap_ms = call->retry_after_cap_ms > 0 ? call->retry_after_cap_ms : 60000;
}

/* backoff_base * 2^(try-1), capped, with equal jitter (half fixed, half random). */
static long backoff_ms(long base, int try_no, unsigned *seed) {
  long d = base;
  for (int i = 1; i < try_no && d < BACKOFF_CAP_MS; i++)
    d *= 2;
  if (d > BACKOFF_CAP_MS)
    d = BACKOFF_CAP_MS;
  long half = d / 2;
  return half + (long)((unsigned long)rand_r(seed) % (unsigned long)(d - half + 1));
}

/* Sleeps ms in slices, watching cancel. False when cancelled. */
static bool wait_interruptible(long ms, atomic_bool *cancel) {
  long end = llm_now_ms() + ms;
  for (;;) {
    if (cancel && atomic_load(cancel))
      return false;
    long left = end - llm_now_ms();
    if (left <= 0)
      return true;
    if (left > WAIT_SLICE_MS)
      left = WAIT_SLICE_MS;
    struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static void set_cancelled(llm_outcome_t *out, const char *when) {
  fail(out, PROTO_ERR_cancelled, false);
  out->cancelled = true;
  snprintf(out->detail, sizeof out->detail, "model call cancelled%s", when);
}

/* The tries, with the waits between them. */
static void run_tries(const llm_call_t *call, CURLM *multi, CURL *h, llm_try_t *t, const limits_t *lim, classify_t *c,
                      const char *request, llm_outcome_t *out) {
  unsigned seed = (unsigned)llm_now_ms() ^ (unsigned)(uintptr_t)out ^ (unsigned)((uintptr_t)t >> 4);
  size_t request_bytes = strlen(request);
  for (int try_no = 1;; try_no++) {
    if (call->cancel && atomic_load(call->cancel)) {
      set_cancelled(out, try_no == 1 ? " before it started" : " while waiting to retry");
      return;
    }
    llm_try_init(t);
    if (t->tee)
      sbuf_reset(t->tee);
    out->tries = try_no;
    if (llm_replaying()) { /* --replay: the recorded answer, played as if it came now */
      char err[sizeof out->detail];
      if (llm_replay_play(request, t, err, sizeof err) < 0) {
        llm_try_clear(t);
        fail(out, PROTO_ERR_replay_missing, false);
        snprintf(out->detail, sizeof out->detail, "%s", err);
        return;
      }
    } else {
      llm_http_try(multi, h, t);
      curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &out->new_connections);
    }
    llm_result_free(&out->result);
    classify(t, out, c, lim->retry_cap_ms, request_bytes);
    int saved = out->ok && llm_recording() ? llm_record_save(request, c->url, t) : 0;
    if (saved < 0)
      log_warn("cannot record a model exchange (--record): %s", strerror(-saved));
    llm_try_clear(t);
    if (out->ok || !c->may_retry || try_no >= lim->max_tries)
      return;
    long wait = t->retry_after_ms >= 0 ? t->retry_after_ms : backoff_ms(lim->backoff_ms, try_no, &seed);
    if (t->deadline_at > 0 && llm_now_ms() + wait >= t->deadline_at)
      return; /* no time left for another try: the last failure stands */
    if (call->on_retry)
      call->on_retry(call->ud, try_no + 1, out->detail, wait);
    if (!wait_interruptible(wait, call->cancel)) {
      set_cancelled(out, " while waiting to retry");
      return;
    }
  }
}

/* In a multi handle's cache a connection outlives its transfer's easy handle. */
struct llm_conns {
  CURLM *multi;
};

/* Everything llm_run does but the timing. */
static void run(const llm_call_t *call, llm_outcome_t *out) {
  bool native = false;
  char *url = call->profile ? llm_endpoint(call->profile, &native) : NULL;
  if (!url) {
    fail(out, PROTO_ERR_config, false);
    snprintf(out->detail, sizeof out->detail, "the profile has no usable url (want e.g. http://localhost:11434/v1)");
    return;
  }
  char shown[256];
  display_url(url, shown, sizeof shown);
  json_t *body = llm_build_body(call->profile, call->messages, call->tools, native);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  bool streaming = json_is_true(json_object_get(body, "stream"));
  json_decref(body);
  limits_t lim;
  limits_of(call, streaming, &lim);
  CURL *h = curl_easy_init();
  CURLM *multi = call->conns ? call->conns->multi : curl_multi_init();
  struct curl_slist *headers = llm_http_headers(call->api_key, streaming, native);
  if (!text || !h || !multi || !headers || llm_http_setup(h, url, text, strlen(text), headers, lim.connect_ms) != 0) {
    fail(out, PROTO_ERR_internal, false);
    snprintf(out->detail, sizeof out->detail, "cannot prepare the request to %s (out of memory?)", shown);
  } else {
    llm_try_t t = {.call = call,
                   .native = native,
                   .streaming = streaming,
                   .stall_ms = lim.stall_ms,
                   .first_byte_ms = lim.first_byte_ms,
                   .deadline_at = call->deadline_ms > 0 ? llm_now_ms() + call->deadline_ms : 0};
    classify_t c = {.key = call->api_key, .url = shown};
    sbuf_t tee = {.max = 256 << 20};
    if (llm_recording())
      t.tee = &tee;
    run_tries(call, multi, h, &t, &lim, &c, text, out);
    sbuf_free(&tee);
  }
  if (h)
    curl_easy_cleanup(h);
  if (multi && !call->conns)
    curl_multi_cleanup(multi);
  llm_http_headers_free(headers);
  free(text);
  free(url);
}

/* ---- connections kept between calls ---------------------------------------- */

llm_conns_t *llm_conns_new(void) {
  llm_conns_t *c = calloc(1, sizeof *c);
  if (c && !(c->multi = curl_multi_init())) {
    free(c);
    return NULL;
  }
  return c;
}

void llm_conns_destroy(llm_conns_t **self_p) {
  if (!self_p || !*self_p)
    return;
  curl_multi_cleanup((*self_p)->multi);
  free(*self_p);
  *self_p = NULL;
}

/* One model call with its retries; see the policy at the top of the file. */
int llm_run(const llm_call_t *call, llm_outcome_t *out) {
  long t0 = llm_now_ms();
  memset(out, 0, sizeof *out);
  run(call, out);
  out->elapsed_ms = llm_now_ms() - t0;
  return out->ok ? 0 : -1;
}

/* Frees the result held by an outcome. */
void llm_outcome_free(llm_outcome_t *out) {
  if (!out)
    return;
  llm_result_free(&out->result);
}
