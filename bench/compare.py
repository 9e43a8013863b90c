#!/usr/bin/env python3
"""Side-by-side table of `duet bench --json` and bench/torch_peer.py --json (same device call).

Usage: python3 bench/compare.py duet.json torch.json
"""
import json
import sys

duet = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))
torch_ms = {(r["shape"], r["lp_plan"], r["batch"]): r["ms_per_step"] for r in peer["results"]}
print(f"\n{duet['device']}: copy bandwidth {duet['copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s, "
      f"context {duet['context']}; torch {peer['torch']} CUDA-graph peer")
print("| shape | LP plan | B | duet ms/step | duet tok/s | % copy BW | LP speedup | torch ms/step | duet vs torch |")
print("|---|---|---|---|---|---|---|---|---|")
for r in duet["results"]:
    key = (r["shape"], r["lp_plan"], r["batch"])
    t = torch_ms.get(key)
    print(f"| {r['shape']} | {r['lp_plan']} | {r['batch']} | {r['ms_per_step']:.3f} | {r['tokens_per_s']:.1f} | "
          f"{100 * r['copy_bw_fraction']:.1f} | {r['lp_speedup']:.3f} | "
          + (f"{t:.3f} | x{t / r['ms_per_step']:.2f} |" if t else "- | - |"))
