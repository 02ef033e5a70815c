#!/usr/bin/env python3
"""Fails when the broker's modules call each other in a cycle.

The call graph comes from the object files of the broker's static library
(nm: which module defines a symbol, which modules use it), so it is what the
linker sees, not what a grep guesses. A module is a file name up to its first
'_' (workflow_verbs.c belongs to workflow, plan_text.c to plan). Calls through
function pointers (the hooks set up in broker_new) do not appear: they are how
a lower module notifies an upper one.

usage: check_layers.py LIBRARY.a [--print]
"""
import collections
import subprocess
import sys


def module(member):
    name = member.rsplit("/", 1)[-1]
    for suffix in (".c.o", ".o"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.split("_")[0]


def read_symbols(lib):
    out = subprocess.run(["nm", lib], capture_output=True, text=True, check=True).stdout
    defs, uses, member = {}, collections.defaultdict(set), None
    for line in out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            member = module(line[:-1])
            continue
        parts = line.split()
        if member is None or not parts:
            continue
        if len(parts) == 3 and parts[1] in "TDBRC":
            defs[parts[2]] = member
        elif len(parts) == 2 and parts[0] == "U":
            uses[member].add(parts[1])
    return defs, uses


def graph(lib):
    defs, uses = read_symbols(lib)
    edges = collections.defaultdict(lambda: collections.defaultdict(set))
    for mod, syms in uses.items():
        for s in syms:
            target = defs.get(s)
            if target and target != mod:
                edges[mod][target].add(s)
    return edges


def find_cycle(edges):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, {})):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    edges = graph(sys.argv[1])
    if "--print" in sys.argv:
        for mod in sorted(edges):
            print("%s -> %s" % (mod, ", ".join(sorted(edges[mod]))))
    cycle = find_cycle(edges)
    if cycle:
        print("call cycle: " + " -> ".join(cycle), file=sys.stderr)
        for a, b in zip(cycle, cycle[1:]):
            print("  %s calls %s: %s" % (a, b, ", ".join(sorted(edges[a][b]))), file=sys.stderr)
        return 1
    print("no call cycle between %d modules" % len(set(edges) | {t for e in edges.values() for t in e}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
