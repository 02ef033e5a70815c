/* llm: one model call over HTTP (libcurl), with retries, timeouts and cancel.
 *
 * Runs in the calling thread (agentd's slot workers call it; one CURL easy
 * handle per call, so per thread). Streams text/thinking through callbacks.
 * A thread that keeps an llm_conns_t and passes it with each call reuses its
 * connections to a model server (HTTP keep-alive) instead of connecting anew.
 */
#ifndef CADRE_LLM_H
#define CADRE_LLM_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "stream.h"

/* The open connections of one thread's calls (libcurl's connection cache). */
typedef struct llm_conns llm_conns_t;

typedef struct {
  /* Profile as sent by the broker (provider, url, model, temperature,
   * max_tokens, stream, ...); never contains a key. Borrowed. */
  const json_t *profile;
  const json_t *messages;  /* OpenAI-shape chat messages. Borrowed. */
  const json_t *tools;     /* OpenAI tool definitions or NULL. Borrowed. */
  const char *api_key;     /* NULL or "" for none; never logged */
  long connect_timeout_ms; /* default 10000 */
  long stall_timeout_ms;   /* no byte for this long mid-response: fail (default 120000) */
  /* Longest wait for the first byte of the response (headers included),
   * counted from the start of a try. 0: stall_timeout_ms when streaming,
   * max(stall_timeout_ms, 600000) when not (a non-streamed answer arrives
   * only when the whole generation is done). */
  long first_byte_timeout_ms;
  /* The longest the whole call may take, every try, wait and byte included,
   * however steadily bytes arrive (cadre-agentd --turn-timeout). 0: none. */
  long deadline_ms;
  int max_tries;           /* default 3 */
  long backoff_base_ms;    /* default 500; doubled each retry, with jitter */
  long retry_after_cap_ms; /* longest Retry-After honoured, default 60000 */
  atomic_bool *cancel;     /* set by another thread to abandon the call within ~1 s; may be NULL */
  llm_stream_cb_t cb;      /* text / thinking as it arrives; called in this thread */
  void *ud;
  /* Called before each retry with the attempt number, the reason and the
   * wait; may be NULL. */
  void (*on_retry)(void *ud, int next_try, const char *reason, long wait_ms);
  /* Connections kept from this thread's earlier calls, reused when the server
   * kept them open; NULL: each call connects and closes. Borrowed. */
  llm_conns_t *conns;
} llm_call_t;

typedef struct {
  bool ok;
  llm_result_t result; /* valid when ok (and partially when not) */
  int http_status;     /* last HTTP status, 0 when none */
  int tries;
  bool retryable; /* when !ok: worth trying again later */
  bool cancelled;
  char code[48];    /* when !ok: "http_429", "http_500", "connect", "timeout",
                              "stalled", "cut", "model_error", "bad_response", "cancelled",
                              "config" (no usable url), "internal" (out of memory, libcurl) */
  char detail[512]; /* when !ok: for the user; never holds a key */
  long elapsed_ms;
  long new_connections; /* connections the last try opened (0: it reused one kept in call->conns) */
  /* result.has_usage was false from the server: the token counts in result
   * are estimates (request bytes / 4, answer bytes / 4), and has_usage is set. */
  bool usage_counted;
} llm_outcome_t;

/* A thread's connection cache; NULL when out of memory. Only the thread that
 * uses it may destroy it. */
llm_conns_t *llm_conns_new(void);
/* Closes its connections; accepts NULL, nulls the caller's pointer. */
void llm_conns_destroy(llm_conns_t **self_p);

/* Process-wide setup (curl_global_init); call once from main before threads. */
int llm_global_init(void);
void llm_global_cleanup(void);

/* The request body for a call (exposed for tests). Caller owns the result. */
json_t *llm_build_body(const json_t *profile, const json_t *messages, const json_t *tools, bool ollama_native);
/* The full URL for a profile's base url, and whether it is Ollama native.
 * Returns a malloc'd string or NULL. */
char *llm_endpoint(const json_t *profile, bool *ollama_native);

/* Runs the call. Always fills *out (free with llm_outcome_free). Returns 0
 * when out->ok, else -1. */
int llm_run(const llm_call_t *call, llm_outcome_t *out);
void llm_outcome_free(llm_outcome_t *out);

#endif
