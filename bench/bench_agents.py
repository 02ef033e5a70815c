#!/usr/bin/env python3
"""Spawns many sub-agents and measures what that costs the broker.

Starts a real cluster on loopback (broker, two agent daemons, the scripted
model server of tests/), spawns N sub-agents in batches (each answers at once
with a [SUMMARY], which goes into main's history, so main's conversation grows
as agents finish and each later agent starts with more context), then prints
the state database's size and how long the broker takes to answer `agents`,
`status`, `stats` and `sessions` (median of 20, measured by cadre-bench-verbs).

usage: ninja -C build bench/cadre-bench-verbs && bench/bench_agents.py [--agents 1000] [--batch 50]
       [--build build] [--save DIR | --load DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

ANSWER = "Checked.\n[SUMMARY]\nStatus: DONE\nKey Points:\n- fine\nRecommendation: none\n[/SUMMARY]"


def db_bytes(state):
    return sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state) if f.startswith("state.db"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--save", help="copy the state database here after spawning")
    ap.add_argument("--load", help="skip spawning: start the broker on this saved state database")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ.setdefault("CADRE_BROKER_BIN", os.path.join(build, "broker", "cadre-broker"))
    os.environ.setdefault("CADRE_AGENTD_BIN", os.path.join(build, "agentd", "cadre-agentd"))
    os.environ.setdefault("CADRE_CTL_BIN", os.path.join(build, "ctl", "cadre"))
    verbs_bin = os.path.join(build, "bench", "cadre-bench-verbs")
    from harness import Cluster

    def more_agents(cfg):
        cfg["max_concurrent_agents"] = 64

    c = Cluster(nodes=(("n1", 16), ("n2", 16)), heartbeat_ms=1000, config_extra=more_agents)
    try:
        t0 = time.monotonic()
        spawned = 0
        if a.load:
            c.stop_broker()
            for f in os.listdir(c.state):
                if f.startswith("state.db"):
                    os.unlink(os.path.join(c.state, f))
            shutil.copy(os.path.join(a.load, "state.db"), c.state)
            c.start_broker()
            spawned = a.agents
        while spawned < a.agents:
            c.model.reset()
            c.model.script([], default={"text": ANSWER})
            n = min(a.batch, a.agents - spawned)
            procs = [c.cadre_bg("spawn", "reviewer", f"look at part {spawned + i}") for i in range(n)]
            for p in procs:
                p.communicate(timeout=120)
            spawned += n

            # Every agent of the batch done (or failed); a stall (no progress for 60 s) is reported, not fatal.
            last, since = -1, time.monotonic()
            while True:
                st = c.cadre_json("stats")[1][0]
                finished = sum(1 for x in st["agents"] if x["status"] in ("done", "failed"))
                if finished >= spawned:
                    break
                if finished != last:
                    last, since = finished, time.monotonic()
                elif time.monotonic() - since > 60:
                    stalled = spawned - finished
                    print(f"warning: {stalled} agents not finished after 60 s without progress", file=sys.stderr)
                    break
                time.sleep(0.5)
        elapsed = time.monotonic() - t0
        if a.save:
            os.makedirs(a.save, exist_ok=True)
            subprocess.run(["sqlite3", os.path.join(c.state, "state.db"), f".backup {a.save}/state.db"], check=True)
        out = subprocess.run([verbs_bin, c.endpoint, c.key, c.broker_pub, "20", "agents", "status", "stats",
                              "sessions", "nodes"], capture_output=True, text=True, check=True).stdout
        result = {"agents": a.agents, "spawn_seconds": round(elapsed, 1), "db_bytes": db_bytes(c.state),
                  "verbs": [json.loads(l) for l in out.splitlines()]}
        print(json.dumps(result, indent=1))
    finally:
        c.close()


if __name__ == "__main__":
    main()
