"""Plan preview with model swap, and budgets on the approval screen.

Real broker, agent daemon and cadre; the scripted model server proposes the
plan, plays the sub-agents of agent steps and records which model each
request named. A step moved to another profile (cadre modify ID set_profile
STEP PROFILE) is estimated again at that profile's prices and speed, and runs
on its model; approve --budget-* holds the workflow's steps to a budget.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402
from test_workflow import PASS, plan_text  # noqa: E402

# The config's prices and speeds, as the estimates must use them.
SMALL_IN, SMALL_OUT, SMALL_TPS = 1.0, 2.0, 100  # researcher_agent (harness prices)
BIG_IN, BIG_OUT, BIG_TPS = 3.0, 15.0, 25  # big_researcher
TOK_IN, TOK_OUT = 4000, 1000  # what one agent step is reckoned at


def step_cost(cin, cout):
    return (TOK_IN * cin + TOK_OUT * cout) / 1e6


def profiles(cfg):
    agents = cfg["agents"]
    agents["researcher_agent"]["tokens_per_second"] = SMALL_TPS
    big = dict(agents["researcher_agent"], model="huge-model", cost_per_1m_input=BIG_IN,
               cost_per_1m_output=BIG_OUT, tokens_per_second=BIG_TPS)
    agents["big_researcher"] = big


STEPS = [{"title": "Survey the code", "agent": "researcher", "time": "30s"},
         {"title": "Hard part", "agent": "researcher", "deps": [1], "time": "60s"},
         {"title": "Read the notes", "agent": "tester", "tool": "read_file", "args": {"path": "notes.txt"},
          "deps": [2], "time": "20s"}]


class Swap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("s1", 4),), config_extra=profiles)
        with open(os.path.join(cls.c.workspace, "notes.txt"), "w") as f:
            f.write("notes\n")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def propose(self, title, steps=STEPS, session="main"):
        self.c.model.script([{"match": "Make a plan", "text": plan_text(title, steps)}], default={"text": PASS})
        self.c.cadre("ask", "--session", session, "Make a plan", check=True)
        r, out = self.c.cadre_json("plans")
        return [p for p in out[0] if p["title"] == title][-1]

    def plan(self, pid):
        r, out = self.c.cadre_json("plan", str(pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        return out[-1]

    def modify(self, pid, *args):
        r, out = self.c.cadre_json("modify", str(pid), *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out[-1]

    def step_requests(self, plan, n, title):
        """The model requests of a workflow step's sub-agent (its brief names the step)."""
        brief = f'Your task:\nWorkflow "{plan}", step {n}: {title}'
        return [q for q in self.c.model.requests()
                if any(m["role"] == "user" and brief in (m.get("content") or "") for m in q["body"]["messages"])]

    def assert_estimate(self, est, steps, seconds, cost, tokens):
        got = [(s["number"], s["profile"], s["model"], s["tokens"], s["seconds"]) for s in est["steps"]]
        self.assertEqual(got, steps)
        self.assertEqual(est["seconds"], seconds)
        self.assertAlmostEqual(est["cost"], cost, places=12)
        self.assertEqual(est["tokens"], tokens)
        self.assertEqual(est["tokens_per_agent_step"], TOK_IN + TOK_OUT)

    def test_swap_recomputes_the_estimate_and_the_step_runs_on_that_model(self):
        p = self.propose("Swap")
        pid = p["id"]
        self.assertEqual(p["status"], "pending", p["errors"])
        small = step_cost(SMALL_IN, SMALL_OUT)
        before = [(1, "researcher_agent", "small-model", 5000, 30), (2, "researcher_agent", "small-model", 5000, 60),
                  (3, None, None, 0, 20)]
        self.assert_estimate(p["estimate"], before, 110, 2 * small, 10000)
        self.assertAlmostEqual(p["estimate"]["steps"][0]["cost"], small, places=12)

        m = self.modify(pid, "set_profile", "2", "big_researcher")
        slow = 60 * SMALL_TPS / BIG_TPS  # the same work on a model a quarter as fast
        after = [before[0], (2, "big_researcher", "huge-model", 5000, slow), before[2]]
        self.assert_estimate(m["before"], before, 110, 2 * small, 10000)
        self.assert_estimate(m["estimate"], after, 30 + slow + 20, small + step_cost(BIG_IN, BIG_OUT), 10000)
        self.assertAlmostEqual(m["estimate"]["steps"][1]["cost"], step_cost(BIG_IN, BIG_OUT), places=12)
        self.assertEqual((m["steps"][1]["profile"], m["steps"][1]["agent"]), ("big_researcher", "researcher"))
        self.assertEqual(m["status"], "pending")
        shown = self.plan(pid)  # cadre plan keeps it, with every field it had
        self.assertEqual(shown["estimate"], m["estimate"])
        for key in ("id", "title", "status", "steps", "errors", "session", "text", "checkpoints", "budget"):
            self.assertIn(key, shown)

        # What a person sees: the steps with their profiles, and the estimate before and after.
        text = self.c.cadre("plan", str(pid), check=True).stdout
        self.assertIn("   2. Hard part (researcher on big_researcher, 60s) \u2190 1", text)
        self.assertIn("   1. researcher_agent   small-model             5000     30s  $0.0060", text)
        self.assertIn("   2. big_researcher     huge-model              5000    240s  $0.0270", text)
        self.assertIn("   3. (tool step)                                   0     20s  $0.0000", text)
        self.assertIn("   Total (time: the critical path)              10000  4m 50s  $0.0330", text)
        self.assertIn("Budget (the estimate: 10000 tokens, $0.0330):", text)
        out = self.c.cadre("modify", str(pid), "set_profile", "1", "big_researcher", check=True).stdout
        self.assertIn("Estimate before -> after:\n  step 1: researcher_agent (small-model) 5000 tokens, 30s, "
                      "$0.006000 -> big_researcher (huge-model) 5000 tokens, 120s, $0.0270\n", out)
        self.assertIn("  total: 10000 tokens, 290s, $0.0330 -> 10000 tokens, 380s, $0.0540\n", out)
        self.assertNotIn("step 2:", out)  # unchanged steps are not listed
        back = self.modify(pid, "set_profile", "1", "default")
        self.assertNotIn("profile", back["steps"][0])
        self.assertEqual(back["estimate"], m["estimate"])

        # It runs: each agent step's sub-agent calls its profile's model.
        r = self.c.cadre("approve", str(pid), "--wait", timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr + self.c.logs())
        self.assertEqual({q["body"]["model"] for q in self.step_requests("Swap", 1, "Survey the code")}, {"small-model"})
        self.assertEqual({q["body"]["model"] for q in self.step_requests("Swap", 2, "Hard part")}, {"huge-model"})
        r, agents = self.c.cadre_json("agents")
        self.assertIn("big_researcher", [a.get("profile") for a in agents[-1]] + [None])

    def test_swap_errors_name_what_exists(self):
        p = self.propose("Errors")
        pid = str(p["id"])
        cases = [
            (("set_profile", "2", "gigantic"),
             ['step 2 names a profile that is not in the config: "gigantic"', "big_researcher (researcher, huge-model)",
              "researcher_agent (researcher, small-model)"]),
            (("set_profile", "9", "big_researcher"), [f"plan {pid} has no step 9 (its steps: 1, 2, 3)"]),
            (("set_profile", "3", "big_researcher"), ["step 3 is a tool step: it calls no model"]),
            (("set_profile", "2", "main_agent"), ["cannot run on the main agent's profile"]),
        ]
        for args, wants in cases:
            r = self.c.cadre("modify", pid, *args)
            self.assertNotEqual(r.returncode, 0, args)
            for want in wants:
                self.assertIn(want, r.stderr, args)
            self.assertNotIn("big_researcher", [s.get("profile") for s in self.plan(pid)["steps"]])
        # A [PLAN] may name the profile itself; one the config lacks makes the plan invalid.
        text = plan_text("Named", STEPS[:1]).replace("- Agent: researcher\n", "- Agent: researcher\n- Profile: nope\n")
        self.c.model.script([{"match": "Make a plan", "text": text}])
        self.c.cadre("ask", "Make a plan", check=True)
        named = [x for x in self.c.cadre_json("plans")[1][0] if x["title"] == "Named"][-1]
        self.assertEqual(named["status"], "invalid")
        self.assertIn('Step 1 names a profile that is not in the config: "nope"', named["errors"][0]["message"])
        fixed = self.modify(named["id"], "set_profile", "1", "big_researcher")
        self.assertEqual((fixed["status"], fixed["steps"][0]["profile"]), ("pending", "big_researcher"))
        # A profile of another role than the step's: the step runs as the profile's role, and says so.
        text = plan_text("Other role", [{"title": "Check", "agent": "tester"}]).replace(
            "- Agent: tester\n", "- Agent: tester\n- Profile: big_researcher\n")
        self.c.model.script([{"match": "Make a plan", "text": text}])
        self.c.cadre("ask", "Make a plan", check=True)
        other = [x for x in self.c.cadre_json("plans")[1][0] if x["title"] == "Other role"][-1]
        self.assertEqual((other["status"], other["steps"][0]["agent"], other["steps"][0]["profile"]),
                         ("pending", "researcher", "big_researcher"))
        self.assertEqual(other["estimate"]["steps"][0]["model"], "huge-model")
        # Once it runs, its steps stay where they are.
        self.c.model.script([], default={"chunks": ["working "] * 20 + [PASS], "delay_ms": 200})
        self.c.cadre("approve", pid, check=True)
        r = self.c.cadre("modify", pid, "set_profile", "2", "big_researcher")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"plan {pid} is running; only a pending plan can be modified", r.stderr)
        wait_until(lambda: self.plan(pid)["status"] in ("done", "failed"), 60, "the workflow to end")

    def test_budget_beside_the_estimate_and_approve_with_a_budget(self):
        p = self.propose("Budgeted", session="bud")
        pid = p["id"]
        spent = self.c.cadre_json("budget", "bud")[1][-1]["spent"]["cost"]
        self.c.cadre("budget", "bud", "--cost", str(spent + 0.02), check=True)  # $0.02 left
        self.modify(pid, "set_profile", "2", "big_researcher")  # $0.0330: more than the session has left
        b = self.plan(pid)["budget"]
        self.assertIsNone(b["workflow"]["limit"])
        sess = b["sessions"][0]
        self.assertEqual(sess["scope"], "bud")
        self.assertAlmostEqual(sess["limit"]["cost"], spent + 0.02, places=6)
        self.assertAlmostEqual(sess["left"]["cost"], 0.02, places=6)
        self.assertEqual(len(b["warnings"]), 1, b)
        self.assertIn("the estimate ($0.0330) is more than the $0.0", b["warnings"][0])
        self.assertIn("left in the budget of bud", b["warnings"][0])
        text = self.c.cadre("plan", str(pid), check=True).stdout
        self.assertIn(f"  workflow:{pid}: none of its own (approve {pid} --budget-tokens N --budget-cost USD", text)
        self.assertIn("  bud: $0.", text)
        self.assertIn("($0.0200 left)", text)
        self.assertIn("\u26a0 the estimate ($0.0330) is more than", text)
        # Approved with a budget too small for one request: it holds, is shown, and stops the steps.
        self.c.cadre("budget", "bud", "--cost", "0", check=True)
        r, out = self.c.cadre_json("approve", str(pid), "--budget-tokens", "50", "--budget-cost", "0.5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(out[-1]["budget"]["workflow"]["limit"], {"tokens": 50, "cost": 0.5})
        done = wait_until(lambda: self.plan(pid)["status"] in ("failed", "done") and self.plan(pid), 90,
                          "the workflow to stop")
        self.assertEqual(done["status"], "failed", json.dumps(done)[:2000])
        self.assertEqual(self.step_requests("Budgeted", 1, "Survey the code"), [])  # no call past the budget
        self.assertIn("budget of workflow workflow:%d" % pid, json.dumps(done))
        r, bud = self.c.cadre_json("budget", f"workflow:{pid}")
        self.assertEqual(bud[-1]["limit"], {"tokens": 50, "cost": 0.5})
        self.assertIn(f"workflow:{pid}: 0 of 50 tokens used (50 left)",
                      self.c.cadre("stats", check=True).stdout)

    def test_approve_refused_keeps_no_budget(self):
        p = self.propose("Refused")
        self.c.cadre("reject", str(p["id"]), check=True)
        r = self.c.cadre("approve", str(p["id"]), "--budget-cost", "1")
        self.assertNotEqual(r.returncode, 0)
        r, bud = self.c.cadre_json("budget", f"workflow:{p['id']}")
        self.assertIsNone(bud[-1]["limit"])
        r = self.c.cadre("approve", str(p["id"]), "--budget-cost", "lots")
        self.assertEqual(r.returncode, 2)
        self.assertIn("approve: budget_cost takes an amount in USD", r.stderr)


if __name__ == "__main__":
    unittest.main()
