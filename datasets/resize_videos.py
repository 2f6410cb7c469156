#!/usr/bin/env python
"""Resize videos to short side 320 (aspect kept, even sizes) in parallel, with PyAV.

    python datasets/resize_videos.py SRC_DIR DST_DIR [--short-side 320] [--workers N]
        [--crf 23] [--keyint 32] [--no-fast-decode] [--list annotations.csv] [--out-ext .mp4]

Mirrors SRC_DIR's relative paths under DST_DIR. Outputs that exist are skipped (each is
written to a temp file then renamed, so it is complete). Videos already at or below the
target are copied. Failures are listed at the end; the exit status is 1 if any.
"""
import argparse
import sys

from multitrain.preparation.prepare import DEFAULT_KEYINT, resize_videos


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="folder of the original videos")
    p.add_argument("dst", help="output folder (e.g. .../kinetics400/videos_320p)")
    p.add_argument("--short-side", type=int, default=320)
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--crf", type=int, default=23, help="x264 constant quality (lower = better)")
    p.add_argument("--keyint", type=int, default=DEFAULT_KEYINT,
                   help="a keyframe at least every N frames, so that a random clip start "
                   "decodes few unused frames (0: the encoder's default, up to 250)")
    p.add_argument("--no-fast-decode", dest="fast_decode", action="store_false",
                   help="x264's default coding tools (smaller files, ~1.7x slower to decode) "
                   "instead of its fastdecode tuning")
    p.add_argument("--list", default="", help="only the videos of this annotation CSV "
                   "(first field of each 'path label' line) instead of every file under SRC")
    p.add_argument("--out-ext", default="", help="change the extension of outputs, e.g. .mp4")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    files = None
    if args.list:
        with open(args.list) as f:
            files = sorted({line.split()[0] for line in f if line.strip()})
    report = resize_videos(args.src, args.dst, args.short_side, args.workers, args.crf,
                           files=files, out_ext=args.out_ext, keyint=args.keyint,
                           fast_decode=args.fast_decode)
    print(f"resized {report.resized}, copied {report.copied} (already <= {args.short_side}p), "
          f"skipped {report.skipped} (done before), failed {len(report.failed)}")
    for src, error in report.failed:
        print(f"FAILED {src}: {error}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
