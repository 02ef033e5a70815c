/* cmd_ask.c: cadre ask TEXT: one turn of the main agent, streamed. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "jx.h"
#include "render.h"
#include "util.h"

#define DIM "\033[2m"
#define RESET "\033[0m"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted++;
}

typedef struct {
  ctl_t *ctl;
  client_t *c;
  const char *session;
  int64_t turn;
  int64_t attempt; /* attempt whose deltas we print */
  bool show_thinking;
  bool in_thinking; /* last printed piece was thinking */
  bool printed;     /* some answer text was printed */
  bool at_line_start;
  bool delegated; /* the turn ended in tool calls: follow the continuation */
  bool yes;       /* --yes: tool calls run without asking */
  bool gapped;    /* some of the answer's deltas were missed: it is printed whole at the end */
  int64_t started;
} ask_t;

static void json_event(const char *event, json_t *fields) {
  json_object_set_new(fields, "event", json_string(event));
  ctl_print_json(fields);
  json_decref(fields);
}

static void print_piece(ask_t *a, const char *kind, const char *text) {
  bool thinking = strcmp(kind, "thinking") == 0;
  if (thinking && !a->show_thinking)
    return;
  if (thinking != a->in_thinking) {
    if (!a->at_line_start)
      fputc('\n', stdout);
    if (thinking)
      fputs(render_thinking_mark(a->ctl->color), stdout);
    else if (a->ctl->color)
      fputs(RESET, stdout);
    a->in_thinking = thinking;
  }
  fputs(text, stdout);
  size_t n = strlen(text);
  if (n)
    a->at_line_start = text[n - 1] == '\n';
  a->printed |= !thinking && n > 0;
  fflush(stdout);
}

/* A tool call or its result, on a line of its own (as the console shows it). */
static void print_tool(ask_t *a, const proto_msg_t *m) {
  sbuf_t b = {0};
  out_style_t style = render_tool_delta(&b, m);
  if (b.len) {
    if (a->ctl->color && a->in_thinking)
      fputs(RESET, stdout);
    printf("%s%s%s%s\n", a->at_line_start ? "" : "\n", out_style_start(a->ctl->color, style), sbuf_str(&b),
           a->ctl->color ? RESET : "");
    a->in_thinking = false;
    a->at_line_start = true;
    fflush(stdout);
  }
  sbuf_free(&b);
}

static void on_delta(ask_t *a, const proto_msg_t *m) {
  if (m->turn != a->turn)
    return;
  if (m->attempt != a->attempt) {
    if (a->attempt && !a->ctl->json) {
      sbuf_t b = {0};
      render_attempt(&b, (long long)m->attempt);
      fprintf(stderr, "%s[cadre: %s]\n", a->at_line_start ? "" : "\n", sbuf_str(&b));
      sbuf_free(&b);
    }
    a->attempt = m->attempt;
    a->at_line_start = true;
  }
  if (a->ctl->json)
    json_event("delta", json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:O*}", "session", m->session, "turn",
                                  (json_int_t)m->turn, "attempt", (json_int_t)m->attempt, "seq", (json_int_t)m->seq,
                                  "kind", m->kind, "text", m->text, "call", m->call));
  else if (strcmp(m->kind, "tool_call") == 0 || strcmp(m->kind, "tool_result") == 0)
    print_tool(a, m);
  else
    print_piece(a, m->kind, m->text);
}

/* A node waits for the user's go-ahead before a tool call runs: --yes allows it;
 * a terminal is asked (once, for this session, or no); else it is refused at
 * once, saying how to allow such calls. */
static void on_approval(ask_t *a, const json_t *p) {
  bool allow = false, session_wide = false;
  sbuf_t call = {0};
  render_call(&call, jx_obj(p, "call"));
  const char *ws = jx_str(p, "workspace", "");
  const char *name = jx_str(jx_obj(jx_obj(p, "call"), "function"), "name", "a tool");
  if (a->yes) {
    allow = true;
  } else if (isatty(STDIN_FILENO) && !a->ctl->json) {
    const char *preview = jx_str(p, "preview", NULL);
    fprintf(stderr, "%s%s wants to run %s%s%s\n", a->at_line_start ? "" : "\n", a->session, sbuf_str(&call),
            ws[0] ? " in " : "", ws);
    if (preview)
      fprintf(stderr, "%s\n", preview);
    fprintf(stderr, "Allow? [y] once, [a] %s for this session, [N] no: ", name);
    fflush(stderr);
    char line[32] = "";
    bool got = fgets(line, sizeof line, stdin) != NULL;
    allow = got && strchr("yYaA", line[0]) && line[0];
    session_wide = got && (line[0] == 'a' || line[0] == 'A');
    a->at_line_start = true;
  } else {
    fprintf(stderr,
            "%s[cadre: %s was not run: it needs your approval and there is no terminal to ask. Allow such "
            "calls with `cadre ask --yes`, or for good with \"tools\": {\"approval\": \"never\"} in the "
            "config]\n",
            a->at_line_start ? "" : "\n", name);
    a->at_line_start = true;
  }
  sbuf_free(&call);
  char err[256];
  json_t *r = client_request(a->c, "approve_tool",
                             json_pack("{s:I, s:O, s:b, s:b}", "turn", (json_int_t)a->turn, "seq",
                                       json_object_get(p, "seq"), "allow", allow, "session_wide", session_wide),
                             5000, err, sizeof err);
  if (jx_bool(r, "session_wide", false) && !a->ctl->json)
    fprintf(stderr, "[cadre: %s may run without asking for the rest of session %s]\n", name, a->session);
  json_decref(r);
}

static void end_line(ask_t *a) {
  if (a->ctl->color && a->in_thinking)
    fputs(RESET, stdout);
  if (!a->at_line_start)
    fputc('\n', stdout);
  fflush(stdout);
}

/* Prints the final answer of a done turn; returns the exit status. */
static int on_done(ask_t *a, const json_t *p) {
  double secs = (double)(util_now_ms() - a->started) / 1000.0;
  if (a->ctl->json) {
    json_t *o = json_pack("{s:s, s:I, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:f}", "session", a->session, "turn",
                          (json_int_t)a->turn, "text", json_object_get(jx_obj(p, "message"), "content"), "thinking",
                          json_object_get(p, "thinking"), "finish_reason", json_object_get(p, "finish_reason"), "usage",
                          json_object_get(p, "usage"), "node", json_object_get(p, "node"), "model",
                          json_object_get(p, "model"), "elapsed_ms", json_object_get(p, "elapsed_ms"), "seconds", secs);
    json_event("done", o);
    return 0;
  }
  if (a->gapped && a->printed) {
    end_line(a);
    fprintf(stderr, "%s[cadre: some of the stream was missed; the whole answer follows]%s\n", a->ctl->color ? DIM : "",
            a->ctl->color ? RESET : "");
    a->printed = false;
  }
  if (!a->printed) { /* nothing streamed (e.g. stream:false, or we reconnected late), or not all of it */
    const char *content = jx_str(jx_obj(p, "message"), "content", NULL);
    if (a->in_thinking && a->ctl->color)
      fputs(RESET, stdout);
    a->in_thinking = false;
    if (content && content[0])
      print_piece(a, "text", content);
  }
  end_line(a);
  sbuf_t b = {0};
  render_turn_end(&b, p, secs);
  fprintf(stderr, "%s%s%s\n", a->ctl->color ? DIM : "", sbuf_str(&b), a->ctl->color ? RESET : "");
  sbuf_free(&b);
  return 0;
}

static int on_failed(ask_t *a, const json_t *p) {
  const char *code = jx_str(p, "code", NULL);
  const char *detail = jx_str(p, "detail", NULL);
  if (a->ctl->json) {
    json_event("error", json_pack("{s:s, s:I, s:s?, s:s?, s:O?}", "session", a->session, "turn", (json_int_t)a->turn,
                                  "code", code, "detail", detail, "http_status", json_object_get(p, "http_status")));
  } else {
    end_line(a);
    sbuf_t b = {0};
    render_turn_failed(&b, p);
    fprintf(stderr, "cadre: the turn %s\n", sbuf_str(&b));
    sbuf_free(&b);
    if (code && strcmp(code, PROTO_ERR_connect) == 0)
      fprintf(stderr, "cadre: is the model server running? `cadre config` shows each profile's url; "
                      "README \"Using real models\" says how to point Cadre at Ollama, LM Studio or OpenAI\n");
    else if (code && strcmp(code, "http_401") == 0)
      fprintf(stderr, "cadre: the model server refused the API key: set it in secrets.json or the environment "
                      "(README \"Using real models\")\n");
  }
  return code && strcmp(code, PROTO_ERR_cancelled) == 0 ? 130 : 1;
}

/* Delegation: the main agent spawned sub-agents; their summaries arrive, then
 * a continuation turn of the same session answers. */
static int on_delegation_event(ask_t *a, const proto_msg_t *m) {
  const json_t *p = m->payload;
  if (strcmp(m->kind, "turn_started") == 0 && a->delegated && m->session && strcmp(m->session, a->session) == 0) {
    a->turn = m->turn;
    a->delegated = false;
    a->attempt = 0;
    return 1;
  }
  /* The continuation failed before it started (the request's cap): it is ours. */
  if (strcmp(m->kind, "turn_failed") == 0 && a->delegated && m->session && strcmp(m->session, a->session) == 0 &&
      jx_int(p, "after", 0) == a->turn) {
    a->turn = m->turn;
    a->delegated = false;
    return 0;
  }
  if (a->ctl->json)
    return 0;
  if (strcmp(m->kind, "tool_call") == 0 && m->turn == a->turn) {
    sbuf_t b = {0};
    render_call_event(&b, p);
    fprintf(stderr, "%s[cadre: %s]\n", a->at_line_start ? "" : "\n", sbuf_str(&b));
    sbuf_free(&b);
    a->at_line_start = true;
    return 1;
  }
  if (strcmp(m->kind, "summary") == 0 && a->delegated) {
    fprintf(stderr, "[cadre: summary from %s: %s]\n", jx_str(p, "id", NULL),
            jx_str(jx_obj(p, "summary"), "status", NULL));
    return 1;
  }
  return 0;
}

/* Handles an event; returns -1 to keep waiting or the exit status. */
/* A gap event that names our turn: deltas of it were missed. */
static bool on_gap(ask_t *a, const proto_msg_t *m) {
  if (strcmp(m->kind, "gap") != 0)
    return false;
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(m->payload, "turns"), i, t) {
    a->gapped |= json_integer_value(t) == a->turn;
  }
  if (a->ctl->json && a->gapped)
    json_event("gap", json_deep_copy(m->payload));
  return true;
}

static int on_event(ask_t *a, const proto_msg_t *m) {
  if (on_gap(a, m) || on_delegation_event(a, m) ||
      (a->ctl->json && strcmp(m->kind, "turn_started") == 0 && a->delegated))
    return -1;
  if (!PROTO_HAS(m, turn) || m->turn != a->turn)
    return -1;
  const json_t *p = m->payload;
  if (strcmp(m->kind, "turn_done") == 0 && json_array_size(jx_arr(jx_obj(p, "message"), "tool_calls"))) {
    a->delegated = true;
    if (a->ctl->json)
      json_event("delegated", json_pack("{s:s, s:I, s:O}", "session", a->session, "turn", (json_int_t)a->turn,
                                        "tool_calls", json_object_get(jx_obj(p, "message"), "tool_calls")));
    return -1;
  }
  if (strcmp(m->kind, "turn_done") == 0)
    return on_done(a, p);
  if (strcmp(m->kind, "approval_needed") == 0) {
    if (a->ctl->json)
      json_event("approval_needed", json_deep_copy(p));
    on_approval(a, p);
    return -1;
  }
  if (strcmp(m->kind, "turn_failed") == 0)
    return on_failed(a, p);
  if (a->ctl->json) {
    json_t *o = json_deep_copy(p ? p : json_object());
    json_object_set_new(o, "turn", json_integer(a->turn));
    json_event(m->kind, o);
  } else if (strcmp(m->kind, "turn_waiting") == 0 || strcmp(m->kind, "turn_requeued") == 0) {
    const char *d = jx_str(p, "detail", NULL);
    fprintf(stderr, "%s[cadre: %s]\n", a->at_line_start ? "" : "\n",
            d ? d : "the node running this turn was lost; it will run again");
    a->at_line_start = true;
  }
  return -1;
}

/* After a broker restart: follow the turn again, or fetch its answer. */
static int follow_turn_again(ask_t *a) {
  json_t *r = ctl_request(a->ctl, a->c, "subscribe",
                          json_pack("{s:s, s:I}", "session", a->session, "turn", (json_int_t)a->turn));
  const char *state = jx_str(r, "turn", NULL);
  int rc = -1;
  if (!a->ctl->json)
    fprintf(stderr, "%s[cadre: the broker restarted; following turn %lld again]\n", a->at_line_start ? "" : "\n",
            (long long)a->turn);
  a->at_line_start = true;
  if (state && strcmp(state, "finished") == 0) {
    json_t *h = ctl_request(a->ctl, a->c, "history", json_pack("{s:s}", "session", a->session));
    size_t i;
    json_t *msg, *found = NULL;
    json_array_foreach(jx_arr(h, "messages"), i, msg) if (jx_int(msg, "turn", 0) == a->turn &&
                                                          strcmp(jx_str(msg, "role", NULL), "assistant") == 0) found =
        msg;
    if (found) {
      a->printed = false;
      json_t *p = json_pack("{s:O, s:{}, s:s, s:s}", "message", found, "usage", "model", "?", "node", "?");
      rc = on_done(a, p);
      json_decref(p);
    } else {
      rc = on_failed(
          a, json_pack("{s:s, s:s}", "code", PROTO_ERR_lost, "detail", "the turn ended while the broker was away"));
    }
    json_decref(h);
  }
  json_decref(r);
  return rc;
}

static int follow(ask_t *a) {
  bool cancel_sent = false;
  for (;;) {
    if (interrupted && !cancel_sent) {
      cancel_sent = true;
      if (!a->ctl->json)
        fprintf(stderr, "%s[cadre: cancelling; Ctrl-C again to leave at once]\n", a->at_line_start ? "" : "\n");
      char err[256];
      json_decref(
          client_request(a->c, "cancel", json_pack("{s:I}", "turn", (json_int_t)a->turn), 5000, err, sizeof err));
    }
    if (interrupted > 1)
      return 130;
    proto_msg_t *m = NULL;
    client_next_t r = client_next(a->c, 500, &m);
    if (r == CLIENT_ERROR)
      return 1;
    if (r == CLIENT_RECONNECTED) {
      int rc = follow_turn_again(a);
      if (rc >= 0)
        return rc;
      continue;
    }
    if (r != CLIENT_MSG)
      continue;
    int rc = -1;
    if (m->type == PROTO_DELTA)
      on_delta(a, m);
    else
      rc = on_event(a, m);
    proto_msg_destroy(&m);
    if (rc >= 0)
      return rc;
  }
}

/* Sends one message to a session and follows the turn to its end. */
static int ask_once(ask_t *a, const char *text, bool solo) {
  interrupted = 0;
  a->started = util_now_ms();
  a->printed = a->in_thinking = a->delegated = false;
  a->at_line_start = true;
  a->attempt = 0;
  json_t *args = json_pack("{s:s, s:s}", "text", text, "session", a->session);
  if (solo)
    json_object_set_new(args, "solo", json_true());
  json_t *r = ctl_request(a->ctl, a->c, "ask", args);
  int rc = 1;
  if (r) {
    a->turn = jx_int(r, "turn", 0);
    if (a->ctl->json)
      json_event("accepted", json_pack("{s:s, s:I}", "session", a->session, "turn", (json_int_t)a->turn));
    rc = follow(a);
  }
  json_decref(r);
  return rc;
}

/* The words from argv[from] on, joined by spaces. Caller frees. */
static char *join_words(int argc, char **argv, int from) {
  size_t len = 1;
  for (int i = from; i < argc; i++)
    len += strlen(argv[i]) + 1;
  char *text = calloc(1, len);
  for (int i = from; text && i < argc; i++) {
    strcat(text, argv[i]);
    if (i + 1 < argc)
      strcat(text, " ");
  }
  return text;
}

static int parse_ask_opts(ask_t *a, int argc, char **argv) {
  static const struct option longopts[] = {{"session", required_argument, 0, 's'},
                                           {"thinking", no_argument, 0, 't'},
                                           {"no-thinking", no_argument, 0, 'T'},
                                           {"yes", no_argument, 0, 'y'},
                                           {0, 0, 0, 0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "+s:y", longopts, NULL)) != -1) {
    switch (c) {
    case 's': a->session = optarg; break;
    case 'y': a->yes = true; break;
    case 't': a->show_thinking = true; break;
    case 'T': a->show_thinking = false; break;
    default: return -1;
    }
  }
  return optind;
}

int cmd_ask(ctl_t *ctl, int argc, char **argv) {
  ask_t a = {.ctl = ctl, .session = "main", .show_thinking = ctl->color, .at_line_start = true};
  int first = parse_ask_opts(&a, argc, argv);
  if (first < 0 || first >= argc) {
    ctl_error(ctl, "usage: cadre ask [--session ID] [--yes] [--thinking|--no-thinking] TEXT");
    return 2;
  }
  char *text = join_words(argc, argv, first);
  a.c = ctl_connect(ctl);
  int rc = 1;
  if (a.c && text) {
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    rc = ask_once(&a, text, false);
  }
  free(text);
  client_destroy(&a.c);
  return rc;
}

/* cadre chat [TEXT]: the seed's single-agent coding assistant: one agent (the
 * main profile) with every tool and no sub-agents, streaming, in its own
 * session ("chat" unless --session). With TEXT, one turn; else a prompt loop. */
int cmd_chat(ctl_t *ctl, int argc, char **argv) {
  ask_t a = {.ctl = ctl, .session = "chat", .show_thinking = ctl->color, .at_line_start = true};
  int first = parse_ask_opts(&a, argc, argv);
  if (first < 0) {
    ctl_error(ctl, "usage: cadre chat [--session ID] [--yes] [--thinking|--no-thinking] [TEXT]");
    return 2;
  }
  a.c = ctl_connect(ctl);
  if (!a.c)
    return 1;
  struct sigaction sa = {.sa_handler = on_sigint};
  sigaction(SIGINT, &sa, NULL);
  int rc = 0;
  if (first < argc) {
    char *text = join_words(argc, argv, first);
    rc = ask_once(&a, text, true);
    free(text);
  } else {
    bool tty = isatty(STDIN_FILENO);
    if (tty)
      fprintf(stderr, "cadre chat: one agent with every tool in %s; /exit or Ctrl-D to leave\n", a.session);
    char line[65536];
    for (;;) {
      if (tty) {
        fputs("you> ", stderr);
        fflush(stderr);
      }
      if (!fgets(line, sizeof line, stdin))
        break;
      line[strcspn(line, "\n")] = '\0';
      if (!line[0])
        continue;
      if (strcmp(line, "/exit") == 0)
        break;
      rc = ask_once(&a, line, true);
    }
  }
  client_destroy(&a.c);
  return rc;
}
