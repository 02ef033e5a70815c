"""cadre-broker --metrics: /metrics in the Prometheus text format, and /healthz.

/metrics needs the dashboard's token (STATE/dashboard.token) as a bearer
token, as a Prometheus scraper sends it (bearer_token_file); /healthz does not.

A real broker and agent daemon on 127.0.0.1 with the scripted model server;
the metrics are read over HTTP and parsed by the Prometheus project's own
parser (Debian's python3-prometheus-client), so a format error fails here.
"""
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster  # noqa: E402

PARSE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"""


def parse(text):
    """Samples as the Prometheus client library reads them (Debian's python3)."""
    import json
    r = subprocess.run(["/usr/bin/python3", "-c", PARSE], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("the Prometheus parser refused the metrics: " + r.stderr[-2000:])
    return json.loads(r.stdout)


def value(samples, name, **labels):
    found = [s["value"] for s in samples if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items())]
    if not found:
        raise AssertionError(f"no sample {name} {labels}")
    return found[0]


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 2),), broker_args=("--metrics", "127.0.0.1:0"))
        cls.url, cls.token = cls.c.http()

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def get(self, path, token=True):
        req = urllib.request.Request(self.url + path)
        if token:
            req.add_header("Authorization", "Bearer " + (self.token if token is True else token))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def test_health(self):
        self.assertTrue(self.url.startswith("http://127.0.0.1:"), self.url)
        self.assertEqual(self.get("/healthz", token=False)[:3:2], (200, "ok\n"))
        self.assertEqual(self.get("/nope")[0], 404)
        req = urllib.request.Request(self.url + "/metrics", data=b"x", method="POST",
                                     headers={"Authorization": "Bearer " + self.token})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 405)

    def test_the_token_is_needed(self):
        st = os.stat(os.path.join(self.c.state, "dashboard.token"))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(len(self.token), 64)
        for path in ("/metrics", "/", "/api/nodes", "/api/events"):
            self.assertEqual(self.get(path, token=False)[0], 401, path)
            self.assertEqual(self.get(path, token="0" * 64)[0], 401, path)
        self.assertEqual(self.get("/metrics?token=" + self.token, token=False)[0], 200)

    def test_metrics_follow_the_work(self):
        self.c.model.script([{"text": "one two three", "delay_ms": 20}])
        self.c.cadre("ask", "--session", "m1", "hello", check=True)
        status, ctype, text = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        s = parse(text)
        self.assertEqual(value(s, "cadre_nodes"), 1)
        self.assertEqual(value(s, "cadre_node_slots", node="n1"), 2)
        self.assertEqual(value(s, "cadre_node_busy_slots", node="n1"), 0)
        self.assertEqual(value(s, "cadre_turns", state="queued"), 0)
        self.assertGreaterEqual(value(s, "cadre_controllers"), 0)
        self.assertGreaterEqual(value(s, "cadre_turn_latency_seconds_count", model="big-model", role="main"), 1)
        self.assertGreaterEqual(value(s, "cadre_time_to_first_token_seconds_count", model="big-model", role="main"), 1)
        lat = value(s, "cadre_turn_latency_seconds_sum", model="big-model", role="main")
        ttft = value(s, "cadre_time_to_first_token_seconds_sum", model="big-model", role="main")
        self.assertGreater(lat, 0)
        self.assertLessEqual(ttft, lat)
        self.assertEqual(value(s, "cadre_turn_latency_seconds_bucket", model="big-model", role="main", le="+Inf"),
                         value(s, "cadre_turn_latency_seconds_count", model="big-model", role="main"))
        self.assertGreater(value(s, "cadre_tokens_total", model="big-model", kind="prompt"), 0)
        self.assertGreater(value(s, "cadre_cost_usd_total", model="big-model"), 0)
        self.assertGreaterEqual(value(s, "cadre_agents", status="idle"), 1)
        # The agents' performance, per role and per model, from the store.
        self.assertGreaterEqual(value(s, "cadre_agent_turns", role="main"), 1)
        self.assertGreaterEqual(value(s, "cadre_agent_turns", model="big-model"), 1)
        self.assertEqual(value(s, "cadre_agent_success_rate", model="big-model"), 1)
        self.assertGreater(value(s, "cadre_agent_latency_ms", role="main", quantile="0.95"), 0)
        self.assertGreaterEqual(value(s, "cadre_agent_latency_ms", role="main", quantile="0.95"),
                                value(s, "cadre_agent_latency_ms", role="main", quantile="0.5"))
        self.assertEqual(value(s, "cadre_agent_summaries", role="main", status="PASS"), 0)

    def test_refused_connections_are_counted(self):
        path = os.path.join(self.c.tmp, "stranger.key")
        self.c.cadre("keygen", path, check=True)
        env = self.c.env()
        env["CADRE_KEY"] = path
        from harness import CTL
        r = subprocess.run([CTL(), "status"], env=env, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        s = parse(self.get("/metrics")[2])
        self.assertGreaterEqual(value(s, "cadre_refused_connections_total", reason="unknown_key"), 1)


class Off(unittest.TestCase):
    def test_no_listener_unless_asked(self):
        c = Cluster(nodes=())
        self.addCleanup(c.close)
        self.assertFalse(os.path.exists(os.path.join(c.state, "metrics")))
        self.assertNotIn("metrics at", c.logs())
        self.assertFalse(os.path.exists(os.path.join(c.state, "dashboard.token")))
        r = c.cadre("dashboard")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--http", r.stderr)


if __name__ == "__main__":
    unittest.main()
