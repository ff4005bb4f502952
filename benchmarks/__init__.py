"""Side-by-side benchmarks: wrapyfi_like against plain pyzmq (and Wrapyfi when installed).

Run with ``make bench`` (full) or ``make bench-quick``; see :mod:`benchmarks.run`.
"""
