/* mcp: the MCP servers an agent daemon uses as tools for its turns.
 *
 * The servers are defined in the node's own config (--config: mcp_servers,
 * with any keys in their env staying on this host); a turn's profile names
 * the ones its agent may use (mcp_servers) and, through its tool policy, may
 * narrow their tools (mcp_tools). A stdio server is started the first time a
 * turn needs it, as a child run exactly like execute_bash's commands (same
 * sandbox, environment filter and limits; the network only when the turn's
 * profile has it, and a server started with the network is never shared with
 * a turn without it), and kept for later turns; a streamable HTTP server is
 * called with libcurl, keeping its Mcp-Session-Id.
 *
 * Every request has a deadline (the server's timeout_s, else the turn's
 * tools.timeout_s) and watches the turn's cancel flag every 100 ms. A server
 * that exits, does not answer in time, or writes something that is not
 * JSON-RPC is stopped and its call fails with a clear error for the model; it
 * starts again at the next call. Calls run on the worker thread of the turn
 * (never the daemon's main loop); one request at a time per server.
 */
#ifndef CADRE_MCP_H
#define CADRE_MCP_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "tools.h"

typedef struct mcp mcp_t;

typedef struct {
  bool network;        /* the turn's profile keeps the network */
  const json_t *allow; /* mcp_offer: the profile's mcp_tools, or NULL */
  bool read_only;      /* mcp_offer: the agent's node tools change nothing (a reviewer's) */
  int timeout_s;       /* a request's deadline unless the server sets timeout_s */
  atomic_bool *cancel; /* may be NULL */
} mcp_call_opts_t;

/* tools runs the stdio servers (borrowed); config defines them (borrowed, may
 * be NULL: no servers). NULL on ENOMEM. */
mcp_t *mcp_new(tools_t *tools, const cadre_config_t *config);
/* Stops every server. Accepts NULL; nulls *self_p. */
void mcp_destroy(mcp_t **self_p);

/* The tools of the named servers (servers: array of names) for a turn:
 * OpenAI definitions appended to defs, and offered[name] = {"server",
 * "tool", "read_only"} for each. The policy (opts->allow) narrows a server's
 * tools when it names any of them ("<server>__<tool>", "<server>__*"); a
 * server it does not name keeps all its tools, or, for a read-only agent
 * (opts->read_only), those the server marks read-only (readOnlyHint). A
 * server that cannot be started or listed is left out, with a warning in
 * the log. */
void mcp_offer(mcp_t *self, const json_t *servers, const mcp_call_opts_t *opts, json_t *defs, json_t *offered);

/* Runs one offered tool (entry: offered[name]) with the model's arguments
 * (JSON text). The result is capped like the built-in tools' and scrubbed of
 * the node's secrets; failures are results with is_error set. */
void mcp_call(mcp_t *self, const json_t *entry, const char *arguments, const mcp_call_opts_t *opts, tool_result_t *out);

#endif
