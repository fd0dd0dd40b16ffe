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
