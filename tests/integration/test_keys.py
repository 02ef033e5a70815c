"""Keys have roles: authorized_keys lines "KEY node NAME" / "KEY controller NAME".

A real broker and agent daemons on 127.0.0.1, the real cadre command, keys
made by `cadre keygen --role --name`. Checks the refusals each side sees,
the broker's log lines for every kind of refusal, and that removing a key's
line drops its live connection (within seconds by itself, at once on SIGHUP).
"""
import json
import os
import re
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402


class KeyRoles(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 1),))
        cls.auth = os.path.join(cls.c.state, "authorized_keys")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def keygen(self, name, role):
        path = os.path.join(self.c.tmp, name + ".key")
        r, out = self.c.cadre_json("keygen", path, "--role", role, "--name", name)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(out[0]["line"], f"{out[0]['public_key']} {role} {name}")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        return path, out[0]["line"]

    def authorize(self, line):
        with open(self.auth, "a") as f:
            f.write(line + "\n")

    def unauthorize(self, line):
        with open(self.auth) as f:
            kept = [l for l in f if l.strip() != line]
        with open(self.auth, "w") as f:
            f.writelines(kept)

    def as_key(self, key, *args, timeout=30):
        env = self.c.env()
        env["CADRE_KEY"] = key
        import subprocess
        from harness import CTL
        return subprocess.run([CTL(), *args], env=env, capture_output=True, text=True, timeout=timeout)

    def log_of(self, name):
        with open(os.path.join(self.c.tmp, name + ".log")) as f:
            return f.read()

    def broker_log(self):
        return self.log_of("broker")

    def node_names(self):
        return sorted(n["name"] for n in self.c.nodes())

    def test_keygen_prints_the_line(self):
        path = os.path.join(self.c.tmp, "plain.key")
        r = self.c.cadre("keygen", path, "--role", "node", "--name", "gpu-7")
        self.assertEqual(r.returncode, 0, r.stderr)
        first = r.stdout.splitlines()[0]
        self.assertRegex(first, r"^\S{40} node gpu-7$")
        self.assertIn("authorized_keys", r.stdout)
        for bad in (["--role", "admin", "--name", "x"], ["--role", "node"], ["--name", "bad name", "--role", "node"]):
            r = self.c.cadre("keygen", os.path.join(self.c.tmp, "bad.key"), *bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertFalse(os.path.exists(os.path.join(self.c.tmp, "bad.key")))

    def test_controller_key_acts_as_controller_only(self):
        key, line = self.keygen("alice", "controller")
        self.authorize(line)
        r = self.as_key(key, "--json", "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The same key as a node: refused at hello, with the reason on both sides.
        p = self.c.start_node("sneaky", extra=("--key", key))
        try:
            wait_until(lambda: "is a controller key: it may not connect as a node" in self.log_of("agentd-sneaky"), 15,
                       "the node to be told why")
            self.assertNotIn("sneaky", self.node_names())
            self.assertRegex(self.broker_log(), r"refused a hello as node from \S+: key alice \(")
        finally:
            self.c.kill_node("sneaky")

    def test_node_key_cannot_control(self):
        key, line = self.keygen("n9", "node")
        self.authorize(line)
        r = self.as_key(key, "status")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is a node key: it may not connect as a controller", r.stderr)
        p = self.c.start_node("n9", extra=("--key", key))
        try:
            wait_until(lambda: "n9" in self.node_names(), 15, "n9 to join with its node key")
        finally:
            self.c.kill_node("n9")

    def test_unknown_key_is_told_plainly_and_fast(self):
        path = os.path.join(self.c.tmp, "stranger.key")
        self.c.cadre("keygen", path, check=True)
        t0 = time.monotonic()
        r = self.as_key(path, "--timeout", "20", "status")
        took = time.monotonic() - t0
        self.assertNotEqual(r.returncode, 0)
        self.assertLess(took, 10, "refused at once, not at the timeout")
        self.assertIn("refused this key", r.stderr)
        self.assertRegex(r.stderr, r"\n\S{40} controller \S+")
        wait_until(lambda: "refused a client at 127.0.0.1: its CURVE key" in self.broker_log(), 10,
                   "the broker to log the refusal")

    def test_refusals_before_zap_are_logged_with_the_address(self):
        # A client without CURVE: a ZMTP 3.0 greeting with the NULL mechanism.
        port = int(self.c.endpoint.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        greeting = b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
        s.sendall(greeting)
        try:
            s.recv(64)
        except OSError:
            pass
        # The address when the broker could still read it (the connection may close first).
        wait_until(lambda: re.search(r"refused a client at (127\.0\.0\.1|an unknown address \(the connection "
                                     r"closed at once\)): it does not use CURVE", self.broker_log()), 10,
                   "the NULL client's refusal in the log")
        s.close()
        # A client with a wrong broker key.
        other = os.path.join(self.c.tmp, "other-broker.key")
        r = self.c.cadre("--json", "keygen", other, check=True)
        wrong_pub = json.loads(r.stdout)["public_key"]
        env_r = self.as_key(self.c.key, "--broker-key", wrong_pub, "--timeout", "2", "status")
        self.assertNotEqual(env_r.returncode, 0)
        wait_until(lambda: "did not decrypt" in self.broker_log(), 10, "the wrong-key refusal in the log")

    def test_removing_a_line_cuts_the_node(self):
        key, line = self.keygen("n5", "node")
        self.authorize(line)
        self.c.start_node("n5", extra=("--key", key))
        try:
            wait_until(lambda: "n5" in self.node_names(), 15, "n5 to join")
            self.unauthorize(line)
            t0 = time.monotonic()
            wait_until(lambda: "n5" not in self.node_names(), 10, "n5 to be dropped")
            self.assertLess(time.monotonic() - t0, 5)
            self.assertIn("was removed from authorized_keys; disconnected", self.broker_log())
            # It stays out: its hellos are refused.
            wait_until(lambda: "is no longer in the broker's authorized_keys" in self.log_of("agentd-n5"), 15,
                       "n5 to be told")
            self.assertNotIn("n5", self.node_names())
            # Put back, it joins again.
            self.authorize(line)
            wait_until(lambda: "n5" in self.node_names(), 15, "n5 to rejoin")
            # SIGHUP reads the file at once.
            self.unauthorize(line)
            self.c.broker.send_signal(signal.SIGHUP)
            wait_until(lambda: "n5" not in self.node_names(), 3, "n5 to be dropped at the SIGHUP")
            self.assertIn("SIGHUP: reading", self.broker_log())
        finally:
            self.c.kill_node("n5")

    def test_bare_keys_still_work(self):
        # The cluster's own client key is a bare line: it runs nodes and controllers alike.
        self.assertIn("n1", self.node_names())
        r = self.c.cadre("status")
        self.assertEqual(r.returncode, 0, r.stderr)


# cadre-broker --no-curve (for bench/run only): every bind must be loopback or local.
NO_CURVE_BINDS = [
    # (bind, started)
    ("tcp://127.0.0.1:*", True),
    ("ipc://{tmp}/broker.sock", True),
    ("tcp://0.0.0.0:*", False),
    ("tcp://*:*", False),
    ("tcp://eth0:*", False),
]


class NoCurve(unittest.TestCase):
    def test_only_loopback_binds_without_curve(self):
        import subprocess
        import tempfile
        from harness import BROKER
        for bind, started in NO_CURVE_BINDS:
            with self.subTest(bind=bind), tempfile.TemporaryDirectory() as tmp:
                state = os.path.join(tmp, "state")
                p = subprocess.Popen([BROKER(), "--no-curve", "--bind", bind.format(tmp=tmp), "--state", state],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                try:
                    if started:
                        wait_until(lambda: os.path.exists(os.path.join(state, "endpoint")), 10, "the endpoint file")
                        self.assertIsNone(p.poll())
                    else:
                        self.assertEqual(p.wait(timeout=10), 1)
                        self.assertIn("--no-curve", p.stderr.read())
                        self.assertFalse(os.path.exists(os.path.join(state, "endpoint")))
                finally:
                    p.terminate()
                    p.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
