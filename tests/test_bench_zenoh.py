"""The zenoh benchmark compares like with like: raw zenoh-python hands out what ours does."""

import pytest

pytest.importorskip("zenoh")


@pytest.mark.timeout(60)
def test_raw_zenoh_and_ours_on_zenoh_both_return_a_writable_array_the_receiver_owns(in_thread):
    from benchmarks.cases import KB, Case, make_payload
    from benchmarks.paths import ZenohRawReceiver, ZenohRawSender, ZenohReceiver, ZenohSender
    from wrapyfi_like.connect.wrapper import MiddlewareCommunicator

    case = Case("numpy", KB)
    payload = make_payload(case)
    try:
        for name, receiver_type, sender_type in (("raw", ZenohRawReceiver, ZenohRawSender),
                                                 ("ours", ZenohReceiver, ZenohSender)):
            endpoints = {"topic": f"/bench/zenoh-{name}", "carrier": "tcp"}
            receiver = receiver_type(case, endpoints)
            sender = in_thread(lambda: sender_type(case, endpoints))  # waits for the receiver
            sending = in_thread(lambda: sender.result(timeout=30).send(3, payload))
            sequence, value = receiver.recv()
            sending.result(timeout=30)
            assert sequence == 3 and (value == payload).all(), name
            assert value.flags.writeable, f"{name}: the received array is read-only"
            value[0] = -1  # the receiver's own memory: writing it changes nothing else
            assert payload[0] != -1
            sender.result().close()
            receiver.close()
    finally:
        MiddlewareCommunicator.close_all_instances()


def test_zenoh_columns_are_the_binary_float32_streams_only():
    """The raw path sends the array's bytes; JSON mode and typed messages have no raw counterpart."""
    from benchmarks.cases import KB, MB, Case
    from benchmarks.run import zenoh_runs

    assert [size for size in (KB, MB, 16 * MB, 64 * MB) if zenoh_runs(Case("numpy", size), "tcp")] == [KB, MB, 16 * MB]
    assert not zenoh_runs(Case("numpy", MB), "ipc")
    assert not zenoh_runs(Case("numpy", MB, serializer="json"), "tcp")
    assert not zenoh_runs(Case("dict", KB, typed=True), "tcp")
