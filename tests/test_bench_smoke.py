"""``make bench-quick`` runs and writes its three files, and its ratios pair each repetition with
its own baseline. Speed itself is judged by the benchmark's ratios, never here: this only proves
the benchmark works, on one small case."""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_bench_quick_runs_and_writes_results_report_and_plot(tmp_path):
    subprocess.run(["make", "-s", "bench-quick", f"QUICK_RESULTS={tmp_path}", "BENCH_ARGS=--cases dict"],
                   cwd=REPO, check=True, timeout=280)
    results = json.loads((tmp_path / "results.json").read_text())
    paths = {row["path"] for row in results["rows"]}
    assert {"ours", "baseline"} <= paths
    for row in results["rows"]:
        if row["path"] != "wrapyfi":
            assert "error" not in row, row
            assert row["missing"] == 0 and row["msgs_per_s"] > 0
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| target | limit | measured | met |" in report and "dict 1 KB" in report
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_pair_each_repetition_with_its_own_baseline():
    from benchmarks.report import ratio, ratio_cell, summarise

    def row(path, repeat, rate):
        return {"case": "dict 1 KB", "kind": "dict", "size": 1024, "pattern": "stream", "transport": "tcp",
                "path": path, "repeat": repeat, "msgs_per_s": rate, "missing": 0}

    runs = [(100, 50), (200, 400), (300, 250)]  # per repetition: 2.0×, 0.5×, 1.2×; medians 200 vs 250
    rows = [row(path, repeat, rate) for repeat, rates in enumerate(runs)
            for path, rate in zip(("ours", "baseline"), rates)]
    summary = summarise(rows)
    assert ratio(summary, "dict 1 KB", "tcp", "msgs_per_s") == pytest.approx(1.2)
    assert ratio_cell(summary, "dict 1 KB", "tcp", "msgs_per_s") == "1.20× (0.50–2.00)"
