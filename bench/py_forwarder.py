#!/usr/bin/python3
"""The Python peer for bench/run: a minimal pyzmq ROUTER forwarder that handles
messages as Python orchestration frameworks do (json.loads each frame, look at
the fields, json.dumps it again, send). Same protocol as
`cadre-bench-cluster forwarder`: a "C" frame makes its sender the controller
(answered "ok"); every other frame goes to the controller.

usage: /usr/bin/python3 bench/py_forwarder.py [--server-key PAIRFILE]
Prints the bound endpoint (tcp://127.0.0.1:PORT) on its first line."""
import json
import sys

import zmq


def secret_key(path):
    with open(path) as f:
        for line in f:
            if line.startswith("secret-key"):
                return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"{path}: no secret-key line")


def main():
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.ROUTER_MANDATORY, 1)
    r.setsockopt(zmq.SNDHWM, 100000)
    r.setsockopt(zmq.RCVHWM, 100000)
    if len(sys.argv) == 3 and sys.argv[1] == "--server-key":
        r.curve_server = True
        r.curve_secretkey = secret_key(sys.argv[2]).encode()
    port = r.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    ctl = None
    while True:
        ident, frame = r.recv_multipart()
        if frame == b"C":
            ctl = ident
            r.send_multipart([ident, b"ok"])
        elif ctl is None:
            continue
        elif frame == b"N":
            r.send_multipart([ctl, frame])
        else:
            msg = json.loads(frame)
            if msg.get("type") == "delta" and isinstance(msg.get("session"), str) and isinstance(msg.get("seq"), int):
                r.send_multipart([ctl, json.dumps(msg).encode()])


if __name__ == "__main__":
    main()
