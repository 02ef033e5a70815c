"""Workflow effects exactly once: a step in flight when the broker or the agent
daemon is killed (kill -9) lands its effect once.

Real broker and daemon. The step appends a line to f.txt; it counts its runs in
.git/runs and waits for .git/go before it appends, so that the test can kill a
program before the step starts, while it runs, or after it finished but before
the broker recorded it (the broker stopped with SIGSTOP). The markers live in
.git, which checkpoints and restores leave alone. Everything waits on state
(files, `cadre --json plan N`), never on a sleep.
"""
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, read_text, wait_until  # noqa: E402
from test_workflow import PASS, plan_text  # noqa: E402

APPEND = ("echo run >> .git/runs; while [ ! -f .git/go ]; do sleep 0.05; done; "
          "echo x >> f.txt; touch .git/done")


class Once(unittest.TestCase):
    def setUp(self):
        self.c = Cluster(nodes=(("o1", 2),))
        self.ws = self.c.workspace
        os.makedirs(os.path.join(self.ws, ".git"))

    def tearDown(self):
        if self.c.broker and self.c.broker.poll() is None:
            self.c.broker.send_signal(signal.SIGCONT)
        self.c.close()

    # -- helpers ----------------------------------------------------------
    def path(self, name):
        return os.path.join(self.ws, name)

    def runs(self):
        p = self.path(".git/runs")
        return len(open(p).read().splitlines()) if os.path.exists(p) else 0

    def lines(self):
        p = self.path("f.txt")
        return open(p).read() if os.path.exists(p) else ""

    def approve(self, steps=None):
        text = plan_text("Once", steps or [
            {"title": "Append", "agent": "implementer", "tool": "execute_bash", "args": {"command": APPEND}}])
        self.c.model.script([{"match": "Make a plan", "text": text}], default={"text": PASS})
        self.c.cadre("ask", "Make a plan", check=True)
        pid = str(self.c.cadre_json("plans")[1][0][-1]["id"])
        self.c.cadre("approve", pid, check=True)
        return pid

    def plan(self, pid):
        return self.c.plan(pid)

    def kill_broker(self):
        self.c.kill_broker()

    def restart_broker(self):
        self.kill_broker()
        self.c.start_broker()
        self.c.wait_nodes(1)

    def restart_node(self, wait=True):
        self.c.kill_node("o1")
        self.c.start_node("o1", 2)
        if wait:
            self.c.wait_nodes(1)

    def wait_runs(self, n):
        wait_until(lambda: self.runs() >= n, timeout=30, what=f"run {n} of the step")

    def stop_after_finish(self):
        """The broker stopped, the step let go and finished: its result is not recorded."""
        self.c.broker.send_signal(signal.SIGSTOP)
        open(self.path(".git/go"), "w").close()
        wait_until(lambda: os.path.exists(self.path(".git/done")), what="the step to finish")

    def finish(self, pid):
        open(self.path(".git/go"), "w").close()
        done = wait_until(lambda: self.plan(pid).get("status") in ("done", "failed") and self.plan(pid),
                          timeout=60, what="the workflow to end")
        self.assertEqual(done["status"], "done", json.dumps(done)[:2000] + self.c.logs())
        self.assertEqual(self.lines(), "x\n", "the line is appended exactly once\n" + self.c.logs())
        if os.environ.get("CADRE_SHOW_ONCE"):
            print(f"\n[{self.id()}: the command ran {self.runs()} time(s), the line landed "
                  f"{self.lines().count('x')} time(s)]", file=sys.stderr)
        return done

    # -- the broker killed --------------------------------------------------
    def test_broker_killed_while_the_step_runs(self):
        pid = self.approve()
        self.wait_runs(1)
        self.restart_broker()
        self.finish(pid)
        self.assertEqual(self.runs(), 1, "the step went on where it ran; it did not run again")

    def test_broker_killed_after_the_step_finished_before_it_was_recorded(self):
        pid = self.approve()
        self.wait_runs(1)
        self.stop_after_finish()
        self.kill_broker()
        self.c.start_broker()
        self.finish(pid)
        self.assertEqual(self.runs(), 1)

    def test_broker_killed_before_the_step_starts(self):
        pid = self.approve()
        self.restart_broker()
        self.finish(pid)

    # -- the agent daemon killed -------------------------------------------
    def test_agentd_killed_while_the_step_runs(self):
        pid = self.approve()
        self.wait_runs(1)
        self.restart_node()
        self.finish(pid)

    def test_agentd_killed_after_the_step_finished_before_it_was_recorded(self):
        pid = self.approve()
        self.wait_runs(1)
        self.stop_after_finish()
        self.restart_node(wait=False)
        self.c.broker.send_signal(signal.SIGCONT)
        self.finish(pid)

    # -- several kills in a row --------------------------------------------
    def test_several_kills_in_a_row(self):
        pid = self.approve()
        self.restart_broker()  # before the step starts (or just as it does)
        self.wait_runs(1)
        self.restart_broker()  # while it runs
        self.restart_node()  # while it runs: it runs again, restored first
        self.wait_runs(2)
        self.restart_broker()
        self.restart_node()
        self.wait_runs(3)
        self.stop_after_finish()  # after it finished, before the broker recorded it
        self.kill_broker()
        self.c.start_broker()
        self.c.wait_nodes(1)
        self.restart_broker()
        self.finish(pid)

    def test_a_second_step_after_kills_lands_once_too(self):
        """Kills around a file step and a shell step of one workflow: each change once."""
        pid = self.approve([
            {"title": "Write", "agent": "implementer", "tool": "write_file_tool",
             "args": {"path": "w.txt", "content": "w\n"}},
            {"title": "Append", "agent": "implementer", "tool": "execute_bash", "deps": [1],
             "args": {"command": APPEND}}])
        self.wait_runs(1)
        self.restart_node()
        self.restart_broker()
        self.finish(pid)
        self.assertEqual(open(self.path("w.txt")).read(), "w\n")


class AgentAnswerStoredNotActedOn(unittest.TestCase):
    """The broker dies right after it stored an agent step's answer and before
    it acted on it (made here by writing that answer into the stopped broker's
    database, as the broker would have): after the restart the stored answer
    is taken as the step's result, and the workflow goes on (before, the step
    stayed running for ever: its sub-agent had no turn left to finish)."""

    def run_until_killed(self, c, steps):
        """Proposes and approves steps; kills the broker while the first one's model call hangs."""
        text = plan_text("Think then act", steps)
        c.model.script([{"match": "Make a plan", "text": text}, {"match": "Think it over", "hang": True}],
                       default={"text": PASS})
        c.cadre("ask", "Make a plan", check=True)
        pid = str(c.cadre_json("plans")[1][0][-1]["id"])
        c.cadre("approve", pid, check=True)
        wait_until(lambda: any("Think it over" in json.dumps(q["body"]) for q in c.model.requests()),
                   what="the agent step's model call")
        plan = c.plan(pid)
        c.kill_broker()
        return pid, plan

    def store_answer(self, c, agent, text):
        """What the broker would have stored of the sub-agent's turn, had it stopped just after."""
        import sqlite3
        db = sqlite3.connect(os.path.join(c.state, "state.db"))
        with db:
            turn = db.execute("SELECT id FROM turns WHERE session = ? AND status IN ('queued', 'running')",
                              (agent,)).fetchone()[0]
            db.execute("UPDATE turns SET status = 'done', finished_ms = ? WHERE id = ?", (int(time.time() * 1000), turn))
            db.execute("INSERT INTO messages(session, seq, turn, body, created_ms) VALUES(?, "
                       "(SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE session = ?), ?, ?, ?)",
                       (agent, agent, turn, json.dumps({"role": "assistant", "content": text}),
                        int(time.time() * 1000)))
        db.close()

    def restart_until_done(self, c, pid):
        c.model.script([], default={"text": PASS.replace("- ok", "- asked again")})
        c.start_broker()
        done = wait_until(lambda: c.plan(pid).get("status") in ("done", "failed") and c.plan(pid), timeout=60,
                          what="the workflow to end")
        self.assertEqual(done["status"], "done", json.dumps(done)[:2000] + c.logs())
        return done

    def test_the_stored_answer_ends_the_step(self):
        c = Cluster(nodes=(("a1", 2),))
        self.addCleanup(c.close)
        pid, plan = self.run_until_killed(c, [
            {"title": "Think it over", "agent": "researcher"},
            {"title": "Append", "agent": "implementer", "tool": "execute_bash", "deps": [1],
             "args": {"command": "echo x >> f.txt"}}])
        self.store_answer(c, plan["steps"][0]["agent_session"], PASS.replace("- ok", "- stored before the crash"))
        done = self.restart_until_done(c, pid)
        self.assertIn("stored before the crash", done["steps"][0]["result"])
        with open(os.path.join(c.workspace, "f.txt")) as f:
            self.assertEqual(f.read(), "x\n")

    def test_a_step_still_queued_for_admission_is_admitted(self):
        """One sub-agent at a time: the second agent step waits for admission when the broker stops."""
        c = Cluster(nodes=(("a1", 2),), config_extra=lambda cfg: cfg.update(max_concurrent_agents=1))
        self.addCleanup(c.close)
        pid, plan = self.run_until_killed(c, [{"title": "Think it over", "agent": "researcher"},
                                              {"title": "Review it", "agent": "reviewer"}])
        self.assertEqual([s["status"] for s in plan["steps"]], ["running", "running"])
        self.store_answer(c, plan["steps"][0]["agent_session"], PASS)
        done = self.restart_until_done(c, pid)
        self.assertIn("asked again", done["steps"][1]["result"])


class SlotAfterRestart(unittest.TestCase):
    """A step waiting for its checkpoint's acknowledgement when the broker is
    killed sends the checkpoint again at once after reconnecting, instead of
    holding its slot until the acknowledgement times out."""

    def test_unrelated_ask_completes_soon_after_a_broker_restart(self):
        c = Cluster(nodes=(("s1", 1),))
        try:
            ws = c.workspace
            # A workspace big enough that its snapshot takes a while to store.
            blob = os.urandom(12 * 1024)
            for i in range(1200):
                d = os.path.join(ws, f"d{i % 30}")
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
                    f.write(blob + i.to_bytes(4, "big"))
            text = plan_text("Big", [{"title": "Append", "agent": "implementer", "tool": "execute_bash",
                                      "args": {"command": "echo x >> f.txt"}}])
            c.model.script([{"match": "Make a plan", "text": text}], default={"text": "fine"})
            c.cadre("ask", "Make a plan", check=True)
            pid = str(c.cadre_json("plans")[1][0][-1]["id"])
            c.cadre("approve", pid, check=True)
            log = os.path.join(c.tmp, "agentd-s1.log")
            wait_until(lambda: "(attempt 1): execute_bash" in read_text(log), what="the step to start")
            c.broker.send_signal(signal.SIGSTOP)  # it gets the snapshot, never acknowledges it
            c.stop_broker(signal.SIGKILL)
            c.start_broker()
            c.wait_nodes(1)
            t0 = time.monotonic()
            r = c.cadre("ask", "hello there", timeout=120)
            took = time.monotonic() - t0
            self.assertEqual(r.returncode, 0, r.stderr)
            if os.environ.get("CADRE_SHOW_ONCE"):
                print(f"\n[an unrelated ask took {took:.1f} s after the broker restart]", file=sys.stderr)
            self.assertLess(took, 15, "the slot is free again within seconds\n" + c.logs())
            self.assertIn("before it acknowledged the checkpoint; sent again", read_text(log))
            done = wait_until(lambda: c.cadre_json("plan", pid)[1][-1]["status"] in ("done", "failed") and
                              c.cadre_json("plan", pid)[1][-1], timeout=60, what="the workflow to end")
            self.assertEqual(done["status"], "done")
            with open(os.path.join(ws, "f.txt")) as f:
                self.assertEqual(f.read(), "x\n")
        finally:
            c.close()


class RollbackOnlyWhatTheWorkflowChanged(unittest.TestCase):
    """A rollback restores what the workflow changed and nothing else: other
    work done meanwhile (here while an agent step of the workflow runs) is left
    alone, and a file that other work changed after the workflow wrote it is
    kept and reported as a conflict. What a shell step changed is what differs
    between its snapshot and the workspace when it ended."""

    def setUp(self):
        self.c = Cluster(nodes=(("r1", 2),))
        self.ws = self.c.workspace

    def tearDown(self):
        self.c.close()

    def path(self, name):
        return os.path.join(self.ws, name)

    def write(self, name, text, mode=None):
        os.makedirs(os.path.dirname(self.path(name)) or self.ws, exist_ok=True)
        with open(self.path(name), "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(self.path(name), mode)

    def read(self, name):
        with open(self.path(name)) as f:
            return f.read()

    def plan(self, pid):
        r, out = self.c.cadre_json("plan", pid)
        return out[-1] if r.returncode == 0 and out else {}

    def run_and_cancel(self, steps, meanwhile):
        """Runs steps, then an agent step; while it runs, meanwhile(); then cancel (rollback)."""
        steps = steps + [{"title": "Think it over", "agent": "researcher", "deps": [len(steps)]}]
        self.c.model.script([{"match": "Make a plan", "text": plan_text("Undo", steps)},
                             {"match": "Think it over", "hang": True}], default={"text": PASS})
        self.c.cadre("ask", "Make a plan", check=True)
        pid = str(self.c.cadre_json("plans")[1][0][-1]["id"])
        self.c.cadre("approve", pid, check=True)
        wait_until(lambda: self.plan(pid).get("steps", [{}])[-1].get("status") == "running", timeout=30,
                   what="the agent step to run")
        meanwhile()
        self.c.cadre("cancel", pid, check=True)
        done = wait_until(lambda: self.plan(pid).get("status") in ("cancelled", "failed") and self.plan(pid),
                          timeout=60, what="the rollback")
        self.assertEqual(done["status"], "cancelled")
        text = self.c.cadre("plan", pid, check=True).stdout
        return done, text[text.find("rolled back"):]

    def test_work_done_meanwhile_is_left_alone(self):
        self.write("a.txt", "a0\n")
        self.write("u1.txt", "u1\n")
        self.write("u2.txt", "u2\n")
        self.write("m.sh", "#!/bin/sh\n", 0o755)
        self.write("gone.txt", "keep me\n", 0o640)
        shell = {"title": "Shell", "agent": "tester", "tool": "execute_bash", "args": {"command":
                 "echo a1 >> a.txt; chmod 600 m.sh; rm -f gone.txt; echo b > b.txt"}}

        def user():
            self.write("user.txt", "mine\n")
            self.write("userdir/x.txt", "mine\n")
            self.write("u1.txt", "u1 edited by the user\n")
            self.write("u2.txt", "u2 edited by the user\n")
        done, text = self.run_and_cancel([shell], user)
        rb = done["report"]["rollback"]
        self.assertEqual(self.read("a.txt"), "a0\n", "the workflow's append is undone")
        self.assertEqual(os.stat(self.path("m.sh")).st_mode & 0o777, 0o755, "the mode is restored")
        self.assertEqual(self.read("gone.txt"), "keep me\n", "the removed file is back")
        self.assertEqual(os.stat(self.path("gone.txt")).st_mode & 0o777, 0o640)
        self.assertFalse(os.path.exists(self.path("b.txt")), "the file the workflow made is removed")
        self.assertEqual(self.read("user.txt"), "mine\n", "the user's new file is left alone")
        self.assertEqual(self.read("userdir/x.txt"), "mine\n", "and the user's new directory")
        self.assertEqual(self.read("u1.txt"), "u1 edited by the user\n", "the user's edits are kept")
        self.assertEqual(self.read("u2.txt"), "u2 edited by the user\n")
        self.assertEqual(rb["mismatches"], [])
        self.assertEqual(rb.get("conflicts"), [])
        restored = sorted({e["path"] for e in rb["restored"]})
        self.assertEqual(restored, ["a.txt", "b.txt", "gone.txt", "m.sh"], "exactly what the workflow changed")
        self.assertIn("rolled back: 3 file(s) restored, 1 created file(s) removed, 0 deleted", text)

    def test_symlinks_modes_and_empty_directories_come_back_as_they_were(self):
        self.write("a.txt", "a\n")
        self.write("x.sh", "#!/bin/sh\n", 0o755)
        os.symlink("a.txt", self.path("ln"))
        os.symlink("missing", self.path("dangling"))
        os.makedirs(self.path("empty"))
        os.makedirs(self.path("tree/sub"))
        os.chmod(self.path("tree"), 0o750)
        shell = {"title": "Shell", "agent": "tester", "tool": "execute_bash", "args": {"command":
                 "rm ln; ln -s a.txt newlink; ln -sfn a.txt dangling; rm -r empty tree; chmod 700 x.sh; "
                 "mkdir -p made/deeper emptynew"}}

        def user():
            os.makedirs(self.path("userempty"))
            self.write("made/user.txt", "mine\n")
        done, text = self.run_and_cancel([shell], user)
        rb = done["report"]["rollback"]
        self.assertEqual(os.readlink(self.path("ln")), "a.txt", "a removed symlink comes back as a link")
        self.assertEqual(os.readlink(self.path("dangling")), "missing", "a retargeted one points back")
        self.assertFalse(os.path.lexists(self.path("newlink")), "a symlink the workflow made goes")
        self.assertTrue(os.path.isdir(self.path("empty")) and not os.listdir(self.path("empty")),
                        "a removed empty directory comes back")
        self.assertTrue(os.path.isdir(self.path("tree/sub")))
        self.assertEqual(os.stat(self.path("tree")).st_mode & 0o777, 0o750, "with its mode")
        self.assertEqual(os.stat(self.path("x.sh")).st_mode & 0o777, 0o755)
        self.assertFalse(os.path.exists(self.path("emptynew")), "a directory the workflow made goes")
        self.assertFalse(os.path.exists(self.path("made/deeper")))
        self.assertEqual(self.read("made/user.txt"), "mine\n", "a made directory that holds other work stays")
        self.assertTrue(os.path.isdir(self.path("userempty")), "the user's empty directory is left alone")
        self.assertEqual(rb["mismatches"], [], json.dumps(rb))
        self.assertEqual([e["path"] for e in rb["conflicts"]], ["made"])

    def test_a_file_changed_after_the_workflow_wrote_it_is_kept_as_a_conflict(self):
        self.write("c.txt", "c0\n")
        self.write("d.txt", "d0\n")
        self.write("f.txt", "f0\n")
        steps = [{"title": "Write", "agent": "implementer", "tool": "write_file_tool",
                  "args": {"path": "c.txt", "content": "c1\n"}},
                 {"title": "Shell", "agent": "tester", "tool": "execute_bash", "deps": [1],
                  "args": {"command": "echo d1 >> d.txt; echo f1 >> f.txt; echo e > e.txt; echo g > g.txt"}}]

        def user():
            self.write("c.txt", "c edited by the user\n")
            self.write("d.txt", "d edited by the user\n")
            os.unlink(self.path("g.txt"))
        done, text = self.run_and_cancel(steps, user)
        rb = done["report"]["rollback"]
        self.assertEqual(self.read("c.txt"), "c edited by the user\n", "other work is kept")
        self.assertEqual(self.read("d.txt"), "d edited by the user\n")
        self.assertFalse(os.path.exists(self.path("g.txt")), "made by the workflow, removed by the user: gone")
        self.assertEqual(sorted(e["path"] for e in rb["conflicts"]), ["c.txt", "d.txt"])
        self.assertEqual(self.read("f.txt"), "f0\n", "what nobody touched since is restored")
        self.assertFalse(os.path.exists(self.path("e.txt")))
        self.assertIn("2 conflict(s) kept as others left them (", text)
        restored = sorted({e["path"] for e in rb["restored"]})
        self.assertEqual(restored, ["e.txt", "f.txt", "g.txt"], "conflicts are not reported as restored")
        self.assertIn("rolled back: 1 file(s) restored, 1 created file(s) removed, 1 already as they were, "
                      "2 conflict(s)", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
