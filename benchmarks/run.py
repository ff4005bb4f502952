"""Run every benchmark case through every path, alternating, and write the results.

``python -m benchmarks.run [--quick]`` (``make bench`` / ``make bench-quick``). Each case runs as a
fresh pair of processes per path, back to back (their order alternating between repetitions), for
start-up, memory and drops; then as one *paired* run whose two processes carry our path and the
baseline alternately, message by message in lock-step and block by block flat out, for the
throughput and latency ratios: both then meet the same state of the machine. The ratios are what
we judge, the absolute numbers are what this machine happened to do.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from benchmarks import bench_shm
from benchmarks.cases import KB, MB, Case, all_cases
from benchmarks.fanout import fanout_cases, run_fanouts
from benchmarks.paths import wrapyfi_environment
from benchmarks.report import write_markdown, write_plot
from benchmarks.serializers import measure as measure_serializers
from wrapyfi_like.middlewares.ports import free_port

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 180.0
"""Seconds one pair of processes may take; a run that never sees its last message ends here."""
REPEATS = 3
"""Repetitions of every case in a full run. Measured in separate runs, one case's ratio moved by
a factor of 1.5 or more between repetitions on the shared 2-core machines; the paired runs'
ratios move by a few percent, so the median of 3 is a firm verdict."""
IMPORT_REPEATS = 15
"""Fresh interpreters per import statement; each takes about 0.1 s, and on a busy machine single
imports vary between 65 and 130 ms."""

logger = logging.getLogger("benchmarks")


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def address(transport: str, workdir: str) -> str:
    if transport == "tcp":
        return f"tcp://127.0.0.1:{free_port()}"
    return f"ipc://{workdir}/{uuid.uuid4().hex[:12]}.sock"


def available_paths() -> list[str]:
    paths = ["ours", "baseline"]
    for module, added in (("wrapyfi", ["wrapyfi"]), ("zenoh", list(ZENOH_PATHS))):
        try:
            __import__(module)  # only asks whether it is installed
        except ImportError:
            continue
        paths += added
    return paths


def user_environment() -> dict:
    """This environment as a user's would be: Python caches compiled modules (a test runner or
    CI may have turned that off, which would add compile time to every start-up and import)."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def run_pair(case: Case, path: str, transport: str, quick: bool, workdir: str) -> dict:
    """Launch both ends of one run together and combine what they report."""
    flat_out, lock_step = case.counts(quick)
    if path == "wrapyfi":  # 20-40x slower: fewer messages keep the run short, the rate is still clear
        flat_out, lock_step = max(8, flat_out // 8), max(4, lock_step // 4)
    elif path in PAIRED or path in ZENOH_PATHS:  # its ratios come from the paired run: this run measures memory, start-up and drops
        flat_out, lock_step = max(12, flat_out // 4), max(8, lock_step // 4)
    spec = {"case": case.to_dict(), "path": path, "flat_out": flat_out, "lock_step": lock_step,
            "ack": address("ipc", workdir), "endpoints": endpoints(transport, workdir)}
    env = peer_environment(workdir)
    if path == "wrapyfi":
        env.update(wrapyfi_environment(free_port))
    roles = ("receiver", "sender") if case.pattern == "stream" else ("server", "client")
    launched = now_ns()
    reports, errors = collect({role: Peer(role, {**spec, "role": role}, env) for role in roles})
    row = {"case": case.name, "kind": case.kind, "size": case.size, "pattern": case.pattern,
           "serializer": case.serializer, "typed": case.typed,
           "path": path, "transport": transport, "flat_out": flat_out, "lock_step": lock_step}
    if errors:
        return {**row, "error": "; ".join(errors)}
    return {**row, **(stream_metrics(case, reports, launched) if case.pattern == "stream"
                      else rpc_metrics(reports, launched))}


def run_paired(case: Case, paths: list[str], transport: str, quick: bool, workdir: str) -> dict:
    """One paired run carrying ``paths`` alternately between one pair of processes (see
    :mod:`benchmarks.peer`): ``{path: {metric: value}}`` for :data:`PAIRED_METRICS`, or ``{"error": …}``."""
    flat_out, lock_step = case.counts(quick)
    blocks = PAIRED_BLOCKS_QUICK if quick else PAIRED_BLOCKS
    spec = {"case": case.to_dict(), "paths": paths, "lock_step": lock_step, "blocks": blocks,
            "block": max(6, flat_out // blocks), "ack": address("ipc", workdir),
            "endpoints": {path: endpoints(transport, workdir) for path in paths}}
    roles = ("paired_receiver", "paired_sender") if case.pattern == "stream" else ("paired_server", "paired_client")
    env = peer_environment(workdir)
    reports, errors = collect({role: Peer(role, {**spec, "role": role}, env) for role in roles})
    if errors:
        return {"error": "paired run: " + "; ".join(errors)}
    report = reports[roles[1]]
    measured = {}
    for path in paths:
        latencies = sorted(report["latencies_ns"][path])
        metrics = {"latency_median_us": percentile(latencies, 50) / 1e3, "latency_p99_us": percentile(latencies, 99) / 1e3}
        if case.pattern == "stream":
            blocks_of_path = report["blocks"][path]
            seconds = sum(block["last_ns"] - block["first_ns"] for block in blocks_of_path) / 1e9
            rate = sum(block["arrived"] - 1 for block in blocks_of_path) / seconds if seconds > 0 else float("nan")
            metrics.update(msgs_per_s=rate, mb_per_s=rate * case.size / 1e6,
                           missing=sum(block["missing"] for block in blocks_of_path))
        else:
            metrics.update(msgs_per_s=1e9 / statistics.fmean(latencies), missing=0)
        measured[path] = metrics
    return measured


PAIRED_BLOCKS, PAIRED_BLOCKS_QUICK = 8, 2
"""Flat-out blocks per path in a paired run, together as many messages as a separate run's. With
4, one 1 MB case's throughput ratio still moved by ±10% between repetitions; blocks must stay
long enough (at least 6 messages) to measure a rate."""


def endpoints(transport: str, workdir: str) -> dict:
    """Where one path's data travels: a topic for ours and Wrapyfi's, an address for the baseline's."""
    return {"topic": f"/bench/{uuid.uuid4().hex[:8]}", "carrier": transport, "data": address(transport, workdir)}


def peer_environment(workdir: str) -> dict:
    """A run's own discovery port and zenoh rendezvous port, so runs never see each other's
    publishers and listeners (the ipc folder is the whole benchmark's; every ipc endpoint in it
    has a name of its own)."""
    return dict(user_environment(), WRAPYFI_ZEROMQ_DISCOVERY=f"tcp://127.0.0.1:{free_port()}",
                WRAPYFI_ZENOH_PORT=str(free_port()), WRAPYFI_ZEROMQ_IPC_DIR=workdir, PYTHONPATH=str(REPO))


class Peer:
    """One end of a run: its process, with output kept in files so it can never block on a pipe."""

    def __init__(self, role: str, spec: dict, env: dict, module: str = "benchmarks.peer") -> None:
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen([sys.executable, "-m", module, json.dumps(spec)],
                                        cwd=REPO, env=env, text=True, stdout=self.out, stderr=self.err,
                                        start_new_session=True)

    def kill(self) -> None:
        """Stop this end and every process it started (Wrapyfi starts helper processes of its own)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def outputs(self) -> tuple[str, str]:
        outputs = []
        for stream in (self.out, self.err):
            stream.seek(0)
            outputs.append(stream.read())
            stream.close()
        return outputs[0], outputs[1]


def collect(peers: dict[str, Peer]) -> tuple[dict, list[str]]:
    """Each role's JSON report; if one end fails or the run times out, both ends are stopped."""
    deadline = time.monotonic() + RUN_TIMEOUT
    running = list(peers.values())
    while running and time.monotonic() < deadline:
        try:
            running[0].process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            running.append(running.pop(0))  # check the other end next
            continue
        if running.pop(0).process.returncode != 0:
            break
    for peer in peers.values():
        peer.kill()  # also reaps what a finished end left running
    reports, errors = {}, []
    for role, peer in peers.items():
        out, err = peer.outputs()
        if peer.process.returncode != 0:
            last_line = (err.strip().splitlines() or ["killed: the other end failed or the run timed out"])[-1]
            errors.append(f"{role} exited {peer.process.returncode}: {last_line}")
        else:
            reports[role] = json.loads(out.strip().splitlines()[-1])
    return reports, errors


def stream_metrics(case: Case, reports: dict, launched: int) -> dict:
    sender, receiver = reports["sender"], reports["receiver"]
    seconds = (receiver["last_ns"] - receiver["first_ns"]) / 1e9
    rate = (receiver["arrived"] - 1) / seconds if seconds > 0 else float("nan")
    latencies = sorted(sender["latencies_ns"])
    return {"msgs_per_s": rate, "mb_per_s": rate * case.size / 1e6,
            "latency_median_us": percentile(latencies, 50) / 1e3, "latency_p99_us": percentile(latencies, 99) / 1e3,
            "missing": receiver["missing"], "out_of_order": receiver["out_of_order"],
            "startup_s": (receiver["first_arrival_ns"] - launched) / 1e9,
            "listener_extra_payloads": receiver["lock_step_extra_memory"] / case.size,
            "listener_flat_out_extra_payloads": receiver["flat_out_extra_memory"] / case.size,
            "publisher_extra_payloads": sender["extra_memory"] / case.size}


def rpc_metrics(reports: dict, launched: int) -> dict:
    round_trips = sorted(reports["client"]["round_trips_ns"])
    return {"msgs_per_s": 1e9 / statistics.fmean(round_trips),
            "latency_median_us": percentile(round_trips, 50) / 1e3,
            "latency_p99_us": percentile(round_trips, 99) / 1e3, "missing": 0,
            "startup_s": (reports["client"]["first_arrival_ns"] - launched) / 1e9}


def percentile(ordered: list, percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * (len(ordered) - 1))))
    return ordered[index]


IMPORTS = {"ours": "import wrapyfi_like.connect.wrapper", "baseline": "import zmq, numpy, msgpack"}


def import_times(repeats: int) -> dict[str, list[float]]:
    """Seconds each import statement takes in a fresh interpreter, alternating between the two."""
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for repeat in range(repeats + 1):  # the first round only fills the bytecode caches
        for name in (list(IMPORTS) if repeat % 2 == 0 else list(reversed(IMPORTS))):
            code = f"import time; t = time.perf_counter(); {IMPORTS[name]}; print(time.perf_counter() - t)"
            out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=user_environment(), check=True,
                                 capture_output=True, text=True)
            if repeat:
                times[name].append(float(out.stdout))
    return times


def wrapyfi_runs(case: Case, transport: str, quick: bool) -> bool:
    """Wrapyfi's column: publish/listen over tcp (it sends pub/sub over tcp whatever the carrier),
    up to 16 MB (1 MB in a quick run): beyond, one run takes minutes at its ~1 message/s. Not for
    JPEG Images: its publisher fails on them with this payload. Not for our JSON mode and typed
messages, which Wrapyfi's API has no way to ask for."""
    return (case.pattern == "stream" and transport == "tcp" and case.kind != "jpeg" and case.serializer == "binary"
            and not case.typed and case.size <= (MB if quick else 16 * MB))


def zenoh_runs(case: Case, transport: str) -> bool:
    """The zenoh columns: float32 arrays of 1 KB, 1 MB and 16 MB published over tcp (zenoh picks
    its own links; it has no ipc carrier), in the binary codec only: the raw path sends the
    array's bytes, so ours in JSON mode or typed would not be compared like with like."""
    return (case.kind == "numpy" and case.pattern == "stream" and transport == "tcp" and case.size in (KB, MB, 16 * MB)
            and case.serializer == "binary" and not case.typed)


def run_all(cases: list[Case], paths: list[str], transports: list[str], repeats: int, quick: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="wl-bench-") as workdir:
        for repeat in range(repeats):
            for transport in transports:
                for case in cases:
                    order = paths if repeat % 2 == 0 else list(reversed(paths))
                    runs = {}
                    for path in order:
                        if path == "wrapyfi" and not wrapyfi_runs(case, transport, quick):
                            continue
                        if path in ZENOH_PATHS and not zenoh_runs(case, transport):
                            continue
                        runs[path] = row = {**run_pair(case, path, transport, quick, workdir), "repeat": repeat}
                        rows.append(row)
                        logger.info("%-22s %-4s %-8s %s", case.name, transport, path,
                                    row.get("error") or f"{row['msgs_per_s']:.0f} msg/s")
                    compared = [path for path in order if path in PAIRED]
                    if compared:
                        carried = compared + ([UNTYPED] if case.typed and "ours" in compared else [])
                        paired = run_paired(case, carried, transport, quick, workdir)
                        for path in compared:
                            use_paired_metrics(runs[path], paired)
                        if UNTYPED in carried:
                            rows.append(paired_only_row(runs["ours"], UNTYPED, paired))
                        log_paired(case, transport, carried, paired)
                    if all(path in runs for path in ZENOH_PATHS):
                        compared = [*ZENOH_PATHS, "ours"]
                        paired = run_paired(case, compared, transport, quick, workdir)
                        for path in ZENOH_PATHS:
                            use_paired_metrics(runs[path], paired)
                        if "error" not in paired:  # zenoh ÷ zeromq, measured in the same pair of processes
                            runs["zenoh"].update({f"zeromq_{metric}": value for metric, value in paired["ours"].items()
                                                  if metric in PAIRED_METRICS})
                        log_paired(case, transport, compared, paired)
    return rows


def log_paired(case: Case, transport: str, compared: list[str], paired: dict) -> None:
    logger.info("%-22s %-4s paired   %s", case.name, transport, paired.get("error") or " / ".join(
        f"{path} {paired[path]['msgs_per_s']:.0f} msg/s {paired[path]['latency_median_us']:.0f} µs"
        for path in compared))


PAIRED = ("ours", "baseline")
"""The paths whose ratios come from one paired run that alternates them (Wrapyfi, 20-40x slower,
keeps the numbers of its own runs)."""
ZENOH_PATHS = ("zenoh", "zenoh_raw")
"""Ours on zenoh and raw zenoh-python: their ratios come from a paired run of their own that also
carries ``ours`` (on ZeroMQ), so zenoh ÷ raw zenoh and zenoh ÷ ZeroMQ meet one state of the machine."""
PAIRED_METRICS = ("msgs_per_s", "mb_per_s", "latency_median_us", "latency_p99_us")
UNTYPED = "untyped"
"""The typed case's reference: the same fields untyped, carried by the typed case's paired run
alongside ``ours`` and the baseline, so typed ÷ untyped is judged within one pair of processes
(two separate paired runs moved by more than the 5 % the target judges)."""


def paired_only_row(ours: dict, path: str, paired: dict) -> dict:
    """The row of ``path``, measured only in the paired run that also carried ``ours``' row."""
    keep = ("case", "kind", "size", "pattern", "serializer", "typed", "transport", "repeat")
    row = {**{key: ours[key] for key in keep if key in ours}, "path": path, "missing": 0}
    use_paired_metrics(row, paired)
    return row


def use_paired_metrics(row: dict, paired: dict) -> None:
    """Give ``row`` the throughput and latencies of the paired run; its own run's are kept as
    ``solo_…``, and whatever went missing in either run is counted."""
    for metric in PAIRED_METRICS:
        if metric in row:
            row[f"solo_{metric}"] = row.pop(metric)
    if "error" in paired:
        row["error"] = "; ".join(filter(None, [row.get("error"), paired["error"]]))
        return
    measured = paired[row["path"]]
    row.update({metric: measured[metric] for metric in PAIRED_METRICS if metric in measured})
    row["missing"] = row.get("missing", 0) + measured["missing"]


def compile_package() -> None:
    """Byte-compile wrapyfi_like before anything is timed. An installed package has its ``.pyc``
    files (pip writes them), and a checkout gets them on its first import, unless
    ``PYTHONDONTWRITEBYTECODE`` is set (as on the project's machines): then every process of ours
    would compile our sources again while numpy's and pyzmq's come compiled, and the start-up and
    import rows would time the compiler (wrapyfi_like's modules: about 40 ms a launch)."""
    compileall.compile_dir(str(REPO / "wrapyfi_like"), quiet=1)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, messages and repetitions (under 2 minutes)")
    parser.add_argument("--repeats", type=int, help=f"repetitions of every case (default {REPEATS}, quick 1)")
    parser.add_argument("--cases", metavar="TEXT", help="only the cases whose name contains TEXT, e.g. 'dict'")
    parser.add_argument("--paths", metavar="NAME,…",
                        help="only these paths (default: every installed one), e.g. 'zenoh,zenoh_raw'")
    parser.add_argument("--output-dir", type=Path, default=REPO / "docs" / "assets" / "benchmarks",
                        help="where results.json and throughput.png go")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="the Markdown report to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repeats = args.repeats or (1 if args.quick else REPEATS)
    transports = ["tcp"] if args.quick else ["tcp", "ipc"]
    paths = available_paths()
    if args.paths:
        unknown = set(args.paths.split(",")) - set(paths)
        if unknown:
            parser.error(f"unknown or not installed path(s) {', '.join(sorted(unknown))}; available: {', '.join(paths)}")
        paths = [path for path in paths if path in args.paths.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    cases = [case for case in all_cases(args.quick) if args.cases is None or args.cases in case.name]
    fanouts = [case for case in fanout_cases(args.quick) if args.cases is None or args.cases in case.name]
    if not cases and not fanouts:
        parser.error(f"no case name contains {args.cases!r}")
    compile_package()
    rows = run_all(cases, paths, transports, repeats, args.quick)
    fanout_rows = run_fanouts(fanouts, paths, transports, repeats, args.quick)
    imports = import_times(3 if args.quick else IMPORT_REPEATS)
    results = {"started": started.isoformat(timespec="seconds"), "quick": args.quick, "repeats": repeats,
               "paths": paths, "transports": transports, "rows": rows, "fanout": fanout_rows, "import_seconds": imports,
               "serializers": measure_serializers(args.quick)}
    if args.cases is None:  # carrier="shm" against raw ipc: a pair of processes of its own, not a case
        results["shm"] = bench_shm.measure(args.quick)
        results["shm_tuned"] = None if args.quick else bench_shm.measure(args.quick, tuned=True)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot = write_plot(results, args.output_dir / "throughput.png")
    write_markdown(results, args.markdown, plot)
    failed = [row for row in rows + fanout_rows if "error" in row and row["path"] != "wrapyfi"]
    for row in failed:
        logger.error("%s %s %s: %s", row["case"], row["transport"], row["path"], row["error"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
