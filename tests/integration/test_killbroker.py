"""kill -9 of the broker at random points of 20 workflows, each time restarted
on the same state directory and endpoint: every workflow ends as designed, no
step is lost, no effect lands twice.

Real broker, two agent daemons sharing one workspace, the scripted model server
playing the planner and the sub-agents of agent steps. The workflows are drawn
by a seeded generator (the seed is printed; CADRE_KILL_SEED=N runs one again):
chains and fans, with shell steps that append a line of their own to the
workflow's file (the branches of a fan to the same file), write_file steps and
agent steps; some are meant to fail (a step exits 1: retried, then the
workflow rolls back, while a branch beside the failing one may still run). They run in rounds (a round of workflows meant to
succeed runs at the same time; one meant to fail runs alone, since its rollback
undoes what its shell steps saw change). Each round kills the broker at points
chosen by events: while plans are approved, after step N started, after a
step finished but before the broker recorded it (the broker stopped), after a
step failed and waits for its retry, while the workflow rolls back, or after a
random delay; after some restarts the broker is killed again at once, while it
recovers. Waiting is on events (one `cadre --json watch` that resumes by seq
across restarts), files and `cadre plan`; the random delays only choose where
a kill lands.

Checked for every workflow: its final state (done, or failed at the failing
step and rolled back), each step's state in `cadre plan ID --json` against the
files (every line exactly once, every written file whole, each done shell
step's command run once; after a rollback, nothing left), and its events (one workflow_started, one workflow_finished
with the final state, one step_done per done step, nothing after the end);
and for the whole run: the event log replayed from seq 0 (watch --since 0)
agrees with what the live watch saw across the restarts.
"""
import json
import os
import random
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402
from test_workflow import PASS, plan_text  # noqa: E402

WORKFLOWS = 20
# ASan and UBSan (scripts/test --sanitize) make everything slower.
SLOW = 3 if os.environ.get("ASAN_OPTIONS") else 1
NODES = (("k1", 3), ("k2", 3))


class Flow:
    """One generated workflow: its steps, and what each leaves in the workspace."""

    def __init__(self, rng, n, fail):
        self.n, self.tag, self.pid, self.gate = n, f"W{n:02d}", None, None
        self.fail = None  # the step meant to fail
        self.shape = rng.choice(["chain", "fan"])
        if self.shape == "chain":
            deps = [[]] + [[i] for i in range(1, rng.randint(3, 5))]
        else:
            width = rng.randint(2, 4)
            deps = [[]] + [[1]] * width + [list(range(2, width + 2))]
        self.steps = []
        self.pause = [rng.choice([0, 0.1, 0.3]) for _ in deps]  # how long each shell step takes
        for i, d in enumerate(deps, 1):
            kind = "shell" if i == 1 or (self.shape == "fan" and 1 < i < len(deps) and rng.random() < 0.6) \
                else rng.choice(["shell", "write", "agent"])
            self.steps.append({"n": i, "kind": kind, "deps": d})
        if fail:
            self.fail = rng.randint(2, len(self.steps))
            self.steps[self.fail - 1]["kind"] = "fail"
            # A branch beside it still runs when the workflow starts to roll back.
            slow = [s["n"] for s in self.steps if s["kind"] == "shell" and s["deps"] == self.steps[self.fail - 1]["deps"]
                    and s["n"] != self.fail]
            if slow:
                self.pause[rng.choice(slow) - 1] = 4

    def eff(self):
        return f"eff_{self.tag}.txt"

    def line(self, i):
        return f"{self.tag}S{i}"

    def marker(self, what, i):
        return f".git/{what}_{self.tag}_{i}"

    def plan(self):
        out = []
        for s in self.steps:
            i, kind = s["n"], s["kind"]
            step = {"title": f"{self.tag} step {i} {kind}", "agent": "implementer", "deps": s["deps"]}
            if kind in ("shell", "fail"):
                wait = f"while [ ! -f {self.marker('go', i)} ]; do sleep 0.05; done; " if self.gate == i else ""
                act = "exit 1" if kind == "fail" else f"sleep {self.pause[i - 1]}; echo {self.line(i)} >> {self.eff()}; touch {self.marker('done', i)}"
                step.update(tool="execute_bash", agent="tester",
                            args={"command": f"echo r >> {self.marker('runs', i)}; {wait}{act}"})
            elif kind == "write":
                step.update(tool="write_file_tool", args={"path": f"out_{self.tag}_{i}.txt", "content": self.line(i) + "\n"})
            else:
                step["agent"] = ["researcher", "reviewer", "optimizer"][i % 3]
            out.append(step)
        return plan_text(f"Kill {self.tag}", out)

    def downstream_of_fail(self):
        """The steps that cannot run once the failing step failed (with it; none when none fails)."""
        below = {self.fail} if self.fail else set()
        for s in self.steps:
            if set(s["deps"]) & below:
                below.add(s["n"])
        return below


class Events:
    """Every event of one `cadre --json watch` (it subscribes again, with since, after each restart)."""

    def __init__(self, c):
        self.watch = c.watch()
        self.seen = []
        self.cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while True:
            ev = self.watch.events.get()
            with self.cv:
                if ev is None:
                    self.seen.append(None)
                    self.cv.notify_all()
                    return
                self.seen.append(ev)
                self.cv.notify_all()

    def mark(self):
        with self.cv:
            return len(self.seen)

    def wait(self, pred, start=0, timeout=60, what="an event"):
        """The first event from index start on for which pred(index, event) is true."""
        deadline = time.monotonic() + timeout * SLOW
        with self.cv:
            i = start
            while True:
                while i < len(self.seen):
                    ev = self.seen[i]
                    if ev is None:
                        raise AssertionError(f"cadre watch ended while waiting for {what}")
                    if pred(i, ev):
                        return ev
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self.cv.wait(left)

    def stop(self):
        self.watch.kill()
        self.watch.wait()


def of(ev, pid, *kinds):
    return ev.get("type") == "event" and ev.get("kind") in kinds and (ev.get("payload") or {}).get("id") == pid


class KillBroker(unittest.TestCase):
    def setUp(self):
        seed = os.environ.get("CADRE_KILL_SEED")
        self.seed = int(seed) if seed else random.SystemRandom().randrange(1, 10**6)
        print(f"\n[test_killbroker: seed {self.seed}; CADRE_KILL_SEED={self.seed} runs it again]", file=sys.stderr)
        self.rng = random.Random(self.seed)
        self.c = Cluster(nodes=NODES)
        self.ws = self.c.workspace
        os.makedirs(os.path.join(self.ws, ".git"))
        self.kills = []  # what each kill hit, for the report
        self.ev = Events(self.c)

    def tearDown(self):
        if self.c.broker and self.c.broker.poll() is None:
            self.c.broker.send_signal(signal.SIGCONT)
        self.ev.stop()
        self.c.close()

    def fail_msg(self, what):
        return f"{what} (seed {self.seed}; kills: {self.kills})\n{self.c.logs()}"

    def path(self, name):
        return os.path.join(self.ws, name)

    def read(self, name):
        p = self.path(name)
        if not os.path.exists(p):
            return None
        with open(p) as f:
            return f.read()

    # -- the broker killed and restarted ------------------------------------
    def kill(self, why):
        self.kills.append(why)
        self.c.kill_broker()
        self.c.start_broker()
        while self.rng.random() < 0.35:  # killed again while it recovers
            time.sleep(self.rng.uniform(0, 0.4))
            self.kills.append("recovering")
            self.c.kill_broker()
            self.c.start_broker()
        self.c.wait_nodes(len(NODES), timeout=30 * SLOW)

    def kill_after(self, flow, kinds, start, pred=lambda ev: True, delay=0.3, why=""):
        """Kills the broker soon after the first event of kinds (from index start on) for which pred
        is true; not when the workflow ended first (False)."""
        ev = self.ev.wait(lambda i, e: (i >= start and of(e, flow.pid, *kinds) and pred(e)) or
                          of(e, flow.pid, "workflow_finished"), what=f"{kinds} of {flow.tag}")
        if ev["kind"] == "workflow_finished":
            return False
        time.sleep(self.rng.uniform(0, delay))
        self.kill(why or f"{flow.tag} after {ev['kind']}")
        return True

    def kill_unrecorded(self, flow):
        """The gated step finishes while the broker is stopped: its result is not recorded."""
        i = flow.gate
        wait_until(lambda: os.path.exists(self.path(flow.marker("runs", i))), timeout=60 * SLOW,
                   what=f"{flow.tag} step {i} to start")
        self.c.broker.send_signal(signal.SIGSTOP)
        open(self.path(flow.marker("go", i)), "w").close()
        wait_until(lambda: os.path.exists(self.path(flow.marker("done", i))), timeout=30 * SLOW,
                   what=f"{flow.tag} step {i} to finish")
        time.sleep(self.rng.uniform(0, 0.2))
        self.kill(f"{flow.tag} step {i} finished, not recorded")

    # -- one round ----------------------------------------------------------
    def approve_all(self, flows, kill):
        if not kill:
            for f in flows:
                self.c.cadre("approve", str(f.pid), check=True)
            return
        bg = [self.c.cadre_bg("approve", str(f.pid)) for f in flows]
        time.sleep(self.rng.uniform(0, 0.05))
        self.kill("while approving " + ",".join(f.tag for f in flows))
        for p in bg:  # a request the killed broker never answered
            try:
                p.communicate(timeout=5)
            except Exception:
                p.kill()
                p.communicate()
        for f in flows:  # an approval that did not land is given again
            if self.c.plan(f.pid).get("status") == "pending":
                self.c.cadre("approve", str(f.pid), check=True)

    def run_round(self, flows):
        rng = self.rng
        failing = flows[0].fail is not None
        how = rng.choice(["retry", "rollback", "step"] if failing else ["approve", "step", "unrecorded", "delay"])
        if how == "unrecorded":
            f = rng.choice(flows)
            f.gate = rng.choice([s["n"] for s in f.steps if s["kind"] == "shell"])
        self.propose(flows)
        start = self.ev.mark()
        self.approve_all(flows, how == "approve")
        f = rng.choice(flows)
        if how == "unrecorded":
            self.kill_unrecorded(next(x for x in flows if x.gate))
        elif how == "step":
            n = rng.choice([s["n"] for s in f.steps if s["n"] == f.fail or s["n"] not in f.downstream_of_fail()])
            self.kill_after(f, ("step_started",), start, lambda e: e["payload"].get("step") == n,
                            why=f"{f.tag} after step {n} started")
        elif how == "retry":
            self.kill_after(f, ("step_failed",), start, lambda e: e["payload"].get("will_retry"))
        elif how == "rollback":
            self.kill_after(f, ("workflow_rolling_back",), start, delay=0.05)
        else:
            time.sleep(rng.uniform(0, 1.0))
            self.kill("after a random delay")
        if rng.random() < 0.5:  # and once more, after some step started
            f = rng.choice(flows)
            self.kill_after(f, ("step_started", "step_done"), self.ev.mark() if rng.random() < 0.5 else start,
                            why=f"{f.tag} again")
        for f in flows:
            self.wait_end(f)

    def propose(self, flows):
        self.c.model.script([{"match": f"Make plan <{f.tag}>", "chunks": [f.plan()]} for f in flows],  # (chunks: not cut at max_tokens)
                            default={"chunks": ["thinking "] * 4 + [PASS], "delay_ms": 30})
        for f in flows:
            self.c.cadre("ask", "--session", f"s{f.tag}", f"Make plan <{f.tag}>", check=True)
        plans = self.c.cadre_json("plans")[1][0]
        for f in flows:
            f.pid = next(p["id"] for p in plans if p.get("session") == f"s{f.tag}")
            p = self.c.plan(f.pid)
            self.assertEqual(p["status"], "pending", f"{p.get('errors')}\n{f.plan()}")

    def wait_end(self, f):
        return wait_until(lambda: self.c.plan(f.pid).get("status") in ("done", "failed", "cancelled"),
                          timeout=120 * SLOW, what=f"{f.tag} (plan {f.pid}) to end")

    # -- the checks -----------------------------------------------------------
    def check_flow(self, f, events):
        p = self.c.plan(f.pid)
        steps = {s["number"]: s for s in p["steps"]}
        where = f"{f.tag} (plan {f.pid}, {f.shape}, fail at {f.fail})"
        mine = [e for e in events if (e.get("payload") or {}).get("id") == f.pid]
        kinds = [e["kind"] for e in mine]
        self.assertEqual(kinds.count("workflow_started"), 1, self.fail_msg(f"{where}: workflow_started {kinds}"))
        self.assertEqual(kinds.count("workflow_finished"), 1, self.fail_msg(f"{where}: workflow_finished {kinds}"))
        self.assertEqual(kinds[-1], "workflow_finished", self.fail_msg(f"{where}: events after the end {kinds}"))
        self.assertEqual(mine[-1]["payload"]["status"], p["status"], self.fail_msg(f"{where}: the end event"))
        done_events = [e["payload"]["step"] for e in mine if e["kind"] == "step_done"]
        ran = [s["n"] for s in f.steps if s["kind"] == "shell" and steps[s["n"]]["status"] == "done"]
        self.shell_runs += sum(len((self.read(f.marker("runs", i)) or "").splitlines()) for i in ran)
        self.shell_steps += len(ran)
        for i in ran:  # a broker restart never makes a step's command run again (its node kept it)
            self.assertEqual(len(self.read(f.marker("runs", i)).splitlines()), 1,
                             self.fail_msg(f"{where}: step {i}'s command ran more than once"))
        if f.fail is None:
            self.assertEqual(p["status"], "done", self.fail_msg(f"{where}: {json.dumps(p)[:3000]}"))
            want = sorted(f.line(s["n"]) for s in f.steps if s["kind"] == "shell")
            got = sorted((self.read(f.eff()) or "").splitlines())
            self.assertEqual(got, want, self.fail_msg(f"{where}: every line exactly once"))
            for s in f.steps:
                i = s["n"]
                self.assertEqual(steps[i]["status"], "done", self.fail_msg(f"{where}: step {i}"))
                self.assertEqual(done_events.count(i), 1, self.fail_msg(f"{where}: step_done of step {i} {kinds}"))
                if s["kind"] == "write":
                    self.assertEqual(self.read(f"out_{f.tag}_{i}.txt"), f.line(i) + "\n", self.fail_msg(where))
                if s["kind"] == "agent":
                    self.assertIn("PASS", steps[i].get("result") or "", self.fail_msg(f"{where}: step {i}"))
            return
        self.assertEqual(p["status"], "failed", self.fail_msg(f"{where}: {json.dumps(p)[:3000]}"))
        self.assertEqual(steps[f.fail]["status"], "failed", self.fail_msg(f"{where}: the failing step"))
        self.assertEqual(steps[f.fail]["attempts"], 3, self.fail_msg(f"{where}: attempts"))
        for i in f.downstream_of_fail() - {f.fail}:
            self.assertEqual(steps[i]["status"], "pending", self.fail_msg(f"{where}: step {i} after the failure"))
        rb = p["report"]["rollback"]
        self.assertEqual(rb["mismatches"], [], self.fail_msg(f"{where}: {rb}"))
        # (counted, not failed: parallel branches of one workflow appending to one file can be reported as
        # conflicts, one branch's end state being gone under the other's; the file still ends as it was)
        self.conflicts += len(rb.get("conflicts") or [])
        self.assertIsNone(self.read(f.eff()), self.fail_msg(f"{where}: the appends are rolled back"))
        for s in f.steps:
            self.assertIsNone(self.read(f"out_{f.tag}_{s['n']}.txt"), self.fail_msg(f"{where}: the write is undone"))
        for i in done_events:
            self.assertNotEqual(i, f.fail, self.fail_msg(f"{where}: step_done of the failing step"))

    def replay(self, upto):
        """watch --since 0: the event log as the broker kept it, up to seq upto."""
        w = self.c.cadre_bg("--json", "watch", "--since", "0")
        out = []
        try:
            for line in w.stdout:
                ev = json.loads(line)
                if ev.get("type") == "event" and "seq" in ev:
                    out.append(ev)
                    if ev["seq"] >= upto:
                        break
        finally:
            w.kill()
            w.communicate()
        return out

    def check_events(self):
        live = [e for e in self.ev.seen if e and e.get("type") == "event" and "seq" in e]
        gaps = [e for e in self.ev.seen if e and e.get("kind") == "gap" and e["payload"].get("count")]
        self.assertEqual(gaps, [], self.fail_msg("events lost across restarts"))
        seqs = [e["seq"] for e in live]
        self.assertEqual(seqs, sorted(set(seqs)), self.fail_msg("live seqs go up, each once"))
        log = self.replay(seqs[-1])
        by_seq = {e["seq"]: e for e in log}
        for e in live:
            self.assertEqual(by_seq.get(e["seq"]), e, self.fail_msg(f"seq {e['seq']}: live and replayed differ"))
        missed = sorted(s for s in set(by_seq) - set(seqs) if s > seqs[0])  # (the watch began at seqs[0])
        self.assertEqual(missed, [], self.fail_msg(f"events in the log the live watch never got: "
                                                   f"{[(by_seq[s]['kind'], by_seq[s]['payload'].get('id')) for s in missed]}; "
                                                   f"the watch saw {[e.get('seq', e.get('type')) for e in self.ev.seen if e]}"))
        return log

    def test_twenty_workflows_survive_kills(self):
        t0 = time.monotonic()
        fails = set(self.rng.sample(range(WORKFLOWS), 4))
        flows = [Flow(self.rng, n, n in fails) for n in range(WORKFLOWS)]
        rounds, group = [], []
        for f in flows:
            if f.fail is not None:
                rounds.append([f])
                continue
            group.append(f)
            if len(group) == 3:
                rounds.append(group)
                group = []
        if group:
            rounds.append(group)
        for r in rounds:
            self.run_round(r)
        self.assertIsNone(self.c.broker.poll())
        # The live watch may have been dropped (a slow client, under ASan) and be resuming: every
        # workflow's end must reach it before the live events are compared with the log.
        for f in flows:
            self.ev.wait(lambda i, e: e.get("kind") == "workflow_finished" and
                         (e.get("payload") or {}).get("id") == f.pid, what=f"{f.tag}'s workflow_finished (live watch)")
        log = self.check_events()
        self.shell_runs = self.shell_steps = self.conflicts = 0
        for f in flows:
            self.check_flow(f, log)
        print(f"[test_killbroker: {WORKFLOWS} workflows, {len(self.kills)} kills, {self.shell_steps} shell steps done, "
              f"their commands ran {self.shell_runs} times, {self.conflicts} conflicts, {time.monotonic() - t0:.0f} s; kills: {self.kills}]", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
