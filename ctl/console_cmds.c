/* console_cmds.c: what the console does with a line the user entered. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "format.h"

typedef struct {
  const char *name, *args, *help;
  void (*fn)(console_t *con, const char *rest);
} command_t;

static void con_help(console_t *con, const char *rest);

json_t *console_request(console_t *con, const char *verb, json_t *args) {
  char err[1024];
  json_t *r = client_request(con->c, verb, args, con->ctl->timeout_ms, err, sizeof err);
  if (!r)
    out_printf(con->out, "%s%s: %s%s", out_color(con->out) ? "\033[31m" : "", verb, err,
               out_color(con->out) ? "\033[0m" : "");
  return r;
}

const char *console_prompt_text(const console_t *con) {
  const json_t *q = json_array_get(con->questions, 0);
  const char *kind = json_string_value(json_object_get(q, "q"));
  if (q && strcmp(kind, "plan") == 0)
    return CONSOLE_PLAN_PROMPT;
  if (q)
    return strcmp(kind, "tool") == 0 ? "allow it? [y/n] " : "spawn it? [y/n] ";
  return "you › ";
}

/* A dimmed line of the console's own. */
static void note(console_t *con, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(console_t *con, const char *fmt, ...) {
  sbuf_t b = {0};
  va_list ap;
  va_start(ap, fmt);
  sbuf_puts(&b, out_color(con->out) ? "\033[2m" : "");
  sbuf_vprintf(&b, fmt, ap);
  sbuf_puts(&b, out_color(con->out) ? "\033[0m" : "");
  va_end(ap);
  out_puts(con->out, sbuf_str(&b));
  sbuf_free(&b);
}

/* Splits "word rest" into word (copied into buf) and the rest. */
static const char *first_word(const char *s, char *buf, size_t len) {
  s += strspn(s, " ");
  size_t n = strcspn(s, " ");
  snprintf(buf, len, "%.*s", (int)n, s);
  s += n;
  return s + strspn(s, " ");
}

static void con_spawn(console_t *con, const char *rest) {
  char role[128];
  const char *task = first_word(rest, role, sizeof role);
  if (!role[0] || !task[0]) {
    out_puts(con->out, "usage: /spawn <role> <task>   e.g. /spawn reviewer Review the auth module");
    return;
  }
  json_t *r = console_request(con, "spawn", json_pack("{s:s, s:s}", "role", role, "task", task));
  const char *id = json_string_value(json_object_get(r, "id"));
  if (id) {
    json_object_set_new(con->mine, id, json_true());
    json_object_set_new(con->ids, id, json_string(role));
    out_agent(con->out, id, json_string_value(json_object_get(r, "role")));
  }
  json_decref(r);
}

static void con_agents(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "agents", NULL);
  if (!r)
    return;
  sbuf_t b = {0};
  format_agents(&b, r);
  out_puts(con->out, sbuf_str(&b));
  sbuf_free(&b);
  size_t i;
  json_t *a;
  json_array_foreach(r, i, a) {
    const char *id = json_string_value(json_object_get(a, "id"));
    if (id)
      json_object_set(con->ids, id, json_object_get(a, "role"));
  }
  json_decref(r);
}

static void con_stop(console_t *con, const char *rest) {
  char id[128];
  first_word(rest, id, sizeof id);
  if (!id[0]) {
    out_puts(con->out, "usage: /stop <agent id>   (/agents lists them)");
    return;
  }
  json_t *r = console_request(con, "stop", json_pack("{s:s}", "id", id));
  if (r)
    out_printf(con->out, "%s: %s", id, json_string_value(json_object_get(r, "status")) ?: "stopped");
  json_decref(r);
}

static void con_stop_all(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "stop_all", NULL);
  if (!r)
    return;
  json_t *ids = json_object_get(r, "stopped");
  if (json_array_size(ids) == 0) {
    out_puts(con->out, "no sub-agent was running");
  } else {
    sbuf_t b = {0};
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) sbuf_printf(&b, "%s%s", i ? ", " : "", json_string_value(v));
    out_printf(con->out, "stopped: %s", sbuf_str(&b));
    sbuf_free(&b);
  }
  json_decref(r);
}

static void con_config(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "config", NULL);
  if (!r)
    return;
  sbuf_t b = {0};
  format_json(&b, r);
  out_puts(con->out, sbuf_str(&b));
  sbuf_free(&b);
  json_decref(r);
}

static void con_stats(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "stats", NULL);
  if (!r)
    return;
  sbuf_t b = {0};
  format_stats(&b, r);
  out_puts(con->out, sbuf_str(&b));
  sbuf_free(&b);
  json_decref(r);
}

static void con_stream(console_t *con, const char *rest) {
  (void)rest;
  view_set_stream(con->view, !view_stream(con->view));
  out_printf(con->out, "streaming display of the main agent: %s", view_stream(con->view) ? "on (token by token)"
                                                                                        : "off (whole answers)");
}

static void con_thinking(console_t *con, const char *rest) {
  (void)rest;
  view_set_thinking(con->view, !view_thinking(con->view));
  out_printf(con->out, "thinking display: %s", view_thinking(con->view) ? "on" : "off");
}

static void con_reset(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "reset", json_pack("{s:s}", "session", "main"));
  if (!r)
    return;
  json_t *n = json_object_get(r, "cleared");
  if (json_is_integer(n))
    out_printf(con->out, "the main agent's conversation is cleared (%lld messages set aside)",
               (long long)json_integer_value(n));
  else
    out_puts(con->out, "the main agent's conversation is cleared");
  json_decref(r);
}

static void con_history(console_t *con, const char *rest) {
  char id[128];
  first_word(rest, id, sizeof id);
  json_t *r = console_request(con, "history", json_pack("{s:s}", "session", id[0] ? id : "main"));
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(r, "messages"), i, m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *content = json_string_value(json_object_get(m, "content"));
    out_printf(con->out, "%s%s:%s %s", out_color(con->out) ? "\033[1m" : "", role ? role : "?",
               out_color(con->out) ? "\033[0m" : "", content ? content : "");
  }
  json_decref(r);
}

static void con_nodes(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "nodes", NULL);
  size_t i;
  json_t *n;
  if (r && json_array_size(r) == 0)
    out_puts(con->out, "no agent daemons are registered");
  json_array_foreach(r, i, n) out_printf(con->out, "%-20s %-16s slots %lld, busy %lld", json_string_value(json_object_get(n, "name")),
                                         json_string_value(json_object_get(n, "host")) ?: "",
                                         (long long)json_integer_value(json_object_get(n, "slots")),
                                         (long long)json_integer_value(json_object_get(n, "busy")));
  json_decref(r);
}

/* "📋 plan 3 "title" [status] · 4 steps · ~195 s, $0.06" */
static void plan_line(console_t *con, const json_t *p) {
  const json_t *est = json_object_get(p, "estimate");
  char cost[32];
  format_cost(cost, sizeof cost, json_number_value(json_object_get(est, "cost")));
  out_printf(con->out, "📋 plan %lld \"%s\" [%s] · %zu steps · ~%.0f s, %s",
             (long long)json_integer_value(json_object_get(p, "id")),
             json_string_value(json_object_get(p, "title")) ?: "", json_string_value(json_object_get(p, "status")) ?: "?",
             json_array_size(json_object_get(p, "steps")), json_number_value(json_object_get(est, "seconds")), cost);
}

static void con_plans(console_t *con, const char *rest) {
  (void)rest;
  json_t *r = console_request(con, "plans", NULL);
  size_t i;
  json_t *p;
  if (r && json_array_size(r) == 0)
    out_puts(con->out, "no plans yet");
  json_array_foreach(r, i, p) plan_line(con, p);
  json_decref(r);
}

/* Runs verb with {"id": the number in rest}; returns the result or NULL. */
static json_t *plan_verb(console_t *con, const char *verb, const char *rest, bool id_optional) {
  char word[32], *end = NULL;
  first_word(rest, word, sizeof word);
  long long id = strtoll(word, &end, 10);
  if (!word[0] && id_optional)
    return console_request(con, verb, NULL);
  if (!word[0] || *end || id <= 0) {
    out_printf(con->out, "usage: /%s <plan id>   (/plans lists them)", verb);
    return NULL;
  }
  return console_request(con, verb, json_pack("{s:I}", "id", (json_int_t)id));
}

/* A plan for deciding: the approval screen, then each step's arguments and description. */
static void show_plan(console_t *con, const json_t *r) {
  const char *text = json_string_value(json_object_get(r, "text"));
  if (text)
    out_puts(con->out, text);
  else
    plan_line(con, r);
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(r, "steps"), i, s) {
    sbuf_t b = {0};
    const char *tool = json_string_value(json_object_get(s, "tool"));
    sbuf_printf(&b, "   %s %lld. %s (%s%s%s)", view_step_mark(json_string_value(json_object_get(s, "status"))),
                (long long)json_integer_value(json_object_get(s, "number")),
                json_string_value(json_object_get(s, "title")) ?: "", json_string_value(json_object_get(s, "agent")) ?: "",
                tool ? ", tool " : "", tool ? tool : "");
    size_t j;
    json_t *d;
    json_array_foreach(json_object_get(s, "dependencies"), j, d)
        sbuf_printf(&b, "%s%lld", j ? ", " : " after step ", (long long)json_integer_value(d));
    const json_t *args = json_object_get(s, "arguments");
    const char *args_text = json_string_value(json_object_get(s, "arguments_text"));
    char *dump = args && !json_is_null(args) ? json_dumps(args, JSON_COMPACT) : NULL;
    if (dump || args_text)
      sbuf_printf(&b, "\n        arguments: %.600s", dump ? dump : args_text);
    free(dump);
    const char *desc = json_string_value(json_object_get(s, "description"));
    if (desc && desc[0])
      sbuf_printf(&b, "\n        %.600s", desc);
    out_puts(con->out, sbuf_str(&b));
    sbuf_free(&b);
  }
  json_array_foreach(json_object_get(r, "errors"), i, s)
      out_printf(con->out, "  ! %s", json_string_value(json_object_get(s, "message")) ?: "?");
}

static void con_plan(console_t *con, const char *rest) {
  json_t *r = plan_verb(con, "plan", rest, false);
  if (r) {
    plan_line(con, r);
    show_plan(con, r);
  }
  json_decref(r);
}

static void modify_usage(console_t *con) {
  out_puts(con->out, "usage: /modify <plan id> <op> <step> [value], op one of:\n"
                     "  set_agent <step> <role>            (the role's model runs the step)\n"
                     "  set_arguments <step> <json>        e.g. {\"path\": \"notes.txt\"}\n"
                     "  set_dependencies <step> <1,2|none>\n"
                     "  set_tool <step> <tool|none> · set_title <step> <text> · set_estimate <step> <seconds>\n"
                     "  remove_step <step>\n"
                     "  /modify <plan id> add_step {\"title\": ..., \"agent\": ..., \"dependencies\": [1]}");
}

static void con_modify(console_t *con, const char *rest) {
  char idw[32], op[64], step[32], *end = NULL;
  rest = first_word(rest, idw, sizeof idw);
  rest = first_word(rest, op, sizeof op);
  long long id = strtoll(idw, &end, 10);
  if (!idw[0] || *end || id <= 0 || !op[0]) {
    modify_usage(con);
    return;
  }
  char *words[3] = {op, step, NULL};
  int n = 2;
  if (strcmp(op, "add_step") == 0 || strcmp(op, "--edit") == 0) {
    words[1] = (char *)rest;
  } else {
    const char *value = first_word(rest, step, sizeof step);
    if (value[0])
      words[n++] = (char *)value;
  }
  json_t *edit = words[1][0] ? ctl_plan_edit(n, words) : NULL;
  if (!edit) {
    modify_usage(con);
    return;
  }
  /* The plan_modified event shows the plan as it is now. */
  json_decref(console_request(con, "modify", json_pack("{s:I, s:o}", "id", (json_int_t)id, "edit", edit)));
}

static void con_pause(console_t *con, const char *rest) {
  json_t *r = plan_verb(con, "pause", rest, false);
  if (r)
    out_printf(con->out, "workflow %lld: %s", (long long)json_integer_value(json_object_get(r, "id")),
               json_string_value(json_object_get(r, "status")) ?: "paused");
  json_decref(r);
}

static void con_resume(console_t *con, const char *rest) {
  json_t *r = plan_verb(con, "resume", rest, false);
  if (r)
    out_printf(con->out, "workflow %lld: %s", (long long)json_integer_value(json_object_get(r, "id")),
               json_string_value(json_object_get(r, "status")) ?: "running");
  json_decref(r);
}

static void params_text(sbuf_t *b, const json_t *params) {
  size_t i;
  json_t *v;
  json_array_foreach(params, i, v) sbuf_printf(b, "%s%s", i ? ", " : "", json_string_value(v) ?: "?");
  if (json_array_size(params) == 0)
    sbuf_puts(b, "none");
}

static void con_template(console_t *con, const char *rest) {
  char sub[16], a[128];
  rest = first_word(rest, sub, sizeof sub);
  if (strcmp(sub, "list") == 0) {
    json_t *r = console_request(con, "template_list", NULL);
    size_t i;
    json_t *t;
    if (r && json_array_size(r) == 0)
      out_puts(con->out, "no templates yet: /template save <plan id> <name>");
    json_array_foreach(r, i, t) {
      sbuf_t b = {0};
      const json_t *plan = json_object_get(t, "plan");
      sbuf_printf(&b, "📐 %s \"%s\" · %zu steps · params: ", json_string_value(json_object_get(t, "name")) ?: "?",
                  json_string_value(json_object_get(plan, "title")) ?: "", json_array_size(json_object_get(plan, "steps")));
      params_text(&b, json_object_get(t, "params"));
      out_puts(con->out, sbuf_str(&b));
      sbuf_free(&b);
    }
    json_decref(r);
    return;
  }
  if (strcmp(sub, "save") == 0) {
    char *end = NULL;
    rest = first_word(rest, a, sizeof a);
    long long id = strtoll(a, &end, 10);
    char name[128];
    first_word(rest, name, sizeof name);
    if (a[0] && !*end && id > 0 && name[0]) {
      json_t *r = console_request(con, "template_save", json_pack("{s:I, s:s}", "id", (json_int_t)id, "name", name));
      if (r) {
        sbuf_t b = {0};
        sbuf_printf(&b, "template %s saved from plan %lld · params: ", name, id);
        params_text(&b, json_object_get(r, "params"));
        out_puts(con->out, sbuf_str(&b));
        sbuf_free(&b);
      }
      json_decref(r);
      return;
    }
  } else if (strcmp(sub, "run") == 0) {
    rest = first_word(rest, a, sizeof a);
    if (a[0]) {
      json_t *values = json_object();
      while (rest[0]) {
        char kv[512];
        rest = first_word(rest, kv, sizeof kv);
        char *eq = strchr(kv, '=');
        if (!eq) {
          out_printf(con->out, "template values are key=value, got \"%s\"", kv);
          json_decref(values);
          return;
        }
        *eq = '\0';
        json_object_set_new(values, kv, json_string(eq + 1));
      }
      /* The plan_proposed event shows the new plan and asks for a decision. */
      json_decref(console_request(con, "template_run", json_pack("{s:s, s:o}", "name", a, "values", values)));
      return;
    }
  }
  out_puts(con->out, "usage: /template save <plan id> <name> | /template list | /template run <name> [key=value ...]");
}

static void con_approve(console_t *con, const char *rest) {
  json_t *r = plan_verb(con, "approve", rest, false);
  if (r)
    out_printf(con->out, "plan %lld approved: the workflow runs (its steps show here as they go)",
               (long long)json_integer_value(json_object_get(r, "id")));
  json_decref(r);
}

static void con_reject(console_t *con, const char *rest) {
  json_t *r = plan_verb(con, "reject", rest, false);
  if (r)
    out_printf(con->out, "plan %lld: %s", (long long)json_integer_value(json_object_get(r, "id")),
               json_string_value(json_object_get(r, "status")) ?: "rejected");
  json_decref(r);
}

static void con_cancel_workflow(console_t *con, const char *rest) {
  json_t *r = plan_verb(con, "cancel_workflow", rest, true);
  if (r)
    out_printf(con->out, "workflow %lld: %s", (long long)json_integer_value(json_object_get(r, "id")),
               json_string_value(json_object_get(r, "status")) ?: "cancelled");
  json_decref(r);
}

static void con_exit(console_t *con, const char *rest) {
  (void)rest;
  con->quit = true;
}

static const command_t commands[] = {
    {"/spawn", "<role> <task>", "spawn a sub-agent (reviewer, researcher, implementer, tester, optimizer, ...)",
     con_spawn},
    {"/agents", "", "list the agents: role, model, status, messages, tokens, cost", con_agents},
    {"/stop", "<agent id>", "stop a sub-agent", con_stop},
    {"/stop_all", "", "stop every sub-agent", con_stop_all},
    {"/config", "", "show the broker's configuration (API keys masked)", con_config},
    {"/stats", "", "messages, tokens and cost per agent, and the savings against the main model", con_stats},
    {"/stream", "", "toggle token-by-token display of the main agent", con_stream},
    {"/thinking", "", "toggle the display of thinking (dimmed)", con_thinking},
    {"/reset", "", "clear the main agent's conversation", con_reset},
    {"/history", "[agent id]", "show an agent's conversation (default: main)", con_history},
    {"/nodes", "", "list the agent daemons", con_nodes},
    {"/plans", "", "list the workflow plans agents proposed", con_plans},
    {"/plan", "<plan id>", "show a plan with its steps", con_plan},
    {"/approve", "<plan id>", "run a plan as a workflow", con_approve},
    {"/reject", "<plan id>", "discard a plan", con_reject},
    {"/modify", "<plan id> <op> <step> [value]", "edit a pending plan (/modify alone lists the ops)", con_modify},
    {"/pause", "<plan id>", "pause a workflow (running steps finish)", con_pause},
    {"/resume", "<plan id>", "resume a paused workflow", con_resume},
    {"/cancel_workflow", "[plan id]", "cancel the running workflow (its changes are rolled back)", con_cancel_workflow},
    {"/template", "save|list|run ...", "save a plan as a template, list them, run one with key=value", con_template},
    {"/help", "", "show this help", con_help},
    {"/exit", "", "leave the console (the cluster keeps running)", con_exit},
    {"/quit", NULL, NULL, con_exit},
    {"/stop-all", NULL, NULL, con_stop_all},
};

static void con_help(console_t *con, const char *rest) {
  (void)rest;
  sbuf_t b = {0};
  sbuf_puts(&b, "Commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (!commands[i].help)
      continue;
    char head[64];
    snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
    if (strlen(head) > 26)
      sbuf_printf(&b, "  %s\n  %-26s %s\n", head, "", commands[i].help);
    else
      sbuf_printf(&b, "  %-26s %s\n", head, commands[i].help);
  }
  sbuf_puts(&b, "  @<agent id> <message>      send a message to a sub-agent\n"
                "  <anything else>            ask the main agent\n"
                "Tab completes commands, roles and agent ids. Ctrl-C cancels the main agent's turn;\n"
                "Ctrl-C twice (or /exit) leaves; the cluster keeps running.\n");
  out_puts(con->out, sbuf_str(&b));
  sbuf_free(&b);
}

static void send_to(console_t *con, const char *line) {
  char id[128];
  const char *text = first_word(line + 1, id, sizeof id);
  if (!id[0] || !text[0]) {
    out_puts(con->out, "usage: @<agent id> <message>");
    return;
  }
  json_decref(console_request(con, "send", json_pack("{s:s, s:s}", "id", id, "text", text)));
}

static void ask(console_t *con, const char *text) {
  json_t *r = console_request(con, "ask", json_pack("{s:s, s:s}", "text", text, "session", "main"));
  if (!r)
    return;
  int64_t turn = json_integer_value(json_object_get(r, "turn"));
  con->chain = turn;
  if (!con->main_turn) {
    con->main_turn = turn;
    con->cancel_sent = false;
  }
  const char *status = json_string_value(json_object_get(r, "status"));
  if (status && strcmp(status, "queued") == 0)
    note(con, "(turn %lld is queued: it starts when the main agent and a node are free)", (long long)turn);
  json_decref(r);
}

/* Answers a spawn proposal with the confirm verb. */
static void answer_spawn(console_t *con, const json_t *p, bool yes) {
  json_t *r = console_request(con, "confirm",
                              json_pack("{s:O, s:b}", "proposal", json_object_get(p, "proposal"), "accept", yes));
  const char *id = json_string_value(json_object_get(r, "spawned"));
  if (id) {
    json_object_set_new(con->mine, id, json_true());
    json_object_set(con->ids, id, json_object_get(p, "role"));
  } else if (r) {
    out_puts(con->out, "not spawned");
  }
  json_decref(r);
}

/* Answers a node's question whether a tool call may run. */
static void answer_tool(console_t *con, const json_t *q, bool yes) {
  json_decref(console_request(con, "approve_tool", json_pack("{s:O, s:O, s:b}", "turn", json_object_get(q, "turn"),
                                                             "seq", json_object_get(q, "seq"), "allow", yes)));
}

static void run_command(console_t *con, const char *s);

/* A plan's decision: [A]pprove, [R]eject, [M]odify (the plan stays pending), [V]iew (and asked again). */
static void answer_plan(console_t *con, const json_t *q, const char *line) {
  json_int_t id = json_integer_value(json_object_get(q, "id"));
  char c = (char)tolower((unsigned char)line[0]);
  bool word = line[1] == '\0' || strcasecmp(line, "approve") == 0 || strcasecmp(line, "reject") == 0 ||
              strcasecmp(line, "modify") == 0 || strcasecmp(line, "view") == 0;
  if (line[0] == '/') { /* a command meanwhile (/plan, /modify ...): the question stays */
    run_command(con, line);
    return;
  }
  if (!word || !strchr("armv", c)) {
    out_printf(con->out, "please answer a (approve), r (reject), m (modify) or v (view) for plan %lld", (long long)id);
    return;
  }
  if (c == 'v') {
    json_t *r = console_request(con, "plan", json_pack("{s:I}", "id", id));
    if (r)
      show_plan(con, r);
    json_decref(r);
    return; /* asked again */
  }
  json_array_remove(con->questions, 0);
  if (c == 'a') {
    json_t *r = console_request(con, "approve", json_pack("{s:I}", "id", id));
    if (r)
      out_printf(con->out, "plan %lld approved: the workflow runs (its steps show here as they go)", (long long)id);
    json_decref(r);
  } else if (c == 'r') {
    json_t *r = console_request(con, "reject", json_pack("{s:I}", "id", id));
    if (r)
      out_printf(con->out, "plan %lld: %s", (long long)id, json_string_value(json_object_get(r, "status")) ?: "rejected");
    json_decref(r);
  } else {
    out_printf(con->out, "plan %lld stays pending: change it with /modify %lld <op> <step> [value] "
                         "(/modify lists the ops), then /approve %lld",
               (long long)id, (long long)id, (long long)id);
  }
}

/* The line answers the first waiting question (a plan, a spawn proposal or a tool approval). */
static void answer_question(console_t *con, const char *line) {
  json_t *q = json_incref(json_array_get(con->questions, 0));
  if (strcmp(json_string_value(json_object_get(q, "q")), "plan") == 0) {
    answer_plan(con, q, line);
    json_decref(q);
    return;
  }
  bool yes = strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
  bool no = strcasecmp(line, "n") == 0 || strcasecmp(line, "no") == 0;
  bool tool = strcmp(json_string_value(json_object_get(q, "q")), "tool") == 0;
  if (!yes && !no) {
    if (tool)
      out_puts(con->out, "please answer y or n: may the tool call above run?");
    else
      out_printf(con->out, "please answer y or n: spawn a %s for \"%.200s\"?",
                 json_string_value(json_object_get(q, "role")), json_string_value(json_object_get(q, "task")));
  } else {
    json_array_remove(con->questions, 0);
    if (tool)
      answer_tool(con, q, yes);
    else
      answer_spawn(con, q, yes);
  }
  json_decref(q);
}

static void run_command(console_t *con, const char *s) {
  char name[64];
  const char *rest = first_word(s, name, sizeof name);
  size_t i;
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, name) == 0)
      break;
  if (i < sizeof commands / sizeof commands[0])
    commands[i].fn(con, rest);
  else
    out_printf(con->out, "unknown command %s: /help lists the commands", name);
}

void console_line(console_t *con, const char *raw) {
  char *line = strdup(raw);
  size_t n = strlen(line);
  while (n && isspace((unsigned char)line[n - 1]))
    line[--n] = '\0';
  const char *s = line + strspn(line, " \t");
  if (!s[0]) {
    free(line);
    return;
  }
  if (json_array_size(con->questions) > 0) {
    answer_question(con, s);
  } else if (s[0] == '/') {
    run_command(con, s);
  } else if (s[0] == '@') {
    send_to(con, s);
  } else {
    ask(con, s);
  }
  free(line);
}
