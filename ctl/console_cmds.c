/* console_cmds.c: what the console does with a line the user entered. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "console.h"
#include "format.h"
#include "jx.h"
#include "plan_editor.h"

json_t *console_request(console_t *con, const char *verb, json_t *args) {
  char err[1024];
  json_t *r = client_request(con->c, verb, args, con->ctl->timeout_ms, err, sizeof err);
  if (!r)
    out_printf(con->out, "%s%s: %s%s", out_color(con->out) ? "\033[31m" : "", verb, ctl_error_text(err),
               out_color(con->out) ? "\033[0m" : "");
  return r;
}

const char *console_prompt_text(const console_t *con) {
  const json_t *q = json_array_get(con->questions, 0);
  const char *kind = jx_str(q, "q", NULL);
  if (q && strcmp(kind, "plan") == 0)
    return CONSOLE_PLAN_PROMPT;
  if (q)
    return strcmp(kind, "tool") == 0 ? CONSOLE_TOOL_PROMPT : "spawn it? [y/n] ";
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

/* What the console learns from a result: the agents it spawned, the ids there are. */
static void learn_from_reply(console_t *con, const cmd_req_t *req, const json_t *r) {
  const char *verb = req->verb;
  if (strcmp(verb, "spawn") == 0 && jx_has_str(r, "id")) {
    const char *id = jx_str(r, "id", NULL);
    json_object_set_new(con->mine, id, json_true());
    json_object_set_new(con->ids, id, json_string(jx_str(r, "role", jx_str(req->args, "role", ""))));
    out_agent(con->out, id, jx_str(r, "role", NULL));
  } else if (strcmp(verb, "agents") == 0) {
    size_t i;
    json_t *a;
    json_array_foreach(r, i, a) if (jx_has_str(a, "id"))
        json_object_set(con->ids, jx_str(a, "id", NULL), json_object_get(a, "role"));
  }
}

/* A command of the table: its words to a request, the result shown. */
static void run_entry(console_t *con, const cmd_t *c, const cmd_words_t *w) {
  if (c->local) {
    c->local(con, w);
    return;
  }
  cmd_req_t req = {0};
  sbuf_t b = {0};
  if (cmd_parse(c, w, &req) < 0) {
    cmd_refusal(&b, c, &req, true);
  } else {
    json_t *r = console_request(con, req.verb, json_incref(req.args));
    format_how_t how = {.console = true, .color = out_color(con->out), .verb = req.verb, .args = req.args};
    if (r) {
      c->show(&b, r, &how);
      learn_from_reply(con, &req, r);
    }
    json_decref(r);
  }
  if (b.len)
    out_puts(con->out, sbuf_str(&b));
  sbuf_free(&b);
  cmd_req_clear(&req);
}

/* Runs /name with the words of text (a line of the console's own making). */
static void run_named(console_t *con, const char *name, const char *text) {
  cmd_words_t w;
  cmd_words_line(&w, text);
  run_entry(con, cmd_find_slash(name), &w);
  cmd_words_free(&w);
}

void console_stream(console_t *con, const cmd_words_t *w) {
  (void)w;
  view_set_stream(con->view, !view_stream(con->view));
  con->stream_chosen = true;
  out_printf(con->out, "streaming of the main agent: %s",
             view_stream(con->view) ? "on (token by token)" : "off (the model is asked for whole answers)");
}

void console_thinking(console_t *con, const cmd_words_t *w) {
  (void)w;
  view_set_thinking(con->view, !view_thinking(con->view));
  out_printf(con->out, "thinking display: %s", view_thinking(con->view) ? "on" : "off");
}

void console_exit(console_t *con, const cmd_words_t *w) {
  (void)w;
  con->quit = true;
}

void console_help(console_t *con, const cmd_words_t *w) {
  (void)w;
  sbuf_t b = {0};
  sbuf_puts(&b, "Commands:\n");
  cmd_help(&b, true);
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
  json_t *args = json_pack("{s:s, s:s}", "text", text, "session", "main");
  if (con->stream_chosen)
    json_object_set_new(args, "stream", json_boolean(view_stream(con->view)));
  json_t *r = console_request(con, "ask", args);
  if (!r)
    return;
  int64_t turn = jx_int(r, "turn", 0);
  con->chain = turn;
  if (!con->main_turn) {
    con->main_turn = turn;
    con->cancel_sent = false;
  }
  const char *status = jx_str(r, "status", NULL);
  if (status && strcmp(status, "queued") == 0)
    note(con, "(turn %lld is queued: it starts when the main agent and a node are free)", (long long)turn);
  json_decref(r);
}

/* Answers a spawn proposal with the confirm verb. */
static void answer_spawn(console_t *con, const json_t *p, bool yes) {
  json_t *r = console_request(con, "confirm",
                              json_pack("{s:O, s:b}", "proposal", json_object_get(p, "proposal"), "accept", yes));
  const char *id = jx_str(r, "spawned", NULL);
  if (id) {
    json_object_set_new(con->mine, id, json_true());
    json_object_set(con->ids, id, json_object_get(p, "role"));
  } else if (r) {
    out_puts(con->out, "not spawned");
  }
  json_decref(r);
}

/* Answers a node's question whether a tool call may run. */
static void answer_tool(console_t *con, const json_t *q, bool yes, bool session_wide) {
  json_t *r = console_request(con, "approve_tool",
                              json_pack("{s:O, s:O, s:b, s:b}", "turn", json_object_get(q, "turn"), "seq",
                                        json_object_get(q, "seq"), "allow", yes, "session_wide", session_wide));
  if (jx_bool(r, "session_wide", false))
    note(con, "%s may run without asking for the rest of %s's session", jx_str(q, "tool", "this tool"),
         jx_str(q, "session", "this"));
  json_decref(r);
}

static void run_command(console_t *con, const char *s);

/* The plan opened as text in the user's editor; what is saved goes back as the plan's new version
 * (the broker parses and validates it). A valid result is asked about again. */
static void modify_in_editor(console_t *con, json_int_t id) {
  json_t *plan = console_request(con, "plan", json_pack("{s:I}", "id", id));
  if (!plan)
    return;
  sbuf_t text = {0};
  plan_editor_text(&text, plan);
  json_decref(plan);
  char err[512] = "", *edited = NULL;
  out_flush(con->out);
  if (con->ed)
    edit_lend_terminal(con->ed, true);
  int rc = plan_editor_run(sbuf_str(&text), &edited, err, sizeof err);
  if (con->ed)
    edit_lend_terminal(con->ed, false);
  bool same = rc == 0 && strcmp(edited, sbuf_str(&text)) == 0;
  sbuf_free(&text);
  json_t *r = NULL;
  if (rc < 0)
    out_printf(con->out, "plan %lld stays pending: %s", (long long)id, err);
  else if (same)
    out_printf(con->out, "plan %lld is unchanged", (long long)id);
  else
    r = console_request(con, "modify",
                        json_pack("{s:I, s:{s:s, s:s}}", "id", id, "edit", "op", "replace", "text", edited));
  free(edited);
  /* Still pending (edited and valid, unchanged, or the editor failed): the same question again. An
   * invalid result is said by its plan_modified event, with how to fix it. */
  const char *status = r ? jx_str(r, "status", "") : rc < 0 || same ? "pending" : "";
  if (strcmp(status, "pending") == 0) {
    json_array_append_new(con->questions, json_pack("{s:s, s:I}", "q", "plan", "id", id));
    if (con->ed)
      edit_update_prompt(con->ed);
    else
      out_puts(con->out, CONSOLE_PLAN_PROMPT "answer a, r, m or v");
  }
  json_decref(r);
}

/* A plan's decision: [A]pprove, [R]eject, [M]odify (the plan stays pending), [V]iew (and asked again). */
static void answer_plan(console_t *con, const json_t *q, const char *line) {
  json_int_t id = jx_int(q, "id", 0);
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
  char idw[32];
  snprintf(idw, sizeof idw, "%lld", (long long)id);
  if (c == 'v') {
    json_t *r = console_request(con, "plan", json_pack("{s:I}", "id", id));
    sbuf_t b = {0};
    if (r) {
      format_plan_steps(&b, r);
      format_plan_budget(&b, r); /* what it may spend beside what it is estimated at */
    }
    out_puts(con->out, sbuf_str(&b));
    sbuf_free(&b);
    json_decref(r);
    return; /* asked again */
  }
  json_array_remove(con->questions, 0);
  if (c == 'a' || c == 'r') {
    run_named(con, c == 'a' ? "approve" : "reject", idw);
  } else {
    modify_in_editor(con, id);
  }
}

/* The line answers the first waiting question (a plan, a spawn proposal or a tool approval). */
static void answer_question(console_t *con, const char *line) {
  json_t *q = json_incref(json_array_get(con->questions, 0));
  if (strcmp(jx_str(q, "q", NULL), "plan") == 0) {
    answer_plan(con, q, line);
    json_decref(q);
    return;
  }
  bool yes = strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
  bool no = strcasecmp(line, "n") == 0 || strcasecmp(line, "no") == 0;
  bool tool = strcmp(jx_str(q, "q", NULL), "tool") == 0;
  bool session_wide = tool && (strcasecmp(line, "a") == 0 || strcasecmp(line, "always") == 0);
  yes |= session_wide;
  if (!yes && !no) {
    if (tool)
      out_puts(con->out, "please answer y (once), a (this tool for the rest of the session) or n: may the tool call "
                         "above run?");
    else
      out_printf(con->out, "please answer y or n: spawn a %s for \"%.200s\"?", jx_str(q, "role", NULL),
                 jx_str(q, "task", NULL));
  } else {
    json_array_remove(con->questions, 0);
    if (tool)
      answer_tool(con, q, yes, session_wide);
    else
      answer_spawn(con, q, yes);
  }
  json_decref(q);
}

static void run_command(console_t *con, const char *s) {
  char name[64];
  const char *rest = first_word(s, name, sizeof name);
  const cmd_t *c = cmd_find_slash(name + 1);
  cmd_words_t w;
  cmd_words_line(&w, rest);
  if (c)
    run_entry(con, c, &w);
  else
    out_printf(con->out, "unknown command %s: /help lists the commands", name);
  cmd_words_free(&w);
}

void console_line(console_t *con, const char *raw) {
  con->last_int_ms = 0; /* a Ctrl-C before this line does not count towards leaving */
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
    ask(con, strchr(s, '\n') ? line + strspn(line, "\n") : s); /* several lines keep their indentation */
  }
  free(line);
}
