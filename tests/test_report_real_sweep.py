"""The reporter on a real sweep that `normbench run -m` trained (2 norms x 2 batch sizes x 2 seeds)."""

import pandas as pd
from PIL import Image
from procs import cli, normbench


def test_real_tiny_sweep_reports_every_plot(tmp_path):
    sweep = tmp_path / "sweep"
    proc = normbench("run", "-m", "norm=batch,group", "batch_size=4,16", "seed=0,1", "trainer.max_steps=30",
                     "trainer.eval_every=10", "trainer.train_eval_samples=200", "trainer.progress=none",
                     f"hydra.sweep.dir={sweep}", env={"NORMBENCH_NO_REPORT": "0"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "sweep: 8 completed, 0 diverged, 0 failed" in proc.stdout

    # The end-of-sweep callback wrote a report into the sweep directory.
    auto = sweep / "report"
    for name in ("convergence_steps", "convergence_time", "batch_size", "generalization"):
        for ext in ("png", "svg"):
            assert (auto / "plots" / f"{name}.{ext}").stat().st_size > 1000, name
        with Image.open(auto / "plots" / f"{name}.png") as image:
            image.verify()
        with Image.open(auto / "plots" / f"{name}.png") as image:
            assert image.width >= 800 and image.height >= 400
    runs = pd.read_csv(auto / "runs.csv")
    assert len(runs) == 8 and set(runs["norm"]) == {"batch", "group"} and set(runs["batch_size"]) == {4, 16}

    # The command makes the same report anywhere, and prints the summary table.
    out = tmp_path / "again"
    proc = cli("report", str(sweep), "-o", str(out), "--x", "batch_size", "--metric", "test_acc")
    assert proc.exit_code == 0, proc.output
    assert "report:" in proc.stdout and (out / "report.md").exists()
    text = (out / "report.md").read_text()
    assert "Batch-size sensitivity" in text and "plots/batch_size.png" in text
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4  # (norm, batch size) settings, seeds aggregated


def test_report_of_a_missing_directory_is_one_line(tmp_path):
    proc = cli("report", str(tmp_path / "nope"))
    assert proc.exit_code == 2
    assert proc.stderr.startswith("normbench: error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
