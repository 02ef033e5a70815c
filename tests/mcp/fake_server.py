#!/usr/bin/env python3
"""A tiny MCP server that misbehaves on purpose (tests/integration/test_mcp.py).

  fake_server.py MODE
MODE says what its tool "act" does when called:
  crash    the process exits at once (status 3, a last line on stderr that shows $FAKE_API_KEY)
  hang     never answers
  garbage  writes a line that is not JSON-RPC
  ok       answers "fine"
It always answers initialize (version 2025-06-18) and tools/list, in two pages ("act", then
"other" after nextCursor), and counts its starts in the file $FAKE_MCP_STARTS when set.

  fake_server.py http PORT
serves streamable HTTP on 127.0.0.1:PORT with plain JSON answers (no event stream), and refuses a
request after initialize that does not bring back its Mcp-Session-Id.
"""
import json
import os
import sys
import time

SESSION = "fake-session-42"


def answer(msg, mode):
    """The response to one request (None: none, for notifications)."""
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        return {"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                                        "serverInfo": {"name": "fake", "version": "1"}}}
    if method == "tools/list":
        page2 = (msg.get("params") or {}).get("cursor") == "p2"
        tool = {"name": "other" if page2 else "act", "description": "Does the thing.",
                "inputSchema": {"type": "object", "properties": {}}}
        result = {"tools": [tool]}
        if not page2:
            result["nextCursor"] = "p2"
        return {"jsonrpc": "2.0", "id": mid, "result": result}
    if method == "tools/call":
        return {"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "fine"}]}}
    return None


def stdio(mode):
    starts = os.environ.get("FAKE_MCP_STARTS")
    if starts:
        with open(starts, "a") as f:
            f.write("start\n")
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("method") == "tools/call":
            if mode == "crash":
                sys.stderr.write(f"fake server: crashing on purpose (key {os.environ.get('FAKE_API_KEY', '-')})\n")
                sys.stderr.flush()
                os._exit(3)
            elif mode == "hang":
                time.sleep(3600)
            elif mode == "garbage":
                sys.stdout.write("this is not json\n")
                sys.stdout.flush()
                continue
        a = answer(msg, mode)
        if a:
            sys.stdout.write(json.dumps(a) + "\n")
            sys.stdout.flush()


def http(port):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def do_POST(self):
            msg = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if msg.get("method") != "initialize" and self.headers.get("Mcp-Session-Id") != SESSION:
                self.send_response(400)
                self.end_headers()
                return
            a = answer(msg, "ok")
            body = json.dumps(a).encode() if a else b""
            self.send_response(200 if a else 202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if msg.get("method") == "initialize":
                self.send_header("Mcp-Session-Id", SESSION)
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self):
            self.send_response(200 if self.headers.get("Mcp-Session-Id") == SESSION else 400)
            self.end_headers()

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        http(int(sys.argv[2]))
    else:
        stdio(sys.argv[1] if len(sys.argv) > 1 else "ok")
