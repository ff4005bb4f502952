"""The typed target's reference (issue 19: a typed message costs at most 5 % over untyped) is
the same fields untyped, carried in the same paired run as the typed path: these tests prove
the two send the same message and that the target is judged within each paired run."""

import pytest

from benchmarks.cases import KB, Case, make_payload


def test_the_untyped_reference_puts_the_typed_messages_bytes_on_the_wire():
    """Like with like: a typed listener and an untyped one see the very same body."""
    from benchmarks.paths import stamped_dict_type
    from wrapyfi_like.connect.formats import ValueFormat

    payload = make_payload(Case("dict", KB, typed=True))
    typed = ValueFormat(message_type=stamped_dict_type()).encode(stamped_dict_type()(seq=9, **payload))
    assert [bytes(frame) for frame in typed] == [bytes(frame) for frame in ValueFormat().encode({"seq": 9, **payload})]


def test_the_typed_senders_values_are_of_the_registered_class_and_skip_the_codecs_walk():
    """The sender builds its Structs from the very class its method is registered with, as a
    user does: a value of another class with the same fields would take the slow way (the
    codec's walk, +5 µs a message), and the typed row would measure that instead."""
    from benchmarks.paths import stamped_dict_type
    from wrapyfi_like.connect.formats import ValueFormat

    fmt = ValueFormat(message_type=stamped_dict_type())
    fmt._codec.encode = lambda tree: pytest.fail("the codec's walk ran")
    payload = make_payload(Case("dict", KB, typed=True))
    assert fmt.decode(fmt.encode(stamped_dict_type()(seq=2, **payload))).seq == 2


@pytest.mark.timeout(60)
def test_the_untyped_path_sends_the_fields_as_a_dict_and_reads_the_sequence_number(in_thread):
    from benchmarks.paths import PATHS
    from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
    from wrapyfi_like.testing import inproc_middleware

    case = Case("dict", KB, typed=True)
    endpoints = {"topic": "/bench/untyped", "carrier": "tcp"}
    with inproc_middleware():
        receiver = PATHS["untyped"]["receiver"](case, endpoints)
        sender = PATHS["untyped"]["sender"](case, endpoints)
        sent = in_thread(lambda: sender.send(5, make_payload(case)))
        sequence, value = receiver.recv()
        sent.result(timeout=30)
        assert sequence == 5 and value == {"seq": 5, **make_payload(case)}
        MiddlewareCommunicator.close_all_instances()


def test_a_typed_case_carries_the_untyped_reference_in_its_own_paired_run(monkeypatch, tmp_path):
    """The typed case's paired run carries ours, the baseline and the untyped reference together;
    every other case's carries ours and the baseline only."""
    from benchmarks import run

    carried = []
    measured = {"msgs_per_s": 10.0, "mb_per_s": 1.0, "latency_median_us": 100.0, "latency_p99_us": 200.0, "missing": 0}
    monkeypatch.setattr(run, "run_pair", lambda case, path, *_: {"case": case.name, "typed": case.typed,
                                                                  "transport": "tcp", "path": path, **measured})
    monkeypatch.setattr(run, "run_paired", lambda case, paths, *_: carried.append(paths) or dict.fromkeys(paths, measured))
    rows = run.run_all([Case("dict", KB), Case("dict", KB, typed=True)], ["ours", "baseline"], ["tcp"], 1, True)
    assert carried == [["ours", "baseline"], ["ours", "baseline", "untyped"]]
    (untyped,) = [row for row in rows if row["path"] == "untyped"]
    assert untyped["case"] == "dict 1 KB typed" and untyped["repeat"] == 0 and untyped["msgs_per_s"] == 10.0


def test_the_typed_target_divides_typed_by_untyped_of_the_same_paired_run():
    from benchmarks.report import summarise, target_rows, typed_ratios

    def row(path, repeat, rate, transport="tcp"):
        return {"case": "dict 1 KB typed", "kind": "dict", "size": KB, "pattern": "stream", "typed": path == "ours",
                "transport": transport, "path": path, "repeat": repeat, "msgs_per_s": rate, "missing": 0,
                "startup_s": 0.1}

    rows = [row("ours", 0, 96, "ipc"), row("untyped", 0, 100, "ipc"), row("baseline", 0, 300, "ipc"),
            row("ours", 0, 90), row("untyped", 0, 100), row("baseline", 0, 50),  # 0.90× tcp
            row("ours", 1, 200), row("untyped", 1, 400), row("baseline", 1, 100),  # 0.50× tcp, not 0.9 ÷ 2
            row("ours", 2, 95), row("untyped", 2, 100), row("baseline", 2, 80)]
    assert typed_ratios(rows) == {"ipc": [pytest.approx(0.96)], "tcp": [pytest.approx(0.9), 0.5, pytest.approx(0.95)]}
    results = {"rows": rows, "import_seconds": {"ours": [1.0], "baseline": [1.0]}}
    (target,) = [t for t in target_rows(results, summarise(rows)) if t[0].startswith("1 KB typed")]
    assert target[1:] == ("≥ 0.95×", "0.90× (0.50–0.95), worst: tcp (both in one paired run)", False)
