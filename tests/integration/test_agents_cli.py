"""The one-shot agent commands as scripts use them: spawn, send, agents, stop,
stop-all, stats, config, reset and watch, each with --json (the field names are
a contract), and their plain output for people.

Real broker, real daemons, the real cadre command, a scripted model server;
responses are routed to the right agent with "match".
"""
import json
import os
import signal
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CTL, Cluster, wait_until  # noqa: E402


def summary_text(status, points, rec, before="Work done."):
    bullets = "\n".join(f"- {p}" for p in points)
    return f"{before}\n[SUMMARY]\nStatus: {status}\nKey Points:\n{bullets}\nRecommendation: {rec}\n[/SUMMARY]"


class Watcher:
    """`cadre watch` in the background, its lines collected as they come.

    It says when it is subscribed: a first JSON line {"type": "watching"} with
    --json, a line on stderr without; ready() waits for that."""

    def __init__(self, cluster, *args):
        self.proc = subprocess.Popen([CTL(), *args, "watch"], env=cluster.env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines, self.errors = [], []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, stream, into):
        for line in stream:
            with self.lock:
                into.append(line.rstrip("\n"))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def ready(self, timeout=10):
        def subscribed():
            with self.lock:
                return '{"type":"watching"}' in self.lines or any("watching" in l for l in self.errors)
        wait_until(subscribed, timeout, "the watcher to subscribe")

    def events(self):
        """The watched messages (after the first line)."""
        return [json.loads(l) for l in self.snapshot()[1:] if l.strip()]

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=10)
        for t in self.threads:
            t.join(timeout=5)
        err = "\n".join(self.errors)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in err, err
        self.proc.stderr.close()
        self.proc.stdout.close()
        return rc


class AgentCommands(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("c1", 4), ("c2", 4)))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def tearDown(self):
        self.c.model.script([])  # hanging defaults end with the agents stopped below
        self.c.cadre("stop-all")

    def json1(self, *args, rc=0, timeout=60):
        r, out = self.c.cadre_json(*args, timeout=timeout)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            self.assertNotIn(marker, r.stderr, r.stderr)
        self.assertEqual(r.returncode, rc, f"cadre {' '.join(args)}: {r.stderr}\n{self.c.logs()}")
        self.assertEqual(len(out), 1, f"one JSON value expected: {r.stdout!r}")
        return out[0]

    def agents(self):
        return {a["id"]: a for a in self.json1("agents")}

    def test_spawn_wait_returns_the_parsed_summary(self):
        self.c.model.script([{"match": "Review the cache",
                              "text": summary_text("PASS", ["eviction is LRU", "no races found"], "merge it"),
                              "usage": {"prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340}}])
        res = self.json1("spawn", "reviewer", "Review the cache layer", "--wait")
        self.assertEqual(set(res), {"id", "role", "status", "summary", "usage"})
        self.assertRegex(res["id"], r"^reviewer-\d+$")
        self.assertEqual(res["role"], "reviewer")
        self.assertEqual(res["status"], "done")
        self.assertEqual(res["summary"]["status"], "PASS")
        self.assertEqual(res["summary"]["key_points"], ["eviction is LRU", "no races found"])
        self.assertEqual(res["summary"]["recommendation"], "merge it")
        self.assertEqual(res["usage"]["prompt_tokens"], 300)
        self.assertEqual(res["usage"]["completion_tokens"], 40)
        self.assertAlmostEqual(res["usage"]["cost"], (300 * 1 + 40 * 2) / 1e6)
        # agents lists it, with the same summary.
        a = self.agents()[res["id"]]
        for key in ("id", "role", "model", "status", "messages", "usage", "summary", "task", "parent"):
            self.assertIn(key, a)
        self.assertEqual(a["model"], "small-model")
        self.assertEqual(a["status"], "done")
        self.assertEqual(a["parent"], "main")
        self.assertEqual(a["task"], "Review the cache layer")
        self.assertEqual(a["summary"]["key_points"], ["eviction is LRU", "no races found"])

    def test_spawn_without_wait_and_plain_output(self):
        self.c.model.script([{"match": "Find docs", "text": summary_text("PASS", ["found them"], "read them")},
                             {"match": "Plain spawn", "text": summary_text("FAIL", ["broken build"], "fix it")}])
        res = self.json1("spawn", "researcher", "Find docs on epoll")
        self.assertEqual(res["role"], "researcher")
        self.assertEqual(res["model"], "small-model")
        self.assertIn(res["status"], ("queued", "running"))
        wait_until(lambda: self.agents()[res["id"]]["status"] == "done", 20, "the researcher to finish")
        # Plain: the id, then the summary as a person reads it.
        r = self.c.cadre("spawn", "tester", "Plain spawn", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)  # the agent did its work; what it found is another matter
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^tester-\d+$")
        self.assertIn("── summary: ✗ FAIL ──", r.stdout)
        self.assertIn("• broken build", r.stdout)
        self.assertIn("→ Recommendation: fix it", r.stdout)
        self.assertTrue(all(l.startswith("🧪 " + lines[0]) for l in lines[1:]), r.stdout)
        plain = self.c.cadre("agents", check=True).stdout
        self.assertIn("AGENT", plain)
        self.assertIn("TOKENS IN", plain)
        self.assertIn(lines[0], plain)

    def test_spawn_errors(self):
        r, out = self.c.cadre_json("spawn", "juggler", "Juggle")
        self.assertEqual(r.returncode, 1)
        self.assertIn("juggler", out[-1]["error"])
        self.assertTrue(out[-1]["error"].startswith("spawn_failed: "), out)  # --json keeps the code
        roles = "the roles are: reviewer, researcher, implementer, tester, optimizer"
        self.assertIn(roles, out[-1]["error"])
        r = self.c.cadre("spawn", "juggler", "Juggle")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f'no sub-agent role "juggler" in the config; {roles}', r.stderr)
        self.assertNotIn("spawn_failed", r.stderr)
        r = self.c.cadre("spawn", "reviewer")
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage", r.stderr)

    def test_stats_sum_usage_and_costs(self):
        self.c.model.script([
            {"match": "Count tokens", "text": "Counted.",
             "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}},
            {"match": "Check the numbers", "text": summary_text("PASS", ["ok"], "none"),
             "usage": {"prompt_tokens": 2000, "completion_tokens": 200, "total_tokens": 2200}}])
        before = self.json1("stats")
        self.c.cadre("ask", "Count tokens", check=True)
        self.json1("spawn", "optimizer", "Check the numbers", "--wait")
        st = self.json1("stats")
        self.assertEqual(set(st) >= {"agents", "total", "main_equivalent_cost", "savings"}, True, st)
        for a in st["agents"]:
            for key in ("id", "role", "model", "messages", "prompt_tokens", "completion_tokens", "cost"):
                self.assertIn(key, a)
        self.assertEqual(st["total"]["prompt_tokens"], sum(a["prompt_tokens"] for a in st["agents"]))
        self.assertEqual(st["total"]["completion_tokens"], sum(a["completion_tokens"] for a in st["agents"]))
        self.assertAlmostEqual(st["total"]["cost"], sum(a["cost"] for a in st["agents"]))
        self.assertEqual(st["total"]["prompt_tokens"] - before["total"]["prompt_tokens"], 3000)
        added = st["total"]["cost"] - before["total"]["cost"]
        self.assertAlmostEqual(added, (1000 * 6 + 100 * 12 + 2000 * 1 + 200 * 2) / 1e6)
        equiv = st["main_equivalent_cost"] - before["main_equivalent_cost"]
        self.assertAlmostEqual(equiv, (3000 * 6 + 300 * 12) / 1e6)
        self.assertAlmostEqual(st["savings"], 1 - st["total"]["cost"] / st["main_equivalent_cost"])
        plain = self.c.cadre("stats", check=True).stdout
        self.assertIn("TEAM", plain)
        self.assertRegex(plain, r"savings \d+\.\d%")

    def test_stop_a_hanging_agent(self):
        self.c.model.script([{"match": "Hang here", "hang": True}])
        aid = self.json1("spawn", "tester", "Hang here please")["id"]
        wait_until(lambda: self.agents()[aid]["status"] == "running", 10, "the agent to run")
        res = self.json1("stop", aid)
        self.assertEqual(res, {"id": aid, "status": "stopped"})
        self.assertEqual(self.agents()[aid]["status"], "stopped")
        r, out = self.c.cadre_json("stop", "nobody-9")
        self.assertEqual(r.returncode, 1)
        self.assertIn("nobody-9", out[-1]["error"])

    def test_stop_all(self):
        self.c.model.script([], default={"hang": True})
        ids = [self.json1("spawn", role, f"Hang {role}")["id"] for role in ("reviewer", "researcher")]
        wait_until(lambda: all(self.agents()[i]["status"] == "running" for i in ids), 10, "both running")
        res = self.json1("stop-all")
        self.assertEqual(sorted(res["stopped"]), sorted(ids))
        agents = self.agents()
        self.assertEqual({agents[i]["status"] for i in ids}, {"stopped"})
        self.assertEqual(self.json1("stop-all"), {"stopped": []})
        self.assertIn("no sub-agent was running", self.c.cadre("stop-all", check=True).stdout)

    def test_reset_clears_main_history(self):
        self.c.model.script([{"match": "Remember", "text": "Noted."}])
        self.c.cadre("ask", "Remember the number 7", check=True)
        self.assertGreater(len(self.json1("history")["messages"]), 0)
        res = self.json1("reset")
        self.assertEqual(res["session"], "main")
        self.assertGreater(res["cleared"], 0)
        self.assertEqual(self.json1("history")["messages"], [])
        self.assertIn("conversation cleared", self.c.cadre("reset", check=True).stdout)

    def test_send_wait_answers(self):
        self.c.model.script([{"match": "Draft", "text": summary_text("PASS", ["drafted"], "review")},
                             {"match": "One more thing", "text": summary_text("PASS", ["added it"], "ship")}])
        aid = self.json1("spawn", "implementer", "Draft the module", "--wait")["id"]
        res = self.json1("send", aid, "One more thing: logging", "--wait")
        self.assertEqual(res["session"], aid)
        self.assertEqual(res["status"], "done")
        self.assertIn("added it", res["text"])
        self.assertIn("usage", res)
        # The message went into that agent's own conversation.
        msgs = self.c.model.requests()[-1]["body"]["messages"]
        self.assertIn("Draft the module", json.dumps(msgs))
        self.assertEqual(msgs[-1]["content"], "One more thing: logging")
        r, out = self.c.cadre_json("send", "ghost-1", "hello")
        self.assertEqual(r.returncode, 1)
        self.assertIn("ghost-1", out[-1]["error"])

    def test_config_masks_keys_and_prints_reals(self):
        cfg = self.json1("config")
        self.assertIn("agents", cfg)
        self.assertEqual(cfg["agents"]["reviewer_agent"]["temperature"], 0.3)
        plain = self.c.cadre("config", check=True).stdout
        self.assertIn('"temperature": 0.3,', plain)  # 6 significant digits, not 0.29999999999999999
        self.assertIn("\n  ", plain)  # indented for people

    def test_watch_json_prints_deltas_and_events(self):
        self.c.model.script([{"match": "Watch me", "chunks": ["Watched ", "answer."]},
                             {"match": "Watched task", "text": summary_text("PASS", ["seen"], "none")}])
        w = Watcher(self.c, "--json")
        try:
            w.ready()
            self.c.cadre("ask", "Watch me", check=True)
            aid = self.json1("spawn", "reviewer", "Watched task", "--wait")["id"]
            wait_until(lambda: any(e["type"] == "event" and e["kind"] == "summary" and e["payload"]["id"] == aid
                                   for e in w.events()), 10, "the summary event")
        finally:
            rc = w.stop()
        self.assertEqual(rc, 0)
        ev = w.events()
        deltas = [e for e in ev if e["type"] == "delta" and e["session"] == "main"]
        self.assertEqual("".join(d["text"] for d in deltas if d["kind"] == "text"), "Watched answer.")
        for d in deltas:
            self.assertEqual(set(d), {"type", "session", "turn", "attempt", "seq", "kind", "text"})
        events = [e for e in ev if e["type"] == "event"]
        self.assertEqual({e["type"] for e in ev}, {"delta", "event"})
        kinds = [e["kind"] for e in events]
        for k in ("turn_started", "turn_done", "agent_spawned", "agent_status", "summary"):
            self.assertIn(k, kinds)
        done = [e for e in events if e["kind"] == "turn_done" and e["session"] == "main"][-1]
        self.assertEqual(done["payload"]["message"]["content"], "Watched answer.")
        self.assertIsInstance(done["turn"], int)
        self.assertIsInstance(done["seq"], int)
        summary = [e for e in events if e["kind"] == "summary"][-1]
        self.assertEqual(summary["payload"]["summary"]["key_points"], ["seen"])

    def test_watch_plain_prefixes_lines(self):
        self.c.model.script([{"match": "Two lines", "chunks": ["first line\nsec", "ond line\n"]}])
        w = Watcher(self.c)
        try:
            w.ready()
            self.c.cadre("ask", "Two lines please", check=True)
            wait_until(lambda: any("tokens in" in l for l in w.snapshot()), 10, "the end of the turn")
        finally:
            self.assertEqual(w.stop(), 0)
        lines = w.snapshot()
        self.assertIn("🧠 main │ first line", lines)
        self.assertIn("🧠 main │ second line", lines)


if __name__ == "__main__":
    unittest.main(verbosity=2)
