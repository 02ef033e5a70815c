/* view.c: broker streams and events drawn on an out_t display (see view.h). */
#include "view.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "jx.h"
#include "render.h"
#include "sbuf.h"

/* The broker's retries of a step (broker/workflow.c MAX_ATTEMPTS), when an event does not say. */
#define VIEW_MAX_ATTEMPTS 3

struct view {
  out_t *out;
  bool stream, thinking;
  json_t *turns;  /* session -> {turn, attempt, text: something was drawn} */
  json_t *shown;  /* agent id -> the status last shown (the broker may say it more than once) */
  json_t *gapped; /* turn id -> true: some of its deltas were missed; its answer is drawn whole */
};

view_t *view_new(out_t *out) {
  view_t *v = calloc(1, sizeof *v);
  if (!v)
    return NULL;
  v->out = out;
  v->stream = true;
  v->turns = json_object();
  v->shown = json_object();
  v->gapped = json_object();
  out_set_live(out, "main");
  return v;
}

void view_free(view_t **self_p) {
  if (!self_p || !*self_p)
    return;
  json_decref((*self_p)->turns);
  json_decref((*self_p)->shown);
  json_decref((*self_p)->gapped);
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

/* Tools a node runs stream as deltas (render_tool_delta reads them). */
static void tool_delta(view_t *v, const proto_msg_t *m) {
  sbuf_t b = {0};
  out_style_t style = render_tool_delta(&b, m);
  if (b.len)
    out_agent_line(v->out, m->session, style, "%s", sbuf_str(&b));
  sbuf_free(&b);
}

void view_delta(view_t *v, const proto_msg_t *m) {
  bool thinking = strcmp(m->kind, "thinking") == 0;
  if (!thinking && strcmp(m->kind, "text") != 0) {
    tool_delta(v, m);
    return;
  }
  if (is_main(m->session) && !v->stream)
    return; /* printed whole when the turn is done */
  json_t *r = turn_rec(v, m->session);
  if (jx_int(r, "turn", 0) == m->turn && jx_int(r, "attempt", 0) != m->attempt && jx_int(r, "attempt", 0) != 0) {
    out_end_line(v->out, m->session);
    sbuf_t b = {0};
    render_attempt(&b, (long long)m->attempt);
    out_agent_line(v->out, m->session, OUT_DIM, "(%s)", sbuf_str(&b));
    sbuf_free(&b);
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
  const char *status = jx_str(summary, "status", "");
  bool pass = strcmp(status, "PASS") == 0, fail = strcmp(status, "FAIL") == 0;
  const char *mark = pass ? "✓" : fail ? "✗" : "◐";
  out_agent_line(o, id,
                 pass   ? OUT_GOOD
                 : fail ? OUT_ERROR
                        : OUT_WARN,
                 "── summary: %s %s ──", mark, status[0] ? status : "?");
  size_t i;
  json_t *kp;
  json_array_foreach(jx_arr(summary, "key_points"), i, kp) {
    if (json_string_value(kp))
      out_agent_line(o, id, OUT_PLAIN, "  • %s", json_string_value(kp));
  }
  const char *rec = jx_str(summary, "recommendation", "");
  if (rec[0])
    out_agent_line(o, id, OUT_PLAIN, "  → Recommendation: %s", rec);
}

/* The whole answer of a turn, when it was not streamed (or streaming is off). */
static void draw_answer(view_t *v, const char *session, const json_t *p, bool streamed) {
  if (streamed)
    return;
  const char *thinking = jx_str(p, "thinking", "");
  if (v->thinking && thinking[0]) {
    out_delta(v->out, session, true, thinking);
    out_end_line(v->out, session);
  }
  const char *content = jx_str(jx_obj(p, "message"), "content", NULL);
  if (content && content[0]) {
    out_delta(v->out, session, false, content);
    out_end_line(v->out, session);
  }
}

static void on_turn_done(view_t *v, const proto_msg_t *m, const json_t *p) {
  json_t *r = turn_rec(v, m->session);
  char key[24];
  snprintf(key, sizeof key, "%lld", (long long)m->turn);
  bool gapped = json_object_get(v->gapped, key) != NULL;
  json_object_del(v->gapped, key);
  if (gapped)
    out_agent_line(v->out, m->session, OUT_DIM, "(some of this answer's stream was missed; here it is whole)");
  bool streamed =
      !gapped && jx_int(r, "turn", 0) == m->turn && jx_bool(r, "text", false) && (v->stream || !is_main(m->session));
  out_end_line(v->out, m->session);
  draw_answer(v, m->session, p, streamed);
  json_object_del(v->turns, m->session);
  if (!is_main(m->session))
    return;
  sbuf_t b = {0};
  render_turn_end(&b, p, (double)jx_int(p, "elapsed_ms", 0) / 1000.0);
  out_agent_line(v->out, m->session, OUT_DIM, "%s", sbuf_str(&b));
  sbuf_free(&b);
}

static void on_turn_failed(view_t *v, const proto_msg_t *m, const json_t *p) {
  out_end_line(v->out, m->session);
  json_object_del(v->turns, m->session);
  sbuf_t b = {0};
  out_style_t style = render_turn_failed(&b, p);
  out_agent_line(v->out, m->session, style, "turn %lld %s", (long long)m->turn, sbuf_str(&b));
  sbuf_free(&b);
}

/* "→ spawn_agent reviewer: task" for a tool call event. */
static void on_tool_call(view_t *v, const char *session, const json_t *p) {
  sbuf_t b = {0};
  render_call_event(&b, p);
  out_agent_line(v->out, session, OUT_DIM, "%s", sbuf_str(&b));
  sbuf_free(&b);
}

static void on_agent_status(view_t *v, const json_t *p) {
  const char *id = jx_str(p, "id", ""), *status = jx_str(p, "status", "");
  if (!id[0] || is_main(id) || strcmp(jx_str(v->shown, id, ""), status) == 0)
    return;
  json_object_set_new(v->shown, id, json_string(status));
  out_agent(v->out, id, jx_str(p, "role", ""));
  if (strcmp(status, "running") == 0)
    out_agent_line(v->out, id, OUT_DIM, "▶ running");
  else if (strcmp(status, "stopped") == 0)
    out_agent_line(v->out, id, OUT_DIM, "■ stopped");
  else if (strcmp(status, "failed") == 0)
    out_agent_line(v->out, id, OUT_ERROR, "✗ failed");
}

/* Missed events or deltas (the broker's gap event, or one the client made). */
static void on_gap(view_t *v, const json_t *p) {
  const char *dim = out_color(v->out) ? "\033[2m" : "", *reset = out_color(v->out) ? "\033[0m" : "";
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(p, "turns"), i, t) {
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)json_integer_value(t));
    if (json_object_size(v->gapped) < 1024)
      json_object_set_new(v->gapped, key, json_true());
  }
  if (jx_int(p, "count", 0) > 0)
    out_printf(v->out, "%s· missed %lld events (%lld to %lld), older than the broker keeps%s", dim,
               (long long)jx_int(p, "count", 0), (long long)jx_int(p, "from", 0), (long long)jx_int(p, "to", 0), reset);
  if (jx_int(p, "deltas", 0) > 0)
    out_printf(v->out, "%s· missed %lld streamed pieces; the answers they belong to are shown whole%s", dim,
               (long long)jx_int(p, "deltas", 0), reset);
}

static void on_node(view_t *v, const char *kind, const json_t *p) {
  const char *dim = out_color(v->out) ? "\033[2m" : "", *reset = out_color(v->out) ? "\033[0m" : "";
  if (strcmp(kind, "node_joined") == 0)
    out_printf(v->out, "%s· node %s joined (%lld slots)%s", dim, jx_str(p, "name", ""),
               (long long)jx_int(p, "slots", 0), reset);
  else if (strcmp(kind, "node_draining") == 0)
    out_printf(v->out, "%s· node %s %s%s", dim, jx_str(p, "name", ""),
               !json_is_true(json_object_get(p, "draining"))   ? "takes work again"
               : strcmp(jx_str(p, "reason", ""), "admin") == 0 ? "is drained: it finishes its work and takes no more"
                                                               : "is stopping: it finishes its work, then leaves",
               reset);
  else
    out_printf(v->out, "%s· node %s left: %s%s", dim, jx_str(p, "name", ""), jx_str(p, "reason", ""), reset);
}

/* Events about one agent: spawned, summary, proposals. Returns false when kind is none of them. */
static bool on_agent_event(view_t *v, const char *kind, const json_t *p) {
  const char *id = jx_str(p, "id", "");
  if (strcmp(kind, "agent_spawned") == 0) {
    out_agent(v->out, id, jx_str(p, "role", ""));
    out_agent_line(v->out, id, OUT_DIM, "spawned by %s · %s · task: %.300s", jx_str(p, "parent", ""),
                   jx_str(p, "model", ""), jx_str(p, "task", ""));
  } else if (strcmp(kind, "summary") == 0) {
    out_agent(v->out, id, jx_str(p, "role", ""));
    out_end_line(v->out, id);
    view_summary(v->out, id, jx_obj(p, "summary"));
  } else if (strcmp(kind, "summary_asked") == 0) {
    out_agent(v->out, id, jx_str(p, "role", ""));
    out_end_line(v->out, id);
    out_agent_line(v->out, id, OUT_DIM, "↻ %s: asked once for its [SUMMARY]; what follows is its reply to that",
                   jx_str(p, "reason", "its answer had no [SUMMARY] block"));
  } else if (strcmp(kind, "spawn_proposed") == 0) {
    out_agent_line(v->out, "main", OUT_BOLD, "proposal %lld: spawn a %s (keyword \"%s\") for: %.300s",
                   (long long)jx_int(p, "proposal", 0), jx_str(p, "role", ""), jx_str(p, "keyword", ""),
                   jx_str(p, "task", ""));
  } else if (strcmp(kind, "agent_status") == 0) {
    on_agent_status(v, p);
  } else {
    return false;
  }
  return true;
}

const char *view_step_mark(const char *status) {
  if (!status)
    return "○";
  if (strcmp(status, "done") == 0)
    return "✓";
  if (strcmp(status, "running") == 0 || strcmp(status, "retrying") == 0)
    return "⟳";
  if (strcmp(status, "failed") == 0 || strcmp(status, "abandoned") == 0)
    return "✗";
  return "○";
}

/* A line of the workflow's: color is an SGR code ("1" bold, "2" dim, "31" red, "32" green) or NULL. */
static void wf_line(view_t *v, const char *color, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void wf_line(view_t *v, const char *color, const char *fmt, ...) {
  sbuf_t b = {0};
  va_list ap;
  va_start(ap, fmt);
  if (color && out_color(v->out))
    sbuf_printf(&b, "\033[%sm", color);
  sbuf_vprintf(&b, fmt, ap);
  if (color && out_color(v->out))
    sbuf_puts(&b, "\033[0m");
  va_end(ap);
  out_puts(v->out, sbuf_str(&b));
  sbuf_free(&b);
}

static const json_t *plan_step(const json_t *p, long long number) {
  size_t i;
  json_t *s;
  json_array_foreach(jx_arr(p, "steps"), i, s) if (jx_int(s, "number", 0) == number) return s;
  return NULL;
}

/* "12.3 s" from a step's started_ms and finished_ms; "" when it did not finish. */
static void step_time(const json_t *s, char *buf, size_t len) {
  json_int_t a = jx_int(s, "started_ms", 0), z = jx_int(s, "finished_ms", 0);
  if (a > 0 && z >= a)
    snprintf(buf, len, "%.1f s", (double)(z - a) / 1000.0);
  else
    snprintf(buf, len, "—");
}

/* A plan's errors, and (shown by the caller) how to fix them. */
static void plan_errors(view_t *v, const json_t *p) {
  size_t i;
  json_t *e;
  json_array_foreach(jx_arr(p, "errors"), i, e) {
    const char *msg = jx_str(e, "message", NULL);
    wf_line(v, "31", "  ! %s", msg ? msg : json_string_value(e) ? json_string_value(e) : "?");
  }
}

/* The budgets beside the estimate on the approval screen (payload budget). */
static void plan_budget(view_t *v, const json_t *p) {
  sbuf_t b = {0};
  format_plan_budget(&b, p);
  if (b.len)
    out_puts(v->out, sbuf_str(&b));
  sbuf_free(&b);
}

/* The end of a workflow: each step's mark, time and cost, the totals, the rollback. */
static void wf_finished(view_t *v, long long id, const char *title, const json_t *p) {
  const char *status = jx_str(p, "status", "");
  const json_t *rep = jx_obj(p, "report"), *u = jx_obj(rep, "usage");
  bool ok = strcmp(status, "done") == 0;
  char cost[32];
  format_cost(cost, sizeof cost, jx_num(u, "cost", 0));
  wf_line(v, ok ? "1;32" : "1;31", "%s plan %lld \"%s\" finished: %s · %.1f s · %lld tokens · %s", ok ? "✓" : "✗", id,
          title, status, jx_num(rep, "seconds", 0), (long long)jx_int(u, "tokens", 0), cost);
  size_t i;
  json_t *s;
  json_array_foreach(jx_arr(p, "steps"), i, s) {
    char t[32], c[32] = "—";
    step_time(s, t, sizeof t);
    const json_t *su = jx_obj(s, "usage");
    if (su)
      format_cost(c, sizeof c, jx_num(su, "cost", 0));
    const char *st = jx_str(s, "status", ""), *err = jx_str(s, "error", "");
    long long attempts = (long long)jx_int(s, "attempts", 0);
    const char *tool = jx_str(s, "tool", "");
    char tries[48] = "";
    if (attempts > 1)
      snprintf(tries, sizeof tries, " · %lld attempts", attempts);
    bool show_err = err[0] && strcmp(st, "done") != 0;
    wf_line(v, NULL, "  %s %lld. %s (%s%s%s) · %s · %s%s%s%.200s", view_step_mark(st),
            (long long)jx_int(s, "number", 0), jx_str(s, "title", ""),
            jx_str(s, "agent", "")[0] ? jx_str(s, "agent", "") : "no agent", tool[0] ? ", " : "", tool, t, c, tries,
            show_err ? " · " : "", show_err ? err : "");
  }
  const char *reason = jx_str(rep, "reason", "");
  if (reason[0])
    wf_line(v, "2", "  reason: %.300s", reason);
  const json_t *rb = jx_obj(rep, "rollback");
  if (rb) {
    sbuf_t rs = {0};
    format_rollback(&rs, rb);
    wf_line(v, "33", "  ↺ rolled back: %s", sbuf_str(&rs));
    sbuf_free(&rs);
    json_t *m;
    json_array_foreach(jx_arr(rb, "mismatches"), i, m) {
      const char *path = json_is_string(m) ? json_string_value(m) : jx_str(m, "path", "");
      wf_line(v, "33", "    ! %s changed since its checkpoint: left as it is", path);
    }
  }
}

/* Plans and workflows (payload: the plan, plus step, attempt, node, agent, detail, ...). */
static void on_workflow(view_t *v, const char *kind, const json_t *p) {
  long long id = (long long)jx_int(p, "id", 0);
  long long step = (long long)jx_int(p, "step", 0);
  long long attempt = (long long)jx_int(p, "attempt", 0);
  long long max =
      json_is_integer(json_object_get(p, "max_attempts")) ? jx_int(p, "max_attempts", 0) : VIEW_MAX_ATTEMPTS;
  const char *title = jx_str(p, "title", "");
  const json_t *s = plan_step(p, step);
  if (strcmp(kind, "plan_proposed") == 0 || strcmp(kind, "plan_modified") == 0) {
    bool modified = kind[5] == 'm';
    wf_line(v, "1", "📋 plan %lld \"%s\": %s%s%s", id, title, modified ? "modified, " : "proposed",
            modified ? "now " : "", modified ? jx_str(p, "status", "") : "");
    if (jx_str(p, "text", "")[0])
      out_puts(v->out, jx_str(p, "text", ""));
    plan_budget(v, p);
    plan_errors(v, p);
  } else if (strcmp(kind, "plan_rejected") == 0) {
    if (!id)
      wf_line(v, "31", "📋 a [PLAN] block could not be read: %s", jx_str(p, "detail", ""));
    else
      wf_line(v, "2", "📋 plan %lld \"%s\": rejected", id, title);
  } else if (strcmp(kind, "workflow_started") == 0) {
    wf_line(v, "1", "▶ plan %lld \"%s\": the workflow runs (%zu steps)", id, title,
            json_array_size(jx_arr(p, "steps")));
  } else if (strcmp(kind, "step_started") == 0) {
    char where[220], again[64] = "";
    if (jx_str(p, "node", "")[0])
      snprintf(where, sizeof where, "on node %.200s", jx_str(p, "node", ""));
    else
      snprintf(where, sizeof where, "as %.200s", jx_str(p, "agent", ""));
    if (attempt > 1)
      snprintf(again, sizeof again, " (attempt %lld of %lld)", attempt, max);
    wf_line(v, NULL, "⟳ plan %lld step %lld %s (%s) running %s%s", id, step, jx_str(s, "title", ""),
            jx_str(s, "agent", "")[0] ? jx_str(s, "agent", "") : jx_str(s, "tool", ""), where, again);
  } else if (strcmp(kind, "step_done") == 0) {
    char t[32];
    step_time(s, t, sizeof t);
    sbuf_t r = {0};
    format_step_result(&r, s, 160);
    wf_line(v, "32", "✓ plan %lld step %lld done · %s · %s%s%s", id, step, jx_str(s, "title", ""), t,
            r.len ? " → " : "", sbuf_str(&r));
    sbuf_free(&r);
  } else if (strcmp(kind, "step_failed") == 0) {
    bool retry = jx_bool(p, "will_retry", false);
    wf_line(v, "31", "✗ plan %lld step %lld failed (attempt %lld of %lld%s): %.300s", id, step, attempt, max,
            retry ? ", will retry" : "", jx_str(p, "detail", ""));
  } else if (strcmp(kind, "workflow_paused") == 0) {
    wf_line(v, "33", "⏸ plan %lld \"%s\": paused (running steps finish; /resume %lld goes on)", id, title, id);
  } else if (strcmp(kind, "workflow_resumed") == 0) {
    wf_line(v, "1", "▶ plan %lld \"%s\": resumed", id, title);
  } else if (strcmp(kind, "workflow_rolling_back") == 0) {
    wf_line(v, "33", "↺ plan %lld \"%s\": rolling back: %s", id, title, jx_str(p, "reason", ""));
  } else if (strcmp(kind, "workflow_finished") == 0) {
    wf_finished(v, id, title, p);
  } else {
    wf_line(v, "2", "📋 plan %lld \"%s\": %s (%s)", id, title, kind, jx_str(p, "status", ""));
  }
}

/* What a call asking for approval would do (the command, the diff), one line each. */
static void view_preview(view_t *v, const char *session, const char *preview) {
  while (preview && *preview) {
    size_t n = strcspn(preview, "\n");
    out_style_t style = preview[0] == '+' ? OUT_GOOD : preview[0] == '-' ? OUT_ERROR : OUT_DIM;
    out_agent_line(v->out, session, style, "  %.*s", (int)n, preview);
    preview += n + (preview[n] ? 1 : 0);
  }
}

void view_event(view_t *v, const proto_msg_t *m) {
  const json_t *p = m->payload;
  const char *kind = m->kind, *session = m->session;
  if (on_agent_event(v, kind, p))
    return;
  if (strncmp(kind, "plan_", 5) == 0 || strncmp(kind, "workflow_", 9) == 0 || strncmp(kind, "step_", 5) == 0) {
    on_workflow(v, kind, p);
    return;
  }
  if (strncmp(kind, "node_", 5) == 0) {
    on_node(v, kind, p);
    return;
  }
  if (strcmp(kind, "gap") == 0) {
    on_gap(v, p);
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
  } else if (strcmp(kind, "approval_needed") == 0) {
    sbuf_t b = {0};
    render_call(&b, jx_obj(p, "call"));
    const char *ws = jx_str(p, "workspace", "");
    out_agent_line(v->out, session, OUT_WARN, "wants to run %s%s%s (waiting for approval)", sbuf_str(&b),
                   ws[0] ? " in " : "", ws);
    sbuf_free(&b);
    view_preview(v, session, jx_str(p, "preview", NULL));
  } else if (strcmp(kind, "turn_waiting") == 0) {
    out_agent_line(v->out, session, OUT_DIM, "waiting: %s", jx_str(p, "detail", ""));
  } else if (strcmp(kind, "turn_requeued") == 0) {
    out_end_line(v->out, session);
    out_agent_line(v->out, session, OUT_WARN, "node %s lost, retrying", jx_str(p, "node", ""));
  } else if (strcmp(kind, "turn_started") == 0 && jx_int(p, "attempt", 1) > 1) {
    out_agent_line(v->out, session, OUT_WARN, "retrying on %s (attempt %lld)", jx_str(p, "node", ""),
                   (long long)jx_int(p, "attempt", 1));
  } else if (strcmp(kind, "turn_started") == 0 && jx_int(p, "after", 0) > 0) {
    out_agent_line(v->out, session, OUT_DIM, "continues with the sub-agents' summaries");
  }
}
