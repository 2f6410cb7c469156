#!/usr/bin/env python
"""List, for each class of each dataset, the most related classes of every other dataset,
as learned by the cross-dataset projection layers of a checkpoint; draw a heatmap of one
pair; score them against known relations (e.g. the synthetic corpus's relations.json).

    python tools/relations.py --checkpoint outputs/demo/checkpoints/checkpoint_epoch_00012.pyth \
        --classnames data/synthetic --truth data/synthetic/relations.json --heatmap kinetics_mit
"""
import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint (ours or the original's)")
    p.add_argument("--datasets", default="", help="comma-separated dataset names "
                   "(default: read from the checkpoint's cfg, else from the projection names)")
    p.add_argument("--classnames", default="", help="JSON file {dataset: [names]} or a corpus root "
                   "holding relations.json")
    p.add_argument("--truth", default="", help="relations.json with true relations to score against")
    p.add_argument("-k", type=int, default=3, help="related classes listed per class")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text")
    p.add_argument("--output", default="", help="write the listing here instead of stdout")
    p.add_argument("--heatmap", default="", help="pair a_b to draw, e.g. kinetics_mit")
    p.add_argument("--heatmap-out", default="relations_heatmap.png")
    return p.parse_args(argv)


def _datasets(args, state, ckpt):
    if args.datasets:
        return args.datasets.split(",")
    if isinstance(ckpt.get("cfg"), str):
        import yaml

        names = (yaml.safe_load(ckpt["cfg"]) or {}).get("MODEL", {}).get("MULTI_DATASETS")
        if names:
            return list(names)
    prefix = "head.heads."
    return sorted({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _classnames(path):
    if not path:
        return {}
    if os.path.isdir(path):
        path = os.path.join(path, "relations.json")
    data = json.load(open(path))
    if "datasets" in data:  # a relations.json of the synthetic corpus
        return {n: d["classes"] for n, d in data["datasets"].items()}
    return data


def draw_heatmap(rel, names_a, names_b, a, b, out_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = max(3.0, 0.35 * len(names_a) + 1.5)
    w = max(4.0, 0.35 * len(names_b) + 3.0)
    fig, ax = plt.subplots(figsize=(min(w, 40), min(h, 40)))
    lim = float(rel.abs().max()) or 1.0
    im = ax.imshow(rel.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    if len(names_b) <= 60:
        ax.set_xticks(range(len(names_b)), names_b, rotation=60, ha="right", fontsize=8)
    if len(names_a) <= 60:
        ax.set_yticks(range(len(names_a)), names_a, fontsize=8)
    ax.set_xlabel(f"{b} classes")
    ax.set_ylabel(f"{a} classes")
    ax.set_title(f"learned projection {a} -> {b} (weight of a's class on b's class)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    import torch

    from multitrain.analysis.relations import (format_relations, learned_relations,
                                               score_against_truth, split_pair, top_related)
    from multitrain.models.checkpoint_keys import load_state_dict_file

    args = parse_args(argv)
    ckpt = load_state_dict_file(args.checkpoint)
    state = ckpt.get("model_state", ckpt)
    learned = learned_relations(state)
    datasets = _datasets(args, state, ckpt)
    names = _classnames(args.classnames)
    truth = json.load(open(args.truth))["relations"] if args.truth else None

    out = open(args.output, "w") if args.output else sys.stdout
    if args.format == "text":
        out.write(format_relations(learned, datasets, names, k=args.k, truth=truth) + "\n")
    else:
        rows = []
        for pair, rel in learned.items():
            a, b = split_pair(pair, datasets)
            na, nb = names.get(a), names.get(b)
            for i, related in enumerate(top_related(rel, args.k)):
                for rank, (j, wgt) in enumerate(related, 1):
                    rows.append({"from_dataset": a, "from_class": na[i] if na else i, "to_dataset": b,
                                 "to_class": nb[j] if nb else j, "rank": rank, "weight": round(wgt, 6)})
        if args.format == "json":
            json.dump(rows, out, indent=1)
            out.write("\n")
        else:
            w = csv.DictWriter(out, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if truth is not None:
        scores = score_against_truth(learned, truth)
        print(json.dumps({"agreement_with_truth": scores}), file=sys.stderr if out is sys.stdout else sys.stdout)
    if args.heatmap:
        a, b = split_pair(args.heatmap, datasets)
        rel = learned[args.heatmap]
        na = names.get(a) or [str(i) for i in range(rel.shape[0])]
        nb = names.get(b) or [str(j) for j in range(rel.shape[1])]
        draw_heatmap(rel, na, nb, a, b, args.heatmap_out)
        print(f"heatmap written to {args.heatmap_out}", file=sys.stderr)
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
