"""Progress display: a rich bar in a terminal, plain lines otherwise.

Both leave one line per evaluation in the scrollback (step, epoch, train and test loss and
metric), show the newest evaluation as soon as it is made, and give an ETA; plain lines also
come every :data:`LINE_EVERY_S` seconds between evaluations, so a log never falls silent.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from normbench.metrics import primary_of

#: Seconds between plain progress lines when no evaluation comes.
LINE_EVERY_S = 10.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_eval(record: dict) -> str:
    m = primary_of(record)
    parts = [f"step {record['step']}", f"epoch {record['epoch']:.2f}",
             f"train loss {record['train_loss']:.4f} {m} {record[f'train_{m}']:.4f}",
             f"test loss {record['test_loss']:.4f} {m} {record[f'test_{m}']:.4f}"]
    longer = [f"{k[len(f'test_{m}_'):]} {v:.4f}" for k, v in record.items()
              if k.startswith(f"test_{m}_") and v is not None]
    if longer:
        parts.append(f"test {m} at " + ", ".join(longer))
    return " | ".join(parts)


class _Silent:
    def __init__(self, total: int, start: int, batch_size: int):
        self.total, self.batch_size = total, batch_size
        self._last_step, self._last_time = start, time.perf_counter()
        self.samples_per_s = 0.0
        self.loss: float | None = None  # the mean training loss of the last logged interval

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        if now > self._last_time and step > self._last_step:
            self.samples_per_s = (step - self._last_step) * self.batch_size / (now - self._last_time)
        self._last_step, self._last_time = step, now
        self.loss = loss

    def evaluation(self, record: dict) -> None:
        pass

    def speed(self) -> str:
        """`` | N samples/s | ETA h:mm:ss`` once the speed is known."""
        if not self.samples_per_s:
            return ""
        left = (self.total - self._last_step) * self.batch_size / self.samples_per_s
        return f" | {self.samples_per_s:,.0f} samples/s | ETA {_duration(left)}"

    def eval_line(self, record: dict) -> str:
        return f"[{record['step']}/{self.total}] {format_eval(record)}{self.speed()}"


class _Lines(_Silent):
    def __init__(self, total: int, start: int, batch_size: int):
        super().__init__(total, start, batch_size)
        self._printed = self._last_time

    def step(self, step: int, loss: float) -> None:
        super().step(step, loss)
        if self._last_time - self._printed >= LINE_EVERY_S and step < self.total:
            print(f"[{step}/{self.total}] step {step} | loss {loss:.4f}{self.speed()}", flush=True)
            self._printed = self._last_time

    def evaluation(self, record: dict) -> None:
        print(self.eval_line(record), flush=True)
        self._printed = self._last_time


class _Bar(_Silent):
    def __init__(self, total: int, start: int, batch_size: int):
        super().__init__(total, start, batch_size)
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=False), transient=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, info="")
        self._acc = ""

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def step(self, step: int, loss: float) -> None:
        super().step(step, loss)
        self._show(step)

    def _show(self, step: int) -> None:
        loss = f"loss {self.loss:.4f}" if self.loss is not None else "loss -"
        info = f"{loss}{self._acc} | {self.samples_per_s:,.0f} samples/s"
        self._progress.update(self._task, completed=step, info=info)

    def evaluation(self, record: dict) -> None:
        m = primary_of(record)
        self._acc = f" | test {m} {record[f'test_{m}']:.4f} (step {record['step']})"
        self._progress.console.print(self.eval_line(record), highlight=False)  # above the bar: the scrollback
        self._show(record["step"])


def make_progress(mode: str, total: int, start: int, batch_size: int):
    """A display for ``mode``: ``bar``, ``lines``, ``none``, or ``auto`` (bar on a terminal)."""
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "lines"
    return {"bar": _Bar, "lines": _Lines, "none": _Silent}[mode](total, start, batch_size)
