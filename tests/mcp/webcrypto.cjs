// Node 18 (Debian 12's) has no global crypto, which the MCP SDK's HTTP server transport uses
// (test_mcp.py preloads this with node -r); newer nodes have it and this does nothing.
if (!globalThis.crypto) globalThis.crypto = require("node:crypto").webcrypto;
