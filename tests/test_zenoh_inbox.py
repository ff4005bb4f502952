"""The zenoh listener's inbox: a bare-lock hand-off that loses nothing and always wakes its getter."""

import threading

import pytest

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.zenoh.inbox import Inbox

pytestmark = pytest.mark.timeout(60)


def test_gets_that_time_out_as_items_arrive_lose_none_and_the_next_unbounded_get_is_woken(in_thread):
    inbox = Inbox(8, "test inbox")
    count = 3000
    putting = in_thread(lambda: [inbox.put(index) for index in range(count)])
    got = []
    while len(got) < count:
        item = inbox.get(0.0001)  # many end as an item arrives: the signal race is exercised
        if item is not None:
            got.append(item)
    putting.result(timeout=30)
    assert got == list(range(count))
    waiting = in_thread(lambda: inbox.get(None))
    inbox.put("last")
    assert waiting.result(timeout=10) == "last"


def test_a_full_inbox_makes_put_wait_until_a_get_makes_room(in_thread):
    inbox = Inbox(2, "test inbox")
    inbox.put(1)
    inbox.put(2)
    third = in_thread(lambda: inbox.put(3))
    with pytest.raises(TimeoutError):
        third.result(timeout=0.2)  # still waiting for room (a bound on a wait, not a sleep)
    assert inbox.get(0) == 1
    assert third.result(timeout=10) is True
    assert [inbox.get(0), inbox.get(0), inbox.get(0)] == [2, 3, None]


def test_two_getters_each_get_their_own_item_and_close_wakes_a_blocked_one(in_thread):
    inbox = Inbox(8, "test inbox")
    first, second = in_thread(lambda: inbox.get(None)), in_thread(lambda: inbox.get(None))
    inbox.put("a")
    inbox.put("b")
    assert sorted([first.result(timeout=10), second.result(timeout=10)]) == ["a", "b"]
    blocked = in_thread(lambda: inbox.get(None))
    threading.Thread(target=inbox.close).start()
    with pytest.raises(ClosedError):
        blocked.result(timeout=10)
    assert inbox.put("late") is False
