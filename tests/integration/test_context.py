"""Context that fits the model: failed turns, roles without a prompt file, context budgets.

Real broker, a real agent daemon, the real cadre command, the scripted model
server on 127.0.0.1 (which records every request it gets).
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402


def user_texts(req):
    return [m.get("content") for m in req["body"]["messages"] if m.get("role") == "user"]


class FailedTurns(unittest.TestCase):
    """A failed or cancelled turn's question is not sent again with the next one."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 2),))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def test_failed_turn_is_not_sent_again(self):
        self.c.model.script([{"status": 400, "error_body": {"error": {"message": "bad", "type": "invalid"}}},
                             {"text": "second answer"}])
        r = self.c.cadre("ask", "--session", "fail1", "first question")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        r = self.c.cadre("ask", "--session", "fail1", "second question")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "second answer\n")
        reqs = self.c.model.requests()
        self.assertEqual(user_texts(reqs[0]), ["first question"])
        self.assertEqual(user_texts(reqs[-1]), ["second question"])
        # The history still shows the question, marked as left out.
        r, lines = self.c.cadre_json("history", "fail1")
        self.assertEqual(r.returncode, 0, r.stderr)
        msgs = lines[0]["messages"]
        first = [m for m in msgs if m.get("content") == "first question"]
        self.assertEqual(len(first), 1, msgs)
        self.assertTrue(first[0].get("left_out"), first)
        self.assertFalse([m for m in msgs if m.get("content") == "second question"][0].get("left_out"))
        plain = self.c.cadre("history", "fail1").stdout
        self.assertIn("user (left out: its turn failed): first question\n", plain)
        self.assertIn("user: second question\n", plain)

    def test_cancelled_turn_is_not_sent_again(self):
        self.c.model.script([{"hang": True}, {"text": "after cancel"}])
        p = self.c.cadre_bg("ask", "--session", "cancel1", "hanging question")
        wait_until(lambda: any(r.get("t_end") is None for r in self.c.model.requests()), what="request in flight")
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=10)
        self.assertEqual(p.returncode, 130)
        r = self.c.cadre("ask", "--session", "cancel1", "next question")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(user_texts(self.c.model.requests()[-1]), ["next question"])


def add_security_role(cfg):
    main = cfg["agents"]["main_agent"]
    cfg["agents"]["security_agent"] = {"provider": "openai", "url": main["url"], "model": "small-model",
                                       "role": "security", "max_tokens": 256}


class RoleWithoutPrompt(unittest.TestCase):
    """A role added in the config without a prompt file is still asked for its [SUMMARY]."""

    def test_system_message_asks_for_summary(self):
        c = Cluster(nodes=(("n1", 2),), config_extra=add_security_role)
        try:
            c.model.script([{"match": "Audit", "text": "Looked.\n[SUMMARY]\nStatus: PASS\nKey Points:\n- none\n"
                                                       "Recommendation: ship\n[/SUMMARY]"}])
            r, out = c.cadre_json("spawn", "security", "Audit the login code", "--wait")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(out[-1]["summary"]["status"], "PASS")
            req = c.model.requests()[0]["body"]
            system = req["messages"][0]
            self.assertEqual(system["role"], "system")
            self.assertIn("You are the security agent", system["content"])
            self.assertIn("[SUMMARY]", system["content"])
            self.assertIn("[/SUMMARY]", system["content"])
        finally:
            c.close()


def small_context(cfg, summarize=False):
    """Main without tools or delegation (its prompt alone is about 1,000 tokens),
    its older turns left out (or summarised); the reviewer with its own,
    configured budget."""
    cfg["agents"]["main_agent"]["tools"] = []
    cfg["agents"]["main_agent"]["summarize_context"] = summarize
    cfg["spawning_rules"]["delegation"] = False
    cfg["agents"]["reviewer_agent"]["context_tokens"] = 1500


class ContextBudget(unittest.TestCase):
    """Against a server with 2,048 tokens of context, every request fits."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 2),), config_extra=small_context)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def set_context(self, n_ctx, server):
        self.c.model._call("POST", "/_context", {"n_ctx": n_ctx, "server": server})

    def probes(self):
        return self.c.model._call("GET", "/_probes")["probes"]

    def converse(self, session, turns):
        answer = "A" * 1200
        for i in range(turns):
            self.c.model.script([{"text": f"{i}:{answer}"}])
            r = self.c.cadre("ask", "--session", session, f"question {i}: " + "q" * 1200)
            self.assertEqual(r.returncode, 0, f"turn {i}: {r.stderr}\n{self.c.logs()}")

    def test_llamacpp_server_of_2048_tokens_gets_requests_that_fit(self):
        self.set_context(2048, "llamacpp")
        self.converse("ctx1", 5)
        reqs = self.c.model.requests()
        self.assertEqual(len(reqs), 5)
        for r in reqs:
            self.assertLessEqual(r["prompt_estimate"], 2048, r["body"]["messages"])
        last = reqs[-1]["body"]["messages"]
        self.assertEqual(last[0]["role"], "system")
        self.assertIn("[PLAN]", last[0]["content"])  # the system prompt always goes
        self.assertIn("were left out to fit the model's context of 2048 tokens", last[0]["content"])
        self.assertTrue(last[-1]["content"].startswith("question 4: "), last[-1])
        self.assertLess(len(last), 10)
        # The server was asked once for this URL and model.
        self.assertEqual([p["path"] for p in self.probes()], ["/props"])
        # The first turn, before anything was known, carried the whole (short) history.
        self.assertNotIn("left out", reqs[0]["body"]["messages"][0]["content"])

    def test_subagent_gets_the_slice_that_fits_its_budget(self):
        self.set_context(2048, "llamacpp")
        self.converse("main", 3)
        summary = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: none\n[/SUMMARY]"
        self.c.model.script([{"match": "Audit", "text": summary}])
        r, out = self.c.cadre_json("spawn", "reviewer", "Audit the answers", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        req = [q for q in self.c.model.requests() if "Audit" in (q["body"]["messages"][-1].get("content") or "")][0]
        self.assertLessEqual(req["prompt_estimate"], 2048)
        msgs = req["body"]["messages"]
        # Some of main's conversation came along, not all of it.
        inherited = [m for m in msgs[1:-1] if m["role"] in ("user", "assistant")]
        self.assertGreater(len(inherited), 0, msgs)
        self.assertLess(len(inherited), 6, msgs)
        self.assertIn("left out to fit the model's context of 1500 tokens", msgs[0]["content"])


class TooSmall(unittest.TestCase):
    """A context smaller than the system prompt and the tools: the error says so, with figures."""

    def test_a_prompt_larger_than_the_context_is_explained(self):
        c = Cluster(nodes=(("n1", 1),), config_extra=small_context)
        self.addCleanup(c.close)
        # main's short system prompt alone is about 230 tokens
        c.model._call("POST", "/_context", {"n_ctx": 150, "server": "llamacpp"})
        r = c.cadre("ask", "--session", "tiny", "hi")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the request was not sent: it does not fit the model's context", r.stderr)
        self.assertIn("the system prompt and the tool definitions alone take about", r.stderr)
        self.assertIn("the model's context is 150 (as its server says)", r.stderr)
        self.assertIn("--ctx-size", r.stderr)
        self.assertEqual(c.model.requests(), [], "nothing that cannot fit is sent")

    def test_a_server_that_refuses_is_explained(self):
        """A server whose context was not known beforehand (no /props) and refuses with 400."""
        c = Cluster(nodes=(("n1", 1),), config_extra=small_context)
        self.addCleanup(c.close)
        c.model._call("POST", "/_context", {"n_ctx": 150, "server": "none"})
        r = c.cadre("ask", "--session", "tiny", "hi")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("exceeds the available context size", r.stderr)


class Summaries(unittest.TestCase):
    """Past the context, older turns are summarised by the agent's own model."""

    def test_older_turns_are_summarised_and_kept(self):
        c = Cluster(nodes=(("n1", 1),), config_extra=lambda cfg: small_context(cfg, summarize=True))
        self.addCleanup(c.close)
        c.model._call("POST", "/_context", {"n_ctx": 2048, "server": "llamacpp"})
        c.model.script([{"match": f"question {i}:", "text": f"answer {i}: " + "A" * 1200} for i in range(4)],
                       default={"text": "SUMMARY-TEXT: the user asked numbered questions."})
        for i in range(4):
            r = c.cadre("ask", "--session", "s", f"question {i}: " + "q" * 1200)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.startswith(f"answer {i}: "), r.stdout[:80])  # never the summary
        reqs = c.model.requests()
        summaries = [q for q in reqs if q["body"]["messages"][0]["content"].startswith("You summarise")]
        turns = [q for q in reqs if q not in summaries]
        self.assertGreaterEqual(len(summaries), 1)
        self.assertEqual(len(turns), 4)
        for q in reqs:
            self.assertLessEqual(q["prompt_estimate"], 2048)
        for q in summaries:
            self.assertNotIn("tools", q["body"])
        system = turns[-1]["body"]["messages"][0]["content"]
        self.assertIn("[PLAN]", system)
        self.assertIn("[Summary of the earlier conversation", system)
        self.assertIn("SUMMARY-TEXT", system)
        # The history keeps every message and the summaries, marked.
        r, lines = c.cadre_json("history", "s")
        msgs = lines[0]["messages"]
        self.assertEqual(sum(1 for m in msgs if m.get("content", "").startswith("question ")), 4)
        self.assertTrue(any(m.get("context_summary") for m in msgs), msgs)


def short_prompt_plan():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "prompts",
                           "main_prompt.short.txt")) as f:
        text = f.read()
    return text[text.index("[PLAN]"):text.index("[/PLAN]") + len("[/PLAN]")]


class SmallModel(unittest.TestCase):
    """The default config (main with every tool and delegation) against a
    llama.cpp server of 2,048 tokens: the full system prompt and tool
    definitions alone are larger, so the first request is never sent as is;
    the node finds the context first, the broker sends the turn short."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 1),))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()
        self.c.model._call("POST", "/_context", {"n_ctx": 2048, "server": "llamacpp"})

    def test_plain_ask_fits_and_goes_short(self):
        r = self.c.cadre("ask", "--session", "small1", "hi")
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        reqs = self.c.model.requests()
        self.assertEqual(len(reqs), 1, "the oversized request must not reach the server")
        body = reqs[0]["body"]
        self.assertLessEqual(reqs[0]["prompt_estimate"], 1024, "half the context stays for the conversation")
        system = body["messages"][0]["content"]
        self.assertIn("[PLAN]", system)
        self.assertNotIn("Plan rules", system)  # the long prompt's section
        names = [t["function"]["name"] for t in body["tools"]]
        self.assertIn("execute_bash", names)
        self.assertIn("spawn_agent", names)
        for t in body["tools"]:
            fn = t["function"]
            self.assertNotIn(". ", fn["description"], fn)  # one sentence
            for prop in fn["parameters"].get("properties", {}).values():
                self.assertNotIn("description", prop, fn)
            self.assertIn("type", fn["parameters"])
        with open(os.path.join(self.c.tmp, "broker.log")) as f:  # the whole log (logs() keeps the tails)
            self.assertIn("too large for the model's context of 2048 tokens; sent again, shortened", f.read())

    def test_a_conversation_keeps_fitting(self):
        for i in range(4):
            self.c.model.script([{"text": f"{i}:" + "A" * 1500}])
            r = self.c.cadre("ask", "--session", "small2", f"question {i}: " + "q" * 1500)
            self.assertEqual(r.returncode, 0, f"turn {i}: {r.stderr}")
        reqs = [q for q in self.c.model.requests() if q["body"].get("tools")]
        self.assertGreaterEqual(len(reqs), 4)
        for q in reqs:
            self.assertLessEqual(q["prompt_estimate"], 2048)

    def test_the_short_prompts_plan_example_is_a_valid_plan(self):
        self.c.model.script([{"match": "Make a plan", "text": short_prompt_plan()}])
        self.c.cadre("ask", "--session", "small3", "Make a plan", check=True)
        r, out = self.c.cadre_json("plans")
        plan = out[0][-1]
        self.assertEqual(plan["status"], "pending", plan)
        self.assertEqual([s["number"] for s in plan["steps"]], [1, 2])
        self.assertEqual(plan["steps"][1]["dependencies"], [1])


class ShortByConfig(unittest.TestCase):
    """"compact": true sends the short forms whatever the context; a role
    prompt file without a .short.txt twin falls back to the built-in one."""

    def test_compact_profile(self):
        def compact(cfg):
            cfg["agents"]["main_agent"]["compact"] = True
            cfg["agents"]["reviewer_agent"]["compact"] = True
        c = Cluster(nodes=(("n1", 1),), config_extra=compact)
        self.addCleanup(c.close)
        c.cadre("ask", "--session", "big", "hi", check=True)
        summary = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: none\n[/SUMMARY]"
        c.model.script([{"match": "Audit", "text": summary}])
        r, _ = c.cadre_json("spawn", "reviewer", "Audit it", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        reqs = c.model.requests()
        main_sys = reqs[0]["body"]["messages"][0]["content"]
        self.assertNotIn("Plan rules", main_sys)
        rev = [q for q in reqs if "Audit" in (q["body"]["messages"][-1].get("content") or "")][0]
        rev_sys = rev["body"]["messages"][0]["content"]
        self.assertIn("You are the reviewer agent in Cadre", rev_sys)  # the built-in short prompt
        self.assertIn("[SUMMARY]", rev_sys)
        for t in reqs[0]["body"]["tools"]:
            for prop in t["function"]["parameters"].get("properties", {}).values():
                self.assertNotIn("description", prop)


class OllamaContext(unittest.TestCase):
    """An Ollama server is asked with /api/show; its num_ctx is the budget."""

    def test_ollama_num_ctx(self):
        def ollama(cfg):
            small_context(cfg)
            cfg["agents"]["main_agent"]["provider"] = "ollama"
        c = Cluster(nodes=(("n1", 1),), config_extra=ollama)
        try:
            c.model._call("POST", "/_context", {"n_ctx": 2048, "server": "ollama"})
            for i in range(4):
                c.model.script([{"text": "B" * 1200}])
                r = c.cadre("ask", "--session", "o", f"question {i}: " + "q" * 1200)
                self.assertEqual(r.returncode, 0, r.stderr)
            probes = c.model._call("GET", "/_probes")["probes"]
            self.assertEqual(probes[0]["path"], "/api/show")
            self.assertEqual(probes[0]["body"], {"model": "big-model"})
            self.assertEqual(len(probes), 1)
            for q in c.model.requests():
                self.assertLessEqual(q["prompt_estimate"], 2048)
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
