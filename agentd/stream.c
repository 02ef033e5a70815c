#include "stream.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "think.h"

#define INVALID_JSON_MSG "model server sent invalid JSON in stream"

/* Length and capacity of one growing string owned by the result. */
typedef struct {
  size_t len, cap;
} blen_t;

struct llm_stream {
  llm_format_t format;
  llm_stream_cb_t cb;
  void *ud;
  int failed;       /* negative errno once a cap is hit or memory runs out */
  bool at_eof;      /* finishing: a last event or line that is cut off is not an error */
  bool sse_started; /* SSE: a non-blank byte was seen (a '{' first means a JSON body) */
  bool finished;
  llm_result_t r;
  blen_t text_m[LLM_MAX_CHOICES];
  blen_t thinking_m, refusal_m;
  blen_t args_m[LLM_MAX_TOOL_CALLS];
  size_t total;          /* bytes of text + thinking + refusal + arguments */
  unsigned choices_seen; /* bit per choice index */
  think_t *think[LLM_MAX_CHOICES];
  sse_parser_t *sse;
  char *line; /* NDJSON line or JSON body being collected */
  size_t llen, lcap;
};

/* Where the think splitter of one choice sends its pieces. */
typedef struct {
  llm_stream_t *s;
  int choice;
} split_ctx_t;

/* ---- small helpers ----------------------------------------------------- */

static int set_failed(llm_stream_t *s, int rc) {
  if (!s->failed)
    s->failed = rc;
  return s->failed;
}

static int grow_buf(llm_stream_t *s, char **p, size_t *cap, size_t need) {
  if (need <= *cap && *p)
    return 0;
  size_t ncap = *cap ? *cap : 64;
  while (ncap < need)
    ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
  char *n = realloc(*p, ncap);
  if (!n)
    return set_failed(s, -ENOMEM);
  *p = n;
  *cap = ncap;
  return 0;
}

/* Appends to a result string, counting it against LLM_MAX_TEXT. */
static int buf_append(llm_stream_t *s, char **p, blen_t *m, const char *d, size_t n) {
  if (n > LLM_MAX_TEXT - s->total)
    return set_failed(s, -E2BIG);
  if (grow_buf(s, p, &m->cap, m->len + n + 1) < 0)
    return s->failed;
  if (n)
    memcpy(*p + m->len, d, n);
  m->len += n;
  (*p)[m->len] = '\0';
  s->total += n;
  return 0;
}

static int replace_str(llm_stream_t *s, char **p, const char *v, size_t n) {
  char *c = strndup(v, n);
  if (!c)
    return set_failed(s, -ENOMEM);
  free(*p);
  *p = c;
  return 0;
}

/* A JSON string's value when it is a non-empty string, else NULL. */
static const char *nonempty(const json_t *v) {
  return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

static int64_t num_field(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  if (json_is_integer(v))
    return (int64_t)json_integer_value(v);
  if (json_is_real(v) && json_real_value(v) > -9e18 && json_real_value(v) < 9e18)
    return (int64_t)json_real_value(v);
  return 0;
}

/* ---- text, thinking, choices ------------------------------------------- */

static int add_thinking(llm_stream_t *s, const char *d, size_t n) {
  if (!n)
    return 0;
  if (buf_append(s, &s->r.thinking, &s->thinking_m, d, n) < 0)
    return s->failed;
  if (s->cb.on_thinking)
    s->cb.on_thinking(s->ud, d, n);
  return 0;
}

static int add_answer(llm_stream_t *s, int choice, const char *d, size_t n) {
  if (!n)
    return 0;
  if (buf_append(s, &s->r.choice_text[choice], &s->text_m[choice], d, n) < 0)
    return s->failed;
  if (choice != 0)
    return 0;
  s->r.text = s->r.choice_text[0];
  if (s->cb.on_text)
    s->cb.on_text(s->ud, d, n);
  return 0;
}

static int on_split(void *ud, bool thinking, const char *d, size_t n) {
  split_ctx_t *c = ud;
  if (thinking)
    return c->choice == 0 ? add_thinking(c->s, d, n) : 0;
  return add_answer(c->s, c->choice, d, n);
}

/* Notes that a choice index was seen; gives it a text and a think splitter. */
static int mark_choice(llm_stream_t *s, int choice) {
  if (s->choices_seen & (1u << choice))
    return 0;
  if (!s->r.choice_text[choice] && grow_buf(s, &s->r.choice_text[choice], &s->text_m[choice].cap, 1) < 0)
    return s->failed;
  s->r.choice_text[choice][s->text_m[choice].len] = '\0';
  if (!s->think[choice] && !(s->think[choice] = think_new()))
    return set_failed(s, -ENOMEM);
  s->choices_seen |= 1u << choice;
  s->r.n_choices++;
  return 0;
}

/* Answer text of a choice, with inline <think> blocks split out. */
static int add_content(llm_stream_t *s, int choice, const char *d, size_t n) {
  if (mark_choice(s, choice) < 0)
    return s->failed;
  split_ctx_t c = {s, choice};
  return think_feed(s->think[choice], d, n, on_split, &c);
}

static int add_json_content(llm_stream_t *s, int choice, const json_t *v) {
  return add_content(s, choice, json_string_value(v), json_string_length(v));
}

static int add_refusal(llm_stream_t *s, const json_t *v) {
  if (!nonempty(v))
    return 0;
  return buf_append(s, &s->r.refusal, &s->refusal_m, json_string_value(v), json_string_length(v));
}

/* Mistral's thinking part: {"type":"thinking","thinking":[{"type":"text","text":...}]}. */
static int add_thinking_part(llm_stream_t *s, int choice, const json_t *th) {
  if (choice != 0)
    return 0;
  if (json_is_string(th))
    return add_thinking(s, json_string_value(th), json_string_length(th));
  size_t i;
  const json_t *p;
  json_array_foreach(th, i, p) {
    const json_t *t = json_object_get(p, "text");
    if (json_is_string(t) && add_thinking(s, json_string_value(t), json_string_length(t)) < 0)
      return s->failed;
  }
  return 0;
}

/* delta.content / message.content: a string, null, or an array of typed parts. */
static int add_any_content(llm_stream_t *s, int choice, const json_t *c) {
  if (json_is_string(c))
    return add_json_content(s, choice, c);
  size_t i;
  const json_t *p;
  json_array_foreach(c, i, p) {
    const char *type = json_string_value(json_object_get(p, "type"));
    int rc = 0;
    if (type && strcmp(type, "text") == 0 && json_is_string(json_object_get(p, "text")))
      rc = add_json_content(s, choice, json_object_get(p, "text"));
    else if (type && strcmp(type, "thinking") == 0)
      rc = add_thinking_part(s, choice, json_object_get(p, "thinking"));
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* reasoning_content wins over reasoning: some servers send both with the same text. */
static int add_reasoning(llm_stream_t *s, const json_t *d) {
  const json_t *v = json_object_get(d, "reasoning_content");
  if (!nonempty(v))
    v = json_object_get(d, "reasoning");
  if (!nonempty(v))
    return 0;
  return add_thinking(s, json_string_value(v), json_string_length(v));
}

/* ---- tool calls -------------------------------------------------------- */

/* The call a streamed delta continues, or NULL when it starts a new one. */
static llm_tool_call_t *find_call(llm_stream_t *s, int idx, const char *id) {
  size_t n = s->r.n_tool_calls;
  if (n == 0)
    return NULL;
  if (idx < 0) {
    llm_tool_call_t *last = &s->r.tool_calls[n - 1];
    return id && strcmp(id, last->id) != 0 ? NULL : last;
  }
  for (size_t k = n; k-- > 0;) {
    llm_tool_call_t *c = &s->r.tool_calls[k];
    if (c->index != idx)
      continue;
    if (id && c->id[0] && strcmp(id, c->id) != 0)
      return NULL; /* Ollama's OpenAI route reuses index 0 for parallel calls */
    return c;
  }
  return NULL;
}

/* Appends a new call (NULL when the cap is reached or memory runs out). */
static llm_tool_call_t *new_call(llm_stream_t *s, int idx) {
  size_t n = s->r.n_tool_calls;
  if (n >= LLM_MAX_TOOL_CALLS)
    return NULL;
  if (!s->r.tool_calls && !(s->r.tool_calls = calloc(LLM_MAX_TOOL_CALLS, sizeof *s->r.tool_calls))) {
    set_failed(s, -ENOMEM);
    return NULL;
  }
  llm_tool_call_t *c = &s->r.tool_calls[n];
  c->index = idx >= 0 ? idx : (int)n;
  c->id = strdup("");
  c->name = strdup("");
  s->args_m[n] = (blen_t){0, 0};
  if (!c->id || !c->name || grow_buf(s, &c->arguments, &s->args_m[n].cap, 1) < 0) {
    free(c->id);
    free(c->name);
    free(c->arguments);
    *c = (llm_tool_call_t){0};
    set_failed(s, -ENOMEM);
    return NULL;
  }
  c->arguments[0] = '\0';
  s->r.n_tool_calls++;
  return c;
}

static int append_args(llm_stream_t *s, llm_tool_call_t *c, const json_t *a) {
  blen_t *m = &s->args_m[c - s->r.tool_calls];
  if (json_is_string(a))
    return buf_append(s, &c->arguments, m, json_string_value(a), json_string_length(a));
  if (!json_is_object(a) && !json_is_array(a))
    return 0;
  char *txt = json_dumps(a, JSON_COMPACT);
  if (!txt)
    return set_failed(s, -ENOMEM);
  int rc = buf_append(s, &c->arguments, m, txt, strlen(txt));
  free(txt);
  return rc;
}

static int call_index(const json_t *tc, const json_t *fn) {
  const json_t *ji = json_object_get(tc, "index");
  if (!json_is_integer(ji))
    ji = json_object_get(fn, "index"); /* Ollama native puts it in function */
  if (!json_is_integer(ji) || json_integer_value(ji) < 0 || json_integer_value(ji) > INT_MAX)
    return -1;
  return (int)json_integer_value(ji);
}

/* One tool call or tool call delta; whole calls always start a new call. */
static int tool_delta(llm_stream_t *s, const json_t *tc, bool whole) {
  const json_t *fn = json_object_get(tc, "function");
  const char *id = nonempty(json_object_get(tc, "id"));
  int idx = call_index(tc, fn);
  llm_tool_call_t *c = whole ? NULL : find_call(s, idx, id);
  if (!c && !(c = new_call(s, idx)))
    return s->failed; /* 0 when only the cap was reached: extra calls are dropped */
  if (id && replace_str(s, &c->id, id, strlen(id)) < 0)
    return s->failed;
  const json_t *name = json_object_get(fn, "name");
  if (nonempty(name) && replace_str(s, &c->name, json_string_value(name), json_string_length(name)) < 0)
    return s->failed;
  return append_args(s, c, json_object_get(fn, "arguments"));
}

static int tool_calls(llm_stream_t *s, const json_t *arr, bool whole) {
  size_t i;
  const json_t *tc;
  json_array_foreach(arr, i, tc) {
    if (json_is_object(tc) && tool_delta(s, tc, whole) < 0)
      return s->failed;
  }
  return 0;
}

/* ---- errors, usage, finish --------------------------------------------- */

static int set_error(llm_stream_t *s, const char *code, const char *msg, size_t msglen) {
  if (s->r.has_error)
    return 0; /* the first error is the cause; keep it */
  s->r.has_error = true;
  if (code && !(s->r.error_code = strdup(code)))
    return set_failed(s, -ENOMEM);
  if (!(s->r.error_message = strndup(msg, msglen)))
    return set_failed(s, -ENOMEM);
  return 0;
}

static int set_error_msg(llm_stream_t *s, const char *msg) {
  return set_error(s, NULL, msg, strlen(msg));
}

/* An error object {"message","code",...} or a bare string. */
static int json_error(llm_stream_t *s, const json_t *e) {
  if (json_is_string(e))
    return set_error(s, NULL, json_string_value(e), json_string_length(e));
  char code[64] = "";
  const json_t *c = json_object_get(e, "code");
  if (json_is_string(c))
    snprintf(code, sizeof code, "%s", json_string_value(c));
  else if (json_is_integer(c))
    snprintf(code, sizeof code, "%lld", (long long)json_integer_value(c));
  else if (json_is_real(c))
    snprintf(code, sizeof code, "%g", json_real_value(c));
  const json_t *m = json_object_get(e, "message");
  if (json_is_string(m))
    return set_error(s, code[0] ? code : NULL, json_string_value(m), json_string_length(m));
  char *dump = json_dumps(e, JSON_COMPACT);
  int rc = set_error(s, code[0] ? code : NULL, dump ? dump : "model server reported an error",
                     dump ? strlen(dump) : strlen("model server reported an error"));
  free(dump);
  return rc;
}

/* A top-level "error"; with `event: error` the whole object may be the error. */
static int check_error(llm_stream_t *s, const json_t *o, bool error_event) {
  const json_t *e = json_object_get(o, "error");
  if (json_is_object(e) || (json_is_string(e) && json_string_length(e) > 0))
    return json_error(s, e);
  return error_event ? json_error(s, o) : 0;
}

static void set_usage(llm_stream_t *s, int64_t p, int64_t c, int64_t t) {
  s->r.has_usage = true;
  s->r.prompt_tokens = p;
  s->r.completion_tokens = c;
  s->r.total_tokens = t;
}

/* The last non-null usage wins (Perplexity's is cumulative); Groq also has x_groq.usage. */
static void take_usage(llm_stream_t *s, const json_t *o) {
  const json_t *u = json_object_get(o, "usage");
  if (!json_is_object(u))
    u = json_object_get(json_object_get(o, "x_groq"), "usage");
  if (!json_is_object(u))
    return;
  int64_t p = num_field(u, "prompt_tokens"), c = num_field(u, "completion_tokens");
  set_usage(s, p, c, json_object_get(u, "total_tokens") ? num_field(u, "total_tokens") : p + c);
}

static int set_finish(llm_stream_t *s, const json_t *fr) {
  if (!nonempty(fr))
    return 0;
  return replace_str(s, &s->r.finish_reason, json_string_value(fr), json_string_length(fr));
}

/* ---- OpenAI chat completions ------------------------------------------- */

/* choices[].index: 0 when absent; -1 (ignored) when out of range. */
static int choice_index(const json_t *ch) {
  const json_t *v = json_object_get(ch, "index");
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= LLM_MAX_CHOICES)
    return -1;
  return (int)json_integer_value(v);
}

/* One choice: delta (streamed) or message (whole). */
static int openai_choice(llm_stream_t *s, const json_t *ch, bool whole) {
  int idx = choice_index(ch);
  if (idx < 0)
    return 0;
  if (mark_choice(s, idx) < 0)
    return s->failed;
  const json_t *d = json_object_get(ch, whole ? "message" : "delta");
  if (json_is_object(d)) {
    if (idx == 0 && add_reasoning(s, d) < 0) /* reasoning comes before the answer */
      return s->failed;
    if (add_any_content(s, idx, json_object_get(d, "content")) < 0)
      return s->failed;
    if (idx == 0 && (add_refusal(s, json_object_get(d, "refusal")) < 0 ||
                     tool_calls(s, json_object_get(d, "tool_calls"), whole) < 0))
      return s->failed;
  }
  return idx == 0 ? set_finish(s, json_object_get(ch, "finish_reason")) : 0;
}

static int openai_object(llm_stream_t *s, const json_t *o, bool whole, bool error_event) {
  if (check_error(s, o, error_event) < 0)
    return s->failed;
  const char *obj = json_string_value(json_object_get(o, "object"));
  if (obj && strcmp(obj, "chat.completion.done") == 0)
    s->r.done = true;
  take_usage(s, o);
  const json_t *choices = json_object_get(o, "choices");
  size_t i;
  const json_t *ch;
  json_array_foreach(choices, i, ch) {
    if (json_is_object(ch) && openai_choice(s, ch, whole) < 0)
      return s->failed;
  }
  if (whole && json_is_array(choices))
    s->r.done = true;
  return 0;
}

static bool is_done_marker(const char *d, size_t n) {
  while (n && (d[n - 1] == ' ' || d[n - 1] == '\t'))
    n--;
  while (n && (*d == ' ' || *d == '\t'))
    d++, n--;
  return n == 6 && memcmp(d, "[DONE]", 6) == 0;
}

static bool all_space(const char *d, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (d[i] != ' ' && d[i] != '\t' && d[i] != '\r' && d[i] != '\n')
      return false;
  return true;
}

static int on_sse_event(void *ud, const char *event, const char *data, size_t n) {
  llm_stream_t *s = ud;
  bool error_event = strcmp(event, "error") == 0;
  if (all_space(data, n))
    return 0;
  if (is_done_marker(data, n)) {
    s->r.done = true;
    return 0;
  }
  json_t *o = json_loadb(data, n, JSON_ALLOW_NUL, NULL);
  int rc;
  if (json_is_object(o))
    rc = openai_object(s, o, false, error_event);
  else if (error_event)
    rc = set_error(s, NULL, data, n); /* a plain-text error event */
  else if (s->at_eof)
    rc = 0; /* the body was cut inside the last event: done stays false */
  else
    rc = set_error_msg(s, INVALID_JSON_MSG);
  json_decref(o);
  return rc;
}

static int openai_body(llm_stream_t *s) {
  if (all_space(s->line, s->llen))
    return set_error_msg(s, "model server sent an empty response");
  json_t *o = json_loadb(s->line, s->llen, JSON_ALLOW_NUL, NULL);
  int rc = json_is_object(o) ? openai_object(s, o, true, false) : set_error_msg(s, INVALID_JSON_MSG);
  json_decref(o);
  return rc;
}

/* ---- Ollama native /api/chat ------------------------------------------- */

static int read_ollama_message(llm_stream_t *s, const json_t *m) {
  if (mark_choice(s, 0) < 0)
    return s->failed;
  const json_t *c = json_object_get(m, "content"), *th = json_object_get(m, "thinking");
  if (json_is_string(c) && add_json_content(s, 0, c) < 0)
    return s->failed;
  if (json_is_string(th) && add_thinking(s, json_string_value(th), json_string_length(th)) < 0)
    return s->failed;
  return tool_calls(s, json_object_get(m, "tool_calls"), true);
}

static int ollama_object(llm_stream_t *s, const json_t *o) {
  if (check_error(s, o, false) < 0)
    return s->failed;
  const json_t *m = json_object_get(o, "message");
  if (json_is_object(m) && read_ollama_message(s, m) < 0)
    return s->failed;
  if (json_is_true(json_object_get(o, "done")))
    s->r.done = true;
  if (set_finish(s, json_object_get(o, "done_reason")) < 0)
    return s->failed;
  if (json_object_get(o, "prompt_eval_count") || json_object_get(o, "eval_count")) {
    int64_t p = num_field(o, "prompt_eval_count"), c = num_field(o, "eval_count");
    set_usage(s, p, c, p + c);
  }
  return 0;
}

static int ollama_line(llm_stream_t *s, const char *d, size_t n) {
  if (all_space(d, n))
    return 0;
  json_t *o = json_loadb(d, n, JSON_ALLOW_NUL, NULL);
  int rc = 0;
  if (json_is_object(o))
    rc = ollama_object(s, o);
  else if (!s->at_eof)
    rc = set_error_msg(s, INVALID_JSON_MSG); /* a cut-off last line leaves done false */
  json_decref(o);
  return rc;
}

/* ---- body buffering ---------------------------------------------------- */

static int line_append(llm_stream_t *s, const char *d, size_t n) {
  if (n > LLM_MAX_LINE - s->llen)
    return set_failed(s, -E2BIG);
  if (grow_buf(s, &s->line, &s->lcap, s->llen + n + 1) < 0)
    return s->failed;
  memcpy(s->line + s->llen, d, n);
  s->llen += n;
  return 0;
}

/* Splits NDJSON at LF; only the new bytes are scanned. */
static int ndjson_feed(llm_stream_t *s, const char *d, size_t n) {
  size_t i = 0;
  while (i < n) {
    const char *nl = memchr(d + i, '\n', n - i);
    if (!nl)
      return line_append(s, d + i, n - i);
    size_t end = (size_t)(nl - d);
    int rc;
    if (s->llen == 0 && end - i <= LLM_MAX_LINE) {
      rc = ollama_line(s, d + i, end - i);
    } else {
      rc = line_append(s, d + i, end - i);
      if (rc == 0)
        rc = ollama_line(s, s->line, s->llen);
      s->llen = 0;
    }
    if (rc < 0)
      return rc;
    i = end + 1;
  }
  return 0;
}

/* A server that ignored stream:true, or an error page in JSON, sends a plain
 * JSON body where SSE was expected: a '{' before any SSE line switches to it. */
static int sse_or_json_feed(llm_stream_t *s, const char *d, size_t n) {
  if (!s->sse_started) {
    size_t i = 0;
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
      i++;
    if (i < n && d[i] == '{') {
      s->format = LLM_FORMAT_OPENAI_JSON;
      return line_append(s, d + i, n - i);
    }
    s->sse_started = i < n;
  }
  return sse_parser_feed(s->sse, d, n);
}

/* ---- public API -------------------------------------------------------- */

/* New parser for one response body. */
llm_stream_t *llm_stream_new(llm_format_t format, const llm_stream_cb_t *cb, void *ud) {
  llm_stream_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->format = format;
  if (cb)
    s->cb = *cb;
  s->ud = ud;
  bool ok = grow_buf(s, &s->r.choice_text[0], &s->text_m[0].cap, 1) == 0 &&
            grow_buf(s, &s->r.thinking, &s->thinking_m.cap, 1) == 0;
  if (ok && format == LLM_FORMAT_OPENAI_SSE)
    ok = (s->sse = sse_parser_new(on_sse_event, s, LLM_MAX_LINE)) != NULL;
  if (!ok) {
    llm_stream_destroy(&s);
    return NULL;
  }
  s->r.choice_text[0][0] = '\0';
  s->r.thinking[0] = '\0';
  s->r.text = s->r.choice_text[0];
  return s;
}

/* Frees the parser and its result (unless taken); accepts NULL. */
void llm_stream_destroy(llm_stream_t **self_p) {
  if (!self_p || !*self_p)
    return;
  llm_stream_t *s = *self_p;
  llm_result_free(&s->r);
  for (int i = 0; i < LLM_MAX_CHOICES; i++)
    think_destroy(&s->think[i]);
  sse_parser_destroy(&s->sse);
  free(s->line);
  free(s);
  *self_p = NULL;
}

/* Feeds the next piece of the body. */
int llm_stream_feed(llm_stream_t *self, const char *data, size_t len) {
  if (!self || (!data && len))
    return -EINVAL;
  if (self->failed)
    return self->failed;
  if (self->finished)
    return -EINVAL;
  int rc = 0;
  if (self->format == LLM_FORMAT_OPENAI_SSE)
    rc = sse_or_json_feed(self, data, len);
  else if (self->format == LLM_FORMAT_OLLAMA_NDJSON)
    rc = ndjson_feed(self, data, len);
  else
    rc = line_append(self, data, len);
  return rc < 0 ? set_failed(self, rc) : 0;
}

static int flush_splitters(llm_stream_t *s) {
  for (int i = 0; i < LLM_MAX_CHOICES; i++) {
    split_ctx_t c = {s, i};
    if (s->think[i] && think_flush(s->think[i], on_split, &c) < 0)
      return s->failed;
  }
  return 0;
}

/* End of body: handles a last event or line without a terminator. */
int llm_stream_finish(llm_stream_t *self) {
  if (!self)
    return -EINVAL;
  if (self->failed || self->finished)
    return self->failed;
  int rc = 0;
  self->at_eof = true;
  if (self->format == LLM_FORMAT_OPENAI_SSE)
    rc = sse_parser_finish(self->sse);
  else if (self->format == LLM_FORMAT_OLLAMA_NDJSON)
    rc = self->llen ? ollama_line(self, self->line, self->llen) : 0;
  else
    rc = openai_body(self);
  self->llen = 0;
  if (rc == 0)
    rc = flush_splitters(self);
  if (rc < 0)
    return set_failed(self, rc);
  self->finished = true;
  return 0;
}

/* The result so far. */
const llm_result_t *llm_stream_result(const llm_stream_t *self) {
  return self ? &self->r : NULL;
}

/* Moves the result out and leaves an empty one. */
uint64_t llm_stream_progress(const llm_stream_t *self) {
  const llm_result_t *r = &self->r;
  return (uint64_t)self->total + r->n_tool_calls + (r->finish_reason != NULL) + r->has_usage + r->done + r->has_error;
}

void llm_stream_take_result(llm_stream_t *self, llm_result_t *out) {
  if (!self || !out)
    return;
  *out = self->r;
  if (!out->thinking)
    out->thinking = strdup("");
  if (!out->text)
    out->text = out->choice_text[0] = strdup("");
  memset(&self->r, 0, sizeof self->r);
  memset(self->text_m, 0, sizeof self->text_m);
  memset(self->args_m, 0, sizeof self->args_m);
  self->thinking_m = self->refusal_m = (blen_t){0, 0};
  self->total = 0;
  self->choices_seen = 0;
  if (grow_buf(self, &self->r.choice_text[0], &self->text_m[0].cap, 1) == 0 &&
      grow_buf(self, &self->r.thinking, &self->thinking_m.cap, 1) == 0) {
    self->r.choice_text[0][0] = '\0';
    self->r.thinking[0] = '\0';
    self->r.text = self->r.choice_text[0];
  }
}

/* Frees everything a result owns and zeroes it. */
void llm_result_free(llm_result_t *r) {
  if (!r)
    return;
  for (int i = 0; i < LLM_MAX_CHOICES; i++)
    if (r->choice_text[i] != r->text)
      free(r->choice_text[i]);
  free(r->text);
  free(r->thinking);
  free(r->refusal);
  for (size_t i = 0; i < r->n_tool_calls; i++) {
    free(r->tool_calls[i].id);
    free(r->tool_calls[i].name);
    free(r->tool_calls[i].arguments);
  }
  free(r->tool_calls);
  free(r->finish_reason);
  free(r->error_code);
  free(r->error_message);
  memset(r, 0, sizeof *r);
}
