#!/usr/bin/env python3
"""Check the model against fixtures of the original code: conformance.py FIXTURE.pt [...].

For every stored output prints ||ours - ref|| / ||ref||; exits 1 if any exceeds 1e-4.
The fixture's config file is looked up by name under configs/ (then the shared reference
configs). Library code: multitrain/models/conformance.py.
"""
import argparse

from multitrain.models.conformance import TOLERANCE, check_fixture, format_checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", nargs="+", help="fixture .pt files")
    parser.add_argument("--attention", choices=("sdpa", "reference"), default="sdpa",
                        help="attention implementation to check (default: sdpa)")
    parser.add_argument("--config-root", action="append", default=None,
                        help="folder to search for the fixture's YAML (repeatable; "
                             "default: configs/, then ../shared/reference/configs)")
    args = parser.parse_args(argv)
    failed = False
    for path in args.fixtures:
        checks = check_fixture(path, args.config_root, args.attention)
        print(format_checks(path, checks))
        failed |= not all(c.ok for c in checks)
    print(f"{'FAIL' if failed else 'PASS'} (tolerance {TOLERANCE:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
