/* mcp_msg: the Model Context Protocol's messages, as pure functions (no I/O).
 *
 * MCP is JSON-RPC 2.0 (https://modelcontextprotocol.io/specification): a
 * client sends `initialize` (offering the newest protocol version it speaks),
 * the server answers with the version it will use (one of ours, else the
 * client gives up), the client sends `notifications/initialized`, then
 * `tools/list` (paged with nextCursor) and `tools/call`. This module builds
 * those requests and checks the server's answers; every check of an answer
 * fails with a message for the model or the log that says what was wrong,
 * never a crash, whatever the server sent. mcp.c does the I/O.
 */
#ifndef CADRE_MCP_MSG_H
#define CADRE_MCP_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define MCP_PROTOCOL_LATEST "2025-06-18"
#define MCP_NAME_MAX 64      /* an OpenAI function name: [a-zA-Z0-9_-]{1,64} */
#define MCP_TOOLS_MAX 256    /* tools taken from one server */
#define MCP_PAGES_MAX 32     /* tools/list pages followed */
#define MCP_DESC_MAX 2048    /* bytes of a tool's description kept */
#define MCP_SCHEMA_MAX 32768 /* bytes of a tool's inputSchema (larger: the tool is left out) */

/* True when we speak version v (2025-06-18, 2025-03-26, 2024-11-05). */
bool mcp_version_supported(const char *v);

/* {"jsonrpc":"2.0","id":id,"method":method,"params":params} (params taken,
 * may be NULL); id < 0: a notification (no id). Caller owns. */
json_t *mcp_request(int64_t id, const char *method, json_t *params);
/* The params of our initialize request. Caller owns. */
json_t *mcp_initialize_params(void);

/* What one message from the server is. */
typedef enum {
  MCP_MSG_RESPONSE,     /* a result or an error for request *id */
  MCP_MSG_NOTIFICATION, /* method, no id: ignored */
  MCP_MSG_REQUEST,      /* method and id: the server asks us something (ping, roots/list, ...) */
  MCP_MSG_INVALID       /* not JSON-RPC 2.0: err says why */
} mcp_msg_kind_t;

/* Classifies a message; *id is set for responses and requests (-1 when the
 * id is not an integer). */
mcp_msg_kind_t mcp_classify(const json_t *msg, int64_t *id, char *err, size_t errlen);
/* Our answer to a server's request: {} for ping, method-not-found for the rest. Caller owns. */
json_t *mcp_answer_request(const json_t *req);

/* A response's result: 0 with *result borrowed from msg, or -1 with err
 * ("the server answered with an error: ..." or what is malformed). */
int mcp_response_result(const json_t *msg, const json_t **result, char *err, size_t errlen);

/* Checks initialize's result; version receives the protocol version the
 * server chose. 0 or -1 with err. */
int mcp_initialize_check(const json_t *result, char *version, size_t vlen, char *err, size_t errlen);

/* "<server>__<tool>" cut to the OpenAI function-name charset and length:
 * other bytes become '_', and a name past MCP_NAME_MAX keeps its start and
 * gets a short hash of the whole, so that two long names stay distinct. */
void mcp_tool_name(const char *server, const char *tool, char out[MCP_NAME_MAX + 1]);

/* One tools/list page: appends to tools one entry per usable tool,
 * {"name": offered name, "tool": the server's name, "read_only": bool,
 * "def": the OpenAI definition}; tools left out (bad name or schema, a
 * duplicate, over MCP_TOOLS_MAX) are counted in *skipped. *cursor receives
 * nextCursor (malloc'd) or NULL. 0, or -1 with err when the page itself is
 * malformed. */
int mcp_tools_page(const json_t *result, const char *server, json_t *tools, size_t *skipped, char **cursor, char *err,
                   size_t errlen);

/* tools/call's result as text for the model: the text items joined, other
 * items marked ("[image: image/png, 1234 bytes of base64 not shown]"),
 * structuredContent when there is no text. *is_error: the server's isError.
 * 0, or -1 with err when the result is malformed. */
int mcp_call_result(const json_t *result, sbuf_t *text, bool *is_error, char *err, size_t errlen);

#endif
