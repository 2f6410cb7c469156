#!/usr/bin/env python
"""Draw a run's training curves (loss terms, learning rate, validation top-1 per dataset,
final test results) from the JSON stat lines of its log, as a PNG.

    python tools/plot_log.py outputs/demo                 # -> outputs/demo/curves.png
    python tools/plot_log.py outputs/demo/stdout.log --out demo.png --smooth 5
"""
import argparse
import sys



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN_DIR_OR_LOG", help="a run's OUTPUT_DIR or its stdout.log")
    p.add_argument("--out", default="", help="PNG to write (default: curves.png beside the log)")
    p.add_argument("--smooth", type=int, default=1, help="moving average of the training losses "
                   "over this many logged points")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from multitrain.analysis.plot_log import plot_run

    args = parse_args(argv)
    try:
        fig, curves, out = plot_run(args.run, args.out or None, smooth=args.smooth)
    except (FileNotFoundError, ValueError) as e:
        print(f"plot_log: {e}", file=sys.stderr)
        return 1
    n_train = max((len(s) for s in curves.losses.values()), default=0)
    print(f"{out}: {len(curves.losses)} loss terms over {n_train} points, validation of "
          f"{len(curves.val_top1)} series, test of {len(curves.test_top1)} datasets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
