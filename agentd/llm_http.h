/* llm_http: one HTTP try of a model call (internal to llm.c).
 *
 * Sends the request with a prepared CURL easy handle and feeds a 2xx body to
 * a stream parser, passing text and thinking through to the call's callbacks.
 * A non-2xx body is kept aside (capped) for the error detail. Watches the
 * cancel flag, the first-byte timeout, the stall timeout and the call's
 * deadline at least every LLM_POLL_MS. Only progress of the answer resets the
 * stall timer: the status line, a non-2xx body, and what the parser counts
 * (llm_stream_progress), not header lines, keep-alive comments or empty events.
 */
#ifndef CADRE_LLM_HTTP_H
#define CADRE_LLM_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "llm.h"
#include "sbuf.h"
#include "stream.h"

#define LLM_ERRBODY_CAP (64 * 1024)
#define LLM_POLL_MS 100 /* longest sleep between cancel / timeout checks */

typedef enum {
  LLM_ABORT_NONE,
  LLM_ABORT_CANCEL,
  LLM_ABORT_STALL,
  LLM_ABORT_FIRST_BYTE,
  LLM_ABORT_DEADLINE
} llm_abort_t;

typedef struct {
  /* In. */
  const llm_call_t *call;
  bool native;        /* Ollama /api/chat: NDJSON */
  bool streaming;     /* the request asked for a stream */
  long stall_ms;      /* silence after the first byte */
  long first_byte_ms; /* silence before the first byte */
  long deadline_at;   /* llm_now_ms() by which the whole call must be over; 0: none */
  /* Out. */
  CURLcode rc;
  CURLMcode mcode; /* CURLM_OK unless the multi interface itself failed */
  char curl_err[CURL_ERROR_SIZE];
  long status;          /* 0 when no status line arrived */
  char reason[64];      /* reason phrase of the status line */
  char ctype[128];      /* Content-Type, "" when none */
  long retry_after_ms;  /* -1 when the server sent none */
  llm_format_t format;  /* chosen when the first 2xx body byte arrived */
  llm_stream_t *parser; /* NULL unless a 2xx body arrived */
  int feed_rc;          /* parser failure (negative errno), 0 when none */
  char *errbody;        /* non-2xx (or HTML) body, NUL-terminated, capped */
  size_t errlen;
  bool html;         /* 2xx answered with an HTML page */
  size_t body_bytes; /* response body bytes received */
  bool got_any;      /* any response byte (status line included) */
  bool delivered;    /* text or thinking was passed to call->cb */
  llm_abort_t abort;
  long t_start, t_last; /* llm_now_ms() at the start and at the last progress (see llm_stream_progress) */
  /* Retry-After parsing state. */
  long ra_header_ms, ra_ms_header_ms;
  /* When recording (cadre-agentd --record): every body byte, as it came; else NULL. */
  sbuf_t *tee;
} llm_try_t;

/* Monotonic clock in milliseconds. */
long llm_now_ms(void);

/* Sets the options that do not change between tries (timeouts, callbacks
 * that point at t are set by llm_http_try). Returns 0 or -1. */
int llm_http_setup(CURL *h, const char *url, const char *body, size_t bodylen, struct curl_slist *headers,
                   long connect_timeout_ms);

/* Request headers; the Authorization line only when api_key is non-empty.
 * Free with llm_http_headers_free, which wipes them. */
struct curl_slist *llm_http_headers(const char *api_key, bool streaming, bool native);
void llm_http_headers_free(struct curl_slist *headers);

/* Runs one try of h (prepared by llm_http_setup) in multi, which must hold
 * no other handle; t's "in" fields must be set and the rest reset by
 * llm_try_init. Fills t's "out" fields. Returns t->rc. */
CURLcode llm_http_try(CURLM *multi, CURL *h, llm_try_t *t);

/* Resets t for a new try, keeping the "in" fields. */
void llm_try_init(llm_try_t *t);
/* A recorded response played into t as if it arrived from the server: the
 * status and Content-Type, then the body in small pieces through the same
 * path as a real one (callbacks, parser, caps). */
void llm_http_play(llm_try_t *t, long status, const char *ctype, const char *body, size_t len);
/* Frees what a try holds (parser, error body). */
void llm_try_clear(llm_try_t *t);

#endif
