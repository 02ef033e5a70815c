/* cmd_agents.c: what cadre follows after a request: spawn --wait (the
 * summary), send --wait (the answer), approve --wait (the workflow), and
 * cadre watch (everything). With --json, JSON lines on stdout. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "format.h"
#include "jx.h"
#include "output.h"
#include "view.h"

static volatile sig_atomic_t interrupted; /* the signal flag */

static void stop_on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

/* Ctrl-C stops the waiting (not the program at once). */
static void on_sigint_stop(void) {
  struct sigaction sa = {.sa_handler = stop_on_sigint};
  sigaction(SIGINT, &sa, NULL);
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
    if (r == CLIENT_MSG && m->type == PROTO_EVENT && !ctl->json && strcmp(m->kind, "approval_needed") == 0)
      fprintf(stderr,
              "[cadre: %s waits for your approval to run %s: answer it in the console (cadre), or allow "
              "such calls with \"tools\": {\"approval\": \"never\"} in the config]\n",
              m->session, jx_str(jx_obj(jx_obj(m->payload, "call"), "function"), "name", "a tool"));
    proto_msg_destroy(&m);
  }
  return NULL;
}

static bool is_summary_of(const proto_msg_t *m, const void *id) {
  const char *who = jx_str(m->payload, "id", NULL);
  return strcmp(m->kind, "summary") == 0 && who && strcmp(who, id) == 0;
}

static json_t *find_agent(json_t *agents, const char *id) {
  size_t i;
  json_t *a;
  json_array_foreach(agents, i, a) {
    const char *aid = jx_str(a, "id", NULL);
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
  const char *status = jx_str(a, "status", NULL);
  json_t *o = json_pack("{s:s, s:O?, s:s, s:O?, s:O?}", "id", id, "role", json_object_get(m->payload, "role"), "status",
                        status ? status : "done", "summary", json_object_get(m->payload, "summary"), "usage",
                        json_object_get(a, "usage"));
  if (ctl->json) {
    ctl_print_json(o);
  } else {
    out_t *out = out_new(stdout, ctl->color, false);
    out_agent(out, id, jx_str(m->payload, "role", NULL));
    view_summary(out, id, jx_obj(m->payload, "summary"));
    char cost[32];
    json_t *u = jx_obj(a, "usage");
    format_cost(cost, sizeof cost, jx_num(u, "cost", 0));
    out_agent_line(out, id, OUT_DIM, "%s · %lld tokens in, %lld out · %s", status ? status : "done",
                   (long long)jx_int(u, "prompt_tokens", 0), (long long)jx_int(u, "completion_tokens", 0), cost);
    out_flush(out);
    out_free(&out);
  }
  json_decref(o);
  json_decref(agents);
  proto_msg_destroy(&m);
  return 0;
}

/* cadre spawn --wait: the agent's id (without --json), then its summary. */
int cmd_spawn_wait(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r) {
  const char *id = jx_str(r, "id", NULL);
  if (!ctl->json)
    cmd_print(ctl, cmd_find("spawn"), req, r);
  if (!id)
    return 0;
  on_sigint_stop();
  return wait_summary(ctl, c, id);
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
  const char *status = done ? "done" : jx_str(p, "status", NULL);
  json_t *text = json_object_get(jx_obj(p, "message"), "content");
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
    fprintf(stderr, "cadre: the turn %s: %s\n", status ? status : "failed", jx_str(p, "detail", "?"));
  proto_msg_destroy(&m);
  return done ? 0 : 1;
}

/* cadre send --wait: the turn (without --json), then the agent's answer. */
int cmd_send_wait(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r) {
  if (!ctl->json)
    cmd_print(ctl, cmd_find("send"), req, r);
  on_sigint_stop();
  return wait_answer(ctl, c, jx_str(req->args, "id", ""), jx_int(r, "turn", 0));
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
        out_puts(out, "[the broker restarted, or lost us; following every agent again from where we were]");
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
  long long since = -1;
  for (int i = 1; i < argc; i++) {
    char *end = NULL;
    if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0) {
      ctl->json = true, ctl->color = false;
    } else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc && (since = strtoll(argv[++i], &end, 10)) >= 0 && end &&
               !*end && end != argv[i]) {
      continue;
    } else {
      ctl_error(ctl, "usage: cadre watch [--json] [--since SEQ]   (SEQ: the last event seq seen; what came after "
                     "is replayed)");
      return 2;
    }
  }
  client_t *c = ctl_connect(ctl);
  if (!c)
    return 1;
  on_sigint_stop();
  struct sigaction sa = {.sa_handler = stop_on_sigint};
  sigaction(SIGTERM, &sa, NULL);
  json_t *r = ctl_request(ctl, c, "subscribe", since >= 0 ? json_pack("{s:I}", "since", (json_int_t)since) : NULL);
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

/* approve --wait: each step's progress, then the finished workflow; exit 0 only when it is done. */
int cmd_approve_wait(ctl_t *ctl, client_t *c, const cmd_req_t *req, const json_t *r) {
  json_int_t id = jx_int(r, "id", jx_int(req->args, "id", 0));
  json_decref(ctl_request(ctl, c, "subscribe", NULL));
  for (;;) {
    proto_msg_t *m = NULL;
    client_next_t got = client_next(c, 1000, &m);
    if (got == CLIENT_ERROR)
      return 1;
    if (got == CLIENT_RECONNECTED)
      json_decref(ctl_request(ctl, c, "subscribe", NULL));
    if (got != CLIENT_MSG)
      continue;
    const json_t *p = m->payload;
    bool ours = m->type == PROTO_EVENT && jx_int(p, "id", 0) == id;
    if (ours && !ctl->json && strncmp(m->kind, "step_", 5) == 0) {
      bool failed = strcmp(m->kind, "step_failed") == 0;
      printf("%s step %lld %s",
             strcmp(m->kind, "step_done") == 0 ? "✓"
             : failed                          ? "✗"
                                               : "⟳",
             (long long)jx_int(p, "step", 0), m->kind + 5);
      if (failed) /* why, so that a person need not look elsewhere */
        printf("%s: %.300s", jx_bool(p, "will_retry", false) ? " (will retry)" : "", jx_str(p, "detail", "?"));
      putchar('\n');
    }
    if (ours && strcmp(m->kind, "workflow_finished") == 0) {
      int rc = strcmp(jx_str(p, "status", ""), "done") == 0 ? 0 : 1;
      cmd_print(ctl, cmd_find("approve"), req, p);
      proto_msg_destroy(&m);
      return rc;
    }
    proto_msg_destroy(&m);
  }
}
