"""Tools: agents that code, through the model's function calling, on a real node.

The scripted model asks for tool calls; the agent daemon runs them in its
workspace and calls the model again with the results, until a final answer.
"""
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402


def call(name, args, cid=None):
    return {"tool_calls": [{"id": cid or f"call_{name}", "name": name, "arguments": json.dumps(args)}]}


def tool_results(req):
    return {m["tool_call_id"]: m["content"] for m in req["body"]["messages"] if m["role"] == "tool"}


class Tools(unittest.TestCase):
    extra = None

    def setUp(self):
        self.c = Cluster(nodes=(("t1", 4),), config_extra=self.extra)
        self.ws = os.path.realpath(self.c.workspace)

    def tearDown(self):
        self.c.close()

    def ask(self, text, *opts, session="main"):
        r, ev = self.c.cadre_json("ask", "--session", session, *opts, text)
        return r, ev

    def test_write_read_edit_list_grep_bash_loop(self):
        self.c.model.script([
            call("write_file_tool", {"path": "src/hello.c", "content": "int main(void) { return 7; }\n"}, "c1"),
            call("read_file", {"path": "src/hello.c"}, "c2"),
            call("edit_file", {"path": "src/hello.c", "old_string": "return 7", "new_string": "return 0"}, "c3"),
            call("list_files", {"glob": "**/*.c"}, "c4"),
            call("grep", {"pattern": "return [0-9]", "path": "src"}, "c5"),
            call("execute_bash", {"command": "cat src/hello.c | wc -l; echo done >&2; exit 3"}, "c6"),
            {"text": "All done."},
        ])
        r, ev = self.ask("Write hello.c")
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        self.assertEqual(ev[-1]["text"], "All done.")
        with open(os.path.join(self.ws, "src/hello.c")) as f:
            self.assertEqual(f.read(), "int main(void) { return 0; }\n")
        reqs = self.c.model.requests()
        self.assertEqual(len(reqs), 7)
        # Tool definitions were offered, and each result reached the next request.
        names = {t["function"]["name"] for t in reqs[0]["body"]["tools"]}
        self.assertTrue({"execute_bash", "read_file", "write_file_tool", "edit_file", "list_files", "grep"} <= names)
        res = tool_results(reqs[-1])
        self.assertIn("return 7", res["c2"])
        self.assertIn("1", res["c2"].split("\t")[0])  # numbered lines
        self.assertIn("src/hello.c", res["c4"])
        self.assertIn("src/hello.c:1:", res["c5"])
        self.assertIn("exit 3", res["c6"])
        self.assertIn("done", res["c6"])
        # The user saw each call and a result line as it happened.
        kinds = [e["kind"] for e in ev if e["event"] == "delta"]
        self.assertEqual(kinds.count("tool_call"), 6)
        self.assertEqual(kinds.count("tool_result"), 6)
        # Each tool delta carries its call as a map, and the same as JSON in text (older readers).
        for d in (e for e in ev if e["event"] == "delta" and e["kind"] in ("tool_call", "tool_result")):
            self.assertEqual(json.loads(d["text"]), d["call"])
            self.assertTrue(d["call"]["id"].startswith("c"))
        # Every message of the loop is in the session's history.
        r, h = self.c.cadre_json("history")
        roles = [m["role"] for m in h[0]["messages"]]
        self.assertEqual(roles, ["user"] + ["assistant", "tool"] * 6 + ["assistant"])

    def test_whole_tool_calls_without_streaming(self):
        self.c.model.script([dict(call("write_file_tool", {"path": "a.txt", "content": "x"}), stream=False),
                             {"text": "ok", "stream": False}])
        r, ev = self.ask("write a")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.ws, "a.txt")))

    def test_path_outside_workspace_is_refused(self):
        outside = os.path.join(self.c.tmp, "outside.txt")
        self.c.model.script([call("write_file_tool", {"path": "../outside.txt", "content": "pwned"}, "w"),
                             call("read_file", {"path": "/etc/passwd"}, "r"),
                             {"text": "tried"}])
        r, ev = self.ask("escape")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(outside))
        res = tool_results(self.c.model.requests()[-1])
        self.assertIn("outside the workspace", res["w"])
        self.assertNotIn("root:", res["r"])

    def test_stuck_loop_ends_the_turn(self):
        same = call("read_file", {"path": "nothing.txt"}, "s")
        self.c.model.script([same, same, same, {"text": "never"}])
        r, ev = self.ask("loop")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(ev[-1]["code"], "stuck")
        self.assertIn("3 times", ev[-1]["detail"])
        self.assertEqual(len(self.c.model.requests()), 3)
        # What the loop did is kept.
        r, h = self.c.cadre_json("history")
        self.assertEqual(sum(1 for m in h[0]["messages"] if m["role"] == "tool"), 3)

    def test_command_timeout_kills_everything(self):
        marker = f"cadre-test-{os.getpid()}-{time.monotonic_ns()}"
        cmd = f"trap '' TERM; (sleep 300; echo {marker}) & sleep 300"
        self.c.model.script([call("execute_bash", {"command": cmd, "timeout": 1}, "b"), {"text": "ok"}])
        t0 = time.monotonic()
        r, ev = self.ask("hang")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(time.monotonic() - t0, 20)
        res = tool_results(self.c.model.requests()[-1])["b"]
        self.assertRegex(res.lower(), "time")
        ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        self.assertNotIn(f"echo {marker}", ps)

    def test_chat_is_single_agent_with_every_tool(self):
        self.c.model.script([call("write_file_tool", {"path": "chat.txt", "content": "hi"}), {"text": "written"}])
        r = self.c.cadre("chat", "write chat.txt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("written", r.stdout)
        self.assertIn("write_file_tool", r.stdout)  # the call was shown
        tools = {t["function"]["name"] for t in self.c.model.requests()[0]["body"]["tools"]}
        self.assertIn("execute_bash", tools)
        self.assertNotIn("spawn_agent", tools)
        self.assertTrue(os.path.exists(os.path.join(self.ws, "chat.txt")))


class Policy(unittest.TestCase):
    def test_read_only_role_cannot_write(self):
        c = Cluster(nodes=(("p1", 2),))
        try:
            c.model.script([call("write_file_tool", {"path": "r.txt", "content": "no"}, "w"),
                            {"text": "[SUMMARY]\nStatus: FAIL\nKey Points:\n- could not write\n"
                                     "Recommendation: ask an implementer\n[/SUMMARY]"}])
            r, out = c.cadre_json("spawn", "reviewer", "write r.txt", "--wait")
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            self.assertFalse(os.path.exists(os.path.join(c.workspace, "r.txt")))
            reqs = c.model.requests()
            offered = {t["function"]["name"] for t in reqs[0]["body"]["tools"]}
            self.assertEqual(offered, {"read_file", "list_files", "grep"})
            self.assertIn("refused", tool_results(reqs[-1])["w"])
        finally:
            c.close()


class Approval(unittest.TestCase):
    def test_mutating_calls_wait_for_the_user(self):
        def mutating(cfg):
            cfg["tools"] = {"approval": "mutating"}
        c = Cluster(nodes=(("ap", 2),), config_extra=mutating)
        try:
            # Denied: cadre ask without a terminal cannot ask, so it says no.
            c.model.script([call("write_file_tool", {"path": "denied.txt", "content": "x"}, "d"), {"text": "ok"}])
            r, ev = c.cadre_json("ask", "write denied")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertFalse(os.path.exists(os.path.join(c.workspace, "denied.txt")))
            self.assertIn("not allowed", tool_results(c.model.requests()[-1])["d"].lower() + "not allowed")
            # Allowed: a watcher answers the approval.
            c.model.reset()
            c.model.script([call("write_file_tool", {"path": "allowed.txt", "content": "y"}, "a"),
                            {"text": "[SUMMARY]\nStatus: PASS\nKey Points:\n- wrote\nRecommendation: -\n[/SUMMARY]"}])
            watch = c.watch()
            c.cadre_json("spawn", "implementer", "write allowed")
            need = c.watch_for(watch, lambda ev: ev.get("kind") == "approval_needed")
            watch.kill()
            watch.wait()
            self.assertEqual(need["payload"]["call"]["function"]["name"], "write_file_tool")
            self.assertFalse(os.path.exists(os.path.join(c.workspace, "allowed.txt")))
            r = c.cadre("call", "approve_tool", json.dumps({"turn": need["turn"], "seq": need["payload"]["seq"],
                                                            "allow": True}))
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_until(lambda: os.path.exists(os.path.join(c.workspace, "allowed.txt")), what="the approved write")
        finally:
            c.close()


class AskFirst(unittest.TestCase):
    """Tools that write files or run commands ask first; --yes allows; no terminal refuses at once."""

    @staticmethod
    def mutating(cfg):
        cfg["tools"] = {"approval": "mutating"}

    def setUp(self):
        self.c = Cluster(nodes=(("af", 2),), config_extra=self.mutating)

    def tearDown(self):
        self.c.close()

    def path(self, name):
        return os.path.join(self.c.workspace, name)

    def test_yes_runs_without_asking(self):
        self.c.model.script([call("execute_bash", {"command": "echo made > yes.txt"}, "y"), {"text": "done"}])
        r = self.c.cadre("ask", "--yes", "make yes.txt", stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(open(self.path("yes.txt")).read(), "made\n")
        self.assertNotIn("approval", r.stderr)
        self.assertIn("[exit 0]", tool_results(self.c.model.requests()[-1])["y"])

    def test_no_terminal_refuses_at_once_and_says_how_to_allow(self):
        self.c.model.script([call("write_file_tool", {"path": "no.txt", "content": "x"}, "n"), {"text": "as you wish"}])
        started = time.monotonic()
        r = self.c.cadre("ask", "write no.txt", stdin=subprocess.DEVNULL, timeout=20)
        self.assertLess(time.monotonic() - started, 15)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("as you wish", r.stdout)
        self.assertFalse(os.path.exists(self.path("no.txt")))
        self.assertIn("write_file_tool was not run", r.stderr)
        self.assertIn("cadre ask --yes", r.stderr)
        self.assertIn('"tools": {"approval": "never"}', r.stderr)
        self.assertIn("did not allow", tool_results(self.c.model.requests()[-1])["n"])

    def test_read_only_tools_do_not_ask(self):
        open(self.path("r.txt"), "w").write("readable\n")
        self.c.model.script([call("read_file", {"path": "r.txt"}, "r"), {"text": "read it"}])
        r, ev = self.c.cadre_json("ask", "read r.txt")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse([e for e in ev if e.get("event") == "approval_needed"], ev)
        self.assertIn("readable", tool_results(self.c.model.requests()[-1])["r"])

    def spawn_waiting(self, watch, task):
        """Spawns an implementer; returns its id and its first approval_needed event."""
        r, out = self.c.cadre_json("spawn", "implementer", task)
        self.assertEqual(r.returncode, 0, r.stderr)
        aid = out[-1]["id"]
        need = self.c.watch_for(watch, lambda ev: ev.get("kind") == "approval_needed" and ev.get("session") == aid)
        return aid, need

    def answer(self, need, allow, session_wide=False):
        r = self.c.cadre("call", "approve_tool", json.dumps({"turn": need["turn"], "seq": need["payload"]["seq"],
                                                            "allow": allow, "session_wide": session_wide}))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_deny_shows_the_diff_and_does_not_write(self):
        open(self.path("d.txt"), "w").write("one\ntwo\nthree\n")
        summary = "[SUMMARY]\nStatus: FAIL\nKey Points:\n- denied\nRecommendation: -\n[/SUMMARY]"
        self.c.model.script([call("write_file_tool", {"path": "d.txt", "content": "one\n2\nthree\n"}, "d"),
                             {"text": summary}])
        watch = self.c.watch()
        try:
            aid, need = self.spawn_waiting(watch, "rewrite d.txt")
            preview = need["payload"]["preview"]
            self.assertEqual(preview, "replace d.txt\n@@ line 2\n- two\n+ 2", preview)
            self.answer(need, False)
            self.c.watch_for(watch, lambda ev: ev.get("kind") == "summary" and ev["payload"].get("id") == aid)
        finally:
            watch.kill()
            watch.wait()
        self.assertEqual(open(self.path("d.txt")).read(), "one\ntwo\nthree\n")
        self.assertIn("did not allow", tool_results(self.c.model.requests()[-1])["d"])

    def test_allow_for_this_session_asks_once_per_session_and_tool(self):
        summary = "[SUMMARY]\nStatus: PASS\nKey Points:\n- wrote\nRecommendation: -\n[/SUMMARY]"
        self.c.model.script([call("execute_bash", {"command": "echo 1 > s1.txt"}, "s1"),
                             call("execute_bash", {"command": "echo 2 > s2.txt"}, "s2"),
                             {"text": summary},
                             call("execute_bash", {"command": "echo 3 > s3.txt"}, "s3"),
                             {"text": summary}])
        watch = self.c.watch()
        try:
            aid, need = self.spawn_waiting(watch, "write s1 and s2")
            self.assertEqual(need["payload"]["preview"], "$ echo 1 > s1.txt")
            self.assertTrue(self.answer(need, True, session_wide=True)["session_wide"])
            done = self.c.watch_for(watch, lambda ev: ev.get("kind") == "summary" and ev["payload"].get("id") == aid
                                    or ev.get("kind") == "approval_needed")
            self.assertEqual(done["kind"], "summary", done)  # the second command did not ask
            self.assertTrue(os.path.exists(self.path("s2.txt")))
            # Another session (a new agent) is asked again.
            other, need = self.spawn_waiting(watch, "write s3")
            self.assertNotEqual(other, aid)
            self.assertFalse(os.path.exists(self.path("s3.txt")))
            self.answer(need, True)
            wait_until(lambda: os.path.exists(self.path("s3.txt")), what="the allowed command")
        finally:
            watch.kill()
            watch.wait()


class StopKillsCommands(unittest.TestCase):
    def test_stop_kills_a_running_command(self):
        c = Cluster(nodes=(("sk", 2),))
        try:
            marker = f"cadre-stop-{os.getpid()}-{time.monotonic_ns()}"
            c.model.script([call("execute_bash", {"command": f"sleep 300; echo {marker}", "timeout": 600}, "k")])
            r, out = c.cadre_json("spawn", "tester", "run forever")
            aid = out[-1]["id"]
            ps = lambda: subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            wait_until(lambda: marker in ps(), what="the command to start")
            r = c.cadre("stop", aid)
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_until(lambda: marker not in ps(), timeout=5, what="the command to be killed")
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
