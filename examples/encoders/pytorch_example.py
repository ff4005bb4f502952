"""PyTorch tensors between two processes, with the listener choosing the device they land on.

Run in two terminals, in either order:

    python examples/encoders/pytorch_example.py --mode publish --mware zeromq
    python examples/encoders/pytorch_example.py --mode listen --mware zeromq

Each message holds a float32 tensor, a bfloat16 tensor (a dtype numpy lacks), a tensor that
requires grad and a non-contiguous view. The publisher sends them from ``--device`` (e.g.
``cuda:0`` where there is a GPU); the listener's ``listener_kwargs`` put everything on the CPU:
``map_torch_devices`` sends cuda:0 and cuda:1 tensors there, and ``load_torch_device`` is the
default for any other device. Tensors travel as raw bytes (never torch.save/pickle) and a
tensor that stays on the CPU is built on the received buffer without a copy.
"""

import argparse
import hashlib
import time

import torch

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class TensorExchange(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "TensorExchange", "/examples/encoders/torch",
                                     carrier="tcp", should_wait=True,
                                     listener_kwargs=dict(load_torch_device="cpu",
                                                          map_torch_devices={"cuda:0": "cpu", "cuda:1": "cpu"}))
    def send_tensors(self, count, device="cpu", mware=None):
        grid = torch.arange(12, dtype=torch.float32, device=device).reshape(3, 4) * count
        return {
            "float32": grid,
            "bfloat16": torch.linspace(0, 1, 5, device=device).to(torch.bfloat16) + count,
            "requires_grad": torch.full((2,), float(count), device=device, requires_grad=True),
            "transposed_view": grid.t()[::2],
        },


def describe(tensors):
    """One line per tensor: dtype, shape, device, requires_grad and a digest of its exact values."""
    lines = []
    for name, tensor in tensors.items():
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        lines.append(f"{name}: {tensor.dtype} {tuple(tensor.shape)} on {tensor.device} "
                     f"requires_grad={tensor.requires_grad} sha1={hashlib.sha1(raw).hexdigest()[:12]}")
    return "; ".join(lines)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish tensors, or listen and print them")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="device the publisher creates tensors on (default: cpu)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    exchange = TensorExchange()
    exchange.activate_communication(TensorExchange.send_tensors, mode=args.mode)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            sent += 1
            (tensors,) = exchange.send_tensors(sent, device=args.device, mware=args.mware)
            print(("published" if args.mode == "publish" else "received"), describe(tensors), flush=True)
            if args.mode == "publish" and (args.count == 0 or sent < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        exchange.close()


if __name__ == "__main__":
    main()
