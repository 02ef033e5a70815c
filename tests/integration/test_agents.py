"""Sub-agents: spawning, isolated contexts, summaries back to the main agent,
concurrency, queueing, stop, keyword rules, delegation by the main agent.

Real broker, real daemons, the real cadre command, a scripted model server.
Responses are routed with "match" (a substring of the request's last user message).
"""
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402


def summary_text(status, points, rec, before="Work done."):
    bullets = "\n".join(f"- {p}" for p in points)
    return f"{before}\n[SUMMARY]\nStatus: {status}\nKey Points:\n{bullets}\nRecommendation: {rec}\n[/SUMMARY]"


def last_user(req):
    msgs = [m for m in req["body"]["messages"] if m["role"] == "user"]
    return msgs[-1]["content"] if msgs else ""


class Agents(unittest.TestCase):
    def setUp(self):
        self.c = Cluster(nodes=(("a1", 4), ("a2", 4)), config_extra=self.config_extra())

    def tearDown(self):
        self.c.close()

    def config_extra(self):
        return None

    def agents(self):
        r, out = self.c.cadre_json("agents")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {a["id"]: a for a in out[0]}

    def wait_status(self, agent_id, statuses, timeout=20):
        return wait_until(lambda: self.agents().get(agent_id, {}).get("status") in statuses and self.agents()[agent_id],
                          timeout, f"{agent_id} to be {statuses}")

    def spawn(self, role, task, *extra):
        r, out = self.c.cadre_json("spawn", role, task, *extra)
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        return out[-1]

    def requests_for(self, needle):
        return [q for q in self.c.model.requests() if any(needle in (m.get("content") or "")
                                                          for m in q["body"]["messages"])]

    def test_spawn_context_profile_and_summary_isolation(self):
        self.c.model.script([
            {"match": "We build a parser", "text": "Then we start with the tokenizer."},
            {"match": "Review the parser API",
             "text": summary_text("PASS", ["API is consistent", "errors are typed"], "ship it",
                                  before="SECRET-TRANSCRIPT-DETAIL: I read every file.")},
            {"match": "What next", "text": "Next, the grammar."},
        ])
        self.c.cadre("ask", "We build a parser", check=True)
        res = self.spawn("reviewer", "Review the parser API", "--wait")
        self.assertEqual(res["id"], "reviewer-1")
        self.assertEqual(res["role"], "reviewer")
        self.assertEqual(res["status"], "done")
        self.assertEqual(res["summary"]["status"], "PASS")
        self.assertEqual(res["summary"]["key_points"], ["API is consistent", "errors are typed"])
        self.assertEqual(res["summary"]["recommendation"], "ship it")
        # The sub-agent's request: its own profile, the main conversation, then the task.
        sub = self.requests_for("Review the parser API")[0]["body"]
        self.assertEqual(sub["model"], "small-model")
        self.assertEqual(sub["temperature"], 0.3)
        self.assertEqual(sub["messages"][0]["role"], "system")
        self.assertIn("[SUMMARY]", sub["messages"][0]["content"])
        contents = [m["content"] for m in sub["messages"][1:]]
        self.assertEqual(contents[:2], ["We build a parser", "Then we start with the tokenizer."])
        self.assertIn("Review the parser API", contents[-1])
        # The main agent's next request has the summary and not the transcript.
        self.c.cadre("ask", "What next?", check=True)
        main_req = self.c.model.requests()[-1]["body"]
        self.assertEqual(main_req["model"], "big-model")
        text = json.dumps(main_req["messages"])
        self.assertIn("reviewer-1", text)
        self.assertIn("API is consistent", text)
        self.assertNotIn("SECRET-TRANSCRIPT-DETAIL", text)
        self.assertNotIn("I read every file", text)

    def test_no_summary_is_asked_for_once_then_fails(self):
        self.c.model.script([], default={"text": "I did things but wrote no summary."})
        res = self.spawn("tester", "Test the lexer", "--wait")
        self.assertEqual(res["status"], "failed")
        self.assertEqual(res["summary"]["status"], "FAIL")
        reqs = self.requests_for("Test the lexer")
        self.assertEqual(len(reqs), 2, "asked exactly once more for the summary")
        self.assertIn("[SUMMARY]", last_user(reqs[1]))

    def test_direct_message_without_new_summary_keeps_the_old_one(self):
        self.c.model.script([{"match": "Check it", "text": summary_text("PASS", ["fine"], "ship")}],
                            default={"text": "Nothing more to add."})
        self.spawn("reviewer", "Check it", "--wait")
        r, out = self.c.cadre_json("send", "reviewer-1", "anything else?", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        a = self.wait_status("reviewer-1", ("done",))
        self.assertEqual(a["summary"]["key_points"], ["fine"])

    def test_failed_turn_gives_fail_summary(self):
        boom = {"status": 500, "error_body": {"error": {"message": "model crashed"}}}
        self.c.model.script([boom, boom, boom])
        res = self.spawn("optimizer", "Speed up the loop", "--wait")
        self.assertEqual(res["status"], "failed")
        self.assertEqual(res["summary"]["status"], "FAIL")
        self.assertIn("model crashed", json.dumps(res["summary"]))

    def test_three_sub_agents_run_concurrently(self):
        slow = {"chunks": ["working "] * 5 + [summary_text("PASS", ["ok"], "none", before="")],
                "delay_ms": 200}
        self.c.model.script([], default=slow)
        t0 = time.monotonic()
        ids = [self.spawn(role, f"Task for {role}")["id"] for role in ("reviewer", "tester", "researcher")]
        for i in ids:
            self.wait_status(i, ("done",))
        wall = time.monotonic() - t0
        reqs = self.c.model.requests()
        self.assertEqual(len(reqs), 3)
        durations = sum(q["t_end"] - q["t_start"] for q in reqs)
        self.assertLess(max(q["t_start"] for q in reqs), min(q["t_end"] for q in reqs), "all three overlapped")
        self.assertLess(wall, durations * 0.8, f"wall {wall:.2f}s vs sum {durations:.2f}s")

    def test_stop_cancels_promptly(self):
        self.c.model.script([{"match": "Hang", "hang": True}])
        aid = self.spawn("tester", "Hang forever")["id"]
        wait_until(lambda: self.requests_for("Hang forever"), what="the sub-agent's request")
        t0 = time.monotonic()
        r, out = self.c.cadre_json("stop", aid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(out[-1]["status"], "stopped")
        wait_until(lambda: self.requests_for("Hang forever")[0]["t_end"] is not None, timeout=5,
                   what="the node to drop the HTTP request")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(self.agents()[aid]["status"], "stopped")

    def test_stop_all(self):
        self.c.model.script([], default={"hang": True})
        ids = [self.spawn(r, f"Hang {r}")["id"] for r in ("reviewer", "tester")]
        wait_until(lambda: len(self.c.model.requests()) == 2, what="two requests")
        r, out = self.c.cadre_json("stop-all")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(out[-1]["stopped"]), sorted(ids))
        for i in ids:
            self.assertEqual(self.agents()[i]["status"], "stopped")

    def test_reset_clears_main_only(self):
        self.c.model.script([{"match": "remember", "text": "noted"},
                             {"match": "Sub task", "text": summary_text("PASS", ["x"], "y")}])
        self.c.cadre("ask", "remember this", check=True)
        self.spawn("reviewer", "Sub task", "--wait")
        r, out = self.c.cadre_json("reset")
        self.assertEqual(r.returncode, 0, r.stderr)
        r, h = self.c.cadre_json("history")
        self.assertEqual(h[0]["messages"], [])
        r, h = self.c.cadre_json("history", "reviewer-1")
        self.assertGreater(len(h[0]["messages"]), 1)

    def test_stats_prices_real_usage(self):
        self.c.model.script([
            {"match": "hello", "text": "hi", "usage": {"prompt_tokens": 1000, "completion_tokens": 100,
                                                        "total_tokens": 1100}},
            {"match": "Check", "text": summary_text("PASS", ["fine"], "none"),
             "usage": {"prompt_tokens": 2000, "completion_tokens": 200, "total_tokens": 2200}}])
        self.c.cadre("ask", "hello", check=True)
        self.spawn("reviewer", "Check it", "--wait")
        r, out = self.c.cadre_json("stats")
        st = out[-1]
        agents = {a["id"]: a for a in st["agents"]}
        # main: 6 $/M in, 12 $/M out; sub-agents 1 and 2 (harness config).
        self.assertAlmostEqual(agents["main"]["cost"], (1000 * 6 + 100 * 12) / 1e6)
        self.assertAlmostEqual(agents["reviewer-1"]["cost"], (2000 * 1 + 200 * 2) / 1e6)
        self.assertAlmostEqual(st["main_equivalent_cost"], (3000 * 6 + 300 * 12) / 1e6)
        self.assertAlmostEqual(st["savings"], 1 - st["total"]["cost"] / st["main_equivalent_cost"])
        self.assertEqual(st["total"]["prompt_tokens"], 3000)


class Queueing(unittest.TestCase):
    def test_spawns_past_max_concurrent_agents_wait(self):
        def one(cfg):
            cfg["max_concurrent_agents"] = 1
        c = Cluster(nodes=(("q1", 4),), config_extra=one)
        try:
            c.model.script([{"match": "first", "chunks": ["a ", "b ", "c ", summary_text("PASS", ["1"], "-")],
                             "delay_ms": 250},
                            {"match": "second", "text": summary_text("PASS", ["2"], "-")}])
            r, a = c.cadre_json("spawn", "reviewer", "first job")
            r, b = c.cadre_json("spawn", "tester", "second job")
            self.assertEqual(b[-1]["status"], "queued")
            r, lst = c.cadre_json("agents")
            status = {x["id"]: x["status"] for x in lst[0]}
            self.assertEqual(status["tester-1"], "queued")
            wait_until(lambda: {x["id"]: x["status"] for x in c.cadre_json("agents")[1][0]}.get("tester-1") == "done",
                       timeout=20, what="the queued agent to run and finish")
            first, second = c.model.requests()
            self.assertGreaterEqual(second["t_start"], first["t_end"] - 0.05, "the second waited for the first")
        finally:
            c.close()


class Keywords(unittest.TestCase):
    def test_keyword_auto_spawn(self):
        def rules(cfg):
            cfg["spawning_rules"] = {"keywords": {"review": "reviewer_agent"}, "auto_spawn_on_keywords": True,
                                     "require_confirmation": False}
        c = Cluster(nodes=(("k1", 4),), config_extra=rules)
        try:
            c.model.script([{"match": "Your task", "text": summary_text("PASS", ["reviewed"], "-")}],
                           default={"text": "Sure."})
            c.cadre("ask", "Please review the login code", check=True)
            agents = wait_until(lambda: [a for a in c.cadre_json("agents")[1][0] if a["role"] == "reviewer"],
                                what="a reviewer spawned by the keyword")
            self.assertIn("review the login code", agents[0]["task"])
            c.cadre("ask", "Nothing to see here", check=True)
            self.assertEqual(len([a for a in c.cadre_json("agents")[1][0] if a["role"] == "reviewer"]), 1)
        finally:
            c.close()

    def test_confirmation_proposal(self):
        def rules(cfg):
            cfg["spawning_rules"] = {"keywords": {"test": "tester_agent"}, "auto_spawn_on_keywords": True,
                                     "require_confirmation": True}
        c = Cluster(nodes=(("k2", 4),), config_extra=rules)
        try:
            watch = c.watch()
            c.model.script([], default={"text": "ok"})
            c.cadre("ask", "let us test the parser", check=True)
            proposal = c.watch_for(watch, lambda ev: ev.get("kind") == "spawn_proposed")["payload"]
            watch.kill()
            watch.wait()
            self.assertEqual(proposal["role"], "tester")
            self.assertEqual([a["id"] for a in c.cadre_json("agents")[1][0]], ["main"])
        finally:
            c.close()


class Delegation(unittest.TestCase):
    def test_spawn_agent_tool(self):
        c = Cluster(nodes=(("d1", 4),))
        try:
            c.model.script([
                {"match": "Ship the feature", "tool_calls": [
                    {"id": "call_t", "name": "spawn_agent",
                     "arguments": json.dumps({"role": "tester", "task": "Run the unit tests"})},
                    {"id": "call_r", "name": "spawn_agent",
                     "arguments": json.dumps({"role": "researcher", "task": "Find the release notes format"})}]},
                {"match": "Run the unit tests", "text": summary_text("PASS", ["42 tests pass"], "release"),
                 "delay_ms": 100},
                {"match": "release notes", "text": summary_text("PASS", ["use keep-a-changelog"], "write notes"),
                 "delay_ms": 100},
            ], default={"text": "Both sub-agents are done: ship it."})
            r, ev = c.cadre_json("ask", "Ship the feature")
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            self.assertEqual(ev[-1]["event"], "done")
            self.assertEqual(ev[-1]["text"], "Both sub-agents are done: ship it.")
            reqs = c.model.requests()
            first = reqs[0]["body"]
            self.assertIn("spawn_agent", {t["function"]["name"] for t in first["tools"]})
            # The two sub-agents ran at the same time.
            subs = [q for q in reqs if q["body"]["model"] == "small-model"]
            self.assertEqual(len(subs), 2)
            self.assertLess(max(q["t_start"] for q in subs), min(q["t_end"] for q in subs))
            # The continuation carries both summaries as tool results.
            last = reqs[-1]["body"]["messages"]
            tool_msgs = {m["tool_call_id"]: m["content"] for m in last if m["role"] == "tool"}
            self.assertIn("42 tests pass", tool_msgs["call_t"])
            self.assertIn("keep-a-changelog", tool_msgs["call_r"])
            # Sub-agents at depth 1 do not get the tool (default max_depth 1).
            self.assertNotIn("spawn_agent", {t["function"]["name"] for t in subs[0]["body"].get("tools", [])})
        finally:
            c.close()


class Restart(unittest.TestCase):
    def test_sessions_survive_broker_restart(self):
        c = Cluster(nodes=(("r1", 2),))
        try:
            c.model.script([{"match": "Audit", "text": summary_text("FAIL", ["found a bug"], "fix it")}])
            r, out = c.cadre_json("spawn", "reviewer", "Audit the code", "--wait")
            self.assertEqual(out[-1]["summary"]["status"], "FAIL")
            c.stop_broker(signal.SIGKILL)
            c.start_broker()
            c.wait_nodes(1)
            agents = {a["id"]: a for a in c.cadre_json("agents")[1][0]}
            self.assertEqual(agents["reviewer-1"]["status"], "done")
            self.assertEqual(agents["reviewer-1"]["summary"]["key_points"], ["found a bug"])
            r, h = c.cadre_json("history", "reviewer-1")
            self.assertIn("found a bug", json.dumps(h[0]["messages"]))
            r, h = c.cadre_json("history")
            self.assertIn("[SUMMARY from reviewer-1", json.dumps(h[0]["messages"]))
            # A direct message continues the sub-agent's own conversation.
            c.model.script([{"match": "And now", "text": summary_text("PASS", ["bug fixed"], "merge")}])
            r, ev = c.cadre_json("send", "reviewer-1", "And now?", "--wait")
            self.assertEqual(r.returncode, 0, r.stderr)
            msgs = c.model.requests()[-1]["body"]["messages"]
            self.assertIn("Audit the code", json.dumps(msgs))
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
