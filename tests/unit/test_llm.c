/* Tests of llm_run (against tests/model_server.py), llm_endpoint,
 * llm_build_body and secrets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llm.h"
#include "llm_ctx.h"
#include "secrets.h"

#define TEST_KEY "sk-test-0123456789abcdef"
/* sha256("Bearer " TEST_KEY), as the server records it. */
#define TEST_KEY_AUTH_SHA256 "70b140fe096e5258bfc02708453c560343bfc3c535665afb1a782bddea88f683"

/* ---- helpers ------------------------------------------------------------ */

typedef struct {
  pid_t pid;
  int port;
  char dir[64];
  char base[96]; /* http://127.0.0.1:PORT */
} server_t;

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static const char *server_script_path(char *buf, size_t len) {
  const char *p = getenv("CADRE_MODEL_SERVER");
  if (p && *p)
    return p;
  const char *root = getenv("CADRE_SOURCE_ROOT");
#ifdef CADRE_SOURCE_ROOT
  if (!root)
    root = CADRE_SOURCE_ROOT;
#endif
  snprintf(buf, len, "%s/tests/model_server.py", root ? root : ".");
  return buf;
}

static int read_port_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  int port = 0;
  if (fscanf(f, "%d", &port) != 1)
    port = 0;
  fclose(f);
  return port;
}

static int server_start(server_t *s) {
  char script[1024], portfile[128];
  snprintf(s->dir, sizeof s->dir, "/tmp/cadre-test-llm-XXXXXX");
  if (!mkdtemp(s->dir))
    return -1;
  snprintf(portfile, sizeof portfile, "%s/port", s->dir);
  server_script_path(script, sizeof script);
  s->pid = fork();
  if (s->pid < 0)
    return -1;
  if (s->pid == 0) {
    FILE *devnull = freopen("/dev/null", "w", stdout);
    (void)devnull;
    execlp("python3", "python3", script, "--port", "0", "--port-file", portfile, (char *)NULL);
    _exit(127);
  }
  long deadline = now_ms() + 15000;
  while (now_ms() < deadline) {
    s->port = read_port_file(portfile);
    if (s->port > 0)
      break;
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      fprintf(stderr, "model server %s exited early\n", script);
      s->pid = 0;
      return -1;
    }
    sleep_ms(20);
  }
  if (s->port <= 0)
    return -1;
  snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
  return 0;
}

static void server_stop(server_t *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
  }
  char path[160];
  snprintf(path, sizeof path, "%s/port", s->dir);
  unlink(path);
  rmdir(s->dir);
}

typedef struct {
  char *data;
  size_t len;
} buf_t;

static size_t buf_write(char *p, size_t size, size_t n, void *ud) {
  buf_t *b = ud;
  char *q = realloc(b->data, b->len + size * n + 1);
  if (!q)
    return 0;
  memcpy(q + b->len, p, size * n);
  b->len += size * n;
  q[b->len] = '\0';
  b->data = q;
  return size * n;
}

/* A control request to the test server; returns the parsed JSON answer. */
static json_t *ctl(const server_t *s, const char *path, const char *body) {
  char url[256];
  snprintf(url, sizeof url, "%s%s", s->base, path);
  CURL *h = curl_easy_init();
  buf_t b = {0};
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, buf_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  if (body)
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_cleanup(h);
  json_t *j = rc == CURLE_OK && b.data ? json_loads(b.data, 0, NULL) : NULL;
  free(b.data);
  return j;
}

/* Resets the server and sets its script. */
static void script(const server_t *s, const char *json_script) {
  json_decref(ctl(s, "/_reset", "{}"));
  json_t *r = ctl(s, "/_script", json_script);
  assert_non_null(r);
  assert_true(json_is_true(json_object_get(r, "ok")));
  json_decref(r);
}

/* The recorded requests (a new reference to the array). */
static json_t *requests(const server_t *s) {
  json_t *r = ctl(s, "/_requests", NULL);
  assert_non_null(r);
  json_t *a = json_incref(json_object_get(r, "requests"));
  json_decref(r);
  return a;
}

typedef struct {
  char text[8192];
  size_t tlen;
  int n_text;
  char thinking[8192];
  size_t klen;
  int n_thinking;
  int n_retry;
  long last_wait;
  char last_reason[512];
} collect_t;

static void on_text(void *ud, const char *s, size_t n) {
  collect_t *c = ud;
  if (c->tlen + n < sizeof c->text)
    memcpy(c->text + c->tlen, s, n), c->tlen += n;
  c->n_text++;
}

static void on_thinking(void *ud, const char *s, size_t n) {
  collect_t *c = ud;
  if (c->klen + n < sizeof c->thinking)
    memcpy(c->thinking + c->klen, s, n), c->klen += n;
  c->n_thinking++;
}

static void on_retry(void *ud, int next_try, const char *reason, long wait_ms) {
  collect_t *c = ud;
  (void)next_try;
  c->n_retry++;
  c->last_wait = wait_ms;
  snprintf(c->last_reason, sizeof c->last_reason, "%s", reason);
}

static json_t *profile(const server_t *s, const char *provider, const char *path, bool stream) {
  char url[160];
  snprintf(url, sizeof url, "%s%s", s->base, path);
  return json_pack("{s:s, s:s, s:s, s:f, s:i, s:b}", "provider", provider, "url", url, "model", "test-model",
                   "temperature", 0.25, "max_tokens", 123, "stream", stream);
}

static json_t *messages(const char *user) {
  return json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", "You are a test.", "role", "user",
                   "content", user);
}

static llm_call_t mkcall(const json_t *prof, const json_t *msgs, collect_t *col) {
  llm_call_t c = {.profile = prof,
                  .messages = msgs,
                  .connect_timeout_ms = 2000,
                  .stall_timeout_ms = 10000,
                  .max_tries = 3,
                  .backoff_base_ms = 20,
                  .retry_after_cap_ms = 5000,
                  .cb = {on_text, on_thinking},
                  .ud = col,
                  .on_retry = on_retry};
  return c;
}

/* out.code == want; on a mismatch the detail is shown too. */
#define assert_code(out, want)                                  \
  do {                                                          \
    if (strcmp((out).code, (want)) != 0)                        \
      print_message("code %s: %s\n", (out).code, (out).detail); \
    assert_string_equal((out).code, (want));                    \
  } while (0)

/* llm_run succeeded; otherwise the code and detail are shown. */
#define assert_run_ok(call, out)                                \
  do {                                                          \
    int rc_ = llm_run(&(call), &(out));                         \
    if (rc_ != 0)                                               \
      print_message("code %s: %s\n", (out).code, (out).detail); \
    assert_int_equal(rc_, 0);                                   \
  } while (0)

static const char *req_header(json_t *req, const char *name) {
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(req, "headers"), k, v) {
    if (strcasecmp(k, name) == 0)
      return json_string_value(v);
  }
  return NULL;
}

static int setup_server(void **state) {
  server_t *srv = calloc(1, sizeof *srv);
  if (!srv || server_start(srv) != 0) {
    if (srv)
      server_stop(srv);
    free(srv);
    return -1;
  }
  *state = srv;
  return 0;
}

static int teardown_server(void **state) {
  server_stop(*state);
  free(*state);
  return 0;
}

/* ---- llm_endpoint / llm_build_body -------------------------------------- */

static void check_endpoint(const char *provider, const char *url, const char *want, bool want_native) {
  json_t *p = json_pack("{s:s, s:s}", "provider", provider, "url", url);
  bool native = !want_native;
  char *got = llm_endpoint(p, &native);
  assert_non_null(got);
  assert_string_equal(got, want);
  assert_int_equal(native, want_native);
  free(got);
  json_decref(p);
}

static void test_endpoint(void **state) {
  (void)state;
  check_endpoint("ollama", "http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions", false);
  check_endpoint("ollama", "http://localhost:11434/v1/", "http://localhost:11434/v1/chat/completions", false);
  check_endpoint("lm_studio", "http://localhost:1234/v1//", "http://localhost:1234/v1/chat/completions", false);
  check_endpoint("openai", "https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/chat/completions",
                 false);
  check_endpoint("vllm", "http://gpu:8000", "http://gpu:8000/chat/completions", false);
  check_endpoint("ollama", "http://localhost:11434", "http://localhost:11434/api/chat", true);
  check_endpoint("ollama", "http://localhost:11434/", "http://localhost:11434/api/chat", true);
  check_endpoint("ollama", "http://localhost:11434/api", "http://localhost:11434/api/chat", true);
  check_endpoint("ollama", "http://localhost:11434/api/chat", "http://localhost:11434/api/chat", true);
  check_endpoint("openai", "https://x.azure.com/openai/deployments/d?api-version=2024-10-21",
                 "https://x.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21", false);
  json_t *bad = json_pack("{s:s}", "provider", "openai");
  assert_null(llm_endpoint(bad, NULL));
  json_object_set_new(bad, "url", json_string("  /"));
  assert_null(llm_endpoint(bad, NULL));
  json_decref(bad);
}

static const char *max_field(const char *provider, const char *model, const char *field) {
  json_t *p =
      json_pack("{s:s, s:s, s:s, s:i}", "provider", provider, "url", "http://h/v1", "model", model, "max_tokens", 50);
  if (field)
    json_object_set_new(p, "max_tokens_field", json_string(field));
  json_t *m = messages("hi");
  json_t *b = llm_build_body(p, m, NULL, false);
  const char *got = json_object_get(b, "max_completion_tokens") ? "max_completion_tokens"
                    : json_object_get(b, "max_tokens")          ? "max_tokens"
                                                                : "none";
  if (json_object_get(b, "max_completion_tokens") && json_object_get(b, "max_tokens"))
    got = "both";
  json_decref(b);
  json_decref(m);
  json_decref(p);
  return got;
}

static void test_build_body_max_tokens(void **state) {
  (void)state;
  assert_string_equal(max_field("openai", "gpt-4o", NULL), "max_tokens");
  assert_string_equal(max_field("openai", "o1-mini", NULL), "max_completion_tokens");
  assert_string_equal(max_field("openai", "o3", NULL), "max_completion_tokens");
  assert_string_equal(max_field("openai", "o4-mini", NULL), "max_completion_tokens");
  assert_string_equal(max_field("openai", "gpt-5-nano", NULL), "max_completion_tokens");
  assert_string_equal(max_field("ollama", "gpt-5-nano", NULL), "max_tokens");
  assert_string_equal(max_field("vllm", "qwen3", "max_completion_tokens"), "max_completion_tokens");
  assert_string_equal(max_field("openai", "o3", "max_tokens"), "max_tokens");
}

static void test_build_body_shapes(void **state) {
  (void)state;
  json_t *p = json_pack("{s:s, s:s, s:s, s:f, s:i, s:b}", "provider", "ollama", "url", "http://h:11434", "model",
                        "qwen3", "temperature", 0.5, "max_tokens", 77, "stream", 1);
  json_t *m =
      json_pack("[{s:s,s:s},{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}}]},{s:s,s:s,s:s}]", "role", "user", "content",
                "list files", "role", "assistant", "content", "tool_calls", "id", "c1", "type", "function", "function",
                "name", "ls", "arguments", "{\"path\":\".\"}", "role", "tool", "tool_call_id", "c1", "content", "a b");
  json_t *tools = json_pack("[{s:s, s:{s:s}}]", "type", "function", "function", "name", "ls");
  /* OpenAI route */
  json_t *b = llm_build_body(p, m, tools, false);
  assert_string_equal(json_string_value(json_object_get(b, "model")), "qwen3");
  assert_true(json_is_true(json_object_get(b, "stream")));
  assert_true(json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
  assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 77);
  assert_true(json_number_value(json_object_get(b, "temperature")) == 0.5);
  assert_int_equal(json_array_size(json_object_get(b, "tools")), 1);
  assert_true(json_equal(json_object_get(b, "messages"), m));
  json_decref(b);
  /* Ollama native: options, arguments as objects, null content as "" */
  b = llm_build_body(p, m, tools, true);
  assert_null(json_object_get(b, "stream_options"));
  assert_null(json_object_get(b, "max_tokens"));
  json_t *opt = json_object_get(b, "options");
  assert_int_equal(json_integer_value(json_object_get(opt, "num_predict")), 77);
  assert_true(json_number_value(json_object_get(opt, "temperature")) == 0.5);
  json_t *asst = json_array_get(json_object_get(b, "messages"), 1);
  assert_string_equal(json_string_value(json_object_get(asst, "content")), "");
  json_t *args =
      json_object_get(json_object_get(json_array_get(json_object_get(asst, "tool_calls"), 0), "function"), "arguments");
  assert_true(json_is_object(args));
  assert_string_equal(json_string_value(json_object_get(args, "path")), ".");
  /* the caller's messages are untouched */
  assert_true(json_is_string(json_object_get(
      json_object_get(json_array_get(json_object_get(json_array_get(m, 1), "tool_calls"), 0), "function"),
      "arguments")));
  json_decref(b);
  /* stream:false: no stream_options */
  json_object_set_new(p, "stream", json_false());
  b = llm_build_body(p, m, NULL, false);
  assert_true(json_is_false(json_object_get(b, "stream")));
  assert_null(json_object_get(b, "stream_options"));
  assert_null(json_object_get(b, "tools"));
  json_decref(b);
  json_decref(tools);
  json_decref(m);
  json_decref(p);
}

/* ---- llm_run against the scripted server -------------------------------- */

static void test_stream_basic(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"The quick brown fox jumps\","
            "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":5,\"total_tokens\":16}}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hello");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_true(out.ok);
  assert_int_equal(out.tries, 1);
  assert_int_equal(out.http_status, 200);
  assert_true(col.n_text > 1);
  assert_string_equal(col.text, "The quick brown fox jumps");
  assert_string_equal(out.result.text, "The quick brown fox jumps");
  assert_string_equal(out.result.finish_reason, "stop");
  assert_true(out.result.has_usage);
  assert_false(out.usage_counted);
  assert_int_equal(out.result.prompt_tokens, 11);
  assert_int_equal(out.result.completion_tokens, 5);
  assert_int_equal(out.result.total_tokens, 16);
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  assert_int_equal(json_array_size(reqs), 1);
  json_t *r = json_array_get(reqs, 0), *body = json_object_get(r, "body");
  assert_string_equal(json_string_value(json_object_get(r, "path")), "/v1/chat/completions");
  assert_string_equal(json_string_value(json_object_get(body, "model")), "test-model");
  assert_true(json_number_value(json_object_get(body, "temperature")) == 0.25);
  assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")), 123);
  assert_true(json_is_true(json_object_get(body, "stream")));
  assert_true(json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage")));
  assert_true(json_equal(json_object_get(body, "messages"), m));
  assert_non_null(strstr(req_header(r, "Accept"), "text/event-stream"));
  assert_string_equal(req_header(r, "Content-Type"), "application/json");
  assert_null(req_header(r, "Authorization"));
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void test_non_streamed(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"Whole answer at once.\"}]}");
  json_t *p = profile(s, "lm_studio", "/v1", false), *m = messages("hello");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_string_equal(out.result.text, "Whole answer at once.");
  assert_string_equal(col.text, "Whole answer at once."); /* callbacks still see it */
  assert_true(out.result.has_usage);
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  json_t *body = json_object_get(json_array_get(reqs, 0), "body");
  assert_true(json_is_false(json_object_get(body, "stream")));
  assert_null(json_object_get(body, "stream_options"));
  assert_string_equal(req_header(json_array_get(reqs, 0), "Accept"), "application/json");
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void test_stream_answered_with_json(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"I ignore stream.\",\"stream\":false}]}");
  json_t *p = profile(s, "vllm", "/v1", true), *m = messages("hello");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_string_equal(out.result.text, "I ignore stream.");
  assert_string_equal(col.text, "I ignore stream.");
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_ollama_native(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"thinking\":\"Let me think about it\",\"text\":\"The answer is 4.\","
            "\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":9}}]}");
  json_t *p = profile(s, "ollama", "", true), *m = messages("2+2?");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_string_equal(out.result.text, "The answer is 4.");
  assert_string_equal(out.result.thinking, "Let me think about it");
  assert_string_equal(col.text, "The answer is 4.");
  assert_string_equal(col.thinking, "Let me think about it");
  assert_true(col.n_text > 1 && col.n_thinking > 1);
  assert_true(out.result.has_usage);
  assert_int_equal(out.result.prompt_tokens, 21);
  assert_int_equal(out.result.completion_tokens, 9);
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  json_t *r = json_array_get(reqs, 0), *body = json_object_get(r, "body");
  assert_string_equal(json_string_value(json_object_get(r, "path")), "/api/chat");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(body, "options"), "num_predict")), 123);
  assert_null(json_object_get(body, "max_tokens"));
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void test_reasoning_content(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"thinking\":\"First I consider the fox.\",\"text\":\"Fox.\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("animal?");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_string_equal(out.result.thinking, "First I consider the fox.");
  assert_string_equal(out.result.text, "Fox.");
  assert_string_equal(col.thinking, "First I consider the fox.");
  assert_string_equal(col.text, "Fox.");
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_usage_counted(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"twelve chars\",\"send_usage\":false}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("count me");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_true(out.usage_counted);
  assert_true(out.result.has_usage);
  assert_int_equal(out.result.completion_tokens, 3); /* 12 bytes / 4 */
  assert_true(out.result.prompt_tokens > 10);        /* the request is > 40 bytes */
  assert_int_equal(out.result.total_tokens, out.result.prompt_tokens + out.result.completion_tokens);
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_retry_after_honoured(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"status\":429,\"retry_after\":\"1\"},{\"text\":\"ok now\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_int_equal(out.tries, 2);
  assert_string_equal(out.result.text, "ok now");
  assert_int_equal(col.n_retry, 1);
  assert_int_equal(col.last_wait, 1000);
  assert_non_null(strstr(col.last_reason, "429"));
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  assert_int_equal(json_array_size(reqs), 2);
  double t0 = json_real_value(json_object_get(json_array_get(reqs, 0), "t_start"));
  double t1 = json_real_value(json_object_get(json_array_get(reqs, 1), "t_start"));
  assert_true(t1 - t0 >= 0.9);
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void test_retry_after_over_cap(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"status\":503,\"retry_after\":\"120\"},{\"text\":\"never\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col); /* cap 5 s */
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_int_equal(out.tries, 1);
  assert_code(out, "http_503");
  assert_true(out.retryable);
  assert_non_null(strstr(out.detail, "120 s"));
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_quota_not_retried(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"status\":429,\"error_body\":{\"error\":{\"message\":\"You exceeded your current "
            "quota, please check your plan and billing details.\",\"type\":\"insufficient_quota\","
            "\"code\":\"insufficient_quota\"}}},{\"text\":\"never\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_int_equal(out.tries, 1);
  assert_int_equal(col.n_retry, 0);
  assert_code(out, "http_429");
  assert_int_equal(out.http_status, 429);
  assert_false(out.retryable);
  assert_non_null(strstr(out.detail, "exceeded your current quota"));
  assert_non_null(strstr(out.detail, "insufficient_quota"));
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_500_three_times(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"status\":500},{\"status\":500},{\"status\":500},{\"text\":\"never\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_int_equal(out.tries, 3);
  assert_int_equal(col.n_retry, 2);
  assert_code(out, "http_500");
  assert_true(out.retryable);
  assert_non_null(strstr(out.detail, "500"));
  assert_non_null(strstr(out.detail, "scripted error 500"));
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  assert_int_equal(json_array_size(reqs), 3);
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void check_4xx(server_t *s, int status, const char *error_body, const char *want) {
  char sc[1024];
  snprintf(sc, sizeof sc, "{\"responses\":[{\"status\":%d,\"error_body\":%s},{\"text\":\"never\"}]}", status,
           error_body);
  script(s, sc);
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  call.api_key = TEST_KEY;
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_int_equal(out.tries, 1);
  assert_int_equal(out.http_status, status);
  assert_false(out.retryable);
  char code[16];
  snprintf(code, sizeof code, "http_%d", status);
  assert_code(out, code);
  assert_non_null(strstr(out.detail, want));
  assert_null(strstr(out.detail, TEST_KEY));
  assert_null(strstr(out.detail, "0123456789abcdef"));
  assert_null(strstr(out.detail, "sk-test")); /* not even a cut-off piece of it */
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_4xx_not_retried(void **state) {
  server_t *s = *state;
  check_4xx(s, 400, "{\"error\":{\"message\":\"messages must not be empty\",\"type\":\"invalid_request_error\"}}",
            "model server answered 400: messages must not be empty");
  /* a server that echoes the key: it must not reach the detail */
  check_4xx(s, 401,
            "{\"error\":{\"message\":\"Incorrect API key provided: " TEST_KEY "\",\"code\":\"invalid_api_key\"}}",
            "Incorrect API key provided: ***");
  /* ... even where the message is cut to fit the detail */
  char longmsg[512];
  snprintf(longmsg, sizeof longmsg, "{\"error\":{\"message\":\"%0280d " TEST_KEY " tail\"}}", 0);
  check_4xx(s, 403, longmsg, "model server answered 403: 0000");
  check_4xx(s, 404, "{\"error\":\"model 'test-model' not found\"}",
            "model server answered 404: model 'test-model' not found");
  check_4xx(s, 422, "{\"object\":\"error\",\"message\":\"bad temperature\",\"code\":422}", "bad temperature");
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_connection_refused(void **state) {
  (void)state;
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", free_port());
  json_t *p = json_pack("{s:s, s:s, s:s}", "provider", "openai", "url", url, "model", "m"), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_int_equal(out.tries, 3);
  assert_int_equal(col.n_retry, 2);
  assert_code(out, "connect");
  assert_true(out.retryable);
  assert_int_equal(out.http_status, 0);
  assert_non_null(strstr(out.detail, "127.0.0.1"));
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_cut_mid_stream(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"one two three four five\",\"cut_after\":2},{\"text\":\"never\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_code(out, "cut");
  assert_int_equal(out.tries, 1);
  assert_int_equal(col.n_retry, 0);
  assert_true(out.retryable);
  assert_string_equal(col.text, "one two ");
  assert_non_null(strstr(out.detail, "mid-stream"));
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  assert_int_equal(json_array_size(reqs), 1);
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

/* ---- connections kept between calls (llm_conns_t) ------------------------ */

typedef struct {
  const char *response; /* one scripted response (JSON), or NULL: the end */
  bool ok;
  long new_connections; /* connections the call opened */
  const char *text;     /* the text that must have arrived, or NULL */
} conn_step_t;

static const struct {
  const char *name;
  bool keep; /* the calls share an llm_conns_t */
  conn_step_t calls[4];
} conn_cases[] = {
    {"kept: the second and third calls reuse the first's connection",
     true,
     {{"{\"text\":\"one\"}", true, 1, NULL},
      {"{\"text\":\"two\"}", true, 0, NULL},
      {"{\"text\":\"three\",\"stream\":false}", true, 0, NULL}}},
    {"not kept: every call connects",
     false,
     {{"{\"text\":\"one\"}", true, 1, NULL}, {"{\"text\":\"two\"}", true, 1, NULL}}},
    {"a connection cut mid-answer is not used again",
     true,
     {{"{\"text\":\"one\"}", true, 1, NULL},
      {"{\"text\":\"a b c d\",\"cut_after\":2}", false, 0, NULL},
      {"{\"text\":\"three\"}", true, 1, NULL}}},
    {"nor one reset",
     true,
     {{"{\"text\":\"a b c d\",\"reset_after\":1}", false, 1, NULL}, {"{\"text\":\"two\"}", true, 1, NULL}}},
    {"after an answer that is no valid JSON (invalid UTF-8), a reset on its kept connection",
     true,
     {{"{\"raw_b64\": "
       "\"ZGF0YTogeyJjaG9pY2VzIjpbeyJpbmRleCI6MCwiZGVsdGEiOnsiY29udGVudCI6Im9rIP/"
       "+IGJhZCJ9fV19CgpkYXRhOiB7ImNob2ljZXMiOlt7ImluZGV4IjowLCJkZWx0YSI6e30sImZpbmlzaF9yZWFzb24iOiJzdG9wIn1dfQoKZGF0YT"
       "ogW0RPTkVdCgo=\", \"headers\": {\"Content-Type\": \"text/event-stream\"}}",
       false, 1, NULL},
      {"{\"text\":\"a b c d\",\"reset_after\":2}", false, 0, "a b "}}},
    {"a reset on a kept connection: the pieces sent before it arrive, the next call connects anew",
     true,
     {{"{\"text\":\"one\"}", true, 1, "one"},
      {"{\"text\":\"a b c d\",\"reset_after\":2}", false, 0, "a b "},
      {"{\"text\":\"three\"}", true, 1, "three"}}},
    {"an error status with a body (400) leaves the connection usable",
     true,
     {{"{\"status\":400}", false, 1, NULL},
      {"{\"text\":\"two\"}", true, 0, NULL},
      {"{\"text\":\"three\"}", true, 0, NULL}}},
};

static void test_connections_kept(void **state) {
  server_t *s = *state;
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  for (size_t i = 0; i < sizeof conn_cases / sizeof conn_cases[0]; i++) {
    llm_conns_t *conns = conn_cases[i].keep ? llm_conns_new() : NULL;
    assert_true(!conn_cases[i].keep || conns);
    for (int k = 0; k < 4 && conn_cases[i].calls[k].response; k++) {
      const conn_step_t *c = &conn_cases[i].calls[k];
      char text[1024];
      snprintf(text, sizeof text, "{\"responses\":[%s]}", c->response);
      script(s, text);
      collect_t col = {0};
      llm_call_t call = mkcall(p, m, &col);
      call.max_tries = 1;
      call.conns = conns;
      llm_outcome_t out;
      int rc = llm_run(&call, &out);
      if ((rc == 0) != c->ok || out.new_connections != c->new_connections ||
          (c->text && strcmp(col.text, c->text) != 0))
        fail_msg("case \"%s\", call %d: %s (%s), %ld new connections, text \"%s\"; want %s, %ld, \"%s\"",
                 conn_cases[i].name, k + 1, rc == 0 ? "ok" : out.code, out.detail, out.new_connections, col.text,
                 c->ok ? "ok" : "a failure", c->new_connections, c->text ? c->text : "(any)");
      llm_outcome_free(&out);
    }
    llm_conns_destroy(&conns);
    assert_null(conns);
    llm_conns_destroy(&conns); /* safe twice */
  }
  json_decref(p);
  json_decref(m);
}

static void test_error_in_stream(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"partial\",\"error_in_stream\":{\"message\":\"tool call failed to parse\","
            "\"type\":\"invalid_request_error\",\"code\":\"tool_use_failed\"}}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_code(out, "model_error");
  assert_int_equal(out.tries, 1);
  assert_non_null(strstr(out.detail, "tool call failed to parse"));
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_html_page(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"raw\":\"<html><body>Login required</body></html>\","
            "\"headers\":{\"Content-Type\":\"text/html\"}}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_code(out, "bad_response");
  assert_non_null(strstr(out.detail, "HTML"));
  assert_int_equal(col.tlen, 0);
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_stalled_stream(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"hang\":true},{\"text\":\"never\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  call.stall_timeout_ms = 1500;
  llm_outcome_t out;
  long t0 = now_ms();
  assert_int_equal(llm_run(&call, &out), -1);
  long took = now_ms() - t0;
  assert_code(out, "stalled");
  assert_int_equal(out.tries, 1);
  assert_true(out.retryable);
  assert_true(took >= 1400);
  assert_true(took < 3000);
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

/* Answers that never finish, or finish short: what llm_run makes of them. */
typedef struct {
  const char *name;
  const char *provider, *path; /* the profile's (openai /v1, or ollama native) */
  const char *script;          /* the model server's responses */
  long stall_ms, deadline_ms;  /* the call's stall timeout and deadline (0: none) */
  const char *code;            /* NULL: the call succeeds */
  const char *in_detail;       /* text the detail must hold */
  int tries;
  long min_ms, max_ms; /* how long the call may take */
} slow_case_t;

static const slow_case_t slow_cases[] = {
    {"headers then silence: the deadline fires before the stall timer", "openai", "/v1", "[{\"hang\":true}]", 10000,
     1000, "timeout", "deadline of 1 s", 1, 900, 3000},
    {"keep-alive comments are no progress: stalled", "openai", "/v1", "[{\"forever\":\"ping\",\"every_ms\":100}]", 1000,
     0, "stalled", "no progress", 1, 900, 3000},
    {"empty events are no progress: stalled", "openai", "/v1", "[{\"forever\":\"empty\",\"every_ms\":100}]", 1000, 0,
     "stalled", "no progress", 1, 900, 3000},
    {"header lines forever are no progress: stalled", "openai", "/v1", "[{\"forever\":\"headers\",\"every_ms\":100}]",
     1000, 0, "stalled", "no progress", 1, 900, 3000},
    {"header lines forever: the deadline", "openai", "/v1", "[{\"forever\":\"headers\",\"every_ms\":100}]", 10000, 1000,
     "timeout", "deadline", 1, 900, 3000},
    {"comments forever: the deadline", "openai", "/v1", "[{\"forever\":\"ping\",\"every_ms\":100}]", 10000, 1000,
     "timeout", "--turn-timeout", 1, 900, 3000},
    {"a slow trickle of deltas: the deadline", "openai", "/v1", "[{\"forever\":\"trickle\",\"every_ms\":100}]", 10000,
     1000, "timeout", "deadline", 1, 900, 3000},
    {"a slow answer within the deadline succeeds", "openai", "/v1", "[{\"text\":\"a b c\",\"delay_ms\":100}]", 10000,
     5000, NULL, NULL, 1, 0, 5000},
    {"no [DONE] and no finish reason after text: cut short, not retried", "openai", "/v1",
     "[{\"text\":\"half an\",\"omit_done\":true,\"omit_finish\":true},{\"text\":\"never\"}]", 10000, 0, "cut",
     "cut short", 1, 0, 5000},
    {"a finish reason without [DONE] is complete", "openai", "/v1", "[{\"text\":\"all here\",\"omit_done\":true}]",
     10000, 0, NULL, NULL, 1, 0, 5000},
    {"[DONE] without a finish reason is complete", "openai", "/v1", "[{\"text\":\"all here\",\"omit_finish\":true}]",
     10000, 0, NULL, NULL, 1, 0, 5000},
    {"a tool call cut short before any text is retried", "openai", "/v1",
     "[{\"tool_calls\":[{\"name\":\"grep\",\"arguments\":\"{}\"}],\"omit_done\":true,\"omit_finish\":true},"
     "{\"text\":\"second try\"}]",
     10000, 0, NULL, NULL, 2, 0, 5000},
    {"Ollama without done: true: cut short", "ollama", "", "[{\"text\":\"half an\",\"omit_done\":true}]", 10000, 0,
     "cut", "done: true", 1, 0, 5000},
};

static void test_slow_and_short_answers(void **state) {
  server_t *s = *state;
  for (size_t i = 0; i < sizeof slow_cases / sizeof slow_cases[0]; i++) {
    const slow_case_t *k = &slow_cases[i];
    print_message("case: %s\n", k->name);
    char sc[512];
    snprintf(sc, sizeof sc, "{\"responses\":%s}", k->script);
    script(s, sc);
    json_t *p = profile(s, k->provider, k->path, true), *m = messages("hi");
    collect_t col = {0};
    llm_call_t call = mkcall(p, m, &col);
    call.stall_timeout_ms = k->stall_ms;
    call.deadline_ms = k->deadline_ms;
    llm_outcome_t out;
    long t0 = now_ms();
    int rc = llm_run(&call, &out);
    long took = now_ms() - t0;
    if (k->code) {
      assert_int_equal(rc, -1);
      assert_code(out, k->code);
      if (!strstr(out.detail, k->in_detail))
        print_message("detail: %s\n", out.detail);
      assert_non_null(strstr(out.detail, k->in_detail));
    } else {
      if (rc != 0)
        print_message("code %s: %s\n", out.code, out.detail);
      assert_int_equal(rc, 0);
    }
    assert_int_equal(out.tries, k->tries);
    assert_true(took >= k->min_ms);
    assert_true(took < k->max_ms);
    llm_outcome_free(&out);
    json_decref(p);
    json_decref(m);
  }
}

static void test_first_byte_timeout_retried(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"hang_before_headers\":true},{\"text\":\"second try works\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  call.first_byte_timeout_ms = 600;
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_int_equal(out.tries, 2);
  assert_int_equal(col.n_retry, 1);
  assert_non_null(strstr(col.last_reason, "600 ms"));
  assert_string_equal(out.result.text, "second try works");
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

typedef struct {
  server_t *s;
  atomic_bool *flag;
  long delay_ms;
  long set_at;
} canceller_t;

/* Waits until the server has seen the request, then after delay_ms sets the flag. */
static void *canceller(void *arg) {
  canceller_t *c = arg;
  long deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    json_t *reqs = requests(c->s);
    size_t n = json_array_size(reqs);
    json_decref(reqs);
    if (n > 0)
      break;
    sleep_ms(20);
  }
  sleep_ms(c->delay_ms);
  c->set_at = now_ms();
  atomic_store(c->flag, true);
  return NULL;
}

static void run_cancel(server_t *s, const char *sc) {
  script(s, sc);
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  atomic_bool flag = false;
  llm_call_t call = mkcall(p, m, &col);
  call.stall_timeout_ms = 60000;
  call.retry_after_cap_ms = 60000;
  call.cancel = &flag;
  canceller_t c = {s, &flag, 300, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, canceller, &c), 0);
  llm_outcome_t out;
  int rc = llm_run(&call, &out);
  long returned = now_ms();
  pthread_join(th, NULL);
  assert_int_equal(rc, -1);
  assert_true(out.cancelled);
  assert_code(out, "cancelled");
  assert_false(out.retryable);
  assert_true(c.set_at > 0);
  assert_true(returned - c.set_at < 2000);
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_cancel_hanging_stream(void **state) {
  run_cancel(*state, "{\"responses\":[{\"hang\":true}]}");
}

static void test_cancel_slow_stream(void **state) {
  run_cancel(*state, "{\"responses\":[{\"text\":\"a b c d e f g h i j k l m n o p\",\"delay_ms\":400}]}");
}

static void test_cancel_during_retry_wait(void **state) {
  run_cancel(*state, "{\"responses\":[{\"status\":503,\"retry_after\":\"30\"},{\"text\":\"never\"}]}");
}

static void test_api_key_header(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"text\":\"with key\"},{\"text\":\"without key\"}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  call.api_key = TEST_KEY;
  assert_run_ok(call, out);
  llm_outcome_free(&out);
  call.api_key = "";
  assert_run_ok(call, out);
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  assert_int_equal(json_array_size(reqs), 2);
  json_t *r0 = json_array_get(reqs, 0), *r1 = json_array_get(reqs, 1);
  assert_string_equal(json_string_value(json_object_get(r0, "authorization_sha256")), TEST_KEY_AUTH_SHA256);
  assert_null(req_header(r1, "Authorization"));
  assert_true(json_is_null(json_object_get(r1, "authorization_sha256")));
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void test_tool_calls_streamed(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"tool_calls\":[{\"id\":\"call_a\",\"name\":\"list_files\","
            "\"arguments\":{\"path\":\"src\",\"depth\":2}}],\"send_usage\":false}]}");
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("what is in src?");
  json_t *tools = json_pack("[{s:s, s:{s:s, s:{s:s}}}]", "type", "function", "function", "name", "list_files",
                            "parameters", "type", "object");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  call.tools = tools;
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_int_equal(out.result.n_tool_calls, 1);
  assert_string_equal(out.result.tool_calls[0].name, "list_files");
  assert_string_equal(out.result.tool_calls[0].id, "call_a");
  json_t *args = json_loads(out.result.tool_calls[0].arguments, 0, NULL);
  assert_non_null(args);
  assert_int_equal(json_integer_value(json_object_get(args, "depth")), 2);
  json_decref(args);
  assert_string_equal(out.result.finish_reason, "tool_calls");
  assert_true(out.usage_counted);
  assert_true(out.result.completion_tokens >= 6); /* name + arguments are counted */
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  assert_true(json_equal(json_object_get(json_object_get(json_array_get(reqs, 0), "body"), "tools"), tools));
  json_decref(reqs);
  json_decref(tools);
  json_decref(p);
  json_decref(m);
}

static void test_ollama_not_streamed_tool_call(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"thinking\":\"Need the weather.\",\"tool_calls\":[{\"name\":\"weather\","
            "\"arguments\":{\"city\":\"Oslo\"}}]}]}");
  json_t *p = profile(s, "ollama", "/api", false), *m = messages("weather in Oslo?");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_run_ok(call, out);
  assert_string_equal(out.result.thinking, "Need the weather.");
  assert_string_equal(col.thinking, "Need the weather.");
  assert_int_equal(out.result.n_tool_calls, 1);
  assert_string_equal(out.result.tool_calls[0].name, "weather");
  json_t *args = json_loads(out.result.tool_calls[0].arguments, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(args, "city")), "Oslo");
  json_decref(args);
  llm_outcome_free(&out);
  json_t *reqs = requests(s);
  json_t *r = json_array_get(reqs, 0);
  assert_string_equal(json_string_value(json_object_get(r, "path")), "/api/chat");
  assert_true(json_is_false(json_object_get(json_object_get(r, "body"), "stream")));
  json_decref(reqs);
  json_decref(p);
  json_decref(m);
}

static void test_oversized_line(void **state) {
  server_t *s = *state;
  size_t n = LLM_MAX_LINE + 1024;
  char *sc = malloc(n + 256);
  assert_non_null(sc);
  int k = snprintf(sc, 256, "{\"responses\":[{\"headers\":{\"Content-Type\":\"text/event-stream\"},\"raw\":\"data: ");
  memset(sc + k, 'a', n);
  snprintf(sc + k + n, 256, "\"}]}");
  script(s, sc);
  free(sc);
  json_t *p = profile(s, "openai", "/v1", true), *m = messages("hi");
  collect_t col = {0};
  llm_call_t call = mkcall(p, m, &col);
  llm_outcome_t out;
  assert_int_equal(llm_run(&call, &out), -1);
  assert_code(out, "bad_response");
  assert_int_equal(out.tries, 1);
  assert_non_null(strstr(out.detail, "size cap"));
  llm_outcome_free(&out);
  json_decref(p);
  json_decref(m);
}

static void test_server_match(void **state) {
  server_t *s = *state;
  script(s, "{\"responses\":[{\"match\":\"beta\",\"text\":\"for beta\"},{\"text\":\"for anyone\"}],"
            "\"default\":{\"text\":\"the default\"}}");
  json_t *p = profile(s, "openai", "/v1", true);
  const char *asks[] = {"alpha", "beta", "gamma"};
  const char *want[] = {"for anyone", "for beta", "the default"};
  for (int i = 0; i < 3; i++) {
    json_t *m = messages(asks[i]);
    collect_t col = {0};
    llm_call_t call = mkcall(p, m, &col);
    llm_outcome_t out;
    assert_run_ok(call, out);
    assert_string_equal(out.result.text, want[i]);
    llm_outcome_free(&out);
    json_decref(m);
  }
  json_t *reqs = requests(s);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(reqs, 0), "response_index")), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(reqs, 1), "response_index")), 0);
  assert_true(json_is_null(json_object_get(json_array_get(reqs, 2), "response_index")));
  json_decref(reqs);
  json_decref(p);
}

typedef struct {
  const json_t *profile;
  const char *ask;
  llm_outcome_t out;
  collect_t col;
} par_t;

static void *par_run(void *arg) {
  par_t *a = arg;
  json_t *m = messages(a->ask);
  llm_call_t call = mkcall(a->profile, m, &a->col);
  llm_run(&call, &a->out);
  json_decref(m);
  return NULL;
}

/* Two calls in two threads are in flight together (the server's t_start / t_end show it). */
static void test_concurrent_calls(void **state) {
  server_t *s = *state;
  /* each answer waits until both requests are in; serial calls would time out (5 s) */
  script(s, "{\"responses\":[{\"match\":\"one\",\"text\":\"first answer here\",\"wait_for_requests\":2,"
            "\"wait_timeout_ms\":5000},{\"match\":\"two\",\"text\":\"second answer here\","
            "\"wait_for_requests\":2,\"wait_timeout_ms\":5000}]}");
  json_t *p = profile(s, "openai", "/v1", true);
  par_t a = {.profile = p, .ask = "call one"}, b = {.profile = p, .ask = "call two"};
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, par_run, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, par_run, &b), 0);
  long t0 = now_ms();
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  assert_true(now_ms() - t0 < 4000);
  assert_true(a.out.ok && b.out.ok);
  assert_string_equal(a.col.text, "first answer here");
  assert_string_equal(b.col.text, "second answer here");
  llm_outcome_free(&a.out);
  llm_outcome_free(&b.out);
  json_t *reqs = requests(s);
  assert_int_equal(json_array_size(reqs), 2);
  json_t *r0 = json_array_get(reqs, 0), *r1 = json_array_get(reqs, 1);
  double s0 = json_real_value(json_object_get(r0, "t_start")), e0 = json_real_value(json_object_get(r0, "t_end"));
  double s1 = json_real_value(json_object_get(r1, "t_start")), e1 = json_real_value(json_object_get(r1, "t_end"));
  assert_true(s0 < e1 && s1 < e0);
  json_decref(reqs);
  json_decref(p);
}

/* ---- secrets ------------------------------------------------------------ */

static void write_file(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

static void test_secrets_order(void **state) {
  (void)state;
  char dir[] = "/tmp/cadre-test-secrets-XXXXXX", path[128], err[512];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/secrets.json", dir);
  write_file(path,
             "{\"ollama_api_key\": \"file-ollama\", \"lm_studio_api_key\": null,\n"
             " \"openai_api_key\": \"file-openai\", \"groq_api_key\": \"\"}\n",
             0600);
  setenv("OPENAI_API_KEY", "env-openai", 1);
  setenv("LM_STUDIO_API_KEY", "env-lmstudio", 1);
  setenv("GROQ_API_KEY", "env-groq", 1);
  unsetenv("VLLM_API_KEY");
  secrets_t *sec = secrets_load(path, err, sizeof err);
  assert_non_null(sec);
  assert_null(secrets_warning(sec));
  assert_int_equal(secrets_count(sec), 2);
  assert_string_equal(secrets_key_for(sec, "openai", "profile-key"), "profile-key");
  assert_string_equal(secrets_key_for(sec, "openai", ""), "file-openai");
  assert_string_equal(secrets_key_for(sec, "openai", NULL), "file-openai");
  assert_string_equal(secrets_key_for(sec, "ollama", NULL), "file-ollama");
  assert_string_equal(secrets_key_for(sec, "lm_studio", NULL), "env-lmstudio"); /* null in the file */
  assert_string_equal(secrets_key_for(sec, "LM-Studio", NULL), "env-lmstudio");
  assert_string_equal(secrets_key_for(sec, "groq", NULL), "env-groq"); /* "" in the file */
  assert_null(secrets_key_for(sec, "vllm", NULL));                     /* no cross-provider key */
  setenv("VLLM_API_KEY", "env-vllm", 1);
  assert_string_equal(secrets_key_for(sec, "vllm", NULL), "env-vllm");
  assert_string_equal(secrets_key_for(NULL, "openai", NULL), "env-openai");
  secrets_destroy(&sec);
  assert_null(sec);
  /* a file others can read still loads, with a warning */
  chmod(path, 0644);
  sec = secrets_load(path, err, sizeof err);
  assert_non_null(sec);
  assert_non_null(secrets_warning(sec));
  assert_non_null(strstr(secrets_warning(sec), "chmod 600"));
  secrets_destroy(&sec);
  unsetenv("OPENAI_API_KEY");
  unsetenv("LM_STUDIO_API_KEY");
  unsetenv("GROQ_API_KEY");
  unsetenv("VLLM_API_KEY");
  unlink(path);
  rmdir(dir);
}

static void test_secrets_errors(void **state) {
  (void)state;
  char dir[] = "/tmp/cadre-test-secrets-XXXXXX", path[128], err[512];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/secrets.json", dir);
  errno = 0;
  assert_null(secrets_load(path, err, sizeof err));
  assert_int_equal(errno, ENOENT);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "No such file"));
  write_file(path, "{\n  \"openai_api_key\": \"k\",\n  \"ollama_api_key\" \"x\"\n}\n", 0600);
  assert_null(secrets_load(path, err, sizeof err));
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "line 3"));
  write_file(path, "{\"openai_api_key\": 42}", 0600);
  assert_null(secrets_load(path, err, sizeof err));
  assert_non_null(strstr(err, "openai_api_key"));
  write_file(path, "[\"openai_api_key\"]", 0600);
  assert_null(secrets_load(path, err, sizeof err));
  assert_non_null(strstr(err, "JSON object"));
  secrets_t *empty = secrets_load(NULL, err, sizeof err);
  assert_non_null(empty);
  assert_int_equal(secrets_count(empty), 0);
  secrets_destroy(&empty);
  unlink(path);
  rmdir(dir);
}

/* The context size in what llama.cpp's /props and Ollama's /api/show answer. */
static const struct {
  const char *name, *body;
  int want;
} ctx_cases[] = {
    {"llama.cpp /props", "{\"default_generation_settings\": {\"n_ctx\": 2048}, \"total_slots\": 1}", 2048},
    {"older llama.cpp", "{\"n_ctx\": 4096}", 4096},
    {"ollama num_ctx wins over the trained length",
     "{\"parameters\": \"num_ctx                        8192\\nstop x\", \"model_info\": {\"llama.context_length\": "
     "131072}}",
     8192},
    {"ollama trained length only",
     "{\"model_info\": {\"general.architecture\": \"qwen2\", \"qwen2.context_length\": 32768}}", 32768},
    {"nothing known", "{\"model_info\": {\"general.architecture\": \"x\"}}", 0},
    {"zero n_ctx", "{\"default_generation_settings\": {\"n_ctx\": 0}}", 0},
    {"not an object", "[1, 2]", 0},
};

static void test_ctx_parse(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof ctx_cases / sizeof ctx_cases[0]; i++) {
    json_t *j = json_loads(ctx_cases[i].body, 0, NULL);
    assert_non_null(j);
    int got = llm_ctx_parse(j);
    if (got != ctx_cases[i].want)
      fail_msg("case \"%s\": %d, want %d", ctx_cases[i].name, got, ctx_cases[i].want);
    json_decref(j);
  }
}

/* A configured context is used as is; a server that does not answer gives the default. */
static void test_ctx_configured_or_default(void **state) {
  (void)state;
  llm_ctx_forget(NULL);
  json_t *p = json_pack("{s:s, s:s, s:s, s:i}", "provider", "llamacpp", "url", "http://127.0.0.1:9/v1", "model", "m",
                        "context_tokens", 3000);
  bool from_server = true;
  assert_int_equal(llm_context_tokens(p, NULL, 500, &from_server), 3000);
  assert_false(from_server);
  json_object_del(p, "context_tokens");
  assert_int_equal(llm_context_tokens(p, NULL, 500, &from_server), LLM_CTX_DEFAULT);
  assert_false(from_server);
  json_decref(p);
  llm_ctx_forget(NULL);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  if (llm_global_init() != 0)
    return 1;
  const struct CMUnitTest pure[] = {
      cmocka_unit_test(test_endpoint),
      cmocka_unit_test(test_ctx_parse),
      cmocka_unit_test(test_ctx_configured_or_default),
      cmocka_unit_test(test_build_body_max_tokens),
      cmocka_unit_test(test_build_body_shapes),
      cmocka_unit_test(test_secrets_order),
      cmocka_unit_test(test_secrets_errors),
      cmocka_unit_test(test_connection_refused),
  };
  const struct CMUnitTest served[] = {
      cmocka_unit_test(test_stream_basic),
      cmocka_unit_test(test_connections_kept),
      cmocka_unit_test(test_non_streamed),
      cmocka_unit_test(test_stream_answered_with_json),
      cmocka_unit_test(test_ollama_native),
      cmocka_unit_test(test_reasoning_content),
      cmocka_unit_test(test_usage_counted),
      cmocka_unit_test(test_retry_after_honoured),
      cmocka_unit_test(test_retry_after_over_cap),
      cmocka_unit_test(test_quota_not_retried),
      cmocka_unit_test(test_500_three_times),
      cmocka_unit_test(test_4xx_not_retried),
      cmocka_unit_test(test_cut_mid_stream),
      cmocka_unit_test(test_error_in_stream),
      cmocka_unit_test(test_html_page),
      cmocka_unit_test(test_stalled_stream),
      cmocka_unit_test(test_first_byte_timeout_retried),
      cmocka_unit_test(test_slow_and_short_answers),
      cmocka_unit_test(test_cancel_hanging_stream),
      cmocka_unit_test(test_cancel_slow_stream),
      cmocka_unit_test(test_cancel_during_retry_wait),
      cmocka_unit_test(test_api_key_header),
      cmocka_unit_test(test_tool_calls_streamed),
      cmocka_unit_test(test_ollama_not_streamed_tool_call),
      cmocka_unit_test(test_oversized_line),
      cmocka_unit_test(test_server_match),
      cmocka_unit_test(test_concurrent_calls),
  };
  int failed = cmocka_run_group_tests_name("llm (offline)", pure, NULL, NULL);
  failed += cmocka_run_group_tests_name("llm (scripted server)", served, setup_server, teardown_server);
  llm_global_cleanup();
  return failed ? 1 : 0;
}
