#!/usr/bin/env python
"""Moments-in-Time official CSVs -> pyslowfast_annotations/{train,val,test}.csv + classnames.json.

    python datasets/prepare_mit.py --train trainingSet.csv --val validationSet.csv
        --categories moments_categories.txt --out datasets/moments_in_time
        [--train-dir training] [--val-dir validation] [--video-root .../videos_320p]

Official rows: filename,label,agree,disagree; categories: name,index. Paths become
{train-dir}/{filename} and {val-dir}/{filename}, the official folders (use "" to drop
them). test.csv copies val.csv (MiT test labels are not public).
"""
import argparse

from multitrain.preparation.prepare import convert_mit, run_prepare


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="trainingSet.csv")
    p.add_argument("--val", required=True, help="validationSet.csv")
    p.add_argument("--categories", required=True, help="moments_categories.txt")
    p.add_argument("--out", required=True, help="dataset folder to write into")
    p.add_argument("--train-dir", default="training", help="folder prefix of training videos")
    p.add_argument("--val-dir", default="validation", help="folder prefix of validation videos")
    p.add_argument("--video-root", default="", help="drop lines whose video is missing here")
    args = p.parse_args(argv)
    return run_prepare(lambda: convert_mit(args.train, args.val, args.categories, args.train_dir,
                                           args.val_dir), args.out, args.video_root)


if __name__ == "__main__":
    raise SystemExit(main())
