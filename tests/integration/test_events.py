"""No event lost (issue 11, point 5).

A watcher that stops reading while long streams run (SIGSTOP of a real
`cadre --json watch`), then reads again: it ends with every turn's turn_done,
and for each turn either the text deltas it got add up to the model's whole
answer, or it was told of a gap for that turn. A broker restart in the middle:
events keep their seqs across it, a running watcher resumes by itself, and
`cadre watch --since SEQ` replays exactly what came after SEQ.

Real broker, daemon, the real cadre command and the scripted model server.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CTL, Cluster, wait_until  # noqa: E402


class JsonWatch:
    """`cadre --json watch [args]` in the background; its lines parsed as they come."""

    def __init__(self, cluster, *args):
        self.proc = subprocess.Popen([CTL(), "--json", "watch", *args], env=cluster.env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines, self.err = [], []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines, True), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True)]
        for t in self.threads:
            t.start()
        wait_until(lambda: self.snapshot() and self.snapshot()[0].get("type") == "watching", 15,
                   "the watcher to subscribe")

    def _read(self, stream, into, parse):
        for line in stream:
            with self.lock:
                into.append(json.loads(line) if parse else line)

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def events(self, kind=None):
        return [m for m in self.snapshot() if m.get("type") == "event" and (kind is None or m["kind"] == kind)]

    def done_turns(self):
        return {m["turn"] for m in self.events("turn_done")}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self.threads:
            t.join(timeout=10)
        err = "".join(self.err)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in err, err
        self.proc.stdout.close()
        self.proc.stderr.close()


def check_complete(test, watch, answers):
    """Every turn in answers ({turn: text}) ended with turn_done, and its text
    deltas add up to the answer, or a gap event named the turn."""
    msgs = watch.snapshot()
    gapped = set()
    for m in msgs:
        if m.get("type") == "event" and m["kind"] == "gap":
            gapped.update(m["payload"].get("turns", []))
    seqs = [m["seq"] for m in msgs if m.get("type") == "event" and "seq" in m]
    test.assertEqual(seqs, sorted(set(seqs)), "events in order, none twice")
    for turn, text in answers.items():
        done = [m for m in msgs if m.get("type") == "event" and m["kind"] == "turn_done" and m["turn"] == turn]
        test.assertEqual(len(done), 1, f"turn {turn}: one turn_done")
        test.assertEqual(done[0]["payload"]["message"]["content"], text)
        got = "".join(m["text"] for m in msgs if m.get("type") == "delta" and m["turn"] == turn
                      and m["kind"] == "text")
        if got != text:
            test.assertIn(turn, gapped, f"turn {turn}: {len(got)} of {len(text)} bytes streamed, and no gap said so")
    return gapped


class Events(unittest.TestCase):
    def tearDown(self):
        self.c.close()

    def broker_log(self):
        with open(os.path.join(self.c.tmp, "broker.log")) as f:
            return f.read()

    def ask_bg(self, session, text):
        return self.c.cadre_bg("--json", "ask", "--session", session, text)

    def test_stopped_watcher_gets_every_turn_done(self):
        # Long heartbeats: the stopped watcher stays registered (it is dropped only
        # after 3.5 of them, 105 s, longer than the streams take even under ASan on
        # a loaded machine), so its queue fills past the high-water mark (not a
        # reconnect: that is the test below).
        self.c = Cluster(nodes=(("n1", 3),), heartbeat_ms=30000)
        pieces = 60000
        answers = {}
        script = []
        for k in range(3):
            chunks = [f"{k}:{i} " for i in range(pieces)]
            answers[k] = "".join(chunks)
            script.append({"match": f"long answer {k}", "chunks": chunks})
        self.c.model.script(script)
        w = JsonWatch(self.c)
        try:
            os.kill(w.proc.pid, signal.SIGSTOP)
            procs = [self.ask_bg(f"s{k}", f"long answer {k}") for k in range(3)]
            ids = {}
            for k, p in enumerate(procs):
                out, err = p.communicate(timeout=240)
                self.assertEqual(p.returncode, 0, err + self.c.logs())
                lines = [json.loads(l) for l in out.splitlines() if l.strip()]
                ids[[o for o in lines if o.get("event") == "accepted"][0]["turn"]] = answers[k]
            os.kill(w.proc.pid, signal.SIGCONT)
            wait_until(lambda: set(ids) <= w.done_turns(), 120, "every turn_done at the watcher", interval=0.2)
            gapped = check_complete(self, w, ids)
            # Its queue filled up: the broker said so, and it caught up from the log.
            broker_log = self.broker_log()
            self.assertIn("cannot keep up", broker_log)
            self.assertIn("caught up", broker_log)
            self.assertTrue(gapped, "deltas were not sent while it was behind: a gap says so")
        finally:
            w.stop()

    def test_watcher_expired_while_stopped_resumes(self):
        # Short heartbeats: the stopped watcher is dropped by the broker, and
        # resumes by seq when it reads again (a reconnect).
        self.c = Cluster(nodes=(("n1", 2),), heartbeat_ms=200)
        chunks = [f"w{i} " for i in range(300)]
        self.c.model.script([{"match": "slow one", "chunks": chunks, "delay_ms": 5},
                             {"match": "next one", "text": "short answer"}])
        w = JsonWatch(self.c)
        try:
            os.kill(w.proc.pid, signal.SIGSTOP)
            ids = {}
            for q, text in (("slow one", "".join(chunks)), ("next one", "short answer")):
                r, out = self.c.cadre_json("ask", "--session", "x", q, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr)
                ids[[o for o in out if o.get("event") == "accepted"][0]["turn"]] = text
            wait_until(lambda: "missed heartbeats" in self.broker_log(), 15, "the broker to drop the stopped watcher")
            os.kill(w.proc.pid, signal.SIGCONT)
            wait_until(lambda: set(ids) <= w.done_turns(), 60, "every turn_done after the reconnect", interval=0.1)
            check_complete(self, w, ids)
        finally:
            w.stop()

    def test_broker_restart_and_watch_since(self):
        self.c = Cluster(nodes=(("n1", 2),), heartbeat_ms=200)
        self.c.model.script([], default={"text": "answer text"})
        w = JsonWatch(self.c)
        try:
            r = self.c.cadre("ask", "first question", check=True)
            wait_until(lambda: w.events("turn_done"), 20, "the first turn_done")
            since = max(m["seq"] for m in w.events())
            r = self.c.cadre("ask", "second question", check=True)
            self.c.stop_broker()
            self.c.start_broker()
            self.c.wait_nodes(1, timeout=30)
            r = self.c.cadre("--json", "ask", "third question", check=True)
            third = [json.loads(l) for l in r.stdout.splitlines() if '"accepted"' in l][0]["turn"]
            # The running watcher resumed by itself: it has the turn after the restart.
            wait_until(lambda: third in w.done_turns(), 30, "the running watcher to see the third turn")
            seqs = [m["seq"] for m in w.events() if "seq" in m]
            self.assertEqual(seqs, sorted(set(seqs)), "seqs go on across the restart, none twice")
        finally:
            w.stop()
        # A new watcher from the seq after the first turn: the second and the third
        # turns' events, the ones from before the restart replayed from the log.
        w2 = JsonWatch(self.c, "--since", str(since))
        try:
            wait_until(lambda: len(w2.done_turns()) >= 2, 20, "the replayed turn_done events")
            evs = w2.events()
            self.assertTrue(all(m["seq"] > since for m in evs if "seq" in m), evs)
            self.assertEqual(len(w2.done_turns()), 2, evs)
            self.assertIn(third, w2.done_turns())
            self.assertEqual([m["seq"] for m in evs if "seq" in m], sorted({m["seq"] for m in evs if "seq" in m}))
            # And the live ones after the replay.
            self.c.cadre("ask", "fourth question", check=True)
            wait_until(lambda: len(w2.done_turns()) >= 3, 20, "a live turn_done after the replay")
        finally:
            w2.stop()
        # From the start: every turn, all from the log.
        w3 = JsonWatch(self.c, "--since", "0")
        try:
            wait_until(lambda: len(w3.done_turns()) >= 4, 20, "every turn from the start")
        finally:
            w3.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
