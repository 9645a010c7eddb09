"""Benchmarks: `python3 -m bench [NAME...]` runs bench/bench_NAME.py main(argv).

Each benchmark measures nbdboot against an anchor timed in the same run
(nbdcopy for NBD transfers, QEMU+SeaBIOS for boots), alternating the two and
reporting medians, so a busy machine slows both sides alike.
"""
