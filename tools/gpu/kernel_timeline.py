#!/usr/bin/env python3
"""Per-kernel times of one CUDA graph's replays, from a tools/gpu/kernel_trace.cpp CSV.

Under programmatic dependent launch a kernel starts while its predecessor still runs, so its own
duration says little; what it adds to the step is how much later it ends than the kernel before it
(its end delta). This prints, for the graph replayed most often (or --graph), the median over replays of
each node's start offset, duration and end delta, then the end deltas summed by kernel name. Without
--graph it reports every graph replayed at least half as often as the most replayed one (a bench run of
an LP plan replays the baseline's graph and the LP model's).

  python3 tools/gpu/kernel_timeline.py kernel_trace.csv [--graph ID] [--nodes 14] [--skip 10]
"""
import argparse
import collections
import csv
import re
import statistics
import sys


def short_name(name):
    """Kernel name without namespaces, return type or arguments; template arguments kept."""
    name = name.replace("(anonymous namespace)::", "")
    if name.endswith(")"):  # drop the argument list: from its matching '(' on
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                name = name[:i]
                break
    name = re.sub(r"^void ", "", name)
    return re.sub(r"\b[A-Za-z_][A-Za-z_0-9]*::", "", name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--graph", type=int, help="graph id (default: every graph replayed at least half as often as the most replayed)")
    parser.add_argument("--nodes", type=int, default=14, help="nodes printed from the start and the end")
    parser.add_argument("--skip", type=int, default=10, help="replays skipped at the start (warm-up)")
    args = parser.parse_args()

    with open(args.csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["graph_id"] != "0"]
    if not rows:
        sys.exit(f"{args.csv}: no graph kernels recorded")
    by_graph = collections.defaultdict(list)
    for r in rows:
        by_graph[int(r["graph_id"])].append(r)
    if args.graph is not None:
        if args.graph not in by_graph:
            sys.exit(f"{args.csv}: no graph {args.graph}; graphs: {sorted(by_graph)}")
        graphs = [args.graph]
    else:
        most = max(len(k) / len({r["graph_node_id"] for r in k}) for k in by_graph.values())
        graphs = [g for g, k in sorted(by_graph.items())
                  if len(k) / len({r["graph_node_id"] for r in k}) >= most / 2]
    for graph in graphs:
        report(graph, by_graph[graph], args)
        print()


def report(graph, kernels, args):
    kernels = sorted(kernels, key=lambda r: int(r["start_ns"]))
    node_count = len({r["graph_node_id"] for r in kernels})

    # Replays are consecutive runs of node_count kernels (graph launches on one stream never overlap).
    replays = [kernels[i:i + node_count] for i in range(0, len(kernels) - node_count + 1, node_count)]
    replays = [r for r in replays if len({k["graph_node_id"] for k in r}) == node_count][args.skip:]
    if len(replays) < 3:
        print(f"graph {graph}: only {len(replays)} whole replays after skipping {args.skip}")
        return

    per_node = collections.defaultdict(lambda: collections.defaultdict(list))
    periods, spans = [], []
    for i, replay in enumerate(replays):
        t0 = int(replay[0]["start_ns"])
        spans.append(int(replay[-1]["end_ns"]) - t0)
        if i + 1 < len(replays):
            periods.append(int(replays[i + 1][0]["start_ns"]) - t0)
        previous_end = t0
        for position, k in enumerate(replay):
            start, end = int(k["start_ns"]), int(k["end_ns"])
            stats = per_node[position]
            stats["name"] = short_name(k["name"])
            stats["grid"] = f'{k["grid_x"]}x{k["grid_y"]}x{k["grid_z"]}/{k["block_x"]}'
            stats["offset"].append(start - t0)
            stats["duration"].append(end - start)
            stats["delta"].append(end - previous_end)
            previous_end = max(previous_end, end)

    med = statistics.median
    print(f"graph {graph}: {node_count} kernels, {len(replays)} replays; median replay period "
          f"{med(periods) / 1e3:.1f} us, first start to last end {med(spans) / 1e3:.1f} us")
    print(f"{'#':>4} {'start us':>9} {'dur us':>8} {'end delta':>9}  grid/block  kernel")
    shown = list(range(min(args.nodes, node_count))) + list(range(max(args.nodes, node_count - args.nodes),
                                                                  node_count))
    for position in shown:
        s = per_node[position]
        print(f"{position:>4} {med(s['offset']) / 1e3:9.2f} {med(s['duration']) / 1e3:8.2f} "
              f"{med(s['delta']) / 1e3:9.2f}  {s['grid']:<11} {s['name'][:110]}")

    totals = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for s in per_node.values():
        key = (s["name"], s["grid"])
        totals[key][0] += 1
        totals[key][1] += med(s["delta"])
        totals[key][2] += med(s["duration"])
    print(f"\n{'count':>5} {'sum end delta us':>16} {'per kernel':>10} {'mean dur':>9}  grid/block  kernel")
    for (name, grid), (count, delta, duration) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        print(f"{count:>5} {delta / 1e3:16.1f} {delta / count / 1e3:10.2f} {duration / count / 1e3:9.2f}  "
              f"{grid:<11} {name[:110]}")


if __name__ == "__main__":
    main()
