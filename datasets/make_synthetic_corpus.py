#!/usr/bin/env python
"""Generate the synthetic K400/MiT/SSv2 stand-in corpus (see datasets/README.md).

    python datasets/make_synthetic_corpus.py ROOT [--videos-per-class N] [--seed S]
        [--short-side 320] [--workers W] [--force]

Skips the work when ROOT/.complete exists (written last, so an interrupted run is redone)
and was written in the current format, unless --force.
"""
import argparse
import json

from multitrain.preparation.synthetic import (
    CORPUS_FORMAT, DEFAULT_COUNTS, make_synthetic_corpus, read_corpus_summary,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", help="output folder (e.g. data/synthetic)")
    p.add_argument("--videos-per-class", type=int, default=None,
                   help=f"train videos per class; val/test get a third (default {DEFAULT_COUNTS})")
    p.add_argument("--val-per-class", type=int, default=None, help="override val videos per class")
    p.add_argument("--test-per-class", type=int, default=None, help="override test videos per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--short-side", type=int, default=None,
                   help="fixed short side in pixels (e.g. 320 for loader benchmarks); default varied 96-160")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="regenerate even if ROOT/.complete exists")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    done = read_corpus_summary(args.root)
    if done is not None and done.get("format") != CORPUS_FORMAT:
        print(f"{args.root}: corpus written in format {done.get('format')}, this code writes "
              f"format {CORPUS_FORMAT}: regenerating")
    elif done is not None and not args.force:
        print(f"{args.root}: complete corpus already there ({done.get('num_videos')} videos, "
              f"seed {done.get('seed')}, counts {done.get('counts')}, short side "
              f"{done.get('short_side')}); use --force to regenerate")
        return 0
    counts = None
    if args.videos_per_class is not None or args.val_per_class is not None or args.test_per_class is not None:
        n = args.videos_per_class if args.videos_per_class is not None else DEFAULT_COUNTS["train"]
        counts = {"train": n, "val": max(1, n // 3), "test": max(1, n // 3)}
        if args.val_per_class is not None:
            counts["val"] = args.val_per_class
        if args.test_per_class is not None:
            counts["test"] = args.test_per_class
    summary = make_synthetic_corpus(args.root, counts, seed=args.seed, short_side=args.short_side,
                                    num_workers=args.workers, progress=True)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
