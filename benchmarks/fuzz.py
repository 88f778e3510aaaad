"""Fuzz ``ctcimg score`` with thousands of mutated small cartridges; print what was handled.

    python benchmarks/fuzz.py --cases 2000 --seed 1
    python benchmarks/fuzz.py --replay stretch_tag:1000003     # one case, full detail

Each case (see ``tests/fuzzing.py``) builds a small valid cartridge, applies one mutation
of its family (TIFF header bytes, IFD entries, stretch tags, pages, XML text, XML
numbers, folder layouts) and scores it in a worker process under a time and memory
limit. A case is handled when ``ctcimg score`` exits 0 with a complete, strict-JSON
result and a silent stderr, or exits 2 with one line naming a file of the cartridge and
nothing written. A worker that dies or stops answering is replaced; its case counts as
failed. The table lists, per family, cases handled by a result, by a one-line error, and
failed; failures are listed with the case to replay.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "tests")]

import fuzzing  # noqa: E402

#: Seconds the parent waits beyond the case's own time limit before killing the worker.
_GRACE_S = 30


def _worker(connection, workdir: str) -> None:
    """Run the cases sent over ``connection`` one by one; send back each outcome."""
    fuzzing.warm_up(Path(workdir))
    connection.send("ready")
    while True:
        case = connection.recv()
        if case is None:
            return
        connection.send(fuzzing.run_case(case, Path(workdir)))


class _Worker:
    def __init__(self, context, workdir: Path):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, str(workdir)), daemon=True)
        self.process.start()
        if self.connection.recv() != "ready":  # warm-up done (numba kernels loaded)
            raise RuntimeError("fuzz worker did not start")

    def run(self, case: fuzzing.Case, timeout_s: float) -> fuzzing.Outcome | None:
        """The case's outcome, or None when the worker died or did not answer in time."""
        try:
            self.connection.send(case)
            if self.connection.poll(timeout_s):
                return self.connection.recv()
        except (EOFError, ConnectionError):
            pass
        return None

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.connection.send(None)
            except OSError:
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def run_cases(cases: list[fuzzing.Case], workdir: Path, progress: bool = True
              ) -> list[fuzzing.Outcome]:
    """Every case's outcome, run in a worker process that is replaced when it fails."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    worker = _Worker(context, workdir)
    if progress:
        print(f"  worker ready (numba kernels loaded) in {time.perf_counter() - started:.0f} s",
              file=sys.stderr, flush=True)
    outcomes = []
    started = time.perf_counter()
    try:
        for number, case in enumerate(cases, start=1):
            outcome = worker.run(case, fuzzing.CASE_TIMEOUT_S + _GRACE_S)
            if outcome is None:
                worker.process.join(1)
                code = worker.process.exitcode
                worker.process.kill()
                worker.process.join()
                why = (f"worker died (exit code {code})" if code is not None
                       else f"no answer within {fuzzing.CASE_TIMEOUT_S + _GRACE_S} s")
                outcome = fuzzing.Outcome(case, "?", "failed", why)
                worker = _Worker(context, workdir)
            outcomes.append(outcome)
            if progress and (number % 100 == 0 or number == len(cases)):
                failed = sum(not o.handled for o in outcomes)
                print(f"  {number}/{len(cases)} cases, {failed} failed, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        worker.stop()
    return outcomes


def table(outcomes: list[fuzzing.Outcome]) -> str:
    """Families x (result, one-line error, failed, handled %) as a Markdown table."""
    counts = Counter((o.case.family, o.status) for o in outcomes)
    rows = ["| family | cases | exit 0, result | exit 2, one line | failed | handled |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    families = [f for f in fuzzing.FAMILIES if any(o.case.family == f for o in outcomes)]
    for family in [*families, None]:
        def count(status, family=family):
            return sum(n for (f, s), n in counts.items() if s == status and family in (None, f))

        total = count("result") + count("error") + count("failed")
        handled = (total - count("failed")) / total if total else 0
        shown = f"{math.floor(handled * 1000) / 10:.1f} %"  # rounded down: 100 % only if all
        rows.append(f"| {family or '**all**'} | {total} | {count('result')} | {count('error')} "
                    f"| {count('failed')} | {shown} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", metavar="FAMILY:SEED",
                        help="run one case in this process and print its full outcome")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctcimg-fuzz-") as workdir:
        if args.replay:
            family, seed = args.replay.split(":")
            outcome = fuzzing.run_case(fuzzing.Case(family, int(seed)), Path(workdir))
            print(f"{outcome.case.name}: {outcome.status}\nmutation: {outcome.mutation}\n"
                  f"{outcome.detail}")
            return 0 if outcome.handled else 1
        started = time.perf_counter()
        outcomes = run_cases(fuzzing.cases(args.cases, args.seed), Path(workdir))
        elapsed = time.perf_counter() - started
    print(f"ctcimg score on {len(outcomes)} mutated cartridges (seed {args.seed}), "
          f"{elapsed:.0f} s with the worker's warm-up ({elapsed / max(len(outcomes), 1) * 1000:.0f}"
          " ms a case)\n")
    print(table(outcomes))
    failures = [o for o in outcomes if not o.handled]
    if failures:
        print(f"\n{len(failures)} failed (replay: python benchmarks/fuzz.py --replay CASE):")
        for outcome in failures:
            print(f"- {outcome.case.name} [{outcome.mutation}]: "
                  f"{outcome.detail.splitlines()[0] if outcome.detail else ''}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
