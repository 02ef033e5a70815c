"""The local cluster as a user gets it: `cadre` with no broker, run in a directory.

Agents work where the user is (an agent daemon per workspace, started on
demand), errors in the config or secrets file are printed by cadre itself, a
failed start leaves nothing running, and status says whether both programs are
up. Real programs throughout: cadre, cadre-broker, cadre-agentd and the
scripted model server.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CTL, ModelServer, make_config, wait_until  # noqa: E402


def call(name, args, cid):
    return {"tool_calls": [{"id": cid, "name": name, "arguments": json.dumps(args)}]}


def tool_results(req):
    return {m["tool_call_id"]: m["content"] for m in req["body"]["messages"] if m["role"] == "tool"}


class Local:
    """A temporary home with its own state and config directories, and a model server."""

    def __init__(self, config_extra=None, config=True):
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix="cadre-local-"))
        self.model = ModelServer(self.tmp)
        self.state = os.path.join(self.tmp, "xdg", "cadre")
        self.config_home = os.path.join(self.tmp, "config-home")
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("CADRE_") or k.endswith("_BIN")}
        self._env.update({"XDG_STATE_HOME": os.path.join(self.tmp, "xdg"), "HOME": self.tmp, "NO_COLOR": "1",
                          "XDG_CONFIG_HOME": self.config_home})
        if config:
            self._env["CADRE_CONFIG"] = make_config(os.path.join(self.tmp, "config.json"), self.model.url,
                                                    extra=config_extra)

    def env(self):
        return dict(self._env)

    def dir(self, *parts, git=False):
        d = os.path.join(self.tmp, *parts)
        os.makedirs(d, exist_ok=True)
        if git:
            os.makedirs(os.path.join(d, ".git"), exist_ok=True)
        return d

    def cadre(self, *args, cwd=None, env=None, timeout=60):
        e = self.env()
        e.update(env or {})
        return subprocess.run([CTL(), *args], env=e, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.tmp)

    def cluster(self):
        try:
            with open(os.path.join(self.state, "cluster.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def processes(self):
        """Pids of programs whose command line names our state directory."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
                with open(f"/proc/{pid}/stat") as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                continue
            if self.state in cmd and not zombie:
                found.append(int(pid))
        return found

    def sanitizer_reports(self):
        """ASan/UBSan/LSan findings in the programs' logs (the sanitizer build writes them there)."""
        found = []
        for f in sorted(os.listdir(self.state)) if os.path.isdir(self.state) else []:
            if f.endswith(".log"):
                with open(os.path.join(self.state, f), errors="replace") as fh:
                    text = fh.read()
                found += [f"--- {f}\n{text[text.find(m):][:3000]}" for m in
                          ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:") if m in text]
        return "\n".join(found)

    def close(self):
        """Stops everything; raises when a program's log holds a sanitizer report."""
        self.cadre("down")
        for pid in self.processes():
            os.kill(pid, signal.SIGKILL)
        self.model.stop()
        problems = self.sanitizer_reports()
        if not os.environ.get("CADRE_KEEP_TMP") and not problems:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise AssertionError(f"sanitizer reports (kept {self.tmp}):\n{problems}")


class Workspaces(unittest.TestCase):
    """cd A; cadre ask; cd B; cadre ask: each runs where it was asked."""

    def setUp(self):
        self.l = Local()

    def tearDown(self):
        self.l.close()

    def pwd(self, cwd, cid):
        self.l.model.script([call("execute_bash", {"command": "pwd"}, cid), {"text": "ran it"}])
        r = self.l.cadre("ask", "run pwd", cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        return tool_results(self.l.model.requests()[-1])[cid].strip()

    def test_pwd_answers_each_directory(self):
        a = self.l.dir("A")
        b = self.l.dir("B", git=True)
        sub = self.l.dir("B", "src", "deep")
        self.assertIn(a, self.pwd(a, "p1"))
        # Inside a repository the workspace is its root, wherever cadre runs in it.
        self.assertIn(b, self.pwd(sub, "p2"))
        self.assertNotIn(a, self.pwd(sub, "p3"))
        # Back in A: still A, on the same cluster.
        self.assertIn(a, self.pwd(a, "p4"))
        info = self.l.cluster()
        self.assertEqual(sorted(x["workspace"] for x in info["agents"]), [a, b])
        self.assertEqual(info["workspace"], a)  # the first daemon's, as before
        r = self.l.cadre("--json", "status")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        st = json.loads(r.stdout)
        self.assertTrue(st["healthy"])
        self.assertEqual(sorted(n["workspace"] for n in st["node_list"]), [a, b])
        self.assertEqual({(x["workspace"], x["running"], x["registered"]) for x in st["local"]["agents"]},
                         {(a, True, True), (b, True, True)})
        r = self.l.cadre("status", cwd=a)
        self.assertRegex(r.stdout, rf"cadre-agentd +pid \d+, running, node \S+, workspace {a}\n")
        self.assertRegex(r.stdout, rf"cadre-agentd +pid \d+, running, node \S+, workspace {b}\n")
        self.assertRegex(r.stdout, r"cadre-broker +pid \d+, running")

    def test_commands_at_once_share_one_broker(self):
        dirs = [self.l.dir(n) for n in ("A", "B", "A", "B")]
        procs = [subprocess.Popen([CTL(), "up"], env=self.l.env(), cwd=d, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for d in dirs]
        for p in procs:
            self.assertEqual(p.wait(timeout=60), 0, p.stderr.read())
            p.stderr.close()
        info = self.l.cluster()
        self.assertEqual(sorted(a["workspace"] for a in info["agents"]), sorted(set(dirs)))
        self.assertEqual(sorted(self.l.processes()), sorted([info["broker_pid"]] + [a["pid"] for a in info["agents"]]))

    def test_sub_agent_works_in_its_parents_workspace(self):
        a = self.l.dir("A")
        b = self.l.dir("B")
        self.pwd(a, "p0")
        summary = "[SUMMARY]\nStatus: PASS\nKey Points:\n- ran pwd\nRecommendation: -\n[/SUMMARY]"
        self.l.model.script([call("execute_bash", {"command": "pwd"}, "s1"), {"text": summary}])
        r = self.l.cadre("--json", "spawn", "tester", "run pwd", "--wait", cwd=b)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b, tool_results(self.l.model.requests()[-1])["s1"])

    def test_approval_names_the_workspace(self):
        self.l.close()
        self.l = Local(config_extra=lambda cfg: cfg.update({"tools": {"approval": "mutating"}}))
        b = self.l.dir("B")
        self.l.model.script([call("execute_bash", {"command": "pwd"}, "x"), {"text": "asked"}])
        r = self.l.cadre("--json", "ask", "run pwd", cwd=b)
        self.assertEqual(r.returncode, 0, r.stderr)
        need = [json.loads(l) for l in r.stdout.splitlines() if '"approval_needed"' in l]
        self.assertTrue(need, r.stdout)
        self.assertEqual(need[0]["workspace"], b)


class Errors(unittest.TestCase):
    """A broken file is named by cadre, with what to do; nothing is left running."""

    def setUp(self):
        self.l = Local(config=False)

    def tearDown(self):
        self.l.close()

    def assert_nothing_runs(self):
        self.assertIsNone(self.l.cluster())
        self.assertFalse(os.path.exists(os.path.join(self.l.state, "endpoint")))
        wait_until(lambda: not self.l.processes(), 10, "no program of the cluster to run")
        self.assertEqual(self.l.cadre("status").returncode, 3)

    def test_broken_files_are_printed_with_line_and_advice(self):
        good = {"agents": {"main": {"provider": "openai", "url": self.l.model.url + "/v1", "model": "m",
                                    "role": "main"}}}
        bad_value = json.loads(json.dumps(good))
        bad_value["agents"]["main"]["temperature"] = "hot"
        unknown = {"agents": {"main": {"provider": "nosuch", "model": "m", "role": "main"}}}
        cases = [
            # name, file, content, option, texts the message must hold
            ("syntax", "bad.json", '{"agents": {"main": {"provider": "ollama",, }}}', "--config",
             ["bad.json:1:43: JSON syntax error", "cadre up --config FILE", "nothing was started"]),
            ("bad value", "value.json", json.dumps(bad_value), "--config",
             ["value.json", "agents.main.temperature", "cadre up --config FILE"]),
            ("unknown provider", "prov.json", json.dumps(unknown), "--config",
             ["prov.json", "agents.main.url", "nosuch", "give one"]),
            ("secrets syntax", "secrets.json", '{"openai_api_key": "sk-x",\n}', "--secrets",
             ["secrets.json: line 2, column 1", "cadre up --secrets FILE"]),
            ("secrets value", "secrets2.json", '{"openai_api_key": 5}', "--secrets",
             ["secrets2.json", "openai_api_key", "cadre up --secrets FILE"]),
        ]
        for name, fname, content, opt, texts in cases:
            with self.subTest(name):
                path = os.path.join(self.l.tmp, fname)
                with open(path, "w") as f:
                    f.write(content)
                r = self.l.cadre("up", opt, path)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                for t in texts:
                    self.assertIn(t, r.stderr)
                self.assertNotIn("see ", r.stderr)  # no "see broker.log"
                self.assert_nothing_runs()

    def fake(self, name, message):
        path = os.path.join(self.l.tmp, name)
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\necho '2026-01-01T00:00:00.000Z {name} error: {message}' >&2\nexit 1\n")
        os.chmod(path, 0o755)
        return path

    def test_a_daemon_that_fails_takes_the_broker_down_with_it(self):
        r = self.l.cadre("ask", "hi", env={"CADRE_AGENTD_BIN": self.fake("cadre-agentd", "workspace is on fire")})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the agent daemon for", r.stderr)
        self.assertIn("  cadre-agentd error: workspace is on fire\n", r.stderr)  # its log, without the timestamp
        self.assert_nothing_runs()

    def test_a_daemon_that_fails_on_a_running_cluster_is_forgotten(self):
        self.l._env["CADRE_CONFIG"] = make_config(os.path.join(self.l.tmp, "config.json"), self.l.model.url)
        a, b = self.l.dir("A"), self.l.dir("B")
        self.assertEqual(self.l.cadre("up", cwd=a).returncode, 0)
        r = self.l.cadre("ask", "hi", cwd=b, env={"CADRE_AGENTD_BIN": self.fake("cadre-agentd", "no room")})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"the agent daemon for {b} did not start", r.stderr)
        self.assertEqual([x["workspace"] for x in self.l.cluster()["agents"]], [a])
        r = self.l.cadre("status", cwd=b)
        self.assertEqual(r.returncode, 0, r.stdout)  # A's cluster is whole; B was never served
        self.assertEqual(len(self.l.processes()), 2)

    def test_a_broker_that_fails_says_why(self):
        r = self.l.cadre("up", env={"CADRE_BROKER_BIN": self.fake("cadre-broker", "state.db: disk I/O error")})
        self.assertEqual(r.returncode, 1)
        self.assertIn("the broker did not start", r.stderr)
        self.assertIn("  cadre-broker error: state.db: disk I/O error\n", r.stderr)
        self.assert_nothing_runs()

    def test_status_is_healthy_only_when_both_programs_are_up(self):
        r = self.l.cadre("up")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.l.cadre("status").returncode, 0)
        pid = self.l.cluster()["agentd_pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pid not in self.l.processes(), what="agentd to die")
        r = self.l.cadre("status")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("NOT RUNNING", r.stdout)
        self.assertIn("NOT HEALTHY", r.stdout)
        st = json.loads(self.l.cadre("--json", "status").stdout)
        self.assertFalse(st["healthy"])
        # cadre up in that directory starts it again.
        r = self.l.cadre("up")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotEqual(self.l.cluster()["agentd_pid"], pid)
        self.assertEqual(self.l.cadre("status").returncode, 0)

    def test_xdg_config_home_is_where_files_are_read(self):
        # A broken file under ~/.config must not be read when XDG_CONFIG_HOME says elsewhere.
        home_cfg = self.l.dir(".config", "cadre")
        with open(os.path.join(home_cfg, "config.json"), "w") as f:
            f.write("{broken")
        xdg = self.l.dir("config-home", "cadre")
        make_config(os.path.join(xdg, "config.json"), self.l.model.url)
        with open(os.path.join(xdg, "secrets.json"), "w") as f:
            f.write('{"openai_api_key": [1]}')
        r = self.l.cadre("ask", "hi")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(os.path.join(xdg, "secrets.json"), r.stderr)
        self.assert_nothing_runs()
        with open(os.path.join(xdg, "secrets.json"), "w") as f:
            f.write('{"openai_api_key": "sk-test"}')
        self.l.model.script([{"text": "from xdg"}])
        r = self.l.cadre("ask", "hi")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "from xdg\n")
        st = json.loads(self.l.cadre("--json", "status").stdout)
        self.assertEqual(st["config"], os.path.join(xdg, "config.json"))
        self.assertEqual(st["local"]["secrets"], os.path.join(xdg, "secrets.json"))
        # The key from that file reached the model server.
        self.assertEqual(self.l.model.requests()[-1]["authorization_sha256"],
                         hashlib.sha256(b"Bearer sk-test").hexdigest())


class ConsoleWorkspace(unittest.TestCase):
    """The console's banner and its approval prompts name the workspace it works in."""

    def test_banner_and_approval_name_the_workspace(self):
        from test_console import Terminal
        l = Local(config_extra=lambda cfg: cfg.update({"tools": {"approval": "mutating"}}))
        d = l.dir("proj", git=True)
        sub = l.dir("proj", "lib")
        here = os.getcwd()
        t = None
        try:
            os.chdir(sub)  # tmux starts the console in the client's directory
            t = Terminal(l, "ws")
            os.chdir(here)
            t.wait_text(f"workspace {d} · broker ipc://")
            l.model.script([call("execute_bash", {"command": "pwd"}, "c"), {"text": "done here"}])
            t.type("run pwd")
            t.wait_text("wants to run execute_bash")
            t.wait_text(f" in {d} (waiting for approval)")
            t.wait("the question", lambda: t.last_line() == "allow it? [y] once, [a] this session, [n] no:")
            t.type("y")
            t.wait_text("done here")
            self.assertIn(d, tool_results(l.model.requests()[-1])["c"])
        finally:
            os.chdir(here)
            if t:
                t.tmux("kill-server")
            l.close()

    def test_cadre_ask_in_a_terminal_names_the_workspace_when_it_asks(self):
        from test_console import Terminal
        l = Local(config_extra=lambda cfg: cfg.update({"tools": {"approval": "mutating"}}))
        d = l.dir("proj")
        here = os.getcwd()
        t = None
        try:
            l.model.script([call("execute_bash", {"command": "pwd"}, "c"), {"text": "ran"}])
            os.chdir(d)
            t = Terminal(l, "ask", args=("ask", "run pwd"))
            os.chdir(here)
            t.wait_text(f" in {d}\n$ pwd\nAllow? [y] once, [a] execute_bash for this session, [N] no:")
            t.type("y")
            self.assertEqual(t.wait_exit(), 0, t.history())
            self.assertIn(d, tool_results(l.model.requests()[-1])["c"])
        finally:
            os.chdir(here)
            if t:
                t.tmux("kill-server")
            l.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
