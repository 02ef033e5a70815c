/* fuzz_summary: a sub-agent's answer as the [SUMMARY] parser reads it, and
 * the summary rendered back as its parent sees it. */
#include <jansson.h>
#include <stdio.h>

#include "fuzz.h"
#include "summary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_cstr(data, size);
  json_t *s = text ? summary_parse(text) : NULL;
  if (s) {
    const char *status = json_string_value(json_object_get(s, "status"));
    FUZZ_CHECK(status != NULL);
    char *shown = summary_render("reviewer-1", "reviewer", s);
    FUZZ_CHECK(shown != NULL);
    free(shown);
    json_decref(s);
  }
  free(text);
  return 0;
}
