"""The command sandbox and the file tools' confinement (issue 11, points 2 and 3).

The shared escape script (tests/tools/escapes.py) tries every escape against a
real daemon, as root and as an unprivileged user, and must count zero. The
other cases check what a user sees: which nodes run unsandboxed, the refusal
where the sandbox cannot be made, and a command's view (private /tmp, the
workspace writable, the rest read-only).
"""
import json
import os
import pwd
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, SOURCE_ROOT  # noqa: E402

ESCAPES = os.path.join(SOURCE_ROOT, "tests", "tools", "escapes.py")
MIN_ATTEMPTS = 50


def call(name, args, cid):
    return {"tool_calls": [{"id": cid, "name": name, "arguments": json.dumps(args)}]}


def tool_results(req):
    return {m["tool_call_id"]: m["content"] for m in req["body"]["messages"] if m["role"] == "tool"}


def run_escapes(*args):
    r = subprocess.run([sys.executable, ESCAPES, "--json", *args], capture_output=True, text=True, timeout=900)
    lines = r.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return r, summary


class Escapes(unittest.TestCase):
    def check(self, r, summary):
        self.assertIsNotNone(summary, r.stdout + r.stderr)
        report = r.stdout[-6000:] + r.stderr[-3000:]
        self.assertGreaterEqual(summary["attempts"], MIN_ATTEMPTS, report)
        escaped = [x["name"] for x in summary["results"] if x["escaped"]]
        self.assertEqual(escaped, [], report)
        self.assertEqual(summary["escapes"], 0, report)
        self.assertTrue(summary["network_control"], "a role with \"network\": true could not connect\n" + report)
        self.assertEqual(r.returncode, 0, report)

    def test_no_escape_as_root(self):
        if os.geteuid() != 0:
            self.skipTest("the tests do not run as root here (the unprivileged case runs as this user)")
        self.check(*run_escapes())

    def test_no_escape_as_an_unprivileged_user(self):
        if os.geteuid() != 0:
            self.check(*run_escapes())  # we are the unprivileged user
            return
        if not shutil.which("setpriv"):
            self.skipTest("setpriv (util-linux) is not installed, so the daemon cannot be started as another user")
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("there is no user 'nobody' to run the daemon as")
        self.check(*run_escapes("--user", "nobody"))


class NodeSandbox(unittest.TestCase):
    def test_no_sandbox_is_shown_and_commands_run(self):
        c = Cluster(nodes=())
        try:
            c.start_node("open", extra=("--no-sandbox",))
            c.start_node("boxed")
            c.wait_nodes(2)
            by_name = {n["name"]: n for n in c.nodes()}
            self.assertEqual(by_name["open"]["sandbox"], "off")
            self.assertEqual(by_name["boxed"]["sandbox"], "on")
            plain = c.cadre("nodes", check=True).stdout
            self.assertIn("SANDBOX", plain)
            self.assertIn("warning: open runs commands without a sandbox (--no-sandbox)", plain)
            self.assertNotIn("warning: boxed", plain)
        finally:
            c.close()

    def test_a_node_without_the_sandbox_refuses_commands_and_says_why(self):
        # No bwrap on PATH: the probe at start-up fails; file tools still work.
        c = Cluster(nodes=(), agentd_env={"PATH": "/nonexistent"})
        try:
            c.start_node("nobwrap")
            c.wait_nodes(1)
            node = c.nodes()[0]
            self.assertTrue(node["sandbox"].startswith("unavailable: bubblewrap (bwrap) is not installed"),
                            node["sandbox"])
            self.assertIn("warning: nobwrap refuses commands", c.cadre("nodes", check=True).stdout)
            c.model.script([call("execute_bash", {"command": "echo ran > ran.txt"}, "b"),
                            call("write_file_tool", {"path": "w.txt", "content": "w"}, "w"), {"text": "ok"}])
            r, _ = c.cadre_json("ask", "run it")
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            res = tool_results(c.model.requests()[-1])
            self.assertIn("this node does not run commands: the command sandbox cannot be made "
                          "(bubblewrap (bwrap) is not installed", res["b"])
            self.assertIn("--no-sandbox", res["b"])
            self.assertFalse(os.path.exists(os.path.join(c.workspace, "ran.txt")))
            self.assertTrue(os.path.exists(os.path.join(c.workspace, "w.txt")))
            self.assertIn("commands will be refused", c.logs())
        finally:
            c.close()

    def test_a_command_sees_a_private_tmp_and_a_read_only_host(self):
        c = Cluster(nodes=(("box", 2),))
        tag = f"cadre-sbx-{os.getpid()}"
        try:
            c.model.script([
                call("execute_bash", {"command": f"echo hi > /tmp/{tag} && cat /tmp/{tag} && pwd && echo w > w.txt"},
                     "a"),
                call("execute_bash", {"command": f"cat /tmp/{tag}; touch /usr/{tag}; ls /proc | grep -c '^[0-9]'"},
                     "b"),
                {"text": "ok"}])
            r, _ = c.cadre_json("ask", "look around")
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            res = tool_results(c.model.requests()[-1])
            ws = os.path.realpath(c.workspace)
            self.assertIn("hi\n" + ws + "\n[exit 0]", res["a"])
            self.assertTrue(os.path.exists(os.path.join(ws, "w.txt")))
            self.assertFalse(os.path.exists(f"/tmp/{tag}"))  # the command's /tmp was its own
            self.assertIn("No such file", res["b"])  # ... and gone with it
            self.assertIn("Read-only file system", res["b"])
            procs = int(res["b"].split("\n")[-3])  # only the sandbox's own processes are visible
            self.assertLess(procs, 10, res["b"])
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
