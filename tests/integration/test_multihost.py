"""A cluster over three "hosts": network namespaces made by the test.

The broker (and the scripted model server, and this test's own cadre calls)
live in namespace B; agent daemons n1 and n2 in namespaces N1 and N2, each
joined to B by a veth pair on a bridge in B (10.77.0.0/24, nothing routed
anywhere else). Every connection is CURVE-encrypted TCP between namespaces.

Shown: sub-agents run on both nodes at once; a node whose link goes down
mid-turn is detected as lost within 3 s and its turn finishes on the other
node; the node rejoins when its link comes back.

Needs root (CI runs as root); elsewhere it is skipped with the reason.
"""
import ctypes
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_until  # noqa: E402

CLONE_NEWNET = 0x40000000
NET = "10.77.0"
SUMMARY = "[SUMMARY]\nStatus: PASS\nKey Points:\n- done on this node\nRecommendation: none\n[/SUMMARY]"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Namespaces:
    """B with a bridge at NET.1; one namespace per node, its eth0 at NET.(2+i)."""

    def __init__(self, nodes):
        tag = str(os.getpid())
        self.b = "cadre-b-" + tag
        self.nodes = {n: f"cadre-{n}-{tag}" for n in nodes}
        self.made = []
        self.add(self.b)
        ip("-n", self.b, "link", "set", "lo", "up")
        ip("-n", self.b, "link", "add", "br0", "type", "bridge")
        ip("-n", self.b, "addr", "add", f"{NET}.1/24", "dev", "br0")
        ip("-n", self.b, "link", "set", "br0", "up")
        for i, (name, ns) in enumerate(self.nodes.items()):
            self.add(ns)
            port = f"vb{i}"
            ip("link", "add", port, "netns", self.b, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", self.b, "link", "set", port, "master", "br0")
            ip("-n", self.b, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{NET}.{2 + i}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def add(self, ns):
        ip("netns", "add", ns)
        self.made.append(ns)

    def link(self, node, up):
        ip("-n", self.nodes[node], "link", "set", "eth0", "up" if up else "down")

    def prefix(self, node):
        return ("ip", "netns", "exec", self.nodes[node])

    def close(self):
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)


def enter(path):
    """Moves this (single-threaded) process into the network namespace at path."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def why_not():
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        return "no ip command (iproute2)"
    probe = f"cadre-probe-{os.getpid()}"
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return "cannot make a network namespace: " + r.stderr.strip()
    ip("netns", "del", probe, check=False)
    return None


class MultiHost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = why_not()
        if reason:
            raise unittest.SkipTest(reason)
        cls.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        cls.ns = Namespaces(["n1", "n2"])
        try:
            enter(f"/run/netns/{cls.ns.b}")
            # 500 ms heartbeats: a node silent for 3.5 of them (1.75 s) is lost.
            cls.c = Cluster(nodes=(), heartbeat_ms=500, bind=f"tcp://{NET}.1:*", model_host="0.0.0.0",
                            model_url_host=f"{NET}.1")
            for name in ("n1", "n2"):
                cls.c.start_node(name, slots=1, prefix=cls.ns.prefix(name))
            cls.c.wait_nodes(2)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "c", None):
            cls.c.close()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(cls.home, CLONE_NEWNET)
        os.close(cls.home)
        cls.ns.close()

    def setUp(self):
        self.c.model.reset()

    def test_1_subagents_run_on_both_hosts(self):
        self.assertTrue(self.c.endpoint.startswith(f"tcp://{NET}.1:"), self.c.endpoint)
        nodes = {n["name"]: n for n in self.c.nodes()}
        self.assertEqual(set(nodes), {"n1", "n2"})
        # Both answers are held until both requests are in: they run at once, one per node.
        self.c.model.script([{"match": "Audit part A", "text": SUMMARY, "wait_for_requests": 2},
                             {"match": "Audit part B", "text": SUMMARY, "wait_for_requests": 2}])
        w = self.c.watch()
        try:
            a = self.c.cadre_bg("--json", "spawn", "reviewer", "Audit part A", "--wait")
            b = self.c.cadre_bg("--json", "spawn", "reviewer", "Audit part B", "--wait")
            out_a, err_a = a.communicate(timeout=60)
            out_b, err_b = b.communicate(timeout=60)
            self.assertEqual(a.returncode, 0, err_a)
            self.assertEqual(b.returncode, 0, err_b)
            started = set()
            while len(started) < 2:
                ev = self.c.watch_for(w, lambda e: e.get("kind") == "turn_started")
                started.add(ev["payload"]["node"])
            self.assertEqual(started, {"n1", "n2"})
        finally:
            w.kill()
            w.wait()
        # The nodes' own view: their TCP peer is the broker's address on the bridge.
        hosts = [r["headers"].get("Host", "") for r in self.c.model.requests()]
        self.assertTrue(all(h.startswith(f"{NET}.1:") for h in hosts), hosts)

    def test_2_a_lost_link_moves_the_turn_and_the_node_rejoins(self):
        slow = {"match": "Long audit", "chunks": ["part "] * 60, "delay_ms": 250}
        fast = {"match": "Long audit", "text": SUMMARY}
        self.c.model.script([slow, fast])
        w = self.c.watch()
        try:
            job = self.c.cadre_bg("--json", "spawn", "reviewer", "Long audit", "--wait")
            ev = self.c.watch_for(w, lambda e: e.get("kind") == "turn_started")
            first = ev["payload"]["node"]
            other = "n2" if first == "n1" else "n1"
            self.c.watch_for(w, lambda e: e.get("type") == "delta" and e.get("turn") == ev["turn"])
            self.ns.link(first, up=False)
            t0 = time.monotonic()
            lost = self.c.watch_for(w, lambda e: e.get("kind") == "turn_requeued" and e.get("turn") == ev["turn"])
            detected = time.monotonic() - t0
            self.assertEqual(lost["payload"]["node"], first)
            self.assertLess(detected, 3.0, f"node lost after {detected:.2f} s")
            print(f"\n{first}'s link down -> turn re-queued after {detected:.2f} s", file=sys.stderr)
            self.assertEqual([n["name"] for n in self.c.nodes()], [other])
            again = self.c.watch_for(w, lambda e: e.get("kind") == "turn_started" and e.get("turn") == ev["turn"])
            self.assertEqual(again["payload"]["node"], other)
            done = self.c.watch_for(w, lambda e: e.get("kind") == "turn_done" and e.get("turn") == ev["turn"])
            self.assertEqual(done["payload"]["node"], other)
            out, err = job.communicate(timeout=60)
            self.assertEqual(job.returncode, 0, err)
            self.assertIn("PASS", out)
            # The link comes back: the node says hello again by itself.
            self.ns.link(first, up=True)
            wait_until(lambda: sorted(n["name"] for n in self.c.nodes()) == ["n1", "n2"], 20, f"{first} to rejoin")
        finally:
            w.kill()
            w.wait()
            self.ns.link("n1", up=True)
            self.ns.link("n2", up=True)


if __name__ == "__main__":
    unittest.main()
