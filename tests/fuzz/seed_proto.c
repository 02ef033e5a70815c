/* seed_proto: writes the protocol fuzz target's seeds (one frame per file)
 * into DIR: a frame of every common kind, so the fuzzer starts from valid
 * messages. usage: fuzz_seed_proto DIR */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto.h"

static int save(const char *dir, const char *name, proto_msg_t *m) {
  char *buf = NULL, path[4096];
  size_t len = 0;
  proto_err_t err;
  m->id = 7;
  if (proto_encode(m, &buf, &len, &err) != 0) {
    fprintf(stderr, "%s: %s\n", name, err.text);
    return -1;
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, len, f) != len) {
    perror(path);
    return -1;
  }
  fclose(f);
  free(buf);
  proto_msg_destroy(&m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2)
    return 2;
  const char *d = argv[1];
  proto_msg_t *m = proto_msg_new(PROTO_HELLO);
  proto_set_str(m, PROTO_F_role, "node");
  proto_set_str(m, PROTO_F_name, "n1");
  proto_set_str(m, PROTO_F_version, "0.1.0");
  PROTO_SET(m, slots, 4);
  proto_set_json(m, PROTO_F_labels, json_pack("{s:s}", "gpu", "1"));
  int rc = save(d, "hello", m);
  m = proto_msg_new(PROTO_HEARTBEAT);
  PROTO_SET(m, busy, 2);
  rc |= save(d, "heartbeat", m);
  m = proto_msg_new(PROTO_REQUEST);
  proto_set_str(m, PROTO_F_verb, "ask");
  proto_set_json(m, PROTO_F_args, json_pack("{s:s, s:s}", "text", "hello", "session", "main"));
  rc |= save(d, "request", m);
  m = proto_msg_new(PROTO_DELTA);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, 3);
  PROTO_SET(m, attempt, 1);
  PROTO_SET(m, seq, 9);
  proto_set_str(m, PROTO_F_kind, "text");
  proto_set_str(m, PROTO_F_text, "Hello, wörld ✓");
  rc |= save(d, "delta", m);
  m = proto_msg_new(PROTO_TURN);
  proto_set_str(m, PROTO_F_session, "reviewer-1");
  PROTO_SET(m, turn, 4);
  PROTO_SET(m, attempt, 1);
  proto_set_json(m, PROTO_F_profile, json_pack("{s:s, s:s, s:i}", "model", "m", "url", "http://x", "max_tokens", 64));
  proto_set_json(m, PROTO_F_messages, json_pack("[{s:s, s:s}]", "role", "user", "content", "hi"));
  proto_set_json(m, PROTO_F_tools, json_pack("[s]", "read_file"));
  rc |= save(d, "turn", m);
  m = proto_msg_new(PROTO_TURN_DONE);
  proto_set_str(m, PROTO_F_session, "main");
  PROTO_SET(m, turn, 3);
  PROTO_SET(m, attempt, 1);
  proto_set_json(m, PROTO_F_message, json_pack("{s:s, s:s}", "role", "assistant", "content", "done"));
  proto_set_json(m, PROTO_F_usage, json_pack("{s:i, s:i}", "prompt_tokens", 5, "completion_tokens", 2));
  rc |= save(d, "turn_done", m);
  m = proto_msg_new(PROTO_ERROR);
  proto_set_str(m, PROTO_F_code, "bad_args");
  proto_set_str(m, PROTO_F_detail, "no");
  rc |= save(d, "error", m);
  return rc ? 1 : 0;
}
