/* mcp_msg: MCP's JSON-RPC messages (see mcp_msg.h). */
#include "mcp_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jx.h"
#include "util.h"

static const char *const VERSIONS[] = {MCP_PROTOCOL_LATEST, "2025-03-26", "2024-11-05", NULL};

// True when we speak version v.
bool mcp_version_supported(const char *v) {
  for (size_t i = 0; v && VERSIONS[i]; i++)
    if (strcmp(VERSIONS[i], v) == 0)
      return true;
  return false;
}

// A JSON-RPC request (id >= 0) or notification.
json_t *mcp_request(int64_t id, const char *method, json_t *params) {
  json_t *m = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
  if (m && id >= 0)
    json_object_set_new(m, "id", json_integer(id));
  if (m && params)
    json_object_set(m, "params", params);
  json_decref(params);
  return m;
}

// Our initialize params: the newest version we speak, no client capabilities.
json_t *mcp_initialize_params(void) {
  return json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion", MCP_PROTOCOL_LATEST, "capabilities", "clientInfo",
                   "name", "cadre-agentd", "version", CADRE_VERSION);
}

// What a message from the server is.
mcp_msg_kind_t mcp_classify(const json_t *msg, int64_t *id, char *err, size_t errlen) {
  *id = -1;
  if (!json_is_object(msg)) {
    snprintf(err, errlen, "the server sent something that is not a JSON-RPC object");
    return MCP_MSG_INVALID;
  }
  if (strcmp(jx_str(msg, "jsonrpc", ""), "2.0") != 0) {
    snprintf(err, errlen, "the server sent a message without \"jsonrpc\": \"2.0\"");
    return MCP_MSG_INVALID;
  }
  json_t *idv = json_object_get(msg, "id");
  if (json_is_integer(idv))
    *id = json_integer_value(idv);
  if (json_is_string(json_object_get(msg, "method")))
    return idv && !json_is_null(idv) ? MCP_MSG_REQUEST : MCP_MSG_NOTIFICATION;
  if (!idv) {
    snprintf(err, errlen, "the server sent a message with neither a method nor an id");
    return MCP_MSG_INVALID;
  }
  return MCP_MSG_RESPONSE;
}

// Our answer to a server's request.
json_t *mcp_answer_request(const json_t *req) {
  json_t *id = json_object_get(req, "id");
  json_t *a = json_pack("{s:s, s:O}", "jsonrpc", "2.0", "id", id ? id : json_null());
  if (!a)
    return NULL;
  if (strcmp(jx_str(req, "method", ""), "ping") == 0)
    json_object_set_new(a, "result", json_object());
  else
    json_object_set_new(a, "error", json_pack("{s:i, s:s}", "code", -32601, "message", "method not found"));
  return a;
}

/* A server's text in a message: printable, one line, at most 300 bytes. */
static void shown(const char *s, char *out, size_t len) {
  size_t k = 0;
  for (; s && *s && k + 1 < len && k < 300; s++)
    out[k++] = (unsigned char)*s < 0x20 ? ' ' : *s;
  while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80) /* no character cut in two */
    k--;
  if (k > 0 && (unsigned char)out[k - 1] >= 0xC0)
    k--;
  out[k] = '\0';
}

// A response's result, or its error.
int mcp_response_result(const json_t *msg, const json_t **result, char *err, size_t errlen) {
  json_t *e = json_object_get(msg, "error");
  if (e) {
    char m[320];
    shown(jx_str(e, "message", "no message"), m, sizeof m);
    snprintf(err, errlen, "the server answered with error %lld: %s", (long long)jx_int(e, "code", 0), m);
    return -1;
  }
  json_t *r = json_object_get(msg, "result");
  if (!json_is_object(r)) {
    snprintf(err, errlen, "the server's answer has no result object");
    return -1;
  }
  *result = r;
  return 0;
}

// Checks initialize's result and takes the server's protocol version.
int mcp_initialize_check(const json_t *result, char *version, size_t vlen, char *err, size_t errlen) {
  const char *v = jx_str(result, "protocolVersion", NULL);
  if (!v) {
    snprintf(err, errlen, "the server's initialize answer has no protocolVersion");
    return -1;
  }
  if (!mcp_version_supported(v)) {
    char m[80];
    shown(v, m, sizeof m);
    snprintf(err, errlen,
             "the server speaks MCP protocol version \"%s\", which this node does not (it speaks %s, 2025-03-26 and "
             "2024-11-05)",
             m, MCP_PROTOCOL_LATEST);
    return -1;
  }
  json_t *caps = json_object_get(result, "capabilities");
  if (caps && !json_is_object(caps)) {
    snprintf(err, errlen, "the server's capabilities are not an object");
    return -1;
  }
  snprintf(version, vlen, "%s", v);
  return 0;
}

static bool name_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// "<server>__<tool>" in the OpenAI function-name charset, at most MCP_NAME_MAX bytes.
void mcp_tool_name(const char *server, const char *tool, char out[MCP_NAME_MAX + 1]) {
  char full[512];
  int n = snprintf(full, sizeof full, "%s__%s", server, tool);
  size_t len = n < 0 ? 0 : (size_t)n >= sizeof full ? sizeof full - 1 : (size_t)n;
  uint32_t h = 2166136261u; /* FNV-1a of the whole name, before it is cut */
  for (const char *p = server; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  for (const char *p = tool; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  for (size_t i = 0; i < len; i++)
    if (!name_char((unsigned char)full[i]))
      full[i] = '_';
  if (len <= MCP_NAME_MAX) {
    memcpy(out, full, len + 1);
    return;
  }
  memcpy(out, full, MCP_NAME_MAX - 9);
  snprintf(out + MCP_NAME_MAX - 9, 10, "_%08x", h);
}

/* An input schema for the model: an object schema (default {"type":"object"}). */
static json_t *input_schema(const json_t *tool) {
  json_t *s = json_object_get(tool, "inputSchema");
  if (!s)
    return json_pack("{s:s, s:{}}", "type", "object", "properties");
  if (!json_is_object(s) || json_dumpb(s, NULL, 0, JSON_COMPACT) > MCP_SCHEMA_MAX)
    return NULL;
  json_t *copy = json_deep_copy(s);
  json_object_del(copy, "$schema"); /* some model servers refuse keys they do not know */
  if (!json_object_get(copy, "type"))
    json_object_set_new(copy, "type", json_string("object"));
  return copy;
}

/* True when tools already has an entry called name. */
static bool taken(const json_t *tools, const char *name) {
  size_t i;
  json_t *t;
  json_array_foreach(tools, i, t) if (strcmp(jx_str(t, "name", ""), name) == 0) return true;
  return false;
}

/* One tool of a tools/list page, appended to tools; false when it is left out. */
static bool add_tool(const json_t *tool, const char *server, json_t *tools) {
  const char *tname = jx_str(tool, "name", NULL);
  if (!tname || !*tname || strlen(tname) > 256 || !util_utf8_valid(tname, strlen(tname)) ||
      json_array_size(tools) >= MCP_TOOLS_MAX)
    return false;
  char name[MCP_NAME_MAX + 1];
  mcp_tool_name(server, tname, name);
  json_t *schema = input_schema(tool);
  if (!schema || taken(tools, name)) {
    json_decref(schema);
    return false;
  }
  const char *desc = jx_str(tool, "description", jx_str(tool, "title", ""));
  size_t dlen = strlen(desc);
  if (dlen > MCP_DESC_MAX || !util_utf8_valid(desc, dlen))
    dlen = util_utf8_valid(desc, dlen) ? MCP_DESC_MAX : 0;
  while (dlen > 0 && dlen < strlen(desc) && ((unsigned char)desc[dlen] & 0xC0) == 0x80)
    dlen--;
  char prefix[96];
  snprintf(prefix, sizeof prefix, "[MCP server %s] ", server);
  sbuf_t d = {0};
  sbuf_puts(&d, prefix);
  sbuf_add(&d, desc, dlen);
  json_t *def = json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function", "function", "name", name, "description",
                          sbuf_str(&d), "parameters", schema);
  sbuf_free(&d);
  bool ro = jx_bool(json_object_get(tool, "annotations"), "readOnlyHint", false);
  json_t *entry =
      def ? json_pack("{s:s, s:s, s:b, s:o}", "name", name, "tool", tname, "read_only", ro, "def", def) : NULL;
  return entry && json_array_append_new(tools, entry) == 0;
}

// One tools/list page into tools.
int mcp_tools_page(const json_t *result, const char *server, json_t *tools, size_t *skipped, char **cursor, char *err,
                   size_t errlen) {
  *cursor = NULL;
  json_t *list = json_object_get(result, "tools");
  if (!json_is_array(list)) {
    snprintf(err, errlen, "the server's tools/list answer has no \"tools\" array");
    return -1;
  }
  size_t i;
  json_t *t;
  json_array_foreach(list, i, t) {
    if (!add_tool(t, server, tools))
      (*skipped)++;
  }
  const char *next = jx_str(result, "nextCursor", NULL);
  if (next && *next)
    *cursor = strdup(next);
  return 0;
}

/* One content item of a tools/call result into text. */
static void content_item(const json_t *c, sbuf_t *text) {
  const char *type = jx_str(c, "type", "?");
  if (text->len > 0 && text->s[text->len - 1] != '\n')
    sbuf_puts(text, "\n");
  if (strcmp(type, "text") == 0) {
    sbuf_puts(text, jx_str(c, "text", ""));
  } else if (strcmp(type, "image") == 0 || strcmp(type, "audio") == 0) {
    const char *data = jx_str(c, "data", "");
    sbuf_printf(text, "[%s: %.80s, %zu bytes of base64 not shown]", type, jx_str(c, "mimeType", "?"), strlen(data));
  } else if (strcmp(type, "resource") == 0) {
    json_t *r = json_object_get(c, "resource");
    const char *t = jx_str(r, "text", NULL);
    sbuf_printf(text, "[resource %.300s%s]", jx_str(r, "uri", "?"), t ? "" : " (binary, not shown)");
    if (t) {
      sbuf_puts(text, "\n");
      sbuf_puts(text, t);
    }
  } else if (strcmp(type, "resource_link") == 0) {
    sbuf_printf(text, "[resource link %.300s]", jx_str(c, "uri", "?"));
  } else {
    char m[80];
    shown(type, m, sizeof m);
    sbuf_printf(text, "[content of type \"%s\" not shown]", m);
  }
}

// tools/call's result as text for the model.
int mcp_call_result(const json_t *result, sbuf_t *text, bool *is_error, char *err, size_t errlen) {
  json_t *content = json_object_get(result, "content");
  json_t *structured = json_object_get(result, "structuredContent");
  json_t *ie = json_object_get(result, "isError");
  if ((content && !json_is_array(content)) || (!content && !structured) || (ie && !json_is_boolean(ie))) {
    snprintf(err, errlen, "the server's tools/call answer has no valid \"content\" array");
    return -1;
  }
  *is_error = json_is_true(ie);
  size_t i;
  json_t *c;
  json_array_foreach(content, i, c) {
    if (json_is_object(c))
      content_item(c, text);
  }
  if (text->len == 0 && structured) {
    char *s = json_dumps(structured, JSON_COMPACT);
    sbuf_puts(text, s ? s : "");
    free(s);
  }
  if (text->len == 0)
    sbuf_puts(text, "(no output)");
  return 0;
}
