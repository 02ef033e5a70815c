"""Workflow engine: plans agents propose, approved by the user, run by the cluster.

Real broker and daemons; the scripted model writes the [PLAN] and plays the
sub-agents of agent steps; tool steps run on the node in its workspace.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402

PASS = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: go on\n[/SUMMARY]"
FAIL = "[SUMMARY]\nStatus: FAIL\nKey Points:\n- broken\nRecommendation: retry\n[/SUMMARY]"


def plan_text(title, steps, total="3m", cost="$0.05"):
    out = [f"I propose this.\n[PLAN]\n## Workflow: {title}\n"]
    for n, s in enumerate(steps, 1):
        out.append(f"### Step {n}: {s['title']}\n- Agent: {s['agent']}\n")
        if s.get("tool"):
            out.append(f"- Tool: {s['tool']}\n- Arguments: {json.dumps(s.get('args', {}))}\n")
        deps = s.get("deps") or []
        out.append("- Dependencies: " + (", ".join(f"Step {d}" for d in deps) if deps else "none") + "\n")
        out.append(f"- Estimated Time: {s.get('time', '30s')}\n\n")
    out.append(f"## Total Estimated Time: {total}\n## Cost Estimate: {cost}\n[/PLAN]\n")
    return "".join(out)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Workflows(unittest.TestCase):
    def setUp(self):
        self.c = Cluster(nodes=(("w1", 4), ("w2", 4)))
        self.ws = self.c.workspace

    def tearDown(self):
        self.c.close()

    def propose(self, text):
        self.c.model.script([{"match": "Make a plan", "text": text}], default={"text": PASS})
        self.c.cadre("ask", "Make a plan", check=True)
        r, out = self.c.cadre_json("plans")
        return out[0][-1]

    def plan(self, pid):
        r, out = self.c.cadre_json("plan", str(pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        return out[-1]

    def wait_status(self, pid, statuses, timeout=30):
        return wait_until(lambda: self.plan(pid)["status"] in statuses and self.plan(pid), timeout,
                          f"plan {pid} to be {statuses}")

    def test_plan_is_parsed_validated_and_estimated(self):
        p = self.propose(plan_text("Feature", [
            {"title": "Research", "agent": "researcher", "time": "30s"},
            {"title": "Implement", "agent": "implementer", "deps": [1], "time": "2m"},
            {"title": "Docs", "agent": "researcher", "deps": [1], "time": "90 seconds"},
            {"title": "Test", "agent": "tester", "deps": [2, 3], "time": "45s"}]))
        self.assertEqual(p["status"], "pending")
        self.assertEqual(p["title"], "Feature")
        self.assertEqual([s["number"] for s in p["steps"]], [1, 2, 3, 4])
        self.assertEqual(p["steps"][3]["dependencies"], [2, 3])
        self.assertEqual(p["estimate"]["seconds"], 30 + 120 + 45)  # the critical path, not the sum
        self.assertGreater(p["estimate"]["cost"], 0)
        for s in p["steps"]:
            self.assertEqual((s["status"], s["attempts"]), ("pending", 0))
        r = self.c.cadre("plan", str(p["id"]))
        self.assertIn("WORKFLOW PLAN: Feature", r.stdout)

    def test_invalid_plan_cannot_be_approved(self):
        p = self.propose(plan_text("Broken", [
            {"title": "A", "agent": "designer", "deps": [2]},
            {"title": "B", "agent": "tester", "deps": [1]},
            {"title": "C", "agent": "tester", "tool": "run_tests", "deps": [7]}]))
        self.assertEqual(p["status"], "invalid")
        msgs = " | ".join(e["message"] for e in p["errors"])
        self.assertIn("designer", msgs)
        self.assertIn("cycle", msgs)
        self.assertIn("Step 7", msgs)
        self.assertIn("run_tests", msgs)
        r, out = self.c.cadre_json("approve", str(p["id"]))
        self.assertNotEqual(r.returncode, 0)
        # Modify fixes it, and it is validated again.
        pid = str(p["id"])
        self.c.cadre("modify", pid, "set_agent", "1", "researcher", check=True)
        self.c.cadre("modify", pid, "set_dependencies", "1", "none", check=True)
        self.c.cadre("modify", pid, "remove_step", "3", check=True)
        p = self.plan(p["id"])
        self.assertEqual(p["status"], "pending", p["errors"])
        self.assertEqual([s["agent"] for s in p["steps"]], ["researcher", "tester"])

    def test_reject(self):
        p = self.propose(plan_text("Nope", [{"title": "A", "agent": "tester"}]))
        self.c.cadre("reject", str(p["id"]), check=True)
        self.assertEqual(self.plan(p["id"])["status"], "rejected")
        r, _ = self.c.cadre_json("approve", str(p["id"]))
        self.assertNotEqual(r.returncode, 0)

    def test_agent_steps_in_order_parallel_branches_overlap(self):
        p = self.propose(plan_text("Diamond", [
            {"title": "Start", "agent": "researcher"},
            {"title": "Left branch", "agent": "reviewer", "deps": [1]},
            {"title": "Right branch", "agent": "tester", "deps": [1]},
            {"title": "Join", "agent": "optimizer", "deps": [2, 3]}]))
        self.c.model.script([], default={"chunks": ["working "] * 4 + [PASS], "delay_ms": 150})
        r = self.c.cadre("approve", str(p["id"]), "--wait")
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        done = self.plan(p["id"])
        self.assertEqual([s["status"] for s in done["steps"]], ["done"] * 4)
        reqs = self.c.model.requests()[1:]  # after the planning turn
        by = {}
        for q in reqs:
            for name in ("Start", "Left branch", "Right branch", "Join"):
                if any(f": {name}" in (m.get("content") or "") for m in q["body"]["messages"] if m["role"] == "user"):
                    by.setdefault(name, q)
        self.assertLessEqual(by["Start"]["t_end"], by["Left branch"]["t_start"])
        self.assertLessEqual(by["Start"]["t_end"], by["Right branch"]["t_start"])
        self.assertLess(by["Left branch"]["t_start"], by["Right branch"]["t_end"])  # overlap
        self.assertLess(by["Right branch"]["t_start"], by["Left branch"]["t_end"])
        self.assertGreaterEqual(by["Join"]["t_start"], max(by["Left branch"]["t_end"], by["Right branch"]["t_end"]))
        # Results back: the workflow's summary is in the main agent's history.
        r, h = self.c.cadre_json("history")
        self.assertIn('[WORKFLOW', h[0]["messages"][-1]["content"])
        self.assertIn("done", h[0]["messages"][-1]["content"])

    def test_failed_agent_step_is_retried(self):
        p = self.propose(plan_text("Retry", [{"title": "Flaky work", "agent": "tester"}]))
        self.c.model.script([{"match": "Flaky work", "text": FAIL}, {"match": "Flaky work", "text": PASS}])
        r = self.c.cadre("approve", str(p["id"]), "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = self.plan(p["id"])["steps"][0]
        self.assertEqual((s["status"], s["attempts"]), ("done", 2))

    def test_tool_steps_change_files(self):
        p = self.propose(plan_text("Files", [
            {"title": "Write", "agent": "implementer", "tool": "write_file_tool",
             "args": {"path": "out/a.txt", "content": "alpha\n"}},
            {"title": "Edit", "agent": "implementer", "tool": "edit_file", "deps": [1],
             "args": {"path": "out/a.txt", "old_string": "alpha", "new_string": "beta"}},
            {"title": "Check", "agent": "tester", "tool": "execute_bash", "deps": [2],
             "args": {"command": "grep -q beta out/a.txt"}}]))
        r = self.c.cadre("approve", str(p["id"]), "--wait")
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        with open(os.path.join(self.ws, "out/a.txt")) as f:
            self.assertEqual(f.read(), "beta\n")

    def rollback_case(self, fail_at):
        original = os.path.join(self.ws, "keep.txt")
        with open(original, "wb") as f:
            f.write(b"original \x00\xff bytes\n")
        before = sha(original)
        script = os.path.join(self.ws, "run.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho hi\n")
        os.chmod(script, 0o755)
        steps = [
            {"title": "Overwrite", "agent": "implementer", "tool": "write_file_tool",
             "args": {"path": "keep.txt", "content": "changed"}},
            {"title": "Create", "agent": "implementer", "tool": "write_file_tool", "deps": [1],
             "args": {"path": "new/file.txt", "content": "new"}},
            {"title": "Shell", "agent": "tester", "tool": "execute_bash", "deps": [2],
             "args": {"command": "echo more >> keep.txt; rm -f new/file.txt run.sh; touch made.txt"}},
        ]
        steps[fail_at - 1] = {"title": "Fails", "agent": "tester", "tool": "execute_bash",
                              "deps": [fail_at - 1] if fail_at > 1 else [], "args": {"command": "exit 1"}}
        p = self.propose(plan_text(f"Rollback at {fail_at}", steps[:fail_at]))
        r = self.c.cadre("approve", str(p["id"]), "--wait", timeout=90)
        self.assertNotEqual(r.returncode, 0)
        done = self.plan(p["id"])
        self.assertEqual(done["status"], "failed")
        self.assertEqual(done["steps"][fail_at - 1]["attempts"], 3)
        self.assertEqual(sha(original), before, "restored byte for byte")
        self.assertFalse(os.path.exists(os.path.join(self.ws, "new/file.txt")))
        self.assertFalse(os.path.exists(os.path.join(self.ws, "made.txt")))
        self.assertEqual(done["report"]["rollback"]["mismatches"], [])
        self.assertEqual(os.stat(script).st_mode & 0o777, 0o755, "a deleted script comes back executable")
        # cadre plan N counts each file once, and the files the workflow created apart
        # cadre plan N counts the files the rollback really changed, each once
        rb = done["report"]["rollback"]
        text = self.c.cadre("plan", str(p["id"]), check=True).stdout
        # (exactly what was restored: the failing step changed nothing, so the files its snapshots
        # saw and it left alone, keep.txt and run.sh, are not restored nor counted)
        want = {1: "0 file(s) restored, 0 deleted",  # the failing step changed nothing
                2: "1 file(s) restored, 0 deleted",  # keep.txt
                3: "1 file(s) restored, 1 created file(s) removed, 0 deleted"}[fail_at]
        self.assertIn(f"rolled back: {want}, ", text, text[text.find("rolled back"):])
        # and the report in the main agent's history says as much
        changed = {1: 0, 2: 1, 3: 2}[fail_at]
        msgs = self.c.cadre_json("history")[1][0]["messages"]
        self.assertTrue(any(f"Rolled back: {changed} file(s) changed back, 0 mismatch(es)" in (m.get("content") or "")
                            for m in msgs), msgs[-1])
        if os.environ.get("CADRE_SHOW_ROLLBACK"):
            print(f"\n[{len(rb['restored'])} restore entries] {text[text.find('rolled back'):]}", file=sys.stderr)

    def test_rollback_after_failure_at_step_1(self):
        self.rollback_case(1)

    def test_rollback_after_failure_at_step_2(self):
        self.rollback_case(2)

    def test_rollback_after_failure_at_step_3(self):
        self.rollback_case(3)

    def test_pause_resume_and_cancel_with_rollback(self):
        p = self.propose(plan_text("Pausable", [
            {"title": "Write", "agent": "implementer", "tool": "write_file_tool",
             "args": {"path": "p.txt", "content": "x"}},
            {"title": "Slow", "agent": "tester", "deps": [1]},
            {"title": "After", "agent": "tester", "deps": [2]}]))
        self.c.model.script([{"match": "Slow", "hang": True}], default={"text": PASS})
        pid = str(p["id"])
        self.c.cadre("approve", pid, check=True)
        wait_until(lambda: self.plan(p["id"])["steps"][1]["status"] == "running", what="step 2 running")
        self.c.cadre("pause", pid, check=True)
        self.assertEqual(self.plan(p["id"])["status"], "paused")
        self.c.cadre("resume", pid, check=True)
        self.assertEqual(self.plan(p["id"])["status"], "running")
        self.assertTrue(os.path.exists(os.path.join(self.ws, "p.txt")))
        self.c.cadre("cancel", pid, check=True)
        done = self.wait_status(p["id"], ("cancelled",))
        self.assertFalse(os.path.exists(os.path.join(self.ws, "p.txt")), "the write was rolled back")
        self.assertEqual(done["steps"][2]["status"], "pending")

    def test_templates(self):
        p = self.propose(plan_text("Make {{name}}", [
            {"title": "Write {{name}}", "agent": "implementer", "tool": "write_file_tool",
             "args": {"path": "{{name}}.txt", "content": "{{body}}"}}]))
        r, out = self.c.cadre_json("template", "save", str(p["id"]), "maker")
        self.assertEqual(sorted(out[-1]["params"]), ["body", "name"])
        r, out = self.c.cadre_json("template", "list")
        self.assertEqual([t["name"] for t in out[-1]], ["maker"])
        r, out = self.c.cadre_json("template", "run", "maker", "name=hello", "body=world")
        new = out[-1]
        self.assertEqual(new["title"], "Make hello")
        self.c.cadre("approve", str(new["id"]), "--wait", check=True)
        with open(os.path.join(self.ws, "hello.txt")) as f:
            self.assertEqual(f.read(), "world")
        r, out = self.c.cadre_json("template", "run", "maker", "name=x")
        self.assertNotEqual(r.returncode, 0)


class NodeLoss(unittest.TestCase):
    def test_node_dies_mid_step_and_the_step_runs_on_another(self):
        c = Cluster(nodes=(("first", 2),))
        try:
            text = plan_text("Survive a node", [
                {"title": "Long command", "agent": "tester", "tool": "execute_bash",
                 "args": {"command": "mkdir -p .git; if [ -f .git/started ]; then echo second run; "
                                     "else touch .git/started; sleep 30; fi"}}])
            c.model.script([{"match": "Make a plan", "text": text}])
            c.cadre("ask", "Make a plan", check=True)
            pid = str(c.cadre_json("plans")[1][0][-1]["id"])
            c.cadre("approve", pid, check=True)
            # (the marker is in .git, which the restore before the step runs again leaves alone)
            wait_until(lambda: os.path.exists(os.path.join(c.workspace, ".git/started")), what="the step to start")
            c.start_node("second", 2)
            c.wait_nodes(2)
            c.kill_node("first")
            done = wait_until(lambda: c.cadre_json("plan", pid)[1][-1]["status"] == "done" and
                              c.cadre_json("plan", pid)[1][-1], timeout=30, what="the step to finish elsewhere")
            step = done["steps"][0]
            self.assertEqual(step["node"], "second")
            self.assertIn("second run", step["result"])
        finally:
            subprocess.run(["pkill", "-f", "touch .git/started; sleep 30"], capture_output=True)
            c.close()


class Durability(unittest.TestCase):
    def test_broker_killed_mid_workflow_completes_exactly_once(self):
        c = Cluster(nodes=(("d1", 4),))
        try:
            text = plan_text("Survive", [
                {"title": "Append one", "agent": "implementer", "tool": "execute_bash",
                 "args": {"command": "echo one >> log.txt"}},
                {"title": "Slow agent", "agent": "researcher", "deps": [1]},
                {"title": "Append two", "agent": "implementer", "tool": "execute_bash", "deps": [2],
                 "args": {"command": "echo two >> log.txt"}}])
            c.model.script([{"match": "Make a plan", "text": text},
                            {"match": "Slow agent", "chunks": ["a "] * 10 + [PASS], "delay_ms": 200}],
                           default={"text": PASS})
            c.cadre("ask", "Make a plan", check=True)
            pid = c.cadre_json("plans")[1][0][-1]["id"]
            c.cadre("approve", str(pid), check=True)
            wait_until(lambda: any("Slow agent" in json.dumps(q["body"]) for q in c.model.requests()),
                       what="the slow step to start")
            c.stop_broker(signal.SIGKILL)
            c.start_broker()
            c.wait_nodes(1)
            wait_until(lambda: c.cadre_json("plan", str(pid))[1][-1]["status"] == "done", timeout=40,
                       what="the workflow to finish after the restart")
            with open(os.path.join(c.workspace, "log.txt")) as f:
                self.assertEqual(f.read(), "one\ntwo\n", "no step done twice, none lost")
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
