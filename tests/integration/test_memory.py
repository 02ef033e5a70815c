"""Project memory: sub-agents' summaries kept per workspace, given to new
sessions when relevant, listed, searched, pinned and really forgotten.

Real broker, agent daemon and cadre; the scripted model server records the
requests, so the test sees what reached the model.
"""
import glob
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster  # noqa: E402

SUMMARY = ("[SUMMARY]\nStatus: PASS\nKey Points:\n- LRU eviction FROGLEAP7 verified in src/cache.c\n"
           "- no lock around put()\nRecommendation: add a mutex to put()\n[/SUMMARY]")


def system_of(req):
    m = req["body"]["messages"][0]
    return m["content"] if m["role"] == "system" else ""


class Memory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 2),))
        cls.c.model.script([{"match": "Review the cache", "text": SUMMARY}])
        r, out = cls.c.cadre_json("spawn", "reviewer", "Review the cache layer", "--wait")
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def memories(self, *args):
        r, out = self.c.cadre_json("memory", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out[-1]

    def asked(self, session, text):
        self.c.cadre("ask", "--session", session, text, check=True)
        return system_of(self.c.model.requests()[-1])

    def test_1_a_summary_becomes_a_memory(self):
        mems = self.memories()
        self.assertEqual(len(mems), 1, mems)
        m = mems[0]
        for field in ("id", "text", "source", "date"):
            self.assertIn(field, m)
        self.assertIn("Review the cache layer", m["text"])
        self.assertIn("FROGLEAP7", m["text"])
        self.assertIn("add a mutex", m["text"])
        self.assertEqual(m["outcome"], "PASS")
        self.assertRegex(m["source"], r"summary of reviewer-\d+")
        self.assertRegex(m["date"], r"^\d{4}-\d\d-\d\dT")
        out = self.c.cadre("memory").stdout
        self.assertIn("FROGLEAP7", out)

    def test_2_a_new_session_gets_the_relevant_memory(self):
        system = self.asked("fresh1", "How does the cache evict entries?")
        self.assertIn("[Project memory", system)
        self.assertIn("FROGLEAP7", system)
        system = self.asked("fresh2", "Write a haiku about autumn leaves")
        self.assertNotIn("[Project memory", system)

    def test_3_search_and_pin(self):
        self.assertEqual(len(self.memories("search", "eviction mutex")), 1)
        self.assertEqual(self.memories("search", "zebras"), [])
        mid = self.memories()[0]["id"]
        self.assertEqual(self.memories("pin", str(mid))["done"], "pin")
        self.assertIn("FROGLEAP7", self.asked("fresh3", "Write a haiku about autumn leaves"))
        self.memories("unpin", str(mid))
        r = self.c.cadre("memory", "pin", "999999")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no memory 999999", r.stderr)

    def test_4_forget_really_deletes(self):
        mid = self.memories()[0]["id"]
        self.memories("forget", str(mid))
        self.assertEqual(self.memories(), [])
        self.assertNotIn("[Project memory", self.asked("fresh4", "How does the cache evict entries?"))
        # Not in the broker's files any more, the write-ahead log included. (The summary itself
        # stays in the reviewer's own history: forgetting a memory does not rewrite conversations.)
        hits = []
        for f in glob.glob(os.path.join(self.c.state, "*")):
            if os.path.isfile(f):
                with open(f, "rb") as fh:
                    data = fh.read()
                hits.append((os.path.basename(f), data.count(b"Review the cache layer. Outcome")))
        self.assertEqual([h for h in hits if h[1]], [], hits)


if __name__ == "__main__":
    unittest.main()
