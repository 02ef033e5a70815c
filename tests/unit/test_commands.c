/* Tests of ctl's command table (ctl/commands.c): every entry has its usage and
 * help, names are unique, the console and cadre find the same entry for the
 * same command, the parsers turn words into the verb's arguments, and words
 * they refuse are answered with the usage line (or the reason) and no request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "commands.h"
#include "render.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

/* cadre's words: "NAME a b c" split at spaces into argv. */
typedef struct {
  int argc;
  char *argv[32];
  char *copy;
} argv_t;

static void split(argv_t *a, const char *line) {
  a->argc = 0;
  a->copy = strdup(line);
  char *save = NULL;
  for (char *t = strtok_r(a->copy, " ", &save); t && a->argc < 32; t = strtok_r(NULL, " ", &save))
    a->argv[a->argc++] = t;
}

/* Parses line ("NAME words" for cadre, "/NAME words" for the console) into req;
 * returns what cmd_parse (or the option scan) returned and fills refusal. */
static int parse_line(const char *line, cmd_req_t *req, sbuf_t *refusal, bool *json) {
  bool console = line[0] == '/';
  int rc;
  const cmd_t *c;
  cmd_words_t w;
  memset(req, 0, sizeof *req);
  if (console) {
    char name[64];
    size_t n = strcspn(line + 1, " ");
    snprintf(name, sizeof name, "%.*s", (int)n, line + 1);
    c = cmd_find_slash(name);
    assert_non_null(c);
    cmd_words_line(&w, line + 1 + n);
    rc = cmd_parse(c, &w, req);
  } else {
    argv_t a;
    split(&a, line);
    c = cmd_find(a.argv[0]);
    assert_non_null(c);
    rc = cmd_words_argv(&w, c, a.argc, a.argv, req, json);
    if (rc == 0)
      rc = cmd_parse(c, &w, req);
    free(a.copy);
  }
  if (rc < 0)
    cmd_refusal(refusal, c, req, console);
  cmd_words_free(&w);
  return rc;
}

/* ---- the table ---------------------------------------------------------- */

static void every_command_has_usage_and_help(void **state) {
  (void)state;
  size_t n;
  const cmd_t *t = cmd_table(&n);
  assert_true(n > 20);
  for (size_t i = 0; i < n; i++) {
    const cmd_t *c = &t[i];
    char what[64];
    snprintf(what, sizeof what, "%s", c->name ? c->name : c->slash);
    assert_true(c->name || c->slash);
    assert_non_null(c->help);
    assert_true(strlen(c->help) > 5);
    /* Each runs some way: a request (parser and renderer), its own runner, or the console itself. */
    assert_true((c->parse && c->show) || c->run || c->local);
    assert_true(!c->run || c->name);
    assert_true(!c->local || c->slash);
    assert_true(!c->wait || (c->opts & CMD_OPT_WAIT));
    if (c->name) {
      sbuf_t b = {0};
      cmd_usage(&b, c, false);
      char want[96];
      snprintf(want, sizeof want, "usage: cadre %s", c->name);
      assert_true(strncmp(sbuf_str(&b), want, strlen(want)) == 0);
      sbuf_free(&b);
    }
    if (c->slash) {
      sbuf_t b = {0};
      cmd_usage(&b, c, true);
      char want[96];
      snprintf(want, sizeof want, "usage: /%s", c->slash);
      assert_true(strncmp(sbuf_str(&b), want, strlen(want)) == 0);
      sbuf_free(&b);
    }
    /* A command that needs words says which. */
    cmd_words_t none = {0};
    cmd_req_t req = {0};
    if (c->parse && cmd_parse(c, &none, &req) < 0)
      assert_true(c->name ? c->usage != NULL : c->args != NULL);
    cmd_req_clear(&req);
  }
}

static void names_are_unique(void **state) {
  (void)state;
  size_t n;
  const cmd_t *t = cmd_table(&n);
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++) {
      if (t[i].name && t[j].name)
        assert_string_not_equal(t[i].name, t[j].name);
      const char *ci[2] = {t[i].slash, t[i].alias}, *cj[2] = {t[j].slash, t[j].alias};
      for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
          if (ci[a] && cj[b])
            assert_string_not_equal(ci[a], cj[b]);
    }
}

static void console_and_cadre_find_the_same_entry(void **state) {
  (void)state;
  size_t n;
  const cmd_t *t = cmd_table(&n);
  for (size_t i = 0; i < n; i++) {
    if (t[i].name)
      assert_ptr_equal(cmd_find(t[i].name), &t[i]);
    if (t[i].slash)
      assert_ptr_equal(cmd_find_slash(t[i].slash), &t[i]);
    if (t[i].alias)
      assert_ptr_equal(cmd_find_slash(t[i].alias), &t[i]);
  }
  /* The names users type today, in both places. */
  static const struct {
    const char *cli, *slash;
  } same[] = {{"spawn", "spawn"},       {"agents", "agents"},     {"stop", "stop"},
              {"stop-all", "stop_all"}, {"stop-all", "stop-all"}, {"stats", "stats"},
              {"config", "config"},     {"reset", "reset"},       {"history", "history"},
              {"nodes", "nodes"},       {"plans", "plans"},       {"plan", "plan"},
              {"approve", "approve"},   {"reject", "reject"},     {"modify", "modify"},
              {"pause", "pause"},       {"resume", "resume"},     {"cancel", "cancel_workflow"},
              {"template", "template"}};
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    assert_non_null(cmd_find(same[i].cli));
    assert_ptr_equal(cmd_find(same[i].cli), cmd_find_slash(same[i].slash));
  }
  static const char *cli_only[] = {"ask",    "chat", "call", "send",   "watch",  "sessions",
                                   "status", "up",   "down", "keygen", "console"};
  for (size_t i = 0; i < sizeof cli_only / sizeof cli_only[0]; i++)
    assert_non_null(cmd_find(cli_only[i]));
  static const char *console_only[] = {"stream", "thinking", "help", "exit", "quit"};
  for (size_t i = 0; i < sizeof console_only / sizeof console_only[0]; i++) {
    assert_non_null(cmd_find_slash(console_only[i]));
    assert_null(cmd_find(console_only[i]));
  }
  assert_ptr_equal(cmd_find_slash("quit"), cmd_find_slash("exit"));
  assert_null(cmd_find("bogus"));
  assert_null(cmd_find_slash("bogus"));
}

static void help_lists_every_command(void **state) {
  (void)state;
  sbuf_t cli = {0}, con = {0};
  cmd_help(&cli, false);
  cmd_help(&con, true);
  size_t n;
  const cmd_t *t = cmd_table(&n);
  for (size_t i = 0; i < n; i++) {
    char want[96];
    if (t[i].name) {
      snprintf(want, sizeof want, "  %s ", t[i].name);
      assert_non_null(strstr(sbuf_str(&cli), want));
      assert_non_null(strstr(sbuf_str(&cli), t[i].help));
    }
    if (t[i].slash) {
      snprintf(want, sizeof want, "  /%s ", t[i].slash);
      assert_non_null(strstr(sbuf_str(&con), want));
    }
    if (t[i].alias) { /* not listed */
      snprintf(want, sizeof want, "  /%s ", t[i].alias);
      assert_null(strstr(sbuf_str(&con), want));
    }
  }
  assert_non_null(strstr(sbuf_str(&con), "  /spawn <role> <task>"));
  sbuf_free(&cli);
  sbuf_free(&con);
}

/* ---- parsers: words refused ----------------------------------------------- */

static const struct {
  const char *name;
  const char *line;  /* "NAME ..." for cadre, "/NAME ..." for the console */
  const char *shown; /* what the user is told (a substring) */
} bad_cases[] = {
    {"spawn without words", "spawn", "usage: cadre spawn [--wait] ROLE TASK"},
    {"spawn without a task", "spawn reviewer", "usage: cadre spawn [--wait] ROLE TASK"},
    {"/spawn without a task", "/spawn reviewer", "usage: /spawn <role> <task>   e.g. /spawn reviewer"},
    {"spawn with an unknown option", "spawn --fast reviewer go", "spawn: unknown option --fast"},
    {"agents with --wait", "agents --wait", "agents: unknown option --wait"},
    {"send without text", "send reviewer-1", "usage: cadre send [--wait] ID TEXT"},
    {"stop without an id", "stop", "usage: cadre stop ID"},
    {"/stop without an id", "/stop", "usage: /stop <agent id>   (/agents lists them)"},
    {"plan without an id", "plan", "usage: cadre plan ID"},
    {"plan with a word for an id", "plan three", "expected a plan id (a positive number), got \"three\""},
    {"plan with zero", "plan 0", "expected a plan id"},
    {"approve with a negative id", "approve -2", "expected a plan id"},
    {"/approve without an id", "/approve",
     "usage: /approve <plan id> [budget_tokens N] [budget_cost USD]   (/plans lists them)"},
    {"approve with a budget and no id", "approve --budget-cost 0.5", "usage: cadre approve ID"},
    {"approve with a word for a budget", "approve 3 --budget-cost lots", "approve: budget_cost takes an amount in USD"},
    {"/approve with a negative budget", "/approve 3 budget_tokens -5",
     "approve: budget_tokens takes a number of tokens"},
    {"/approve with two ids", "/approve 3 4", "usage: /approve <plan id>"},
    {"approve --budget-tokens without a value", "approve 3 --budget-tokens", "approve: unknown option --budget-tokens"},
    {"reject with a half number", "reject 3x", "expected a plan id"},
    {"pause without an id", "/pause", "usage: /pause <plan id>"},
    {"resume without an id", "resume", "usage: cadre resume ID"},
    {"cancel with two ids", "cancel 1 2", "usage: cadre cancel [ID] [--no-rollback]"},
    {"/cancel_workflow with a word", "/cancel_workflow soon", "expected a plan id"},
    {"/modify alone", "/modify", "usage: /modify <plan id> <op> <step> [value], op one of:\n  set_agent"},
    {"modify without a step", "modify 1 set_agent", "usage: cadre modify ID (set_agent|"},
    {"modify with a word for a step", "modify 1 set_agent two researcher", "usage: cadre modify ID"},
    {"modify with bad JSON", "modify 1 --edit {nope", "usage: cadre modify ID"},
    {"/modify of plan zero", "/modify 0 remove_step 1", "expected a plan id"},
    {"template alone", "template", "usage: cadre template save ID NAME | cadre template list"},
    {"/template with a bad word", "/template show", "usage: /template save <plan id> <name> | /template list"},
    {"template save without a name", "template save 3", "usage: cadre template save"},
    {"template save of a word", "/template save x name", "expected a plan id"},
    {"template run without a name", "template run", "usage: cadre template"},
    {"template run with a bare value", "template run maker name", "template values are key=value, got \"name\""},
};

static void parsers_refuse_bad_words(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    cmd_req_t req;
    sbuf_t shown = {0};
    bool json = false;
    int rc = parse_line(bad_cases[i].line, &req, &shown, &json);
    if (rc != -1 || !strstr(sbuf_str(&shown), bad_cases[i].shown) || req.args)
      fail_msg("%s: rc %d, shown \"%s\", want \"%s\"", bad_cases[i].name, rc, sbuf_str(&shown), bad_cases[i].shown);
    sbuf_free(&shown);
    cmd_req_clear(&req);
  }
}

/* ---- parsers: words accepted ---------------------------------------------- */

static const struct {
  const char *name;
  const char *line;
  const char *verb;
  const char *args; /* JSON, or NULL: none */
  unsigned opts;
} good_cases[] = {
    {"spawn", "spawn reviewer Review the code", "spawn", "{\"role\":\"reviewer\",\"task\":\"Review the code\"}", 0},
    {"spawn --wait after the words", "spawn reviewer Review --wait", "spawn",
     "{\"role\":\"reviewer\",\"task\":\"Review\"}", CMD_OPT_WAIT},
    {"/spawn keeps the task as typed", "/spawn  tester   Run  the suite", "spawn",
     "{\"role\":\"tester\",\"task\":\"Run  the suite\"}", 0},
    {"send", "send reviewer-1 --wait What now?", "send", "{\"id\":\"reviewer-1\",\"text\":\"What now?\"}",
     CMD_OPT_WAIT},
    {"agents", "agents", "agents", NULL, 0},
    {"/stop_all", "/stop_all", "stop_all", NULL, 0},
    {"stop-all", "stop-all", "stop_all", NULL, 0},
    {"stop", "/stop reviewer-2", "stop", "{\"id\":\"reviewer-2\"}", 0},
    {"reset main by default", "reset", "reset", "{\"session\":\"main\"}", 0},
    {"/history of an agent", "/history tester-1", "history", "{\"session\":\"tester-1\"}", 0},
    {"plan", "plan 3", "plan", "{\"id\":3}", 0},
    {"approve --wait", "approve 3 --wait", "approve", "{\"id\":3}", CMD_OPT_WAIT},
    {"approve with budgets", "approve --budget-tokens 5000 3 --budget-cost=0.25 --wait", "approve",
     "{\"id\":3,\"budget_tokens\":5000,\"budget_cost\":0.25}", CMD_OPT_WAIT},
    {"/approve with a budget in dollars", "/approve 4 budget_cost $1.5", "approve", "{\"id\":4,\"budget_cost\":1.5}",
     0},
    {"modify set_profile", "modify 3 set_profile 2 big", "modify",
     "{\"id\":3,\"edit\":{\"op\":\"set_profile\",\"step\":2,\"profile\":\"big\"}}", 0},
    {"/modify set_profile default", "/modify 3 set_profile 2 default", "modify",
     "{\"id\":3,\"edit\":{\"op\":\"set_profile\",\"step\":2,\"profile\":\"default\"}}", 0},
    {"/reject", "/reject 12", "reject", "{\"id\":12}", 0},
    {"cancel alone", "cancel", "cancel_workflow", NULL, 0},
    {"cancel without rollback", "cancel 4 --no-rollback", "cancel_workflow", "{\"id\":4,\"rollback\":false}",
     CMD_OPT_NO_ROLLBACK},
    {"/cancel_workflow of a plan", "/cancel_workflow 5", "cancel_workflow", "{\"id\":5}", 0},
    {"modify set_agent", "modify 1 set_agent 2 researcher", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"set_agent\",\"step\":2,\"agent\":\"researcher\"}}", 0},
    {"modify set_dependencies none", "modify 1 set_dependencies 1 none", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"set_dependencies\",\"step\":1,\"dependencies\":[]}}", 0},
    {"/modify set_dependencies 1,2", "/modify 1 set_dependencies 3 1, 2", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"set_dependencies\",\"step\":3,\"dependencies\":[1,2]}}", 0},
    {"/modify set_arguments keeps the JSON", "/modify 2 set_arguments 1 {\"path\": \"a b.txt\"}", "modify",
     "{\"id\":2,\"edit\":{\"op\":\"set_arguments\",\"step\":1,\"arguments\":{\"path\":\"a b.txt\"}}}", 0},
    {"modify set_tool none", "modify 1 set_tool 1 none", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"set_tool\",\"step\":1,\"tool\":null}}", 0},
    {"modify remove_step", "modify 1 remove_step 2", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"remove_step\",\"step\":2}}", 0},
    {"/modify add_step", "/modify 1 add_step {\"title\": \"T\", \"agent\": \"tester\"}", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"add_step\",\"step\":{\"title\":\"T\",\"agent\":\"tester\"}}}", 0},
    {"modify --edit", "modify 1 --edit {\"op\":\"remove_step\",\"step\":1}", "modify",
     "{\"id\":1,\"edit\":{\"op\":\"remove_step\",\"step\":1}}", 0},
    {"template list", "template list", "template_list", NULL, 0},
    {"/template save", "/template save 3 maker", "template_save", "{\"id\":3,\"name\":\"maker\"}", 0},
    {"template run", "template run maker name=hello body=a=b", "template_run",
     "{\"name\":\"maker\",\"values\":{\"name\":\"hello\",\"body\":\"a=b\"}}", 0},
};

static void parsers_make_the_request(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof good_cases / sizeof good_cases[0]; i++) {
    cmd_req_t req;
    sbuf_t shown = {0};
    bool json = false;
    int rc = parse_line(good_cases[i].line, &req, &shown, &json);
    json_t *want = good_cases[i].args ? json_loads(good_cases[i].args, 0, NULL) : NULL;
    if (good_cases[i].args && !want)
      fail_msg("%s: bad JSON in the case", good_cases[i].name);
    char *got = req.args ? json_dumps(req.args, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (rc != 0 || strcmp(req.verb ? req.verb : "", good_cases[i].verb) != 0 || req.opts != good_cases[i].opts ||
        !((!want && !req.args) || (want && req.args && json_equal(want, req.args))))
      fail_msg("%s: rc %d (%s), verb %s, opts %u, args %s", good_cases[i].name, rc, sbuf_str(&shown),
               req.verb ? req.verb : "-", req.opts, got ? got : "none");
    free(got);
    json_decref(want);
    sbuf_free(&shown);
    cmd_req_clear(&req);
  }
}

static void json_option_after_the_command(void **state) {
  (void)state;
  cmd_req_t req;
  sbuf_t shown = {0};
  bool json = false;
  assert_int_equal(parse_line("stats --json", &req, &shown, &json), 0);
  assert_true(json);
  cmd_req_clear(&req);
  json = false;
  /* After "--", words that look like options are words. */
  assert_int_equal(parse_line("send a-1 -- --wait is a word", &req, &shown, &json), 0);
  assert_false(json);
  assert_int_equal(req.opts, 0);
  assert_string_equal(json_string_value(json_object_get(req.args, "text")), "--wait is a word");
  cmd_req_clear(&req);
  sbuf_free(&shown);
}

/* ---- renderers --------------------------------------------------------------- */

static void renderers_show_results_for_each_place(void **state) {
  (void)state;
  json_t *stopped = json_loads("{\"stopped\": [\"a-1\", \"b-2\"]}", 0, NULL);
  sbuf_t b = {0};
  format_how_t cli = {.console = false}, con = {.console = true};
  format_stopped(&b, stopped, &cli);
  assert_string_equal(sbuf_str(&b), "stopped: a-1 b-2\n");
  sbuf_reset(&b);
  format_stopped(&b, stopped, &con);
  assert_string_equal(sbuf_str(&b), "stopped: a-1, b-2\n");
  sbuf_reset(&b);
  json_t *all = json_loads("{\"stopped\": [], \"cancelled\": [12, 14]}", 0, NULL);
  format_stopped(&b, all, &cli);
  assert_string_equal(sbuf_str(&b), "no sub-agent was running\ncancelled turns: 12 14\n");
  sbuf_reset(&b);
  json_t *reset = json_loads("{\"session\": \"main\", \"cleared\": 4, \"cancelled\": 1}", 0, NULL);
  format_reset(&b, reset, &cli);
  assert_string_equal(sbuf_str(&b), "main: conversation cleared (4 messages set aside)\n1 turn cancelled\n");
  sbuf_reset(&b);
  json_decref(reset);
  json_decref(all);
  json_t *r = json_loads("{\"id\": 7, \"status\": \"paused\"}", 0, NULL);
  format_how_t pause = {.console = true, .verb = "pause"};
  format_decided(&b, r, &pause);
  assert_string_equal(sbuf_str(&b), "workflow 7: paused\n");
  sbuf_reset(&b);
  format_decided(&b, r, &cli);
  assert_string_equal(sbuf_str(&b), "plan 7: paused\n");
  sbuf_reset(&b);
  json_t *none = json_loads("{\"id\": 7}", 0, NULL);
  format_how_t reject = {.console = true, .verb = "reject"};
  format_decided(&b, none, &reject);
  assert_string_equal(sbuf_str(&b), "plan 7: rejected\n");
  sbuf_free(&b);
  json_decref(none);
  json_decref(r);
  json_decref(stopped);
}

/* cadre nodes: the SANDBOX column, and a warning for each node that does not run commands in one. */
static void nodes_show_their_sandbox(void **state) {
  (void)state;
  static const struct {
    const char *sandbox; /* NULL: an older node that does not say */
    const char *column, *warning, *console;
  } cases[] = {
      {"on", " on ", NULL, ""},
      {"off", " off ", "warning: n runs commands without a sandbox (--no-sandbox)", ", sandbox off"},
      {"unavailable: bubblewrap (bwrap) is not installed", " unavailable ",
       "warning: n refuses commands: sandbox unavailable: bubblewrap (bwrap) is not installed",
       ", sandbox unavailable: bubblewrap"},
      {NULL, " unknown ", NULL, ", sandbox unknown"},
  };
  format_how_t cli = {.console = false}, con = {.console = true};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *nodes = json_pack("[{s:s, s:s, s:i, s:i, s:[s], s:s}]", "name", "n", "host", "h", "slots", 2, "busy", 0,
                              "models", "*", "workspace", "/ws");
    if (cases[i].sandbox)
      json_object_set_new(json_array_get(nodes, 0), "sandbox", json_string(cases[i].sandbox));
    sbuf_t b = {0};
    format_nodes(&b, nodes, &cli);
    assert_non_null(strstr(sbuf_str(&b), "SANDBOX"));
    if (!strstr(sbuf_str(&b), cases[i].column))
      fail_msg("%s: no column \"%s\" in:\n%s", cases[i].column, cases[i].column, sbuf_str(&b));
    if (cases[i].warning ? !strstr(sbuf_str(&b), cases[i].warning) : strstr(sbuf_str(&b), "warning") != NULL)
      fail_msg("%s: warning wrong in:\n%s", cases[i].column, sbuf_str(&b));
    sbuf_reset(&b);
    format_nodes(&b, nodes, &con);
    assert_non_null(strstr(sbuf_str(&b), cases[i].console));
    if (!*cases[i].console)
      assert_null(strstr(sbuf_str(&b), "sandbox"));
    sbuf_free(&b);
    json_decref(nodes);
  }
}

/* ---- the stream renderer (render.c: the console, cadre watch and cadre ask) ---- */

static const struct {
  const char *name;
  const char *kind, *text; /* the delta */
  const char *line;        /* what every place shows ("" nothing) */
  out_style_t style;
} tool_cases[] = {
    {"a tool call", "tool_call",
     "{\"id\": \"c1\", \"name\": \"write_file_tool\", \"arguments\": \"{\\\"path\\\": \\\"a\\\"}\"}",
     "→ write_file_tool {\"path\": \"a\"}", OUT_DIM},
    {"an OpenAI call, whitespace folded", "tool_call",
     "{\"id\": \"c2\", \"function\": {\"name\": \"run\", \"arguments\": \"a\\n\\n  b\"}}", "→ run a b", OUT_DIM},
    {"a result", "tool_result", "{\"id\": \"c1\", \"name\": \"read_file\", \"ok\": true, \"summary\": \"12 lines\"}",
     "← ✓ read_file 12 lines", OUT_DIM},
    {"a result without ok", "tool_result", "{\"name\": \"read_file\", \"summary\": \"done\"}", "← ✓ read_file done",
     OUT_DIM},
    {"a failed result", "tool_result", "{\"name\": \"write_file_tool\", \"ok\": false, \"summary\": \"denied\"}",
     "← ✗ write_file_tool denied", OUT_ERROR},
    {"not JSON", "tool_call", "{nope", "→  ", OUT_DIM},
    {"text is no tool", "text", "hello", "", OUT_DIM},
};

static void tool_deltas_read_as_one_line(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof tool_cases / sizeof tool_cases[0]; i++) {
    proto_msg_t m = {.type = PROTO_DELTA, .kind = (char *)tool_cases[i].kind, .text = (char *)tool_cases[i].text};
    sbuf_t b = {0};
    out_style_t style = render_tool_delta(&b, &m);
    if (strcmp(sbuf_str(&b), tool_cases[i].line) != 0 || style != tool_cases[i].style)
      fail_msg("%s: \"%s\" (style %d), want \"%s\" (style %d)", tool_cases[i].name, sbuf_str(&b), style,
               tool_cases[i].line, tool_cases[i].style);
    sbuf_free(&b);
    /* The same from the call map, which wins over the text (here stale). */
    json_t *call = json_loads(tool_cases[i].text, 0, NULL);
    if (json_is_object(call)) {
      proto_msg_t n = {.type = PROTO_DELTA, .kind = (char *)tool_cases[i].kind, .text = "{}", .call = call};
      style = render_tool_delta(&b, &n);
      if (strcmp(sbuf_str(&b), tool_cases[i].line) != 0 || style != tool_cases[i].style)
        fail_msg("%s (call map): \"%s\", want \"%s\"", tool_cases[i].name, sbuf_str(&b), tool_cases[i].line);
      sbuf_free(&b);
    }
    json_decref(call);
  }
}

static void long_arguments_are_cut_on_a_character(void **state) {
  (void)state;
  sbuf_t args = {0}, b = {0};
  for (int i = 0; i < 200; i++)
    sbuf_puts(&args, "é");
  json_t *call = json_pack("{s:s, s:s}", "name", "edit", "arguments", sbuf_str(&args));
  render_call(&b, call);
  assert_true(b.len < 5 + 240 + 4);
  assert_true(util_utf8_valid(b.s, b.len));
  assert_string_equal(b.s + b.len - strlen("…"), "…");
  json_decref(call);
  sbuf_free(&args);
  sbuf_free(&b);
}

static void turn_ends_read_the_same_everywhere(void **state) {
  (void)state;
  static const struct {
    const char *done, *line;
  } cases[] = {
      {"{\"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 3}, \"model\": \"m\", \"node\": \"n\", "
       "\"finish_reason\": \"stop\"}",
       "7 tokens in, 3 out · 1.50 s · m on n"},
      {"{\"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 3, \"counted\": true}, \"model\": \"m\", "
       "\"node\": \"n\", \"finish_reason\": \"length\"}",
       "7 tokens in, 3 out (estimated) · 1.50 s · m on n · finish: length"},
      {"{\"model\": \"m\", \"node\": \"n\", \"finish_reason\": \"tool_calls\"}",
       "0 tokens in, 0 out · 1.50 s · m on n · delegating to sub-agents"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *done = json_loads(cases[i].done, 0, NULL);
    assert_non_null(done);
    sbuf_t b = {0};
    render_turn_end(&b, done, 1.5);
    assert_string_equal(sbuf_str(&b), cases[i].line);
    sbuf_free(&b);
    json_decref(done);
  }
  static const struct {
    const char *failed, *line;
    out_style_t style;
  } failures[] = {
      {"{\"status\": \"cancelled\", \"code\": \"cancelled\", \"detail\": \"cancelled by the user\"}",
       "cancelled (cancelled by the user)", OUT_DIM},
      {"{\"status\": \"failed\", \"code\": \"http_500\", \"detail\": \"server error\"}",
       "failed: server error (HTTP 500)", OUT_ERROR},
      {"{\"code\": \"no_node\", \"detail\": \"no agent daemon serving model m joined within 5 s\"}",
       "failed: no agent daemon serving model m joined within 5 s", OUT_ERROR},
      {"{\"code\": \"lost\"}", "failed: The turn ended while the controller was away from the broker (cadre only).",
       OUT_ERROR},
      {"{\"code\": \"weird\"}", "failed: no reason given", OUT_ERROR},
  };
  for (size_t i = 0; i < sizeof failures / sizeof failures[0]; i++) {
    json_t *failed = json_loads(failures[i].failed, 0, NULL);
    sbuf_t b = {0};
    assert_int_equal(render_turn_failed(&b, failed), failures[i].style);
    assert_string_equal(sbuf_str(&b), failures[i].line);
    sbuf_free(&b);
    json_decref(failed);
  }
  assert_string_equal(render_thinking_mark(false), "[thinking] ");
  assert_string_equal(render_thinking_mark(true), "\033[2m");
}

/* A broker's error, as a person reads it: no internal code; --json keeps it. */
static void errors_read_without_internal_codes(void **state) {
  (void)state;
  static const struct {
    const char *err, *text;
  } cases[] = {
      {"spawn_failed: no sub-agent role \"x\" in the config", "no sub-agent role \"x\" in the config"},
      {"not_found: approve_tool: that turn is not running", "approve_tool: that turn is not running"},
      {"http_429: slow down", "slow down"},
      {"http_x: not a status", "http_x: not a status"},
      {"timeout: the broker did not answer", "the broker did not answer"},
      {"cannot send to the broker: Broken pipe", "cannot send to the broker: Broken pipe"},
      {"no colon here", "no colon here"},
      {": empty code", ": empty code"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_string_equal(ctl_error_text(cases[i].err), cases[i].text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_command_has_usage_and_help),
      cmocka_unit_test(names_are_unique),
      cmocka_unit_test(console_and_cadre_find_the_same_entry),
      cmocka_unit_test(help_lists_every_command),
      cmocka_unit_test(parsers_refuse_bad_words),
      cmocka_unit_test(parsers_make_the_request),
      cmocka_unit_test(json_option_after_the_command),
      cmocka_unit_test(renderers_show_results_for_each_place),
      cmocka_unit_test(nodes_show_their_sandbox),
      cmocka_unit_test(tool_deltas_read_as_one_line),
      cmocka_unit_test(long_arguments_are_cut_on_a_character),
      cmocka_unit_test(turn_ends_read_the_same_everywhere),
      cmocka_unit_test(errors_read_without_internal_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
