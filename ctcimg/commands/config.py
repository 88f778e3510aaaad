"""Print the scoring configuration as commented TOML: every field with its meaning.

Without options it prints the defaults; edit the values you want to change and give the
file to 'ctcimg score --config FILE' or 'ctcimg batch --config FILE' (keys you delete keep
their defaults). --from FILE prints the config of a file instead: a TOML or JSON config,
or a result's summary.json (the config that result was scored with).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", metavar="FILE",
                        help="print this config (TOML, JSON, or a result's summary.json) "
                        "instead of the defaults")


def run(args: argparse.Namespace) -> int:
    import sys

    from ctcimg.config import ScoringConfig, load_config

    config = load_config(args.source) if args.source else ScoringConfig()
    sys.stdout.write(config.to_toml())
    return 0
