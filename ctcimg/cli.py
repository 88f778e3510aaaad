"""The ``ctcimg`` command line.

Each subcommand lives in ``ctcimg/commands/<name>.py`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import only
argparse-level code at the top so ``ctcimg --help`` stays instant; heavy imports
happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ctcimg import __version__
from ctcimg.allocator import keep_freed_memory
from ctcimg.errors import CtcimgError

#: subcommand -> one-line help, in the order shown by ``ctcimg --help``.
COMMANDS: dict[str, str] = {
    "inspect": "check a cartridge and show what was found in it",
    "score": "score one cartridge: CTC count, HER2 bins, patient call",
    "batch": "score every cartridge under a folder, in parallel and resumable",
    "calibrate": "fit a HER2 threshold profile from reviewer-scored events",
    "config": "print the scoring configuration (defaults) as commented TOML",
    "train": "learn the lab's CTC decision from reviewer-labelled events",
    "report": "write an HTML review gallery for a scored cartridge",
    "stats": "cohort statistics: Table 1, Cox, Kaplan-Meier, log-rank",
    "simulate": "write synthetic cartridges with known truth",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctcimg",
        description=(
            "Find circulating tumour cells in CellSearch images, score their HER2 "
            "staining 0/1+/2+/3+, call each patient CTC-HER2 positive or negative, "
            "and relate the calls to survival."
        ),
        epilog="Run 'ctcimg COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"ctcimg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = _command_module(name)
        if module is None:
            continue
        sub = subparsers.add_parser(
            name, help=help_text, description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def _command_module(name: str):
    try:
        return importlib.import_module(f"ctcimg.commands.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"ctcimg.commands.{name}":
            return None  # command not built yet
        raise


def _one_line_warning(command: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"ctcimg {command}: warning: {message}", file=file or sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctcimg`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ctcimg.io.tiff import silence_tifffile_log

    silence_tifffile_log()
    warnings.showwarning = _one_line_warning(args.command)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # frame-sized buffers are reused, not mapped anew per frame
    try:
        return int(args.run(args) or 0)
    except CtcimgError as err:
        print(f"ctcimg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"ctcimg {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ctcimg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
