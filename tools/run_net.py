#!/usr/bin/env python
"""Train and/or test a model: `python tools/run_net.py --cfg FILE.yaml [KEY VALUE ...]`.

Multi-node: add `--init_method tcp://HOST:PORT --num_shards N --shard_id I` on every node,
or start it under `torchrun` / SLURM (the environment is read).
"""
import argparse
import sys

from multitrain.config import ConfigError, load_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    p.add_argument("--init_method", default=None, help="e.g. tcp://10.0.1.6:23456 (multi-node)")
    p.add_argument("--num_shards", type=int, default=None, help="number of nodes")
    p.add_argument("--shard_id", type=int, default=None, help="this node's index")
    p.add_argument("opts", nargs="*", help="KEY VALUE overrides, e.g. NUM_GPUS 0")
    # The original README puts --init_method/--num_shards/--shard_id after the overrides.
    return p.parse_intermixed_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    opts = list(args.opts)
    if args.num_shards is not None:
        opts += ["NUM_SHARDS", str(args.num_shards)]
    if args.shard_id is not None:
        opts += ["SHARD_ID", str(args.shard_id)]
    try:
        cfg = load_config(args.cfg_file, opts)
    except ConfigError as e:
        print(f"Config error: {e}", file=sys.stderr)
        return 2
    from multitrain.engine.launch import run

    return run(cfg, init_method=args.init_method)


if __name__ == "__main__":
    raise SystemExit(main())
