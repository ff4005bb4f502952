"""The wake-up pipe is set from threads other than its owner's, also while the owner closes it."""

import os

import pytest

from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup


def test_set_after_close_writes_nothing_to_a_file_that_reuses_its_numbers():
    """close() and set() race in every transport's close (set before the lock, close under it);
    a late set() must neither raise OSError nor write into whatever file got the freed number."""
    wakeup = Wakeup()
    wakeup.close()
    read_end, write_end = os.pipe()  # the lowest free numbers: the ones the wake-up just freed
    os.set_blocking(read_end, False)
    try:
        wakeup.set()
        os.close(write_end)
        assert os.read(read_end, 16) == b"", "a closed wake-up wrote into another file"
    finally:
        os.close(read_end)


def test_set_wakes_and_clear_acknowledges():
    wakeup = Wakeup()
    try:
        wakeup.set()
        assert os.read(wakeup.fileno(), 16) == b"!"
        wakeup.set()
        wakeup.clear()
        with pytest.raises(BlockingIOError):  # nothing left to read
            os.read(wakeup.fileno(), 16)
    finally:
        wakeup.close()
