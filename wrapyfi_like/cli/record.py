"""``wrapyfi-like record -o FILE.mcap [TOPIC …] [--all]``: store what travels on topics, bytes unchanged.

The recorder joins each topic as one more listener (each publisher sends it a copy), on a thread
per topic; the main thread writes every message into the MCAP file (:mod:`.mcap_format`) with the
time it arrived. ``--all`` asks discovery (with ``--mware zenoh``: the liveliness tokens heard)
every :data:`SCAN_SECONDS` for topics that publishers or listeners announce, so topics that appear
after the recording started are recorded too.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from wrapyfi_like import __version__
from wrapyfi_like.background import start_thread
from wrapyfi_like.cli.command import Command, CommandError, positive_int, require_extra
from wrapyfi_like.cli.directory import pubsub_topics
from wrapyfi_like.cli.subscription import Subscription
from wrapyfi_like.cli.systems import System, add_mware_argument, system
from wrapyfi_like.exceptions import ClosedError, DecodeError, WaitTimeout
from wrapyfi_like.limits import check_topic

SCAN_SECONDS = 0.5
"""How often ``--all`` looks for new topics."""


class Recorder:
    """The subscriptions of one recording and the threads that receive from them."""

    def __init__(self, mware: str, looked_at: System) -> None:
        self._mware = mware
        self._system = looked_at
        self.arrivals: queue.Queue = queue.Queue()
        self.data_types: dict[str, str] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._threads: list[threading.Thread] = []

    @property
    def topics(self) -> list[str]:
        return sorted(self._subscriptions)

    def join(self, topic: str) -> bool:
        """Start recording ``topic``; False if it is recorded already."""
        if topic in self._subscriptions:
            return False
        subscription = self._subscriptions[topic] = Subscription(topic, "record", self._mware)
        thread = start_thread(self._receive, f"wrapyfi-like record {topic}", subscription)
        self._threads.append(thread)
        return True

    def learn_data_types(self, timeout: float) -> dict[str, str]:
        """Ask discovery which pub/sub topics exist and their data types; {} if it does not answer."""
        try:
            found = pubsub_topics(self._system.participants(timeout))
        except WaitTimeout:
            return {}
        self.data_types.update(found)
        return found

    def data_type(self, topic: str) -> str:
        if topic not in self.data_types:
            self.learn_data_types(timeout=1.0)
        return self.data_types.get(topic, "NativeObject")

    def _receive(self, subscription: Subscription) -> None:
        from wrapyfi_like.cli.mcap_format import pack_frames

        while True:
            try:
                message = subscription.poll(None)
            except ClosedError:
                return
            except DecodeError as error:
                sys.stderr.write(f"skipped a malformed message on {subscription.topic}: {error}\n")
                continue
            except Exception as error:  # hand it to the main thread, which stops the recording
                self.arrivals.put(error)
                return
            self.arrivals.put((subscription.topic, message.time_ns, pack_frames(message.frames)))

    def close(self) -> None:
        """Stop receiving; messages received before are still in :attr:`arrivals`."""
        for subscription in self._subscriptions.values():
            subscription.close()
        for thread in self._threads:
            thread.join(timeout=5.0)


def record(args: argparse.Namespace, out: TextIO) -> int:
    require_extra("mcap")
    from wrapyfi_like.cli.mcap_format import RecordingWriter

    if bool(args.topics) == args.all:
        raise CommandError("name the TOPICs to record, or give --all (not both)")
    for topic in args.topics:
        check_topic(topic)  # before the file exists: a typo must not leave an empty recording behind
    path = Path(args.output)
    if path.exists():
        raise CommandError(f"{path} exists; record into a new file")
    looked_at = system(args.mware)
    recorder = Recorder(args.mware, looked_at)
    with open(path, "xb") as stream:
        writer = RecordingWriter(stream, library=f"wrapyfi_like {__version__}")
        try:
            for topic in args.topics:
                recorder.join(topic)
            if args.all:
                looked_at.host()
                out.write(f"recording every topic to {path} (Ctrl-C to stop)\n")
            else:
                out.write(f"recording {', '.join(args.topics)} to {path} (Ctrl-C to stop)\n")
            out.flush()
            next_scan = time.monotonic()
            while args.count is None or writer.count < args.count:
                if args.all and time.monotonic() >= next_scan:
                    for topic in recorder.learn_data_types(timeout=SCAN_SECONDS):
                        if recorder.join(topic):
                            out.write(f"  + {topic}\n")
                            out.flush()
                    next_scan = time.monotonic() + SCAN_SECONDS
                try:
                    arrival = recorder.arrivals.get(timeout=SCAN_SECONDS)
                except queue.Empty:
                    continue
                _write(writer, recorder, arrival)
        except KeyboardInterrupt:
            pass
        finally:
            recorder.close()
            looked_at.close()
            while args.count is None or writer.count < args.count:  # what arrived before closing counts too
                try:
                    arrival = recorder.arrivals.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(arrival, Exception):
                    _write(writer, recorder, arrival)
            writer.finish()
    out.write(f"recorded {writer.count} messages on {len(writer.topics)} topic(s) to {path}\n")
    return 0


def _write(writer, recorder: Recorder, arrival) -> None:
    if isinstance(arrival, Exception):
        raise arrival
    topic, time_ns, body = arrival
    writer.add(topic, recorder.data_type(topic), time_ns, body)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="FILE.mcap", help="the file to create")
    parser.add_argument("topics", nargs="*", metavar="TOPIC", help="topics to record")
    parser.add_argument("--all", action="store_true",
                        help="record every topic discovery knows, also those that appear later")
    parser.add_argument("--count", type=positive_int, metavar="N",
                        help="stop after N messages (default: until Ctrl-C or SIGTERM)")
    add_mware_argument(parser)


COMMAND = Command(record, "record topics into an MCAP file, messages stored in their wire encoding",
                  add_arguments)
