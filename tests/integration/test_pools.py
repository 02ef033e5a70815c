"""Pools and placement: node labels, profiles that need them, most free slots,
drain and undrain, a daemon draining on SIGTERM, sessions kept where their
files are, and a lost node's turn shown moving.

Real broker, agent daemons and cadre on 127.0.0.1; the scripted model server.
"""
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402

SUMMARY = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: none\n[/SUMMARY]"


def gpu_reviewer(cfg):
    cfg["agents"]["reviewer_agent"]["labels"] = {"gpu": "1"}


class Placement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(), config_extra=gpu_reviewer)
        cls.c.start_node("n1", slots=2)
        cls.c.start_node("n2", slots=1, extra=("--label", "gpu=1"))
        cls.c.start_node("n3", slots=3, extra=("--label", "zone=b", "--label", "rack=r7"))
        cls.c.wait_nodes(3)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()
        for n in ("n1", "n2", "n3"):
            self.c.cadre("undrain", n)

    def started_on(self, *args):
        """Runs cadre ARGS and returns the node its (first) turn started on."""
        w = self.c.watch()
        try:
            r = self.c.cadre(*args)
            self.assertEqual(r.returncode, 0, r.stderr)
            ev = self.c.watch_for(w, lambda e: e.get("kind") == "turn_started")
            return ev["payload"]["node"]
        finally:
            w.kill()
            w.wait()

    def node(self, name):
        return [n for n in self.c.nodes() if n["name"] == name][0]

    def test_nodes_show_labels_slots_state_heartbeat(self):
        r = self.c.cadre("nodes")
        self.assertEqual(r.returncode, 0, r.stderr)
        for col in ("STATE", "SLOTS", "LABELS", "HEARTBEAT"):
            self.assertIn(col, r.stdout)
        line = [l for l in r.stdout.splitlines() if l.startswith("n3 ")][0]
        self.assertIn("ready", line)
        self.assertIn("0/3", line)
        self.assertIn("rack=r7,zone=b", line.replace("zone=b,rack=r7", "rack=r7,zone=b"))
        self.assertRegex(line, r"\d+\.\ds ago")
        n2 = self.node("n2")
        self.assertEqual(n2["labels"], {"gpu": "1"})
        self.assertIs(n2["draining"], False)

    def test_a_profile_with_labels_runs_only_on_matching_nodes(self):
        self.c.model.script([{"match": "Check", "text": SUMMARY}] * 3)
        for i in range(3):
            self.assertEqual(self.started_on("spawn", "reviewer", f"Check {i}", "--wait"), "n2")

    def test_turns_go_to_the_most_free_slots(self):
        self.assertEqual(self.started_on("ask", "--session", "p1", "hello"), "n3")

    def test_drain_and_undrain(self):
        r = self.c.cadre("drain", "n3")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("n3: draining (admin)", r.stdout)
        n3 = self.node("n3")
        self.assertIs(n3["draining"], True)
        self.assertEqual(n3["drain_reason"], "admin")
        self.assertIn("draining (admin)", self.c.cadre("nodes").stdout)
        self.assertEqual(self.started_on("ask", "--session", "p2", "hello"), "n1")
        # Kept when the node reconnects.
        self.c.kill_node("n3")
        wait_until(lambda: "n3" not in [n["name"] for n in self.c.nodes()], 10, "n3 to go")
        self.c.start_node("n3", slots=3, extra=("--label", "zone=b", "--label", "rack=r7"))
        wait_until(lambda: "n3" in [n["name"] for n in self.c.nodes()], 10, "n3 to come back")
        self.assertIs(self.node("n3")["draining"], True)
        r = self.c.cadre("undrain", "n3")
        self.assertIn("n3: ready", r.stdout)
        self.assertEqual(self.started_on("ask", "--session", "p3", "hello"), "n3")
        r = self.c.cadre("drain", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('no node named "nope"', r.stderr)
        self.assertIn("n1", r.stderr)


class Draining(unittest.TestCase):
    """SIGTERM: the daemon takes no new work, finishes its turn, and exits."""

    def test_sigterm_drains_then_exits(self):
        c = Cluster(nodes=())
        self.addCleanup(c.close)
        slow = c.start_node("slow", slots=1, extra=("--drain-timeout", "30"))
        c.wait_nodes(1)
        c.model.script([{"match": "long", "chunks": ["word "] * 12, "delay_ms": 150}])
        w = c.watch()
        self.addCleanup(w.wait)
        self.addCleanup(w.kill)
        job = c.cadre_bg("ask", "--session", "d1", "a long answer")
        started = c.watch_for(w, lambda e: e.get("kind") == "turn_started")
        self.assertEqual(started["payload"]["node"], "slow")
        c.watch_for(w, lambda e: e.get("type") == "delta")
        c.start_node("other", slots=1)
        wait_until(lambda: len(c.nodes()) == 2, 10, "the second node")
        t0 = time.monotonic()
        slow.send_signal(signal.SIGTERM)
        ev = c.watch_for(w, lambda e: e.get("kind") == "node_draining")
        self.assertEqual((ev["payload"]["name"], ev["payload"]["reason"]), ("slow", "stopping"))
        # New work goes elsewhere while it drains.
        c.model.script([{"match": "quick", "text": "ok"}])
        r = c.cadre("--json", "ask", "--session", "d2", "quick one")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"node": "other"', r.stdout.replace('"node":"other"', '"node": "other"'))
        # Its own turn finishes there, then it leaves.
        done = c.watch_for(w, lambda e: e.get("kind") == "turn_done" and e.get("turn") == started["turn"])
        self.assertEqual(done["payload"]["node"], "slow")
        self.assertEqual(slow.wait(timeout=30), 0)
        took = time.monotonic() - t0
        print(f"\nSIGTERM to exit of a draining node with a turn running: {took:.2f} s", file=sys.stderr)
        out, err = job.communicate(timeout=30)
        self.assertEqual(job.returncode, 0, err)
        self.assertIn("word word", out)
        c.daemons.pop("slow", None)

    def test_drain_timeout_cuts_and_the_turn_moves(self):
        c = Cluster(nodes=())
        self.addCleanup(c.close)
        slow = c.start_node("slow", slots=1, extra=("--drain-timeout", "1"))
        c.wait_nodes(1)
        c.model.script([{"match": "endless", "chunks": ["w "] * 200, "delay_ms": 100},
                        {"match": "endless", "text": "finished elsewhere"}])
        w = c.watch()
        self.addCleanup(w.wait)
        self.addCleanup(w.kill)
        job = c.cadre_bg("ask", "--session", "d3", "endless")
        started = c.watch_for(w, lambda e: e.get("kind") == "turn_started")
        c.watch_for(w, lambda e: e.get("type") == "delta")
        c.start_node("other", slots=1)
        wait_until(lambda: len(c.nodes()) == 2, 10, "the second node")
        t0 = time.monotonic()
        slow.send_signal(signal.SIGTERM)
        self.assertEqual(slow.wait(timeout=15), 0)
        self.assertLess(time.monotonic() - t0, 5)
        c.daemons.pop("slow", None)
        again = c.watch_for(w, lambda e: e.get("kind") == "turn_started" and e.get("turn") == started["turn"])
        self.assertEqual(again["payload"]["node"], "other")
        out, err = job.communicate(timeout=30)
        self.assertEqual(job.returncode, 0, err)
        self.assertIn("finished elsewhere", out)


class Pinned(unittest.TestCase):
    """A session whose tools changed files stays in that workspace."""

    def test_files_written_keep_the_session_there(self):
        c = Cluster(nodes=())
        self.addCleanup(c.close)
        c.start_node("a", slots=1, extra=("--label", "workspace=shared"))
        c.start_node("b", slots=4)
        c.wait_nodes(2)
        write = {"tool_calls": [{"name": "execute_bash", "arguments": {"command": "echo x > pinned.txt"}}]}
        c.model.script([dict(write, match="write it"), {"text": "written"}])
        w = c.watch()
        self.addCleanup(w.wait)
        self.addCleanup(w.kill)
        r = c.cadre("ask", "--session", "pin1", "write it")
        self.assertEqual(r.returncode, 0, r.stderr)
        first = c.watch_for(w, lambda e: e.get("kind") == "turn_started")["payload"]["node"]
        self.assertEqual(first, "b")  # most free slots
        # b now has the files: the next turn goes to b although a is free too.
        c.cadre("drain", "b", check=True)
        job = c.cadre_bg("ask", "--session", "pin1", "read it back")
        ev = c.watch_for(w, lambda e: e.get("kind") == "turn_waiting")
        self.assertIn("in workspace b", ev["payload"]["detail"])
        c.cadre("undrain", "b", check=True)
        again = c.watch_for(w, lambda e: e.get("kind") == "turn_started" and e.get("session") == "pin1")
        self.assertEqual(again["payload"]["node"], "b")
        job.communicate(timeout=30)
        self.assertIn("its turns stay there", c.logs())


class LostNodeShown(unittest.TestCase):
    """cadre watch says which node was lost and where the turn runs again."""

    def test_watch_names_both_nodes(self):
        c = Cluster(nodes=(("x1", 1),), heartbeat_ms=200)
        self.addCleanup(c.close)
        c.model.script([{"match": "Look", "chunks": ["a "] * 100, "delay_ms": 100},
                        {"match": "Look", "text": SUMMARY}])
        watch = subprocess.Popen([os.environ["CADRE_CTL_BIN"], "--no-color", "watch"], env=c.env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(watch.wait)
        self.addCleanup(watch.kill)
        jw = c.watch()
        self.addCleanup(jw.wait)
        self.addCleanup(jw.kill)
        job = c.cadre_bg("spawn", "reviewer", "Look around", "--wait")
        c.watch_for(jw, lambda e: e.get("type") == "delta")
        c.start_node("x2", slots=1)
        wait_until(lambda: len(c.nodes()) == 2, 10, "x2")
        c.kill_node("x1")
        c.watch_for(jw, lambda e: e.get("kind") == "turn_done", timeout=30)
        job.communicate(timeout=30)
        watch.kill()
        out = watch.communicate(timeout=10)[0]
        self.assertRegex(out, r"reviewer-\d+.*node x1 lost, retrying")
        self.assertRegex(out, r"reviewer-\d+.*retrying on x2 \(attempt 2\)")


if __name__ == "__main__":
    unittest.main()
