"""The command line: usage errors, help and listings in this process (Typer's ``CliRunner``);
a run, the imports of a refusal and a sweep's exit status across a real process boundary."""

import json
import subprocess
import sys

import pytest
from procs import cli, normbench

from normbench import records

TINY = ["trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none"]


def test_run_trains_and_records(tmp_path):
    run_dir = tmp_path / "gn"
    proc = normbench("run", "norm=group", "batch_size=2", *TINY, f"hydra.run.dir={run_dir}", check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["norm"] == "group" and summary["batch_size"] == 2
    assert len(records.read_metrics(run_dir)) == 3
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("completed: group norm") and str(run_dir) in last and "test acc" in last


NO_TORCH = """
import sys
from typer.testing import CliRunner
from normbench.cli.commands import app
listed = CliRunner().invoke(app, ["list", "norms"])
helped = CliRunner().invoke(app, ["--help"])
refused = CliRunner().invoke(app, ["run", "batch_size=0", "hydra.run.dir=never"])
assert listed.exit_code == 0 and "  group " in listed.stdout, listed.output
assert helped.exit_code == 0 and refused.exit_code == 2, refused.output
assert refused.stderr == "normbench: error: batch_size=0 must be a positive integer\\n", refused.stderr
print(sorted(m for m in ("torch", "pandas", "matplotlib") if m in sys.modules))
"""


def test_list_help_and_a_bad_value_answer_without_importing_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # nor pandas, nor matplotlib
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("override", ["dataset.permute=maybe", "norm.mean_only=off", "norm.affine=yes",
                                      "optim.nesterov=1", "optim.norm_weight_decay=no"])
def test_a_switch_takes_only_true_or_false(tmp_path, override):
    result = cli("run", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.exit_code == 2
    assert result.stderr == f"normbench: error: {override} must be true or false\n"
    assert not (tmp_path / "run").exists()


def test_a_run_directory_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    result = cli("run", f"hydra.run.dir={tmp_path / 'file' / 'run'}")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"normbench: error: cannot create the run directory {tmp_path / 'file'}")
    assert "hydra.run.dir=DIR" in result.stderr and result.stderr.count("\n") == 1


def test_version_list_and_help():
    assert cli("--version", check=True).stdout.strip().startswith("normbench 0.")
    listing = cli("list", "norms", check=True).stdout
    for kind in ("none", "batch", "group", "layer", "instance", "weight"):
        assert f"  {kind} " in listing
    everything = cli("list", check=True).stdout
    assert "models:" in everything and "datasets:" in everything and "mnist1d" in everything
    assert "claims:" in everything and "gn-batch-size" in everything
    top = cli("--help", check=True).stdout
    assert "run" in top and "list" in top and "normbench run norm=group batch_size=2" in top
    run_help = cli("run", "--help", check=True).stdout
    assert "--config-help" in run_help and "--cfg job" in run_help and "-m" in run_help
    groups = cli("run", "--config-help", check=True).stdout
    assert "norm: batch, ghost, group, instance, layer, none, renorm, rms, weight" in groups
    assert "debug: tiny" in groups and "norm/population" not in groups and "optim/common" not in groups


def test_cfg_job_prints_the_composed_config_without_training(tmp_path):
    result = cli("run", "norm=layer", "model=mlp", "--cfg", "job", cwd=tmp_path, check=True)
    assert "name: layer" in result.stdout and "name: mlp" in result.stdout and "batch_size: 32" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args,message", [
    (["norm=grup"], "unknown norm 'grup'; choose one of: batch, ghost, group, instance, layer, none, renorm, rms, weight"),
    (["model=transformer"], "unknown model 'transformer'"),
    (["batch_size=0"], "batch_size=0 must be a positive integer"),
    (["trainer.max_steps=-5"], "trainer.max_steps=-5 must be a positive integer"),
    (["norm=group", "norm.groups=5"], "norm.groups=5 does not divide the 32 channels"),
    (["norm=batch", "batch_size=1"], "needs batch_size>=2"),
    (["model=mlp", "norm=instance"], "norm=instance normalizes each channel over its positions"),
    (["batchsize=3"], "unknown config key 'batchsize'; did you mean 'batch_size'?"),
    (["trainer.max_step=3"], "unknown config key 'trainer.max_step'; did you mean 'trainer.max_steps'?"),
    (["-m", "norm=batch,grup"], "unknown norm 'grup'"),
    (["-m", "hydra/launcher=slurmm", "seed=0"], "unknown hydra/launcher 'slurmm'; choose one of: basic,"),
    (["--config-name", "nope"], "Cannot find primary config 'nope'"),  # not "cannot create the run directory"
])
def test_bad_input_is_one_line_nonzero_exit_no_traceback_no_record(tmp_path, args, message):
    run_dir = tmp_path / "run"
    result = cli("run", *args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("normbench: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and not isinstance(result.exception, Exception)
    assert not run_dir.exists() and not (tmp_path / "sweep").exists()


def test_an_unknown_launcher_lists_the_installed_ones():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="the cluster extra is not installed")
    result = cli("run", "-m", "hydra/launcher=slurmm", "seed=0")
    assert result.exit_code == 2 and "choose one of: basic, joblib, local," in result.stderr


def test_bad_input_against_a_finished_run_loses_nothing(tmp_path):
    cli("run", *TINY, f"hydra.run.dir={tmp_path}", check=True)
    record = lambda: {p.name: p.read_bytes() for p in tmp_path.iterdir()  # noqa: E731
                      if p.is_file() and p.name != records.LOCK_FILE}  # the lock names its last holder
    before = record()
    result = cli("run", *TINY, "norm=group", "norm.groups=3", f"hydra.run.dir={tmp_path}")
    assert result.exit_code == 2
    assert record() == before


def test_multirun_sweeps_and_isolates_a_failing_job(tmp_path):
    proc = normbench("run", "-m", "norm=batch,group", "batch_size=1,4", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 1  # one job could not run: the sweep says so in its exit status
    summaries = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/summary.json")}
    assert len(summaries) == 4
    statuses = sorted((s["norm"], s["batch_size"], s["status"]) for s in summaries.values())
    assert statuses == [("batch", 1, "failed"), ("batch", 4, "completed"), ("group", 1, "completed"),
                        ("group", 4, "completed")]
    failed = next(s for s in summaries.values() if s["status"] == "failed")
    assert "batch_size>=2" in failed["error"]
    assert proc.stdout.strip().splitlines()[-1].startswith("sweep: 3 completed, 0 diverged, 1 failed")
    assert "Traceback" not in proc.stderr


def test_run_version_is_normbench_and_unknown_options_and_unwritable_outputs_are_one_line(tmp_path):
    assert cli("run", "--version", check=True).stdout.strip().startswith("normbench 0.")
    wrong = cli("reproduce", "--sedes", "3")
    assert wrong.exit_code == 2 and wrong.stderr.count("\n") == 1
    assert "unknown option '--sedes'; did you mean --seeds?" in wrong.stderr and "unknown claim" not in wrong.stderr
    sweep = tmp_path / "sweep"
    from tests.report_runs import write_run
    write_run(sweep, "r0")
    for args, where in ((("report", sweep, "-o", "/proc/nope"), "-o OUT"),
                        (("reproduce", "bn-sigmoid", "--report-only", "--out", "/proc/nope", "--runs", sweep),
                         "--out DIR")):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("normbench: error: cannot write /proc/nope") and where in result.stderr
        assert "Traceback" not in result.output and result.stderr.count("\n") == 1


def test_a_run_logs_what_it_printed_and_a_second_writer_writes_nothing_into_its_log(tmp_path, capsys):
    import fcntl

    from normbench.cli.hydra_app import logged

    run_dir = tmp_path / "run"
    result = cli("run", "trainer.max_steps=4", "trainer.eval_every=2", f"hydra.run.dir={run_dir}")
    assert result.exit_code == 0, result.output
    log = (run_dir / records.LOG_FILE).read_text()
    assert log.startswith("starting: batch norm") and "completed: batch norm" in log
    with open(run_dir / records.LOG_FILE, "a") as held:  # another process logs this run
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with logged([run_dir]):
            print("the second writer")
    assert "the second writer" in capsys.readouterr().out  # still printed
    assert "the second writer" not in (run_dir / records.LOG_FILE).read_text()
    planted = tmp_path / "elsewhere.txt"  # a hostile directory's run.log that points elsewhere
    planted.write_text("mine\n")
    (run_dir / records.LOG_FILE).unlink()
    (run_dir / records.LOG_FILE).symlink_to(planted)
    with logged([run_dir]):
        print("not into the planted file")
    assert planted.read_text() == "mine\n"


def test_experiment_and_debug_overlays_choose_without_a_plus_and_are_listed(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\n# batch 8, my setup\nbatch_size: 8\n")
    for spelling in ("experiment=mine", "+experiment=mine"):
        job = cli("run", spelling, "--config-dir", tmp_path, "--cfg", "job", check=True).stdout
        assert "\nbatch_size: 8\n" in f"\n{job}"  # the overlay overrides config.yaml's own value
    tiny = cli("run", "debug=tiny", "--cfg", "job", check=True).stdout
    assert "max_steps: 20" in tiny and "eval_every: 10" in tiny
    listed = cli("list", "experiments", "--config-dir", tmp_path, check=True).stdout
    assert listed == "experiments:\n  mine  batch 8, my setup\n"
    assert "(none: add yours as configs/experiment/NAME.yaml" in cli("list", "experiments", check=True).stdout
    assert "gn-batch-size" in cli("list", "claims", check=True).stdout
    for args in (("experiment=gn-batch-size",), ("experiment=gn-batch-size", "--config-dir", tmp_path)):
        refused = cli("run", *args)
        assert refused.exit_code == 2 and "is a claim, not an experiment overlay; run it with `normbench " \
            "reproduce gn-batch-size`" in refused.stderr and refused.stderr.count("\n") == 1
    assert "unknown experiment 'nope': no experiment overlays" in cli("run", "experiment=nope").stderr


def test_a_missing_config_dir_and_stray_list_arguments_are_refused_by_name(tmp_path):
    missing = tmp_path / "nope"
    for args in (("run", "--config-dir", missing, "norm=gn4"), ("list", "--config-dir", missing)):
        result = cli(*args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"normbench: error: config directory {missing} does not exist")
    for stray in ("extra", "foo=bar"):
        result = cli("list", "norms", stray)
        assert result.exit_code == 2 and f"`normbench list` does not take '{stray}'" in result.stderr
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\n# mine\nseed: 3\n")
    assert cli("list", "--config-dir", tmp_path, "experiments", check=True).stdout == "experiments:\n  mine  mine\n"


def test_a_run_directory_of_another_config_says_which_key_differs(tmp_path):
    cli("run", "debug=tiny", f"hydra.run.dir={tmp_path}", check=True)
    refused = cli("run", "debug=tiny", "batch_size=16", f"hydra.run.dir={tmp_path}")
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert f"{tmp_path} holds a run with another config (batch_size: 32 there, 16 now)" in refused.stderr


def test_shell_completion_installs_and_answers_the_hook_it_installs():
    hook = normbench("run", "-sc", "install=bash", check=True).stdout
    assert "-sc query=bash" in hook and "complete -o nospace" in hook
    # what the hook runs on TAB: `normbench -sc query=bash`, with the line in COMP_LINE
    for line, expected in (("normbench run norm=gr", "norm=group"), ("normbench run optim.l", "optim.lr=")):
        answer = normbench("-sc", "query=bash", env={"COMP_LINE": line, "COMP_POINT": str(len(line))}, check=True)
        assert expected in answer.stdout.split(), answer.stdout


def test_runs_indexes_every_run_with_integers_as_integers_and_relative_paths(tmp_path):
    import csv

    from tests.report_runs import write_run

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(sweep, f"s{seed}", seed=seed, norm="group")
    write_run(sweep, "bn", norm="batch", seed=0)
    (sweep / "broken").mkdir()
    (sweep / "broken" / "summary.json").write_text("{not json")
    out = tmp_path / "index" / "runs.csv"
    result = cli("runs", sweep, "-o", out)
    assert result.exit_code == 0, result.output
    assert "4 run directories" in result.stdout and "unreada" in result.stdout
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows][:3] == ["completed"] * 3 and rows[3]["status"].startswith("unreadable")
    assert {r["directory"] for r in rows} == {f"../sweep/{n}" for n in ("s0", "s1", "bn", "broken")}
    assert rows[0]["steps"] == "400" and rows[0]["seed"] in ("0", "1")  # integers, not 400.0
    assert cli("runs", tmp_path / "nope").exit_code == 2


def test_parallel_runs_label_their_lines_on_the_terminal_and_print_lines_not_bars(tmp_path):
    import io

    from omegaconf import OmegaConf

    from normbench.cli.hydra_app import _shared_terminal, _Tee

    screen = io.StringIO()
    log = io.StringIO()
    tee = _Tee(screen, [log], "[norm=group] ")
    tee.write("[10/20] step 10")
    tee.write("\n")
    tee.write("completed: group\nsecond line\n")
    assert screen.getvalue() == "[norm=group] [10/20] step 10\n[norm=group] completed: group\n[norm=group] second line\n"
    assert log.getvalue() == "[10/20] step 10\ncompleted: group\nsecond line\n"  # the log unlabelled
    from hydra.types import RunMode

    cfg = OmegaConf.create({"trainer": {"progress": "auto"}})
    local = OmegaConf.create({"mode": RunMode.MULTIRUN, "launcher": {
        "_target_": "hydra_plugins.normbench_launchers.LocalLauncher", "n_jobs": 2}})
    with _shared_terminal(cfg, local, tmp_path / "norm=group") as prefix:
        assert prefix == "[norm=group] " and cfg.trainer.progress == "lines"
    alone = OmegaConf.create({"mode": RunMode.MULTIRUN, "launcher": {"_target_": "x.SequentialLauncher"}})
    cfg.trainer.progress = "auto"
    with _shared_terminal(cfg, alone, tmp_path / "norm=group") as prefix:
        assert prefix == "" and cfg.trainer.progress == "auto"


def test_a_user_option_with_a_packaged_name_is_refused_not_silently_ignored(tmp_path):
    (tmp_path / "norm").mkdir()
    (tmp_path / "norm" / "batch.yaml").write_text("defaults: [group, _self_]\ngroups: 4\n")
    for args in (("run", "--config-dir", tmp_path, "--cfg", "job"), ("list", "norms", "--config-dir", tmp_path)):
        result = cli(*args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert "has the name of normbench's own norm=batch, which Hydra would use instead of yours" in result.stderr
