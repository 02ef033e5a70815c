/* cmd_replay.c: cadre replay-diff A B — what two recorded runs (cadre-agentd
 * --record) answered, compared request by request: the answer text, the
 * tool calls and the finish reason as the daemon's own parser reads them
 * from the recorded bytes (two streams split differently are the same answer). */
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "jx.h"
#include "stream.h"
#include "util.h"

/* {file name: recording} of a directory's *.json files, or NULL with err. */
static json_t *load_dir(const char *dir, char *err, size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%s: cannot read the directory", dir);
    return NULL;
  }
  json_t *out = json_object();
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
      continue;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    json_t *doc = json_load_file(path, 0, NULL);
    if (json_is_object(doc) && json_object_get(doc, "response"))
      json_object_set_new(out, e->d_name, doc);
    else
      json_decref(doc);
  }
  closedir(d);
  return out;
}

/* The answer a recording holds: {text, thinking, tool_calls, finish_reason, error}. */
static json_t *answer_of(const json_t *rec) {
  const char *b64 = jx_str(rec, "response", "");
  size_t cap = strlen(b64), len = 0;
  unsigned char *body = malloc(cap + 1);
  if (!body || sodium_base642bin(body, cap + 1, b64, cap, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
    free(body);
    return json_pack("{s:s}", "error", "the response is not base64");
  }
  const char *ctype = jx_str(rec, "content_type", "");
  llm_format_t f = json_is_true(json_object_get(rec, "native")) ? LLM_FORMAT_OLLAMA_NDJSON
                   : strstr(ctype, "event-stream")              ? LLM_FORMAT_OPENAI_SSE
                                                                : LLM_FORMAT_OPENAI_JSON;
  llm_stream_cb_t cb = {0};
  llm_stream_t *st = llm_stream_new(f, &cb, NULL);
  int rc = st ? llm_stream_feed(st, (const char *)body, len) : -1;
  if (rc == 0)
    llm_stream_finish(st);
  const llm_result_t *r = st ? llm_stream_result(st) : NULL;
  json_t *calls = json_array();
  for (size_t i = 0; r && i < r->n_tool_calls; i++)
    json_array_append_new(calls, json_pack("{s:s, s:s}", "name", r->tool_calls[i].name ? r->tool_calls[i].name : "",
                                           "arguments", r->tool_calls[i].arguments ? r->tool_calls[i].arguments : ""));
  json_t *a = json_pack("{s:s, s:s, s:o, s:s?, s:i}", "text", r && r->text ? r->text : "", "thinking",
                        r && r->thinking ? r->thinking : "", "tool_calls", calls, "finish_reason",
                        r ? r->finish_reason : NULL, "status", (int)jx_int(rec, "status", 0));
  llm_stream_destroy(&st);
  free(body);
  return a;
}

/* The first line where a and b differ, for a person. */
static void first_difference(const char *a, const char *b, char *out, size_t len) {
  size_t line = 1, i = 0;
  while (a[i] && a[i] == b[i]) {
    if (a[i] == '\n')
      line++;
    i++;
  }
  snprintf(out, len, "line %zu: \"%.60s\" / \"%.60s\"", line, a + i, b + i);
}

int cmd_replay_diff(ctl_t *ctl, int argc, char **argv) {
  if (argc != 3) {
    ctl_error(ctl, "usage: cadre replay-diff DIR-A DIR-B (two cadre-agentd --record directories)");
    return 2;
  }
  char err[512];
  json_t *a = load_dir(argv[1], err, sizeof err), *b = a ? load_dir(argv[2], err, sizeof err) : NULL;
  if (!a || !b || sodium_init() < 0) {
    ctl_error(ctl, "%s", err);
    json_decref(a);
    return 1;
  }
  json_t *differ = json_array(), *only_a = json_array(), *only_b = json_array();
  int same = 0;
  const char *name;
  json_t *ra;
  json_object_foreach(a, name, ra) {
    json_t *rb = json_object_get(b, name);
    if (!rb) {
      json_array_append_new(only_a, json_string(name));
      continue;
    }
    json_t *xa = answer_of(ra), *xb = answer_of(rb);
    if (json_equal(xa, xb)) {
      same++;
    } else {
      char where[200];
      char *ta = json_dumps(xa, JSON_INDENT(1) | JSON_SORT_KEYS), *tb = json_dumps(xb, JSON_INDENT(1) | JSON_SORT_KEYS);
      first_difference(ta ? ta : "", tb ? tb : "", where, sizeof where);
      json_array_append_new(differ,
                            json_pack("{s:s, s:s, s:O, s:O}", "recording", name, "where", where, "a", xa, "b", xb));
      free(ta);
      free(tb);
    }
    json_decref(xa);
    json_decref(xb);
  }
  json_t *rb;
  json_object_foreach(b, name, rb) if (!json_object_get(a, name)) json_array_append_new(only_b, json_string(name));
  int rc = json_array_size(differ) || json_array_size(only_a) || json_array_size(only_b) ? 1 : 0;
  if (ctl->json) {
    json_t *o = json_pack("{s:i, s:O, s:O, s:O}", "same", same, "differ", differ, "only_a", only_a, "only_b", only_b);
    ctl_print_json(o);
    json_decref(o);
  } else {
    size_t i;
    json_t *d;
    json_array_foreach(differ, i, d) printf("differs  %s  %s\n", jx_str(d, "recording", ""), jx_str(d, "where", ""));
    json_array_foreach(only_a, i, d) printf("only in %s  %s\n", argv[1], json_string_value(d));
    json_array_foreach(only_b, i, d) printf("only in %s  %s\n", argv[2], json_string_value(d));
    printf("%d the same, %zu differ, %zu only in %s, %zu only in %s\n", same, json_array_size(differ),
           json_array_size(only_a), argv[1], json_array_size(only_b), argv[2]);
  }
  json_decref(differ);
  json_decref(only_a);
  json_decref(only_b);
  json_decref(a);
  json_decref(b);
  return rc;
}
