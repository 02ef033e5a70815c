/* view.c: broker streams and events drawn on an out_t display (see view.h). */
#include "view.h"

#include <stdlib.h>
#include <string.h>

#include "sbuf.h"

struct view {
  out_t *out;
  bool stream, thinking;
  json_t *turns; /* session -> {turn, attempt, text: something was drawn} */
};

view_t *view_new(out_t *out) {
  view_t *v = calloc(1, sizeof *v);
  if (!v)
    return NULL;
  v->out = out;
  v->stream = true;
  v->turns = json_object();
  out_set_live(out, "main");
  return v;
}

void view_free(view_t **self_p) {
  if (!self_p || !*self_p)
    return;
  json_decref((*self_p)->turns);
  free(*self_p);
  *self_p = NULL;
}

void view_set_stream(view_t *v, bool on) {
  v->stream = on;
  out_set_live(v->out, on ? "main" : NULL);
}

bool view_stream(const view_t *v) {
  return v->stream;
}

void view_set_thinking(view_t *v, bool on) {
  v->thinking = on;
}

bool view_thinking(const view_t *v) {
  return v->thinking;
}

static const char *pstr(const json_t *p, const char *key) {
  const char *s = json_string_value(json_object_get(p, key));
  return s ? s : "";
}

static bool is_main(const char *session) {
  return session && strcmp(session, "main") == 0;
}

/* The record of what was drawn of a session's current turn attempt. */
static json_t *turn_rec(view_t *v, const char *session) {
  json_t *r = json_object_get(v->turns, session);
  if (!r) {
    r = json_pack("{s:I, s:I, s:b}", "turn", (json_int_t)0, "attempt", (json_int_t)0, "text", 0);
    json_object_set_new(v->turns, session, r);
  }
  return r;
}

static json_int_t rec_int(const json_t *r, const char *key) {
  return json_integer_value(json_object_get(r, key));
}

void view_delta(view_t *v, const proto_msg_t *m) {
  bool thinking = strcmp(m->kind, "thinking") == 0;
  if (is_main(m->session) && !v->stream)
    return; /* printed whole when the turn is done */
  json_t *r = turn_rec(v, m->session);
  if (rec_int(r, "turn") == m->turn && rec_int(r, "attempt") != m->attempt && rec_int(r, "attempt") != 0) {
    out_end_line(v->out, m->session);
    out_agent_line(v->out, m->session, OUT_DIM, "(attempt %lld on another node: the answer starts again)",
                   (long long)m->attempt);
  }
  json_object_set_new(r, "turn", json_integer(m->turn));
  json_object_set_new(r, "attempt", json_integer(m->attempt));
  if (thinking && !v->thinking)
    return;
  if (!thinking)
    json_object_set_new(r, "text", json_true());
  out_delta(v->out, m->session, thinking, m->text);
}

void view_end_all(view_t *v) {
  const char *key;
  json_t *r;
  json_object_foreach(v->turns, key, r) out_end_line(v->out, key);
}

void view_summary(out_t *o, const char *id, const json_t *summary) {
  const char *status = pstr(summary, "status");
  bool pass = strcmp(status, "PASS") == 0, fail = strcmp(status, "FAIL") == 0;
  const char *mark = pass ? "✓" : fail ? "✗" : "◐";
  out_agent_line(o, id, pass ? OUT_GOOD : fail ? OUT_ERROR : OUT_WARN, "── summary: %s %s ──", mark,
                 status[0] ? status : "?");
  size_t i;
  json_t *kp;
  json_array_foreach(json_object_get(summary, "key_points"), i, kp) {
    if (json_string_value(kp))
      out_agent_line(o, id, OUT_PLAIN, "  • %s", json_string_value(kp));
  }
  const char *rec = pstr(summary, "recommendation");
  if (rec[0])
    out_agent_line(o, id, OUT_PLAIN, "  → Recommendation: %s", rec);
}

/* The whole answer of a turn, when it was not streamed (or streaming is off). */
static void draw_answer(view_t *v, const char *session, const json_t *p, bool streamed) {
  if (streamed)
    return;
  const char *thinking = pstr(p, "thinking");
  if (v->thinking && thinking[0]) {
    out_delta(v->out, session, true, thinking);
    out_end_line(v->out, session);
  }
  const char *content = json_string_value(json_object_get(json_object_get(p, "message"), "content"));
  if (content && content[0]) {
    out_delta(v->out, session, false, content);
    out_end_line(v->out, session);
  }
}

static void on_turn_done(view_t *v, const proto_msg_t *m, const json_t *p) {
  json_t *r = turn_rec(v, m->session);
  bool streamed = rec_int(r, "turn") == m->turn && json_is_true(json_object_get(r, "text")) &&
                  (v->stream || !is_main(m->session));
  out_end_line(v->out, m->session);
  draw_answer(v, m->session, p, streamed);
  json_object_del(v->turns, m->session);
  if (!is_main(m->session))
    return;
  const json_t *u = json_object_get(p, "usage");
  const char *finish = pstr(p, "finish_reason");
  bool odd = finish[0] && strcmp(finish, "stop") != 0 && strcmp(finish, "tool_calls") != 0;
  out_agent_line(v->out, m->session, OUT_DIM, "%lld tokens in, %lld out%s · %.2f s · %s on %s%s%s%s",
                 (long long)json_integer_value(json_object_get(u, "prompt_tokens")),
                 (long long)json_integer_value(json_object_get(u, "completion_tokens")),
                 json_is_true(json_object_get(u, "counted")) ? " (estimated)" : "",
                 (double)json_integer_value(json_object_get(p, "elapsed_ms")) / 1000.0, pstr(p, "model"),
                 pstr(p, "node"), strcmp(finish, "tool_calls") == 0 ? " · delegating to sub-agents" : "",
                 odd ? " · finish: " : "", odd ? finish : "");
}

static void on_turn_failed(view_t *v, const proto_msg_t *m, const json_t *p) {
  out_end_line(v->out, m->session);
  json_object_del(v->turns, m->session);
  if (strcmp(pstr(p, "status"), "cancelled") == 0)
    out_agent_line(v->out, m->session, OUT_DIM, "turn %lld cancelled (%s)", (long long)m->turn, pstr(p, "detail"));
  else
    out_agent_line(v->out, m->session, OUT_ERROR, "turn %lld failed: %s (%s)", (long long)m->turn, pstr(p, "detail"),
                   pstr(p, "code"));
}

/* "→ spawn_agent reviewer: task" for a tool call event. */
static void on_tool_call(view_t *v, const char *session, const json_t *p) {
  const char *name = pstr(p, "name");
  json_t *args = json_loads(pstr(p, "arguments"), 0, NULL);
  if (strcmp(name, "spawn_agent") == 0 && json_is_object(args))
    out_agent_line(v->out, session, OUT_DIM, "→ spawn_agent %s: %.300s", pstr(args, "role"), pstr(args, "task"));
  else
    out_agent_line(v->out, session, OUT_DIM, "→ %s %.300s", name, pstr(p, "arguments"));
  json_decref(args);
}

static void on_agent_status(view_t *v, const json_t *p) {
  const char *id = pstr(p, "id"), *status = pstr(p, "status");
  if (!id[0] || is_main(id))
    return;
  out_agent(v->out, id, pstr(p, "role"));
  if (strcmp(status, "running") == 0)
    out_agent_line(v->out, id, OUT_DIM, "▶ running");
  else if (strcmp(status, "stopped") == 0)
    out_agent_line(v->out, id, OUT_DIM, "■ stopped");
  else if (strcmp(status, "failed") == 0)
    out_agent_line(v->out, id, OUT_ERROR, "✗ failed");
}

static void on_node(view_t *v, const char *kind, const json_t *p) {
  const char *dim = out_color(v->out) ? "\033[2m" : "", *reset = out_color(v->out) ? "\033[0m" : "";
  if (strcmp(kind, "node_joined") == 0)
    out_printf(v->out, "%s· node %s joined (%lld slots)%s", dim, pstr(p, "name"),
               (long long)json_integer_value(json_object_get(p, "slots")), reset);
  else
    out_printf(v->out, "%s· node %s left: %s%s", dim, pstr(p, "name"), pstr(p, "reason"), reset);
}

/* Events about one agent: spawned, summary, proposals. Returns false when kind is none of them. */
static bool on_agent_event(view_t *v, const char *kind, const json_t *p) {
  const char *id = pstr(p, "id");
  if (strcmp(kind, "agent_spawned") == 0) {
    out_agent(v->out, id, pstr(p, "role"));
    out_agent_line(v->out, id, OUT_DIM, "spawned by %s · %s · task: %.300s", pstr(p, "parent"), pstr(p, "model"),
                   pstr(p, "task"));
  } else if (strcmp(kind, "summary") == 0) {
    out_agent(v->out, id, pstr(p, "role"));
    out_end_line(v->out, id);
    view_summary(v->out, id, json_object_get(p, "summary"));
  } else if (strcmp(kind, "spawn_proposed") == 0) {
    out_agent_line(v->out, "main", OUT_BOLD, "proposal %lld: spawn a %s (keyword \"%s\") for: %.300s",
                   (long long)json_integer_value(json_object_get(p, "proposal")), pstr(p, "role"), pstr(p, "keyword"),
                   pstr(p, "task"));
  } else if (strcmp(kind, "agent_status") == 0) {
    on_agent_status(v, p);
  } else {
    return false;
  }
  return true;
}

void view_event(view_t *v, const proto_msg_t *m) {
  const json_t *p = m->payload;
  const char *kind = m->kind, *session = m->session;
  if (on_agent_event(v, kind, p))
    return;
  if (strncmp(kind, "node_", 5) == 0) {
    on_node(v, kind, p);
    return;
  }
  if (!session)
    return;
  if (strcmp(kind, "turn_done") == 0) {
    on_turn_done(v, m, p);
  } else if (strcmp(kind, "turn_failed") == 0) {
    on_turn_failed(v, m, p);
  } else if (strcmp(kind, "tool_call") == 0) {
    on_tool_call(v, session, p);
  } else if (strcmp(kind, "turn_waiting") == 0) {
    out_agent_line(v->out, session, OUT_DIM, "waiting: %s", pstr(p, "detail"));
  } else if (strcmp(kind, "turn_requeued") == 0) {
    out_end_line(v->out, session);
    out_agent_line(v->out, session, OUT_DIM, "node %s was lost; the turn runs again", pstr(p, "node"));
  } else if (strcmp(kind, "turn_started") == 0 && json_integer_value(json_object_get(p, "after")) > 0) {
    out_agent_line(v->out, session, OUT_DIM, "continues with the sub-agents' summaries");
  }
}
