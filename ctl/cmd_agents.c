/* cmd_agents.c: one-shot agent commands: spawn, send, agents, stop, stop-all,
 * stats, config, reset. Each takes --json (one JSON value on stdout). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "format.h"
#include "output.h"
#include "view.h"

static volatile sig_atomic_t interrupted; /* the signal flag */

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

/* Parses [--wait] [--json]; returns the index of the first word, or -1. */
static int parse(ctl_t *ctl, int argc, char **argv, bool *wait) {
  static const struct option longopts[] = {{"wait", no_argument, 0, 'w'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0}};
  optind = 0; /* full re-initialisation: options may follow the words (main parsed with "+") */
  int c;
  while ((c = getopt_long(argc, argv, "wj", longopts, NULL)) != -1) {
    if (c == 'w' && wait)
      *wait = true;
    else if (c == 'j')
      ctl->json = true, ctl->color = false;
    else
      return -1;
  }
  return optind;
}

/* The words from index from on, joined by spaces. Caller frees. */
static char *join(int argc, char **argv, int from) {
  size_t len = 1;
  for (int i = from; i < argc; i++)
    len += strlen(argv[i]) + 1;
  char *s = calloc(1, len);
  for (int i = from; s && i < argc; i++) {
    strcat(s, argv[i]);
    if (i + 1 < argc)
      strcat(s, " ");
  }
  return s;
}


/* Prints a result as JSON, or as text made by fn for people. */
static int show(ctl_t *ctl, json_t *r, void (*fn)(sbuf_t *, const json_t *)) {
  if (!r)
    return 1;
  if (ctl->json) {
    ctl_print_json(r);
  } else {
    sbuf_t b = {0};
    fn(&b, r);
    fputs(sbuf_str(&b), stdout);
    sbuf_free(&b);
  }
  json_decref(r);
  return 0;
}

/* Waits for an event of session (followed again after a broker restart)
 * matching want(m, ud); returns it, or NULL (Ctrl-C, lost broker). */
static proto_msg_t *wait_event(ctl_t *ctl, client_t *c, const char *session,
                               bool (*want)(const proto_msg_t *, const void *), const void *ud) {
  while (!interrupted) {
    proto_msg_t *m = NULL;
    client_next_t r = client_next(c, 500, &m);
    if (r == CLIENT_ERROR)
      return NULL;
    if (r == CLIENT_RECONNECTED) {
      json_decref(ctl_request(ctl, c, "subscribe", json_pack("{s:s}", "session", session)));
      continue;
    }
    if (r == CLIENT_MSG && m->type == PROTO_EVENT && want(m, ud))
      return m;
    proto_msg_destroy(&m);
  }
  return NULL;
}

static bool is_summary_of(const proto_msg_t *m, const void *id) {
  const char *who = json_string_value(json_object_get(m->payload, "id"));
  return strcmp(m->kind, "summary") == 0 && who && strcmp(who, id) == 0;
}

static json_t *find_agent(json_t *agents, const char *id) {
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) {
    const char *aid = json_string_value(json_object_get(a, "id"));
    if (aid && strcmp(aid, id) == 0)
      return a;
  }
  return NULL;
}

/* spawn --wait: the agent's summary, status and usage. Returns the exit
 * status: 0 once the summary is in, whatever the agent found or how it ended. */
static int wait_summary(ctl_t *ctl, client_t *c, const char *id) {
  proto_msg_t *m = wait_event(ctl, c, id, is_summary_of, id);
  if (!m) {
    ctl_error(ctl, "stopped waiting for %s's summary", id);
    return 130;
  }
  json_t *agents = ctl_request(ctl, c, "agents", NULL);
  json_t *a = find_agent(agents, id);
  const char *status = json_string_value(json_object_get(a, "status"));
  json_t *o = json_pack("{s:s, s:O?, s:s, s:O?, s:O?}", "id", id, "role", json_object_get(m->payload, "role"), "status",
                        status ? status : "done", "summary", json_object_get(m->payload, "summary"), "usage",
                        json_object_get(a, "usage"));
  if (ctl->json) {
    ctl_print_json(o);
  } else {
    out_t *out = out_new(stdout, ctl->color, false);
    out_agent(out, id, json_string_value(json_object_get(m->payload, "role")));
    view_summary(out, id, json_object_get(m->payload, "summary"));
    char cost[32];
    json_t *u = json_object_get(a, "usage");
    format_cost(cost, sizeof cost, json_number_value(json_object_get(u, "cost")));
    out_agent_line(out, id, OUT_DIM, "%s · %lld tokens in, %lld out · %s", status ? status : "done",
                   (long long)json_integer_value(json_object_get(u, "prompt_tokens")),
                   (long long)json_integer_value(json_object_get(u, "completion_tokens")), cost);
    out_flush(out);
    out_free(&out);
  }
  json_decref(o);
  json_decref(agents);
  proto_msg_destroy(&m);
  return 0;
}

int cmd_spawn(ctl_t *ctl, int argc, char **argv) {
  bool wait = false;
  int i = parse(ctl, argc, argv, &wait);
  if (i < 0 || i + 2 > argc) {
    ctl_error(ctl, "usage: cadre spawn [--wait] ROLE TASK");
    return 2;
  }
  char *task = join(argc, argv, i + 1);
  client_t *c = ctl_connect(ctl);
  if (!c) {
    free(task);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_sigint};
  sigaction(SIGINT, &sa, NULL);
  json_t *r = ctl_request(ctl, c, "spawn", json_pack("{s:s, s:s}", "role", argv[i], "task", task));
  free(task);
  int rc = r ? 0 : 1;
  const char *id = json_string_value(json_object_get(r, "id"));
  if (r && !(wait && ctl->json)) {
    if (ctl->json)
      ctl_print_json(r);
    else
      printf("%s\n", id ? id : "?");
    fflush(stdout);
  }
  if (r && wait && id)
    rc = wait_summary(ctl, c, id);
  json_decref(r);
  client_destroy(&c);
  return rc;
}

static bool is_end_of_turn(const proto_msg_t *m, const void *turn) {
  return PROTO_HAS(m, turn) && m->turn == *(const int64_t *)turn &&
         (strcmp(m->kind, "turn_done") == 0 || strcmp(m->kind, "turn_failed") == 0);
}

/* send --wait: the agent's answer to the message. */
static int wait_answer(ctl_t *ctl, client_t *c, const char *id, int64_t turn) {
  proto_msg_t *m = wait_event(ctl, c, id, is_end_of_turn, &turn);
  if (!m) {
    ctl_error(ctl, "stopped waiting for the answer of turn %lld", (long long)turn);
    return 130;
  }
  const json_t *p = m->payload;
  bool done = strcmp(m->kind, "turn_done") == 0;
  const char *status = done ? "done" : json_string_value(json_object_get(p, "status"));
  json_t *text = json_object_get(json_object_get(p, "message"), "content");
  if (ctl->json) {
    json_t *o = json_pack("{s:s, s:I, s:s?, s:O?, s:O?, s:O?, s:O?, s:O?}", "session", m->session, "turn",
                          (json_int_t)turn, "status", status, "text", text, "finish_reason",
                          json_object_get(p, "finish_reason"), "usage", json_object_get(p, "usage"), "code",
                          json_object_get(p, "code"), "detail", json_object_get(p, "detail"));
    ctl_print_json(o);
    json_decref(o);
  } else if (done)
    printf("%s\n", json_string_value(text) ? json_string_value(text) : "");
  else
    fprintf(stderr, "cadre: the turn %s: %s\n", status ? status : "failed",
            json_string_value(json_object_get(p, "detail")) ?: "?");
  proto_msg_destroy(&m);
  return done ? 0 : 1;
}

int cmd_send(ctl_t *ctl, int argc, char **argv) {
  bool wait = false;
  int i = parse(ctl, argc, argv, &wait);
  if (i < 0 || i + 2 > argc) {
    ctl_error(ctl, "usage: cadre send [--wait] ID TEXT");
    return 2;
  }
  char *text = join(argc, argv, i + 1);
  client_t *c = ctl_connect(ctl);
  if (!c) {
    free(text);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_sigint};
  sigaction(SIGINT, &sa, NULL);
  json_t *r = ctl_request(ctl, c, "send", json_pack("{s:s, s:s}", "id", argv[i], "text", text));
  free(text);
  int rc = r ? 0 : 1;
  if (r && !(wait && ctl->json)) {
    if (ctl->json)
      ctl_print_json(r);
    else
      printf("%s turn %lld %s\n", argv[i], (long long)json_integer_value(json_object_get(r, "turn")),
             json_string_value(json_object_get(r, "status")) ?: "");
    fflush(stdout);
  }
  if (r && wait)
    rc = wait_answer(ctl, c, argv[i], json_integer_value(json_object_get(r, "turn")));
  json_decref(r);
  client_destroy(&c);
  return rc;
}

int cmd_agents(ctl_t *ctl, int argc, char **argv) {
  if (parse(ctl, argc, argv, NULL) < 0)
    return 2;
  return show(ctl, ctl_once(ctl, "agents", NULL), format_agents);
}

static void format_stop(sbuf_t *b, const json_t *r) {
  sbuf_printf(b, "%s: %s\n", json_string_value(json_object_get(r, "id")) ?: "?",
              json_string_value(json_object_get(r, "status")) ?: "?");
}

int cmd_stop(ctl_t *ctl, int argc, char **argv) {
  int i = parse(ctl, argc, argv, NULL);
  if (i < 0 || i >= argc) {
    ctl_error(ctl, "usage: cadre stop ID");
    return 2;
  }
  return show(ctl, ctl_once(ctl, "stop", json_pack("{s:s}", "id", argv[i])), format_stop);
}

static void format_stopped(sbuf_t *b, const json_t *r) {
  json_t *ids = json_object_get(r, "stopped");
  if (json_array_size(ids) == 0) {
    sbuf_puts(b, "no sub-agent was running\n");
    return;
  }
  size_t i;
  json_t *v;
  sbuf_puts(b, "stopped:");
  json_array_foreach(ids, i, v) sbuf_printf(b, " %s", json_string_value(v));
  sbuf_puts(b, "\n");
}

int cmd_stop_all(ctl_t *ctl, int argc, char **argv) {
  if (parse(ctl, argc, argv, NULL) < 0)
    return 2;
  return show(ctl, ctl_once(ctl, "stop_all", NULL), format_stopped);
}

int cmd_stats(ctl_t *ctl, int argc, char **argv) {
  if (parse(ctl, argc, argv, NULL) < 0)
    return 2;
  return show(ctl, ctl_once(ctl, "stats", NULL), format_stats);
}

int cmd_config(ctl_t *ctl, int argc, char **argv) {
  if (parse(ctl, argc, argv, NULL) < 0)
    return 2;
  return show(ctl, ctl_once(ctl, "config", NULL), format_json);
}

static void format_reset(sbuf_t *b, const json_t *r) {
  sbuf_printf(b, "%s: conversation cleared (%lld messages set aside)\n",
              json_string_value(json_object_get(r, "session")) ?: "main",
              (long long)json_integer_value(json_object_get(r, "cleared")));
}

int cmd_reset(ctl_t *ctl, int argc, char **argv) {
  int i = parse(ctl, argc, argv, NULL);
  if (i < 0)
    return 2;
  return show(ctl, ctl_once(ctl, "reset", json_pack("{s:s}", "session", i < argc ? argv[i] : "main")), format_reset);
}

/* One watched message as a JSON line, shaped as on the wire: "type" is
 * "delta" (session, turn, attempt, seq, kind "text"/"thinking", text) or
 * "event" (kind, session, turn, seq, payload). */
static void print_json_msg(const proto_msg_t *m) {
  json_t *o;
  if (m->type == PROTO_DELTA) {
    o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "type", "delta", "session", m->session, "turn",
                  (json_int_t)m->turn, "attempt", (json_int_t)m->attempt, "seq", (json_int_t)m->seq, "kind", m->kind,
                  "text", m->text);
  } else {
    o = json_pack("{s:s, s:s, s:s?, s:O?}", "type", "event", "kind", m->kind, "session", m->session, "payload",
                  m->payload);
    if (PROTO_HAS(m, turn))
      json_object_set_new(o, "turn", json_integer(m->turn));
    if (PROTO_HAS(m, seq))
      json_object_set_new(o, "seq", json_integer(m->seq));
  }
  ctl_print_json(o);
  json_decref(o);
}

/* Follows every session until Ctrl-C; returns the exit status. */
static int watch_loop(ctl_t *ctl, client_t *c, out_t *out, view_t *view) {
  while (!interrupted) {
    proto_msg_t *m = NULL;
    client_next_t r = client_next(c, 500, &m);
    if (r == CLIENT_ERROR)
      return 1;
    if (r == CLIENT_RECONNECTED) {
      json_decref(ctl_request(ctl, c, "subscribe", NULL));
      if (ctl->json) {
        json_t *o = json_pack("{s:s, s:s}", "type", "reconnected", "epoch", client_epoch(c));
        ctl_print_json(o);
        json_decref(o);
      } else {
        view_end_all(view);
        out_puts(out, "[the broker restarted; following every agent again]");
      }
    }
    if (r != CLIENT_MSG)
      continue;
    if (ctl->json)
      print_json_msg(m);
    else if (m->type == PROTO_DELTA)
      view_delta(view, m);
    else
      view_event(view, m);
    proto_msg_destroy(&m);
    out_flush(out);
  }
  return 0;
}

int cmd_watch(ctl_t *ctl, int argc, char **argv) {
  if (parse(ctl, argc, argv, NULL) < 0)
    return 2;
  client_t *c = ctl_connect(ctl);
  if (!c)
    return 1;
  struct sigaction sa = {.sa_handler = on_sigint};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  json_t *r = ctl_request(ctl, c, "subscribe", NULL);
  int rc = 1;
  if (r) {
    /* A first line once subscribed: scripts know from here on nothing is missed. */
    if (ctl->json) {
      fputs("{\"type\":\"watching\"}\n", stdout);
      fflush(stdout);
    } else {
      fprintf(stderr, "watching every agent; Ctrl-C to stop\n");
    }
    out_t *out = out_new(stdout, ctl->color, false);
    view_t *view = view_new(out);
    view_set_thinking(view, ctl->color);
    rc = watch_loop(ctl, c, out, view);
    view_end_all(view);
    out_flush(out);
    view_free(&view);
    out_free(&out);
  }
  json_decref(r);
  client_destroy(&c);
  return rc;
}
