"""The command-line options every study shares: where its runs go (resumable), the document written from them, and
how the runs are evaluated; and parsing them with the output folder checked before any work."""

from __future__ import annotations

import argparse

from pdefm.train.evaluate import add_evaluation_arguments

from pdefm.runtime.paths import check_output_folder


def add_output_arguments(parser: argparse.ArgumentParser, out: str, doc: str) -> None:
    parser.add_argument("--out", default=out, help="runs go here; finished ones are skipped when rerun")
    parser.add_argument("--doc", default=doc, help="the report written from the runs")
    add_evaluation_arguments(parser)


def parse_study_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options; an `--out` that cannot hold the runs is refused by name before any work."""
    args = parser.parse_args(argv)
    try:
        check_output_folder(args.out, "--out")
    except ValueError as error:
        parser.error(str(error))
    return args
