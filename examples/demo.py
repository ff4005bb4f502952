"""`make demo`: run the hello-world publisher and listener as two processes and show what arrived.

    python examples/demo.py                 # over ZeroMQ
    python examples/demo.py --mware zenoh   # over zenoh (pip install 'wrapyfi_like[zenoh]')
"""

import argparse
import subprocess
import sys
from pathlib import Path

HELLO = Path(__file__).with_name("hello_world.py")
COUNT = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mware", choices=("zeromq", "zenoh"), default="zeromq",
                        help="middleware to use (default: %(default)s)")
    args = parser.parse_args()
    base = [sys.executable, str(HELLO), "--mware", args.mware, "--count", str(COUNT)]
    print(f"starting a listener and a publisher of {COUNT} messages on /hello/my_message\n", flush=True)
    listener = subprocess.Popen([*base, "--mode", "listen"], stdout=subprocess.PIPE, text=True)
    publisher = subprocess.Popen([*base, "--mode", "publish", "--rate", "20"], stdout=subprocess.DEVNULL)
    try:
        received, _ = listener.communicate(timeout=60)
        publisher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        listener.kill()
        publisher.kill()
        print("the demo did not finish within 60 s", file=sys.stderr)
        return 1
    print("the listener process received:")
    print(received)
    return listener.returncode or publisher.returncode


if __name__ == "__main__":
    sys.exit(main())
