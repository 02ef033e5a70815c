/* sessions: turns onto nodes, failed sends, the history cap, deltas and turn ends,
 * against a broker without sockets (tests/unit/broker_fixture.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_fixture.h"
#include "util.h"

static int64_t ask(fx_t *fx, const char *text) {
  char err[256];
  int64_t turn = sessions_ask(fx->b, "main", text, err, sizeof err);
  assert_true(turn > 0);
  return turn;
}

/* A node that does not take the turn: how the turn and the slot end up. */
typedef struct {
  const char *name;
  int rc;    /* what the writer answers for the turn frame */
  int times; /* how many times in a row */
  int ticks; /* retry ticks after the failure */
  int want_busy;
  bool want_running;     /* the turn is on the node at the end */
  const char *want_code; /* the turn failed with this code, or NULL */
} send_case_t;

static const send_case_t send_cases[] = {
    {"EAGAIN once: queued, then sent on the next tick", -EAGAIN, 1, 1, 1, true, NULL},
    {"EAGAIN until attempts run out: failed, slot free", -EAGAIN, 3, 3, 0, false, "send_failed"},
    {"EMSGSIZE: failed at once, slot free", -EMSGSIZE, 1, 0, 0, false, "send_failed"},
    {"EAGAIN without a tick: still queued, slot free", -EAGAIN, 1, 0, 0, false, NULL},
};

static void run_send_case(const send_case_t *c) {
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  peer_t *node = fx_node(fx, "n1", 2);
  fx->fail_type = PROTO_TURN;
  fx->fail_rc = c->rc;
  fx->fail_count = c->times;
  int64_t id = ask(fx, "hello");
  for (int i = 0; i < c->ticks; i++) {
    turn_t *t = turn_find(fx->b, id);
    if (t)
      t->retry_at = 0; /* as if the retry delay had passed */
    sessions_tick(fx->b, util_now_ms());
  }
  turn_t *t = turn_find(fx->b, id);
  if (node->busy != c->want_busy)
    fail_msg("case \"%s\": %d busy slots, want %d", c->name, node->busy, c->want_busy);
  if ((t && t->node == node) != c->want_running)
    fail_msg("case \"%s\": running %d, want %d", c->name, t && t->node == node, c->want_running);
  const fx_sent_t *failed = fx_last(fx, PROTO_EVENT, "turn_failed");
  if (c->want_code) {
    if (!failed || t)
      fail_msg("case \"%s\": the turn did not fail", c->name);
    const char *code = json_string_value(json_object_get(failed->msg->payload, "code"));
    if (strcmp(code, c->want_code) != 0)
      fail_msg("case \"%s\": code %s, want %s", c->name, code, c->want_code);
  } else if (failed) {
    fail_msg("case \"%s\": the turn failed", c->name);
  }
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_started"), c->want_running ? 1 : 0);
  fx_destroy(&fx);
}

static void test_failed_sends_free_the_slot(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof send_cases / sizeof send_cases[0]; i++)
    run_send_case(&send_cases[i]);
}

static void test_history_is_trimmed_to_the_budget(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  const char *sp = config_main(fx->config)->system_prompt;
  fx->b->turn_budget = (sp ? strlen(sp) + 100 : 0) + 2000; /* the system prompt always goes */
  char text[400];
  memset(text, 'x', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  /* Ten turns' worth of history, about 4 KB: more than the budget. */
  for (int i = 0; i < 10; i++) {
    json_t *m = json_pack("{s:s, s:s}", "role", i % 2 ? "assistant" : "user", "content", text);
    store_append(fx->b->store, "main", 0, m, NULL);
    json_decref(m);
  }
  peer_t *node = fx_node(fx, "n1", 1);
  ask(fx, "the newest question");
  const fx_sent_t *turn = fx_last(fx, PROTO_TURN, NULL);
  assert_non_null(turn);
  assert_int_equal(node->busy, 1);
  json_t *msgs = turn->msg->messages;
  assert_true(json_array_size(msgs) < 11);
  assert_true(json_array_size(msgs) >= 2);
  const char *last = json_string_value(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "content"));
  assert_string_equal(last, "the newest question");
  const fx_sent_t *started = fx_last(fx, PROTO_EVENT, "turn_started");
  assert_true(json_integer_value(json_object_get(started->msg->payload, "trimmed")) > 0);
  fx_destroy(&fx);
}

/* The bytes of history a model context leaves, tokens as bytes / 4, a tenth in reserve. */
static const struct {
  const char *name;
  long long ctx, tools;
  int max_tokens, bpt100;
  size_t want;
} ctx_cases[] = {
    {"unknown context: no limit", 0, 0, 256, 0, SIZE_MAX},
    {"2048 tokens, 256 for the answer", 2048, 0, 256, 0, (2048 - 256) * 9 / 10 * 4},
    {"tool definitions take their share", 2048, 1000, 256, 0, (2048 - 256 - 1000) * 9 / 10 * 4},
    {"nothing left: still the floor", 1024, 2000, 256, 0, 128 * 4},
    {"a server counting 3 bytes a token", 2048, 0, 256, 300, (2048 - 256) * 9 / 10 * 3},
    {"tools in the server's tokens too", 2048, 300, 256, 200, (2048 - 256 - 600) * 9 / 10 * 2},
};

static void test_context_bytes(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof ctx_cases / sizeof ctx_cases[0]; i++) {
    size_t got =
        sessions_context_bytes(ctx_cases[i].ctx, ctx_cases[i].tools, ctx_cases[i].max_tokens, ctx_cases[i].bpt100);
    if (got != ctx_cases[i].want)
      fail_msg("case \"%s\": %zu, want %zu", ctx_cases[i].name, got, ctx_cases[i].want);
  }
}

/* A context a node reported: later turns fit it, older turns go first (a tool
 * call with its result), the latest user message and the system prompt stay,
 * and the system message says what was left out. */
/* Main's history past a reported context of room for its prompt and ~1,000
 * bytes: a first turn that added a tool call, a 2,000-byte result and an
 * answer, then a second question. */
/* The system prompt of a turn in a small context (below 6,144 tokens): the short one when there is one. */
static const char *small_prompt(const cadre_profile_t *mp) {
  return mp->system_prompt_short ? mp->system_prompt_short : mp->system_prompt;
}

static peer_t *past_the_context(fx_t *fx, bool summarize) {
  peer_t *node = fx_node(fx, "n1", 1);
  cadre_profile_t *mp = (cadre_profile_t *)config_main(fx->config);
  mp->summarize_context = summarize;
  size_t sp = small_prompt(mp) ? strlen(small_prompt(mp)) : 0;
  ask(fx, "first");
  const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
  proto_msg_t *m = proto_msg_new(PROTO_TURN_DONE);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, t->msg->turn);
  PROTO_SET(m, attempt, t->msg->attempt);
  char big[2001];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  proto_set_json(m, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", "done"));
  proto_set_json(m, PROTO_F_messages,
                 json_pack("[{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}]}, {s:s, s:s, s:s}, {s:s, s:s}]", "role",
                           "assistant", "content", "tool_calls", "id", "c1", "type", "function", "function", "name",
                           "read_file", "arguments", "{}", "role", "tool", "tool_call_id", "c1", "content", big, "role",
                           "assistant", "content", "done"));
  /* Room for the system prompt and about 1,000 bytes of history. */
  long long ctx = (long long)(sp + 1000) / 4 * 10 / 9 + mp->max_tokens + 50;
  proto_set_json(m, PROTO_F_usage,
                 json_pack("{s:i, s:i, s:I, s:i}", "prompt_tokens", 3, "completion_tokens", 4, "context_tokens",
                           (json_int_t)ctx, "tools_tokens", 50));
  sessions_on_done(fx->b, node, m);
  proto_msg_destroy(&m);
  ask(fx, "second");
  return node;
}

static void test_history_fits_the_reported_context(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  past_the_context(fx, false);
  const cadre_profile_t *mp = config_main(fx->config);
  const char *prompt = small_prompt(mp);
  size_t sp = prompt ? strlen(prompt) : 0;
  char big[2001];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  json_t *msgs = fx_last(fx, PROTO_TURN, NULL)->msg->messages;
  size_t n = json_array_size(msgs);
  assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, n - 1), "content")), "second");
  json_t *sys = json_array_get(msgs, 0);
  assert_string_equal(json_string_value(json_object_get(sys, "role")), "system");
  const char *text = json_string_value(json_object_get(sys, "content"));
  if (prompt)
    assert_memory_equal(text, prompt, sp);
  assert_true(json_is_true(json_object_get(fx_last(fx, PROTO_TURN, NULL)->msg->profile, "compact")));
  assert_non_null(strstr(text, "were left out to fit the model's context of"));
  /* No tool result without its call. */
  for (size_t i = 1; i < n; i++) {
    json_t *msg = json_array_get(msgs, i);
    if (json_object_get(msg, "tool_call_id"))
      assert_non_null(json_object_get(json_array_get(msgs, i - 1), "tool_calls"));
  }
  assert_null(memmem(fx_last(fx, PROTO_TURN, NULL)->data, fx_last(fx, PROTO_TURN, NULL)->len, big, 100));
  fx_destroy(&fx);
}

/* The same history, summarised: the turn first asks the model for a summary
 * (no tools, no events), keeps it in the history, then runs with it in its
 * system message and without the summarised messages. */
static void test_older_turns_are_summarised(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  peer_t *node = past_the_context(fx, true);
  int started = fx_count(fx, PROTO_EVENT, "turn_started");
  const fx_sent_t *req = fx_last(fx, PROTO_TURN, NULL);
  json_t *msgs = req->msg->messages;
  assert_int_equal(json_array_size(msgs), 2);
  assert_non_null(strstr(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "You summarise"));
  const char *transcript = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
  assert_non_null(strstr(transcript, "user: first"));
  assert_non_null(strstr(transcript, "[calls read_file {}]"));
  assert_non_null(strstr(transcript, "(cut) tool result: zzz"));
  assert_null(strstr(transcript, "second")); /* the latest question is not summarised */
  assert_null(req->msg->tools);
  fx_turn_done(fx, node, "The user asked first; a file of z was read.");
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_started"), started + 1); /* only the turn itself */
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_done"), 1);              /* only the first turn's */
  msgs = fx_last(fx, PROTO_TURN, NULL)->msg->messages;
  size_t n = json_array_size(msgs);
  const char *sys = json_string_value(json_object_get(json_array_get(msgs, 0), "content"));
  assert_non_null(strstr(sys, "[Summary of the earlier conversation"));
  assert_non_null(strstr(sys, "The user asked first; a file of z was read."));
  assert_null(strstr(sys, "were left out"));
  assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, n - 1), "content")), "second");
  assert_true(n <= 3);
  /* The history keeps every message, and the summary marked as such. */
  json_t *h = store_history(fx->b->store, "main", true);
  json_t *last = json_array_get(h, json_array_size(h) - 1);
  assert_true(json_integer_value(json_object_get(last, "context_summary")) > 0);
  json_decref(h);
  fx_destroy(&fx);
}

/* A summary that fails: the turn trims instead, and still runs. */
static void test_a_failed_summary_falls_back_to_trimming(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  peer_t *node = past_the_context(fx, true);
  const fx_sent_t *req = fx_last(fx, PROTO_TURN, NULL);
  proto_msg_t *f = proto_msg_new(PROTO_TURN_FAILED);
  proto_set_str(f, PROTO_F_session, "main");
  PROTO_SET(f, turn, req->msg->turn);
  PROTO_SET(f, attempt, req->msg->attempt);
  proto_set_str(f, PROTO_F_code, "http_error");
  proto_set_str(f, PROTO_F_detail, "model server answered 500");
  sessions_on_failed(fx->b, node, f);
  proto_msg_destroy(&f);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_failed"), 0);
  json_t *msgs = fx_last(fx, PROTO_TURN, NULL)->msg->messages;
  assert_non_null(strstr(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "were left out"));
  assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "content")),
                      "second");
  assert_int_equal(node->busy, 1);
  fx_destroy(&fx);
}

static void test_a_message_over_the_budget_fails_the_turn_clearly(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  peer_t *node = fx_node(fx, "n1", 1);
  const char *sp = config_main(fx->config)->system_prompt;
  fx->b->turn_budget = (sp ? strlen(sp) + 100 : 0) + 100;
  char text[300];
  memset(text, 'y', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  int64_t id = ask(fx, text);
  assert_null(turn_find(fx->b, id));
  assert_int_equal(node->busy, 0);
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), 0);
  const fx_sent_t *failed = fx_last(fx, PROTO_EVENT, "turn_failed");
  assert_non_null(failed);
  assert_string_equal(json_string_value(json_object_get(failed->msg->payload, "code")), "too_large");
  assert_non_null(strstr(json_string_value(json_object_get(failed->msg->payload, "detail")), "reset the session"));
  fx_destroy(&fx);
}

static void test_turn_done_carries_the_answer_not_the_tool_outputs(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  peer_t *node = fx_node(fx, "n1", 1);
  ask(fx, "read it");
  const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
  proto_msg_t *m = proto_msg_new(PROTO_TURN_DONE);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, t->msg->turn);
  PROTO_SET(m, attempt, t->msg->attempt);
  proto_set_json(m, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", "It says hi."));
  proto_set_json(m, PROTO_F_messages,
                 json_pack("[{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}]}, {s:s, s:s, s:s}, {s:s, s:s}]", "role",
                           "assistant", "content", "tool_calls", "id", "c1", "type", "function", "function", "name",
                           "read_file", "arguments", "{}", "role", "tool", "tool_call_id", "c1", "content",
                           "A VERY LONG TOOL OUTPUT", "role", "assistant", "content", "It says hi."));
  proto_set_json(m, PROTO_F_usage, json_pack("{s:i, s:i}", "prompt_tokens", 3, "completion_tokens", 4));
  sessions_on_done(fx->b, node, m);
  proto_msg_destroy(&m);
  const fx_sent_t *done = fx_last(fx, PROTO_EVENT, "turn_done");
  assert_non_null(done);
  assert_string_equal(json_string_value(json_object_get(json_object_get(done->msg->payload, "message"), "content")),
                      "It says hi.");
  assert_int_equal(json_integer_value(json_object_get(done->msg->payload, "added")), 3);
  assert_null(json_object_get(done->msg->payload, "messages"));
  assert_null(memmem(done->data, done->len, "A VERY LONG TOOL OUTPUT", 23));
  /* The history keeps every message the turn added. */
  json_t *h = store_history(fx->b->store, "main", false);
  assert_int_equal(json_array_size(h), 4);
  json_decref(h);
  assert_int_equal(node->busy, 0);
  fx_destroy(&fx);
}

/* ---- one user request over several turns (no runaway) ---------------- */

/* The node's answer to the last turn: a call of a tool nobody has (the broker
 * answers it and queues the next turn). 0, or -1 when no turn was running. */
static int answer_unknown_call(fx_t *fx, peer_t *node, const char *args) {
  const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
  turn_t *live = t ? turn_find(fx->b, t->msg->turn) : NULL;
  if (!live || live->node != node)
    return -1;
  proto_msg_t *m = proto_msg_new(PROTO_TURN_DONE);
  proto_set_str(m, PROTO_F_session, t->msg->session);
  PROTO_SET(m, turn, t->msg->turn);
  PROTO_SET(m, attempt, t->msg->attempt);
  proto_set_json(m, PROTO_F_message,
                 json_pack("{s:s, s:s, s:[{s:s, s:s, s:{s:s, s:s}}]}", "role", "assistant", "content", "", "tool_calls",
                           "id", "c1", "type", "function", "function", "name", "no_such_tool", "arguments", args));
  proto_set_str(m, PROTO_F_finish_reason, "tool_calls");
  sessions_on_done(fx->b, node, m);
  proto_msg_destroy(&m);
  return 0;
}

typedef enum { RQ_NOTHING, RQ_CANCEL_FIRST, RQ_CANCEL_LAST_ENDED, RQ_STOP_ALL, RQ_RESET } rq_action_t;

typedef struct {
  const char *name;
  int cap;               /* tools.max_iterations */
  bool same_args;        /* every answer makes the same call */
  int answers;           /* answers given at most (each one a turn) */
  rq_action_t action;    /* then */
  int want_turns;        /* turn frames sent in all */
  int want_rounds;       /* rounds carried by the last turn frame */
  const char *want_code; /* the last turn_failed's code (NULL: none) */
  const char *want_detail;
} request_case_t;

static const request_case_t request_cases[] = {
    {"new calls stop at the cap", 4, false, 10, RQ_NOTHING, 4, 3, "iteration_cap", "cap of 4 model calls"},
    {"the same call three times in a row is stuck", 100, true, 10, RQ_NOTHING, 3, 2, "stuck",
     "no_such_tool with the same arguments 3 times"},
    {"cancel by the request's first turn ends it", 100, false, 3, RQ_CANCEL_FIRST, 4, 3, "cancelled", NULL},
    {"cancel by its last ended turn ends it", 100, false, 3, RQ_CANCEL_LAST_ENDED, 4, 3, "cancelled", NULL},
    {"stop-all ends main's request", 100, false, 3, RQ_STOP_ALL, 4, 3, "cancelled", NULL},
    {"reset ends the session's request", 100, false, 3, RQ_RESET, 4, 3, "cancelled", NULL},
};

static void run_request_case(const request_case_t *c) {
  char extra[96];
  snprintf(extra, sizeof extra, "\"tools\": {\"max_iterations\": %d}", c->cap);
  fx_t *fx = fx_new(extra);
  fx_controller(fx, "ctl");
  peer_t *node = fx_node(fx, "n1", 2);
  int64_t first = ask(fx, "go on forever");
  for (int i = 0; i < c->answers; i++) {
    char args[32];
    snprintf(args, sizeof args, "{\"n\": %d}", c->same_args ? 0 : i);
    if (answer_unknown_call(fx, node, args) < 0)
      break;
  }
  int64_t last_sent = fx_last(fx, PROTO_TURN, NULL)->msg->turn;
  switch (c->action) {
  case RQ_NOTHING: break;
  case RQ_CANCEL_FIRST: assert_int_equal(sessions_cancel(fx->b, first, "by the user"), 1); break;
  case RQ_CANCEL_LAST_ENDED: assert_int_equal(sessions_cancel(fx->b, last_sent - 1, "by the user"), 1); break;
  case RQ_STOP_ALL: assert_int_equal(sessions_cancel_all(fx->b, NULL, "stop_all", NULL), 1); break;
  case RQ_RESET: assert_int_equal(sessions_cancel_all(fx->b, "main", "reset", NULL), 1); break;
  }
  int turns = fx_count(fx, PROTO_TURN, NULL);
  if (turns != c->want_turns)
    fail_msg("case \"%s\": %d turns sent, want %d", c->name, turns, c->want_turns);
  const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
  if (t->msg->rounds != c->want_rounds)
    fail_msg("case \"%s\": the last turn carried rounds %lld, want %d", c->name, (long long)t->msg->rounds,
             c->want_rounds);
  const fx_sent_t *failed = fx_last(fx, PROTO_EVENT, "turn_failed");
  const char *code = failed ? json_string_value(json_object_get(failed->msg->payload, "code")) : NULL;
  if (!code || strcmp(code, c->want_code) != 0)
    fail_msg("case \"%s\": code %s, want %s", c->name, code ? code : "(none)", c->want_code);
  const char *detail = json_string_value(json_object_get(failed->msg->payload, "detail"));
  if (c->want_detail && !strstr(detail, c->want_detail))
    fail_msg("case \"%s\": detail \"%s\" lacks \"%s\"", c->name, detail, c->want_detail);
  /* Nothing runs or waits any more, and nothing continues the request. */
  assert_null(fx->b->turns);
  assert_int_equal(node->busy, 0);
  int failures = fx_count(fx, PROTO_EVENT, "turn_failed");
  assert_int_equal(sessions_queue_turn(fx->b, "main", store_last_turn(fx->b->store, "main")), -1);
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), turns);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_failed"), failures); /* refused quietly: it was said */
  /* A new message starts a new count. */
  ask(fx, "something else");
  assert_int_equal(fx_count(fx, PROTO_TURN, NULL), turns + 1);
  assert_false(PROTO_HAS(fx_last(fx, PROTO_TURN, NULL)->msg, rounds));
  fx_destroy(&fx);
}

static void test_a_request_is_bounded_and_ends_when_cancelled(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof request_cases / sizeof request_cases[0]; i++)
    run_request_case(&request_cases[i]);
}

/* Deltas: only the running attempt's, forwarded unchanged to watchers only. */
typedef struct {
  const char *name;
  const char *session;
  int turn_offset, attempt_offset;
  bool from_other_node;
  int want_forwarded;
} delta_case_t;

static const delta_case_t delta_cases[] = {
    {"the running attempt is forwarded", "main", 0, 0, false, 1},
    {"an older attempt is dropped", "main", 0, -1, false, 0},
    {"an unknown turn is dropped", "main", 7, 0, false, 0},
    {"another session's name is dropped", "mai", 0, 0, false, 0},
    {"another node's delta is dropped", "main", 0, 0, true, 0},
};

static void test_deltas_are_routed_by_turn_and_attempt(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof delta_cases / sizeof delta_cases[0]; i++) {
    const delta_case_t *c = &delta_cases[i];
    fx_t *fx = fx_new(NULL);
    fx_controller(fx, "watcher");
    peer_t *n1 = fx_node(fx, "n1", 1), *n2 = fx_node(fx, "n2", 1);
    ask(fx, "go");
    const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
    peer_t *runner = t->idlen == 2 && memcmp(t->id, "n1", 2) == 0 ? n1 : n2;
    proto_msg_t *d = proto_msg_new(PROTO_DELTA);
    proto_set_str(d, PROTO_F_session, "main");
    PROTO_SET(d, turn, t->msg->turn);
    PROTO_SET(d, attempt, t->msg->attempt);
    PROTO_SET(d, seq, 1);
    proto_set_str(d, PROTO_F_kind, "text");
    proto_set_str(d, PROTO_F_text, "piece");
    char *raw = NULL;
    size_t len = 0;
    assert_int_equal(proto_encode(d, &raw, &len, NULL), 0);
    proto_msg_destroy(&d);
    sessions_route_t r = {c->session, strlen(c->session), t->msg->turn + c->turn_offset,
                          t->msg->attempt + c->attempt_offset};
    fx_clear(fx);
    sessions_on_delta(fx->b, c->from_other_node ? (runner == n1 ? n2 : n1) : runner, &r, raw, len);
    if (fx->n_sent != c->want_forwarded)
      fail_msg("case \"%s\": %d frames forwarded, want %d", c->name, fx->n_sent, c->want_forwarded);
    if (fx->n_sent == 1) /* the very bytes the node sent */
      assert_memory_equal(fx->sent[0].data, raw, len);
    free(raw);
    fx_destroy(&fx);
  }
}

static void test_an_event_is_encoded_once_for_every_watcher(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "w1");
  fx_controller(fx, "w2");
  peer_t *other = fx_controller(fx, "w3");
  other->watch_all = false; /* watches nothing */
  broker_event(fx->b, "turn_waiting", "main", 0, json_pack("{s:s}", "detail", "no node yet"));
  assert_int_equal(fx->n_sent, 2);
  assert_int_equal(fx->sent[0].len, fx->sent[1].len);
  assert_memory_equal(fx->sent[0].data, fx->sent[1].data, fx->sent[0].len);
  fx_destroy(&fx);
}

/* The outbox reports a peer that is gone through hooks.unreachable; nodes removes it. */
static void test_an_unreachable_watcher_is_removed(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  peer_t *w1 = fx_controller(fx, "w1");
  fx_controller(fx, "w2");
  fx->fail_type = PROTO_EVENT;
  fx->fail_rc = -EHOSTUNREACH;
  fx->fail_count = 1; /* the first watcher written to (the newest: w2) is gone */
  broker_event(fx->b, "node_left", NULL, 0, json_pack("{s:s, s:s}", "name", "n9", "reason", "gone"));
  assert_int_equal(fx->n_sent, 1);
  assert_false(w1->dead);
  assert_true(peer_find(fx->b, "w2", 2) == NULL);
  broker_event(fx->b, "node_left", NULL, 0, json_pack("{s:s, s:s}", "name", "n9", "reason", "gone"));
  assert_int_equal(fx->n_sent, 2);
  fx_destroy(&fx);
}

static void test_a_lost_node_requeues_its_turn(void **state) {
  (void)state;
  fx_t *fx = fx_new(NULL);
  fx_controller(fx, "ctl");
  peer_t *n1 = fx_node(fx, "n1", 1);
  int64_t id = ask(fx, "hello");
  assert_ptr_equal(turn_find(fx->b, id)->node, n1);
  fx->fail_type = PROTO_NONE;
  peer_remove(fx->b, n1, "test");
  turn_t *t = turn_find(fx->b, id);
  assert_non_null(t);
  assert_null(t->node);
  assert_int_equal(fx_count(fx, PROTO_EVENT, "turn_requeued"), 1);
  peer_t *n2 = fx_node(fx, "n2", 1);
  sessions_schedule(fx->b);
  assert_ptr_equal(turn_find(fx->b, id)->node, n2);
  assert_int_equal(turn_find(fx->b, id)->attempt, 2);
  fx_destroy(&fx);
}

/* ---- approvals: "allow for this session" is remembered per session and tool -------- */

/* The node running turn asks whether a call of tool may run (approval seq). */
static void node_asks(fx_t *fx, peer_t *node, int64_t turn, int64_t attempt, int64_t seq, const char *tool) {
  proto_msg_t *m = proto_msg_new(PROTO_APPROVAL);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, turn);
  PROTO_SET(m, attempt, attempt);
  PROTO_SET(m, seq, seq);
  json_t *call =
      json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", "c", "type", "function", "function", "name", tool, "arguments", "{}");
  char *text = json_dumps(call, JSON_COMPACT);
  proto_set_str(m, PROTO_F_text, text);
  proto_set_json(m, PROTO_F_call, call);
  proto_set_str(m, PROTO_F_detail, "$ true");
  free(text);
  sessions_on_approval(fx->b, node, m);
  proto_msg_destroy(&m);
}

typedef struct {
  const char *name;
  bool allow, session_wide; /* the answer to the first question (execute_bash) */
  const char *second;       /* the tool of the second call */
  bool want_asked;          /* whether the second call asks the watchers */
} approval_case_t;

static const approval_case_t approval_cases[] = {
    {"allowed for the session, same tool", true, true, "execute_bash", false},
    {"allowed once, same tool", true, false, "execute_bash", true},
    {"denied (session_wide ignored)", false, true, "execute_bash", true},
    {"allowed for the session, another tool", true, true, "write_file_tool", true},
};

static void test_allow_for_this_session_is_remembered_per_tool(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof approval_cases / sizeof approval_cases[0]; i++) {
    const approval_case_t *c = &approval_cases[i];
    fx_t *fx = fx_new(NULL);
    fx_controller(fx, "console");
    peer_t *n1 = fx_node(fx, "n1", 1);
    int64_t id = ask(fx, "do it");
    int64_t attempt = fx_last(fx, PROTO_TURN, NULL)->msg->attempt;
    node_asks(fx, n1, id, attempt, 1, "execute_bash");
    const fx_sent_t *need = fx_last(fx, PROTO_EVENT, "approval_needed");
    assert_non_null(need);
    assert_string_equal(json_string_value(json_object_get(need->msg->payload, "preview")), "$ true");
    assert_int_equal(sessions_approve(fx->b, id, 1, c->allow, c->session_wide), 0);
    const fx_sent_t *reply = fx_last(fx, PROTO_APPROVAL_REPLY, NULL);
    assert_string_equal(reply->msg->kind, c->allow ? "allow" : "deny");
    fx_clear(fx);
    node_asks(fx, n1, id, attempt, 2, c->second);
    int asked = fx_count(fx, PROTO_EVENT, "approval_needed");
    reply = fx_last(fx, PROTO_APPROVAL_REPLY, NULL);
    if (asked != (c->want_asked ? 1 : 0) || (!c->want_asked && (!reply || strcmp(reply->msg->kind, "allow") != 0)))
      fail_msg("case \"%s\": asked %d times, reply %s", c->name, asked, reply ? reply->msg->kind : "none");
    fx_destroy(&fx);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failed_sends_free_the_slot),
      cmocka_unit_test(test_history_is_trimmed_to_the_budget),
      cmocka_unit_test(test_context_bytes),
      cmocka_unit_test(test_history_fits_the_reported_context),
      cmocka_unit_test(test_older_turns_are_summarised),
      cmocka_unit_test(test_a_failed_summary_falls_back_to_trimming),
      cmocka_unit_test(test_a_message_over_the_budget_fails_the_turn_clearly),
      cmocka_unit_test(test_turn_done_carries_the_answer_not_the_tool_outputs),
      cmocka_unit_test(test_deltas_are_routed_by_turn_and_attempt),
      cmocka_unit_test(test_an_event_is_encoded_once_for_every_watcher),
      cmocka_unit_test(test_an_unreachable_watcher_is_removed),
      cmocka_unit_test(test_a_lost_node_requeues_its_turn),
      cmocka_unit_test(test_allow_for_this_session_is_remembered_per_tool),
      cmocka_unit_test(test_a_request_is_bounded_and_ends_when_cancelled),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
