/* fuzz_mcp: one message from an MCP server (a line of its stdout, or an HTTP
 * answer) through every check a node makes of it: classify, the response's
 * result, and that result read as an initialize, a tools/list page and a
 * tools/call answer. Failures must leave the outputs untouched; offered tool
 * names must be OpenAI function names. */
#include <jansson.h>
#include <stdio.h>

#include "fuzz.h"
#include "mcp_msg.h"

static void check_names(const json_t *tools) {
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) {
    const char *n = json_string_value(json_object_get(t, "name"));
    FUZZ_CHECK(n && *n && strlen(n) <= MCP_NAME_MAX);
    FUZZ_CHECK(strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(n));
  }
}

static void as_result(const json_t *result) {
  char err[512], version[32] = "x";
  if (mcp_initialize_check(result, version, sizeof version, err, sizeof err) == 0)
    FUZZ_CHECK(mcp_version_supported(version));
  else
    FUZZ_CHECK(strcmp(version, "x") == 0 && err[0]);
  json_t *tools = json_array();
  size_t skipped = 0;
  char *cursor = NULL;
  if (mcp_tools_page(result, "srv", tools, &skipped, &cursor, err, sizeof err) == 0)
    check_names(tools);
  else
    FUZZ_CHECK(json_array_size(tools) == 0 && !cursor);
  free(cursor);
  json_decref(tools);
  sbuf_t text = {0};
  bool is_error = false;
  if (mcp_call_result(result, &text, &is_error, err, sizeof err) == 0)
    FUZZ_CHECK(text.len > 0);
  else
    FUZZ_CHECK(text.len == 0);
  sbuf_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *msg = json_loadb((const char *)data, size, 0, &je);
  if (!msg)
    return 0;
  char err[512];
  int64_t id;
  mcp_msg_kind_t k = mcp_classify(msg, &id, err, sizeof err);
  if (k == MCP_MSG_REQUEST) {
    json_t *a = mcp_answer_request(msg);
    FUZZ_CHECK(a != NULL);
    json_decref(a);
  }
  const json_t *result = NULL;
  if (mcp_response_result(msg, &result, err, sizeof err) == 0)
    as_result(result);
  else
    FUZZ_CHECK(result == NULL);
  as_result(msg); /* a result object given directly */
  json_decref(msg);
  return 0;
}
