#!/usr/bin/env python
"""Check the data a config uses: every annotation line and every video.

    python tools/check_dataset.py --cfg FILE.yaml [--split train,val,test] [--workers N]
        [--backend decord|pyav] [--json REPORT.json] [KEY VALUE ...]

Multi-dataset configs check each dataset of MODEL.MULTI_DATASETS (MODEL.MULTI_PATH_*);
others check DATA.PATH_TO_DATA_DIR / DATA.PATH_PREFIX. Prints missing, empty and corrupt
files (with paths), malformed lines and bad labels (with file:line), and frame count, fps
and resolution statistics. Exit status: 0 all good, 1 problems found, 2 config error.
"""
import argparse
import json
import sys

from multitrain.config import ConfigError, load_config
from multitrain.preparation.dataset_check import (
    check_datasets, format_report, report_to_dict, sources_from_cfg,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    p.add_argument("--split", default="train,val,test", help="comma-separated splits to check")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--backend", default=None, help="decoder (default: DATA.DECODING_BACKEND)")
    p.add_argument("--json", default="", help="also write the full report to this JSON file")
    p.add_argument("--max-listed", type=int, default=50, help="problems printed (all go to --json)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.cfg_file, args.opts)
        sources = sources_from_cfg(cfg)
    except (ConfigError, ValueError) as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    report = check_datasets(
        sources, splits, separator=cfg.DATA.PATH_LABEL_SEPARATOR, multi_label=cfg.DATA.MULTI_LABEL,
        backend=args.backend or cfg.DATA.DECODING_BACKEND, workers=args.workers,
        progress=not args.no_progress)
    print(format_report(report, args.max_listed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report_to_dict(report), f, indent=1)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
