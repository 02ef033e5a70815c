"""deploy/: each artefact checked with its real tool, and against the programs' real flags.

- systemd units: `systemd-analyze verify`, and `systemd-analyze security --offline=yes` at or below the
  exposure level deploy/README.md states;
- Kubernetes: `kubectl kustomize deploy/k8s` renders; every flag the containers pass is in the program's
  --help; ports, Service, key paths and Secrets agree; the probe path answers on a real broker started
  with the manifest's --metrics; the queue-depth HPA renders and names a metric the broker serves;
- compose: parses (PyYAML); commands use real flags; key paths are on the volumes mounted;
- Containerfile: its command's flags are real, the runtime packages exist in Debian 12 (apt-cache).

The container itself is built and run by tests/deploy/test_container.py (a CI step of its own).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(ROOT, "deploy")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import AGENTD, BROKER, CTL, read_text, wait_until  # noqa: E402

try:
    import yaml
except ImportError:  # python3-yaml (scripts/install-deps --test)
    yaml = None

PROGRAMS = {"cadre-broker": BROKER, "cadre-agentd": AGENTD, "cadre": CTL}
# Flags whose value is a path the program reads or writes.
PATH_FLAGS = ("--state", "--config", "--authorized-keys", "--key", "--broker-key", "--secrets", "--workspace")
_help_cache = {}


def real_flags(program):
    """Every --flag the program's --help names (the flags it really has)."""
    if program not in _help_cache:
        # Under the sanitizer build a leak report at exit would swallow the buffered --help text (LSan
        # exits before stdio is flushed): leaks are not what this asks about.
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        r = subprocess.run([PROGRAMS[program](), "--help"], capture_output=True, text=True, timeout=10, env=env)
        _help_cache[program] = set(re.findall(r"--[a-z][a-z0-9-]*", r.stdout + r.stderr))
        assert "--help" in _help_cache[program], f"{program} --help printed no flags: {r.stdout}{r.stderr}"
    return _help_cache[program]


def parse_args(argv):
    """{flag: value} from ['--a=x', '--b', 'y', '--c'] (flags of cadre-* take one value or none)."""
    out, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            out[k] = v
        elif a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("-"):
                out[a] = nxt
                i += 1
            else:
                out[a] = None
        i += 1
    return out


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def under(path, mounts):
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


class FlagsMixin:
    def assert_real_flags(self, program, argv, where):
        self.assertIn(program, PROGRAMS, f"{where}: runs {program!r}, not a Cadre program")
        unknown = sorted(set(f.split("=", 1)[0] for f in argv if f.startswith("--")) - real_flags(program))
        self.assertEqual(unknown, [], f"{where}: {program} has no such flags: {unknown}")


class TestSystemd(unittest.TestCase, FlagsMixin):
    UNITS = {"cadre-broker.service": "cadre-broker", "cadre-agentd@.service": "cadre-agentd"}

    @classmethod
    def setUpClass(cls):
        if not shutil.which("systemd-analyze"):
            raise unittest.SkipTest("systemd-analyze is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="cadre-units-")
        cls.copies = {}
        for unit, program in cls.UNITS.items():
            text = read_text(os.path.join(DEPLOY, "systemd", unit))
            # verify checks that ExecStart's binary exists: point it at the built one
            text = text.replace(f"/usr/local/bin/{program} ", PROGRAMS[program]() + " ")
            name = unit.replace("@.", "@n1.")
            path = os.path.join(cls.tmp, name)
            with open(path, "w") as f:
                f.write(text)
            cls.copies[unit] = path

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def verify(self, path):
        return subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60,
                              cwd=os.path.dirname(path))

    def test_units_verify_clean(self):
        for unit, path in self.copies.items():
            r = self.verify(path)
            self.assertEqual((r.returncode, r.stderr.strip()), (0, ""), f"systemd-analyze verify {unit}")

    def test_verify_catches_a_misspelt_directive(self):
        # proof that the check above can fail
        bad = os.path.join(self.tmp, "cadre-bad.service")
        with open(bad, "w") as f:
            f.write(read_text(self.copies["cadre-broker.service"]).replace("LockPersonality=", "LockPersonalty="))
        r = self.verify(bad)
        self.assertIn("Unknown key", r.stderr)

    def test_exposure_at_most_what_the_readme_says(self):
        readme = read_text(os.path.join(DEPLOY, "README.md"))
        stated = {u: float(v) for v, u in re.findall(r"\*\*(\d+\.\d) \w+\*\*\s+for\s+`([\w@.-]+)`", readme)}
        for unit, path in self.copies.items():
            name = os.path.basename(path)
            r = subprocess.run(["systemd-analyze", "security", "--offline=yes", path], capture_output=True,
                               text=True, timeout=60, cwd=self.tmp)
            m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
            self.assertIsNotNone(m, r.stdout[-2000:] + r.stderr)
            self.assertIn(unit, stated, f"deploy/README.md states no exposure level for `{unit}`")
            print(f"{name}: exposure {m.group(1)} (README: {stated[unit]})")
            self.assertLessEqual(float(m.group(1)), stated[unit], f"{unit} is more exposed than README says")

    def test_exec_lines_use_real_flags(self):
        for unit, program in self.UNITS.items():
            text = read_text(os.path.join(DEPLOY, "systemd", unit))
            lines = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("ExecStart=")]
            self.assertEqual(len(lines), 1, unit)
            argv = shlex.split(lines[0])
            self.assertEqual(os.path.basename(argv[0]), program, unit)
            # and the flags the settings file examples pass in CADRE_*_ARGS
            extra = [f for l in text.splitlines() if "_ARGS=" in l for f in re.findall(r"--[a-z][a-z0-9-]*", l)]
            self.assertTrue(extra, unit)
            self.assert_real_flags(program, argv[1:] + extra, unit)


    def test_stop_waits_for_the_drain(self):
        text = read_text(os.path.join(DEPLOY, "systemd", "cadre-agentd@.service"))
        drain = int(re.search(r"CADRE_DRAIN_TIMEOUT=(\d+)", text).group(1))
        stop = int(re.search(r"(?m)^TimeoutStopSec=(\d+)s?$", text).group(1))
        self.assertIn("--drain-timeout ${CADRE_DRAIN_TIMEOUT}", text)
        self.assertGreater(stop, drain)
        # SIGTERM to the daemon only: the commands its running turns started go on until it exits
        self.assertRegex(text, r"(?m)^KillMode=mixed$")


def kustomize(path):
    r = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path}: {r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


class TestKubernetes(unittest.TestCase, FlagsMixin):
    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        if not shutil.which("kubectl"):
            raise unittest.SkipTest("kubectl is not installed (package kubernetes-client)")
        cls.objs = kustomize(os.path.join(DEPLOY, "k8s"))
        cls.by_kind = {}
        for o in cls.objs:
            cls.by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o

    def one(self, kind, name):
        self.assertIn(name, self.by_kind.get(kind, {}), f"no {kind} {name} in the rendered manifests")
        return self.by_kind[kind][name]

    def cadre_containers(self, obj):
        return [c for c in pod_spec(obj)["containers"] if c["args"][0] in PROGRAMS]

    def test_every_flag_is_real(self):
        n = 0
        for kind in ("StatefulSet", "Deployment"):
            for name, obj in self.by_kind.get(kind, {}).items():
                for c in pod_spec(obj)["containers"]:
                    self.assert_real_flags(c["args"][0], c["args"][1:], f"{kind}/{name}/{c['name']}")
                    n += 1
        self.assertEqual(n, 2)

    def test_broker_ports_service_and_probes(self):
        sts = self.one("StatefulSet", "cadre-broker")
        self.assertEqual(sts["spec"]["replicas"], 1)
        (c,) = self.cadre_containers(sts)
        args = parse_args(c["args"][1:])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(port_of(args["--bind"]), ports["cadre"])
        self.assertEqual(port_of(args["--metrics"]), ports["metrics"])
        self.assertTrue(args["--metrics"].startswith("0.0.0.0:"), "probes come from outside the pod")
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            self.assertEqual((get["path"], get["port"]), ("/healthz", "metrics"), probe)
        svc = self.one("Service", sts["spec"]["serviceName"])
        self.assertEqual(svc["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
        for p in svc["spec"]["ports"]:
            self.assertIn(p["targetPort"], ports)
            self.assertEqual(p["port"], ports[p["targetPort"]])

    def test_broker_state_on_a_claimed_volume(self):
        sts = self.one("StatefulSet", "cadre-broker")
        (c,) = self.cadre_containers(sts)
        state = parse_args(c["args"][1:])["--state"]
        claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
        mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        self.assertIn(mounted.get(state), claims, f"--state {state} is not on a volume claim")

    def key_paths_check(self, obj, secret_files):
        """Every path flag lies on a mount; key flags come from a Secret (directly or copied by an
        init container from a Secret)."""
        spec = pod_spec(obj)
        vols = {v["name"]: v for v in spec["volumes"]}
        vols.update({t["metadata"]["name"]: {"claim": True} for t in obj["spec"].get("volumeClaimTemplates", [])})
        (c,) = self.cadre_containers(obj)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        copied = {}
        for ic in spec.get("initContainers", []):
            cmd = ic["command"]
            self.assertEqual(cmd[:3], ["install", "-m", "0600"], ic["name"])
            icm = {m["mountPath"]: m["name"] for m in ic["volumeMounts"]}
            src_mount = [p for p in icm if cmd[3].startswith(p + "/")]
            self.assertTrue(src_mount and "secret" in vols[icm[src_mount[0]]], f"{cmd[3]} is not from a Secret")
            secret_files.setdefault(vols[icm[src_mount[0]]]["secret"]["secretName"], set()).add(
                os.path.basename(cmd[3]))
            dst_mount = [p for p in icm if cmd[4].startswith(p + "/")]
            self.assertTrue(dst_mount and dst_mount[0] in mounts and mounts[dst_mount[0]] == icm[dst_mount[0]],
                            f"{cmd[4]} is not on a volume the daemon mounts too")
            copied[cmd[4]] = True
        args = parse_args(c["args"][1:])
        for flag in PATH_FLAGS:
            if flag not in args:
                continue
            path = args[flag]
            self.assertTrue(under(path, mounts), f"{obj['metadata']['name']}: {flag} {path} is on no mount")
            if flag in ("--key", "--broker-key", "--authorized-keys") and path not in copied:
                mp = [p for p in mounts if path.startswith(p + "/")][0]
                self.assertIn("secret", vols[mounts[mp]], f"{flag} {path} is not from a Secret")
                secret_files.setdefault(vols[mounts[mp]]["secret"]["secretName"], set()).add(os.path.basename(path))

    def test_keys_come_from_secrets(self):
        files = {}
        self.key_paths_check(self.one("StatefulSet", "cadre-broker"), files)
        self.key_paths_check(self.one("Deployment", "cadre-agent-pool"), files)
        # the Secrets README tells the user to create, with the files they must hold
        self.assertEqual(files, {"cadre-broker-keys": {"broker.key", "authorized_keys"},
                                 "cadre-node-key": {"node.key", "broker.pub"}})
        readme = read_text(os.path.join(DEPLOY, "README.md"))
        for secret, names in files.items():
            line = [l for l in readme.splitlines() if "create secret generic " + secret in l]
            self.assertTrue(line, f"README does not create {secret}")
            for n in names:
                self.assertIn(n, line[0], f"README's {secret} lacks {n}")

    def test_agents_reach_the_broker_service(self):
        dep = self.one("Deployment", "cadre-agent-pool")
        (c,) = self.cadre_containers(dep)
        args = parse_args(c["args"][1:])
        self.assertIn("--broker-key", args)
        ep = args["--broker"]
        m = re.fullmatch(r"tcp://([a-z0-9-]+):(\d+)", ep)
        self.assertIsNotNone(m, ep)
        svc = self.one("Service", m.group(1))
        self.assertIn(int(m.group(2)), [p["port"] for p in svc["spec"]["ports"]])
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe]["exec"]["command"], ["/usr/bin/cadre-healthcheck"])
        containerfile = read_text(os.path.join(DEPLOY, "container", "Containerfile"))
        self.assertIn("COPY deploy/container/healthcheck /usr/bin/cadre-healthcheck", containerfile)

    def test_grace_period_outlasts_the_drain(self):
        dep = self.one("Deployment", "cadre-agent-pool")
        (c,) = self.cadre_containers(dep)
        drain = int(parse_args(c["args"][1:])["--drain-timeout"])
        self.assertGreater(pod_spec(dep)["terminationGracePeriodSeconds"], drain)

    def test_probe_path_answers_on_a_real_broker(self):
        (c,) = self.cadre_containers(self.one("StatefulSet", "cadre-broker"))
        path = c["livenessProbe"]["httpGet"]["path"]
        tmp = tempfile.mkdtemp(prefix="cadre-k8s-")
        state = os.path.join(tmp, "state")
        p = subprocess.Popen([BROKER(), "--bind", "tcp://127.0.0.1:*", "--state", state, "--metrics", "127.0.0.1:0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            f = os.path.join(state, "metrics")
            url = wait_until(lambda: os.path.exists(f) and read_text(f).strip(), what="the metrics file")
            with urllib.request.urlopen(url + path, timeout=5) as r:
                self.assertEqual(r.status, 200)
            # /metrics needs the dashboard token (a scraper sends it as a bearer token).
            token = read_text(os.path.join(state, "dashboard.token")).strip()
            req = urllib.request.Request(url + "/metrics", headers={"Authorization": "Bearer " + token})
            with urllib.request.urlopen(req, timeout=5) as r:
                metrics = r.read().decode()
        finally:
            p.terminate()
            p.wait(timeout=10)
            shutil.rmtree(tmp, ignore_errors=True)
        # the series the HPA's adapter rule reads
        hpa = read_text(os.path.join(DEPLOY, "k8s", "hpa-queue-depth.yaml"))
        series = re.search(r"seriesQuery: '(\w+)\{state=\"queued\"\}'", hpa).group(1)
        self.assertIn(series + '{state="queued"}', metrics)

    def test_the_queue_depth_autoscaler_renders(self):
        tmp = tempfile.mkdtemp(prefix="cadre-k8s-")
        try:
            shutil.copytree(os.path.join(DEPLOY, "k8s"), os.path.join(tmp, "k8s"))
            k = os.path.join(tmp, "k8s", "kustomization.yaml")
            text = read_text(k)
            self.assertIn("# - hpa-queue-depth.yaml", text)
            with open(k, "w") as f:
                f.write(text.replace("# - hpa-queue-depth.yaml", "- hpa-queue-depth.yaml"))
            objs = kustomize(os.path.join(tmp, "k8s"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (hpa,) = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
        target = hpa["spec"]["scaleTargetRef"]
        self.one(target["kind"], target["name"])


class TestCompose(unittest.TestCase, FlagsMixin):
    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        with open(os.path.join(DEPLOY, "compose", "compose.yaml")) as f:
            cls.doc = yaml.safe_load(f)
        cls.services = cls.doc["services"]

    def test_services(self):
        agents = [s for s in self.services if s.startswith("agent-")]
        self.assertIn("broker", self.services)
        self.assertGreaterEqual(len(agents), 2)
        self.assertEqual(self.services["ollama"]["profiles"], ["ollama"])
        names = [parse_args(self.services[a]["command"])["--name"] for a in agents]
        self.assertEqual(len(set(names)), len(names), "node names must differ")
        for a in agents:
            self.assertEqual(self.services[a]["depends_on"]["broker"]["condition"], "service_healthy")

    def test_commands_use_real_flags_and_mounted_paths(self):
        for name, svc in self.services.items():
            if "command" not in svc:
                continue
            cmd = svc["command"]
            self.assert_real_flags(cmd[0], cmd[1:], f"compose service {name}")
            mounts = [v.split(":")[1] for v in svc.get("volumes", [])]
            if cmd[0] == "cadre-agentd":  # its default broker key is the local cluster's, not beside --key
                self.assertIn("--broker-key", cmd, name)
            for flag, path in parse_args(cmd[1:]).items():
                if flag in PATH_FLAGS:
                    self.assertTrue(under(path, mounts), f"{name}: {flag} {path} is on no volume")
                    if flag == "--config":
                        src = [v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == path][0]
                        json.loads(read_text(os.path.join(DEPLOY, "compose", src)))

    def test_stop_grace_outlasts_the_drain(self):
        for name, svc in self.services.items():
            if name.startswith("agent-"):
                drain = int(parse_args(svc["command"][1:])["--drain-timeout"])
                grace = int(re.fullmatch(r"(\d+)s", svc["stop_grace_period"]).group(1))
                self.assertGreater(grace, drain, name)

    def test_agents_reach_the_broker(self):
        broker = parse_args(self.services["broker"]["command"][1:])
        for name, svc in self.services.items():
            if name.startswith("agent-"):
                ep = svc["environment"]["CADRE_BROKER"]
                self.assertEqual(ep, f"tcp://broker:{port_of(broker['--bind'])}")


class TestContainerfile(unittest.TestCase, FlagsMixin):
    def setUp(self):
        self.text = read_text(os.path.join(DEPLOY, "container", "Containerfile"))

    def test_command_flags_and_ports(self):
        cmd = json.loads(re.search(r"^CMD (\[.*\])$", self.text, re.M).group(1))
        self.assert_real_flags(cmd[0], cmd[1:], "Containerfile CMD")
        args = parse_args(cmd[1:])
        exposed = {int(p) for p in re.search(r"^EXPOSE (.*)$", self.text, re.M).group(1).split()}
        self.assertEqual(exposed, {port_of(args["--bind"]), port_of(args["--metrics"])})
        self.assertRegex(self.text, r"(?m)^USER 10001:10001$")
        self.assertRegex(self.text, r"(?m)^HEALTHCHECK .*cadre-healthcheck")

    def test_runtime_packages_exist_in_debian(self):
        if not shutil.which("apt-cache"):
            self.skipTest("no apt-cache")
        runtime = self.text.split("\nFROM ${BASE}\n", 1)[1]
        block = re.search(r"apt-get install -y -qq --no-install-recommends \\\n(.*?)>/dev/null", runtime, re.S)
        pkgs = block.group(1).replace("\\", " ").split()
        self.assertIn("libmsgpackc2", pkgs)
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", *pkgs], capture_output=True, text=True)
        found = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
        self.assertEqual(sorted(set(pkgs) - found), [], "not Debian packages")

    def test_build_stage_has_every_build_dependency(self):
        # scripts/install-deps (the main job's list) names what the build needs: the image's too
        deps = read_text(os.path.join(ROOT, "scripts", "install-deps")).split("apt-get install", 1)[1]
        needed = set(re.findall(r"\b[a-z0-9.+-]+-dev\b", deps.split("$test_pkgs")[0]))
        build = self.text.split("\nFROM ${BASE}\n", 1)[0]
        self.assertTrue(needed)
        self.assertEqual(sorted(p for p in needed if p not in build.split()), [], "missing in the build stage")

    def test_healthcheck_script_parses(self):
        r = subprocess.run(["sh", "-n", os.path.join(DEPLOY, "container", "healthcheck")], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
