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



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint (ours or the original's)")
    p.add_argument("--datasets", default="", help="comma-separated dataset names "
                   "(default: read from the checkpoint's cfg, else from the projection names)")
    p.add_argument("--classnames", default="", help="JSON file {dataset: [names]} or a corpus root "
                   "holding relations.json")
    p.add_argument("--truth", default="", help="relations.json (or the corpus root holding it) with "
                   "the true relations to score against")
    p.add_argument("-k", type=int, default=3, help="related classes listed per class")
    p.add_argument("--format", choices=["text", "json", "csv"], default="text")
    p.add_argument("--output", default="", help="write the listing here instead of stdout")
    p.add_argument("--heatmap", default="", help="pair a_b to draw, e.g. kinetics_mit")
    p.add_argument("--heatmap-out", default="relations_heatmap.png")
    return p.parse_args(argv)


def _datasets(args, state, ckpt):
    if args.datasets:
        return args.datasets.split(",")
    cfg = ckpt.get("cfg")
    if isinstance(cfg, str):
        import yaml

        cfg = yaml.safe_load(cfg) or {}
    if isinstance(cfg, dict):  # a YAML string, or a CfgNode pickled by the original's code
        names = (cfg.get("MODEL") or {}).get("MULTI_DATASETS")
        if names:
            return list(names)
    prefix = "head.heads."
    return sorted({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _classnames(path):
    from multitrain.analysis.predict import load_class_names

    return load_class_names(path) if path else {}


def _truth(path):
    if not path:
        return None
    if os.path.isdir(path):
        path = os.path.join(path, "relations.json")
    with open(path) as f:
        data = json.load(f)
    if "relations" not in data:
        raise SystemExit(f"--truth {path}: no 'relations' entry (expected the corpus's relations.json)")
    return data["relations"]


def draw_heatmap(rel, names_a, names_b, a, b, out_path, truth=None):
    """Heatmap of `rel` [K_a, K_b] (rows: a's classes); with `truth` (0/1 [K_a][K_b]) the
    truly related cells are framed. The figure grows with the class count and label length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    ka, kb = rel.shape
    show_x, show_y = kb <= 60, ka <= 60
    # Inches: cells, plus room for the (rotated) tick labels, colour bar and title.
    label_w = 0.075 * max((len(n) for n in names_a), default=1) if show_y else 0.3
    label_h = 0.065 * max((len(n) for n in names_b), default=1) if show_x else 0.3
    w = min(40.0, max(5.0, 0.45 * kb + label_w + 2.2))
    h = min(40.0, max(3.5, 0.40 * ka + label_h + 1.4))
    fig, ax = plt.subplots(figsize=(w, h))
    lim = float(rel.abs().max()) or 1.0
    im = ax.imshow(rel.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    if show_x:
        ax.set_xticks(range(kb), names_b, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    if show_y:
        ax.set_yticks(range(ka), names_a, fontsize=8)
    if ka * kb <= 400:  # small enough to print the weights
        for i in range(ka):
            for j in range(kb):
                v = float(rel[i, j])
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * lim else "black")
    if truth is not None:
        for i in range(ka):
            for j in range(kb):
                if truth[i][j]:
                    ax.add_patch(Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False, lw=1.8, ec="black"))
    ax.set_xlabel(f"{b} classes")
    ax.set_ylabel(f"{a} classes")
    ax.set_title(f"projection {a} -> {b}: weight of each {a} class\non each {b} class"
                 + (" (framed: truly related)" if truth is not None else ""), fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def write_listing(out, fmt, learned, datasets, names, k, truth):
    """The top-k related classes of every class, as text, JSON rows or CSV rows."""
    from multitrain.analysis.relations import format_relations, split_pair, top_related

    if fmt == "text":
        out.write(format_relations(learned, datasets, names, k=k, truth=truth) + "\n")
        return
    rows = []
    for pair, rel in learned.items():
        a, b = split_pair(pair, datasets)
        na, nb = names.get(a), names.get(b)
        for i, related in enumerate(top_related(rel, k)):
            for rank, (j, wgt) in enumerate(related, 1):
                rows.append({"from_dataset": a, "from_class": na[i] if na else i, "to_dataset": b,
                             "to_class": nb[j] if nb else j, "rank": rank, "weight": round(wgt, 6)})
    if fmt == "json":
        json.dump(rows, out, indent=1)
        out.write("\n")
    else:
        w = csv.DictWriter(out, fieldnames=["from_dataset", "from_class", "to_dataset",
                                            "to_class", "rank", "weight"])
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> int:
    from multitrain.analysis.relations import learned_relations, score_against_truth, split_pair
    from multitrain.checkpoint import CheckpointError, read_model_state

    args = parse_args(argv)
    try:  # read once: the state dict for the weights, the rest of the file for its config
        ckpt, state = read_model_state(args.checkpoint, "--checkpoint")
    except CheckpointError as e:
        print(f"relations: {e}", file=sys.stderr)
        return 1
    try:
        learned = learned_relations(state)
    except ValueError as e:
        print(f"relations: {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    datasets = _datasets(args, state, ckpt)
    names = _classnames(args.classnames)
    for pair, rel in learned.items():  # names must fit the projection shapes
        for d, k in zip(split_pair(pair, datasets), rel.shape):
            if d in names and len(names[d]) != k:
                raise SystemExit(f"--classnames {args.classnames}: {len(names[d])} names for {d!r}, "
                                 f"its head in {args.checkpoint} has {k} classes")
    truth = _truth(args.truth)
    if args.heatmap and args.heatmap not in learned:
        raise SystemExit(f"--heatmap {args.heatmap}: no such projection; the checkpoint has "
                         f"{sorted(learned)}")

    out = open(args.output, "w") if args.output else sys.stdout
    write_listing(out, args.format, learned, datasets, names, args.k, truth)
    if truth is not None:
        scores = score_against_truth(learned, truth)
        # The listing owns stdout when it goes there; the scores then go to stderr.
        print(json.dumps({"agreement_with_truth": scores}),
              file=sys.stderr if out is sys.stdout else sys.stdout)
    if args.heatmap:
        a, b = split_pair(args.heatmap, datasets)
        rel = learned[args.heatmap]
        na = names.get(a) or [str(i) for i in range(rel.shape[0])]
        nb = names.get(b) or [str(j) for j in range(rel.shape[1])]
        draw_heatmap(rel, na, nb, a, b, args.heatmap_out,
                     truth=truth.get(args.heatmap) if truth else None)
        print(f"heatmap written to {args.heatmap_out}", file=sys.stderr)
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
