/* console.c: `cadre` with no command: the interactive console's loop.
 *
 * One zmq_poll over the broker socket and stdin. Broker messages: the main
 * agent's turns are followed (for Ctrl-C and for leaving at end of input),
 * everything is drawn by the view. Input: the line editor on a terminal,
 * else whole lines from stdin, each taken when the main agent has answered
 * the previous question (so piped scripts read like a conversation).
 */
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "console.h"
#include "jx.h"
#include "render.h"
#include "util.h"

#define POLL_MS 100
#define SECOND_INT_MS 2000

/* Signal flags: the only state outside main's frame. */
static volatile sig_atomic_t sig_int, sig_redraw, sig_term;

static void on_signal(int sig) {
  if (sig == SIGINT)
    sig_int++;
  else if (sig == SIGWINCH)
    sig_redraw = sig_redraw ? sig_redraw : 1;
  else if (sig == SIGCONT)
    sig_redraw = 2; /* back from Ctrl-Z: the shell changed the terminal's mode */
  else
    sig_term = 1;
}

static void install_signals(void) {
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGWINCH, &sa, NULL);
  sigaction(SIGCONT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
}

/* Follows the main agent's turns: the running one, and our question's chain
 * through delegation (turn_done with tool_calls, then a turn "after" it). */
static void track_main(console_t *con, const proto_msg_t *m) {
  const char *k = m->kind;
  if (strcmp(k, "turn_started") == 0) {
    con->main_turn = m->turn;
    con->cancel_sent = false;
    con->delegating = false;
    json_int_t after = jx_int(m->payload, "after", 0);
    if (con->chain && after == con->chain)
      con->chain = m->turn;
  } else if (strcmp(k, "turn_done") == 0 || strcmp(k, "turn_failed") == 0) {
    if (con->main_turn == m->turn)
      con->main_turn = 0;
    if (con->chain && jx_int(m->payload, "after", 0) == con->chain) /* failed before it started (a cap) */
      con->chain = m->turn;
    bool delegated = strcmp(k, "turn_done") == 0 && strcmp(jx_str(m->payload, "finish_reason", ""), "tool_calls") == 0;
    con->delegating = delegated;
    if (con->chain == m->turn && !delegated)
      con->chain = 0;
  }
}

/* Drops the questions matching fn(question, ud): answered elsewhere, or moot. */
static void drop_questions(console_t *con, bool (*fn)(const json_t *q, const void *ud), const void *ud) {
  size_t n = json_array_size(con->questions);
  for (size_t i = n; i-- > 0;)
    if (fn(json_array_get(con->questions, i), ud))
      json_array_remove(con->questions, i);
  if (con->ed && json_array_size(con->questions) != n)
    edit_update_prompt(con->ed);
}

/* A proposal another console accepted: its agent was spawned. */
static bool is_spawned(const json_t *q, const void *spawned) {
  return strcmp(jx_str(q, "q", ""), "spawn") == 0 && strcmp(jx_str(q, "role", ""), jx_str(spawned, "role", "")) == 0 &&
         strcmp(jx_str(q, "task", ""), jx_str(spawned, "task", "")) == 0;
}

/* A tool call that ran (or was refused): tool_result {id}. */
static bool is_call(const json_t *q, const void *id) {
  return strcmp(jx_str(q, "q", ""), "tool") == 0 && strcmp(jx_str(q, "call_id", ""), (const char *)id) == 0;
}

/* Approvals of a turn that ended. */
static bool of_turn(const json_t *q, const void *turn) {
  return strcmp(jx_str(q, "q", ""), "tool") == 0 && jx_int(q, "turn", 0) == *(const int64_t *)turn;
}

static void ask_question(console_t *con, json_t *q) {
  bool plan = strcmp(jx_str(q, "q", ""), "plan") == 0;
  json_array_append_new(con->questions, q);
  if (con->ed)
    edit_update_prompt(con->ed);
  else
    out_puts(con->out, plan                                      ? CONSOLE_PLAN_PROMPT "answer a, r, m or v"
                       : strcmp(jx_str(q, "q", ""), "tool") == 0 ? "answer y (once), a (this session) or n"
                                                                 : "answer y or n");
}

/* The decision about plan id, when it is asked for. */
static bool of_plan(const json_t *q, const void *id) {
  return strcmp(jx_str(q, "q", ""), "plan") == 0 && jx_int(q, "id", 0) == *(const json_int_t *)id;
}

/* Plans: a valid one proposed asks for a decision (after the view showed it); one decided
 * elsewhere, or made invalid, asks no more; an invalid one says how to fix it. */
static void track_plans(console_t *con, const proto_msg_t *m) {
  const json_t *p = m->payload;
  json_int_t id = jx_int(p, "id", 0);
  bool proposed = strcmp(m->kind, "plan_proposed") == 0, modified = strcmp(m->kind, "plan_modified") == 0;
  if (!id)
    return;
  if (!proposed && !modified) {
    if (strcmp(m->kind, "plan_rejected") == 0 || strncmp(m->kind, "workflow_", 9) == 0)
      drop_questions(con, of_plan, &id);
    return;
  }
  const char *status = jx_str(p, "status", "");
  if (strcmp(status, "invalid") == 0) {
    drop_questions(con, of_plan, &id);
    out_printf(con->out,
               "plan %lld is not valid yet: fix it with /modify %lld <op> <step> [value] (/modify lists the "
               "ops), or /reject %lld",
               (long long)id, (long long)id, (long long)id);
  } else if (strcmp(status, "pending") == 0) {
    bool asked = false;
    size_t i;
    json_t *q;
    json_array_foreach(con->questions, i, q) asked |= of_plan(q, &id);
    if (!asked && proposed)
      ask_question(con, json_pack("{s:s, s:I}", "q", "plan", "id", id));
    else if (!asked)
      out_printf(con->out, "plan %lld is valid: /approve %lld runs it, /reject %lld discards it", (long long)id,
                 (long long)id, (long long)id);
  }
}

/* Agents come and go: ids for completion, questions to answer, our spawns. */
static void track_agents(console_t *con, const proto_msg_t *m) {
  const json_t *p = m->payload;
  const char *id = jx_str(p, "id", "");
  if (strcmp(m->kind, "agent_spawned") == 0) {
    json_object_set_new(con->ids, id, json_string(jx_str(p, "role", "")));
    json_object_set_new(con->status, id, json_string(jx_str(p, "status", "queued")));
    drop_questions(con, is_spawned, p);
  } else if (strcmp(m->kind, "summary") == 0) {
    json_object_del(con->mine, id);
  } else if (strcmp(m->kind, "agent_status") == 0) {
    const char *s = jx_str(p, "status", "");
    if (id[0] && strcmp(id, "main") != 0)
      json_object_set_new(con->status, id, json_string(s));
    if (strcmp(s, "done") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "stopped") == 0)
      json_object_del(con->mine, id);
  } else if (strcmp(m->kind, "spawn_proposed") == 0) {
    json_t *q = json_deep_copy(p);
    json_object_set_new(q, "q", json_string("spawn"));
    ask_question(con, q);
  } else if (strcmp(m->kind, "approval_needed") == 0) {
    const json_t *call = jx_obj(p, "call");
    ask_question(con, json_pack("{s:s, s:I, s:O?, s:s?, s:s, s:s}", "q", "tool", "turn", (json_int_t)m->turn, "seq",
                                json_object_get(p, "seq"), "session", m->session, "call_id", jx_str(call, "id", ""),
                                "tool", jx_str(jx_obj(call, "function"), "name", "")));
  } else if (strcmp(m->kind, "turn_done") == 0 || strcmp(m->kind, "turn_failed") == 0) {
    int64_t turn = m->turn;
    drop_questions(con, of_turn, &turn);
  }
}

static void on_message(console_t *con, const proto_msg_t *m) {
  if (m->type == PROTO_DELTA) {
    if (strcmp(m->kind, "tool_result") == 0) {
      json_t *r = render_tool_body(m);
      drop_questions(con, is_call, jx_str(r, "id", ""));
      json_decref(r);
    }
    view_delta(con->view, m);
    return;
  }
  if (m->session && strcmp(m->session, "main") == 0)
    track_main(con, m);
  track_agents(con, m);
  view_event(con->view, m);
  if (m->type == PROTO_EVENT)
    track_plans(con, m);
}

static void subscribe_all(console_t *con) {
  json_decref(console_request(con, "subscribe", NULL));
}

/* The broker restarted: follow everything again; a turn may have ended meanwhile. */
static void on_reconnected(console_t *con) {
  view_end_all(con->view);
  out_printf(con->out, "%s[the broker restarted; following every agent again]%s", out_color(con->out) ? "\033[2m" : "",
             out_color(con->out) ? "\033[0m" : "");
  subscribe_all(con);
  if (!con->main_turn)
    return;
  json_t *r =
      console_request(con, "subscribe", json_pack("{s:s, s:I}", "session", "main", "turn", (json_int_t)con->main_turn));
  if (strcmp(jx_str(r, "turn", ""), "finished") == 0) {
    out_printf(con->out, "turn %lld ended while the broker was away: /history shows its answer",
               (long long)con->main_turn);
    if (con->chain == con->main_turn)
      con->chain = 0;
    con->main_turn = 0;
  }
  json_decref(r);
}

static void drain_broker(console_t *con) {
  for (int i = 0; i < 10000; i++) {
    proto_msg_t *m = NULL;
    client_next_t r = client_next(con->c, 2, &m);
    if (r == CLIENT_RECONNECTED) {
      on_reconnected(con);
      continue;
    }
    if (r != CLIENT_MSG)
      return;
    on_message(con, m);
    proto_msg_destroy(&m);
  }
}

/* Sub-agents that are working now (agent_status queued or running). */
static size_t running_agents(const console_t *con) {
  size_t n = 0;
  const char *id;
  json_t *st;
  json_object_foreach(con->status, id, st) {
    const char *s = json_string_value(st);
    n += s && (strcmp(s, "running") == 0 || strcmp(s, "queued") == 0);
  }
  return n;
}

/* Ctrl-C: cancel the main agent's turn; otherwise clear the typed text; otherwise warn, and
 * leave only when pressed again within 2 s (so sub-agents never stream on unseen by surprise). */
static void on_interrupt(console_t *con) {
  int64_t now = util_now_ms();
  bool recent = now - con->last_int_ms < SECOND_INT_MS;
  con->last_int_ms = now;
  size_t subs = running_agents(con);
  char tail[96] = "";
  if (subs)
    snprintf(tail, sizeof tail, "; %zu sub-agent%s still running", subs, subs == 1 ? "" : "s");
  /* Between two turns of a request (the broker answered tool calls) the next
   * one may not have started yet: cancelling the last one ends the request. */
  int64_t turn = con->main_turn ? con->main_turn : (con->delegating && !subs ? con->chain : 0);
  if (turn && !con->cancel_sent) {
    con->cancel_sent = true;
    out_printf(con->out, "[cancelling the main agent's turn %lld; Ctrl-C again to leave%s]", (long long)turn, tail);
    json_decref(console_request(con, "cancel", json_pack("{s:I}", "turn", (json_int_t)turn)));
  } else if (recent || !con->ed) { /* piped input (a script): no warning first */
    con->quit = true;
  } else if (edit_has_text(con->ed)) {
    edit_clear_line(con->ed);
    con->last_int_ms = 0;
  } else if (con->delegating) {
    out_printf(con->out, "[the main agent waits for its sub-agents (/stop_all stops them); Ctrl-C again to leave%s]",
               tail);
  } else {
    out_printf(con->out, "[Ctrl-C again to leave%s; /exit leaves too]", tail);
  }
}

static void handle_signals(console_t *con) {
  if (sig_term)
    con->quit = true;
  if (sig_redraw && con->ed) {
    bool cont = sig_redraw == 2;
    sig_redraw = 0;
    edit_redraw(con->ed, cont);
  }
  while (sig_int > 0) {
    sig_int--;
    on_interrupt(con);
  }
}

/* Without a line editor: whole lines from stdin, one per answered question. */
static void read_lines(console_t *con, bool readable) {
  if (readable && !con->eof) {
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n > 0)
      sbuf_add(&con->in, buf, (size_t)n);
    else if (n == 0 || (errno != EINTR && errno != EAGAIN))
      con->eof = true;
  }
  while (!con->quit && (!con->chain || json_array_size(con->questions) > 0) && con->in.len) {
    char *nl = memchr(con->in.s, '\n', con->in.len);
    if (!nl && !con->eof)
      break;
    size_t n = nl ? (size_t)(nl - con->in.s) : con->in.len;
    char *line = strndup(con->in.s, n);
    size_t used = nl ? n + 1 : n;
    memmove(con->in.s, con->in.s + used, con->in.len - used + 1);
    con->in.len -= used;
    console_line(con, line);
    free(line);
  }
}

/* At the end of piped input: leave once our question is answered and our sub-agents reported. */
static bool done_at_eof(const console_t *con) {
  return !con->ed && con->eof && con->in.len == 0 && !con->chain && json_object_size(con->mine) == 0;
}

static void loop(console_t *con) {
  while (!con->quit) {
    handle_signals(con);
    if (con->quit)
      break;
    zmq_pollitem_t items[2] = {{client_socket(con->c), 0, ZMQ_POLLIN, 0}, {NULL, STDIN_FILENO, ZMQ_POLLIN, 0}};
    int n = con->eof ? 1 : 2;
    int rc = zmq_poll(items, n, client_pending(con->c) ? 0 : POLL_MS);
    if (rc < 0 && errno != EINTR) {
      out_printf(con->out, "cadre: lost the broker connection: %s", zmq_strerror(errno));
      break;
    }
    bool readable = rc > 0 && n == 2 && (items[1].revents & (ZMQ_POLLIN | ZMQ_POLLERR)); /* EOF: POLLHUP */
    drain_broker(con);
    if (con->ed && readable)
      edit_read(con->ed);
    else if (!con->ed)
      read_lines(con, readable);
    out_flush(con->out);
    if (done_at_eof(con))
      break;
  }
}

/* Roles for completion (from the config) and the agents there are. */
static void learn(console_t *con) {
  char err[256];
  json_t *cfg = client_request(con->c, "config", NULL, con->ctl->timeout_ms, err, sizeof err);
  const char *name;
  json_t *prof;
  json_object_foreach(jx_obj(cfg, "agents"), name, prof) {
    const char *role = jx_str(prof, "role", NULL);
    bool dup = false;
    size_t i;
    json_t *v;
    json_array_foreach(con->roles, i, v) dup |= role && strcmp(json_string_value(v), role) == 0;
    if (role && strcmp(role, "main") != 0 && !dup)
      json_array_append_new(con->roles, json_string(role));
  }
  json_decref(cfg);
  json_t *agents = client_request(con->c, "agents", NULL, con->ctl->timeout_ms, err, sizeof err);
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) {
    const char *id = jx_str(a, "id", NULL);
    if (id) {
      json_object_set(con->ids, id, json_object_get(a, "role"));
      if (strcmp(id, "main") != 0)
        json_object_set_new(con->status, id, json_string(jx_str(a, "status", "")));
      out_agent(con->out, id, jx_str(a, "role", NULL));
    }
  }
  json_decref(agents);
}

static void banner(console_t *con) {
  const char *b = out_color(con->out) ? "\033[1m" : "", *d = out_color(con->out) ? "\033[2m" : "",
             *r = out_color(con->out) ? "\033[0m" : "";
  const char *ws = con->ctl->workspace;
  out_printf(con->out,
             "%sCadre %s%s %s· %s%s%sbroker %s · /help lists the commands · /exit leaves (the cluster keeps "
             "running)%s",
             b, CADRE_VERSION, r, d, ws[0] ? "workspace " : "", ws, ws[0] ? " · " : "", con->ctl->broker, r);
}

int cmd_console(ctl_t *ctl, int argc, char **argv) {
  (void)argc;
  (void)argv;
  bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  setlocale(LC_CTYPE, "");
  console_t con = {.ctl = ctl};
  con.c = ctl_connect(ctl);
  if (!con.c)
    return 1;
  install_signals();
  con.out = out_new(stdout, ctl->color && tty, tty);
  con.view = view_new(con.out);
  view_set_thinking(con.view, tty);
  con.ids = json_object();
  con.roles = json_array();
  con.questions = json_array();
  con.mine = json_object();
  con.status = json_object();
  subscribe_all(&con);
  learn(&con);
  static const char *seed_roles[] = {"reviewer", "researcher", "implementer", "tester", "optimizer"};
  for (size_t i = 0; json_array_size(con.roles) == 0 && i < sizeof seed_roles / sizeof seed_roles[0]; i++)
    json_array_append_new(con.roles, json_string(seed_roles[i]));
  banner(&con);
  out_flush(con.out);
  if (tty)
    con.ed = edit_new(&con);
  loop(&con);
  view_end_all(con.view);
  out_flush(con.out);
  edit_free(&con.ed);
  out_flush(con.out);
  if (tty)
    out_printf(con.out, "bye (the cluster keeps running; `cadre down` stops a local one)");
  out_flush(con.out);
  view_free(&con.view);
  out_free(&con.out);
  json_decref(con.ids);
  json_decref(con.roles);
  json_decref(con.questions);
  json_decref(con.mine);
  json_decref(con.status);
  sbuf_free(&con.in);
  client_destroy(&con.c);
  return 0;
}
