"""A listener reads large frames into buffers it uses again once nothing refers to them
(:mod:`wrapyfi_like.middlewares.zeromq.frame_buffers`): never while any array, tensor or view of
one lives, so an array the user keeps keeps its bytes however many messages follow."""

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.middlewares.zeromq.frame_buffers import KEEP, KEEP_BYTES, FrameBuffers

pytestmark = pytest.mark.timeout(60)

SIZE = 1 << 20


def address(view) -> int:
    return np.frombuffer(view, np.uint8).__array_interface__["data"][0]


def torch_tensor(view):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.frombuffer(view, np.float32))


HOLDERS = {
    "the frame itself": lambda view: view,
    "a slice of the frame": lambda view: view[1024:2048],
    "an array over it (np.frombuffer)": lambda view: np.frombuffer(view, np.uint8),
    "a reshaped view of that array": lambda view: np.frombuffer(view, np.float32).reshape(512, -1)[::2],
    "a tensor over it (torch.from_numpy)": torch_tensor,
}


def test_a_buffer_nobody_holds_is_taken_again():
    buffers = FrameBuffers()
    first = address(buffers.take(SIZE))  # the view is let go at once
    assert address(buffers.take(SIZE)) == first
    assert buffers.allocated == 1 and buffers.kept() == (1, SIZE)


@pytest.mark.parametrize("holder", HOLDERS)
def test_a_buffer_is_not_taken_again_while_anything_made_from_it_lives(holder):
    buffers = FrameBuffers()
    view = buffers.take(SIZE)
    view[:] = b"\x07" * SIZE
    held = HOLDERS[holder](view)
    first = address(view)
    del view
    gc.collect()
    for _ in range(3 * KEEP):  # read into, let go: never the held buffer
        again = buffers.take(SIZE)
        assert address(again) != first
        again[:] = b"\xff" * SIZE
        del again
    assert (np.asarray(held).view(np.uint8) == 7).all()
    del held
    assert address(buffers.take(SIZE)) == first  # let go at last: reused


def test_buffers_of_the_size_asked_are_reused_once_their_holders_let_go():
    buffers = FrameBuffers()
    held = [buffers.take(SIZE) for _ in range(3)]
    addresses = {address(view) for view in held}
    assert len(addresses) == 3
    del held
    again = [buffers.take(SIZE) for _ in range(3)]
    assert {address(view) for view in again} == addresses and buffers.allocated == 3
    other = buffers.take(SIZE + 1)  # another size is never cut from a kept buffer
    assert address(other) not in addresses and buffers.allocated == 4


def test_what_is_kept_is_bounded_in_count_and_bytes_and_the_newest_are_kept():
    buffers = FrameBuffers()
    held = [buffers.take(SIZE) for _ in range(KEEP + 3)]  # all held: the oldest are forgotten
    assert buffers.kept() == (KEEP, KEEP * SIZE) and buffers.allocated == KEEP + 3
    newest = {address(view) for view in held[-KEEP:]}
    del held
    assert {address(view) for view in [buffers.take(SIZE) for _ in range(KEEP)]} == newest
    assert buffers.allocated == KEEP + 3
    big = KEEP_BYTES // 2 + 1
    views = [buffers.take(big), buffers.take(big)]  # two do not fit: the older is forgotten
    assert buffers.kept() == (1, big)
    del views
    buffers.take(KEEP_BYTES + 1)  # never kept
    assert buffers.kept() == (1, big)
    buffers.clear()
    assert buffers.kept() == (0, 0)


def test_unheld_buffers_of_other_sizes_make_room_before_held_ones():
    buffers = FrameBuffers()
    held = [buffers.take(SIZE) for _ in range(KEEP - 1)]
    buffers.take(SIZE // 2)  # let go at once
    newer = buffers.take(SIZE // 4)  # no room: the unheld one goes, the held ones stay
    assert buffers.kept() == (KEEP, (KEEP - 1) * SIZE + SIZE // 4)
    addresses = {address(view) for view in held}
    del held
    assert {address(view) for view in [buffers.take(SIZE) for _ in range(KEEP - 1)]} == addresses
    assert buffers.allocated == KEEP + 1
    del newer


PUBLISHER = textwrap.dedent("""
    import sys
    import numpy as np
    from wrapyfi_like.connect.publishers import Publisher

    topic, count, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kind == "torch":
        import torch
        full = lambda value: torch.full((%d,), value, dtype=torch.uint8)
    else:
        full = lambda value: np.full(%d, value, np.uint8)
    publisher = Publisher("Bench", topic, carrier="ipc", wait_timeout=30)
    for number in range(count):
        publisher.publish({"seq": number, "data": full(number %% 251)})
    publisher.close()
""" % (SIZE, SIZE))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_arrays_a_listener_keeps_keep_their_bytes_while_later_messages_reuse_the_rest(topic, kind):
    """Over ipc from a publisher process: every fourth array (or tensor, decoded by the torch
    plugin) is kept, the rest let go at once; the kept ones still hold their own bytes after all
    the messages, and the let-go buffers were read into again (far fewer allocated than messages)."""
    if kind == "torch":
        import torch  # noqa: F401 (a listener decodes tensors only once torch is imported: docs/plugins.md)
    count = 60
    listener = Listener("Bench", topic, carrier="ipc", max_message_size=4 * SIZE)
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, topic, str(count), kind])
    try:
        kept = []
        for number in range(count):
            message = listener.listen()
            assert message["seq"] == number and type(message["data"]).__module__.startswith(kind)
            assert message["data"][0] == number % 251 and message["data"][-1] == number % 251
            if number % 4 == 0:
                kept.append((number, message["data"]))
            del message
        for number, array in kept:
            assert (array == number % 251).all(), f"the array of message {number} was overwritten"
        buffers = listener._transport._intake._buffers
        assert buffers.allocated <= count // 2, buffers.allocated
    finally:
        assert publisher.wait(30) == 0
        listener.close()
