"""``normbench reproduce``: run the papers' comparisons, report them, and decide each claim.

For each claim: its experiment's sweeps run through ``normbench run -m`` (one subprocess per
sweep, so any Hydra launcher works and a relaunch skips finished runs), into
``<runs>/<claim>/<scale>/sweep<i>-<hash>``; then the reporter writes ``<out>/<claim>/`` (report.md,
plots, CSVs) from those runs, the claim's verdict function decides, and ``<out>/<claim>/
README.md`` and ``verdict.json`` record the verdict with its numbers, the seeds, the wall time
and the exact command. ``<out>/README.md`` lists every claim (those not run yet too).

Nothing here imports torch: training happens in the subprocesses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from normbench.claims import experiments, sequential
from normbench.claims.archive import PILOT_LONGER_PREFIX, PILOT_PREFIX, archive_runs, archived
from normbench.claims.checks import (
    INCONCLUSIVE,
    NOT_RUN,
    PLATEAU,
    RULE,
    Check,
    Mechanism,
    Verdict,
    combine,
    plateau_by_budget,
)
from normbench.claims.registry import CLAIMS, claim
from normbench.errors import ConfigError

VERDICT_FILE = "verdict.json"
#: What made the intervals of a verdict.json; records without it used the percentile bootstrap,
#: whose intervals were too narrow at 3 seeds (see normbench/report/stats.py).
STATISTICS = "welch-t"
DEFAULT_SEEDS = 5


def command_line(claims: Sequence[str], scale: str, seeds: int | None, out: str, extra: Sequence[str]) -> str:
    parts = ["normbench", "reproduce", *claims, "--scale", scale, *(["--seeds", str(seeds)] if seeds else [])]
    if str(out) != "results":
        parts += ["--out", str(out)]
    return " ".join(shlex.quote(p) for p in [*parts, *extra])


def run_sweeps(name: str, scale: str, seeds: int, runs_root: str | Path, extra: Sequence[str],
               quiet: bool = False) -> tuple[list[Path], int]:
    """Run the claim's sweeps; returns their directories and the worst exit code."""
    return _run(name, experiments.sweeps(name, scale, seeds, runs_root, extra), quiet)


def _run(name: str, sweeps: list, quiet: bool) -> tuple[list[Path], int]:
    """Run ``sweeps`` one after the other, each a ``normbench run -m`` subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    dirs, worst = [], 0
    for sweep in sweeps:
        cmd = [sys.executable, "-m", "normbench", "run", "-m", *sweep.args]
        print(f"[{name}] normbench run -m {' '.join(sweep.fixed + sweep.swept)}", flush=True)
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if quiet else None)
        worst = max(worst, proc.returncode)
        dirs.append(sweep.sweep_dir)
    return dirs, worst


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def pilot_plan(name: str, scale: str) -> dict | None:
    """The spec's pilot at ``scale``: its seeds (outside every verdict's range: 1000 and up), the
    overrides of its longer budget, and the plateau tolerance; None when the spec has none."""
    pilot = experiments.load_experiment(name)["scales"][scale].get("pilot")
    if pilot is None:
        return None
    seeds, longer = pilot.get("seeds") or [], pilot.get("longer") or []
    if not all(isinstance(s, int) and s >= 1000 for s in seeds) or len(seeds) < 2 or not longer:
        raise ConfigError(f"claim {name}: scales.{scale}.pilot needs at least two seeds of 1000 and up (outside "
                          "every verdict's range) and 'longer' overrides (the longer budget)")
    return {"seeds": list(seeds), "longer": [str(o) for o in longer], "tolerance": float(pilot.get("tolerance", 0.01))}


def pilot_sweeps(name: str, scale: str, runs_root, extra: Sequence[str], plan: dict | None = None) -> tuple[list, list]:
    """The pilot's sweeps at the spec's budget and at the longer one (``plan``: the claim's
    :func:`pilot_plan`, read when not given)."""
    plan = plan or pilot_plan(name, scale)
    if plan is None:
        raise ConfigError(f"claim {name} declares no pilot at --scale {scale} (scales.{scale}.pilot in its spec)")
    return (experiments.sweeps(name, scale, plan["seeds"], runs_root, extra, prefix=PILOT_PREFIX),
            experiments.sweeps(name, scale, plan["seeds"], runs_root, [*extra, *plan["longer"]],
                               prefix=PILOT_LONGER_PREFIX))


def run_pilot(name: str, scale: str, runs_root, extra: Sequence[str], quiet: bool = False) -> Mechanism:
    """Run the claim's pilot (its pilot seeds at the spec's budget and at the longer one) and
    return what it measures: whether every setting has reached its plateau."""
    for group in pilot_sweeps(name, scale, runs_root, extra):
        _run(name, group, quiet)
    found = pilot_mechanism(name, scale, runs_root, extra)
    if found is None:
        raise ConfigError(f"claim {name}: the pilot's sweeps left no run directories (see their errors above)")
    return found


def pilot_dirs(name: str, scale: str, runs_root, extra: Sequence[str], plan: dict | None) -> tuple[list[Path], list[Path]]:
    """The existing sweep directories of the claim's pilot (``plan``: its :func:`pilot_plan`;
    None: it has none) at the spec's budget and at the longer one."""
    if plan is None:
        return [], []
    base, longer = ([s.sweep_dir for s in group if s.sweep_dir.is_dir()]
                    for group in pilot_sweeps(name, scale, runs_root, extra, plan))
    return base, longer


def pilot_measure(plan: dict, base: Sequence[Path], longer: Sequence[Path]) -> Mechanism | None:
    """The pilot's plateau mechanism from its run directories; None when it has not run at both budgets."""
    from normbench.report.load import load_runs

    if not base or not longer:
        return None
    return plateau_by_budget(load_runs(base), load_runs(longer), plan["tolerance"],
                             f"the longer budget ({' '.join(plan['longer'])})")


def pilot_mechanism(name: str, scale: str, runs_root, extra: Sequence[str]) -> Mechanism | None:
    """The pilot's plateau mechanism from its run directories; None when it has not run."""
    plan = pilot_plan(name, scale)
    return None if plan is None else pilot_measure(plan, *pilot_dirs(name, scale, runs_root, extra, plan))


def planned_looks(name: str, scale: str) -> list[int] | None:
    """The looks (seeds a side) the claim's spec plans at ``scale``, or None (a fixed seed count)."""
    looks = experiments.load_experiment(name)["scales"][scale].get("looks")
    return None if looks is None else sequential.validate_looks(looks)


def verdict_from(name: str, rs, params: dict, looks: list[int] | None = None,
                 pilot: Mechanism | None = None) -> tuple[Verdict, int | None]:
    """Claim ``name``'s verdict on the runs ``rs`` with its spec's ``params``, at its planned
    ``looks`` in turn (claims/sequential.py; the index of the look it stands at, or None), with
    the ``pilot``'s plateau measurement in place of the verdict's own plateau check."""
    c = claim(name)
    look = None
    if looks is None:
        verdict = c.verdict(rs, dict(params))
    else:
        verdict, look = sequential.decide(lambda part: c.verdict(part, dict(params)), rs, looks)
    if pilot is not None:
        mechanism = [m for m in verdict.mechanism if m.name != PLATEAU] + [pilot]
        verdict.mechanism, verdict.outcome = mechanism, combine(verdict.checks, mechanism)
    return verdict, look


def write_claim(name: str, out_dir: Path, sweep_dirs: list[Path], scale: str, seeds: int, command: str,
                elapsed_s: float, sweep_code: int, looks: list[int] | None = None,
                pilot: Mechanism | None = None, pilot_runs: Sequence[Path] = ()) -> Verdict:
    """The report, the verdict, the claim's README and the archive of its runs' records
    (:mod:`normbench.claims.archive`: the verdict's sweeps and ``pilot_runs``, the pilot's) in
    ``out_dir``; returns the verdict. ``looks``: the spec's planned looks, decided in turn
    (claims/sequential.py). ``pilot``: the pilot's plateau measurement, which replaces the
    verdict's own plateau check."""
    from normbench.report.api import ReportError, build_report

    c = claim(name)
    look = None  # the planned look the verdict stands at

    def decide(rs):
        nonlocal look
        verdict, look = verdict_from(name, rs, c.params, looks, pilot)
        return verdict

    exp = experiments.load_experiment(name)
    rep = exp.get("report") or {}
    existing = [d for d in sweep_dirs if d.is_dir()]
    if not existing:  # nothing ran (every sweep failed to start): no record
        return Verdict(name, NOT_RUN, notes=[f"no run directories in {', '.join(map(str, sweep_dirs))}"],
                       not_run=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = None
    try:
        report = build_report(existing, out_dir, x=rep.get("x"), metric=rep.get("metric"),
                              plots=rep.get("plots"), title=f"{name}: {c.title}")
    except ReportError as exc:
        verdict = Verdict(name, INCONCLUSIVE, notes=[f"no report: {exc}"])
    except Exception as exc:  # a plot that fails must not cost the verdict
        from normbench.report.load import load_runs

        rs = load_runs(existing)
        verdict = decide(rs)
        verdict.notes.append(f"report.md not written: {type(exc).__name__}: {exc}")
    else:
        verdict = decide(report.runs)
    archive_runs([*existing, *pilot_runs], out_dir)
    runs = report.runs.runs if report else None
    extra_figures = []
    if report is not None and c.figures:
        from normbench.report.figures_extra import EXTRA_FIGURES

        extra_figures = [p for p in (EXTRA_FIGURES[f](report.runs, out_dir / "plots") for f in c.figures) if p]
    counts = runs["status"].value_counts().to_dict() if runs is not None else {}
    compute_s = float(runs["wall_time_s"].fillna(0).sum()) if runs is not None and "wall_time_s" in runs else 0.0
    record = {
        **verdict.to_dict(),
        "title": c.title, "paper": c.paper, "paper_result": c.paper_result, "scale": scale,
        "seeds": seeds if look is None else looks[look],
        **({"looks": looks, "look": look + 1} if look is not None else {}),
        "statistics": STATISTICS, "params": dict(c.params),
        **({"pilot_plan": pilot_plan(name, scale)} if pilot is not None else {}),
        "runs": {k: int(v) for k, v in counts.items()}, "elapsed_s": round(elapsed_s, 1),
        "run_wall_time_s": round(compute_s, 1), "command": command, "sweep_exit_code": sweep_code,
        "sweep_dirs": [_rel(d, out_dir) for d in sweep_dirs], "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "figures": ([_rel(p[0], out_dir) for p in report.figures.values()] if report else [])
        + [_rel(p, out_dir) for p in extra_figures],
    }
    (out_dir / VERDICT_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(claim_markdown(record), encoding="utf-8")
    return verdict


def claim_markdown(r: dict) -> str:
    lines = [f"# {r['claim']}: {r['title']}", "",
             f"**Verdict: {r['outcome']}** ({r['scale']} scale, {r['seeds']} seeds)", "",
             f"- Paper: {r['paper']}: {r['paper_result']}",
             f"- Command: `{r['command']}`",
             "- Runs: " + ", ".join(f"{n} {s}" for s, n in r["runs"].items()),
             f"- Wall time: {r['elapsed_s']:.0f} s for this invocation; the runs' own wall times add up to "
             f"{r['run_wall_time_s']:.0f} s",
             "- Full report: [report.md](report.md); tables: runs.csv, summary.csv, differences.csv", ""]
    if r.get("mechanism"):
        lines += ["Mechanism checks (is the proxy in the paper's regime?); a configuration fact holds once the "
                  "spec is written and is no evidence of the mechanism:", "",
                  "| mechanism | kind | measured | |", "| --- | --- | --- | --- |"]
        lines += [f"| {m['statement']} | {'configuration fact' if m.get('fact') else 'measured'} | {m['value']} | "
                  f"{'pass' if m['passed'] else '**FAIL**'} |" for m in r["mechanism"]]
        lines.append("")
    if r["checks"]:
        lines += ["| check | outcome | numbers (mean a vs b, difference, 95% Welch interval, detectable difference) |",
                  "| --- | --- | --- |"]
        for ch in r["checks"]:
            outcome = ch["outcome"] if ch.get("decides", True) else f"{ch['outcome']} (measurement, not counted)"
            lines.append(f"| {ch['statement']} | {outcome} | {_check_text(ch)} |")
        lines += ["", RULE, ""]
    if r["notes"]:
        lines += ["Other numbers:", ""] + [f"- {n}" for n in r["notes"]] + [""]
    for fig in r.get("figures", []):
        lines.append(f"![{Path(fig).stem}]({fig})")
    return "\n".join(lines) + "\n"


def _check_text(ch: dict) -> str:
    return Check(**ch).text()


_FIGURE_ORDER = ("batch_size", "label_noise", "preactivation_percentiles", "_vs_", "convergence_steps",
                 "generalization")


def _main_figure(figures: list[str]) -> str | None:
    """The figure that shows a claim best: the batch-size plot over convergence, and so on."""
    for key in _FIGURE_ORDER:
        for fig in figures:
            if key in Path(fig).stem:
                return fig
    return figures[0] if figures else None


def write_index(out: Path, scale: str) -> Path:
    """``out/README.md``: every claim with its paper's number, ours and the verdict."""
    rows, total = [], 0.0
    for cid, c in CLAIMS.items():
        path = out / cid / VERDICT_FILE
        if path.exists():
            r = json.loads(path.read_text(encoding="utf-8"))
            old = r.get("statistics") != STATISTICS
            checks = [{**ch, "interval": "95% percentile-bootstrap interval"} if old else ch for ch in r["checks"]]
            ours = "<br>".join([f"{'fact' if m.get('fact') else 'mechanism'} {'pass' if m['passed'] else 'FAIL'}: "
                                f"{m['statement']}: {m['value']}"
                                for m in r.get("mechanism", [])]
                               + [f"{ch['outcome']}: {ch['statement']}: {_check_text(ch)}" for ch in checks]) \
                or "; ".join(r["notes"])
            if old:
                ours = ("**made with the old statistics** (a percentile bootstrap, too narrow at 3 seeds, and "
                        "no mechanism checks; not re-run here): " + ours)
            total += r.get("elapsed_s", 0.0)
            fig = _main_figure(r.get("figures", []))
            fig = f"[{Path(fig).stem}]({cid}/{fig})" if fig else "–"
            rows.append(f"| [{cid}]({cid}/README.md) | {c.paper}: {c.paper_result} | {fig} | {ours} | "
                        f"**{r['outcome']}** | {r['seeds']} | {r['elapsed_s']:.0f} s | `{r['command']}` |")
        else:
            rows.append(f"| {cid} | {c.paper}: {c.paper_result} | – | – | not run yet | – | – | "
                        f"`normbench reproduce {cid}` |")
    notes_file = out / "NOTES.md"
    notes = notes_file.read_text(encoding="utf-8").strip() if notes_file.exists() else ""
    text = "\n".join([
        "# Reproductions", "",
        "Written by `normbench reproduce` (small scale unless a claim says otherwise; `NOTES.md` is added "
        "below when present). Each claim's directory "
        "holds its verdict (README.md, verdict.json) and the reporter's report.md, plots and CSVs. "
        + RULE + " Intervals are Welch t intervals over seeds (honest at 3 to 5 seeds, unlike the "
        "percentile bootstrap); each check also gives the smallest difference its seeds detect.", "",
        "| claim | paper | our figure | ours (per check) | verdict | seeds | wall time | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
        f"Sum of the claims' wall times: {total:.0f} s.", "", *([notes, ""] if notes else [])])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def _setting(extra: Sequence[str]) -> list[str]:
    """The overrides among ``extra`` that change what runs compute (not the launcher, not display)."""
    from normbench.config.identity import nuisance_keys

    skip = set(nuisance_keys())
    return [o for o in extra if "=" in o and not o.lstrip("+~").startswith("hydra")
            and o.split("=", 1)[0].lstrip("+~") not in skip]


def _recorded_extra(command: str) -> list[str]:
    """The KEY=VALUE overrides of a recorded ``normbench reproduce`` command line."""
    return [t for t in shlex.split(command) if "=" in t and not t.startswith("-")]


def check_replaceable(out: Path, names: Sequence[str], scale: str, seeds: int | None, runs_root, extra) -> None:
    """Refuse to replace a claim's verdict in ``out`` made from another setup (scale, seed count,
    the claim's spec, any override that changes the runs): a published "reproduced" must not turn
    into a short pilot's "inconclusive" unnoticed. The same setup again (more runs finished, new
    verdict code, another launcher) may replace it."""
    for name in names:
        path = out / name / VERDICT_FILE
        if not path.exists():
            continue
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # not a record: nothing worth keeping to compare with
        plan = _plan(name, scale, seeds)
        dirs = [s.sweep_dir.name for s in experiments.sweeps(name, scale, _first(plan), runs_root, extra)]
        new = (scale, plan, dirs, _setting(extra))
        before = (old.get("scale"), old.get("looks") or old.get("seeds"), [Path(d).name for d in old.get("sweep_dirs", [])],
                  _setting(_recorded_extra(old.get("command", ""))))
        if new != before:
            shown = f"--seeds {plan}" if isinstance(plan, int) else f"looks {plan}"
            raise ConfigError(
                f"{path.parent} holds a verdict made by `{old.get('command', '?')}`; this setup ({shown}, "
                f"--scale {scale}{''.join(' ' + o for o in _setting(extra))}) would replace it; write elsewhere "
                "with --out DIR, or replace it with --force")


def _plan(name: str, scale: str, seeds: int | None) -> int | list[int]:
    """The seeds a claim runs: ``seeds`` when given, else its spec's planned looks, else the default."""
    if seeds is not None:
        return seeds
    return planned_looks(name, scale) or DEFAULT_SEEDS


def _first(plan: int | list[int]) -> int:
    return plan if isinstance(plan, int) else plan[0]


def reproduce(claims: Sequence[str], scale: str = "small", seeds: int | None = None, out: str | Path = "results",
              runs_root: str | Path = experiments.DEFAULT_RUNS_ROOT, extra: Sequence[str] = (),
              report_only: bool = False, quiet: bool = False, force: bool = False) -> dict[str, Verdict]:
    """Run (unless ``report_only``), report and decide ``claims`` (all when empty).

    ``seeds``: a fixed count for every claim; None: each claim's planned looks where its spec
    declares them (more seeds run only while a check is unsettled), else :data:`DEFAULT_SEEDS`.

    A verdict already in ``out`` made from another setup is not replaced unless ``force``
    (:func:`check_replaceable`), and nothing runs then.
    """
    names = list(claims) or list(CLAIMS)
    for name in names:
        claim(name)
        experiments.load_experiment(name)
    out = Path(out)
    if not force:
        check_replaceable(out, names, scale, seeds, runs_root, extra)
    verdicts = {}
    for name in names:
        start = time.perf_counter()
        plan = _plan(name, scale, seeds)
        looks = None if isinstance(plan, int) else plan
        plan_of_pilot = pilot_plan(name, scale)  # the pilot does not change between looks
        pilot_runs = pilot_dirs(name, scale, runs_root, extra, plan_of_pilot)
        pilot = None if plan_of_pilot is None else pilot_measure(plan_of_pilot, *pilot_runs)
        for n in [plan] if looks is None else looks:
            if report_only:
                dirs = [s.sweep_dir for s in experiments.sweeps(name, scale, n, runs_root, extra)]
                code = 0
            else:
                dirs, code = run_sweeps(name, scale, n, runs_root, extra, quiet)
            elapsed = time.perf_counter() - start
            cmd = command_line([name], scale, plan if looks is None else None, str(out), extra)
            previous = out / name / VERDICT_FILE
            if report_only and previous.exists():  # keep the wall time and command of the real run
                record = json.loads(previous.read_text(encoding="utf-8"))
                elapsed, cmd = record.get("elapsed_s", elapsed), record.get("command", cmd)
            verdict = write_claim(name, out / name, dirs, scale, n, cmd, elapsed, code, looks, pilot,
                                  [*pilot_runs[0], *pilot_runs[1]])
            if looks is None or report_only or verdict.not_run or not sequential.unsettled(verdict):
                break  # settled (or decided from the runs there are): no more seeds to run
        verdicts[name] = verdict
        if verdict.not_run:
            print(f"[{name}] NOT RUN: {verdict.notes[0]}", flush=True)
            continue
        print(f"[{name}] {verdict.outcome.upper()}: {verdict.headline()} ({elapsed:.0f} s) -> {out / name}",
              flush=True)
    write_index(out, scale)
    return verdicts


def recompute(out_dir: Path) -> list[str]:
    """Claim ``out_dir``'s verdict again from its archived runs alone (:mod:`normbench.claims.archive`),
    with the parameters, looks and pilot plan its verdict.json records; returns what differs
    from that record (empty: every check recomputes to its recorded outcome and numbers)."""
    from normbench.report.load import load_runs

    out_dir = Path(out_dir)
    record = json.loads((out_dir / VERDICT_FILE).read_text(encoding="utf-8"))
    sweeps, base, longer = archived(out_dir)
    if not sweeps:
        return [f"{out_dir}: no archived runs ({out_dir / 'runs'})"]
    plan = record.get("pilot_plan")
    pilot = None if plan is None else pilot_measure(plan, base, longer)
    if plan is not None and pilot is None:
        return [f"{out_dir}: its verdict used a pilot, and the archive holds no pilot runs at both budgets"]
    verdict, _ = verdict_from(record["claim"], load_runs(sweeps), record.get("params", {}), record.get("looks"), pilot)
    now = verdict.to_dict()
    problems = []
    if now["outcome"] != record["outcome"]:
        problems.append(f"outcome: recorded {record['outcome']}, recomputed {now['outcome']}")
    for what, keys in (("checks", ("statement", "outcome", "n_a", "n_b", "diff", "ci_lo", "ci_hi")),
                       ("mechanism", ("statement", "passed", "value"))):
        old, new = record.get(what, []), now[what]
        if len(old) != len(new):
            problems.append(f"{what}: {len(old)} recorded, {len(new)} recomputed")
            continue
        for a, b in zip(old, new, strict=True):
            for key in keys:
                if not _same(a.get(key), b.get(key)):
                    problems.append(f"{what} '{a.get('statement')}': {key} recorded {a.get(key)!r}, "
                                    f"recomputed {b.get(key)!r}")
    return problems


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or abs(a - b) <= 1e-9 * max(1.0, abs(a))  # NaN, or equal to rounding
    return a == b
