"""``make bench-quick`` runs and writes its three files, and its ratios pair each repetition with
its own baseline. Speed itself is judged by the benchmark's ratios, never here: this only proves
the benchmark works, on one small case."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_bench_quick_runs_and_writes_results_report_and_plot(tmp_path):
    subprocess.run(["make", "-s", "bench-quick", f"QUICK_RESULTS={tmp_path}", "BENCH_ARGS=--cases 'dict 1 KB JSON'"],
                   cwd=REPO, check=True, timeout=280)
    results = json.loads((tmp_path / "results.json").read_text())
    paths = {row["path"] for row in results["rows"]}
    assert {"ours", "baseline"} <= paths
    for row in results["rows"]:
        if row["path"] != "wrapyfi":
            assert "error" not in row, row
            assert row["missing"] == 0 and row["msgs_per_s"] > 0
            assert row["solo_msgs_per_s"] > 0 and row["solo_latency_median_us"] > 0  # its own run and the paired one
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| target | limit | measured | met |" in report and "dict 1 KB" in report
    assert "| dict 1 KB JSON |" in report and "1 KB dict JSON mode throughput" in report
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


def test_a_paired_run_alternates_the_paths_abba_with_as_many_turns_each():
    from benchmarks.peer import alternating

    order = list(alternating(["ours", "baseline"], 3))
    assert order == [(1, "ours"), (1, "baseline"), (2, "baseline"), (2, "ours"), (3, "ours"), (3, "baseline")]


def test_flat_out_blocks_follow_the_lock_step_sequence_numbers_without_gaps_or_overlaps():
    from benchmarks.peer import flat_out_block

    spec = {"lock_step": 10, "block": 4}
    assert [list(flat_out_block(spec, index)) for index in (1, 2)] == [[11, 12, 13, 14], [15, 16, 17, 18]]


def test_ratios_come_from_the_paired_run_and_each_runs_own_numbers_are_kept():
    from benchmarks.run import use_paired_metrics

    row = {"path": "ours", "msgs_per_s": 10.0, "mb_per_s": 1.0, "latency_median_us": 500.0,
           "latency_p99_us": 900.0, "missing": 1, "startup_s": 0.2}
    use_paired_metrics(row, {"ours": {"msgs_per_s": 20.0, "mb_per_s": 2.0, "latency_median_us": 110.0,
                                      "latency_p99_us": 150.0, "missing": 2},
                             "baseline": {"msgs_per_s": 30.0, "mb_per_s": 3.0, "latency_median_us": 100.0,
                                          "latency_p99_us": 120.0, "missing": 0}})
    assert row == {"path": "ours", "msgs_per_s": 20.0, "mb_per_s": 2.0, "latency_median_us": 110.0,
                   "latency_p99_us": 150.0, "missing": 3, "startup_s": 0.2, "solo_msgs_per_s": 10.0,
                   "solo_mb_per_s": 1.0, "solo_latency_median_us": 500.0, "solo_latency_p99_us": 900.0}
    failed = {"path": "baseline", "msgs_per_s": 1.0, "missing": 0}
    use_paired_metrics(failed, {"error": "paired run: paired_sender exited 1"})
    assert failed["error"] == "paired run: paired_sender exited 1" and "msgs_per_s" not in failed


@pytest.mark.parametrize("kind, size", [("dict", 1024), ("numpy", 1024 * 1024)])
def test_the_json_baseline_sends_the_same_json_document_as_ours(kind, size):
    """Like with like: raw orjson over pyzmq carries the very JSON value our JSON mode carries
    (ours adds only its two-key envelope), and reads back the same payload."""
    import numpy as np
    import orjson

    from benchmarks.cases import Case, make_payload
    from benchmarks.paths import _from_json_body, _json_body
    from wrapyfi_like.connect.formats import ValueFormat

    case = Case(kind, size, serializer="json")
    payload = make_payload(case)
    (ours,) = ValueFormat(serializer="json").encode({"seq": 7, "data": payload})
    assert orjson.loads(ours)["value"] == orjson.loads(_json_body(7, payload))
    sequence, back = _from_json_body(_json_body(7, payload))
    assert sequence == 7 and (np.array_equal(back, payload) if kind == "numpy" else back == payload)


@pytest.mark.timeout(60)
def test_the_typed_case_sends_a_struct_and_its_receiver_reads_the_sequence_number(in_thread):
    from benchmarks.cases import KB, Case, make_payload
    from benchmarks.paths import OursReceiver, OursSender
    from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
    from wrapyfi_like.testing import inproc_middleware

    case = Case("dict", KB, typed=True)
    endpoints = {"topic": "/bench/typed", "carrier": "tcp"}
    with inproc_middleware():
        receiver = OursReceiver(case, endpoints)
        sender = OursSender(case, endpoints)
        sent = in_thread(lambda: sender.send(5, make_payload(case)))
        sequence, value = receiver.recv()
        sent.result(timeout=30)
        assert sequence == 5 and type(value).__name__ == "StampedDict" and value.values == make_payload(case)["values"]
        MiddlewareCommunicator.close_all_instances()


def test_zenoh_ratios_pair_each_repetition_with_raw_zenoh_and_zeromq_of_the_same_paired_run():
    from benchmarks.report import ZENOH_TARGET, target_rows, zenoh_ratios, summarise

    def row(path, repeat, rate, latency, **extra):
        return {"case": "float32 1 MB", "kind": "numpy", "size": 1 << 20, "pattern": "stream", "transport": "tcp",
                "path": path, "repeat": repeat, "msgs_per_s": rate, "latency_median_us": latency, "missing": 0, **extra}

    rows = [row("zenoh", 0, 90, 200, zeromq_msgs_per_s=300, zeromq_latency_median_us=50), row("zenoh_raw", 0, 100, 160),
            row("zenoh", 1, 50, 400, zeromq_msgs_per_s=100, zeromq_latency_median_us=100), row("zenoh_raw", 1, 100, 400)]
    ratios = zenoh_ratios(rows)["float32 1 MB"]
    assert ratios["raw_throughput"] == pytest.approx([0.9, 0.5])
    assert ratios["raw_latency"] == pytest.approx([1.25, 1.0])
    assert ratios["zeromq_throughput"] == pytest.approx([0.3, 0.5])
    results = {"rows": rows, "import_seconds": {"ours": [1.0], "baseline": [1.0]}}
    (target,) = [t for t in target_rows(results, summarise(rows)) if t[0].startswith("zenoh")]
    assert target[1] == f"≥ {ZENOH_TARGET}×" and target[2].startswith("0.70× (0.50–0.90)") and target[3] is False


@pytest.mark.timeout(120)
def test_a_fan_out_run_delivers_every_message_to_every_listener_process_on_both_paths(tmp_path):
    """Two listener processes, ours and raw PUB/SUB alternating: each path's rate counts a block
    only once every listener has it, and nothing is missing on either path."""
    from benchmarks.cases import KB
    from benchmarks.fanout import FanoutCase, run_fanout

    measured = run_fanout(FanoutCase(2, KB), ["ours", "baseline"], "tcp", True, str(tmp_path))
    assert "error" not in measured, measured
    for path in ("ours", "baseline"):
        assert measured[path]["missing_per_listener"] == [0, 0], path
        assert measured[path]["msgs_per_s"] > 0 and measured[path]["latency_median_us"] > 0
        assert measured[path]["sender_cpu_us_per_msg"] > 0 and measured[path]["listener_cpu_us_per_msg"] > 0


def test_fan_out_ratios_pair_each_repetition_and_judge_the_1_mb_target_by_the_worst_case():
    from benchmarks.report import FANOUT_TARGET, fanout_section, fanout_target_rows

    def row(case, size, path, repeat, rate, latency=100.0):
        return {"case": case, "listeners": 4, "size": size, "transport": "tcp", "path": path, "repeat": repeat,
                "msgs_per_s": rate, "latency_median_us": latency, "missing": 0,
                "sender_cpu_us_per_msg": 10.0, "listener_cpu_us_per_msg": 5.0}

    rows = [row("fan-out x4 1 MB float32", 1 << 20, "ours", 0, 90), row("fan-out x4 1 MB float32", 1 << 20, "baseline", 0, 100),
            row("fan-out x4 1 MB float32", 1 << 20, "ours", 1, 40), row("fan-out x4 1 MB float32", 1 << 20, "baseline", 1, 50),
            row("fan-out x4 1 MB float32", 1 << 20, "ours", 2, 95), row("fan-out x4 1 MB float32", 1 << 20, "baseline", 2, 100),
            row("fan-out x4 1 KB float32", 1024, "ours", 0, 10), row("fan-out x4 1 KB float32", 1024, "baseline", 0, 100)]
    (target,) = fanout_target_rows({"fanout": rows})
    assert target[1] == f"≥ {FANOUT_TARGET}×" and target[2].startswith("0.90× (worst: fan-out x4 1 MB float32")
    assert target[3] is True  # the 1 KB case's 0.10× is not part of the 1 MB target
    section = "\n".join(fanout_section({"fanout": rows}))
    assert "| fan-out x4 1 MB float32 | tcp | 90 | 100 | 0.90× (0.80–0.95) |" in section


@pytest.mark.timeout(60)
def test_discovery_at_scale_converges_for_a_few_processes():
    """``python -m benchmarks.discovery_scale`` with 6 processes: every publisher sees every
    listener of its topics, every listener gets a message from each of its publishers, and the
    directory holds every node (the host's too) with nothing refused."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.discovery_scale", "--processes", "6", "--topics", "2",
                          "--listeners-per-topic", "3", "--steady", "1", "--timeout", "40"],
                         cwd=REPO, capture_output=True, text=True, timeout=55)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["publishers_seeing_all"] == 3 and result["listeners_with_all"] == 3
    assert result["connections"] == 3 * 2 * 3 and result["children_failed"] == 0 and result["final_reports_missing"] == 0
    assert result["directory"]["nodes"] >= 7 and result["directory"]["refused_limit"] == 0
    assert result["sync_requests_per_s"] > 0 and result["host_rss_mb"] > 0
