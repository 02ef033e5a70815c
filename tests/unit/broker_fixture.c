#include "broker_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static const char *base_config =
    "{\"agents\": {"
    " \"main_agent\": {\"provider\": \"openai\", \"url\": \"http://127.0.0.1:9/v1\", \"model\": \"big\", \"role\": "
    "\"main\"},"
    " \"reviewer_agent\": {\"provider\": \"openai\", \"url\": \"http://127.0.0.1:9/v1\", \"model\": \"small\","
    "   \"role\": \"reviewer\"}}%s%s}";

static int record(void *ctx, const void *id, size_t idlen, const void *data, size_t len) {
  fx_t *fx = ctx;
  proto_msg_t *m = NULL;
  proto_err_t err;
  if (proto_decode(data, len, &m, &err) != PROTO_OK)
    return -EINVAL;
  if (fx->fail_count > 0 && (fx->fail_type == PROTO_NONE || fx->fail_type == m->type)) {
    fx->fail_count--;
    proto_msg_destroy(&m);
    return fx->fail_rc;
  }
  if (fx->n_sent >= FX_SENT_MAX) {
    proto_msg_destroy(&m);
    return -ENOBUFS;
  }
  fx_sent_t *s = &fx->sent[fx->n_sent++];
  memcpy(s->id, id, idlen);
  s->idlen = idlen;
  s->data = malloc(len);
  memcpy(s->data, data, len);
  s->len = len;
  s->msg = m;
  return 0;
}

fx_t *fx_new(const char *extra_json) {
  fx_t *fx = calloc(1, sizeof *fx);
  snprintf(fx->dir, sizeof fx->dir, "/tmp/cadre-unit-XXXXXX");
  if (!mkdtemp(fx->dir))
    abort();
  char *path = util_path_join(fx->dir, "config.json");
  char text[4096];
  snprintf(text, sizeof text, base_config, extra_json ? ", " : "", extra_json ? extra_json : "");
  util_write_file(path, text, strlen(text), 0600);
  char err[512];
  fx->config = config_load(path, NULL, err, sizeof err);
  free(path);
  if (!fx->config) {
    fprintf(stderr, "config: %s\n", err);
    abort();
  }
  broker_t *b = calloc(1, sizeof *b);
  b->opts.state_dir = STORE_MEMORY;
  b->opts.config = fx->config;
  b->opts.heartbeat_ms = 1000;
  b->opts.liveness = 3;
  b->opts.queue_timeout_ms = 60000;
  b->opts.max_turn_attempts = 3;
  b->store = store_open(STORE_MEMORY, err, sizeof err);
  if (!b->store) {
    fprintf(stderr, "store: %s\n", err);
    abort();
  }
  outbox_set_writer(b, record, fx);
  if (broker_core_start(b) < 0)
    abort();
  fx->b = b;
  return fx;
}

void fx_clear(fx_t *fx) {
  for (int i = 0; i < fx->n_sent; i++) {
    free(fx->sent[i].data);
    proto_msg_destroy(&fx->sent[i].msg);
  }
  fx->n_sent = 0;
}

void fx_destroy(fx_t **fx_p) {
  fx_t *fx = *fx_p;
  if (!fx)
    return;
  fx_clear(fx);
  broker_destroy(&fx->b);
  config_destroy(&fx->config);
  char *path = util_path_join(fx->dir, "config.json");
  unlink(path);
  free(path);
  rmdir(fx->dir);
  free(fx);
  *fx_p = NULL;
}

static peer_t *hello(fx_t *fx, const char *role, const char *name, int slots) {
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  proto_set_str(m, PROTO_F_role, role);
  proto_set_str(m, PROTO_F_name, name);
  proto_set_str(m, PROTO_F_version, "test");
  if (slots > 0)
    PROTO_SET(m, slots, slots);
  char err[256];
  peer_t *p = peer_hello(fx->b, name, strlen(name), m, err, sizeof err);
  proto_msg_destroy(&m);
  return p;
}

peer_t *fx_node(fx_t *fx, const char *name, int slots) {
  return hello(fx, "node", name, slots);
}

peer_t *fx_controller(fx_t *fx, const char *name) {
  peer_t *p = hello(fx, "controller", name, 0);
  p->watch_all = true;
  return p;
}

static bool matches(const fx_sent_t *s, proto_type_t type, const char *kind) {
  return s->msg->type == type && (!kind || (s->msg->kind && strcmp(s->msg->kind, kind) == 0));
}

int fx_count(const fx_t *fx, proto_type_t type, const char *kind) {
  int n = 0;
  for (int i = 0; i < fx->n_sent; i++)
    n += matches(&fx->sent[i], type, kind);
  return n;
}

const fx_sent_t *fx_last(const fx_t *fx, proto_type_t type, const char *kind) {
  for (int i = fx->n_sent - 1; i >= 0; i--)
    if (matches(&fx->sent[i], type, kind))
      return &fx->sent[i];
  return NULL;
}

void fx_turn_done(fx_t *fx, peer_t *node, const char *content) {
  const fx_sent_t *t = fx_last(fx, PROTO_TURN, NULL);
  if (!t)
    abort();
  proto_msg_t *m = proto_msg_new(PROTO_TURN_DONE);
  proto_set_str(m, PROTO_F_session, t->msg->session);
  PROTO_SET(m, turn, t->msg->turn);
  PROTO_SET(m, attempt, t->msg->attempt);
  proto_set_json(m, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", content));
  proto_set_json(m, PROTO_F_usage, json_pack("{s:i, s:i}", "prompt_tokens", 10, "completion_tokens", 5));
  proto_set_str(m, PROTO_F_finish_reason, "stop");
  sessions_on_done(fx->b, node, m);
  proto_msg_destroy(&m);
}
