"""Budgets enforced at the broker: a session with all its sub-agents, a role's
default from the config, and what `cadre budget` and `cadre stats` show.

Real broker, agent daemon and cadre; the scripted model server, which cuts an
answer at the request's max_tokens as real servers do and reports usage.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster  # noqa: E402

LONG = "word " * 400  # ~500 tokens of answer when not cut
SUMMARY = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ok\nRecommendation: none\n[/SUMMARY]"


def role_budget(cfg):
    cfg["budgets"] = {"researcher": {"tokens": 700}}


class Budgets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 2),), config_extra=role_budget)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def budget(self, *args):
        r, out = self.c.cadre_json("budget", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out[-1]

    def test_set_and_show(self):
        self.c.cadre("ask", "--session", "b0", "hello", check=True)
        b = self.budget("b0", "--tokens", "5000", "--cost", "0.25")
        self.assertEqual(b["scope"], "b0")
        self.assertEqual(b["limit"], {"tokens": 5000, "cost": 0.25})
        self.assertGreater(b["spent"]["tokens"], 0)
        self.assertEqual(b["left"]["tokens"], 5000 - b["spent"]["tokens"])
        self.assertIn("of 5000 tokens used", self.c.cadre("budget", "b0").stdout)
        r, stats = self.c.cadre_json("stats")
        self.assertIn("b0", [x["scope"] for x in stats[-1]["budgets"]])
        self.assertIn("Budgets:", self.c.cadre("stats").stdout)
        self.assertEqual(self.budget("b0", "--tokens", "0", "--cost", "0")["limit"], None)
        r = self.c.cadre("budget", "nobody", "--tokens", "5")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('no session "nobody"', r.stderr)

    def test_spent_budget_stops_turns_and_overshoot_is_bounded(self):
        overshoots = []
        for run in range(20):
            s = f"spend{run}"
            self.c.cadre("ask", "--session", s, "hi", check=True)  # the session exists
            limit = self.budget(s)["spent"]["tokens"] + 3000 + 97 * run
            self.budget(s, "--tokens", str(limit))
            last = None
            for i in range(30):
                self.c.model.script([{"text": LONG}])
                r = self.c.cadre("--json", "ask", "--session", s, f"more {i}")
                if r.returncode != 0:
                    self.assertIn(f"the budget of agent {s} (with its sub-agents) is spent", r.stdout + r.stderr)
                    break
                last = [json.loads(l) for l in r.stdout.splitlines() if '"done"' in l][-1]
            else:
                self.fail("the budget never stopped the session")
            self.assertIsNotNone(last, "the budget allowed not even one turn")
            spent = self.budget(s)["spent"]["tokens"]
            over = spent - limit
            # At most the one call in flight: its prompt, and an answer capped to what was left.
            call = last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
            self.assertLessEqual(over, call, (spent, limit, last["usage"]))
            overshoots.append((over, last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]))
        print(f"\nbudget overshoot over 20 runs (tokens over the limit; last call's prompt, answer): "
              f"max {max(o[0] for o in overshoots)}, mean {sum(o[0] for o in overshoots) / 20:.1f}; {overshoots}",
              file=sys.stderr)
        # The prompt is estimated generously (bytes / 4 of messages and tools): no overshoot here.
        self.assertLessEqual(max(o[0] for o in overshoots), 0, overshoots)

    def test_a_tree_counts_together_and_role_budgets_apply(self):
        self.c.cadre("ask", "--session", "tree", "hi", check=True)
        spent = self.budget("tree")["spent"]["tokens"]
        self.budget("tree", "--tokens", str(spent + 400))
        # A sub-agent's usage counts against its parent's budget.
        self.c.model.script([{"match": "Audit", "text": LONG + SUMMARY}])
        r = self.c.cadre("--json", "send", "tree", "go")  # nothing: just to keep the session busy-free
        self.c.model.script([{"match": "Audit", "text": SUMMARY + " " + LONG}])
        r, out = self.c.cadre_json("spawn", "reviewer", "Audit the tree", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The config gives every researcher 700 tokens (with its sub-agents).
        self.c.model.script([{"text": LONG}] * 10)
        r, out = self.c.cadre_json("spawn", "researcher", "Dig deep", "--wait")
        rid = out[-1]["id"]
        b = self.budget(rid)
        self.assertEqual(b["limit"]["tokens"], 700)
        r = self.c.cadre("send", rid, "again", "--wait")
        r = self.c.cadre("send", rid, "and again", "--wait")
        self.assertGreaterEqual(self.budget(rid)["spent"]["tokens"], 0)
        # cadre stats lists it too, with what it spent and has left of its role's budget.
        r, stats = self.c.cadre_json("stats")
        mine = [x for x in stats[-1]["budgets"] if x["scope"] == rid]
        self.assertEqual(len(mine), 1, stats[-1]["budgets"])
        self.assertEqual(mine[0]["limit"]["tokens"], 700)
        self.assertEqual(mine[0]["left"]["tokens"], max(0, 700 - mine[0]["spent"]["tokens"]))
        self.assertRegex(self.c.cadre("stats").stdout, rf"  {rid}: \d+ of 700 tokens used \(\d+ left\)")


if __name__ == "__main__":
    unittest.main()
