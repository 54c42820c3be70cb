"""Decode cost per uplink: every native codec, and the JavaScript path on both embedded engines.

    python benchmarks/decode_bench.py [--n 20000]

Payloads are each model's own `encode` of a few grid samples (the JS model uses its vendor
examples); the figure is the median over 5 runs of the mean µs per `decode` call.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence

from decoders import all_models, derive, get_model
from decoders.engines.js import ENGINES, JsCodec


def per_call_us(fn: Callable[[bytes, int], object], frames: Sequence[tuple[bytes, int]], n: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(n):
            payload, port = frames[i % len(frames)]
            fn(payload, port)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="decode calls per run (JS: a tenth)")
    n = parser.parse_args().n
    rng = random.Random(7)
    print(f"{'model':24} {'source':18} {'µs/uplink':>10} {'payload':>8}")
    for info in all_models():
        if not info.can_encode:
            continue
        frames = [info.codec.encode(info.sample(rng)) for _ in range(8)]
        us = per_call_us(info.codec.decode, frames, n)
        print(f"{info.model:24} {'native':18} {us:10.2f} {len(frames[0][0]):7d}B")

    js = get_model("nwave-ncc405")
    frames = [(bytes.fromhex("06aa"), 1), (bytes.fromhex("a86661"), 2)]
    for engine in ENGINES:
        assert isinstance(js.codec, JsCodec)
        codec = JsCodec(js.model, js.kind, js.codec.script, js.codec.mapping, engine=engine)
        codec.decode(*frames[0])
        us = per_call_us(codec.decode, frames, max(n // 10, 100))
        print(f"{js.model:24} {'js/' + engine:18} {us:10.2f} {len(frames[0][0]):7d}B")

    water = get_model("milesight-em500-udl")
    fields = water.codec.decode(bytes.fromhex("01755c03821e00"), 85).fields
    install = {"mount_height_mm": 2000.0}
    us = per_call_us(lambda _p, _q: derive("water_level", fields, install, water), [(b"", 0)], n)
    print(f"{'derive(water_level)':24} {'pure':18} {us:10.2f}")


if __name__ == "__main__":
    main()
