#!/usr/bin/env python3
"""A tiny stdio MCP server that misbehaves on purpose (tests/integration/test_mcp.py).

  fake_server.py MODE
MODE says what its one tool, "act", does when called:
  crash    the process exits at once (status 3, a last line on stderr that shows $FAKE_API_KEY)
  hang     never answers
  garbage  writes a line that is not JSON-RPC
  ok       answers "fine" (and counts its starts in $FAKE_MCP_STARTS, a file)
It always answers initialize (version 2025-06-18) and tools/list.
"""
import json
import os
import sys
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
starts = os.environ.get("FAKE_MCP_STARTS")
if starts:
    with open(starts, "a") as f:
        f.write("start\n")


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                                      "serverInfo": {"name": "fake", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [
            {"name": "act", "description": "Does the thing.", "inputSchema": {"type": "object", "properties": {}}}]}})
    elif method == "tools/call":
        if mode == "crash":
            sys.stderr.write(f"fake server: crashing on purpose (key {os.environ.get('FAKE_API_KEY', '-')})\n")
            sys.stderr.flush()
            os._exit(3)
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "garbage":
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
        else:
            send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "fine"}]}})
