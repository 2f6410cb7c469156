#!/usr/bin/env python
"""Top-k classes of every dataset head (or the single head) for each video, with the
multi-view test protocol or a single view, on the CPU or a GPU.

    python tools/predict.py --cfg configs/demo/synthetic_multi.yaml \
        --checkpoint outputs/demo/checkpoints/checkpoint_epoch_00012.pyth \
        --classnames data/synthetic video1.mp4 video2.mp4 [KEY VALUE ...]

Without --cfg, the config stored in the checkpoint is used. Views default to
TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS; NUM_GPUS 0 forces the CPU. Class names:
--classnames, else DATA.CLASS_NAMES_FILE, else the maps shipped for K400 / MiT / SSv2.
Exit status 1 when a video could not be decoded (the others are still reported).
"""
import argparse
import json
import os
import sys
import tempfile



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", default="", help="config YAML (default: the one in the checkpoint)")
    p.add_argument("--checkpoint", required=True, help="checkpoint (ours or the original's)")
    p.add_argument("inputs", nargs="+", metavar="VIDEO [KEY VALUE ...]",
                   help="video files, then optional config overrides (KEY VALUE pairs)")
    p.add_argument("--views", type=int, default=None, help="temporal views (default TEST.NUM_ENSEMBLE_VIEWS)")
    p.add_argument("--crops", type=int, default=None, choices=[1, 3],
                   help="spatial crops (default TEST.NUM_SPATIAL_CROPS)")
    p.add_argument("--single-view", action="store_true", help="one centre view (1 x 1)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--datasets", default="", help="comma-separated heads to report (default: all)")
    p.add_argument("--classnames", default="", help="JSON list (TEST.DATASET), JSON {dataset: "
                   "[names]}, a synthetic corpus root or a prepared dataset folder")
    p.add_argument("--batch-size", type=int, default=None, help="views per forward (default TEST.BATCH_SIZE)")
    p.add_argument("--output", default="", help="write the result here instead of stdout")
    args = p.parse_intermixed_args(argv)
    # Config keys are upper case with a dot (MODEL.X); the first one starts the overrides.
    split = next((i for i, s in enumerate(args.inputs) if _is_key(s)), len(args.inputs))
    args.videos, args.opts = args.inputs[:split], args.inputs[split:]
    if not args.videos:
        p.error("no video given")
    if len(args.opts) % 2:
        p.error(f"override {args.opts[-1]!r} has no value (KEY VALUE pairs)")
    return args


def _is_key(s: str) -> bool:
    head = s.split(".")[0]
    return not os.path.exists(s) and head.isupper() and head.replace("_", "").isalnum()


def _load_cfg(args, ckpt_path: str):
    from yacs.config import CfgNode

    from multitrain.checkpoint import read_checkpoint
    from multitrain.config import ConfigError, load_config

    if args.cfg:
        return load_config(args.cfg, args.opts)
    text = read_checkpoint(ckpt_path, "--checkpoint").get("cfg")
    if isinstance(text, CfgNode):  # pickled by code of the original's era
        text = text.dump()
    if not isinstance(text, str):
        raise ValueError(f"{ckpt_path} stores no config: pass --cfg")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        try:
            load_config(f.name)
        except ConfigError as e:  # e.g. a config of another code base, with keys we do not know
            raise ValueError(f"{ckpt_path}: its stored config does not load ({e}); pass --cfg") from None
        return load_config(f.name, args.opts)  # errors here are the overrides'
    finally:
        os.remove(f.name)


def main(argv=None) -> int:
    import torch  # noqa: F401  (before decord: decord first crashes in some builds)

    from multitrain.analysis.predict import (Predictor, format_table, head_class_counts,
                                             load_model_weights, resolve_class_names)
    from multitrain.checkpoint import CheckpointError
    from multitrain.models import build_model

    args = parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d] or None
    try:  # input errors (config, checkpoint, class names) end with one line naming the culprit
        cfg = _load_cfg(args, args.checkpoint)
        model = build_model(cfg)
        load_model_weights(model, args.checkpoint)
        predictor = Predictor.from_cfg(cfg, model, datasets=datasets, num_views=args.views,
                                       num_crops=args.crops, single_view=args.single_view,
                                       batch_size=args.batch_size)
        counts = {d: k for d, k in head_class_counts(cfg).items() if d in predictor.protocols}
        # A plain JSON list names the one head asked for, else TEST.DATASET's.
        default = datasets[0] if datasets and len(datasets) == 1 else cfg.TEST.DATASET
        names = resolve_class_names(counts, [args.classnames, cfg.DATA.CLASS_NAMES_FILE],
                                    default_dataset=default)
    except (OSError, ValueError, KeyError, CheckpointError) as e:  # ConfigError is a ValueError
        print(f"predict: {e}", file=sys.stderr)
        return 2
    results = predictor.predict(args.videos, topk=args.topk, class_names=names)
    text = json.dumps(results, indent=1) if args.format == "json" else format_table(results)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
