"""Record and replay of model exchanges (cadre-agentd --record / --replay,
cadre replay-diff), and the prompt regression test built on them.

A first cluster talks to the scripted model server and records; a second,
with the model server gone, replays: the same questions get the same
answers, streamed, offline. A question never recorded fails clearly.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CTL, SOURCE_ROOT, Cluster  # noqa: E402

KEY = "sk-test-RECORDING-SECRET-4711"
SUMMARY = "[SUMMARY]\nStatus: PASS\nKey Points:\n- the cache is sound\nRecommendation: ship it\n[/SUMMARY]"
PROMPTS_DIR = os.path.join(SOURCE_ROOT, "tests", "fixtures", "recordings", "prompts")


def conversation(c):
    """The exchange both runs go through: main answers, a reviewer reports."""
    out = []
    r = c.cadre("--json", "ask", "--session", "main", "How should I cache the user table?")
    done = [json.loads(l) for l in r.stdout.splitlines() if '"event":"done"' in l.replace(" ", "")]
    deltas = sum(1 for l in r.stdout.splitlines() if '"delta"' in l)
    out.append((r.returncode, [done[-1]["text"], done[-1]["thinking"], deltas > 1] if done else None, r.stderr))
    r = c.cadre("--json", "spawn", "reviewer", "Review the cache layer", "--wait")
    out.append((r.returncode, json.loads(r.stdout.splitlines()[-1]).get("summary") if r.returncode == 0 else None,
                r.stderr))
    return out


def script_conversation(c):
    c.model.script([{"match": "cache the user table", "text": "Use a read-through LRU keyed by user id.",
                     "thinking": "They asked about caching."},
                    {"match": "Review the cache layer", "text": SUMMARY}])


class RecordReplay(unittest.TestCase):
    def test_record_then_replay_offline(self):
        tmp = self.enterContext_tmp()
        rec, rec2 = os.path.join(tmp, "rec"), os.path.join(tmp, "rec2")
        a = Cluster(nodes=(), agentd_env={"OPENAI_API_KEY": KEY})
        try:
            a.start_node("n1", slots=2, extra=("--record", rec))
            a.wait_nodes(1)
            script_conversation(a)
            first = conversation(a)
        finally:
            a.close()
        self.assertEqual([x[0] for x in first], [0, 0], first)
        files = sorted(glob.glob(os.path.join(rec, "*.json")))
        self.assertGreaterEqual(len(files), 2, files)
        for f in files:
            self.assertEqual(os.stat(f).st_mode & 0o777, 0o600)
            text = open(f).read()
            self.assertNotIn(KEY, text, "an API key reached a recording")
            doc = json.loads(text)
            self.assertEqual(set(doc), {"key", "url", "request", "status", "content_type", "native", "response"})
            self.assertTrue(os.path.basename(f).startswith(doc["key"]))

        # The model server is gone: the second run is answered from the recordings.
        b = Cluster(nodes=())
        try:
            b.model.stop()
            b.start_node("r1", slots=2, extra=("--replay", rec, "--record", rec2))
            b.wait_nodes(1)
            second = conversation(b)
            self.assertEqual(second, first)
            self.assertIn("Use a read-through LRU", second[0][1][0])
            self.assertTrue(second[0][1][2], "the replayed answer streams")
            r = b.cadre("ask", "--session", "other", "something never asked")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no recording of this request", r.stderr)
        finally:
            b.close()

        # replay-diff: the replayed run, recorded again, answered the same.
        r = subprocess.run([CTL(), "replay-diff", rec, rec2], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"\d+ the same, 0 differ")
        # One answer changed: it says which, and where.
        changed = sorted(glob.glob(os.path.join(rec2, "*.json")))[0]
        doc = json.load(open(changed))
        import base64
        body = base64.b64decode(doc["response"]).replace(b"read-through", b"write-behind")
        body = body.replace(b"sound", b"shaky")
        doc["response"] = base64.b64encode(body).decode()
        with open(changed, "w") as f:
            json.dump(doc, f)
        r = subprocess.run([CTL(), "--json", "replay-diff", rec, rec2], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        out = json.loads(r.stdout)
        self.assertEqual(len(out["differ"]), 1, out)
        self.assertEqual(out["differ"][0]["recording"], os.path.basename(changed))

    def enterContext_tmp(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="cadre-replay-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


class PromptRegression(unittest.TestCase):
    """The recorded conversation in tests/fixtures/recordings/prompts was made
    with today's prompts/ (scripts/record-prompts). Replayed with the prompts
    of this checkout, every request must find its recording: a change to a
    prompt, the tool definitions or the way a request is built shows here,
    to be reviewed and recorded again on purpose."""

    def test_prompts_match_their_recording(self):
        if not glob.glob(os.path.join(PROMPTS_DIR, "*.json")):
            self.fail(f"no recordings in {PROMPTS_DIR}: run scripts/record-prompts")
        c = Cluster(nodes=())
        try:
            c.model.stop()
            c.start_node("r1", slots=2, extra=("--replay", PROMPTS_DIR))
            c.wait_nodes(1)
            got = conversation(c)
        finally:
            c.close()
        for code, out, err in got:
            self.assertEqual(code, 0, "the prompts or requests changed since they were recorded "
                                      "(review, then run scripts/record-prompts):\n" + err)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--record-prompts":
        # Used by scripts/record-prompts: the conversation against the scripted server, recorded.
        shutil.rmtree(PROMPTS_DIR, ignore_errors=True)
        c = Cluster(nodes=())
        try:
            c.start_node("n1", slots=2, extra=("--record", PROMPTS_DIR))
            c.wait_nodes(1)
            script_conversation(c)
            res = conversation(c)
        finally:
            c.close()
        print(json.dumps(res, indent=1))
        sys.exit(0 if all(r[0] == 0 for r in res) else 1)
    unittest.main()
