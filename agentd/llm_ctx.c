/* llm_ctx: the context size of a model, asked of its server (see llm_ctx.h). */
#include "llm_ctx.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jx.h"
#include "llm_http.h"
#include "proto.h"
#include "sbuf.h"

#define CTX_CACHE_MAX 32
#define CTX_BODY_MAX (1024 * 1024)

typedef struct {
  char *key; /* url "\n" model */
  int tokens;
  bool from_server;
} ctx_entry_t;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static ctx_entry_t cache[CTX_CACHE_MAX];
static size_t cache_n;

int llm_ctx_parse(const json_t *body) {
  /* llama.cpp: default_generation_settings.n_ctx (older: n_ctx at the top). */
  json_int_t n = jx_int(jx_obj(body, "default_generation_settings"), "n_ctx", 0);
  if (n <= 0)
    n = jx_int(body, "n_ctx", 0);
  /* Ollama: parameters "num_ctx N" (what the server runs with) wins over the
   * model's trained context_length, which is often far beyond it. */
  const char *params = jx_str(body, "parameters", NULL);
  const char *p = params ? strstr(params, "num_ctx") : NULL;
  if (n <= 0 && p)
    n = strtol(p + strlen("num_ctx"), NULL, 10);
  json_t *info = jx_obj(body, "model_info");
  const char *k;
  json_t *v;
  if (n <= 0 && info)
    json_object_foreach(info, k, v) {
      size_t kl = strlen(k), sl = strlen(".context_length");
      if (kl > sl && strcmp(k + kl - sl, ".context_length") == 0 && json_is_integer(v)) {
        n = json_integer_value(v);
        break;
      }
    }
  return n > 0 && n < 100000000 ? (int)n : 0;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *ud) {
  sbuf_t *b = ud;
  sbuf_add(b, data, size * nmemb);
  return b->full ? 0 : size * nmemb;
}

/* GET (body NULL) or POST url; the parsed JSON of a 2xx answer, else NULL. */
static json_t *ask(const char *url, const char *body, const char *api_key, long timeout_ms) {
  CURL *h = curl_easy_init();
  struct curl_slist *headers = llm_http_headers(api_key, false, false);
  sbuf_t out = {.max = CTX_BODY_MAX};
  json_t *j = NULL;
  long status = 0;
  if (h && headers) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (body)
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(h) == CURLE_OK && curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        status >= 200 && status < 300 && out.s)
      j = json_loadb(out.s, out.len, 0, NULL);
  }
  llm_http_headers_free(headers);
  if (h)
    curl_easy_cleanup(h);
  sbuf_free(&out);
  return j;
}

/* The server's root: the URL without a trailing /v1, /api, /chat/completions or /api/chat. */
static char *server_root(const char *url) {
  size_t n = strcspn(url, "?#");
  static const char *const tails[] = {"/chat/completions", "/api/chat", "/v1", "/api", "/"};
  for (bool cut = true; cut;) {
    cut = false;
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
      size_t m = strlen(tails[i]);
      if (n > m && strncasecmp(url + n - m, tails[i], m) == 0) {
        n -= m;
        cut = true;
      }
    }
  }
  return strndup(url, n);
}

static int probe(const proto_profile_t *pp, const char *api_key, long timeout_ms) {
  char *root = server_root(pp->url);
  if (!root)
    return 0;
  size_t len = strlen(root) + 16;
  char *url = malloc(len);
  json_t *show = json_pack("{s:s}", "model", pp->model ? pp->model : "");
  char *show_body = show ? json_dumps(show, JSON_COMPACT) : NULL;
  int n = 0;
  bool ollama = pp->provider && strcasecmp(pp->provider, "ollama") == 0;
  for (int i = 0; url && show_body && i < 2 && n <= 0; i++) {
    bool props = (i == 0) != ollama; /* llama.cpp's /props first, Ollama's /api/show first for Ollama */
    snprintf(url, len, "%s%s", root, props ? "/props" : "/api/show");
    json_t *j = ask(url, props ? NULL : show_body, api_key, timeout_ms);
    n = llm_ctx_parse(j);
    json_decref(j);
  }
  free(show_body);
  json_decref(show);
  free(url);
  free(root);
  return n;
}

int llm_context_tokens(const json_t *profile, const char *api_key, long timeout_ms, bool *from_server) {
  proto_profile_t pp;
  proto_profile_read(profile, &pp);
  if (from_server)
    *from_server = false;
  if ((pp.has & (UINT32_C(1) << PROTO_P_context_tokens)) && pp.context_tokens > 0)
    return (int)pp.context_tokens;
  if (!pp.url)
    return LLM_CTX_DEFAULT;
  size_t klen = strlen(pp.url) + (pp.model ? strlen(pp.model) : 0) + 2;
  char *key = malloc(klen);
  if (!key)
    return LLM_CTX_DEFAULT;
  snprintf(key, klen, "%s\n%s", pp.url, pp.model ? pp.model : "");
  pthread_mutex_lock(&cache_lock);
  for (size_t i = 0; i < cache_n; i++) {
    if (strcmp(cache[i].key, key) == 0) {
      int t = cache[i].tokens;
      if (from_server)
        *from_server = cache[i].from_server;
      pthread_mutex_unlock(&cache_lock);
      free(key);
      return t;
    }
  }
  pthread_mutex_unlock(&cache_lock);
  /* Two threads may both ask the first time; both get the same answer. */
  int n = probe(&pp, api_key, timeout_ms);
  bool found = n > 0;
  if (!found)
    n = LLM_CTX_DEFAULT;
  if (from_server)
    *from_server = found;
  pthread_mutex_lock(&cache_lock);
  if (cache_n < CTX_CACHE_MAX) {
    cache[cache_n].key = key;
    cache[cache_n].tokens = n;
    cache[cache_n].from_server = found;
    cache_n++;
    key = NULL;
  }
  pthread_mutex_unlock(&cache_lock);
  free(key);
  return n;
}

void llm_ctx_forget(const json_t *profile) {
  proto_profile_t pp;
  proto_profile_read(profile, &pp);
  size_t klen = (pp.url ? strlen(pp.url) : 0) + (pp.model ? strlen(pp.model) : 0) + 2;
  char *key = profile ? malloc(klen) : NULL;
  if (key)
    snprintf(key, klen, "%s\n%s", pp.url ? pp.url : "", pp.model ? pp.model : "");
  pthread_mutex_lock(&cache_lock);
  for (size_t i = 0; i < cache_n;) {
    if (profile && (!key || strcmp(cache[i].key, key) != 0)) {
      i++;
      continue;
    }
    free(cache[i].key);
    cache[i] = cache[--cache_n];
  }
  pthread_mutex_unlock(&cache_lock);
  free(key);
}
