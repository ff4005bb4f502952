"""What the benchmark sends: one :class:`Case` per payload, shared by the driver and the peers.

A case names a payload kind and size. The peers build the payload from the case (so nothing large
crosses a command line), and every path (ours, the pyzmq baseline, Wrapyfi) sends the same value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KB, MB = 1024, 1024 * 1024

IMAGE_SHAPE = (480, 640, 3)
TABLE_SIDE = 200


@dataclass(frozen=True)
class Case:
    """One payload. ``kind`` picks how it is built and which data type carries it."""

    kind: str
    size: int
    pattern: str = "stream"  # "stream": publish → listen; "rpc": request → reply echo
    serializer: str = "binary"  # "json": ours in JSON mode, the baseline raw orjson over pyzmq
    typed: bool = False  # ours sends a msgspec Struct through a typed method (the baseline: the same dict)

    @property
    def name(self) -> str:
        labels = {"numpy": "float32", "torch": "torch f32", "dict": "dict", "dataframe": "DataFrame 200x200",
                  "table": "Table 200x200", "image": "Image 640x480 raw", "jpeg": "Image 640x480 JPEG",
                  "echo": "REQ/REP echo"}
        if self.kind in ("dataframe", "table", "image", "jpeg"):
            return labels[self.kind]
        mode = (" JSON" if self.serializer == "json" else "") + (" typed" if self.typed else "")
        return f"{labels[self.kind]} {human_size(self.size)}{mode}"

    def counts(self, quick: bool) -> tuple[int, int]:
        """Messages for the flat-out run and for the lock-step latency run.

        A full run sends about 1.5 GB (at most 20,000 messages) flat out, about a quarter of a
        second or more on the 2-core machines: with a fifth of that, the same 1 MB case measured
        0.72x and 1.5x the baseline in two runs. A DataFrame gets a quarter of that budget: pandas'
        Arrow conversion makes the baseline's message take 12 ms, so even a quarter measures it
        for more than 10 seconds (the whole budget took a third of a full run)."""
        budget = (96 if quick else 1536) * MB // (4 if self.kind == "dataframe" else 1)
        if self.serializer == "json" and self.size >= MB:  # base64 and JSON text: ~6 ms a MB on both paths
            budget //= 16
        flat_out = max(12 if quick else 24, min(2000 if quick else 20000, budget // self.size))
        lock_step = max(8 if quick else 16, min(300 if quick else 2000, (budget // 4) // self.size))
        return int(flat_out), int(lock_step)

    def to_dict(self) -> dict:
        return asdict(self)


def human_size(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def all_cases(quick: bool) -> list[Case]:
    sizes = [KB, MB, 16 * MB] if quick else [KB, 64 * KB, MB, 16 * MB, 64 * MB]
    cases = [Case("numpy", size) for size in sizes]
    cases += [Case("torch", size) for size in sizes]
    cases += [Case("dict", KB), Case("dataframe", TABLE_SIDE * TABLE_SIDE * 8), Case("table", TABLE_SIDE * TABLE_SIDE * 8),
              Case("image", IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]),
              Case("jpeg", IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2])]
    cases += [Case("echo", KB, "rpc"), Case("echo", MB, "rpc")]
    cases += [Case("dict", KB, serializer="json"), Case("numpy", MB, serializer="json"),  # issue 19's targets
              Case("dict", KB, typed=True)]
    if quick:
        cases.append(Case("numpy", 64 * MB))  # the memory targets are stated at 64 MB
    return cases


def import_payload_library(case: Case) -> None:
    """Import the library ``case``'s values belong to, as a program that receives them does: a
    listener decodes a tensor or a table only with its library already imported (or allowed by
    ``allowed_plugins``), so that a message naming it cannot make the listener import it."""
    library = {"torch": "torch", "dataframe": "pandas", "table": "pyarrow"}.get(case.kind)
    if library is not None:
        __import__(library)


def make_payload(case: Case) -> Any:
    """The value every path sends for ``case``; deterministic so runs compare like with like."""
    import numpy as np

    if case.kind in ("numpy", "echo"):
        return np.arange(case.size // 4, dtype=np.float32)
    if case.kind == "torch":
        import torch

        return torch.arange(case.size // 4, dtype=torch.float32)
    if case.kind == "dict":
        return {"name": "pose", "frame": 42, "ok": True, "stamp": 1732350000.25,
                "values": [float(i) * 0.5 for i in range(100)], "label": "x" * 64}
    if case.kind in ("dataframe", "table"):
        import pandas as pd

        frame = pd.DataFrame(np.arange(TABLE_SIDE * TABLE_SIDE, dtype=np.float64).reshape(TABLE_SIDE, TABLE_SIDE),
                             columns=[f"c{i}" for i in range(TABLE_SIDE)])
        if case.kind == "dataframe":
            return frame
        import pyarrow as pa

        return pa.Table.from_pandas(frame, preserve_index=False)
    if case.kind in ("image", "jpeg"):
        rows = np.arange(IMAGE_SHAPE[0], dtype=np.uint16)[:, None, None]
        cols = np.arange(IMAGE_SHAPE[1], dtype=np.uint16)[None, :, None]
        return ((rows + cols * np.array([1, 2, 3], dtype=np.uint16)) % 256).astype(np.uint8)
    raise ValueError(f"unknown case kind {case.kind!r}")
