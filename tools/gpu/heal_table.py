#!/usr/bin/env python3
"""The healing results table (docs/RESULTS.md, "Healing") from the JSON lines of
`tools/gpu/heal_on_gpu.sh call2` (heal_results.jsonl): per plan, baseline / LP / healed (local) /
healed (local + global) accuracy on the six tasks, their average, the drop against the baseline and
the fraction of the LP drop won back; WikiText-2 perplexity and the fraction of its gap won back;
then, per healing run, the tokens trained, the wall time and each stage's tokens/s.

    python3 tools/gpu/heal_table.py heal_results.jsonl > table.md
"""
import json
import sys
from collections import defaultdict

TASKS = ["hellaswag", "piqa", "arc_easy", "arc_challenge", "winogrande", "lambada_openai"]
NORM = {"hellaswag", "piqa", "arc_easy", "arc_challenge"}  # acc_norm; winogrande and lambada: acc


def main(path):
    scores = defaultdict(dict)  # model -> task -> points
    ppl = {}
    heal = defaultdict(dict)  # run tag -> facts
    for line in open(path):
        row = json.loads(line)
        if "model" in row and "task" in row:
            key = "acc_norm" if row["task"] in NORM else "acc"
            scores[row["model"]][row["task"]] = 100 * row[key]
        elif "model" in row and "ppl" in row:
            ppl[row["model"]] = row["ppl"]
        elif "heal" in row:
            tag = row["heal"]
            if "stage" in row:
                heal[tag][row["stage"] + "_tps"] = row["tokens_per_s"]
            elif row.get("event") == "data":
                heal[tag]["data_s"] = row["seconds"]
            elif row.get("event") == "done":
                heal[tag].update(row)

    def avg(model):
        s = scores.get(model, {})
        return sum(s[t] for t in TASKS) / len(TASKS) if all(t in s for t in TASKS) else None

    base_avg, base_ppl = avg("baseline"), ppl.get("baseline")
    print("| plan | model | " + " | ".join(TASKS) + " | avg | drop | drop won back | WikiText-2 ppl | ppl gap won back |")
    print("|---|---|" + "---|" * (len(TASKS) + 5))
    plans = sorted({m for m in scores if m != "baseline" and not m.startswith("healed_")})
    rows = [("baseline", "baseline")]
    for plan in plans:
        rows += [(plan, plan), (plan, f"healed_{plan}_local"), (plan, f"healed_{plan}")]
        rows += [(plan, m) for m in sorted(scores) if m.startswith(f"healed_{plan}_lr")]
    for plan, model in rows:
        a = avg(model)
        if a is None and model not in ppl:
            continue
        if model == "baseline" or model == plan:
            kind = "baseline" if model == "baseline" else "LP"
        else:
            kind = "healed (local)" if model.endswith("_local") else "healed (local+global)"
            if "_lr" in model:
                kind += ", lr " + model.rsplit("_lr", 1)[1]
        cells = [f"{scores[model][t]:.1f}" if t in scores.get(model, {}) else "-" for t in TASKS]
        drop = won = pplc = pwon = "-"
        if a is not None and base_avg is not None:
            drop = f"{base_avg - a:.2f}"
            lp_avg = avg(plan)
            if model != plan and model != "baseline" and lp_avg is not None and base_avg > lp_avg:
                won = f"{(a - lp_avg) / (base_avg - lp_avg):.0%}"
        if model in ppl:
            pplc = f"{ppl[model]:.2f}"
            if model not in ("baseline", plan) and plan in ppl and base_ppl and ppl[plan] > base_ppl:
                pwon = f"{(ppl[plan] - ppl[model]) / (ppl[plan] - base_ppl):.0%}"
        label = "" if model == "baseline" else plan
        print(f"| {label} | {kind} | " + " | ".join(cells) + f" | {a:.2f} | {drop} | {won} | {pplc} | {pwon} |"
              if a is not None else f"| {label} | {kind} | " + " | ".join(cells) + f" | - | - | - | {pplc} | {pwon} |")
    if heal:
        print()
        print("| healing run | tokens trained | wall s (data generation incl.) | data generation s | local tok/s | global tok/s | KL before | KL after |")
        print("|---|---|---|---|---|---|---|---|")
        for tag in sorted(heal):
            h = heal[tag]
            fmt = lambda k, f="{}": f.format(h[k]) if k in h else "-"
            print(f"| {tag} | {fmt('tokens_trained')} | {fmt('run_wall_s', '{:.1f}')} | {fmt('data_s', '{:.1f}')} | "
                  f"{fmt('local_tps')} | {fmt('global_tps')} | {fmt('kl_before', '{:.4f}')} | {fmt('kl_after', '{:.4f}')} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
