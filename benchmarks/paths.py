"""The ways a payload can travel, each as a sender and a receiver used by :mod:`benchmarks.peer`.

- ``ours``: a decorated method in publish/listen (or request/reply) mode: the path users take.
- ``untyped``: in the typed case only, the same method without ``message_type``, sending the
  typed message's fields as one flat dict (the same bytes on the wire): the reference of the
  typed target, carried in the same paired run as ``ours`` so that one state of the machine
  meets both.
- ``baseline``: plain pyzmq, the fastest honest Python path: a small msgpack header frame plus the
  payload's own buffer sent with ``copy=False``, rebuilt with ``np.frombuffer`` on receipt; tables
  travel as Arrow IPC bytes, JPEG frames as Pillow-encoded bytes, dicts as one msgpack frame.
  JSON cases: one frame written by raw orjson, arrays in the same ``data_b64`` layout as ours.
- ``wrapyfi``: Wrapyfi 0.5.0's zeromq middleware, when it is installed (``pip install .[bench]``).
- ``zenoh``: the same decorated method as ``ours`` with ``"zenoh"`` as its middleware.
- ``zenoh_raw``: plain zenoh-python with the settings ours uses (the session configuration from
  :mod:`wrapyfi_like.middlewares.zenoh.settings`, ``BLOCK`` congestion control, ``RELIABLE``): the
  array's bytes as the payload, a msgpack header as the attachment, and on receipt a writable
  array the receiver owns, as ours hands out: ``np.frombuffer`` of a ``bytearray`` of
  ``to_bytes()`` (zenoh-python gives only read-only ``bytes``, so writable costs one more copy
  on both paths).

Every receiver returns ``(sequence_number, value)``; the sequence number is None where the data
type leaves no room for one (an ``Image`` is just the frame), and drops are then counted by number.
"""

from __future__ import annotations

import base64
import functools
import importlib
import io
import os
import threading
from dataclasses import replace
from typing import Any, Callable, Optional

import msgpack
import numpy as np
import zmq

from benchmarks.cases import IMAGE_SHAPE, Case, import_payload_library

RECONNECT_IVL_MS = 10
"""The baseline's sockets retry a connection every 10 ms, not pyzmq's 100 ms, so the baseline's
start-up time is not inflated by a retry interval."""


def data_type_and_kwargs(case: Case) -> tuple[str, dict]:
    if case.kind in ("image", "jpeg"):
        height, width, _ = IMAGE_SHAPE
        return "Image", {"width": width, "height": height, "rgb": True, "jpg": case.kind == "jpeg"}
    return "NativeObject", {}


def carries_sequence(case: Case) -> bool:
    return data_type_and_kwargs(case)[0] == "NativeObject"


# --- ours -----------------------------------------------------------------------------------------

def _communicator(case: Case, topic: str, carrier: str, mode: str, package: str = "wrapyfi_like",
                  middleware: str = "zeromq", publisher_kwargs: Optional[dict] = None) -> Any:
    """A decorated method in ``mode``, written exactly as a user writes it, from ``package``
    (``wrapyfi_like``, or ``wrapyfi``: the same code with the other import), on ``middleware``."""
    MiddlewareCommunicator = importlib.import_module(f"{package}.connect.wrapper").MiddlewareCommunicator

    data_type, kwargs = data_type_and_kwargs(case)
    if case.serializer != "binary":
        kwargs["serializer"] = case.serializer
    if case.typed:
        kwargs["message_type"] = stamped_dict_type()
    if publisher_kwargs:
        kwargs["publisher_kwargs"] = publisher_kwargs

    class Bench(MiddlewareCommunicator):
        @MiddlewareCommunicator.register(data_type, middleware, "Bench", topic, carrier=carrier,
                                         should_wait=True, **kwargs)
        def exchange(self, value: Any) -> tuple:
            return value,

    bench = Bench()
    bench.activate_communication(Bench.exchange, mode=mode)
    return bench


@functools.cache
def stamped_dict_type() -> type:
    """The typed case's message: the 1 KB dict's fields and the sequence number, as a flat msgspec
    Struct (issue 19: a typed message costs at most 5 % more than the same message untyped).
    One class per process, as a user has: the sender builds its values from the class the
    method is registered with (a value of another class, even with the same fields, is not
    the model's own and takes the slow way: 11.9 µs to encode instead of 6.5)."""
    import msgspec

    return msgspec.defstruct("StampedDict", [("seq", int), ("name", str), ("frame", int), ("ok", bool),
                                             ("stamp", float), ("values", list[float]), ("label", str)])


class OursSender:
    package = "wrapyfi_like"
    middleware = "zeromq"
    publisher_kwargs: Optional[dict] = None

    def __init__(self, case: Case, endpoints: dict) -> None:
        self._wraps = carries_sequence(case)
        self._bench = _communicator(case, endpoints["topic"], endpoints["carrier"], "publish", self.package,
                                    self.middleware, self.publisher_kwargs)
        self._typed = stamped_dict_type() if case.typed else None

    def send(self, sequence: int, payload: Any) -> None:
        if self._typed is not None:  # built per message, as a user builds the dict of the untyped case
            self._bench.exchange(self._typed(seq=sequence, **payload))
        else:
            self._bench.exchange({"seq": sequence, "data": payload} if self._wraps else payload)

    def close(self) -> None:
        self._bench.close()


class OursReceiver:
    package = "wrapyfi_like"
    middleware = "zeromq"

    def __init__(self, case: Case, endpoints: dict) -> None:
        import_payload_library(case)
        self._wraps = carries_sequence(case)
        self._typed = case.typed
        self._bench = _communicator(case, endpoints["topic"], endpoints["carrier"], "listen", self.package,
                                    self.middleware)

    def recv(self) -> tuple[Optional[int], Any]:
        value, = self._bench.exchange(None)
        return self._unwrap(value)

    def _unwrap(self, value: Any) -> tuple[Optional[int], Any]:
        if self._typed:
            return value.seq, value
        return (value["seq"], value["data"]) if self._wraps else (None, value)

    def close(self) -> None:
        self._bench.close()


class OursUntypedSender(OursSender):
    """The typed case's message untyped: its fields as a flat dict, built per message as the
    typed sender builds its Struct."""

    def __init__(self, case: Case, endpoints: dict) -> None:
        super().__init__(replace(case, typed=False), endpoints)

    def send(self, sequence: int, payload: Any) -> None:
        self._bench.exchange({"seq": sequence, **payload})


class OursUntypedReceiver(OursReceiver):
    def __init__(self, case: Case, endpoints: dict) -> None:
        super().__init__(replace(case, typed=False), endpoints)

    def _unwrap(self, value: Any) -> tuple[Optional[int], Any]:
        return value["seq"], value


class OursServer:
    def __init__(self, case: Case, endpoints: dict) -> None:
        self._bench = _communicator(case, endpoints["topic"], endpoints["carrier"], "reply")

    def serve_one(self) -> None:
        self._bench.exchange(None)

    def close(self) -> None:
        self._bench.close()


class OursClient:
    def __init__(self, case: Case, endpoints: dict) -> None:
        self._bench = _communicator(case, endpoints["topic"], endpoints["carrier"], "request")

    def call(self, payload: Any) -> Any:
        return self._bench.exchange(payload)[0]

    def close(self) -> None:
        self._bench.close()


# --- baseline: plain pyzmq ------------------------------------------------------------------------

def _socket(kind: int) -> zmq.Socket:
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.LINGER, 5000)
    return sock


def _to_frames(case: Case, sequence: int, payload: Any) -> list:
    """The baseline's message: ``[msgpack header, body]``, the body zero-copy wherever possible."""
    if case.serializer == "json":
        return [_json_body(sequence, payload)]
    if case.kind in ("numpy", "echo", "image"):
        return [msgpack.packb([sequence, payload.dtype.str, payload.shape]), payload]
    if case.kind == "torch":
        array = payload.numpy()
        return [msgpack.packb([sequence, array.dtype.str, array.shape]), array]
    if case.kind == "dict":
        return [msgpack.packb([sequence]), msgpack.packb(payload)]
    if case.kind in ("dataframe", "table"):
        import pyarrow as pa

        table = pa.Table.from_pandas(payload, preserve_index=False) if case.kind == "dataframe" else payload
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return [msgpack.packb([sequence]), sink.getvalue()]
    if case.kind == "jpeg":
        from PIL import Image

        encoded = io.BytesIO()
        Image.fromarray(payload).save(encoded, format="JPEG", quality=90)
        return [msgpack.packb([sequence]), encoded.getbuffer()]
    raise ValueError(case.kind)


def _json_body(sequence: int, payload: Any) -> bytes:
    """What a user of raw orjson sends: the value as JSON, an array as base64 with its shape and dtype."""
    import orjson

    if isinstance(payload, np.ndarray):
        payload = {"data_b64": base64.b64encode(payload).decode("ascii"), "shape": list(payload.shape),
                   "dtype": payload.dtype.str}
    return orjson.dumps({"seq": sequence, "data": payload})


def _from_json_body(body: Any) -> tuple[int, Any]:
    import orjson

    message = orjson.loads(body)
    data = message["data"]
    if isinstance(data, dict) and "data_b64" in data:
        data = np.frombuffer(base64.b64decode(data["data_b64"]), data["dtype"]).reshape(data["shape"])
    return message["seq"], data


def _from_frames(case: Case, frames: list) -> tuple[int, Any]:
    if case.serializer == "json":
        return _from_json_body(frames[0].buffer)
    header = msgpack.unpackb(frames[0].buffer)
    body = frames[1].buffer
    if case.kind in ("numpy", "echo", "image", "torch"):
        array = np.frombuffer(body, dtype=header[1]).reshape(header[2])
        if case.kind == "torch":
            import torch

            return header[0], torch.from_numpy(array)
        return header[0], array
    if case.kind == "dict":
        return header[0], msgpack.unpackb(body)
    if case.kind in ("dataframe", "table"):
        import pyarrow as pa

        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        return header[0], table.to_pandas() if case.kind == "dataframe" else table
    if case.kind == "jpeg":
        from PIL import Image

        return header[0], np.asarray(Image.open(io.BytesIO(body)))
    raise ValueError(case.kind)


class _BaselineEnd:
    """One plain pyzmq socket of ``kind`` on the run's data endpoint: bound if ``binds``, else connected."""

    kind: int
    binds: bool

    def __init__(self, case: Case, endpoints: dict) -> None:
        self._case = case
        self._socket = _socket(self.kind)
        (self._socket.bind if self.binds else self._socket.connect)(endpoints["data"])

    def close(self) -> None:
        self._socket.close()


class BaselineSender(_BaselineEnd):
    kind, binds = zmq.PUSH, False

    def send(self, sequence: int, payload: Any) -> None:
        self._socket.send_multipart(_to_frames(self._case, sequence, payload), copy=False)


class BaselineReceiver(_BaselineEnd):
    kind, binds = zmq.PULL, True

    def recv(self) -> tuple[Optional[int], Any]:
        return _from_frames(self._case, self._socket.recv_multipart(copy=False))


class BaselineServer(_BaselineEnd):
    kind, binds = zmq.REP, True

    def serve_one(self) -> None:
        sequence, value = _from_frames(self._case, self._socket.recv_multipart(copy=False))
        self._socket.send_multipart(_to_frames(self._case, sequence, value), copy=False)


class BaselineClient(_BaselineEnd):
    kind, binds = zmq.REQ, False

    def call(self, payload: Any) -> Any:
        self._socket.send_multipart(_to_frames(self._case, 0, payload), copy=False)
        return _from_frames(self._case, self._socket.recv_multipart(copy=False))[1]


# --- Wrapyfi 0.5.0 -------------------------------------------------------------------------------

class WrapyfiSender(OursSender):
    package = "wrapyfi"


class WrapyfiReceiver(OursReceiver):
    """Wrapyfi's listener returns None until its subscription is established, even with
    ``should_wait``, so a Wrapyfi user loops until a value arrives; so does this receiver."""

    package = "wrapyfi"

    def recv(self) -> tuple[Optional[int], Any]:
        while True:
            value, = self._bench.exchange(None)
            if value is not None:
                return self._unwrap(value)


# --- zenoh: ours on zenoh, and zenoh-python on its own -------------------------------------------

class ZenohSender(OursSender):
    middleware = "zenoh"


class ZenohReceiver(OursReceiver):
    middleware = "zenoh"


RAW_ZENOH_QUEUE = 1000
"""The raw subscriber's channel holds as many messages as our zenoh listener's inbox."""


def _raw_zenoh_session() -> tuple[Any, Any]:
    """zenoh and a session opened with the configuration our zenoh middleware uses."""
    from wrapyfi_like.middlewares.zenoh import settings
    from wrapyfi_like.middlewares.zenoh.session import zenoh_module

    zenoh = zenoh_module()
    return zenoh, zenoh.open(settings.config(zenoh))


class ZenohRawSender:
    """A declared publisher with ours' congestion control and reliability; like ours with
    ``should_wait``, it waits for a subscriber before the first put."""

    def __init__(self, case: Case, endpoints: dict) -> None:
        zenoh, self._session = _raw_zenoh_session()
        self._publisher = self._session.declare_publisher(
            endpoints["topic"].strip("/"), congestion_control=zenoh.CongestionControl.BLOCK,
            reliability=zenoh.Reliability.RELIABLE)
        matched = threading.Event()
        self._matching = self._publisher.declare_matching_listener(lambda status: status.matching and matched.set())
        if not (self._publisher.matching_status.matching or matched.wait(60)):
            raise RuntimeError("no zenoh subscriber within 60 s")

    def send(self, sequence: int, payload: Any) -> None:
        self._publisher.put(payload.tobytes(), attachment=msgpack.packb([sequence, payload.dtype.str, payload.shape]))

    def close(self) -> None:
        self._session.close()


class ZenohRawReceiver:
    def __init__(self, case: Case, endpoints: dict) -> None:
        zenoh, self._session = _raw_zenoh_session()
        self._subscriber = self._session.declare_subscriber(endpoints["topic"].strip("/"),
                                                            zenoh.handlers.FifoChannel(RAW_ZENOH_QUEUE))
        self._handler = self._subscriber.handler

    def recv(self) -> tuple[Optional[int], Any]:
        """A writable array, as ours returns: the same copies as ours, so the ratio is ours' own cost."""
        sample = self._handler.recv()
        sequence, dtype, shape = msgpack.unpackb(sample.attachment.to_bytes())
        return sequence, np.frombuffer(bytearray(sample.payload.to_bytes()), dtype=dtype).reshape(shape)

    def close(self) -> None:
        self._session.close()


def wrapyfi_environment(free_port: Callable[[], int]) -> dict:
    """Wrapyfi's settings for one run: its built-in plugins (numpy, torch, pandas …) load only from
    WRAPYFI_PLUGIN_PATHS, and its broker and parameter ports must not collide between runs."""
    import wrapyfi

    ports = ("SOCKET_PUB_PORT", "SOCKET_SUB_PORT", "PARAM_PUB_PORT", "PARAM_SUB_PORT", "PARAM_REQREP_PORT")
    return {"WRAPYFI_PLUGIN_PATHS": os.path.dirname(wrapyfi.__file__),
            **{f"WRAPYFI_ZEROMQ_{port}": str(free_port()) for port in ports}}


PATHS = {
    "ours": {"sender": OursSender, "receiver": OursReceiver, "server": OursServer, "client": OursClient},
    "untyped": {"sender": OursUntypedSender, "receiver": OursUntypedReceiver},
    "baseline": {"sender": BaselineSender, "receiver": BaselineReceiver, "server": BaselineServer,
                 "client": BaselineClient},
    "wrapyfi": {"sender": WrapyfiSender, "receiver": WrapyfiReceiver},
    "zenoh": {"sender": ZenohSender, "receiver": ZenohReceiver},
    "zenoh_raw": {"sender": ZenohRawSender, "receiver": ZenohRawReceiver},
}
