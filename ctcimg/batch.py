"""Score every cartridge of an archive: in parallel, resumable, one failure never stops the rest.

:func:`batch_score` finds the cartridges (:func:`find_cartridges`), scores each into
``out_dir/<cartridge id>/`` exactly as ``ctcimg score`` does, and yields one
:class:`BatchOutcome` per cartridge as it finishes. Work runs in a local process pool
(one cartridge per task; only paths and small dicts cross process boundaries) or, given a
scheduler address, on a Dask cluster with the same task function.

Resuming is the default: a cartridge whose result folder holds a summary.json (written
last, atomically) made with the same engine version and the same whole
:class:`~ctcimg.config.ScoringConfig` from the same input files is not scored again.
Inputs are compared by size and modification time of every file, or by their xxh3
checksums with ``verify_checksums=True``.

:func:`patients_table` / :func:`write_patients_csv` turn outcomes into the one-row-per-
cartridge table ``patients.csv``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ctcimg.channels import HER2_BINS
from ctcimg.errors import InputError
from ctcimg.io.atomic import to_strict_json
from ctcimg.io.formats import is_cartridge_folder
from ctcimg.rules import RULES, parse_rule

PATIENTS_FILE = "patients.csv"
ERROR_FILE = "error.txt"
OK = "ok"
FAILED = "failed"
BASE_COLUMNS = ["cartridge_id", "path", "status", "error", "ctc_count",
                *(f"her2_{b}" for b in HER2_BINS), *(f"pct_{b}" for b in HER2_BINS)]
BUILTIN_CALL_COLUMNS = [f"call_{name}" for name in RULES]

@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one cartridge of a batch.

    Attributes
    ----------
    cartridge_id : str
    path : str
        The cartridge folder.
    status : str
        ``"ok"`` or ``"failed"``.
    error : str or None
        ``"<ErrorType>: <message>"`` when failed (the traceback is in ``<result>/error.txt``).
    summary : dict or None
        The cartridge's summary.json content when ok, without the per-file
        ``input_checksums`` and ``input_stats``.
    skipped : bool
        True when an up-to-date earlier result was kept instead of scoring again.
    n_frames : int
        Frames in the cartridge (0 when it could not be opened).
    seconds : float
        Wall time of the task in its worker.
    peak_rss_mb : float or None
        High-water resident memory of the worker process that ran the task, MiB.
    """

    cartridge_id: str
    path: str
    status: str
    error: str | None
    summary: dict | None
    skipped: bool = False
    n_frames: int = 0
    seconds: float = 0.0
    peak_rss_mb: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


# --------------------------------------------------------------------------- discovery


def find_cartridges(root: str | os.PathLike) -> list[Path]:
    """Every cartridge folder under ``root`` (``root`` itself if it is one), sorted by path.

    A folder is a cartridge when one of the reader's formats recognises it
    (:func:`ctcimg.io.formats.is_cartridge_folder`: a CellTracks XML layout, a CellTracks XP
    export, or a folder directly holding numbered TIFF frames), so batch finds every layout
    :func:`ctcimg.read_cartridge` opens. Truth folders of a simulated archive (CSV/JSON only)
    do not qualify. The search does not descend into a cartridge it found, nor into hidden
    folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("no such folder" if not root.exists() else "not a folder", root)
    if is_cartridge_folder(root):
        return [root]
    found = []
    for folder, dirnames, _ in os.walk(root):
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            path = Path(folder, name)
            if is_cartridge_folder(path):
                found.append(path)
            else:
                keep.append(name)
        dirnames[:] = keep
    return sorted(found)


def check_unique_ids(paths: Sequence[Path]) -> None:
    """Raise :class:`InputError` when two cartridge folders share an id (folder name)."""
    by_id: dict[str, list[Path]] = {}
    for path in paths:
        by_id.setdefault(Path(path).name, []).append(Path(path))
    duplicates = {cid: ps for cid, ps in by_id.items() if len(ps) > 1}
    if duplicates:
        lines = "; ".join(f"{cid} in {', '.join(str(p.parent) for p in ps)}"
                          for cid, ps in sorted(duplicates.items()))
        raise InputError(f"duplicate cartridge id(s), results would overwrite each other: {lines}")


# --------------------------------------------------------------------------- the task


@dataclass(frozen=True)
class TaskOptions:
    """Everything a worker needs besides the cartridge path (small and picklable)."""

    config: object  # ScoringConfig
    channels: tuple[str, ...] | None = None
    pixel_size_um: float | None = None
    report: bool = False
    resume: bool = True
    verify_checksums: bool = False
    gate_model_sha256: str | None = None  # of the config's gate model, for the resume check


#: serialises scoring inside one process (numba's workqueue layer is not thread-safe, and a
#: Dask worker may run several tasks in threads); uncontended in a process pool worker
_SCORE_LOCK = threading.Lock()


def score_task(path: str, out_root: str, options: TaskOptions) -> dict:
    """Score one cartridge into ``out_root/<id>/``; never raises. Returns a small dict
    (the fields of :class:`BatchOutcome`). Runs in a pool worker or on a Dask worker."""
    start = time.perf_counter()
    cartridge_id = Path(path).name
    out = Path(out_root) / cartridge_id
    outcome = {"cartridge_id": cartridge_id, "path": str(path), "status": FAILED,
               "error": None, "summary": None, "skipped": False, "n_frames": 0}
    result_complete = False  # a later failure (the report) must not discard the result
    try:
        from ctcimg import __version__
        from ctcimg.allocator import keep_freed_memory
        from ctcimg.io.cellsearch import read_cartridge
        from ctcimg.results import read_summary
        from ctcimg.score import score_cartridge

        keep_freed_memory()  # this worker process scores frame after frame
        _remove_stale_temporaries(out)
        cartridge = read_cartridge(path, channels=options.channels,
                                   pixel_size_um=options.pixel_size_um)
        outcome["n_frames"] = len(cartridge)
        previous = _previous_summary(out) if options.resume else None
        if previous is not None and _up_to_date(previous, cartridge, options, __version__):
            outcome.update(status=OK, summary=_slim(previous), skipped=True)
            result_complete = True
            if options.report and not (out / "report.html").exists():
                _write_report(out)
        else:
            with _SCORE_LOCK:
                result = score_cartridge(cartridge, config=options.config)
            (out / ERROR_FILE).unlink(missing_ok=True)
            result.to_dir(out)
            result_complete = True
            if options.report:
                _write_report(out)
            outcome.update(status=OK, summary=_slim(read_summary(out)))
    except Exception as err:  # a failing cartridge must never stop the batch (traceback: error.txt)
        import traceback

        from ctcimg.io.atomic import write_text_atomic

        outcome.update(status=FAILED, summary=None, error=describe_exception(err))
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not result_complete:  # never leave a stale result beside the error
                (out / "summary.json").unlink(missing_ok=True)
            write_text_atomic(out / ERROR_FILE, f"{cartridge_id} ({path})\n{outcome['error']}\n\n"
                              + traceback.format_exc())
        except OSError:
            pass
    outcome["seconds"] = time.perf_counter() - start
    outcome["peak_rss_mb"] = _peak_rss_mb()
    return outcome


def _slim(summary: dict | None) -> dict | None:
    """summary.json without the per-file input stats and checksums (keeps outcomes small)."""
    if summary is None:
        return None
    return {k: v for k, v in summary.items() if k not in ("input_checksums", "input_stats")}


def describe_exception(err: BaseException) -> str:
    """One line: the exception type and its message (CtcimgError messages name the file)."""
    message = str(err) or repr(err)
    if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    return f"{type(err).__name__}: {' '.join(message.split())}"


def _up_to_date(previous: dict, cartridge, options: TaskOptions, version: str) -> bool:
    if previous["engine"].get("version") != version:
        return False
    if previous["config"] != json.loads(to_strict_json(options.config.to_dict())):
        return False
    if (previous.get("gate_model") or {}).get("sha256") != options.gate_model_sha256:
        return False
    if options.verify_checksums:
        return previous["input_checksums"] == cartridge.checksums()
    return previous["input_stats"] == cartridge.file_stats()


def _previous_summary(out: Path) -> dict | None:
    """The summary of an earlier complete result in ``out`` (None: none, or unusable)."""
    from ctcimg.results import read_summary

    try:
        return read_summary(out)
    except InputError:
        return None


def _write_report(out: Path) -> None:
    import importlib

    try:
        report = importlib.import_module("ctcimg.report")
    except ModuleNotFoundError:
        return
    write_report = getattr(report, "write_report", None)
    if write_report is not None:
        write_report(out)


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed run left behind (see :mod:`ctcimg.io.atomic`)."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --------------------------------------------------------------------------- local pool


def _init_worker(threads: int, parent_pid: int) -> None:
    """Process-pool initializer: cap numba's threads so workers × threads ≤ cores, and exit
    if the batch process dies (so a killed batch leaves no worker writing behind it)."""
    import gc
    import sys

    from ctcimg import kernels
    from ctcimg.io.tiff import silence_tifffile_log

    kernels.tune_numba()  # as the ctcimg command: NUMBA_OPT for compiles, no BLAS probe
    silence_tifffile_log()  # as in the ctcimg command; the error is in patients.csv

    if "numba" in sys.modules:
        # imported already (forkserver preload): numba re-reads its environment when it
        # compiles and refuses a NUMBA_NUM_THREADS different from the launched pool, so
        # leave the variable alone and cap the threads this (task-running) thread uses
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    gc.freeze()  # the preloaded modules need no collecting in every task
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent or not _alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, name="ctcimg-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _pool(workers: int, threads: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # a worker scores with numba's threads; OpenBLAS's own pool would only compete (the
    # forkserver's preload imports numpy, so it must be set before the server starts)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # workers fork from a server that has the scoring and reading modules imported
        # (every first task imported tifffile, xxhash and the gate model's module again)
        # and the kernels loaded (kernels.preload; numba starts no threads for either;
        # each worker caps its own), so a pool starts in a fraction of a second;
        # this only takes effect if this process has not started a forkserver yet
        context.set_forkserver_preload(["ctcimg.batch", "ctcimg.score", "ctcimg.segment",
                                        "ctcimg.io.cellsearch", "ctcimg.learn", "tifffile",
                                        "xxhash", "ctcimg.kernels.preload"])
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_init_worker, initargs=(threads, os.getpid()))


def _run_local(paths: list[str], out_root: str, options: TaskOptions, workers: int,
               threads: int) -> Iterator[dict]:
    """Run tasks in a process pool, at most 2 × workers in flight. If a worker process dies
    (segfault, out of memory), the cartridges it may have held are retried one at a time in
    a fresh process, so only the culprit is reported failed."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = list(reversed(paths))
    suspects: list[str] = []
    while pending or suspects:
        if suspects:
            path = suspects.pop()
            with _pool(1, threads) as pool:
                try:
                    yield pool.submit(score_task, path, out_root, options).result()
                except BrokenProcessPool as err:
                    yield _died(path, err)
            continue
        pool = _pool(workers, threads)
        try:
            running = {}
            while pending or running:
                while pending and len(running) < 2 * workers:
                    path = pending.pop()
                    running[pool.submit(score_task, path, out_root, options)] = path
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    path = running.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        suspects.append(path)
                        broken = True
                if broken:
                    suspects.extend(running.values())
                    running.clear()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _died(path: str, err: BaseException) -> dict:
    return {"cartridge_id": Path(path).name, "path": path, "status": FAILED,
            "error": f"WorkerDied: the worker process scoring it died ({err})",
            "summary": None, "skipped": False, "n_frames": 0}


# --------------------------------------------------------------------------- dask


def _run_dask(paths: list[str], out_root: str, options: TaskOptions, scheduler) -> Iterator[dict]:
    """Run the same task function on a Dask cluster (``scheduler``: address or Client).

    The archive and ``out_root`` must be visible at the same paths on every worker.
    """
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout="30s")
    try:
        futures = {}
        for path in paths:
            key = f"ctcimg-score-{Path(path).name}-{time.time_ns()}"
            futures[client.submit(score_task, path, out_root, options, key=key,
                                  pure=False, retries=0)] = path
        for future in as_completed(futures):
            path = futures[future]
            try:
                yield future.result()
            except Exception as err:  # a worker died (KilledWorker) or the task was lost
                yield {**_died(path, err), "error": describe_exception(err)}
            future.release()
    finally:
        if client is not scheduler:
            client.close()


# --------------------------------------------------------------------------- public API


def batch_score(
    paths_or_root: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    config=None,
    rule=None,
    her2_profile=None,
    scheduler=None,
    resume: bool = True,
    verify_checksums: bool = False,
    channels=None,
    pixel_size_um: float | None = None,
    thumbnails: bool | None = None,
    report: bool = False,
    threads_per_worker: int | None = None,
    gate_model=None,
) -> Iterator[BatchOutcome]:
    """Score many cartridges; yield a :class:`BatchOutcome` for each as it finishes.

    Parameters
    ----------
    paths_or_root
        An archive folder (searched with :func:`find_cartridges`) or cartridge folders.
    out_dir
        Results go to ``out_dir/<cartridge id>/`` (events.csv, thumbnails.npz,
        summary.json; error.txt with the traceback when a cartridge failed).
    workers
        Local worker processes (default: all cores); 0 scores one cartridge at a time in
        this process, without a pool (debugging, notebooks; no crash isolation). Ignored
        with ``scheduler``.
    config, rule, her2_profile
        As in :func:`ctcimg.score_cartridge`: a ScoringConfig or config file, and options
        that take precedence over it.
    scheduler
        A Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``:
        run the tasks on that cluster instead of a local pool.
    resume
        Keep earlier results whose engine version, whole config and inputs still match
        (default).
    verify_checksums
        Compare inputs by xxh3 checksum (reads every file) rather than size and mtime.
    channels, pixel_size_um, thumbnails
        As in :func:`ctcimg.score_cartridge` / :func:`ctcimg.read_cartridge`.
    report
        Also write the HTML review report of each scored cartridge (if available).
    threads_per_worker
        numba threads per local worker (default: cores // workers, at least 1).
    gate_model
        The path of a learned CTC decision (JSON file from ``ctcimg train``), as in
        :func:`ctcimg.score_cartridge`; results scored without it (or with another
        model, judged by checksum) are scored again.

    Raises
    ------
    InputError
        Before anything runs: a bad config, rule, profile or gate model, no cartridges,
        duplicate ids.

    Examples
    --------
    >>> outcomes = list(batch_score("archive/", "results/", workers=2))  # doctest: +SKIP
    >>> write_patients_csv(outcomes, "results/patients.csv")  # doctest: +SKIP
    """
    paths = _cartridge_paths(paths_or_root)
    options = _task_options(config, rule, her2_profile, thumbnails, gate_model, channels,
                            pixel_size_um, report, resume, verify_checksums)
    workers, threads = _worker_counts(workers, threads_per_worker, len(paths))
    out_root = _prepare_out_dir(Path(out_dir))
    return _outcomes([str(p) for p in paths], str(out_root), options, scheduler, workers,
                     threads)


def _cartridge_paths(paths_or_root: str | os.PathLike | Iterable[str | os.PathLike]
                     ) -> list[Path]:
    """The cartridge folders to score, sorted, with distinct ids; at least one."""
    if isinstance(paths_or_root, (str, os.PathLike)):
        paths = find_cartridges(paths_or_root)
    else:
        paths = sorted(Path(p) for p in paths_or_root)
    if not paths:
        raise InputError(f"no cartridge folders found under {paths_or_root}")
    check_unique_ids(paths)
    return paths


def _task_options(config, rule, her2_profile, thumbnails: bool | None, gate_model, channels,
                  pixel_size_um: float | None, report: bool, resume: bool,
                  verify_checksums: bool) -> TaskOptions:
    """What every task is given: the resolved config and reading options, checked here
    (config, rule, profile, gate model, channels) so that a bad one fails before any run."""
    from ctcimg.config import resolve_config
    from ctcimg.io.source import parse_channels
    from ctcimg.learn import load_gate_model
    from ctcimg.segment import FEATURE_COLUMNS

    config = resolve_config(config, rule=rule, her2_profile=her2_profile, thumbnails=thumbnails,
                            gate_model=gate_model)
    if report and not config.thumbnails:
        raise InputError("the review report needs the cell thumbnails; drop thumbnails=False "
                         "(--no-thumbnails)")
    model = load_gate_model(config.gate_model)
    if model is not None:
        model.require_features(list(FEATURE_COLUMNS))
    return TaskOptions(
        config=config,
        channels=parse_channels(channels) if channels is not None else None,
        pixel_size_um=pixel_size_um,
        report=bool(report),
        resume=bool(resume),
        verify_checksums=bool(verify_checksums),
        gate_model_sha256=None if model is None else model.sha256,
    )


def _worker_counts(workers: int | None, threads_per_worker: int | None, n_cartridges: int
                   ) -> tuple[int, int]:
    """Local worker processes (default all cores, at most one per cartridge; 0: this
    process) and numba threads per worker (default cores // workers)."""
    cores = os.cpu_count() or 1
    if workers is not None and int(workers) < 0:
        raise InputError(f"workers must be 0 (this process) or more, not {workers}")
    workers = cores if workers is None else int(workers)
    workers = min(workers, n_cartridges)
    return workers, int(threads_per_worker or max(1, cores // max(workers, 1)))


def _prepare_out_dir(out_root: Path) -> Path:
    """Create ``out_root``; remove temporary patients tables a killed run left in it."""
    out_root.mkdir(parents=True, exist_ok=True)
    for tmp in out_root.glob(f".{PATIENTS_FILE}.*.tmp"):
        tmp.unlink(missing_ok=True)
    return out_root


def _outcomes(tasks: list[str], out_root: str, options: TaskOptions, scheduler, workers: int,
              threads: int) -> Iterator[BatchOutcome]:
    """Run the tasks (on Dask, in this process, or in a local pool) when iterated."""
    if scheduler is not None:
        raw = _run_dask(tasks, out_root, options, scheduler)
    elif workers == 0:
        raw = (score_task(path, out_root, options) for path in tasks)
    else:
        raw = _run_local(tasks, out_root, options, workers, threads)
    for item in raw:
        yield BatchOutcome(**item)


def patients_table(outcomes: Iterable[BatchOutcome], rule=None):
    """One row per cartridge, sorted by cartridge id (pandas DataFrame).

    Columns: cartridge_id, path, status, error, ctc_count, her2_0 … her2_3+,
    pct_0 … pct_3+, call_liu, call_pestrin, call_riethdorf, and ``call_<name>`` for a
    custom rule (given, or found in the summaries).
    """
    import pandas as pd

    rows = []
    custom: list[str] = []
    if rule is not None and parse_rule(rule).name not in RULES:
        custom.append(parse_rule(rule).name)
    for outcome in outcomes:
        row: dict = {"cartridge_id": outcome.cartridge_id, "path": outcome.path,
                     "status": outcome.status, "error": outcome.error or ""}
        summary = outcome.summary if outcome.ok else None
        if summary:
            counts, percent = summary["her2_counts"], summary["her2_percent"]
            row["ctc_count"] = summary["ctc_count"]
            for b in HER2_BINS:
                row[f"her2_{b}"] = counts.get(b)
                row[f"pct_{b}"] = percent.get(b)
            for name, call in summary["calls"].items():
                row[f"call_{name}"] = call
                if name not in RULES and name not in custom:
                    custom.append(name)
        rows.append(row)
    columns = BASE_COLUMNS + BUILTIN_CALL_COLUMNS + [f"call_{n}" for n in custom]
    table = pd.DataFrame(rows, columns=columns)
    for name in ["ctc_count", *(f"her2_{b}" for b in HER2_BINS)]:
        table[name] = table[name].astype("Int64")
    return table.sort_values("cartridge_id", kind="stable").reset_index(drop=True)


def write_patients_csv(outcomes: Iterable[BatchOutcome] | object,
                       path: str | os.PathLike, rule=None) -> Path:
    """Write :func:`patients_table` (or a table already made) to ``path`` atomically."""
    import pandas as pd

    from ctcimg.io.atomic import write_text_atomic

    table = outcomes if isinstance(outcomes, pd.DataFrame) else patients_table(outcomes, rule)
    path = Path(path)
    write_text_atomic(path, table.to_csv(index=False, lineterminator="\n", float_format="%.2f"))
    return path


def failures(outcomes: Iterable[BatchOutcome]) -> list[BatchOutcome]:
    """The failed outcomes, sorted by cartridge id."""
    return sorted((o for o in outcomes if not o.ok), key=lambda o: o.cartridge_id)


__all__ = [
    "BatchOutcome", "batch_score", "find_cartridges", "check_unique_ids", "patients_table",
    "write_patients_csv", "failures", "is_cartridge_folder", "score_task", "TaskOptions",
    "PATIENTS_FILE", "ERROR_FILE",
]
