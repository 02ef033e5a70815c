/* fuzz_proto: the protocol decoder and the routing peek, on any frame.
 * Invariants: a frame that decodes encodes again, and that encoding decodes
 * to the same type; when both the peek and the decode accept a frame, they
 * agree on its type. */
#include <stdio.h>

#include "fuzz.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  proto_msg_t *m = NULL;
  proto_err_t err;
  proto_peek_t pk;
  proto_err_t perr;
  proto_errcode_t peeked = proto_peek(data, size, &pk, &perr);
  if (proto_decode(data, size, &m, &err) != PROTO_OK)
    return 0;
  if (peeked == PROTO_OK)
    FUZZ_CHECK(pk.type == m->type);
  char *buf = NULL;
  size_t len = 0;
  if (proto_encode(m, &buf, &len, &err) == 0) {
    proto_msg_t *again = NULL;
    FUZZ_CHECK(proto_decode(buf, len, &again, &err) == PROTO_OK);
    FUZZ_CHECK(again->type == m->type);
    proto_msg_destroy(&again);
    free(buf);
  }
  proto_msg_destroy(&m);
  return 0;
}
