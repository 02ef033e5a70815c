/* format.c: command results as text for people (see format.h). */
#include "format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"
#include "output.h"
#include "render.h"
#include "view.h"

void format_cost(char *buf, size_t len, double cost) {
  snprintf(buf, len, cost >= 1.0 ? "$%.2f" : cost >= 0.01 ? "$%.4f" : "$%.6f", cost);
}

/* "🔍 reviewer-1" padded to a column of width w (emoji counted as 2). */
static void id_cell(sbuf_t *b, const char *id, const char *role, int w) {
  const char *e = out_role_emoji(role);
  int pad = w - out_width(id, strlen(id));
  sbuf_printf(b, "%s%s %s%*s", e, out_width(e, strlen(e)) < 2 ? " " : "", id, pad > 0 ? pad : 0, "");
}

static int id_width(const json_t *rows) {
  int w = 5;
  size_t i;
  json_t *r;
  json_array_foreach(rows, i, r) {
    const char *id = jx_str(r, "id", "-");
    int n = out_width(id, strlen(id));
    if (n > w)
      w = n;
  }
  return w;
}

/* One agent's row: its cell, then the columns (status only in the agents table). */
static void agent_row(sbuf_t *b, const json_t *a, const json_t *u, int w, bool status) {
  char cost[32];
  format_cost(cost, sizeof cost, jx_num(u, "cost", 0));
  id_cell(b, jx_str(a, "id", "-"), jx_str(a, "role", "-"), w);
  sbuf_printf(b, " %-12s %-18s ", jx_str(a, "role", "-"), jx_str(a, "model", "-"));
  if (status)
    sbuf_printf(b, "%-8s ", jx_str(a, "status", "-"));
  sbuf_printf(b, "%8lld %10lld %10lld %10s\n", (long long)jx_int(a, "messages", 0),
              (long long)jx_int(u, "prompt_tokens", 0), (long long)jx_int(u, "completion_tokens", 0), cost);
}

void format_agents(sbuf_t *b, const json_t *agents, const format_how_t *how) {
  (void)how;
  if (json_array_size(agents) == 0) {
    sbuf_puts(b, "no agents yet\n");
    return;
  }
  int w = id_width(agents);
  sbuf_printf(b, "   %-*s %-12s %-18s %-8s %8s %10s %10s %10s\n", w, "AGENT", "ROLE", "MODEL", "STATUS", "MESSAGES",
              "TOKENS IN", "TOKENS OUT", "COST");
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) agent_row(b, a, jx_obj(a, "usage"), w, true);
}

static void budget_line(sbuf_t *b, const json_t *r);

void format_stats(sbuf_t *b, const json_t *stats, const format_how_t *how) {
  (void)how;
  const json_t *agents = jx_arr(stats, "agents");
  int w = id_width(agents);
  sbuf_printf(b, "   %-*s %-12s %-18s %8s %10s %10s %10s\n", w, "AGENT", "ROLE", "MODEL", "MESSAGES", "TOKENS IN",
              "TOKENS OUT", "COST");
  size_t i;
  json_t *a;
  long long msgs = 0;
  json_array_foreach(agents, i, a) {
    agent_row(b, a, a, w, false);
    msgs += jx_int(a, "messages", 0);
  }
  const json_t *t = jx_obj(stats, "total");
  char total[32], equiv[32];
  format_cost(total, sizeof total, jx_num(t, "cost", 0));
  format_cost(equiv, sizeof equiv, jx_num(stats, "main_equivalent_cost", 0));
  sbuf_printf(b, "   %-*s %-12s %-18s %8lld %10lld %10lld %10s\n", w, "TEAM", "", "", msgs,
              (long long)jx_int(t, "prompt_tokens", 0), (long long)jx_int(t, "completion_tokens", 0), total);
  const char *mm = jx_str(stats, "main_model", NULL);
  sbuf_printf(b, "The same tokens on the main model%s%s%s: %s; the team cost %s: savings %.1f%%\n", mm ? " (" : "",
              mm ? mm : "", mm ? ")" : "", equiv, total, 100.0 * jx_num(stats, "savings", 0));
  json_t *r;
  if (json_array_size(jx_arr(stats, "budgets")))
    sbuf_puts(b, "Budgets:\n");
  json_array_foreach(jx_arr(stats, "budgets"), i, r) {
    sbuf_puts(b, "  ");
    budget_line(b, r);
  }
}

/* One budget: "main: 1,234 of 10,000 tokens used (8,766 left); $0.0120 of $0.5000 (...)". */
static void budget_line(sbuf_t *b, const json_t *r) {
  const json_t *lim = jx_obj(r, "limit"), *sp = jx_obj(r, "spent"), *left = jx_obj(r, "left");
  sbuf_printf(b, "%s: ", jx_str(r, "scope", "?"));
  if (!lim) {
    sbuf_printf(b, "no budget; used %lld tokens, $%.4f\n", (long long)jx_int(sp, "tokens", 0), jx_num(sp, "cost", 0));
    return;
  }
  bool first = true;
  if (jx_int(lim, "tokens", 0) > 0) {
    sbuf_printf(b, "%lld of %lld tokens used (%lld left)", (long long)jx_int(sp, "tokens", 0),
                (long long)jx_int(lim, "tokens", 0), (long long)jx_int(left, "tokens", 0));
    first = false;
  }
  if (jx_num(lim, "cost", 0) > 0)
    sbuf_printf(b, "%s$%.4f of $%.4f used ($%.4f left)", first ? "" : "; ", jx_num(sp, "cost", 0),
                jx_num(lim, "cost", 0), jx_num(left, "cost", 0));
  sbuf_puts(b, "\n");
}

void format_budget(sbuf_t *b, const json_t *r, const format_how_t *how) {
  (void)how;
  budget_line(b, r);
}

void format_memory(sbuf_t *b, const json_t *r, const format_how_t *how) {
  (void)how;
  if (json_is_object(r)) { /* pin, unpin, forget */
    sbuf_printf(b, "memory %lld: %s\n", (long long)jx_int(r, "id", 0),
                strcmp(jx_str(r, "done", ""), "forget") == 0 ? "forgotten (deleted from the broker's state)"
                : strcmp(jx_str(r, "done", ""), "pin") == 0  ? "pinned (always in new sessions' context)"
                                                             : "unpinned");
    return;
  }
  if (json_array_size(r) == 0) {
    sbuf_puts(b, "no memories yet (a sub-agent's summary becomes one)\n");
    return;
  }
  size_t i;
  json_t *m;
  json_array_foreach(r, i, m) {
    sbuf_printf(b, "%4lld  %.10s  %-7s %s%s%s\n      %s\n", (long long)jx_int(m, "id", 0), jx_str(m, "date", ""),
                jx_str(m, "outcome", ""), jx_str(m, "source", ""),
                json_is_true(json_object_get(m, "pinned")) ? "  (pinned)" : "", jx_str(m, "workspace", "")[0] ? "" : "",
                jx_str(m, "text", ""));
  }
}

void format_json(sbuf_t *b, const json_t *v, const format_how_t *how) {
  (void)how;
  char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER);
  if (s) {
    sbuf_puts(b, s);
    sbuf_puts(b, "\n");
  }
  free(s);
}

/* The console learns a spawned agent's id itself; cadre prints it. */
void format_spawn(sbuf_t *b, const json_t *r, const format_how_t *how) {
  if (!how->console)
    sbuf_printf(b, "%s\n", jx_str(r, "id", "?"));
}

/* The console shows the answer as it streams; cadre says which turn runs. */
void format_send(sbuf_t *b, const json_t *r, const format_how_t *how) {
  if (!how->console)
    sbuf_printf(b, "%s turn %lld %s\n", jx_str(how->args, "id", "?"), (long long)jx_int(r, "turn", 0),
                jx_str(r, "status", ""));
}

void format_stop(sbuf_t *b, const json_t *r, const format_how_t *how) {
  if (how->console) { /* "stopped" is said once, on the agent's own line (its agent_status event) */
    if (strcmp(jx_str(r, "status", "stopped"), "stopped") != 0)
      sbuf_printf(b, "%s: %s\n", jx_str(how->args, "id", "?"), jx_str(r, "status", ""));
  } else
    sbuf_printf(b, "%s: %s\n", jx_str(r, "id", "?"), jx_str(r, "status", "?"));
}

void format_stopped(sbuf_t *b, const json_t *r, const format_how_t *how) {
  json_t *ids = jx_arr(r, "stopped"), *turns = jx_arr(r, "cancelled");
  size_t i;
  json_t *v;
  if (json_array_size(ids) == 0) {
    sbuf_puts(b, "no sub-agent was running\n");
  } else {
    sbuf_puts(b, "stopped:");
    json_array_foreach(ids, i, v) sbuf_printf(b, "%s%s", how->console && i ? ", " : " ", json_string_value(v));
    sbuf_puts(b, "\n");
  }
  if (json_array_size(turns) > 0) { /* main's turns, and any other the sub-agents did not cover */
    sbuf_puts(b, "cancelled turns:");
    json_array_foreach(turns, i, v)
        sbuf_printf(b, "%s%lld", how->console && i ? ", " : " ", (long long)json_integer_value(v));
    sbuf_puts(b, "\n");
  }
}

void format_reset(sbuf_t *b, const json_t *r, const format_how_t *how) {
  const char *session = jx_str(how->args, "session", "main");
  long long n = (long long)jx_int(r, "cleared", 0);
  if (!how->console)
    sbuf_printf(b, "%s: conversation cleared (%lld messages set aside)\n", jx_str(r, "session", "main"), n);
  else if (strcmp(session, "main") != 0)
    sbuf_printf(b, "%s's conversation is cleared (%lld messages set aside)\n", session, n);
  else if (json_is_integer(json_object_get(r, "cleared")))
    sbuf_printf(b, "the main agent's conversation is cleared (%lld messages set aside)\n", n);
  else
    sbuf_puts(b, "the main agent's conversation is cleared\n");
  long long turns = (long long)jx_int(r, "cancelled", 0);
  if (turns > 0)
    sbuf_printf(b, "%lld turn%s cancelled\n", turns, turns == 1 ? "" : "s");
}

void format_history(sbuf_t *b, const json_t *r, const format_how_t *how) {
  size_t i;
  json_t *m;
  /* A failed or cancelled turn's messages are shown, marked: the model no longer sees them. */
  json_array_foreach(jx_arr(r, "messages"), i, m)
      sbuf_printf(b, "%s%s%s:%s %s\n", how->color ? "\033[1m" : "", jx_str(m, "role", "?"),
                  jx_bool(m, "left_out", false) ? " (left out: its turn failed)" : "", how->color ? "\033[0m" : "",
                  jx_str(m, "content", ""));
}

/* Strings of a list joined by sep ("?" for what is not a string). */
static void join_list(sbuf_t *b, const json_t *list, const char *sep) {
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) sbuf_printf(b, "%s%s", i ? sep : "", json_string_value(v) ?: "?");
}

/* "gpu=1,zone=a", or "-". */
static void join_labels(sbuf_t *b, const json_t *labels) {
  const char *k;
  json_t *v;
  bool first = true;
  json_object_foreach((json_t *)labels, k, v) {
    sbuf_printf(b, "%s%s=%s", first ? "" : ",", k, json_string_value(v) ? json_string_value(v) : "?");
    first = false;
  }
  if (first)
    sbuf_puts(b, "-");
}

/* "ready", "draining (admin)", "draining (stopping)". */
static const char *node_state(const json_t *n, char *buf, size_t len) {
  if (!json_is_true(json_object_get(n, "draining")))
    return "ready";
  snprintf(buf, len, "draining (%s)", jx_str(n, "drain_reason", "?"));
  return buf;
}

/* Nodes that do not run commands in a sandbox are named after the table. */
static void nodes_unsandboxed(sbuf_t *b, const json_t *nodes) {
  size_t i;
  json_t *n;
  json_array_foreach(nodes, i, n) {
    const char *sb = jx_str(n, "sandbox", "unknown");
    if (strcmp(sb, "off") == 0)
      sbuf_printf(b, "warning: %s runs commands without a sandbox (--no-sandbox)\n", jx_str(n, "name", ""));
    else if (strncmp(sb, "unavailable", 11) == 0)
      sbuf_printf(b, "warning: %s refuses commands: sandbox %s\n", jx_str(n, "name", ""), sb);
  }
}

void format_nodes(sbuf_t *b, const json_t *nodes, const format_how_t *how) {
  if (json_array_size(nodes) == 0) {
    sbuf_puts(b, "no agent daemons are registered\n");
    return;
  }
  if (!how->console)
    sbuf_printf(b, "%-16s %-14s %-20s %5s %-20s %9s  %-11s %-22s %s\n", "NAME", "HOST", "STATE", "SLOTS", "LABELS",
                "HEARTBEAT", "SANDBOX", "MODELS", "WORKSPACE");
  size_t i;
  json_t *n;
  json_array_foreach(nodes, i, n) {
    const char *name = jx_str(n, "name", ""), *host = jx_str(n, "host", "");
    long long slots = (long long)jx_int(n, "slots", 0), busy = (long long)jx_int(n, "busy", 0);
    char state[48], used[32], beat[32];
    snprintf(used, sizeof used, "%lld/%lld", busy, slots);
    snprintf(beat, sizeof beat, "%.1fs ago", (double)jx_int(n, "last_seen_ms_ago", 0) / 1000.0);
    sbuf_t labels = {0};
    join_labels(&labels, jx_obj(n, "labels"));
    if (how->console) {
      const char *sb = jx_str(n, "sandbox", "unknown");
      sbuf_printf(b, "%-16s %-14s %s, slots %s in use, labels %s, heard %s%s%s\n", name, host,
                  node_state(n, state, sizeof state), used, sbuf_str(&labels), beat,
                  strcmp(sb, "on") ? ", sandbox " : "", strcmp(sb, "on") ? sb : "");
      sbuf_free(&labels);
      continue;
    }
    sbuf_t models = {0};
    join_list(&models, jx_arr(n, "models"), ",");
    const char *sandbox = jx_str(n, "sandbox", "unknown");
    sbuf_printf(b, "%-16s %-14s %-20s %5s %-20.255s %9s  %-11.*s %-22.255s %s\n", name, host,
                node_state(n, state, sizeof state), used, sbuf_str(&labels), beat, (int)strcspn(sandbox, ":"), sandbox,
                sbuf_str(&models), jx_str(n, "workspace", ""));
    sbuf_free(&models);
    sbuf_free(&labels);
  }
  if (!how->console)
    nodes_unsandboxed(b, nodes);
}

void format_drain(sbuf_t *b, const json_t *r, const format_how_t *how) {
  (void)how;
  char state[48];
  sbuf_printf(b, "%s: %s, %lld of %lld slots in use\n", jx_str(r, "name", "?"), node_state(r, state, sizeof state),
              (long long)jx_int(r, "busy", 0), (long long)jx_int(r, "slots", 0));
}

void format_sessions(sbuf_t *b, const json_t *sessions, const format_how_t *how) {
  (void)how;
  sbuf_printf(b, "%-16s %-12s %-18s %8s %10s %10s %9s\n", "ID", "ROLE", "PROFILE", "MESSAGES", "TOKENS IN",
              "TOKENS OUT", "COST");
  size_t i;
  json_t *o;
  json_array_foreach(sessions, i, o) {
    json_t *u = jx_obj(o, "usage");
    sbuf_printf(b, "%-16s %-12s %-18s %8lld %10lld %10lld %9.4f\n", jx_str(o, "id", ""), jx_str(o, "role", ""),
                jx_str(o, "profile", ""), (long long)jx_int(o, "messages", 0), (long long)jx_int(u, "prompt_tokens", 0),
                (long long)jx_int(u, "completion_tokens", 0), jx_num(u, "cost", 0));
  }
}

/* How many distinct paths list holds (strings, or objects with path). */
static size_t distinct_paths(const json_t *list) {
  json_t *seen = json_object();
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    const char *path = json_is_string(e) ? json_string_value(e) : jx_str(e, "path", NULL);
    if (path)
      json_object_set_new(seen, path, json_true());
  }
  size_t n = json_object_size(seen);
  json_decref(seen);
  return n;
}

/* Each file once: restores run newest checkpoint first, so a file's last entry says what it is now
 * (existed: its content is back, else it was removed); it counts as changed when any restore changed it. */
void format_rollback(sbuf_t *b, const json_t *rb) {
  json_t *files = json_object();
  size_t i, nr = 0, nc = 0, same = 0;
  json_t *e;
  json_array_foreach(jx_arr(rb, "restored"), i, e) {
    const char *path = jx_str(e, "path", NULL);
    if (!path)
      continue;
    json_t *f = json_object_get(files, path);
    bool changed = jx_bool(e, "changed", true) || jx_bool(f, "changed", false);
    json_object_set_new(files, path,
                        json_pack("{s:b, s:b}", "existed", jx_bool(e, "existed", true), "changed", changed));
  }
  const char *path;
  json_object_foreach(files, path, e) {
    if (!jx_bool(e, "changed", true))
      same++;
    else if (jx_bool(e, "existed", true))
      nr++;
    else
      nc++;
  }
  json_decref(files);
  sbuf_printf(b, "%zu file(s) restored", nr);
  if (nc)
    sbuf_printf(b, ", %zu created file(s) removed", nc);
  if (same)
    sbuf_printf(b, ", %zu already as they were", same);
  size_t kept = distinct_paths(jx_arr(rb, "conflicts"));
  if (kept) /* changed by other work after the workflow wrote them: left as they are */
    sbuf_printf(b, ", %zu conflict(s) kept as others left them (%s%s)", kept,
                jx_str(json_array_get(jx_arr(rb, "conflicts"), 0), "path", "?"), kept > 1 ? ", ..." : "");
  sbuf_printf(b, ", %zu deleted, %zu mismatch(es)", distinct_paths(jx_arr(rb, "deleted")),
              distinct_paths(jx_arr(rb, "mismatches")));
}

void format_step_result(sbuf_t *b, const json_t *s, size_t max) {
  const char *r = jx_str(s, "result", "");
  while (*r == '\n' || *r == ' ')
    r++;
  const char *nl = strchr(r, '\n');
  char *first = strndup(r, nl ? (size_t)(nl - r) : strlen(r));
  render_one_line(b, first ? first : "", max);
  free(first);
}

/* "<indent>○ 2. title (agent<tool_sep>tool": a step's mark, number, title, agent and tool. */
static void step_head(sbuf_t *b, const json_t *s, const char *indent, const char *no_agent, const char *tool_sep) {
  const char *tool = jx_str(s, "tool", NULL), *profile = jx_str(s, "profile", NULL);
  sbuf_printf(b, "%s%s %lld. %s (%s%s%s%s%s", indent, view_step_mark(jx_str(s, "status", NULL)),
              (long long)jx_int(s, "number", 0), jx_str(s, "title", ""), jx_str(s, "agent", no_agent),
              profile ? " on " : "", profile ? profile : "", tool ? tool_sep : "", tool ? tool : "");
}

/* A step's dependencies: first, then the numbers joined by sep (nothing when it has none). */
static void step_deps(sbuf_t *b, const json_t *s, const char *first, const char *sep) {
  size_t j;
  json_t *d;
  json_array_foreach(jx_arr(s, "dependencies"), j, d)
      sbuf_printf(b, "%s%lld", j ? sep : first, (long long)json_integer_value(d));
}

void format_plan_doc(sbuf_t *b, const json_t *p) {
  const json_t *est = jx_obj(p, "estimate");
  sbuf_printf(b, "Plan %lld: %s [%s]\n", (long long)jx_int(p, "id", 0), jx_str(p, "title", "(untitled)"),
              jx_str(p, "status", "?"));
  if (est && json_is_integer(json_object_get(est, "tokens")))
    sbuf_printf(b, "  estimate: %.0f s (critical path), $%.4f, %lld tokens\n", jx_num(est, "seconds", 0),
                jx_num(est, "cost", 0), (long long)jx_int(est, "tokens", 0));
  else if (est)
    sbuf_printf(b, "  estimate: %.0f s (critical path), $%.4f\n", jx_num(est, "seconds", 0), jx_num(est, "cost", 0));
  size_t i;
  json_t *s;
  json_array_foreach(jx_arr(p, "steps"), i, s) {
    step_head(b, s, "  ", "?", ", ");
    step_deps(b, s, "; after ", ",");
    long long attempts = (long long)jx_int(s, "attempts", 0);
    sbuf_puts(b, ")");
    if (attempts > 1)
      sbuf_printf(b, " [%lld attempts]", attempts);
    sbuf_puts(b, "\n");
    if (jx_str(s, "result", "")[0]) {
      sbuf_puts(b, "       result: ");
      format_step_result(b, s, 200);
      sbuf_puts(b, "\n");
    }
  }
  json_array_foreach(jx_arr(p, "errors"), i, s) sbuf_printf(b, "  ! %s\n", jx_str(s, "message", "(null)"));
  const json_t *rb = jx_obj(jx_obj(p, "report"), "rollback");
  if (rb) {
    sbuf_puts(b, "  rolled back: ");
    format_rollback(b, rb);
    sbuf_puts(b, "\n");
  }
}

void format_plan_line(sbuf_t *b, const json_t *p) {
  const json_t *est = jx_obj(p, "estimate");
  char cost[32];
  format_cost(cost, sizeof cost, jx_num(est, "cost", 0));
  sbuf_printf(b, "📋 plan %lld \"%s\" [%s] · %zu steps · ~%.0f s, %s\n", (long long)jx_int(p, "id", 0),
              jx_str(p, "title", ""), jx_str(p, "status", "?"), json_array_size(jx_arr(p, "steps")),
              jx_num(est, "seconds", 0), cost);
}

/* "   ○ 2. title (agent, tool t) after step 1", its arguments and its description. */
static void write_plan_step(sbuf_t *b, const json_t *s) {
  step_head(b, s, "   ", "", ", tool ");
  sbuf_puts(b, ")");
  step_deps(b, s, " after step ", ", ");
  const json_t *args = json_object_get(s, "arguments");
  const char *args_text = jx_str(s, "arguments_text", NULL);
  char *dump = args && !json_is_null(args) ? json_dumps(args, JSON_COMPACT) : NULL;
  if (dump || args_text)
    sbuf_printf(b, "\n        arguments: %.600s", dump ? dump : args_text);
  free(dump);
  const char *desc = jx_str(s, "description", "");
  if (desc[0])
    sbuf_printf(b, "\n        %.600s", desc);
  sbuf_puts(b, "\n");
}

void format_plan_steps(sbuf_t *b, const json_t *p) {
  const char *text = jx_str(p, "text", NULL);
  if (text) {
    sbuf_puts(b, text);
    if (text[0] && text[strlen(text) - 1] != '\n')
      sbuf_puts(b, "\n");
  } else {
    format_plan_line(b, p);
  }
  size_t i;
  json_t *s;
  json_array_foreach(jx_arr(p, "steps"), i, s) write_plan_step(b, s);
  json_array_foreach(jx_arr(p, "errors"), i, s) sbuf_printf(b, "  ! %s\n", jx_str(s, "message", "?"));
}

void format_plans(sbuf_t *b, const json_t *plans, const format_how_t *how) {
  if (json_array_size(plans) == 0)
    sbuf_puts(b, how->console ? "no plans yet\n" : "no plans\n");
  size_t i;
  json_t *p;
  json_array_foreach(plans, i, p) {
    if (how->console)
      format_plan_line(b, p);
    else
      format_plan_doc(b, p);
  }
}

/* The budgets a plan runs under, beside its estimate, and a warning where the estimate does not fit. */
void format_plan_budget(sbuf_t *b, const json_t *p) {
  const json_t *bud = jx_obj(p, "budget"), *est = jx_obj(p, "estimate"), *own = jx_obj(bud, "workflow");
  if (!bud)
    return;
  char cost[32];
  format_cost(cost, sizeof cost, jx_num(est, "cost", 0));
  sbuf_printf(b, "Budget (the estimate: %lld tokens, %s):\n", (long long)jx_int(est, "tokens", 0), cost);
  if (own && jx_obj(own, "limit")) {
    sbuf_puts(b, "  ");
    budget_line(b, own);
  } else {
    long long id = (long long)jx_int(p, "id", 0);
    sbuf_printf(b, "  workflow:%lld: none of its own (approve %lld --budget-tokens N --budget-cost USD sets one)\n", id,
                id);
  }
  size_t i;
  json_t *r;
  json_array_foreach(jx_arr(bud, "sessions"), i, r) {
    sbuf_puts(b, "  ");
    budget_line(b, r);
  }
  json_array_foreach(jx_arr(bud, "warnings"), i, r) sbuf_printf(b, "  \xe2\x9a\xa0 %s\n", json_string_value(r));
}

/* "tokens, time, cost" of an estimate (a step's or the whole plan's). */
static void estimate_cells(sbuf_t *b, const json_t *e) {
  char cost[32];
  format_cost(cost, sizeof cost, jx_num(e, "cost", 0));
  sbuf_printf(b, "%lld tokens, %.0fs, %s", (long long)jx_int(e, "tokens", 0), jx_num(e, "seconds", 0), cost);
}

/* Each step whose estimate changed, and the total: before -> after. */
static void estimate_change(sbuf_t *b, const json_t *before, const json_t *after) {
  const json_t *old = jx_arr(before, "steps");
  sbuf_puts(b, "Estimate before -> after:\n");
  size_t i, k;
  json_t *e, *o;
  json_array_foreach(jx_arr(after, "steps"), i, e) {
    const json_t *was = NULL;
    json_array_foreach(old, k, o) if (jx_int(o, "number", -1) == jx_int(e, "number", 0)) was = o;
    if (was && json_equal((json_t *)was, e))
      continue;
    sbuf_printf(b, "  step %lld: ", (long long)jx_int(e, "number", 0));
    if (was) {
      sbuf_printf(b, "%s (%s) ", jx_str(was, "profile", "tool step"), jx_str(was, "model", "no model"));
      estimate_cells(b, was);
      sbuf_puts(b, " -> ");
    }
    sbuf_printf(b, "%s (%s) ", jx_str(e, "profile", "tool step"), jx_str(e, "model", "no model"));
    estimate_cells(b, e);
    sbuf_puts(b, "\n");
  }
  sbuf_puts(b, "  total: ");
  estimate_cells(b, before);
  sbuf_puts(b, " -> ");
  estimate_cells(b, after);
  sbuf_puts(b, "\n");
}

void format_plan(sbuf_t *b, const json_t *p, const format_how_t *how) {
  if (how->console) {
    format_plan_line(b, p);
    format_plan_steps(b, p);
    format_plan_budget(b, p);
    return;
  }
  sbuf_puts(b, jx_str(p, "text", ""));
  format_plan_doc(b, p);
  format_plan_budget(b, p);
}

void format_approved(sbuf_t *b, const json_t *r, const format_how_t *how) {
  if (how->console)
    sbuf_printf(b, "plan %lld approved: the workflow runs (its steps show here as they go)\n",
                (long long)jx_int(r, "id", 0));
  else
    format_plan_doc(b, r);
}

/* reject, pause, resume, cancel_workflow: the plan's or workflow's new status. */
void format_decided(sbuf_t *b, const json_t *r, const format_how_t *how) {
  const char *status = jx_str(r, "status", NULL);
  long long id = (long long)jx_int(r, "id", 0);
  if (!how->console) {
    sbuf_printf(b, "%s %lld: %s\n", status ? "plan" : "ok", id, status ? status : "");
    return;
  }
  static const struct {
    const char *verb, *what, *status;
  } done[] = {{"reject", "plan", "rejected"},
              {"pause", "workflow", "paused"},
              {"resume", "workflow", "running"},
              {"cancel_workflow", "workflow", "cancelled"}};
  size_t i = 0;
  while (i + 1 < sizeof done / sizeof done[0] && strcmp(done[i].verb, how->verb ? how->verb : "") != 0)
    i++;
  sbuf_printf(b, "%s %lld: %s\n", done[i].what, id, status ? status : done[i].status);
}

/* The estimate before and after the edit; the console shows the plan as it is now when the plan_modified
 * event comes, cadre shows it here with its budget. */
void format_modified(sbuf_t *b, const json_t *r, const format_how_t *how) {
  const json_t *before = jx_obj(r, "before"), *after = jx_obj(r, "estimate");
  if (!how->console)
    format_plan_doc(b, r);
  if (before && after && jx_arr(after, "steps"))
    estimate_change(b, before, after);
  if (!how->console)
    format_plan_budget(b, r);
}

static void params_text(sbuf_t *b, const json_t *params) {
  join_list(b, params, ", ");
  if (json_array_size(params) == 0)
    sbuf_puts(b, "none");
}

static void template_list(sbuf_t *b, const json_t *list, bool console) {
  size_t i;
  json_t *t;
  if (json_array_size(list) == 0)
    sbuf_printf(b, "no templates yet: %s save <plan id> <name>\n", console ? "/template" : "cadre template");
  json_array_foreach(list, i, t) {
    const json_t *plan = jx_obj(t, "plan");
    sbuf_printf(b, "📐 %s \"%s\" · %zu steps · params: ", jx_str(t, "name", "?"), jx_str(plan, "title", ""),
                json_array_size(jx_arr(plan, "steps")));
    params_text(b, jx_arr(t, "params"));
    sbuf_puts(b, "\n");
  }
}

/* template_list, template_save, template_run (the new plan: the console shows it from its event). */
void format_template(sbuf_t *b, const json_t *r, const format_how_t *how) {
  const char *verb = how->verb ? how->verb : "";
  if (strcmp(verb, "template_list") == 0) {
    template_list(b, r, how->console);
  } else if (strcmp(verb, "template_save") == 0) {
    sbuf_printf(b, "template %s saved from plan %lld · params: ", jx_str(how->args, "name", "?"),
                (long long)jx_int(how->args, "id", 0));
    params_text(b, jx_arr(r, "params"));
    sbuf_puts(b, "\n");
  } else if (!how->console) {
    format_plan_doc(b, r);
  }
}
