/* Tests of mcp_msg: the MCP messages a node sends and its checks of what a
 * server answers: a table of bad answers, each with the stage that reads it,
 * the text its error must contain, and proof that the outputs stayed
 * untouched; then the good paths (version negotiation, tool names, pages,
 * content of every type). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcp_msg.h"

typedef enum { STAGE_CLASSIFY, STAGE_RESPONSE, STAGE_INITIALIZE, STAGE_TOOLS, STAGE_CALL } stage_t;

typedef struct {
  const char *name;
  stage_t stage;
  const char *json; /* the server's message (STAGE_CLASSIFY, STAGE_RESPONSE) or result */
  const char *mention;
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"not an object", STAGE_CLASSIFY, "[1, 2]", "not a JSON-RPC object"},
    {"no jsonrpc", STAGE_CLASSIFY, "{\"id\": 1, \"result\": {}}", "\"jsonrpc\": \"2.0\""},
    {"jsonrpc 1.0", STAGE_CLASSIFY, "{\"jsonrpc\": \"1.0\", \"id\": 1, \"result\": {}}", "\"jsonrpc\": \"2.0\""},
    {"neither method nor id", STAGE_CLASSIFY, "{\"jsonrpc\": \"2.0\", \"result\": {}}", "neither a method nor an id"},
    {"error answer", STAGE_RESPONSE,
     "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,\"message\":\"bad\\nargs\"}}", "error -32602: bad args"},
    {"error without message", STAGE_RESPONSE, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{}}", "no message"},
    {"result not an object", STAGE_RESPONSE, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[]}", "no result object"},
    {"no result", STAGE_RESPONSE, "{\"jsonrpc\":\"2.0\",\"id\":1}", "no result object"},
    {"initialize without version", STAGE_INITIALIZE, "{\"capabilities\":{}}", "no protocolVersion"},
    {"initialize version unknown", STAGE_INITIALIZE, "{\"protocolVersion\":\"1999-01-01\"}",
     "\"1999-01-01\", which this node does not"},
    {"initialize version not a string", STAGE_INITIALIZE, "{\"protocolVersion\":20250618}", "no protocolVersion"},
    {"initialize capabilities a list", STAGE_INITIALIZE, "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":[]}",
     "capabilities are not an object"},
    {"tools/list without tools", STAGE_TOOLS, "{}", "no \"tools\" array"},
    {"tools/list tools an object", STAGE_TOOLS, "{\"tools\":{}}", "no \"tools\" array"},
    {"tools/call content a string", STAGE_CALL, "{\"content\":\"hi\"}", "no valid \"content\""},
    {"tools/call nothing", STAGE_CALL, "{}", "no valid \"content\""},
    {"tools/call isError a string", STAGE_CALL, "{\"content\":[],\"isError\":\"yes\"}", "no valid \"content\""},
};

static void one_bad_case(const bad_case_t *c) {
  json_error_t je;
  json_t *v = json_loads(c->json, 0, &je);
  assert_non_null(v);
  char err[512] = "";
  int rc = 0;
  switch (c->stage) {
  case STAGE_CLASSIFY: {
    int64_t id = 42;
    rc = mcp_classify(v, &id, err, sizeof err) == MCP_MSG_INVALID ? -1 : 0;
    assert_int_equal(id, -1);
    break;
  }
  case STAGE_RESPONSE: {
    const json_t *result = (const json_t *)&rc; /* a sentinel that must stay */
    rc = mcp_response_result(v, &result, err, sizeof err);
    assert_ptr_equal(result, &rc);
    break;
  }
  case STAGE_INITIALIZE: {
    char version[32] = "untouched";
    rc = mcp_initialize_check(v, version, sizeof version, err, sizeof err);
    assert_string_equal(version, "untouched");
    break;
  }
  case STAGE_TOOLS: {
    json_t *tools = json_array();
    size_t skipped = 0;
    char *cursor = (char *)"x";
    rc = mcp_tools_page(v, "srv", tools, &skipped, &cursor, err, sizeof err);
    assert_int_equal(json_array_size(tools), 0);
    assert_null(cursor);
    json_decref(tools);
    break;
  }
  case STAGE_CALL: {
    sbuf_t text = {0};
    bool is_error = false;
    rc = mcp_call_result(v, &text, &is_error, err, sizeof err);
    assert_int_equal(text.len, 0);
    sbuf_free(&text);
    break;
  }
  }
  if (rc != -1 || !strstr(err, c->mention))
    fail_msg("case \"%s\": rc %d, error \"%s\", wanted one mentioning \"%s\"", c->name, rc, err, c->mention);
  json_decref(v);
}

static void test_bad_answers(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++)
    one_bad_case(&bad_cases[i]);
}

static void test_requests_and_notifications(void **state) {
  (void)state;
  json_t *r = mcp_request(7, "tools/list", json_pack("{s:s}", "cursor", "c2"));
  char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(s, "{\"id\":7,\"jsonrpc\":\"2.0\",\"method\":\"tools/list\",\"params\":{\"cursor\":\"c2\"}}");
  free(s);
  json_decref(r);
  r = mcp_request(-1, "notifications/initialized", NULL);
  assert_null(json_object_get(r, "id"));
  assert_null(json_object_get(r, "params"));
  json_decref(r);
  json_t *p = mcp_initialize_params();
  assert_string_equal(json_string_value(json_object_get(p, "protocolVersion")), MCP_PROTOCOL_LATEST);
  json_decref(p);
}

static void test_classify_and_answer_server_requests(void **state) {
  (void)state;
  char err[200];
  int64_t id;
  json_t *m = json_loads("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}", 0, NULL);
  assert_int_equal(mcp_classify(m, &id, err, sizeof err), MCP_MSG_NOTIFICATION);
  json_decref(m);
  m = json_loads("{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"}", 0, NULL);
  assert_int_equal(mcp_classify(m, &id, err, sizeof err), MCP_MSG_REQUEST);
  assert_int_equal(id, 5);
  json_t *a = mcp_answer_request(m);
  assert_true(json_is_object(json_object_get(a, "result")));
  assert_int_equal(json_integer_value(json_object_get(a, "id")), 5);
  json_decref(a);
  json_decref(m);
  m = json_loads("{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"roots/list\"}", 0, NULL);
  a = mcp_answer_request(m);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(a, "error"), "code")), -32601);
  assert_string_equal(json_string_value(json_object_get(a, "id")), "s1");
  json_decref(a);
  json_decref(m);
  m = json_loads("{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}", 0, NULL);
  assert_int_equal(mcp_classify(m, &id, err, sizeof err), MCP_MSG_RESPONSE);
  assert_int_equal(id, 9);
  json_decref(m);
}

static void test_version_negotiation(void **state) {
  (void)state;
  static const char *const ok[] = {"2025-06-18", "2025-03-26", "2024-11-05"};
  for (size_t i = 0; i < 3; i++) {
    json_t *r = json_pack("{s:s, s:{}}", "protocolVersion", ok[i], "capabilities");
    char v[32], err[200];
    assert_int_equal(mcp_initialize_check(r, v, sizeof v, err, sizeof err), 0);
    assert_string_equal(v, ok[i]);
    json_decref(r);
  }
  assert_false(mcp_version_supported("2026-01-01"));
  assert_false(mcp_version_supported(NULL));
}

static void test_tool_names(void **state) {
  (void)state;
  char n[MCP_NAME_MAX + 1], m[MCP_NAME_MAX + 1];
  mcp_tool_name("fs", "list_directory", n);
  assert_string_equal(n, "fs__list_directory");
  mcp_tool_name("web", "get sum/v2.ü", n);
  assert_string_equal(n, "web__get_sum_v2___");
  char long1[200], long2[200];
  memset(long1, 'a', 100);
  long1[100] = '\0';
  memcpy(long2, long1, 101);
  long2[99] = 'b';
  mcp_tool_name("srv", long1, n);
  mcp_tool_name("srv", long2, m);
  assert_int_equal(strlen(n), MCP_NAME_MAX);
  assert_int_equal(strlen(m), MCP_NAME_MAX);
  assert_string_not_equal(n, m); /* same first 55 bytes: the hash keeps them apart */
  assert_memory_equal(n, "srv__aaaa", 9);
}

static void test_tools_page(void **state) {
  (void)state;
  json_t *page = json_loads(
      "{\"tools\":["
      "{\"name\":\"echo\",\"description\":\"Echoes.\",\"inputSchema\":{\"$schema\":\"x\",\"type\":\"object\","
      "\"properties\":{\"message\":{\"type\":\"string\"}}},\"annotations\":{\"readOnlyHint\":true}},"
      "{\"name\":\"noschema\"},"
      "{\"name\":\"\"},{\"description\":\"no name\"},{\"name\":\"bad\",\"inputSchema\":\"string\"},"
      "{\"name\":\"echo\"},"
      "{\"name\":7}],\"nextCursor\":\"page2\"}",
      0, NULL);
  json_t *tools = json_array();
  size_t skipped = 0;
  char *cursor = NULL, err[200];
  assert_int_equal(mcp_tools_page(page, "ev", tools, &skipped, &cursor, err, sizeof err), 0);
  assert_string_equal(cursor, "page2");
  free(cursor);
  assert_int_equal(json_array_size(tools), 2);
  assert_int_equal(skipped, 5); /* empty name, no name, bad schema, duplicate, name not a string */
  json_t *e = json_array_get(tools, 0);
  assert_string_equal(json_string_value(json_object_get(e, "name")), "ev__echo");
  assert_string_equal(json_string_value(json_object_get(e, "tool")), "echo");
  assert_true(json_is_true(json_object_get(e, "read_only")));
  json_t *fn = json_object_get(json_object_get(e, "def"), "function");
  assert_string_equal(json_string_value(json_object_get(fn, "description")), "[MCP server ev] Echoes.");
  assert_null(json_object_get(json_object_get(fn, "parameters"), "$schema"));
  json_t *e2 = json_array_get(tools, 1);
  assert_false(json_is_true(json_object_get(e2, "read_only")));
  json_t *p2 = json_object_get(json_object_get(json_object_get(e2, "def"), "function"), "parameters");
  assert_string_equal(json_string_value(json_object_get(p2, "type")), "object");
  json_decref(tools);
  json_decref(page);
}

static void test_call_results(void **state) {
  (void)state;
  json_t *r = json_loads("{\"content\":["
                         "{\"type\":\"text\",\"text\":\"line one\"},"
                         "{\"type\":\"image\",\"mimeType\":\"image/png\",\"data\":\"AAAA\"},"
                         "{\"type\":\"resource\",\"resource\":{\"uri\":\"file:///a\",\"text\":\"inside\"}},"
                         "{\"type\":\"resource\",\"resource\":{\"uri\":\"file:///b\",\"blob\":\"AA\"}},"
                         "{\"type\":\"resource_link\",\"uri\":\"file:///c\"},"
                         "{\"type\":\"video\"}, 7],\"isError\":true}",
                         0, NULL);
  sbuf_t t = {0};
  bool is_error = false;
  char err[200];
  assert_int_equal(mcp_call_result(r, &t, &is_error, err, sizeof err), 0);
  assert_true(is_error);
  assert_string_equal(sbuf_str(&t), "line one\n[image: image/png, 4 bytes of base64 not shown]\n"
                                    "[resource file:///a]\ninside\n[resource file:///b (binary, not shown)]\n"
                                    "[resource link file:///c]\n[content of type \"video\" not shown]");
  sbuf_free(&t);
  json_decref(r);
  r = json_loads("{\"content\":[],\"structuredContent\":{\"sum\":3}}", 0, NULL);
  assert_int_equal(mcp_call_result(r, &t, &is_error, err, sizeof err), 0);
  assert_false(is_error);
  assert_string_equal(sbuf_str(&t), "{\"sum\":3}");
  sbuf_free(&t);
  json_decref(r);
  r = json_loads("{\"content\":[]}", 0, NULL);
  assert_int_equal(mcp_call_result(r, &t, &is_error, err, sizeof err), 0);
  assert_string_equal(sbuf_str(&t), "(no output)");
  sbuf_free(&t);
  json_decref(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_answers),
      cmocka_unit_test(test_requests_and_notifications),
      cmocka_unit_test(test_classify_and_answer_server_requests),
      cmocka_unit_test(test_version_negotiation),
      cmocka_unit_test(test_tool_names),
      cmocka_unit_test(test_tools_page),
      cmocka_unit_test(test_call_results),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
