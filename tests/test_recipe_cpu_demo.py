"""The CPU demo's analysis (recipes/common/analyze.py) on the committed grid's metrics, one seed and five."""

from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
plt = pytest.importorskip("matplotlib.pyplot")

from recipes.common import analyze  # noqa: E402

CPU_DEMO = Path(__file__).resolve().parents[1] / "recipes" / "cpu_demo"
GRID_METRICS = CPU_DEMO / "results" / "metrics.csv"


def analyse(metrics: "pd.DataFrame", tmp_path: Path, monkeypatch):
    """Run the analysis' command line on `metrics`; returns summary.md's text and the curves figure."""
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    analyze.main(["--metrics", str(tmp_path / "metrics.csv"), "--out", str(tmp_path)])
    assert (tmp_path / "curves.png").stat().st_size > 0
    return (tmp_path / "summary.md").read_text(), figures[0]


def test_one_seed_says_n_a_and_seed_0(tmp_path, monkeypatch):
    """The main job's shape: gdpo and saw_gdpo, seed 0 (here the grid's seed-0 runs)."""
    metrics = pd.read_csv(GRID_METRICS)
    summary, figure = analyse(metrics[(metrics["seed"] == 0) & metrics["method"].str.endswith("gdpo")], tmp_path,
                              monkeypatch)
    table_rows = [line for line in summary.splitlines() if line.startswith(("| gdpo", "| saw_gdpo"))]
    assert len(table_rows) == 6  # two methods and the paired row, in the results and the weight-change tables
    assert all("± n/a" in line for line in table_rows) and "± 0.0" not in summary
    assert "(n/a with one seed)" in summary
    assert figure.get_suptitle().endswith("(seed 0)")
    assert all(ax.get_ylabel() for ax in figure.axes)
    monkeypatch.undo()
    plt.close(figure)


def test_five_seeds_give_spreads_and_bands(tmp_path, monkeypatch):
    summary, figure = analyse(pd.read_csv(GRID_METRICS), tmp_path, monkeypatch)
    committed = (CPU_DEMO / "results" / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("|")]
    assert rows == [line for line in committed.splitlines() if line.startswith("|")]  # the committed tables
    assert "n/a" not in "".join(rows)
    assert "mean over seeds, band = min..max" in figure.get_suptitle()
    assert all(ax.get_ylabel() for ax in figure.axes)
    monkeypatch.undo()
    plt.close(figure)


# ------------------------------------------------------------------------------------ grids that resume and grow


def test_record_run_replaces_a_run_and_keeps_the_others(tmp_path):
    from recipes.common.runs import finished_runs, read_csv, record_run

    def rows(method, seed, value):
        return [{"method": method, "seed": seed, "step": step, "format_reward": value} for step in (1, 2)]

    record_run(tmp_path, {"method": "gdpo", "seed": 0, "steps": 2, "returncode": 0}, rows("gdpo", 0, 0.1))
    record_run(tmp_path, {"method": "gdpo", "seed": 1, "steps": 2, "returncode": 0}, rows("gdpo", 1, 0.2))
    record_run(tmp_path, {"method": "grpo", "seed": 0, "steps": 3, "returncode": 0}, rows("grpo", 0, 0.3))
    assert finished_runs(tmp_path, steps=2) == {("gdpo", 0), ("gdpo", 1)}  # grpo ran 3 steps, not 2
    record_run(tmp_path, {"method": "gdpo", "seed": 0, "steps": 2, "returncode": 0}, rows("gdpo", 0, 0.5))
    record_run(tmp_path, {"method": "gdpo", "seed": 1, "steps": 2, "returncode": -9}, [])  # killed this time
    assert finished_runs(tmp_path, steps=2) == {("gdpo", 0)}
    metrics = [(row["method"], row["seed"], row["step"], row["format_reward"])
               for row in read_csv(tmp_path / "metrics.csv")]
    assert metrics == [("gdpo", "0", "1", "0.5"), ("gdpo", "0", "2", "0.5"), ("grpo", "0", "1", "0.3"),
                       ("grpo", "0", "2", "0.3")]
    assert len(read_csv(tmp_path / "runs.csv")) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.csv", "runs.csv"]  # no lock file left


def test_runs_that_end_together_are_all_recorded(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from recipes.common.runs import finished_runs, record_run

    def record(seed):
        record_run(tmp_path, {"method": "gdpo", "seed": seed, "steps": 1},
                   [{"method": "gdpo", "seed": seed, "step": 1, "format_reward": 0.0}])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(32)))
    assert finished_runs(tmp_path, steps=1) == {("gdpo", seed) for seed in range(32)}


def test_cpu_demo_grid_skips_finished_runs_and_grows(tmp_path, monkeypatch):
    """Seeds 0-1, then seeds 0-2: the second sitting runs seed 2 only; metrics.csv then holds all three."""
    import json

    from cpu_harness.launcher import RunResult
    from recipes.cpu_demo import experiment

    ran = []

    def fake_run(workdir, method, seed, steps, timeout_s, keys):
        ran.append((method, seed))
        folder = workdir / "runs" / f"{method}_seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        data = {f"saw/{key}/{stat}": 0.5 for key in keys for stat in ("mean", "weight")}
        lines = [json.dumps({"step": step, "data": data}) for step in range(1, steps + 1)]
        (folder / "verl_metrics.jsonl").write_text("\n".join(lines) + "\n")
        (folder / "train.log").write_text("")
        return RunResult(0, 1.0, 2**30, folder / "train.log")

    monkeypatch.setattr(experiment, "run_one", fake_run)
    monkeypatch.setattr(experiment, "prepare", lambda workdir, seeds: None)
    common = ["--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--steps", "2",
              "--methods", "gdpo", "saw_gdpo"]
    assert experiment.main([*common, "--seeds", "0", "1"]) == 0
    assert sorted(ran) == [("gdpo", 0), ("gdpo", 1), ("saw_gdpo", 0), ("saw_gdpo", 1)]
    ran.clear()
    assert experiment.main([*common, "--seeds", "0", "1", "2"]) == 0
    assert sorted(ran) == [("gdpo", 2), ("saw_gdpo", 2)]
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    recorded = sorted(set(zip(metrics["method"], metrics["seed"])))
    assert recorded == [(method, seed) for method in ("gdpo", "saw_gdpo") for seed in range(3)]
    assert len(metrics) == 12


def test_reading_rules_give_the_earlier_grids_readings(capsys):
    """recipes.common.reading on the committed earlier grids says what their READMEs read."""
    from recipes.common import reading

    reading.main(["--metrics", str(GRID_METRICS)])
    lines = capsys.readouterr().out.splitlines()
    verdict = {line.split(":")[0]: line.rsplit("-> ", 1)[1].split(" (")[0] for line in lines if "->" in line}
    assert verdict["saw_gdpo - gdpo, steps to correct_reward >= 0.6"] == "sooner"  # 5/5, -7.4
    assert verdict["saw_gdpo - gdpo, steps to format_reward >= 0.9"] == "later"  # 5/5, +1.6
    assert verdict["saw_grpo - grpo, steps to correct_reward >= 0.6"] == "no evidence either way"  # 3/5
    assert ("saw_gdpo - gdpo, steps to correct_reward >= 0.6: 5 seeds, fewer on 5, more on 0, mean -7.4 ± 4.5 -> "
            "sooner (needs 4/5; sign test p = 0.031)") in lines
    reading.main(["--metrics", str(CPU_DEMO / "results_history" / "metrics.csv")])
    history = [line for line in capsys.readouterr().out.splitlines() if line.startswith("saw_gdpo_history")]
    assert [line.rsplit("-> ", 1)[1].split(" (")[0] for line in history] == [
        "no evidence either way", "no evidence either way", "steadier"]
    assert reading.sign_test_p(5, 5) == 1 / 32 and reading.sign_test_p(0, 0) == 1.0


def test_reading_rules_take_the_pairs_asked_for(capsys):
    """--pair rules on the pairs given only; the weights' steadiness only on the history pair."""
    from recipes.common import reading

    reading.main(["--metrics", str(GRID_METRICS), "--pair", "saw_gdpo:saw_grpo", "--pair", "gdpo:grpo"])
    ruled = {line.split(",")[0] for line in capsys.readouterr().out.splitlines() if "->" in line}
    assert ruled == {"saw_gdpo - saw_grpo", "gdpo - grpo"}
    reading.main(["--metrics", str(CPU_DEMO / "results_history" / "metrics.csv")])
    steadiness = [line for line in capsys.readouterr().out.splitlines() if "weight change" in line]
    assert [line.split(",")[0] for line in steadiness] == ["saw_gdpo_history - saw_gdpo"]
