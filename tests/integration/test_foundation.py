"""Foundation: the protocol, the three programs, and real turns end to end.

Real broker, real agent daemons, the real cadre command, a scripted model
server on 127.0.0.1.
"""
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, PROBE, wait_until  # noqa: E402


class TwoNodes(unittest.TestCase):
    """A broker with two agent daemons."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 2), ("n2", 2)))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def setUp(self):
        self.c.model.reset()

    def fail_with_logs(self, msg):
        self.fail(msg + "\n" + self.c.logs())

    def ask_json(self, text, *extra, timeout=60):
        r, events = self.c.cadre_json("ask", *extra, text, timeout=timeout)
        return r, events

    def test_nodes_listed(self):
        nodes = self.c.nodes()
        self.assertEqual(sorted(n["name"] for n in nodes), ["n1", "n2"])
        for n in nodes:
            self.assertEqual(n["slots"], 2)
            self.assertIn("busy", n)
            self.assertEqual(n["models"], ["*"])
            self.assertEqual(n["workspace"], os.path.realpath(self.c.workspace))
        plain = self.c.cadre("nodes", check=True).stdout
        self.assertIn("n1", plain)
        self.assertIn("SLOTS", plain)

    def test_answer_streams_token_by_token(self):
        self.c.model.script([{"chunks": ["The ", "answer ", "is ", "forty-two."], "delay_ms": 30,
                              "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}}])
        r, ev = self.ask_json("What is the answer?")
        self.assertEqual(r.returncode, 0, r.stderr)
        deltas = [e for e in ev if e["event"] == "delta"]
        self.assertEqual([d["text"] for d in deltas], ["The ", "answer ", "is ", "forty-two."])
        self.assertEqual([d["seq"] for d in deltas], [1, 2, 3, 4])
        done = ev[-1]
        self.assertEqual(done["event"], "done")
        self.assertEqual(done["text"], "The answer is forty-two.")
        self.assertEqual(done["usage"]["prompt_tokens"], 11)
        self.assertEqual(done["usage"]["completion_tokens"], 4)
        self.assertIn(done["node"], ("n1", "n2"))
        self.assertEqual(done["model"], "big-model")
        # The request carried the main profile and the question.
        req = self.c.model.requests()[-1]["body"]
        self.assertEqual(req["model"], "big-model")
        self.assertEqual(req["temperature"], 0.7)
        self.assertTrue(req["stream"])
        self.assertEqual(req["messages"][0]["role"], "system")
        self.assertIn("[PLAN]", req["messages"][0]["content"])
        self.assertEqual(req["messages"][-1], {"role": "user", "content": "What is the answer?"})

    def test_plain_output_and_stats_line(self):
        self.c.model.script([{"text": "Plain answer here.",
                              "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}])
        r = self.c.cadre("ask", "--session", "plain", "say", "something")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Plain answer here.\n")
        self.assertIn("7 tokens in, 3 out", r.stderr)
        self.assertRegex(r.stderr, r"\d+\.\d\d s")

    def test_thinking_kept_apart(self):
        self.c.model.script([{"thinking": "Let me think about it.", "text": "Yes."}])
        r, ev = self.ask_json("Is it?", "--session", "think")
        self.assertEqual(r.returncode, 0, r.stderr)
        kinds = {e["kind"] for e in ev if e["event"] == "delta"}
        self.assertEqual(kinds, {"thinking", "text"})
        self.assertEqual(ev[-1]["text"], "Yes.")
        self.assertEqual(ev[-1]["thinking"], "Let me think about it.")
        # Without a terminal, thinking is hidden from plain output.
        self.c.model.script([{"thinking": "secret reasoning", "text": "Visible."},
                             {"thinking": "shown reasoning", "text": "Visible."}])
        r = self.c.cadre("ask", "--session", "think2", "again")
        self.assertEqual(r.stdout, "Visible.\n")
        r2 = self.c.cadre("ask", "--session", "think3", "--thinking", "again")
        self.assertIn("[thinking] shown reasoning", r2.stdout)
        self.assertTrue(r2.stdout.endswith("Visible.\n"), r2.stdout)

    def test_inline_think_tags_split(self):
        self.c.model.script([{"chunks": ["<thi", "nk>pondering</th", "ink>", "Done."]}])
        r, ev = self.ask_json("tags?", "--session", "tags")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ev[-1]["text"], "Done.")
        self.assertEqual(ev[-1]["thinking"], "pondering")

    def test_429_then_success(self):
        self.c.model.script([{"status": 429, "retry_after": "1",
                              "error_body": {"error": {"message": "slow down", "type": "rate_limit"}}},
                             {"text": "after the retry"}])
        r, ev = self.ask_json("retry please", "--session", "r429")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ev[-1]["text"], "after the retry")
        reqs = self.c.model.requests()
        self.assertEqual(len(reqs), 2)
        self.assertGreaterEqual(reqs[1]["t_start"] - reqs[0]["t_start"], 0.9, "Retry-After: 1 was not honoured")

    def test_500_three_times_then_clear_failure(self):
        boom = {"status": 500, "error_body": {"error": {"message": "internal boom", "type": "server_error"}}}
        self.c.model.script([boom, boom, boom, {"text": "must not be reached"}])
        r, ev = self.ask_json("fail please", "--session", "r500")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(ev[-1]["event"], "error")
        self.assertEqual(ev[-1]["code"], "http_500")
        self.assertIn("500", ev[-1]["detail"])
        self.assertIn("internal boom", ev[-1]["detail"])
        self.assertEqual(len(self.c.model.requests()), 3)
        self.c.model.script([boom, boom, boom])
        plain = self.c.cadre("ask", "--session", "r500b", "again")
        self.assertNotEqual(plain.returncode, 0)
        self.assertIn("failed", plain.stderr)

    def test_400_is_not_retried(self):
        self.c.model.script([{"status": 400, "error_body": {"error": {"message": "bad model name"}}}])
        r, ev = self.ask_json("bad", "--session", "r400")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("bad model name", ev[-1]["detail"])
        self.assertEqual(len(self.c.model.requests()), 1)

    def test_cut_mid_stream_is_an_error(self):
        self.c.model.script([{"chunks": ["one ", "two ", "three ", "four"], "cut_after": 2}])
        r, ev = self.ask_json("cut", "--session", "cut")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(ev[-1]["event"], "error")
        self.assertEqual(ev[-1]["code"], "cut")
        self.assertEqual("".join(e["text"] for e in ev if e["event"] == "delta"), "one two ")
        self.assertEqual(len(self.c.model.requests()), 1, "a cut stream must not be retried (text was shown)")

    def test_error_object_mid_stream(self):
        self.c.model.script([{"chunks": ["partial "], "error_in_stream": {"message": "overloaded", "code": "busy"}}])
        r, ev = self.ask_json("err", "--session", "errmid")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(ev[-1]["code"], "model_error")
        self.assertIn("overloaded", ev[-1]["detail"])

    def test_non_streaming_profile(self):
        self.c.model.script([{"text": "whole answer", "stream": False}])
        r, ev = self.ask_json("whole", "--session", "whole")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ev[-1]["text"], "whole answer")

    def test_history_kept_per_session(self):
        self.c.model.script([{"text": "first answer"}, {"text": "second answer"}])
        self.c.cadre("ask", "--session", "hist", "first question", check=True)
        self.c.cadre("ask", "--session", "hist", "second question", check=True)
        # The second request carried the first exchange.
        msgs = self.c.model.requests()[-1]["body"]["messages"]
        self.assertEqual([m["content"] for m in msgs[1:]],
                         ["first question", "first answer", "second question"])
        r, out = self.c.cadre_json("history", "hist")
        self.assertEqual([(m["role"], m["content"]) for m in out[0]["messages"]],
                         [("user", "first question"), ("assistant", "first answer"),
                          ("user", "second question"), ("assistant", "second answer")])

    def test_cancel_with_ctrl_c(self):
        self.c.model.script([{"hang": True}])
        p = self.c.cadre_bg("ask", "--session", "cancel", "hang forever")
        wait_until(lambda: any(r.get("t_end") is None for r in self.c.model.requests()), what="request in flight")
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 130, err)
        self.assertLess(time.monotonic() - t0, 5)
        wait_until(lambda: all(r.get("t_end") is not None for r in self.c.model.requests()), timeout=5,
                   what="the node to drop the HTTP request")

    def test_malformed_messages_get_errors_and_broker_keeps_serving(self):
        cases = {
            "c1": "malformed",                           # not msgpack
            "81a176cb0000": "malformed",                # float64 cut short
            "93010203": "not_map",                      # an array
            "df7fffffff": "bad_count",                  # map32 claiming 2^31 entries
            "83a17602a474797065a568656c6c6fa2696401": "bad_version",  # v=2
            "83a17601a474797065a3666f6fa2696401": "bad_type",         # type "foo"
        }
        for hexframe, code in cases.items():
            r = subprocess.run([PROBE(), self.c.endpoint, self.c.key, self.c.broker_pub, hexframe],
                               capture_output=True, text=True, timeout=20)
            reply = json.loads(r.stdout.splitlines()[0])
            self.assertEqual(reply["type"], "error", hexframe)
            self.assertEqual(reply["code"], code, f"{hexframe}: {reply}")
            self.assertTrue(reply["detail"])
        self.assertEqual(self.c.broker.poll(), None, "broker died")
        self.assertEqual(len(self.c.nodes()), 2)

    def test_unknown_verb_and_missing_field(self):
        r, out = self.c.cadre_json("history", "no-such-session")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no session", out[0]["error"])

    def test_unauthorised_key_is_refused(self):
        other = os.path.join(self.c.tmp, "other.key")
        self.c.cadre("keygen", other, check=True)
        env = self.c.env()
        env["CADRE_KEY"] = other
        r = subprocess.run([os.environ["CADRE_CTL_BIN"], "--timeout", "2", "nodes"], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("authorized_keys", r.stderr)


class WholeAnswers(unittest.TestCase):
    """A profile with "stream": false asks the model for whole answers (a request without streaming)."""

    def test_a_non_streaming_profile_sends_a_non_streaming_request(self):
        c = Cluster(nodes=(("w1", 1),), stream=False)
        try:
            c.model.script([{"text": "all of it at once", "stream": False}])
            r = c.cadre("ask", "whole please")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("all of it at once", r.stdout)
            body = c.model.requests()[-1]["body"]
            self.assertIs(body["stream"], False)
            self.assertNotIn("stream_options", body)
        finally:
            c.close()


class OneNode(unittest.TestCase):
    """One daemon with two slots: two asks at once overlap on it."""

    def test_two_asks_overlap_on_one_daemon(self):
        c = Cluster(nodes=(("solo", 2),))
        try:
            c.model.script([], default={"chunks": ["a ", "b ", "c ", "d ", "e"], "delay_ms": 150})
            p1 = c.cadre_bg("--json", "ask", "--session", "s1", "first")
            p2 = c.cadre_bg("--json", "ask", "--session", "s2", "second")
            o1, e1 = p1.communicate(timeout=30)
            o2, e2 = p2.communicate(timeout=30)
            self.assertEqual(p1.returncode, 0, e1)
            self.assertEqual(p2.returncode, 0, e2)
            d1, d2 = json.loads(o1.splitlines()[-1]), json.loads(o2.splitlines()[-1])
            self.assertEqual((d1["node"], d2["node"]), ("solo", "solo"))
            reqs = c.model.requests()
            self.assertEqual(len(reqs), 2)
            a, b = reqs
            self.assertLess(a["t_start"], b["t_end"])
            self.assertLess(b["t_start"], a["t_end"])
        finally:
            c.close()

    def test_third_turn_waits_for_a_free_slot(self):
        c = Cluster(nodes=(("single", 1),))
        try:
            c.model.script([], default={"chunks": ["x ", "y"], "delay_ms": 200})
            ps = [c.cadre_bg("--json", "ask", "--session", f"q{i}", "go") for i in range(2)]
            for p in ps:
                out, err = p.communicate(timeout=30)
                self.assertEqual(p.returncode, 0, err)
            a, b = c.model.requests()
            # One slot: the second request starts after the first one ended.
            self.assertGreaterEqual(max(a["t_start"], b["t_start"]), min(a["t_end"], b["t_end"]))
        finally:
            c.close()


class Restart(unittest.TestCase):
    def test_broker_restart_keeps_history_and_nodes_reregister(self):
        c = Cluster(nodes=(("r1", 1), ("r2", 1)))
        try:
            c.model.script([{"text": "remember me"}])
            c.cadre("ask", "before the restart", check=True)
            c.stop_broker(signal.SIGKILL)
            c.start_broker()
            nodes = c.wait_nodes(2, timeout=20)
            self.assertEqual(sorted(n["name"] for n in nodes), ["r1", "r2"])
            r, out = c.cadre_json("history")
            self.assertEqual([(m["role"], m["content"]) for m in out[0]["messages"]],
                             [("user", "before the restart"), ("assistant", "remember me")])
            c.model.script([{"text": "still here"}])
            r, ev = c.cadre_json("ask", "after the restart")
            self.assertEqual(r.returncode, 0, r.stderr + c.logs())
            self.assertEqual(ev[-1]["text"], "still here")
            msgs = c.model.requests()[-1]["body"]["messages"]
            self.assertIn({"role": "assistant", "content": "remember me"}, msgs)
        finally:
            c.close()

    def test_broker_killed_mid_turn_the_turn_still_finishes(self):
        c = Cluster(nodes=(("m1", 2),))
        try:
            slow = {"chunks": [f"w{i} " for i in range(12)], "delay_ms": 150}
            c.model.script([slow, {"text": "answer after the restart"}])
            p = c.cadre_bg("--json", "ask", "--session", "midway", "keep going")
            wait_until(lambda: c.model.requests(), what="the model call to start")
            c.stop_broker(signal.SIGKILL)
            c.start_broker()
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err + c.logs())
            done = json.loads(out.splitlines()[-1])
            self.assertEqual(done["event"], "done")
            self.assertEqual(done["text"], "answer after the restart")
            # One question and one answer in the history: nothing lost, nothing doubled.
            r, h = c.cadre_json("history", "midway")
            self.assertEqual([(m["role"], m["content"]) for m in h[0]["messages"]],
                             [("user", "keep going"), ("assistant", "answer after the restart")])
        finally:
            c.close()

    def test_node_lost_mid_turn_runs_again_elsewhere(self):
        c = Cluster(nodes=(("k1", 1),))
        try:
            c.model.script([{"hang": True}, {"text": "finished elsewhere"}])
            p = c.cadre_bg("--json", "ask", "--session", "lost", "survive")
            wait_until(lambda: c.model.requests(), what="first request")
            c.start_node("k2", 1)
            c.wait_nodes(2)
            c.kill_node("k1")
            out, err = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 0, err + c.logs())
            done = json.loads(out.splitlines()[-1])
            self.assertEqual(done["text"], "finished elsewhere")
            self.assertEqual(done["node"], "k2")
            # The dead node is gone from the list.
            wait_until(lambda: [n["name"] for n in c.nodes()] == ["k2"], what="k1 removed from nodes")
        finally:
            c.close()


class Secrets(unittest.TestCase):
    def test_api_key_reaches_model_but_not_state_or_logs(self):
        key = "sk-test-" + "9" * 24
        c = Cluster(nodes=(("sec", 1),), agentd_env={"OPENAI_API_KEY": key})
        try:
            c.model.script([{"text": "authorised"}])
            c.cadre("ask", "with a key", check=True)
            req = c.model.requests()[-1]
            self.assertEqual(req["authorization_sha256"], hashlib.sha256(f"Bearer {key}".encode()).hexdigest())
            for root, _, files in os.walk(c.tmp):
                for f in files:
                    path = os.path.join(root, f)
                    if f == "model.log":
                        continue
                    with open(path, "rb") as fh:
                        self.assertNotIn(key.encode(), fh.read(), path)
            db = sqlite3.connect(os.path.join(c.state, "state.db"))
            mode = os.stat(os.path.join(c.state, "client.key")).st_mode & 0o777
            self.assertEqual(mode, 0o600)
            self.assertEqual(os.stat(os.path.join(c.state, "broker.key")).st_mode & 0o777, 0o600)
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        finally:
            c.close()


class ProtocolTable(unittest.TestCase):
    """What proto/messages.def declares holds end to end."""

    def test_profile_fields_reach_the_model_server(self):
        def openai(cfg):
            cfg["agents"]["main_agent"]["max_tokens_field"] = "max_completion_tokens"

        def ollama(cfg):
            cfg["agents"]["main_agent"].update(provider="ollama", think="high")
            cfg["agents"]["main_agent"]["url"] = cfg["agents"]["main_agent"]["url"][:-len("/v1")]

        for extra, check in ((openai, lambda b: (self.assertEqual(b["max_completion_tokens"], 256),
                                                 self.assertNotIn("max_tokens", b))),
                             (ollama, lambda b: (self.assertEqual(b["think"], "high"),
                                                 self.assertEqual(b["options"]["num_predict"], 256)))):
            c = Cluster(nodes=(("pt", 1),), config_extra=extra)
            try:
                c.model.script([{"text": "fine"}])
                c.cadre("ask", "hello", check=True)
                check(c.model.requests()[-1]["body"])
            finally:
                c.close()

    def test_request_args_are_checked_against_the_table(self):
        c = Cluster(nodes=(("pt", 1),))
        try:
            cases = (("cancel", '{"turn": "7"}', 'cancel: argument "turn" must be an int, not a string'),
                     ("cancel", "{}", 'cancel: argument "turn" (int) is required'),
                     ("ask", '{"text": "hi", "solo": 1}', 'ask: argument "solo" must be a bool, not an int'),
                     ("template_run", '{"name": "t", "session": 5}', 'argument "session" must be a str'))
            for verb, args, want in cases:
                r, out = c.cadre_json("call", verb, args)
                self.assertNotEqual(r.returncode, 0, (verb, args))
                self.assertIn(want, out[0]["error"])
                self.assertIn("bad_args", out[0]["error"])
            self.assertEqual(c.broker.poll(), None, "broker died")
        finally:
            c.close()


class LocalCluster(unittest.TestCase):
    """cadre with no broker starts a local cluster itself; up/down/status."""

    def test_auto_start_status_and_down(self):
        import tempfile
        from harness import ModelServer, make_config, CTL
        tmp = tempfile.mkdtemp(prefix="cadre-local-")
        model = ModelServer(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_") or k.endswith("_BIN")}
        env.update({"XDG_STATE_HOME": os.path.join(tmp, "xdg"), "HOME": tmp, "NO_COLOR": "1",
                    "CADRE_CONFIG": make_config(os.path.join(tmp, "config.json"), model.url)})
        run = lambda *a: subprocess.run([CTL(), *a], env=env, capture_output=True, text=True, timeout=60, cwd=tmp)
        try:
            r = run("status")
            self.assertEqual(r.returncode, 3)
            self.assertIn("no local cluster", r.stdout)
            model.script([{"text": "local answer"}])
            r = run("ask", "hello local")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, "local answer\n")
            r = run("--json", "status")
            st = json.loads(r.stdout)
            self.assertTrue(st["running"])
            self.assertEqual(st["nodes"], 1)
            self.assertEqual(st["node_list"][0]["workspace"], os.path.realpath(tmp))
            self.assertTrue(st["endpoints"][0].startswith("ipc://"))
            state = os.path.join(tmp, "xdg", "cadre")
            self.assertEqual(os.stat(state).st_mode & 0o777, 0o700)
            with open(os.path.join(state, "cluster.json")) as f:
                pids = json.load(f)
            r = run("down")
            self.assertEqual(r.returncode, 0, r.stderr)
            for key in ("broker_pid", "agentd_pid"):
                wait_until(lambda: not os.path.exists(f"/proc/{pids[key]}") or
                           open(f"/proc/{pids[key]}/stat").read().split()[2] == "Z", what=f"{key} to exit")
            self.assertEqual(run("status").returncode, 3)
        finally:
            run("down")
            model.stop()

    def test_broken_config_is_named(self):
        import tempfile
        tmp = tempfile.mkdtemp(prefix="cadre-badcfg-")
        cfg = os.path.join(tmp, "bad.json")
        with open(cfg, "w") as f:
            json.dump({"agents": {"main_agent": {"role": "main", "model": "m", "url": "http://x/v1",
                                                 "temperature": "hot"}}}, f)
        r = subprocess.run([os.environ["CADRE_BROKER_BIN"], "--bind", "tcp://127.0.0.1:*", "--state",
                            os.path.join(tmp, "s"), "--config", cfg], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.json", r.stderr)
        self.assertIn("agents.main_agent.temperature", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
