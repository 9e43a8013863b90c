#!/usr/bin/env python3
"""Side-by-side table of `duet bench --json` and bench/torch_peer.py --json (same device call).

Usage: python3 bench/compare.py duet.json torch.json
"""
import json
import sys

duet = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))
torch_ms = {(r["shape"], r["lp_plan"], r["batch"]): r["ms_per_step"] for r in peer["results"]}
peer_ctx = peer["context"]


def context_of(row):
    # Rows carry their context since duet bench sweeps several; older files have one for the whole run.
    return row.get("context", duet.get("context"))


print(f"\n{duet['device']}: copy bandwidth {duet['copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s; "
      f"torch {peer['torch']} CUDA-graph peer at context {peer_ctx}")
print("| shape | LP plan | ctx | B | duet ms/step | duet tok/s | % copy BW | LP speedup | torch ms/step | duet vs torch |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in duet["results"]:
    ctx = context_of(r)
    t = torch_ms.get((r["shape"], r["lp_plan"], r["batch"])) if ctx == peer_ctx else None
    print(f"| {r['shape']} | {r['lp_plan']} | {ctx} | {r['batch']} | {r['ms_per_step']:.3f} | {r['tokens_per_s']:.1f} | "
          f"{100 * r['copy_bw_fraction']:.1f} | {r['lp_speedup']:.3f} | "
          + (f"{t:.3f} | x{t / r['ms_per_step']:.2f} |" if t else "- | - |"))
