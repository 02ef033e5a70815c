/* render.c: a turn's stream as text (see render.h). */
#include "render.h"

#include <stdlib.h>
#include <string.h>

#include "jx.h"

#define DIM "\033[2m"

const char *render_thinking_mark(bool color) {
  return color ? DIM : "[thinking] ";
}

void render_one_line(sbuf_t *b, const char *s, size_t max) {
  size_t start = b->len;
  bool space = false;
  for (; s && *s && b->len - start < max; s++) {
    bool ws = *s == '\n' || *s == '\r' || *s == '\t' || *s == ' ';
    if (!(ws && space))
      sbuf_add(b, ws ? " " : s, 1);
    space = ws;
  }
  if (!s || !*s)
    return;
  while (b->len > start && ((unsigned char)b->s[b->len - 1] & 0xc0) == 0x80)
    b->len--; /* not in the middle of a character */
  if (b->len > start && (unsigned char)b->s[b->len - 1] >= 0xc0)
    b->len--;
  b->s[b->len] = '\0';
  sbuf_puts(b, "…");
}

void render_call(sbuf_t *b, const json_t *call) {
  const json_t *fn = jx_obj(call, "function");
  const json_t *src = fn ? fn : call;
  sbuf_printf(b, "%s ", jx_str(src, "name", ""));
  render_one_line(b, jx_str(src, "arguments", ""), 240);
}

void render_preview(sbuf_t *b, const char *text, int max_lines, size_t max_bytes) {
  int shown = 0, lines = 0;
  for (const char *p = text; p && *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    bool empty = n == 0 || strspn(p, " \t\r") >= n;
    if (!empty) {
      lines++;
      if (shown < max_lines) {
        char *line = strndup(p, n);
        sbuf_puts(b, "\n  │ ");
        render_one_line(b, line ? line : "", max_bytes);
        free(line);
        shown++;
      }
    }
    p = nl ? nl + 1 : p + n;
  }
  if (lines > shown)
    sbuf_printf(b, "\n  │ … %d more line%s", lines - shown, lines - shown == 1 ? "" : "s");
}

json_t *render_tool_body(const proto_msg_t *m) {
  return proto_msg_call(m);
}

out_style_t render_tool_delta(sbuf_t *b, const proto_msg_t *m) {
  json_t *o = render_tool_body(m);
  out_style_t style = OUT_DIM;
  if (strcmp(m->kind, "tool_call") == 0) {
    sbuf_puts(b, "→ ");
    render_call(b, o);
  } else if (strcmp(m->kind, "tool_result") == 0) {
    bool ok = jx_bool(o, "ok", true);
    sbuf_printf(b, "← %s %s ", ok ? "✓" : "✗", jx_str(o, "name", ""));
    render_one_line(b, jx_str(o, "summary", ""), 240);
    render_preview(b, jx_str(o, "preview", ""), RENDER_PREVIEW_LINES, 160);
    style = ok ? OUT_DIM : OUT_ERROR;
  }
  json_decref(o);
  return style;
}

void render_call_event(sbuf_t *b, const json_t *p) {
  const char *name = jx_str(p, "name", "");
  json_t *args = json_loads(jx_str(p, "arguments", ""), 0, NULL);
  if (strcmp(name, "spawn_agent") == 0 && json_is_object(args))
    sbuf_printf(b, "→ spawn_agent %s: %.300s", jx_str(args, "role", ""), jx_str(args, "task", ""));
  else
    sbuf_printf(b, "→ %s %.300s", name, jx_str(p, "arguments", ""));
  json_decref(args);
}

void render_turn_end(sbuf_t *b, const json_t *p, double seconds) {
  const json_t *u = jx_obj(p, "usage");
  const char *finish = jx_str(p, "finish_reason", "");
  bool odd = finish[0] && strcmp(finish, "stop") != 0 && strcmp(finish, "tool_calls") != 0;
  sbuf_printf(b, "%lld tokens in, %lld out%s · %.2f s · %s on %s%s%s%s", (long long)jx_int(u, "prompt_tokens", 0),
              (long long)jx_int(u, "completion_tokens", 0), jx_bool(u, "counted", false) ? " (estimated)" : "", seconds,
              jx_str(p, "model", ""), jx_str(p, "node", ""),
              strcmp(finish, "tool_calls") == 0 ? " · delegating to sub-agents" : "", odd ? " · finish: " : "",
              odd ? finish : "");
}

out_style_t render_turn_failed(sbuf_t *b, const json_t *p) {
  if (strcmp(jx_str(p, "status", ""), "cancelled") == 0) {
    sbuf_printf(b, "cancelled (%s)", jx_str(p, "detail", "?"));
    return OUT_DIM;
  }
  /* the reason, not the internal code: an HTTP status is worth showing */
  const char *code = jx_str(p, "code", ""), *doc = proto_error_doc_of(code);
  sbuf_printf(b, "failed: %s", jx_str(p, "detail", doc ? doc : "no reason given"));
  if (strncmp(code, "http_", 5) == 0)
    sbuf_printf(b, " (HTTP %s)", code + 5);
  return OUT_ERROR;
}

void render_attempt(sbuf_t *b, long long attempt) {
  sbuf_printf(b, "attempt %lld on another node: the answer starts again", attempt);
}
