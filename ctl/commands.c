/* commands.c: the command table, its parsers, and `cadre NAME` (see commands.h). */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"

/* ---- words ---------------------------------------------------------------- */

static void words_add(cmd_words_t *w, char *word, char *rest) {
  char **nw = realloc(w->w, (size_t)(w->n + 1) * sizeof *nw);
  char **nr = nw ? realloc(w->rest, (size_t)(w->n + 1) * sizeof *nr) : NULL;
  if (!nw || !nr)
    abort();
  w->w = nw;
  w->rest = nr;
  w->w[w->n] = word;
  w->rest[w->n] = rest;
  w->n++;
}

void cmd_words_line(cmd_words_t *w, const char *line) {
  memset(w, 0, sizeof *w);
  const char *s = line ? line : "";
  for (s += strspn(s, " \t"); *s; s += strspn(s, " \t")) {
    size_t n = strcspn(s, " \t");
    words_add(w, strndup(s, n), strdup(s));
    s += n;
  }
}

/* The options of cadre's command line; "--" ends them. */
static const struct {
  const char *name;
  unsigned opt;
} options[] = {{"--wait", CMD_OPT_WAIT}, {"--no-rollback", CMD_OPT_NO_ROLLBACK}};

static int take_option(const cmd_t *c, const char *arg, cmd_req_t *req, bool *json) {
  if (strcmp(arg, "--json") == 0 || strcmp(arg, "-j") == 0) {
    *json = true;
    return 0;
  }
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
    if (strcmp(arg, options[i].name) == 0 && (c->opts & options[i].opt)) {
      req->opts |= options[i].opt;
      return 0;
    }
  snprintf(req->error, sizeof req->error, "%s: unknown option %s", c->name, arg);
  return -1;
}

/* --budget-tokens N or --budget-tokens=N (a command with CMD_OPT_BUDGET): the two words
 * budget_tokens N; the argv entries it took (0: not such an option). */
static int budget_option(cmd_words_t *w, const cmd_t *c, int argc, char **argv, int i) {
  static const char *const names[] = {"--budget-tokens", "--budget-cost"};
  for (size_t k = 0; (c->opts & CMD_OPT_BUDGET) && k < sizeof names / sizeof names[0]; k++) {
    size_t n = strlen(names[k]);
    if (strncmp(argv[i], names[k], n) != 0 || (argv[i][n] != '\0' && argv[i][n] != '='))
      continue;
    if (argv[i][n] == '\0' && i + 1 >= argc)
      return 0; /* no value: refused as an unknown option */
    words_add(w, strdup(k ? "budget_cost" : "budget_tokens"), NULL);
    words_add(w, strdup(argv[i][n] ? argv[i] + n + 1 : argv[i + 1]), NULL);
    return argv[i][n] ? 1 : 2;
  }
  return 0;
}

int cmd_words_argv(cmd_words_t *w, const cmd_t *c, int argc, char **argv, cmd_req_t *req, bool *json) {
  memset(w, 0, sizeof *w);
  bool words_only = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool option = !words_only && a[0] == '-' && a[1] == '-' && strcmp(a, "--edit") != 0;
    int took = option ? budget_option(w, c, argc, argv, i) : 0;
    if (took) {
      i += took - 1;
      continue;
    }
    if (option && a[2] == '\0')
      words_only = true;
    else if (option || (!words_only && strcmp(a, "-j") == 0)) {
      if (take_option(c, a, req, json) < 0)
        return -1;
    } else
      words_add(w, strdup(a), NULL);
  }
  for (int i = w->n - 1; i >= 0; i--) { /* rest[i]: word i and what follows it */
    sbuf_t b = {0};
    sbuf_puts(&b, w->w[i]);
    if (i + 1 < w->n)
      sbuf_printf(&b, " %s", w->rest[i + 1]);
    w->rest[i] = strdup(sbuf_str(&b));
    sbuf_free(&b);
  }
  return 0;
}

void cmd_words_free(cmd_words_t *w) {
  for (int i = 0; i < w->n; i++) {
    free(w->w[i]);
    free(w->rest[i]);
  }
  free(w->w);
  free(w->rest);
  memset(w, 0, sizeof *w);
}

/* ---- parsers ---------------------------------------------------------------- */

static const char *word(const cmd_words_t *w, int i) {
  return i < w->n ? w->w[i] : NULL;
}

static int parse_none(const cmd_words_t *w, cmd_req_t *req) {
  (void)w;
  (void)req;
  return 0;
}

/* A plan id (a positive number) into *id; -1 when s is none (req->error says why when s is not a number). */
static int plan_id(const char *s, json_int_t *id, cmd_req_t *req) {
  char *end = NULL;
  long long v = s ? strtoll(s, &end, 10) : 0;
  if (!s || *end || v <= 0) {
    if (s)
      snprintf(req->error, sizeof req->error, "expected a plan id (a positive number), got \"%.200s\"", s);
    return -1;
  }
  *id = v;
  return 0;
}

/* spawn ROLE TASK */
static int parse_spawn(const cmd_words_t *w, cmd_req_t *req) {
  if (w->n < 2)
    return -1;
  req->args = json_pack("{s:s, s:s}", "role", w->w[0], "task", w->rest[1]);
  return 0;
}

/* send ID TEXT */
static int parse_send(const cmd_words_t *w, cmd_req_t *req) {
  if (w->n < 2)
    return -1;
  req->args = json_pack("{s:s, s:s}", "id", w->w[0], "text", w->rest[1]);
  return 0;
}

/* stop ID */
static int parse_agent_id(const cmd_words_t *w, cmd_req_t *req) {
  if (w->n < 1)
    return -1;
  req->args = json_pack("{s:s}", "id", w->w[0]);
  return 0;
}

/* A budget's tokens (tokens: a count) or cost (USD, "$" allowed) from v into args[key]; false when v is neither. */
static bool limit_value(bool tokens, const char *v, json_t *args, const char *key) {
  char *end = NULL;
  if (tokens) {
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || n < 0)
      return false;
    json_object_set_new(args, key, json_integer(n));
    return true;
  }
  double x = strtod(v[0] == '$' ? v + 1 : v, &end);
  if (end == v || *end || !(x >= 0))
    return false;
  json_object_set_new(args, key, json_real(x));
  return true;
}

/* budget SESSION [tokens N] [cost USD]: words, as the console takes them (cadre's --tokens/--cost become them). */
static int parse_budget(const cmd_words_t *w, cmd_req_t *req) {
  if (w->n < 1 || w->n % 2 == 0)
    return -1;
  req->args = json_pack("{s:s}", "session", w->w[0]);
  for (int i = 1; i + 1 < w->n; i += 2) {
    const char *k = w->w[i];
    bool tokens = strcmp(k, "tokens") == 0;
    if ((!tokens && strcmp(k, "cost") != 0) || !limit_value(tokens, w->w[i + 1], req->args, k))
      break;
    if (i + 2 >= w->n)
      return 0;
  }
  if (w->n == 1)
    return 0;
  snprintf(req->error, sizeof req->error, "budget: give tokens N and/or cost USD (0: no limit)");
  return -1;
}

/* memory [search TEXT | pin ID | unpin ID | forget ID] */
static int parse_memory(const cmd_words_t *w, cmd_req_t *req) {
  if (w->n == 0) {
    req->args = json_pack("{s:s}", "action", "list");
    return 0;
  }
  const char *a = w->w[0];
  if (strcmp(a, "search") == 0 && w->n >= 2) {
    req->args = json_pack("{s:s, s:s}", "action", "search", "text", w->rest[1]);
    return 0;
  }
  char *end = NULL;
  long long id = w->n == 2 ? strtoll(w->w[1], &end, 10) : 0;
  if ((strcmp(a, "pin") == 0 || strcmp(a, "unpin") == 0 || strcmp(a, "forget") == 0) && id > 0 && end && !*end) {
    req->args = json_pack("{s:s, s:I}", "action", a, "id", (json_int_t)id);
    return 0;
  }
  return -1;
}

/* drain, undrain NODE */
static int parse_node(const cmd_words_t *w, cmd_req_t *req) {
  if (w->n < 1)
    return -1;
  req->args = json_pack("{s:s}", "node", w->w[0]);
  return 0;
}

/* reset, history [SESSION] (default main) */
static int parse_session(const cmd_words_t *w, cmd_req_t *req) {
  req->args = json_pack("{s:s}", "session", w->n ? w->w[0] : "main");
  return 0;
}

/* plan, approve, reject, pause, resume ID */
static int parse_plan_id(const cmd_words_t *w, cmd_req_t *req) {
  json_int_t id;
  if (plan_id(word(w, 0), &id, req) < 0)
    return -1;
  req->args = json_pack("{s:I}", "id", id);
  return 0;
}

/* approve ID [budget_tokens N] [budget_cost USD] (cadre: --budget-tokens N --budget-cost USD) */
static int parse_approve(const cmd_words_t *w, cmd_req_t *req) {
  json_int_t id = 0;
  json_t *args = json_object();
  for (int i = 0; i < w->n; i++) {
    const char *k = w->w[i];
    bool tokens = strcmp(k, "budget_tokens") == 0 || strcmp(k, "budget-tokens") == 0;
    bool cost = strcmp(k, "budget_cost") == 0 || strcmp(k, "budget-cost") == 0;
    if ((tokens || cost) && i + 1 < w->n &&
        limit_value(tokens, w->w[i + 1], args, tokens ? "budget_tokens" : "budget_cost")) {
      i++;
      continue;
    }
    if (tokens || cost)
      snprintf(req->error, sizeof req->error, "approve: %s takes %s", k,
               tokens ? "a number of tokens" : "an amount in USD");
    if (tokens || cost || id || plan_id(k, &id, req) < 0) {
      json_decref(args);
      return -1;
    }
  }
  if (!id) {
    json_decref(args);
    return -1;
  }
  json_object_set_new(args, "id", json_integer(id));
  req->args = args;
  return 0;
}

/* cancel [ID] [--no-rollback] */
static int parse_cancel(const cmd_words_t *w, cmd_req_t *req) {
  json_int_t id;
  if (w->n > 1 || (w->n == 1 && plan_id(w->w[0], &id, req) < 0))
    return -1;
  if (w->n == 0 && !(req->opts & CMD_OPT_NO_ROLLBACK))
    return 0;
  req->args = json_object();
  if (w->n)
    json_object_set_new(req->args, "id", json_integer(id));
  if (req->opts & CMD_OPT_NO_ROLLBACK)
    json_object_set_new(req->args, "rollback", json_false());
  return 0;
}

/* set_dependencies' value: "1,2" or "1 2" or "none". */
static json_t *dependencies(const char *v) {
  json_t *deps = json_array();
  char *copy = strdup(v ? v : ""), *save = NULL;
  for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
    if (strcmp(t, "none"))
      json_array_append_new(deps, json_integer(atoll(t)));
  free(copy);
  return deps;
}

/* An edit from OP STEP [VALUE]; NULL when they make none. */
static json_t *step_edit(const char *op, const char *step_word, const char *v) {
  char *end;
  long long step = strtoll(step_word, &end, 10);
  if (*end || step <= 0)
    return NULL;
  json_t *edit = json_pack("{s:s, s:I}", "op", op, "step", (json_int_t)step);
  if (strcmp(op, "set_agent") == 0 && v)
    json_object_set_new(edit, "agent", json_string(v));
  else if (strcmp(op, "set_profile") == 0 && v)
    json_object_set_new(edit, "profile", json_string(v));
  else if (strcmp(op, "set_tool") == 0)
    json_object_set_new(edit, "tool", v && strcmp(v, "none") ? json_string(v) : json_null());
  else if (strcmp(op, "set_title") == 0 && v)
    json_object_set_new(edit, "title", json_string(v));
  else if (strcmp(op, "set_estimate") == 0 && v)
    json_object_set_new(edit, "seconds", json_real(atof(v)));
  else if (strcmp(op, "set_arguments") == 0 && v)
    json_object_set_new(edit, "arguments", json_loads(v, 0, NULL) ?: json_null());
  else if (strcmp(op, "set_dependencies") == 0)
    json_object_set_new(edit, "dependencies", dependencies(v));
  return edit;
}

/* modify ID OP STEP [VALUE] | ID add_step JSON | ID --edit JSON */
static int parse_modify(const cmd_words_t *w, cmd_req_t *req) {
  json_int_t id;
  if (w->n < 3 || plan_id(w->w[0], &id, req) < 0)
    return -1;
  const char *op = w->w[1];
  json_t *edit;
  if (strcmp(op, "--edit") == 0)
    edit = json_loads(w->rest[2], 0, NULL);
  else if (strcmp(op, "add_step") == 0)
    edit = json_pack("{s:s, s:o}", "op", "add_step", "step", json_loads(w->rest[2], 0, NULL) ?: json_null());
  else
    edit = step_edit(op, w->w[2], w->n > 3 ? w->rest[3] : NULL);
  if (!json_is_object(edit)) {
    json_decref(edit);
    return -1;
  }
  req->args = json_pack("{s:I, s:o}", "id", id, "edit", edit);
  return 0;
}

/* template run NAME key=value ...: the values. */
static int template_values(const cmd_words_t *w, cmd_req_t *req) {
  json_t *values = json_object();
  for (int i = 2; i < w->n; i++) {
    char *eq = strchr(w->w[i], '=');
    if (!eq) {
      snprintf(req->error, sizeof req->error, "template values are key=value, got \"%.200s\"", w->w[i]);
      json_decref(values);
      return -1;
    }
    char *key = strndup(w->w[i], (size_t)(eq - w->w[i]));
    json_object_set_new(values, key, json_string(eq + 1));
    free(key);
  }
  req->args = json_pack("{s:s, s:o}", "name", w->w[1], "values", values);
  return 0;
}

/* template save ID NAME | list | run NAME [key=value ...] */
static int parse_template(const cmd_words_t *w, cmd_req_t *req) {
  const char *sub = word(w, 0);
  json_int_t id;
  if (sub && strcmp(sub, "list") == 0) {
    req->verb = "template_list";
    return 0;
  }
  if (sub && strcmp(sub, "save") == 0 && w->n >= 3 && plan_id(w->w[1], &id, req) == 0) {
    req->verb = "template_save";
    req->args = json_pack("{s:I, s:s}", "id", id, "name", w->w[2]);
    return 0;
  }
  if (sub && strcmp(sub, "run") == 0 && w->n >= 2) {
    req->verb = "template_run";
    return template_values(w, req);
  }
  return -1;
}

/* ---- the table ---------------------------------------------------------------- */

static int run_up(ctl_t *ctl, int argc, char **argv) {
  return cluster_up(ctl, argc, argv, false);
}

static int run_down(ctl_t *ctl, int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cluster_down(ctl);
}

static int run_status(ctl_t *ctl, int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cluster_status(ctl);
}

#define PLANS_HINT "   (/plans lists them)"

/* One command to a few lines: the table reads best as it is written. */
/* clang-format off */
static const cmd_t commands[] = {
    {.name = "console", .help = "the interactive console (the default)", .run = cmd_console},
    {.name = "ask", .usage = "[--session ID] [--yes] [--thinking|--no-thinking] TEXT",
     .help = "ask the main agent; the answer streams as it is written (--yes: tools that write files or run "
             "commands run without asking)",
     .run = cmd_ask},
    {.name = "chat", .usage = "[--session ID] [--yes] [--thinking|--no-thinking] [TEXT]",
     .help = "single-agent mode: one agent with every tool, no sub-agents", .run = cmd_chat},
    {.name = "call", .usage = "VERB [JSON]", .help = "any broker verb; the reply as JSON", .run = cmd_call},
    {.name = "dashboard", .help = "the web dashboard's address, with its access token (opened in a browser when "
                                  "there is a display)", .run = cmd_dashboard},
    {.name = "spawn", .slash = "spawn", .verb = "spawn", .opts = CMD_OPT_WAIT, .usage = "[--wait] ROLE TASK",
     .args = "<role> <task>",
     .help = "spawn a sub-agent (reviewer, researcher, implementer, tester, optimizer, ...)",
     .hint = "   e.g. /spawn reviewer Review the auth module", .parse = parse_spawn, .show = format_spawn,
     .wait = cmd_spawn_wait},
    {.name = "send", .verb = "send", .opts = CMD_OPT_WAIT, .usage = "[--wait] ID TEXT",
     .help = "a message to an agent (@ID TEXT in the console); --wait prints its answer", .parse = parse_send,
     .show = format_send, .wait = cmd_send_wait},
    {.name = "agents", .slash = "agents", .verb = "agents",
     .help = "list the agents: role, model, status, messages, tokens, cost", .parse = parse_none,
     .show = format_agents},
    {.name = "stop", .slash = "stop", .verb = "stop", .usage = "ID", .args = "<agent id>", .help = "stop a sub-agent",
     .hint = "   (/agents lists them)", .parse = parse_agent_id, .show = format_stop},
    {.name = "stop-all", .slash = "stop_all", .alias = "stop-all", .verb = "stop_all", .help = "stop every sub-agent and cancel every turn, main's too",
     .parse = parse_none, .show = format_stopped},
    {.name = "stats", .slash = "stats", .verb = "stats",
     .help = "messages, tokens and cost per agent, and the savings against the main model", .parse = parse_none,
     .show = format_stats},
    {.name = "config", .slash = "config", .verb = "config", .help = "show the broker's configuration (API keys masked)",
     .parse = parse_none, .show = format_json},
    {.slash = "stream", .help = "toggle streaming of the main agent (off: the model is asked for whole answers)", .local = console_stream},
    {.slash = "thinking", .help = "toggle the display of thinking (dimmed)", .local = console_thinking},
    {.name = "reset", .slash = "reset", .verb = "reset", .usage = "[SESSION]", .args = "[agent id]",
     .help = "cancel a conversation's turns and clear it (default: the main agent's)", .parse = parse_session,
     .show = format_reset},
    {.name = "history", .slash = "history", .verb = "history", .usage = "[SESSION]", .args = "[agent id]",
     .help = "show a conversation (default: the main agent's)", .parse = parse_session, .show = format_history},
    {.name = "watch",
     .help = "follow every agent's output and events (JSON lines with --json; --since SEQ replays what came after SEQ)",
     .run = cmd_watch},
    {.name = "nodes", .slash = "nodes", .verb = "nodes",
     .help = "the agent daemons: labels, slots in use, draining, last heartbeat", .parse = parse_none,
     .show = format_nodes},
    {.name = "budget", .slash = "budget", .verb = "budget", .usage = "SESSION [--tokens N] [--cost USD]",
     .args = "<agent id> [tokens N] [cost USD]",
     .help = "show or set a budget for an agent and all its sub-agents (workflow:N for a workflow); 0: no limit",
     .parse = parse_budget, .show = format_budget, .run = cmd_budget},
    {.name = "memory", .slash = "memory", .verb = "memory", .usage = "[search TEXT | pin ID | unpin ID | forget ID]",
     .args = "[search <text> | pin <id> | unpin <id> | forget <id>]",
     .help = "the project memory: what sub-agents found, kept per workspace and given to new sessions",
     .parse = parse_memory, .show = format_memory},
    {.name = "drain", .slash = "drain", .verb = "drain", .usage = "NODE", .args = "<node>",
     .help = "let a node finish its work and take no new turns or steps", .hint = "   (/nodes lists them)",
     .parse = parse_node, .show = format_drain},
    {.name = "undrain", .slash = "undrain", .verb = "undrain", .usage = "NODE", .args = "<node>",
     .help = "let a drained node take work again", .hint = "   (/nodes lists them)", .parse = parse_node,
     .show = format_drain},
    {.name = "sessions", .verb = "sessions", .help = "all sessions with their usage", .parse = parse_none,
     .show = format_sessions},
    {.name = "status", .help = "what runs where", .run = run_status},
    {.name = "plans", .slash = "plans", .verb = "plans", .help = "list the workflow plans agents proposed",
     .parse = parse_none, .show = format_plans},
    {.name = "plan", .slash = "plan", .verb = "plan", .usage = "ID", .args = "<plan id>",
     .help = "show a plan with its steps", .hint = PLANS_HINT, .parse = parse_plan_id, .show = format_plan},
    {.name = "approve", .slash = "approve", .verb = "approve", .opts = CMD_OPT_WAIT | CMD_OPT_BUDGET,
     .usage = "ID [--wait] [--budget-tokens N] [--budget-cost USD]",
     .args = "<plan id> [budget_tokens N] [budget_cost USD]",
     .help = "run a plan as a workflow (with a budget for its steps and their sub-agents)", .hint = PLANS_HINT,
     .parse = parse_approve, .show = format_approved, .wait = cmd_approve_wait},
    {.name = "reject", .slash = "reject", .verb = "reject", .usage = "ID", .args = "<plan id>",
     .help = "discard a plan", .hint = PLANS_HINT, .parse = parse_plan_id, .show = format_decided},
    {.name = "modify", .slash = "modify", .verb = "modify",
     .usage = "ID (set_agent|set_profile|set_tool|set_title|set_estimate|set_arguments|set_dependencies|remove_step) "
              "STEP [VALUE] | cadre modify ID add_step JSON | cadre modify ID --edit JSON",
     .args = "<plan id> <op> <step> [value]", .help = "edit a pending plan (/modify alone lists the ops)",
     .hint = ", op one of:\n"
             "  set_agent <step> <role>            (the role's model runs the step)\n"
             "  set_profile <step> <profile>       (that profile's model runs it; default: the role's)\n"
             "  set_arguments <step> <json>        e.g. {\"path\": \"notes.txt\"}\n"
             "  set_dependencies <step> <1,2|none>\n"
             "  set_tool <step> <tool|none> · set_title <step> <text> · set_estimate <step> <seconds>\n"
             "  remove_step <step>\n"
             "  /modify <plan id> add_step {\"title\": ..., \"agent\": ..., \"dependencies\": [1]}",
     .parse = parse_modify, .show = format_modified},
    {.name = "pause", .slash = "pause", .verb = "pause", .usage = "ID", .args = "<plan id>",
     .help = "pause a workflow (running steps finish)", .hint = PLANS_HINT, .parse = parse_plan_id,
     .show = format_decided},
    {.name = "resume", .slash = "resume", .verb = "resume", .usage = "ID", .args = "<plan id>",
     .help = "resume a paused workflow", .hint = PLANS_HINT, .parse = parse_plan_id, .show = format_decided},
    {.name = "cancel", .slash = "cancel_workflow", .verb = "cancel_workflow", .opts = CMD_OPT_NO_ROLLBACK,
     .usage = "[ID] [--no-rollback]", .args = "[plan id]",
     .help = "cancel the running workflow (its changes are rolled back)", .hint = PLANS_HINT,
     .parse = parse_cancel, .show = format_decided},
    {.name = "template", .slash = "template", .usage = "save ID NAME | cadre template list | cadre template run NAME "
                                                      "[key=value ...]",
     .args = "save <plan id> <name> | /template list | /template run <name> [key=value ...]",
     .help = "save a plan as a template, list them, run one with key=value", .parse = parse_template,
     .show = format_template},
    {.name = "up", .usage = "[--config F] [--secrets F] [--workspace DIR] [--slots N]",
     .help = "start the local cluster (a broker, and an agent daemon for this directory)", .run = run_up},
    {.name = "down", .help = "stop the local cluster", .run = run_down},
    {.name = "keygen", .usage = "FILE [--role node|controller --name NAME]",
     .help = "write a new CURVE key pair (for a remote node or controller) and print its authorized_keys line",
     .run = cmd_keygen},
    {.name = "replay-diff", .usage = "DIR-A DIR-B",
     .help = "compare what two recorded runs (cadre-agentd --record) answered, request by request",
     .run = cmd_replay_diff},
    {.slash = "help", .help = "show this help", .local = console_help},
    {.slash = "exit", .alias = "quit", .help = "leave the console (the cluster keeps running)", .local = console_exit},
};
/* clang-format on */

const cmd_t *cmd_table(size_t *n) {
  *n = sizeof commands / sizeof commands[0];
  return commands;
}

const cmd_t *cmd_find(const char *name) {
  for (size_t i = 0; name && i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i].name && strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

const cmd_t *cmd_find_slash(const char *name) {
  for (size_t i = 0; name && i < sizeof commands / sizeof commands[0]; i++) {
    const cmd_t *c = &commands[i];
    if ((c->slash && strcmp(c->slash, name) == 0) || (c->alias && strcmp(c->alias, name) == 0))
      return c;
  }
  return NULL;
}

/* ---- parsing, usage, help ------------------------------------------------------- */

int cmd_parse(const cmd_t *c, const cmd_words_t *w, cmd_req_t *req) {
  req->verb = c->verb;
  if (!c->parse || c->parse(w, req) < 0 || !req->verb) {
    json_decref(req->args);
    req->args = NULL;
    return -1;
  }
  return 0;
}

void cmd_req_clear(cmd_req_t *req) {
  json_decref(req->args);
  memset(req, 0, sizeof *req);
}

void cmd_usage(sbuf_t *b, const cmd_t *c, bool console) {
  const char *args = console ? c->args : c->usage;
  if (console)
    sbuf_printf(b, "usage: /%s%s%s%s", c->slash, args ? " " : "", args ? args : "", c->hint ? c->hint : "");
  else
    sbuf_printf(b, "usage: cadre %s%s%s", c->name, args ? " " : "", args ? args : "");
}

void cmd_refusal(sbuf_t *b, const cmd_t *c, const cmd_req_t *req, bool console) {
  if (req->error[0])
    sbuf_puts(b, req->error);
  else
    cmd_usage(b, c, console);
}

/* "  head    help", the help on a line of its own when head is long. */
static void help_line(sbuf_t *b, const char *head, const char *help) {
  if (strlen(head) > 26)
    sbuf_printf(b, "  %s\n  %-26s %s\n", head, "", help);
  else
    sbuf_printf(b, "  %-26s %s\n", head, help);
}

void cmd_help(sbuf_t *b, bool console) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    const cmd_t *c = &commands[i];
    const char *name = console ? c->slash : c->name, *args = console ? c->args : c->usage;
    if (!name)
      continue;
    char head[256];
    snprintf(head, sizeof head, "%s%s %s", console ? "/" : "", name, args ? args : "");
    help_line(b, head, c->help);
  }
}

/* ---- cadre NAME ------------------------------------------------------------------ */

void cmd_print(const ctl_t *ctl, const cmd_t *c, const cmd_req_t *req, const json_t *r) {
  if (ctl->json) {
    ctl_print_json(r);
    return;
  }
  format_how_t how = {.console = false, .color = ctl->color, .verb = req->verb, .args = req->args};
  sbuf_t b = {0};
  c->show(&b, r, &how);
  fputs(sbuf_str(&b), stdout);
  fflush(stdout);
  sbuf_free(&b);
}

/* Connects, asks, and shows the result or follows it (--wait). */
static int ask_broker(ctl_t *ctl, const cmd_t *c, const cmd_req_t *req) {
  client_t *cl = ctl_connect(ctl);
  if (!cl)
    return 1;
  json_t *r = ctl_request(ctl, cl, req->verb, json_incref(req->args));
  int rc = r ? 0 : 1;
  if (r && (req->opts & CMD_OPT_WAIT) && c->wait)
    rc = c->wait(ctl, cl, req, r);
  else if (r)
    cmd_print(ctl, c, req, r);
  json_decref(r);
  client_destroy(&cl);
  return rc;
}

/* cadre budget SESSION [--tokens N] [--cost USD]: the options become the console's words. */
int cmd_budget(ctl_t *ctl, int argc, char **argv) {
  const cmd_t *c = cmd_find("budget");
  cmd_words_t w = {0};
  cmd_req_t req = {0};
  int rc = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--json") == 0 || strcmp(a, "-j") == 0) {
      ctl->json = true;
      ctl->color = false;
    } else if ((strcmp(a, "--tokens") == 0 || strcmp(a, "--cost") == 0) && i + 1 < argc) {
      words_add(&w, strdup(a + 2), NULL);
      words_add(&w, strdup(argv[++i]), NULL);
    } else {
      words_add(&w, strdup(a), NULL);
    }
  }
  req.verb = c->verb;
  if (parse_budget(&w, &req) == 0)
    rc = ask_broker(ctl, c, &req);
  else
    ctl_error(ctl, "%s", req.error[0] ? req.error : "usage: cadre budget SESSION [--tokens N] [--cost USD]");
  cmd_words_free(&w);
  cmd_req_clear(&req);
  return rc;
}

int cmd_run(ctl_t *ctl, const cmd_t *c, int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    sbuf_t b = {0};
    cmd_usage(&b, c, false);
    printf("%s\n%s\n", sbuf_str(&b), c->help);
    sbuf_free(&b);
    return 0;
  }
  if (c->run)
    return c->run(ctl, argc, argv);
  cmd_words_t w;
  cmd_req_t req = {0};
  bool json = false;
  int ok = cmd_words_argv(&w, c, argc, argv, &req, &json) == 0 && cmd_parse(c, &w, &req) == 0;
  if (json)
    ctl->json = true, ctl->color = false;
  int rc = 2;
  if (ok) {
    rc = ask_broker(ctl, c, &req);
  } else {
    sbuf_t b = {0};
    cmd_refusal(&b, c, &req, false);
    ctl_error(ctl, "%s", sbuf_str(&b));
    sbuf_free(&b);
  }
  cmd_words_free(&w);
  cmd_req_clear(&req);
  return rc;
}
