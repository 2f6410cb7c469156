#!/usr/bin/env python
"""Something-Something v2 JSONs -> pyslowfast_annotations/{train,val,test}.csv + classnames.json.

    python datasets/prepare_ssv2.py --labels labels.json --train train.json
        --val validation.json --out datasets/ssv2 [--test test.json --test-answers answers.csv]
        [--ext webm] [--video-root .../videos_320p]

Labels: {template without brackets: "index"}; train/validation: lists of
{id, label, template, placeholders}; a video is {id}.{ext}. test.csv copies val.csv unless
the test ids and their answers (id;class name lines) are both given.
"""
import argparse

from multitrain.preparation.prepare import convert_ssv2, run_prepare


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", required=True, help="something-something-v2-labels.json")
    p.add_argument("--train", required=True, help="something-something-v2-train.json")
    p.add_argument("--val", required=True, help="something-something-v2-validation.json")
    p.add_argument("--test", default="", help="something-something-v2-test.json (ids)")
    p.add_argument("--test-answers", default="", help="test answers: 'id;class name' lines")
    p.add_argument("--out", required=True, help="dataset folder to write into")
    p.add_argument("--ext", default="webm", help="video extension (webm as released; mp4 if converted)")
    p.add_argument("--video-root", default="", help="drop lines whose video is missing here")
    args = p.parse_args(argv)
    return run_prepare(lambda: convert_ssv2(args.labels, args.train, args.val, args.test or None,
                                            args.test_answers or None, args.ext.lstrip(".")),
                       args.out, args.video_root)


if __name__ == "__main__":
    raise SystemExit(main())
