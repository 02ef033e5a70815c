"""Test harness: a real cluster on loopback (broker, agent daemons, scripted model server).

Everything runs as real processes: the broker and daemons built by meson, the
scripted OpenAI-compatible server (tests/model_server.py), and the real `cadre`
command. Waiting is on conditions (files, replies), with deadlines; never a
fixed sleep standing in for synchronisation.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))


def binary(env, name):
    path = os.environ.get(env)
    if not path:
        raise RuntimeError(f"{env} is not set (run the tests through meson test)")
    return path


BROKER = lambda: binary("CADRE_BROKER_BIN", "cadre-broker")
AGENTD = lambda: binary("CADRE_AGENTD_BIN", "cadre-agentd")
CTL = lambda: binary("CADRE_CTL_BIN", "cadre")
PROBE = lambda: binary("CADRE_PROBE_BIN", "cadre-probe")


def read_text(path):
    with open(path) as f:
        return f.read()


def wait_until(fn, timeout=10.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class ModelServer:
    def __init__(self, tmp, host="127.0.0.1", url_host=None):
        """Listens on host; agents reach it at url_host (default host)."""
        self.port_file = os.path.join(tmp, "model.port")
        with open(os.path.join(tmp, "model.log"), "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(SOURCE_ROOT, "tests", "model_server.py"), "--port", "0",
                 "--host", host, "--port-file", self.port_file], stdout=subprocess.DEVNULL, stderr=log)
        self.port = int(wait_until(lambda: os.path.exists(self.port_file) and read_text(self.port_file).strip(),
                                   what="model server port"))
        self.control = f"http://127.0.0.1:{self.port}"
        self.url = f"http://{url_host or host}:{self.port}"

    def _call(self, method, path, obj=None):
        data = json.dumps(obj).encode() if obj is not None else None
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def script(self, responses, default=None):
        body = {"responses": responses}
        if default is not None:
            body["default"] = default
        return self._call("POST", "/_script", body)

    def reset(self):
        return self._call("POST", "/_reset", {})

    def requests(self):
        return self._call("GET", "/_requests")["requests"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def make_config(path, url, stream=True, extra=None):
    """The seed's config shape, every profile on the scripted server."""
    roles = {"main": 0.7, "reviewer": 0.3, "researcher": 0.5, "implementer": 0.6, "tester": 0.4, "optimizer": 0.5}
    agents = {}
    for role, temp in roles.items():
        agents[f"{role}_agent"] = {
            "provider": "openai", "url": url + "/v1", "model": "big-model" if role == "main" else "small-model",
            "role": role, "temperature": temp, "max_tokens": 256, "stream": stream,
            "cost_per_1m_input": 6.0 if role == "main" else 1.0,
            "cost_per_1m_output": 12.0 if role == "main" else 2.0,
        }
    cfg = {"agents": agents,
           "spawning_rules": {"keywords": {"review": "reviewer_agent"}, "auto_spawn_on_keywords": False,
                              "require_confirmation": False},
           "max_concurrent_agents": 5}
    if extra:
        extra(cfg)
    # Tests not about approval run tools without asking (the default asks before writes and commands).
    cfg.setdefault("tools", {}).setdefault("approval", "never")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return path


class Cluster:
    """A broker, some agent daemons and a model server, all on 127.0.0.1."""

    def __init__(self, nodes=(("n1", 2), ("n2", 2)), stream=True, heartbeat_ms=200, config_extra=None,
                 agentd_env=None, secrets=None, bind="tcp://127.0.0.1:*", model_host="127.0.0.1", model_url_host=None,
                 broker_args=()):
        self.tmp = tempfile.mkdtemp(prefix="cadre-test-")
        self.state = os.path.join(self.tmp, "state")
        self.workspace = os.path.join(self.tmp, "ws")
        os.makedirs(self.workspace)
        self.model = ModelServer(self.tmp, model_host, model_url_host)
        self.config = make_config(os.path.join(self.tmp, "config.json"), self.model.url, stream, config_extra)
        self.heartbeat_ms = heartbeat_ms
        self.broker_args = tuple(broker_args)
        self.agentd_env = agentd_env or {}
        self.secrets = secrets
        self.broker = None
        self.endpoint = None
        self.daemons = {}
        self.start_broker(bind)
        for name, slots in nodes:
            self.start_node(name, slots)
        if nodes:
            self.wait_nodes(len(nodes))

    # -- processes --------------------------------------------------------
    def log(self, name):
        """A log file for a child process (the child keeps its own descriptor)."""
        return open(os.path.join(self.tmp, name + ".log"), "a")

    def start_broker(self, bind=None):
        ep_file = os.path.join(self.state, "endpoint")
        if os.path.exists(ep_file):
            os.unlink(ep_file)
        with self.log("broker") as log:
            self.broker = subprocess.Popen(
                [BROKER(), "--bind", bind or self.endpoint, "--state", self.state, "--config", self.config,
                 "--heartbeat-ms", str(self.heartbeat_ms), "--verbose", *self.broker_args],
                stdout=subprocess.DEVNULL, stderr=log)
        self.endpoint = wait_until(lambda: os.path.exists(ep_file) and read_text(ep_file).split("\n")[0],
                                   what="broker endpoint file")
        return self.broker

    def stop_broker(self, sig=signal.SIGTERM):
        self.broker.send_signal(sig)
        self.broker.wait(timeout=10)

    def kill_broker(self):
        """kill -9 of the broker (also when it is stopped with SIGSTOP)."""
        self.stop_broker(signal.SIGKILL)

    def start_node(self, name, slots=2, extra=(), prefix=(), endpoint=None, workspace=None):
        """prefix: a command the daemon runs under (e.g. ip netns exec NS); endpoint: the broker as it sees it;
        workspace: its own directory (default: the cluster's one workspace)."""
        env = dict(os.environ)
        env.update(self.agentd_env)
        args = [*prefix, AGENTD(), "--broker", endpoint or self.endpoint, "--name", name, "--slots", str(slots),
                "--workspace", workspace or self.workspace, "--key", self.key, "--broker-key", self.broker_pub,
                "--stall-timeout", "3", "--verbose"]
        if self.secrets:
            args += ["--secrets", self.secrets]
        with self.log("agentd-" + name) as log:
            p = subprocess.Popen(args + list(extra), stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.daemons[name] = p
        return p

    def kill_node(self, name, sig=signal.SIGKILL):
        p = self.daemons.pop(name)
        p.send_signal(sig)
        p.wait(timeout=10)

    @property
    def key(self):
        return os.path.join(self.state, "client.key")

    @property
    def broker_pub(self):
        return os.path.join(self.state, "broker.pub")

    def env(self):
        env = dict(os.environ)
        env.update({"CADRE_BROKER": self.endpoint, "CADRE_KEY": self.key, "CADRE_BROKER_KEY": self.broker_pub,
                    "XDG_STATE_HOME": os.path.join(self.tmp, "xdg"), "NO_COLOR": "1"})
        return env

    # -- the cadre command ------------------------------------------------
    def cadre(self, *args, timeout=60, check=False, stdin=None):
        r = subprocess.run([CTL(), *args], env=self.env(), capture_output=True, text=True, timeout=timeout,
                           stdin=stdin)
        if check and r.returncode != 0:
            raise AssertionError(f"cadre {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def cadre_bg(self, *args):
        return subprocess.Popen([CTL(), *args], env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def watch(self):
        """cadre --json watch, started and subscribed (its first line says so).
        A thread moves its lines into p.events (a queue) for watch_for."""
        import queue
        import threading
        p = self.cadre_bg("--json", "watch")
        first = json.loads(p.stdout.readline() or "{}")
        if first.get("type") != "watching":
            p.kill()
            raise AssertionError(f"cadre watch did not start: {first} {p.stderr.read()}")
        p.events = queue.Queue()

        def pump():
            for line in p.stdout:
                p.events.put(json.loads(line))
            p.events.put(None)
        threading.Thread(target=pump, daemon=True).start()
        return p

    def watch_for(self, watch, pred, timeout=20):
        """The first event of a watch for which pred is true (a deadline, not a sleep)."""
        import queue
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = watch.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                ev = None
            if ev is None:
                raise AssertionError("the awaited event did not come")
            if pred(ev):
                return ev

    def cadre_json(self, *args, timeout=60):
        r = self.cadre("--json", *args, timeout=timeout)
        lines = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        return r, lines

    def http(self):
        """The broker's HTTP listener (--http or --metrics): its base URL and the access token."""
        path = os.path.join(self.state, "metrics")
        url = wait_until(lambda: os.path.exists(path) and read_text(path).strip(), what="the metrics file")
        return url, read_text(os.path.join(self.state, "dashboard.token")).strip()

    def plan(self, pid):
        """cadre --json plan ID: the workflow, or {} when the broker does not answer."""
        r, out = self.cadre_json("plan", str(pid))
        return out[-1] if r.returncode == 0 and out else {}

    def nodes(self):
        r, lines = self.cadre_json("nodes")
        return lines[0] if r.returncode == 0 and lines else []

    def wait_nodes(self, n, timeout=15):
        return wait_until(lambda: len(self.nodes()) == n and self.nodes(), timeout, f"{n} nodes registered")

    def close(self):
        for p in list(self.daemons.values()):
            p.terminate()
        for p in list(self.daemons.values()):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.broker and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.broker.kill()
        self.model.stop()
        problems = self.sanitizer_reports()
        if os.environ.get("CADRE_KEEP_TMP") or problems:
            print("kept", self.tmp, file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise AssertionError("sanitizer reports in the daemons' logs:\n" + problems)

    def sanitizer_reports(self):
        """ASan/UBSan/LSan findings in any program's log (the sanitizer build writes them there)."""
        found = []
        for f in sorted(os.listdir(self.tmp)):
            if not f.endswith(".log") or f == "model.log":
                continue
            with open(os.path.join(self.tmp, f), errors="replace") as fh:
                text = fh.read()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                i = text.find(marker)
                if i >= 0:
                    found.append(f"--- {f}\n{text[max(0, i - 200):i + 3000]}")
        return "\n".join(found)

    def logs(self):
        out = []
        for f in sorted(os.listdir(self.tmp)):
            if f.endswith(".log"):
                out.append(f"--- {f}\n" + read_text(os.path.join(self.tmp, f))[-4000:])
        return "\n".join(out)
