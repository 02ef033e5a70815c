#!/usr/bin/env python3
"""The container path of deploy/README.md, for real: podman builds deploy/container/Containerfile and
runs a broker and two agent daemons from it on the host's loopback network (--network host), keys made
with the image's own `cadre keygen` (one node key, one controller key, roles in authorized_keys); the
image's `cadre` then asks the main agent, answered by the scripted model server on 127.0.0.1, and each
container's HEALTHCHECK passes. Then the systemd units for real: systemd as PID 1 in a container of the
image, deploy/README.md's "One host" block run as written (keys, settings, systemctl reload, enable
--now), a turn whose command runs under bubblewrap inside the hardened unit, and a draining stop.

    tests/deploy/test_container.py [--keep]      (root; podman, runc, debootstrap installed)

No registry is reachable here, so the Debian base image is made with debootstrap
(deploy/container/make-base-image; kept between runs). CONTAINERS_CONF defaults to
deploy/container/containers.conf (runc, cgroupfs, no default ulimits). Prints the image size and the
time taken; exits 0 when skipped (not root), with the reason.
"""
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONTAINER = os.path.join(ROOT, "deploy", "container")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import ModelServer, make_config, read_text, wait_until  # noqa: E402

BASE = "localhost/debian:bookworm"
IMAGE = "localhost/cadre:ci"
UID = 10001  # the image's cadre user
TAG = f"cadre-ci-{os.getpid()}"


def podman(*args, timeout=120, check=True):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def skip_reason():
    if os.geteuid() != 0:
        return "not root (podman with --network host and debootstrap need root here)"
    for tool in ("podman", "runc", "debootstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/install-deps --container)"
    return None


_built = []


def build_image():
    """localhost/cadre:ci from deploy/container/Containerfile (once per run)."""
    if _built:
        return
    os.environ.setdefault("CONTAINERS_CONF", os.path.join(CONTAINER, "containers.conf"))
    t = time.monotonic()
    r = subprocess.run([os.path.join(CONTAINER, "make-base-image")], capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        raise AssertionError("make-base-image failed:\n" + r.stdout + r.stderr)
    print(r.stdout.strip(), f"({time.monotonic() - t:.0f} s)", flush=True)
    t = time.monotonic()
    podman("build", "-q", "--format", "docker", "-f", os.path.join(CONTAINER, "Containerfile"),
           "--ignorefile", os.path.join(CONTAINER, "containerignore"), "--build-arg", "BASE=" + BASE,
           "-t", IMAGE, ROOT, timeout=1800)
    # the build cache of earlier runs (about 1 GB per build stage) goes; this run's stays
    podman("image", "prune", "-f", "--filter", "until=2h", check=False)
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip())
    print(f"image {IMAGE} built in {time.monotonic() - t:.0f} s: {size / 1e6:.0f} MB", flush=True)
    _built.append(True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_block(after):
    """The first ```sh block of deploy/README.md after the text `after`."""
    text = read_text(os.path.join(ROOT, "deploy", "README.md"))
    rest = text[text.index(after):]
    return rest.split("```sh\n", 1)[1].split("```\n", 1)[0]


class TestContainer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build_image()
        cls.tmp = tempfile.mkdtemp(prefix="cadre-container-")
        os.chmod(cls.tmp, 0o755)
        cls.names = []
        cls.model = ModelServer(cls.tmp)
        cls.config = make_config(os.path.join(cls.tmp, "config.json"), cls.model.url)
        os.chmod(cls.config, 0o644)
        cls.keys = cls.dir("keys")
        cls.state = cls.dir("state")
        cls.work = cls.dir("work")
        cls.make_keys()
        cls.start_broker()
        cls.start_agents()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "names", None):
            podman("rm", "-f", "-v", "-t", "5", *cls.names, check=False)
        if getattr(cls, "model", None):
            cls.model.stop()
        if "--keep" not in sys.argv and getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def dir(cls, name):
        path = os.path.join(cls.tmp, name)
        os.mkdir(path, 0o700)
        os.chown(path, UID, UID)
        return path

    @classmethod
    def run_image(cls, *args, timeout=60, check=True):
        """A one-off container of the image on the host network with the keys mounted."""
        return podman("run", "--rm", "--network", "host", "--health-cmd", "none", "-v", cls.keys + ":/keys",
                      IMAGE, *args, timeout=timeout, check=check)

    @classmethod
    def make_keys(cls):
        # deploy/README.md, "Several hosts": a broker key, a node key and a controller key, each line
        # printed by cadre keygen goes into the broker's authorized_keys
        out = json.loads(cls.run_image("cadre", "--json", "keygen", "/keys/broker.key").stdout)
        with open(os.path.join(cls.keys, "broker.pub"), "w") as f:
            f.write(out["public_key"] + "\n")
        lines = []
        for file, role, name in (("node.key", "node", "pool"), ("me.key", "controller", "ci")):
            r = cls.run_image("cadre", "keygen", "/keys/" + file, "--role", role, "--name", name)
            lines.append(r.stdout.splitlines()[0])
        with open(os.path.join(cls.keys, "authorized_keys"), "w") as f:
            f.write("\n".join(lines) + "\n")
        shutil.copy(os.path.join(cls.keys, "broker.key"), os.path.join(cls.state, "broker.key"))
        for d in (cls.keys, cls.state):
            for f in os.listdir(d):
                os.chown(os.path.join(d, f), UID, UID)

    @classmethod
    def start(cls, name, *args):
        full = f"{TAG}-{name}"
        cls.names.append(full)
        podman("run", "-d", "--name", full, "--network", "host", "--health-interval", "disable", *args)
        return full

    @classmethod
    def start_broker(cls):
        cls.broker = cls.start("broker", "-v", cls.state + ":/var/lib/cadre", "-v", cls.keys + ":/keys:ro",
                               "-v", cls.config + ":/etc/cadre/config.json:ro", IMAGE,
                               "cadre-broker", "--bind", "tcp://127.0.0.1:*", "--state", "/var/lib/cadre",
                               "--config", "/etc/cadre/config.json", "--authorized-keys", "/keys/authorized_keys",
                               "--metrics", "127.0.0.1:0", "--heartbeat-ms", "300")
        ep = os.path.join(cls.state, "endpoint")
        try:
            cls.endpoint = wait_until(lambda: os.path.exists(ep) and read_text(ep).split("\n")[0], timeout=20,
                                      what="the broker's endpoint file")
        except AssertionError:
            raise AssertionError("the broker did not start:\n" + podman("logs", cls.broker, check=False).stderr)

    @classmethod
    def start_agents(cls):
        cls.agents = []
        for node in ("c1", "c2"):
            cls.agents.append(cls.start(node, "-v", cls.keys + ":/keys:ro", "-v", cls.work + ":/work", IMAGE,
                                        "cadre-agentd", "--broker", cls.endpoint, "--name", node, "--slots", "2",
                                        "--key", "/keys/node.key", "--broker-key", "/keys/broker.pub",
                                        "--workspace", "/work"))

    def cadre(self, *args, timeout=60):
        return self.run_image("cadre", "--broker", self.endpoint, "--key", "/keys/me.key", "--broker-key",
                              "/keys/broker.pub", "--json", *args, timeout=timeout, check=False)

    def logs(self):
        return "\n".join(f"--- {n}\n" + podman("logs", n, check=False).stderr[-3000:] for n in self.names)

    def nodes(self):
        r = self.cadre("nodes")
        return sorted(n["name"] for n in json.loads(r.stdout)) if r.returncode == 0 and r.stdout.strip() else []

    def test_1_both_agent_daemons_register(self):
        try:
            wait_until(lambda: self.nodes() == ["c1", "c2"], timeout=30, what="nodes c1 and c2", interval=0.5)
        except AssertionError as e:
            self.fail(f"{e}\n{self.logs()}")

    def test_2_ask_is_answered_through_the_containers(self):
        wait_until(lambda: self.nodes() == ["c1", "c2"], timeout=30, what="nodes c1 and c2", interval=0.5)
        self.model.script([{"chunks": ["Answered ", "from ", "a ", "container."]}])
        r = self.cadre("ask", "Where are you?")
        events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        self.assertEqual(r.returncode, 0, r.stderr + self.logs())
        done = events[-1]
        self.assertEqual(done["event"], "done", events)
        self.assertEqual(done["text"], "Answered from a container.")
        self.assertIn(done["node"], ("c1", "c2"))
        self.assertEqual(self.model.requests()[-1]["body"]["model"], "big-model")

    def test_3_health_checks_pass(self):
        wait_until(lambda: self.nodes() == ["c1", "c2"], timeout=30, what="nodes c1 and c2", interval=0.5)
        for name in [self.broker] + self.agents:
            r = podman("healthcheck", "run", name, check=False)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stdout}{r.stderr}")
        # and it can fail: an agent daemon pointed at a port where no broker listens is unhealthy
        lone = self.start("lone", "-v", self.keys + ":/keys:ro", IMAGE, "cadre-agentd", "--broker",
                          "tcp://127.0.0.1:9", "--name", "lone", "--key", "/keys/node.key", "--broker-key",
                          "/keys/broker.pub", "--workspace", "/tmp")
        time.sleep(1)
        r = podman("healthcheck", "run", lone, check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_4_runs_as_the_cadre_user(self):
        r = podman("exec", self.broker, "id", "-u")
        self.assertEqual(r.stdout.strip(), str(UID))
        st = os.stat(os.path.join(self.state, "broker.pub"))
        self.assertEqual(st.st_uid, UID)

    def test_5_stopped_agent_daemons_drain_then_exit(self):
        """podman stop: the daemons (PID 1) drain on SIGTERM and exit once the running turn is done.

        PID 1 has no default action for SIGTERM: a daemon that did not handle it would be killed only
        by podman's SIGKILL, after the timeout, and its turn lost."""
        wait_until(lambda: self.nodes() == ["c1", "c2"], timeout=30, what="nodes c1 and c2", interval=0.5)
        self.model.reset()
        self.model.script([{"chunks": [f"w{i} " for i in range(12)], "delay_ms": 250}])
        ask = subprocess.Popen(["podman", "run", "--rm", "--network", "host", "--health-cmd", "none", "-v",
                                self.keys + ":/keys", IMAGE, "cadre", "--broker", self.endpoint, "--key",
                                "/keys/me.key", "--broker-key", "/keys/broker.pub", "--json", "ask", "slow"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: self.model.requests(), timeout=30, what="the model request")
            t = time.monotonic()
            stop = podman("stop", "-t", "60", *self.agents, timeout=90)
            took = time.monotonic() - t
            out, err = ask.communicate(timeout=60)
        finally:
            if ask.poll() is None:
                ask.kill()
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.assertEqual(events[-1]["event"], "done", f"{events[-3:]} {err}\n{self.logs()}")
        self.assertEqual(events[-1]["text"].split(), [f"w{i}" for i in range(12)])
        print(f"SIGTERM to exit of draining agent daemons (a turn running): {took:.1f} s", flush=True)
        self.assertLess(took, 30, stop.stderr)
        for name in self.agents:
            code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
            self.assertEqual(code, "0", name)


UNITS_IMAGE = "localhost/cadre:ci-systemd"


class TestSystemdUnits(unittest.TestCase):
    """deploy/systemd under systemd as PID 1 (a privileged container of the image, host network)."""

    @classmethod
    def setUpClass(cls):
        build_image()
        cls.name = None
        cls.tmp = tempfile.mkdtemp(prefix="cadre-units-")
        for unit in ("cadre-broker.service", "cadre-agentd@.service"):
            shutil.copy(os.path.join(ROOT, "deploy", "systemd", unit), cls.tmp)
        with open(os.path.join(cls.tmp, "Containerfile"), "w") as f:
            f.write(f"FROM {IMAGE}\nUSER root\n"
                    "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd systemd-sysv "
                    ">/dev/null && rm -rf /var/lib/apt/lists/* && mkdir -p /etc/cadre\n"
                    "RUN ln -s /usr/bin/cadre-broker /usr/bin/cadre-agentd /usr/bin/cadre /usr/local/bin/\n"
                    "COPY cadre-broker.service cadre-agentd@.service /etc/systemd/system/\n"
                    'CMD ["/lib/systemd/systemd"]\n')
        podman("build", "-q", "-t", UNITS_IMAGE, cls.tmp, timeout=900)
        cls.model = ModelServer(cls.tmp)
        cls.port = free_port()
        config = make_config(os.path.join(cls.tmp, "config.json"), cls.model.url)
        cls.name = f"{TAG}-systemd"
        podman("run", "-d", "--name", cls.name, "--privileged", "--systemd=always", "--network", "host",
               "--health-cmd", "none", UNITS_IMAGE)
        wait_until(lambda: cls.sh("systemctl is-system-running", check=False).stdout.strip() in
                   ("running", "degraded"), timeout=60, what="systemd up", interval=0.5)
        podman("cp", config, cls.name + ":/etc/cadre/config.json")
        # deploy/README.md "One host", the broker's part (its settings: a free port here)
        cls.sh("chmod 644 /etc/cadre/config.json && printf '%s\\n' "
               f"CADRE_BIND=tcp://127.0.0.1:{cls.port} CADRE_METRICS=127.0.0.1:0 "
               "'CADRE_BROKER_ARGS=--config /etc/cadre/config.json' > /etc/cadre/broker.env "
               "&& systemctl enable --now cadre-broker")
        wait_until(lambda: cls.sh("test -s /var/lib/cadre/authorized_keys", check=False).returncode == 0,
                   timeout=20, what="the broker's first start")

    @classmethod
    def tearDownClass(cls):
        if cls.name:
            podman("rm", "-f", "-v", "-t", "5", cls.name, check=False)
        if getattr(cls, "model", None):
            cls.model.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def sh(cls, script, check=True, timeout=60):
        return podman("exec", cls.name, "bash", "-c", script, timeout=timeout, check=check)

    def cadre(self, *args, timeout=60):
        return self.sh("cadre --broker tcp://127.0.0.1:%d --key /root/me.key --broker-key /etc/cadre/broker.pub "
                       "%s" % (self.port, " ".join(shlex.quote(a) for a in args)), check=False, timeout=timeout)

    def journal(self):
        return self.sh("journalctl --no-pager -n 60 -u cadre-broker -u 'cadre-agentd@*'", check=False).stdout

    def test_readme_one_host_then_a_turn_a_sandbox_and_a_drain(self):
        block = readme_block("Then the agent daemons, two here").replace("7700", str(self.port))
        r = self.sh("set -e\n" + block, check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.journal())
        self.sh("cadre keygen /root/me.key --role controller --name root | head -n 1 "
                ">> /var/lib/cadre/authorized_keys && systemctl reload cadre-broker")
        for n in ("n1", "n2"):
            self.assertEqual(self.sh(f"systemctl is-active cadre-agentd@{n}", check=False).stdout.strip(), "active",
                             self.journal())
        wait_until(lambda: "n2" in self.cadre("nodes").stdout and "n1" in self.cadre("nodes").stdout, timeout=20,
                   what="n1 and n2 registered", interval=0.5)
        # a command of the agent's, under bubblewrap, inside the hardened unit; the workspace is writable
        self.model.reset()
        cmd = ("bwrap --ro-bind / / --unshare-all --dev /dev --proc /proc --bind $PWD $PWD --chdir $PWD "
               "sh -c 'echo sandboxed > s.txt; cat s.txt'; touch /etc/cadre/x 2>&1 | grep -c Read-only")
        self.model.script([{"tool_calls": [{"name": "execute_bash", "arguments": {"command": cmd}}]},
                           {"text": "ran it"}])
        r = self.cadre("--json", "ask", "--yes", "run it")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.journal())
        result = json.dumps([json.loads(l) for l in r.stdout.splitlines() if l.strip()])
        self.assertIn("sandboxed", result)
        self.assertNotIn("bwrap:", result)
        node = json.loads(r.stdout.splitlines()[-1])["node"]
        self.assertEqual(self.sh(f"cat /srv/cadre/{node}/s.txt").stdout, "sandboxed\n")
        # systemctl stop during a turn: the daemons drain (KillMode=mixed), the turn finishes
        self.model.reset()
        self.model.script([{"chunks": [f"w{i} " for i in range(10)], "delay_ms": 250}])
        self.sh(f"(sleep 1; systemctl stop cadre-agentd@n1 cadre-agentd@n2) >/dev/null 2>&1 &")
        r = self.cadre("--json", "ask", "slow")
        done = json.loads(r.stdout.splitlines()[-1])
        self.assertEqual(done.get("text", "").split(), [f"w{i}" for i in range(10)], r.stdout + self.journal())
        wait_until(lambda: "drained in" in self.journal(), timeout=30, what="drained in the journal")
        self.assertEqual(self.sh("systemctl is-active cadre-broker").stdout.strip(), "active")


if __name__ == "__main__":
    started = time.monotonic()
    reason = skip_reason()
    if reason:
        print("container test skipped:", reason)
        sys.exit(0)
    argv = [a for a in sys.argv if a != "--keep"]
    result = unittest.main(argv=argv, verbosity=2, exit=False).result
    print(f"container test took {time.monotonic() - started:.0f} s")
    sys.exit(0 if result.wasSuccessful() else 1)
