"""No runaway: a model that never stops calling tools is stopped, and stop,
stop-all, reset and Ctrl-C end every turn they cover.

A model that keeps calling a tool nobody has makes the broker answer the call
and queue the next turn; each turn used to start its counts at zero, so one
ask ran forever. The scripted model here does exactly that ("{index}" makes
every call's arguments new, so only the cap can stop it). Every wait is on a
condition with a deadline; "no further model calls" is shown by a barrier (an
unrelated ask answered after the stop) rather than by sleeping.
"""
import json
import os
import shutil
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402

UNKNOWN = {"tool_calls": [{"id": "c1", "name": "no_such_tool", "arguments": '{"n": {index}}'}]}
SAME_UNKNOWN = {"tool_calls": [{"id": "c1", "name": "no_such_tool", "arguments": '{"n": 1}'}]}
REAL = {"tool_calls": [{"id": "c1", "name": "list_files", "arguments": '{"glob": "x{index}*"}'}]}
BOTH = {"tool_calls": [{"id": "c1", "name": "list_files", "arguments": '{"glob": "y{index}*"}'},
                       {"id": "c2", "name": "no_such_tool", "arguments": '{"n": {index}}'}]}


def with_cap(n):
    def extra(cfg):
        cfg.setdefault("tools", {})["max_iterations"] = n
    return extra


class Cap(unittest.TestCase):
    def setUp(self):
        self.c = Cluster(nodes=(("r1", 2),), config_extra=with_cap(5))

    def tearDown(self):
        self.c.close()

    def ask_runaway(self, default):
        self.c.model.script([], default=default)
        r, ev = self.c.cadre_json("ask", "go on forever", timeout=60)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertEqual(ev[-1]["event"], "error", ev[-1])
        return ev[-1]

    def test_unknown_tool_calls_stop_at_the_cap(self):
        err = self.ask_runaway(UNKNOWN)
        self.assertEqual(err["code"], "iteration_cap")
        self.assertIn("cap of 5 model calls (tools.max_iterations)", err["detail"])
        self.assertEqual(len(self.c.model.requests()), 5)
        # The person at the terminal is told the same.
        self.c.model.reset()
        self.c.model.script([], default=UNKNOWN)
        r = self.c.cadre("ask", "go on forever")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cap of 5 model calls (tools.max_iterations)", r.stderr)
        self.assertEqual(len(self.c.model.requests()), 5)

    def test_the_console_says_why_the_request_stopped(self):
        if not shutil.which("tmux"):
            self.skipTest("tmux is not installed")
        from test_console import Terminal
        t = Terminal(self.c, "cap")
        try:
            t.wait_prompt()
            self.c.model.script([], default=UNKNOWN)
            t.type("go on forever")
            t.wait_text("cap of 5 model calls (tools.max_iterations)")
            t.wait_prompt()
            self.assertEqual(len(self.c.model.requests()), 5)
        finally:
            t.close()

    def test_the_same_unknown_call_three_times_is_stuck(self):
        err = self.ask_runaway(SAME_UNKNOWN)
        self.assertEqual(err["code"], "stuck")
        self.assertIn("no_such_tool with the same arguments 3 times in a row", err["detail"])
        self.assertEqual(len(self.c.model.requests()), 3)

    def test_real_tool_calls_stop_at_the_cap(self):
        err = self.ask_runaway(REAL)
        self.assertEqual(err["code"], "iteration_cap")
        self.assertEqual(len(self.c.model.requests()), 5)

    def test_the_cap_counts_over_node_and_broker_turns(self):
        # Each answer has a call the node runs and one it leaves to the broker:
        # 2 model calls per turn; the third turn's node stops after 1 more.
        err = self.ask_runaway(BOTH)
        self.assertEqual(err["code"], "iteration_cap")
        self.assertIn("tools.max_iterations", err["detail"])
        self.assertEqual(len(self.c.model.requests()), 5)

    def test_a_new_ask_starts_a_new_count(self):
        self.ask_runaway(UNKNOWN)
        self.c.model.reset()
        self.c.model.script([UNKNOWN, UNKNOWN, {"text": "Finally done."}])
        r, ev = self.c.cadre_json("ask", "three more")
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        self.assertEqual(ev[-1]["text"], "Finally done.")


class Stop(unittest.TestCase):
    """A runaway that only a stop can end (the cap is far away)."""

    def setUp(self):
        self.c = Cluster(nodes=(("r1", 2),), config_extra=with_cap(1000))

    def tearDown(self):
        self.c.close()

    def runaway_calls(self):
        return [q for q in self.c.model.requests() if "ping" not in json.dumps(q["body"].get("messages", [])[-1:])]

    def start_runaway(self):
        self.c.model.script([], default=UNKNOWN)
        p = self.c.cadre_bg("ask", "go on forever")
        wait_until(lambda: len(self.c.model.requests()) >= 5, 20, "the runaway to get going")
        return p

    def assert_stopped(self, t_stop, what, session="main", sessions=1):
        """No model call of the runaway started after t_stop but the one a node may have had
        on its way when the cancel came (at most one per session), and none comes later."""
        wait_until(lambda: all(q["t_end"] is not None for q in self.c.model.requests()), 10,
                   "the node to drop the model request in flight")
        n = len(self.runaway_calls())
        late = [q["t_start"] - t_stop for q in self.runaway_calls() if q["t_start"] > t_stop]
        self.assertLessEqual(len(late), sessions, f"model calls after {what}: {late}")
        self.assertTrue(all(d < 0.5 for d in late), f"model calls after {what}: {late}")
        # Barrier: a turn of another session goes through the broker and the node after the stop.
        self.c.model.script([{"match": "ping", "text": "pong"}])
        r, ev = self.c.cadre_json("ask", "--session", "barrier", "ping")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ev[-1]["text"], "pong")
        self.assertEqual(len(self.runaway_calls()), n, f"model calls after {what}")
        r, out = self.c.cadre_json("call", "agents")
        turns = [a for a in out[0] if a["id"] == session]
        self.assertTrue(turns and turns[0]["status"] != "running", turns)
        return n

    def test_stop_all_ends_main_and_sub_agent_runaways(self):
        p = self.start_runaway()
        sub = self.c.cadre_json("spawn", "reviewer", "go on forever too")[1][-1]["id"]
        wait_until(lambda: any(sub in json.dumps(q["body"]) for q in self.c.model.requests()), 20, "the sub-agent")
        t0 = time.monotonic()
        r, out = self.c.cadre_json("stop-all")
        t_stop = time.monotonic()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(out[-1]["stopped"], [sub])
        self.assertTrue(out[-1].get("cancelled"), out)
        p.wait(timeout=10)  # the ask sees its turn cancelled
        self.assertEqual(p.returncode, 130, p.stderr.read())
        n = self.assert_stopped(t_stop, "stop-all", sessions=2)
        last = max(q["t_start"] for q in self.runaway_calls())
        print(f"\nstop-all: {n} model calls; last one {max(0.0, last - t0) * 1000:.1f} ms after stop-all began",
              file=sys.stderr)

    def test_stop_all_after_the_asking_client_was_killed(self):
        p = self.start_runaway()
        p.kill()
        p.wait()
        n_before = len(self.runaway_calls())
        wait_until(lambda: len(self.runaway_calls()) > n_before + 3, 20, "the runaway to go on without its client")
        r = self.c.cadre("stop-all")
        t_stop = time.monotonic()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cancelled", r.stdout)
        self.assert_stopped(t_stop, "stop-all")

    def test_reset_ends_the_session_runaway(self):
        p = self.start_runaway()
        r = self.c.cadre("reset")
        t_stop = time.monotonic()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("conversation cleared", r.stdout)
        self.assertRegex(r.stdout, r"\n1 turn cancelled\n")
        p.wait(timeout=10)
        self.assert_stopped(t_stop, "reset")

    def test_stop_ends_a_sub_agent_runaway(self):
        self.c.model.script([], default=UNKNOWN)
        sub = self.c.cadre_json("spawn", "reviewer", "go on forever")[1][-1]["id"]
        wait_until(lambda: len(self.c.model.requests()) >= 5, 20, "the runaway to get going")
        r = self.c.cadre("stop", sub)
        t_stop = time.monotonic()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_stopped(t_stop, "stop", session=sub)

    def test_ctrl_c_of_ask_ends_the_request(self):
        p = self.start_runaway()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        t_stop = time.monotonic()
        self.assertEqual(p.returncode, 130, p.stderr.read())
        self.assert_stopped(t_stop, "Ctrl-C")

    def test_ctrl_c_in_the_console_ends_the_request(self):
        if not shutil.which("tmux"):
            self.skipTest("tmux is not installed")
        from test_console import Terminal
        t = Terminal(self.c, "runaway")
        try:
            t.wait_prompt()
            self.c.model.script([], default=UNKNOWN)
            t.type("go on forever")
            wait_until(lambda: len(self.c.model.requests()) >= 5, 20, "the runaway to get going")
            t.keys("C-c")
            t.wait_text("cancelled")
            t_stop = time.monotonic()
            self.assert_stopped(t_stop - 0.0, "Ctrl-C in the console")
        finally:
            t.close()


class Deadline(unittest.TestCase):
    """cadre-agentd --turn-timeout: a model call that never ends frees its slot."""

    def setUp(self):
        self.c = Cluster(nodes=())
        self.c.start_node("d1", 1, extra=["--turn-timeout", "1.5"])
        self.c.wait_nodes(1)

    def tearDown(self):
        self.c.close()

    def test_the_deadline_fires_and_frees_the_slot(self):
        cases = (("headers then silence", {"hang": True}),
                 ("header lines forever", {"forever": "headers", "every_ms": 100}),
                 ("keep-alive comments forever", {"forever": "ping", "every_ms": 100}),
                 ("empty events forever", {"forever": "empty", "every_ms": 100}),
                 ("one delta every 100 ms", {"forever": "trickle", "every_ms": 100}))
        for name, behaviour in cases:
            with self.subTest(name):
                self.c.model.script([dict(behaviour, match="never ends"), {"match": "after", "text": "Slot free."}])
                t0 = time.monotonic()
                r, ev = self.c.cadre_json("ask", "never ends", timeout=60)
                took = time.monotonic() - t0
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertEqual(ev[-1]["event"], "error", ev[-1])
                self.assertEqual(ev[-1]["code"], "timeout", ev[-1])
                self.assertIn("deadline of 1.5 s", ev[-1]["detail"])
                self.assertLess(took, 10)
                # The node has one slot: the next ask runs only if the call gave it back.
                r, ev = self.c.cadre_json("ask", "after that", timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(ev[-1]["text"], "Slot free.")


class DeadlinePerProfile(unittest.TestCase):
    """A profile's turn_timeout_s stands over the node's --turn-timeout."""

    def test_the_profile_deadline_wins(self):
        def extra(cfg):
            cfg["agents"]["main_agent"]["turn_timeout_s"] = 1
        c = Cluster(nodes=(), config_extra=extra)
        try:
            c.start_node("d1", 1, extra=["--turn-timeout", "60"])
            c.wait_nodes(1)
            c.model.script([{"match": "never ends", "forever": "trickle", "every_ms": 100}])
            r, ev = c.cadre_json("ask", "never ends", timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertEqual(ev[-1]["code"], "timeout", ev[-1])
            self.assertIn("deadline of 1 s", ev[-1]["detail"])
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
