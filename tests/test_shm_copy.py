"""The publisher's copy into shared memory, shared with a helper thread (shm_copy): exact whoever
copies each piece, and never left unfinished behind the caller's back, not even by Ctrl-C."""

from __future__ import annotations

import _thread
import threading

import numpy as np
import pytest

from wrapyfi_like.middlewares.zeromq import shm_copy

pytestmark = pytest.mark.timeout(30)


def pattern(nbytes: int, seed: int) -> np.ndarray:
    return ((np.arange(nbytes, dtype=np.uint64) * 2654435761 + seed) % 251).astype(np.uint8)


@pytest.mark.parametrize("helper_first", [False, True])
def test_a_shared_copy_of_several_buffers_is_exact_whoever_copies_each_piece(helper_first):
    # sizes that are not multiples of a piece, at offsets that are not either
    sizes = [shm_copy.PIECE * 3 + 123, shm_copy.SHARED_FROM // 2 + 7, 5]
    offsets = [0, sizes[0] + 64, sizes[0] + sizes[1] + 200]
    buffers = [memoryview(pattern(size, seed)) for seed, size in enumerate(sizes)]
    destination = np.zeros(offsets[-1] + sizes[-1] + 16, np.uint8)
    if helper_first:  # the helper's thread takes pieces before the caller does
        original = shm_copy._Helper.offer

        def offer_and_let_it_start(helper, job):
            offered = original(helper, job)
            if offered:
                started.wait(5)
            return offered

        started = threading.Event()
        run = shm_copy._Job.run_as_helper

        def helper_signals(job):
            started.set()
            run(job)

        shm_copy._Helper.offer, shm_copy._Job.run_as_helper = offer_and_let_it_start, helper_signals
        try:
            shm_copy.copy(destination, buffers, offsets)
        finally:
            shm_copy._Helper.offer, shm_copy._Job.run_as_helper = original, run
        assert started.is_set()
    else:
        shm_copy.copy(destination, buffers, offsets)
    for buffer, offset in zip(buffers, offsets):
        assert np.array_equal(destination[offset:offset + buffer.nbytes], np.frombuffer(buffer, np.uint8))
    gaps = np.ones(destination.nbytes, bool)
    for buffer, offset in zip(buffers, offsets):
        gaps[offset:offset + buffer.nbytes] = False
    assert not destination[gaps].any()  # nothing written outside the buffers' places


class SlowPiece:
    """A destination whose write lasts until the test lets it end."""

    def __init__(self) -> None:
        self.entered, self.release, self.written = threading.Event(), threading.Event(), threading.Event()

    def __setitem__(self, key, value) -> None:
        self.entered.set()
        self.release.wait(10)
        self.written.set()


def test_ctrl_c_while_the_helper_writes_is_raised_only_after_its_piece_is_written():
    piece = SlowPiece()
    job = shm_copy._Job(iter([(piece, None)]))
    assert shm_copy._helper.offer(job)
    assert piece.entered.wait(10)  # the helper holds the only piece; the caller found none left
    timers = [threading.Timer(0.05, _thread.interrupt_main), threading.Timer(0.5, piece.release.set)]
    for timer in timers:
        timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            shm_copy._join(job)
        assert piece.written.is_set()  # the sample could be sent or given back only now
    finally:
        piece.release.set()
        for timer in timers:
            timer.cancel()
            timer.join()


def test_a_caller_does_not_wait_for_a_helper_that_has_not_started():
    shm_copy._helper = helper = shm_copy._Helper()
    helper._started = True  # as if its thread existed but were not scheduled: it never takes the job
    sources = [memoryview(pattern(shm_copy.SHARED_FROM, 3))]
    destination = np.zeros(shm_copy.SHARED_FROM, np.uint8)
    try:
        shm_copy.copy(destination, sources, [0])  # returns: nothing waits for the idle helper
        assert np.array_equal(destination, np.frombuffer(sources[0], np.uint8))
        shm_copy.copy(destination, sources, [0])  # the helper is "busy": the caller copies alone
    finally:
        shm_copy._helper = shm_copy._Helper()
