"""Faults on purpose: a model server that misbehaves in every way we know,
agent daemons killed mid-turn again and again, and a full disk under the
broker's state.

Real broker, agent daemons and cadre on 127.0.0.1 with the scripted model
server. Each fault ends in a clear error within the configured timeouts (or
in the work finishing elsewhere), no daemon crashes, and the cluster serves
the next request.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402

SUMMARY = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: none\n[/SUMMARY]"


class ModelServerFaults(unittest.TestCase):
    """Each misbehaviour: a clear error, in bounded time; the node lives on."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=())
        # --stall-timeout 3 (the harness's), and a 6 s deadline for a whole model call.
        cls.c.start_node("n1", slots=1, extra=("--turn-timeout", "6"))
        cls.c.wait_nodes(1)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def fault(self, response, phrases, bound_s):
        self.c.model.script([response])
        t0 = time.monotonic()
        r = self.c.cadre("ask", "--session", f"f{time.monotonic_ns()}", "go")
        took = time.monotonic() - t0
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertTrue(any(p in r.stderr for p in phrases), f"{phrases} not in {r.stderr!r}")
        self.assertNotIn("Traceback", r.stderr)
        self.assertLess(took, bound_s, f"took {took:.1f} s")
        for name, p in self.c.daemons.items():
            self.assertIsNone(p.poll(), f"agent daemon {name} died")
        self.assertIsNone(self.c.broker.poll(), "the broker died")
        # The next request is served.
        self.c.model.script([{"text": "fine again"}])
        r = self.c.cadre("ask", "--session", f"ok{time.monotonic_ns()}", "again")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fine again", r.stdout)
        return r

    def test_stall_after_headers(self):
        self.fault({"hang": True}, ["sent nothing", "stalled", "no progress"], 20)

    def test_reset_mid_stream(self):
        self.fault({"chunks": ["one ", "two ", "three ", "four "], "reset_after": 2},
                   ["reset", "cut", "closed", "broke off"], 20)

    def test_endless_keepalives(self):
        self.fault({"forever": "ping", "every_ms": 100}, ["no progress", "deadline", "stalled", "timeout"], 20)

    def test_a_20_mb_line(self):
        self.fault({"chunks": ["x" * (20 * 1024 * 1024)]}, ["line", "too long", "too large", "MiB"], 30)

    def test_invalid_utf8(self):
        body = (b'data: {"choices":[{"index":0,"delta":{"content":"ok \xff\xfe bad"}}]}\n\n'
                b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
        self.c.model.script([{"raw_b64": base64.b64encode(body).decode(),
                              "headers": {"Content-Type": "text/event-stream"}}])
        r = self.c.cadre("--json", "ask", "--session", "utf8", "go")
        # Either a clear error, or an answer in valid UTF-8 (the bad bytes replaced or dropped).
        if r.returncode == 0:
            done = [json.loads(l) for l in r.stdout.splitlines() if '"done"' in l][-1]
            self.assertIn("ok", done["text"])
            done["text"].encode("utf-8")
        else:
            self.assertRegex(r.stderr + r.stdout, r"UTF-8|invalid JSON")
        self.assertIsNone(self.c.daemons["n1"].poll())
        self.assertIsNone(self.c.broker.poll())


class NodeKills(unittest.TestCase):
    """kill -9 of the agent daemon running a turn, 20 times: every turn
    completes on the other daemon."""

    def test_twenty_kills_mid_turn(self):
        c = Cluster(nodes=(("n1", 1), ("n2", 1)), heartbeat_ms=200)
        self.addCleanup(c.close)
        w = c.watch()
        self.addCleanup(w.wait)
        self.addCleanup(w.kill)
        for i in range(20):
            c.model.script([{"match": f"job {i} ", "chunks": ["a "] * 60, "delay_ms": 50},
                            {"match": f"job {i} ", "text": f"done {i}"}])
            job = c.cadre_bg("ask", "--session", f"k{i}", f"job {i} please")
            started = c.watch_for(w, lambda e: e.get("kind") == "turn_started" and e.get("session") == f"k{i}")
            victim = started["payload"]["node"]
            c.watch_for(w, lambda e: e.get("type") == "delta" and e.get("session") == f"k{i}")
            c.kill_node(victim)
            done = c.watch_for(w, lambda e: e.get("kind") in ("turn_done", "turn_failed") and e.get("session") == f"k{i}",
                               timeout=30)
            self.assertEqual(done["kind"], "turn_done", done)
            self.assertNotEqual(done["payload"]["node"], victim)
            out, err = job.communicate(timeout=30)
            self.assertEqual(job.returncode, 0, err)
            self.assertIn(f"done {i}", out)
            c.start_node(victim, slots=1)
            wait_until(lambda: len(c.nodes()) == 2, 15, f"{victim} back")
        self.assertIsNone(c.broker.poll())


class FullDisk(unittest.TestCase):
    """The broker's state on a small tmpfs that fills up: new work is refused
    with a clear error, what was committed stays, and work resumes once there
    is room again."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a tmpfs")

    def test_full_then_freed(self):
        c = Cluster(nodes=(("n1", 1),))
        self.addCleanup(c.close)
        c.model.script([{"text": "kept answer"}])
        c.cadre("ask", "--session", "before", "remember this", check=True)
        c.stop_broker()
        keep = c.state + ".copy"
        shutil.copytree(c.state, keep)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", c.state], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs: " + r.stderr.strip())
        self.addCleanup(lambda: subprocess.run(["umount", "-l", c.state]))
        for f in os.listdir(keep):
            src = os.path.join(keep, f)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(c.state, f))
        c.start_broker()
        c.wait_nodes(1)
        filler = os.path.join(c.state, "filler")
        with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left over for close() to flush
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        c.model.script([{"text": "y" * 100000}])
        r = c.cadre("ask", "--session", "during", "q" * 100000, timeout=60)
        self.assertNotEqual(r.returncode, 0, "a full disk must refuse new work")
        print(f"\nfull disk: cadre said {r.stderr.strip()!r}", file=sys.stderr)
        self.assertRegex(r.stderr, r"(?i)disk is full|no space|full")
        self.assertIsNone(c.broker.poll(), "the broker died on a full disk")
        h = c.cadre("--json", "history", "before")
        self.assertEqual(h.returncode, 0, h.stderr)
        self.assertIn("kept answer", h.stdout)
        os.unlink(filler)
        c.model.script([{"text": "room again"}])
        r = c.cadre("ask", "--session", "after", "and now?")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("room again", r.stdout)
        c.stop_broker()


if __name__ == "__main__":
    unittest.main()
