"""MCP servers as agent tools, against the real servers from npm.

@modelcontextprotocol/server-filesystem and @modelcontextprotocol/server-everything
(pinned in tests/mcp/npm/package.json) are installed by `scripts/install-deps --test`
into tests/mcp/npm/node_modules (or $CADRE_MCP_NODE_MODULES). The agent daemon starts
them in its sandbox, lists their tools, offers them to the scripted model as
<server>__<tool>, and runs its calls. tests/mcp/fake_server.py is a server that
crashes, hangs or writes garbage on purpose.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import AGENTD, BROKER, Cluster, wait_until  # noqa: E402

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = os.environ.get("CADRE_MCP_NODE_MODULES") or os.path.join(SRC, "tests", "mcp", "npm", "node_modules")
FS_JS = os.path.join(MODULES, "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
EVERYTHING_JS = os.path.join(MODULES, "@modelcontextprotocol", "server-everything", "dist", "index.js")
FAKE = os.path.join(SRC, "tests", "mcp", "fake_server.py")
WEBCRYPTO = os.path.join(SRC, "tests", "mcp", "webcrypto.cjs")  # node 18 (Debian 12's) lacks the global
NODE = os.environ.get("CADRE_MCP_NODE") or shutil.which("node") or shutil.which("nodejs")
SECRET = "sk-mcp-test-secret-0123456789"
# The servers' files, readable in the sandbox also when the checkout is under /tmp (a private, empty
# tmpfs there).
READABLE = ("--readable", os.path.join(SRC, "tests", "mcp"), "--readable", MODULES)

if not NODE:
    print("test_mcp: skipped: node is not installed (scripts/install-deps --test installs it)", file=sys.stderr)
    sys.exit(77)
if not (os.path.exists(FS_JS) and os.path.exists(EVERYTHING_JS)):
    print(f"test_mcp: the MCP servers are not installed in {MODULES}: run scripts/install-deps --test "
          "(or npm ci --prefix tests/mcp/npm)", file=sys.stderr)
    sys.exit(1)


def call(name, args, cid):
    return {"tool_calls": [{"id": cid, "name": name, "arguments": json.dumps(args)}]}


def tool_results(req):
    return {m["tool_call_id"]: m["content"] for m in req["body"]["messages"] if m["role"] == "tool"}


def offered(req):
    return {t["function"]["name"]: t["function"] for t in req["body"].get("tools", [])}


SUMMARY = ("[SUMMARY]\nStatus: PASS\nKey Points:\n- the workspace holds a.txt and sub\n"
           "Recommendation: none\n[/SUMMARY]")


class Mcp(unittest.TestCase):
    def setUp(self):
        starts = "WORKSPACE/.mcp-starts"  # the servers write only in the workspace (the sandbox)

        def config(cfg):
            fake = lambda mode, **kw: dict({"command": sys.executable, "args": [FAKE, mode]}, **kw)  # noqa: E731
            cfg["mcp_servers"] = {
                "fs": {"command": NODE, "args": [FS_JS, "WORKSPACE"]},
                "everything": {"command": NODE, "args": [EVERYTHING_JS, "stdio"], "env": {"EVERYTHING_API_KEY": SECRET}},
                "crash": fake("crash", env={"FAKE_MCP_STARTS": starts, "FAKE_API_KEY": SECRET}),
                "hang": fake("hang", timeout_s=2),
                "garbage": fake("garbage"),
                "slow": fake("hang", timeout_s=120),
            }
            cfg["agents"]["reviewer_agent"]["mcp_servers"] = ["fs"]
            cfg["agents"]["main_agent"]["mcp_servers"] = ["everything", "crash", "hang", "garbage", "slow"]
            cfg["agents"]["tester_agent"]["mcp_servers"] = ["everything"]
            cfg.setdefault("tools", {})["policy"] = {"tester": {"tools": ["read_file", "everything__echo"]}}
        self.c = Cluster(nodes=(), config_extra=config)
        self.ws = os.path.realpath(self.c.workspace)
        with open(self.c.config) as f:  # the filesystem server's one directory: the workspace
            text = f.read().replace("WORKSPACE", self.ws)
        with open(self.c.config, "w") as f:
            f.write(text)
        self.starts = starts.replace("WORKSPACE", self.ws)
        self.c.start_node("m1", 2, extra=("--config", self.c.config) + READABLE)
        self.c.wait_nodes(1)

    def tearDown(self):
        self.c.close()

    def test_sub_agent_lists_a_directory_through_the_filesystem_server(self):
        os.makedirs(os.path.join(self.ws, "sub"))
        with open(os.path.join(self.ws, "a.txt"), "w") as f:
            f.write("hello\n")
        self.c.model.script([call("fs__list_directory", {"path": self.ws}, "l1"), {"text": SUMMARY}])
        t0 = time.monotonic()
        r, out = self.c.cadre_json("spawn", "reviewer", "What is in the workspace?", "--wait", timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        print(f"test_mcp: sub-agent with the filesystem server (start, initialize, tools/list, one call, two "
              f"model calls): {time.monotonic() - t0:.2f} s", file=sys.stderr)
        self.assertEqual(out[-1]["summary"]["status"], "PASS")
        reqs = self.c.model.requests()
        tools = offered(reqs[0])
        # Beside the role's built-in tools, the server's, prefixed, with their input schemas.
        self.assertTrue({"read_file", "list_files", "grep", "fs__list_directory", "fs__read_text_file"} <= set(tools))
        # A reviewer reads only: the server's tools that it does not mark read-only are left out.
        self.assertNotIn("fs__write_file", tools)
        self.assertNotIn("fs__edit_file", tools)
        self.assertEqual(tools["fs__list_directory"]["parameters"]["required"], ["path"])
        self.assertIn("[MCP server fs]", tools["fs__list_directory"]["description"])
        listing = tool_results(reqs[-1])["l1"]
        self.assertIn("[FILE] a.txt", listing)
        self.assertIn("[DIR] sub", listing)
        # The summary came back to the main session.
        r, h = self.c.cadre_json("history")
        self.assertIn("the workspace holds a.txt and sub", json.dumps(h))

    def test_everything_server_echo_and_sum_round_trip(self):
        self.c.model.script([
            call("everything__echo", {"message": "hello, MCP ✓"}, "e1"),
            call("everything__get-sum", {"a": 2, "b": 40}, "s1"),
            call("everything__get-env", {}, "v1"),
            call("everything__get-tiny-image", {}, "i1"),
            call("everything__get-sum", {"a": "not a number", "b": 1}, "x1"),
            {"text": "done"},
        ])
        r, ev = self.c.cadre_json("ask", "echo and add", timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        self.assertEqual(ev[-1]["text"], "done")
        reqs = self.c.model.requests()
        tools = offered(reqs[0])
        self.assertEqual(tools["everything__get-sum"]["parameters"]["properties"]["a"]["type"], "number")
        self.assertNotIn("$schema", tools["everything__echo"]["parameters"])
        res = tool_results(reqs[-1])
        self.assertEqual(res["e1"], "Echo: hello, MCP ✓")
        self.assertEqual(res["s1"], "The sum of 2 and 40 is 42.")
        # The server got its key in its environment; the model never sees it, nor does the log.
        self.assertIn("EVERYTHING_API_KEY", res["v1"])
        self.assertNotIn(SECRET, res["v1"])
        self.assertNotIn(SECRET, self.c.logs())
        # Other content is marked, not dumped; the server's isError makes the result an error.
        self.assertIn("[image: image/png, ", res["i1"])
        self.assertIn("bytes of base64 not shown]", res["i1"])
        self.assertIn("Invalid arguments for tool get-sum", res["x1"])
        results = [e["call"]["ok"] for e in ev if e["event"] == "delta" and e["kind"] == "tool_result"]
        self.assertEqual(results, [True, True, True, True, False])

    def test_crashing_hanging_and_garbage_servers_give_tool_errors_and_the_turn_goes_on(self):
        self.c.model.script([
            call("crash__act", {}, "c1"),
            call("hang__act", {}, "h1"),
            call("garbage__act", {}, "g1"),
            call("crash__act", {"again": True}, "c2"),
            {"text": "carried on"},
        ])
        t0 = time.monotonic()
        r, ev = self.c.cadre_json("ask", "try the broken servers", timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        self.assertEqual(ev[-1]["text"], "carried on")
        self.assertLess(time.monotonic() - t0, 60)
        reqs = self.c.model.requests()
        # tools/list in two pages (nextCursor): both tools offered.
        self.assertTrue({"crash__act", "crash__other", "hang__act", "garbage__other"} <= set(offered(reqs[0])))
        res = tool_results(reqs[-1])
        self.assertIn("MCP server crash", res["c1"])
        self.assertIn("exited with status 3", res["c1"])
        self.assertIn("crashing on purpose (key [secret removed])", res["c1"])  # its key scrubbed
        self.assertIn("did not answer tools/call within 2 s", res["h1"])
        self.assertIn("not JSON-RPC", res["g1"])
        self.assertIn("exited with status 3", res["c2"])  # started again for the second call
        with open(self.starts) as f:
            self.assertEqual(f.read().count("start"), 2)
        failed = [e["call"] for e in ev if e["event"] == "delta" and e["kind"] == "tool_result"]
        self.assertEqual([f["ok"] for f in failed], [False] * 4)

    def test_stop_all_ends_a_turn_waiting_for_a_server(self):
        self.c.model.script([call("slow__act", {}, "w1"), {"text": "not reached"}])
        p = self.c.cadre_bg("ask", "wait for the slow server")
        wait_until(lambda: len(self.c.model.requests()) >= 1, 60, "the model to call slow__act")
        time.sleep(1)  # the call is in flight: the server never answers it
        t0 = time.monotonic()
        r = self.c.cadre("stop-all")
        self.assertEqual(r.returncode, 0, r.stderr)
        p.wait(timeout=15)
        self.assertEqual(p.returncode, 130, p.stderr.read())
        self.assertLess(time.monotonic() - t0, 5)  # within the 100 ms polls, not the server's 120 s
        self.assertEqual(len(self.c.model.requests()), 1)

    def test_tool_policy_narrows_the_servers_tools(self):
        self.c.model.script([call("everything__get-sum", {"a": 1, "b": 1}, "x1"),
                             {"text": SUMMARY.replace("PASS", "PARTIAL")}])
        r, out = self.c.cadre_json("spawn", "tester", "add", "--wait", timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        reqs = self.c.model.requests()
        self.assertEqual(set(offered(reqs[0])), {"read_file", "everything__echo"})
        # A tool the policy leaves out is not run.
        self.assertNotIn("The sum", json.dumps(reqs[-1]["body"]["messages"]))


class McpApproval(unittest.TestCase):
    """tools.approval "mutating": a call of a tool the server does not mark read-only asks first; the short
    tool definitions (compact) apply to MCP tools too."""

    def test_mutating_mcp_calls_ask_and_compact_definitions(self):
        def config(cfg):
            cfg["mcp_servers"] = {"fs": {"command": NODE, "args": [FS_JS, "WORKSPACE"]},
                                  "everything": {"command": NODE, "args": [EVERYTHING_JS, "stdio"]}}
            cfg["agents"]["main_agent"].update({"mcp_servers": ["fs", "everything"], "compact": True})
            cfg["tools"] = {"approval": "mutating"}
        c = Cluster(nodes=(), config_extra=config)
        try:
            ws = os.path.realpath(c.workspace)
            with open(c.config) as f:
                text = f.read().replace("WORKSPACE", ws)
            with open(c.config, "w") as f:
                f.write(text)
            c.start_node("a1", 1, extra=("--config", c.config) + READABLE)
            c.wait_nodes(1)
            target = os.path.join(ws, "new.txt")
            c.model.script([call("fs__write_file", {"path": target, "content": "x"}, "w1"),
                            call("fs__list_directory", {"path": ws}, "l1"), {"text": "asked"}])
            # Without a terminal and without --yes, cadre ask cannot ask: the write is refused, the listing runs.
            r = c.cadre("ask", "--session", "s1", "write and list", stdin=subprocess.DEVNULL, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            self.assertIn("fs__write_file was not run", r.stderr)
            reqs = c.model.requests()
            res = tool_results(reqs[-1])
            self.assertIn("did not allow", res["w1"])
            self.assertFalse(os.path.exists(target))
            self.assertNotIn("did not allow", res["l1"])
            # Short definitions: the first sentence, no parameter descriptions.
            echo = offered(reqs[0])["everything__echo"]
            self.assertEqual(echo["description"], "[MCP server everything] Echoes back the input string")
            self.assertNotIn("description", echo["parameters"]["properties"]["message"])
            # --yes allows it.
            c.model.script([call("fs__write_file", {"path": target, "content": "x"}, "w2"), {"text": "wrote"}])
            r = c.cadre("ask", "--session", "s2", "--yes", "write", stdin=subprocess.DEVNULL, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            with open(target) as f:
                self.assertEqual(f.read(), "x")
        finally:
            c.close()


class McpHttp(unittest.TestCase):
    """The everything server over streamable HTTP (its SSE answers and Mcp-Session-Id)."""

    def test_streamable_http(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, PORT=str(port))
        server = subprocess.Popen([NODE, "-r", WEBCRYPTO, EVERYTHING_JS, "streamableHttp"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)

        def config(cfg):
            cfg["mcp_servers"] = {"web": {"url": f"http://127.0.0.1:{port}/mcp"}}
            cfg["agents"]["main_agent"]["mcp_servers"] = ["web"]
        c = Cluster(nodes=(), config_extra=config)
        try:
            def up():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False
            wait_until(up, 20, "the everything server's HTTP port")
            c.start_node("h1", 1, extra=("--config", c.config) + READABLE)
            c.wait_nodes(1)
            c.model.script([call("web__echo", {"message": "over http"}, "w1"),
                            call("web__get-sum", {"a": 0.5, "b": 2}, "w2"), {"text": "ok"}])
            r, ev = c.cadre_json("ask", "echo over http", timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            res = tool_results(c.model.requests()[-1])
            self.assertEqual(res["w1"], "Echo: over http")
            self.assertEqual(res["w2"], "The sum of 0.5 and 2 is 2.5.")
        finally:
            c.close()
            server.kill()
            server.wait()


class McpHttpJson(unittest.TestCase):
    """A streamable HTTP server that answers plain JSON (tests/mcp/fake_server.py http) and wants its
    Mcp-Session-Id back on every request after initialize."""

    def test_json_answers_and_the_session_id(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, FAKE, "http", str(port)])

        def config(cfg):
            cfg["mcp_servers"] = {"plain": {"url": f"http://127.0.0.1:{port}/mcp"}}
            cfg["agents"]["main_agent"]["mcp_servers"] = ["plain"]
        c = Cluster(nodes=(), config_extra=config)
        try:
            c.start_node("j1", 1, extra=("--config", c.config) + READABLE)
            c.wait_nodes(1)
            c.model.script([call("plain__act", {}, "p1"), {"text": "ok"}])
            r, ev = c.cadre_json("ask", "call the plain server", timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            reqs = c.model.requests()
            self.assertEqual({"plain__act", "plain__other"}, set(offered(reqs[0])) & {"plain__act", "plain__other"})
            self.assertEqual(tool_results(reqs[-1])["p1"], "fine")
        finally:
            c.close()
            server.kill()
            server.wait()


class McpConfig(unittest.TestCase):
    """A broken mcp_servers section stops the programs with a message naming the key."""

    def check(self, cfg_extra, *expected):
        tmp = tempfile.mkdtemp(prefix="cadre-mcp-cfg-")
        try:
            from harness import make_config
            path = make_config(os.path.join(tmp, "c.json"), "http://127.0.0.1:9", extra=cfg_extra)
            for prog in (BROKER(), AGENTD()):
                args = [prog, "--config", path]
                args += ["--state", tmp, "--bind", "tcp://127.0.0.1:*"] if prog == BROKER() else ["--broker",
                                                                                                  "tcp://127.0.0.1:9"]
                r = subprocess.run(args, capture_output=True, text=True, timeout=20)
                self.assertNotEqual(r.returncode, 0)
                for e in expected:
                    self.assertIn(e, r.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_unknown_server_named_by_a_profile(self):
        def cfg(c):
            c["agents"]["main_agent"]["mcp_servers"] = ["nope"]
        self.check(cfg, "agents.main_agent.mcp_servers[0]", "unknown MCP server \"nope\"")

    def test_server_without_command_or_url(self):
        def cfg(c):
            c["mcp_servers"] = {"x": {"args": ["a"]}}
        self.check(cfg, "mcp_servers.x", "needs a command")

    def test_wrong_types(self):
        def cfg(c):
            c["mcp_servers"] = {"x": {"command": "srv", "args": "not-a-list"}}
        self.check(cfg, "mcp_servers.x.args", "expected an array of strings")

    def test_policy_names_an_unknown_mcp_tool(self):
        def cfg(c):
            c["tools"] = {"policy": {"main": ["read_file", "nowhere__tool"]}}
        self.check(cfg, "tools.policy.main[1]", "unknown tool \"nowhere__tool\"")


if __name__ == "__main__":
    unittest.main()
