"""The Hydra application that ``normbench run`` hands its arguments to.

Each job (one run, or one point of a sweep) trains into Hydra's output directory. A job never
prints a traceback for bad input: a :class:`ConfigError` becomes one line on stderr. In a single
run it ends the process with exit code 2 and leaves no run directory behind; in a sweep it is
recorded as a failed run and the sweep goes on, as do failed and diverged runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from normbench import records
from normbench.cli.sweeps import short_name
from normbench.config.catalog import CONFIG_DIR
from normbench.errors import ConfigError, error_lines

# config.yaml names a sweep's run directories through it (a long name: a prefix and a hash).
if not OmegaConf.has_resolver("normbench_short"):
    OmegaConf.register_new_resolver("normbench_short", short_name)


def fail(message: str, code: int = 2):
    print(error_lines(message), file=sys.stderr, flush=True)
    raise SystemExit(code)


def final_line(summary: dict, run_dir: Path) -> str:
    f = summary["final"]
    speed = f"{summary['samples_per_s']:,.0f} samples/s" if summary.get("samples_per_s") else ""
    m = summary.get("primary_metric", "acc")
    val = f", val {m} {f[f'val_{m}']:.4f}" if f.get(f"val_{m}") is not None else ""
    metrics = (f"test {m} {f[f'test_{m}']:.4f}{val}, train {m} {f[f'train_{m}']:.4f}"
               if f.get(f"test_{m}") is not None else "no evaluation")
    longer = [f"{k[len(f'test_{m}_'):]} {v:.4f}" for k, v in f.items() if k.startswith(f"test_{m}_") and v is not None]
    if longer:
        metrics += f", test {m} at " + ", ".join(longer)
    return (f"{summary['status']}: {summary['norm']} norm, {summary['model']} on {summary['dataset']}, "
            f"batch {summary['batch_size']}, seed {summary['seed']} | {metrics} | {summary['steps']} steps "
            f"in {summary['train_time_s']:.1f} s, {speed} | {run_dir}")


# Written by RunDirOwner into a run directory it created, read once by the job: which
# directories normbench made, so that a refused run removes those and never one of the user's.
_CREATED = ".normbench-created-{pid}"
_OWN_FILES = (".hydra", "normbench.log", records.LOG_FILE, records.LOCK_FILE)
# A run directory is untrusted: a marker is believed only if it carries this process's token, so
# a marker planted in someone's directory cannot name directories for normbench to remove.
_TOKEN = secrets.token_hex(16)


class RunDirOwner(Callback):
    """Before a single run, create its run directory, noting which directories are new."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            HydraConfig.instance().set_config(config)  # for ${hydra:...} in hydra.run.dir
            run_dir = Path(str(config.hydra.run.dir)).absolute()
        except Exception:  # Hydra reports a bad run dir itself; nothing is ours to remove then
            return
        new = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        if new:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError:  # Hydra fails on it next, and the command line says which directory
                return
            records.atomic_write_text(run_dir / _CREATED.format(pid=os.getpid()),
                                      "\n".join([_TOKEN, *map(str, new)]))


def _created_dirs(run_dir: Path) -> list[Path]:
    """The directories RunDirOwner created for this process's run, deepest first (read once)."""
    marker = run_dir / _CREATED.format(pid=os.getpid())
    try:
        text = marker.read_text(encoding="utf-8")
    except OSError:
        return []
    marker.unlink(missing_ok=True)
    token, *created = text.splitlines() or [""]
    if token != _TOKEN:
        return []
    ours = {run_dir.absolute(), *run_dir.absolute().parents}  # only the run dir and its ancestors
    return [Path(line) for line in created if Path(line) in ours]


def skipped_line(summary: dict, run_dir: Path) -> str:
    """What a relaunch prints for a run that already finished (in the job, or before submitting)."""
    return f"skipped, already {final_line(summary, run_dir)}"


def _remove_fresh_dir(run_dir: Path, created: list[Path]) -> None:
    """Undo a run that recorded nothing: remove normbench's own files (Hydra's, the log, the
    lock) when nothing else is there, and then the directories normbench created, never others."""
    if not run_dir.exists() or any(p.name not in _OWN_FILES for p in run_dir.iterdir()):
        return
    for name in _OWN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for path in created:  # deepest first; one that is not empty (other runs in it) stays
        try:
            path.rmdir()
        except OSError:
            break


def round_robin_device(cfg: DictConfig, job_num: int) -> None:
    """With several GPUs visible, sweep job k trains on cuda:(k mod count) (trainer.device=auto)."""
    import torch

    count = torch.cuda.device_count() if cfg.trainer.get("device") == "auto" else 0
    if count > 1:
        with open_dict(cfg):
            cfg.trainer.device = f"cuda:{job_num % count}"


def start_line(cfg: DictConfig, run_dir: Path) -> str:
    """What a run says before it imports torch and loads its data (seconds, on a busy machine)."""
    return (f"starting: {cfg.norm.name} norm, {cfg.model.name} on {cfg.dataset.name}, batch {cfg.batch_size}, "
            f"seed {cfg.seed} | {run_dir}")


class _Tee:
    """A text stream that also writes into log files (a run's ``run.log``): what the run prints
    stays in its directory, whichever launcher ran it and however its output was interleaved.
    ``prefix`` starts each line on the terminal (not in the log): the run's name, when parallel
    runs share one terminal."""

    def __init__(self, stream, logs: list, prefix: str = ""):
        self.stream, self.logs, self.prefix, self.at_start = stream, logs, prefix, True

    def write(self, text: str) -> int:
        for log in self.logs:
            log.write(text)
        if not self.prefix:
            return self.stream.write(text)
        self.stream.write(self._prefixed(text))
        return len(text)

    def _prefixed(self, text: str) -> str:
        out = []
        for piece in text.splitlines(keepends=True):
            out.append((self.prefix if self.at_start else "") + piece)
            self.at_start = piece.endswith("\n")
        return "".join(out)

    def flush(self) -> None:
        for log in self.logs:
            log.flush()
        self.stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the terminal's
        return getattr(self.stream, name)


@contextmanager
def logged(run_dirs: list[Path], prefix: str = ""):
    """Everything printed to stdout and stderr inside, also appended to each run directory's
    ``run.log`` (a resumed run's log goes on; a pack's members each get the pack's output). Under
    torchrun only rank 0 writes it, as only rank 0 writes the run directory. The log is taken
    before the run lock, with a lock of its own, so a process refused as the run's second writer
    has written nothing into it."""
    import fcntl

    if os.environ.get("RANK", "0") != "0":
        yield _Logs([], [])
        return
    with ExitStack() as stack:
        logs = []
        new: list[Path] = []  # the logs this process creates
        for run_dir in run_dirs:
            path = Path(run_dir) / records.LOG_FILE
            existed = path.exists()
            try:
                # O_NOFOLLOW: a run directory is untrusted, and a run.log planted as a symlink must not
                # make the run append to the file it points at
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
                log = stack.enter_context(os.fdopen(fd, "a", encoding="utf-8", buffering=1))
                # One writer per log, as per run directory: a second process on the same run (which
                # its run lock then refuses) must not write into the first one's log.
                fcntl.flock(log.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by another process, or a directory that cannot hold a log: no log
                continue
            logs.append(log)
            if not existed:
                new.append(path)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, logs, prefix), _Tee(sys.stderr, logs, prefix)
        try:
            yield _Logs(logs, new)
        finally:
            sys.stdout, sys.stderr = saved


class _Logs:
    """The run logs :func:`logged` writes, and where each stood when it was opened."""

    def __init__(self, files: list, created: list[Path]):
        self.teed = files  # the list the streams write into
        self.files = [(f, f.tell()) for f in files]
        self.created = created

    def discard(self) -> None:
        """Take back what this process wrote, and write no more: a relaunch that trained nothing
        (a finished run skipped, bad input refused) leaves an existing record as it was."""
        for f, start in self.files:
            f.flush()
            f.truncate(start)
        self.teed.clear()
        for path in self.created:
            path.unlink(missing_ok=True)


def run_job(cfg: DictConfig) -> dict | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    created = _created_dirs(run_dir)
    had_record = any((run_dir / name).exists() for name in (records.CONFIG_FILE, records.SUMMARY_FILE,
                                                            records.CHECKPOINT_FILE))
    with _shared_terminal(cfg, hydra_cfg, run_dir) as prefix, logged([run_dir], prefix) as log:
        # A relaunch that trains nothing (a finished run skipped, bad input refused) leaves an
        # existing record as it was, its log included.
        untouched = log.discard if had_record else (lambda: None)
        summary, trained = _run_job(cfg, hydra_cfg, run_dir, created, untouched)
        if not trained:
            untouched()
    return summary


def _run_job(cfg: DictConfig, hydra_cfg, run_dir: Path, created: list[Path],
             untouched) -> tuple[dict | None, bool]:
    """The job, and whether it trained (or tried to: False for a skipped, busy or refused run);
    ``untouched()`` before a refusal exits: it takes this process's lines back out of the log."""
    from normbench.training.preemption import Interrupted

    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        if cfg.trainer.progress != "none" and os.environ.get("RANK", "0") == "0":
            print(start_line(cfg, run_dir), flush=True)
        from normbench.training import distributed
        from normbench.training.checkpoints import (
            finished_summary,  # torch loads here, not for `--help`
        )
        from normbench.training.trainer import train

        finished = finished_summary(cfg, run_dir)
        if finished is not None:  # a relaunched sweep: nothing to train
            print(skipped_line(finished, run_dir), flush=True)
            return finished, False
        if in_sweep:
            round_robin_device(cfg, int(hydra_cfg.job.get("num") or 0))
        summary = train(cfg, run_dir)
        if not distributed.from_env().main:  # under torchrun: rank 0 wrote the record and prints the line
            _remove_fresh_dir(run_dir, created)  # an empty one too
            return summary, True
    except records.RunDirBusy as exc:  # another process writes this run: leave it alone, record nothing
        if not in_sweep:
            untouched()
            fail(str(exc))
        print(f"normbench: busy: {exc}", file=sys.stderr, flush=True)
        return None, False
    except Interrupted as exc:  # no scheduler to requeue us: stop here, resumable
        print(f"normbench: {exc}; run the same command to resume ({run_dir})", file=sys.stderr, flush=True)
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:  # Ctrl-C before the loop, or twice: the last checkpoint stays
        print(f"normbench: interrupted; run the same command to resume from the last checkpoint ({run_dir})",
              file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except ConfigError as exc:
        if not in_sweep:
            _remove_fresh_dir(run_dir, created)
            untouched()
            fail(str(exc))
        print(error_lines(exc), file=sys.stderr, flush=True)
        records.record_failure(run_dir, OmegaConf.to_container(cfg, resolve=True), str(exc))
        return None, False
    except Exception as exc:  # recorded as failed by train(); one line here, no traceback
        message = f"run failed: {type(exc).__name__}: {exc} (record: {run_dir})"
        if not in_sweep:
            fail(message, code=1)
        print(f"normbench: error: {message}", file=sys.stderr, flush=True)
        return None, True
    print(final_line(summary, run_dir), flush=True)
    if summary["status"] == "diverged":
        print(f"normbench: the run diverged: {summary['error']}", file=sys.stderr, flush=True)
    return summary, True


def run_pack(cfg: DictConfig, members: list[tuple[dict, str]]) -> float:
    """A pack's lead job: train it and its ``members`` (``(config, run_dir)`` of the runs that differ
    from it only in seed) as one pack (:func:`normbench.training.packing.train_pack`), print each
    run's final line, and return the lead's objective. Failures are recorded in every member's
    directory and the sweep goes on, as for a single job."""
    run_dirs = [Path(HydraConfig.get().runtime.output_dir), *(Path(d) for _, d in members)]
    cfgs = [cfg, *(OmegaConf.create(c) for c, _ in members)]
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
    with _shared_terminal(cfg, HydraConfig.get(), run_dirs[0], " (pack)") as prefix, logged(run_dirs, prefix):
        return _run_pack(cfg, cfgs, run_dirs)


@contextmanager
def _shared_terminal(cfg: DictConfig, hydra_cfg, run_dir: Path, what: str = ""):
    """When a local sweep runs jobs in parallel, they share one terminal: each line of a job starts
    with its run's name, and a progress bar (which the others would overwrite) prints lines
    instead. Yields the prefix ("" for a job alone on its terminal)."""
    launcher = hydra_cfg.get("launcher") or {}
    parallel = hydra_cfg.mode == RunMode.MULTIRUN and str(launcher.get("_target_", "")).endswith(
        "LocalLauncher") and launcher.get("n_jobs") not in (1, None)
    if not parallel:
        yield ""
        return
    if cfg.trainer.progress in ("auto", "bar"):
        with open_dict(cfg):
            cfg.trainer.progress = "lines"
    yield f"[{run_dir.name}{what}] "


def _run_pack(cfg: DictConfig, cfgs: list[DictConfig], run_dirs: list[Path]) -> float:
    from normbench.training.packing import train_pack
    from normbench.training.preemption import Interrupted

    if cfg.trainer.progress != "none":
        for member, run_dir in zip(cfgs, run_dirs, strict=True):
            print(start_line(member, run_dir), flush=True)
    try:
        summaries = train_pack(cfgs, run_dirs)
    except records.RunDirBusy as exc:
        print(f"normbench: busy: {exc}", file=sys.stderr, flush=True)
        return WORST_OBJECTIVE
    except Interrupted as exc:
        print(f"normbench: {exc}; run the same command to resume ({run_dirs[0].parent})", file=sys.stderr, flush=True)
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:
        print(f"normbench: interrupted; run the same command to resume from the last checkpoints "
              f"({run_dirs[0].parent})", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except ConfigError as exc:
        print(error_lines(exc), file=sys.stderr, flush=True)
        for member, run_dir in zip(cfgs, run_dirs, strict=True):
            if not (run_dir / records.SUMMARY_FILE).exists():
                records.record_failure(run_dir, OmegaConf.to_container(member, resolve=True), str(exc))
        return WORST_OBJECTIVE
    except Exception as exc:  # recorded as failed by train_pack(); one line here, no traceback
        print(f"normbench: error: pack failed: {type(exc).__name__}: {exc} (records: {run_dirs[0].parent})",
              file=sys.stderr, flush=True)
        return WORST_OBJECTIVE
    for summary, run_dir in zip(summaries, run_dirs, strict=True):
        print(final_line(summary, run_dir), flush=True)
        if summary["status"] == "diverged":
            print(f"normbench: the run diverged: {summary['error']}", file=sys.stderr, flush=True)
    return objective(summaries[0], str(cfg.get("objective", "auto")))


class SweepOutcome(Callback):
    """At the end of a multirun, count the runs by status, print one line, and write the counts
    to ``<sweep dir>/sweep_outcome.json``, from which ``normbench run -m`` takes its exit status."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        counts = {status: 0 for status in records.STATUSES}
        counts["missing"] = 0
        for run_dir in records.find_run_dirs([Path(config.hydra.sweep.dir)]):
            try:
                counts[records.read_summary(run_dir).get("status", "missing")] += 1
            except (OSError, ValueError, KeyError):
                counts["missing"] += 1
        records.write_sweep_outcome(Path(config.hydra.sweep.dir), counts)
        parts = [f"{counts[s]} {s}" for s in ("completed", "diverged", "failed")]
        if counts["running"] or counts["missing"]:
            parts.append(f"{counts['running'] + counts['missing']} unfinished")
        print(f"sweep: {', '.join(parts)} | {config.hydra.sweep.dir}", flush=True)


#: What a run that failed, diverged or was refused scores for a sweeper: below any finished run.
WORST_OBJECTIVE = -1.0e9


def objective(summary: dict | None, key: str = "auto") -> float:
    """The number a run gives Hydra's sweeper (``hydra/sweeper=optuna``), higher is better: the
    final value of ``key`` in its summary (``auto``: the task's validation metric, accuracy, or minus
    the bits per character of a language model; selection never reads the test set), or
    :data:`WORST_OBJECTIVE` for a run with none."""
    from normbench.metrics import higher_is_better

    final = (summary or {}).get("final") or {}
    if summary is None or summary.get("status") != "completed":
        return WORST_OBJECTIVE
    if key == "auto":
        key = f"val_{summary.get('primary_metric', 'acc')}"
    value = final.get(key)
    if value is None:
        return WORST_OBJECTIVE
    return float(value) if higher_is_better(key) else -float(value)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    summary, key = run_job(cfg), str(cfg.get("objective", "auto"))
    score = objective(summary, key)
    if score == WORST_OBJECTIVE and summary and summary.get("status") == "completed":
        if key == "auto":  # no validation split: only a sweep selects, so only a sweep is told
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                print(f"normbench: objective=auto reads the validation metric, and this run has no validation split "
                      f"(dataset.val_fraction=0); a sweeper gets {WORST_OBJECTIVE:g}", file=sys.stderr, flush=True)
            return score
        known = ", ".join(k for k, v in summary["final"].items() if v is not None)
        print(f"normbench: objective={key} is not among this run's final metrics ({known}); a sweeper gets "
              f"{WORST_OBJECTIVE:g}", file=sys.stderr, flush=True)
    return score
