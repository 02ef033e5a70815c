/* fuzz_stream (built as fuzz_stream_sse and fuzz_stream_ndjson): a model
 * server's response body, fed in pieces whose size the first byte picks.
 * Invariants: the result after finish has text and thinking; text is valid
 * UTF-8 (the parser must never pass on a broken sequence). */
#include <stdio.h>

#include "fuzz.h"
#include "stream.h"
#include "util.h"

#ifndef FUZZ_FORMAT
#define FUZZ_FORMAT LLM_FORMAT_OPENAI_SSE
#endif

static void on_text(void *ud, const char *s, size_t n) {
  (void)ud;
  FUZZ_CHECK(util_utf8_valid(s, n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t piece = data[0] ? data[0] : 4096;
  data++;
  size--;
  llm_stream_cb_t cb = {.on_text = on_text, .on_thinking = on_text};
  llm_stream_t *st = llm_stream_new(FUZZ_FORMAT, &cb, NULL);
  int rc = 0;
  for (size_t at = 0; at < size && rc == 0; at += piece)
    rc = llm_stream_feed(st, (const char *)data + at, size - at < piece ? size - at : piece);
  if (rc == 0)
    llm_stream_finish(st);
  const llm_result_t *r = llm_stream_result(st);
  if (r && r->text) {
    FUZZ_CHECK(util_utf8_valid(r->text, strlen(r->text)));
    FUZZ_CHECK(r->thinking != NULL);
  }
  llm_stream_destroy(&st);
  return 0;
}
