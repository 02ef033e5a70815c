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


if __name__ == "__main__":
    unittest.main()
