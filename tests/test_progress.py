"""The progress display: every evaluation leaves a line with the newest numbers, plain lines keep
coming between evaluations with an ETA, and the bar shows the evaluation just made."""

import io

from rich.console import Console

from normbench.training import progress

RECORD = {"step": 100, "epoch": 0.5, "train_loss": 0.9, "train_acc": 0.61, "test_loss": 1.0, "test_acc": 0.57,
          "test_acc_relational": 0.52}


def test_lines_between_evaluations_come_every_few_seconds_with_an_eta(monkeypatch, capsys):
    clock = iter([0.0, 3.0, 12.0, 30.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines = progress.make_progress("lines", total=1000, start=0, batch_size=10)  # t=0
    lines.step(50, 1.5)    # t=3: too soon for a line
    lines.step(100, 1.2)   # t=12: a line, 50 steps in 9 s
    lines.evaluation(RECORD)  # always a line
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[100/1000] step 100 | loss 1.2000 | 56 samples/s | ETA 0:02:42")
    assert out[1].startswith("[100/1000] step 100 | epoch 0.50 | train loss 0.9000 acc 0.6100 | test loss 1.0000 "
                             "acc 0.5700 | test acc at relational 0.5200")
    assert len(out) == 2


def test_the_bar_shows_the_evaluation_just_made_and_leaves_its_line(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "Console", lambda **kw: Console(file=buffer, force_terminal=False, width=200))
    with progress.make_progress("bar", total=1000, start=0, batch_size=10) as bar:
        bar.step(100, 1.2)
        bar.evaluation(RECORD)
        info = bar._progress.tasks[0].fields["info"]
    assert "test acc 0.5700 (step 100)" in info and "loss 1.2000" in info
    assert "[100/1000] step 100 | epoch 0.50 | train loss 0.9000 acc 0.6100" in buffer.getvalue()
