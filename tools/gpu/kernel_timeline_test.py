#!/usr/bin/env python3
"""kernel_timeline.py against a synthetic trace whose answer is known by construction.

Two graphs replayed 20 times each, interleaved with ungraphed kernels; graph 7's three kernels overlap the way
PDL makes them (each starts before the previous one ends), so duration and end delta differ. Run by ctest.
"""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_trace():
    lines = ["start_ns,end_ns,graph_id,graph_node_id,grid_x,grid_y,grid_z,block_x,name"]
    t = 1_000_000
    for _ in range(20):
        # graph 7: kernel a [0, 10) us, b [8, 15), c [14, 30): end deltas 10, 5, 15; replay period 40 us
        for node, (start, end, name) in enumerate([(0, 10, "void ns::a<1, (ns::E)2>(int, float const*)"),
                                                   (8, 15, "void (anonymous namespace)::b(int)"),
                                                   (14, 30, "void ns::a<1, (ns::E)2>(int, float const*)")]):
            lines.append(f'{t + start * 1000},{t + end * 1000},7,{700 + node},4,2,1,256,"{name}"')
        t += 40_000
        lines.append(f'{t - 5000},{t - 4000},0,0,1,1,1,32,"void memcpy_like()"')  # not in a graph
        # graph 9: one 2 us kernel
        lines.append(f'{t},{t + 2000},9,900,1,1,1,64,"void ns::c()"')
        t += 10_000
    return "\n".join(lines) + "\n"


def main():
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(synthetic_trace())
        path = f.name
    try:
        out = subprocess.run([sys.executable, os.path.join(HERE, "kernel_timeline.py"), path, "--skip", "2"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    expected = [
        "graph 7: 3 kernels, 18 replays; median replay period 50.0 us, first start to last end 30.0 us",
        "   0      0.00    10.00     10.00  4x2x1/256   a<1, (E)2>",
        "   1      8.00     7.00      5.00  4x2x1/256   b",
        "   2     14.00    16.00     15.00  4x2x1/256   a<1, (E)2>",
        "    2             25.0      12.50     13.00  4x2x1/256   a<1, (E)2>",
        "    1              5.0       5.00      7.00  4x2x1/256   b",
        "graph 9: 1 kernels, 18 replays; median replay period 50.0 us, first start to last end 2.0 us",
    ]
    missing = [line for line in expected if line not in out.splitlines()]
    if missing:
        sys.exit("kernel_timeline.py output lacks:\n" + "\n".join(missing) + "\n--- output:\n" + out)
    print("kernel_timeline.py: report matches the synthetic trace")


if __name__ == "__main__":
    main()
