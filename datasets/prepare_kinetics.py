#!/usr/bin/env python
"""Kinetics-400 official CSVs -> pyslowfast_annotations/{train,val,test}.csv + classnames.json.

    python datasets/prepare_kinetics.py --train train.csv --val validate.csv [--test test.csv]
        --out datasets/kinetics400 [--pattern "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"]
        [--video-root datasets/kinetics400/videos_320p]

Official columns: label,youtube_id,time_start,time_end,split[,is_cc]. Classes are sorted
alphabetically (the usual K400 order). --pattern may use youtube_id, time_start, time_end,
label, label_underscore, label_id and split. Without a labelled --test, test.csv copies
val.csv. --video-root drops (and lists) lines whose video is not there.
"""
import argparse

from multitrain.preparation.prepare import KINETICS_PATTERN, convert_kinetics, run_prepare


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="official train CSV")
    p.add_argument("--val", required=True, help="official validation CSV")
    p.add_argument("--test", default="", help="official test CSV (used only if it has labels)")
    p.add_argument("--out", required=True, help="dataset folder to write into")
    p.add_argument("--pattern", default=KINETICS_PATTERN, help="video file name pattern")
    p.add_argument("--video-root", default="", help="drop lines whose video is missing here")
    args = p.parse_args(argv)
    return run_prepare(lambda: convert_kinetics(args.train, args.val, args.test or None,
                                                args.pattern), args.out, args.video_root)


if __name__ == "__main__":
    raise SystemExit(main())
