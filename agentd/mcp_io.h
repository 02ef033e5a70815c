/* mcp_io: one connection to an MCP server, for mcp.c: JSON-RPC over a
 * child's stdin/stdout (newline-delimited), or over streamable HTTP (POST,
 * the answer as application/json or as a text/event-stream, Mcp-Session-Id
 * kept). Not thread-safe: mcp.c holds the server's lock around every call.
 */
#ifndef CADRE_MCP_IO_H
#define CADRE_MCP_IO_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "tools.h"

#define MCP_MESSAGE_MAX (16u << 20) /* the largest message a server may send */
#define MCP_POLL_MS 100             /* cancel is looked at this often */

typedef struct mcp_conn mcp_conn_t;

/* A connection, not yet open (def and tools borrowed). NULL on ENOMEM. */
mcp_conn_t *mcp_conn_new(tools_t *tools, const cadre_mcp_server_t *def, bool network);
/* Closes it (stops the child) and frees. Accepts NULL; nulls *self_p. */
void mcp_conn_destroy(mcp_conn_t **self_p);

/* True when the connection is open: its child runs, or its HTTP session was set up. */
bool mcp_conn_is_open(mcp_conn_t *self);
/* Opens it: starts the child (stdio), then initialize and
 * notifications/initialized. 0 or -1 with err. *version receives the
 * protocol version agreed. */
int mcp_conn_open(mcp_conn_t *self, long timeout_ms, atomic_bool *cancel, char *err, size_t errlen);
/* Stops the child / forgets the session (the next call opens it again). */
void mcp_conn_close(mcp_conn_t *self);

/* Sends a request and waits for its response: 0 with *response (the whole
 * message; caller owns), or -1 with err (the connection is closed unless
 * only the answer was an error or the call was cancelled). */
int mcp_conn_request(mcp_conn_t *self, const char *method, json_t *params, long timeout_ms, atomic_bool *cancel,
                     json_t **response, char *err, size_t errlen);
/* True (and cleared) when the server said its tools changed. */
bool mcp_conn_tools_changed(mcp_conn_t *self);
/* The protocol version agreed ("" before open). */
const char *mcp_conn_version(const mcp_conn_t *self);

#endif
