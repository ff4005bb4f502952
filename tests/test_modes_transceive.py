"""transceive, reemit and receive over real sockets; reemit also inside a running asyncio loop."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from wrapyfi_like.connect.wrapper import MiddlewareCommunicator

pytestmark = pytest.mark.timeout(60)


class Effects(MiddlewareCommunicator):
    """Wrapyfi's transceive/reemit layout: each side publishes on one topic and listens on the other."""

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Effects", "$raw",
                                     publisher_kwargs={"out_topic": "$raw"},
                                     listener_kwargs={"class_name": "Effects", "in_topic": "$done"})
    def send(self, value, *, raw, done):
        return {"value": value},

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Effects", "$done",
                                     publisher_kwargs={"out_topic": "$done"},
                                     listener_kwargs={"in_topic": "$raw"})
    def process(self, *arrived, raw, done):
        message, = arrived
        return {"value": message["value"] * 10, "seen": message},


@pytest.fixture
def topics(topic):
    return {"raw": topic + "/raw", "done": topic + "/done"}


@pytest.fixture
def background():
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def test_transceive_publishes_then_returns_what_the_reemitter_sent_back(topics, background):
    sender, processor = Effects(), Effects()
    sender.activate_communication(Effects.send, mode="transceive")
    processor.activate_communication(Effects.process, mode="reemit")
    try:
        reemitted = background.submit(lambda: [processor.process(**topics) for _ in range(3)])
        for n in range(3):
            assert sender.send(n, **topics) == [{"value": n * 10, "seen": {"value": n}}]
        assert [r[0]["value"] for r in reemitted.result(timeout=10)] == [0, 10, 20]
    finally:
        sender.close(), processor.close()


def test_receive_calls_the_method_with_what_arrived_and_does_not_publish(topics, background):
    sender, receiver = Effects(), Effects()
    sender.activate_communication(Effects.send, mode="publish")
    receiver.activate_communication(Effects.process, mode="receive")
    try:
        received = background.submit(receiver.process, **topics)
        assert sender.send(7, **topics) == ({"value": 7},)
        assert received.result(timeout=10) == ({"value": 70, "seen": {"value": 7}},)
        assert "publish" not in receiver._wrapyfi_like_bindings[Effects.process.__qualname__]._communicators
    finally:
        sender.close(), receiver.close()


def test_reemit_works_inside_asyncio_run(topics, background):
    sender, processor = Effects(), Effects()
    sender.activate_communication(Effects.send, mode="transceive")
    processor.activate_communication(Effects.process, mode="reemit")

    async def reemit_once():
        await asyncio.sleep(0)  # a loop is running from here on
        return processor.process(**topics)

    try:
        transceived = background.submit(sender.send, 4, **topics)
        assert asyncio.run(reemit_once()) == ({"value": 40, "seen": {"value": 4}},)
        assert transceived.result(timeout=10) == [{"value": 40, "seen": {"value": 4}}]
    finally:
        sender.close(), processor.close()


def test_transceive_works_inside_asyncio_run(topics, background):
    sender, processor = Effects(), Effects()
    sender.activate_communication(Effects.send, mode="transceive")
    processor.activate_communication(Effects.process, mode="reemit")

    async def transceive_once():
        await asyncio.sleep(0)
        return sender.send(5, **topics)

    try:
        reemitted = background.submit(processor.process, **topics)
        assert asyncio.run(transceive_once()) == [{"value": 50, "seen": {"value": 5}}]
        reemitted.result(timeout=10)
    finally:
        sender.close(), processor.close()
