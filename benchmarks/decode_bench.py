"""Decode cost per uplink: every native codec, the JavaScript path on both embedded engines, defined models.

    python benchmarks/decode_bench.py [--n 20000]

Payloads are each model's own `encode` of a few grid samples (the JS model uses its vendor
examples, defined models the example of their definition file); the figure is the median over
5 runs of the mean µs per call. The last rows are the ChirpStack envelope parse with and without
a decoded `object` (the object costs a second JSON parse).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tomllib
from collections.abc import Callable, Sequence

import orjson

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.lorawan.decoded import parse_chirpstack_any
from decoders import all_models, derive, get_model
from decoders.definition import DefinedCodec, decode_input
from decoders.engines.js import ENGINES, JsCodec
from decoders.registry import DEFINITIONS_DIR


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

    for path in sorted(DEFINITIONS_DIR.glob("*.toml")):
        example = tomllib.loads(path.read_text(encoding="utf-8"))["example"]
        info = get_model(tomllib.loads(path.read_text(encoding="utf-8"))["model"])
        assert isinstance(info.codec, DefinedCodec)
        codec = info.codec
        if "object" in example:
            obj = example["object"]
            us = per_call_us(lambda _p, _q, c=codec, o=obj: decode_input(c, b"", 0, o), [(b"", 0)], n)
            print(f"{info.model:24} {'defined/object':18} {us:10.2f}")
        else:
            frames = [(bytes.fromhex(example["bytes"]), example.get("port", 1))]
            codec.decode(*frames[0])
            us = per_call_us(codec.decode, frames, max(n // 10, 100))
            print(f"{info.model:24} {'defined/bytes+js':18} {us:10.2f} {len(frames[0][0]):7d}B")

    topic, plain = build_chirpstack_event("24e124710c140001", b"\x01\x75\x5c", 85, 7, 1_760_000_000 * 10**9,
                                          [("0016c001ff10a235", -90, 6.0)])
    with_object = orjson.dumps({**orjson.loads(plain), "object": {"pm2_5": 37, "pm10": 52, "battery": 98}})
    for label, body in (("no object", plain), ("with object", with_object)):
        us = per_call_us(lambda _p, _q, b=body: parse_chirpstack_any(topic, b, 0), [(b"", 0)], n)
        print(f"{'chirpstack v4 envelope':24} {label:18} {us:10.2f} {len(body):7d}B")

    water = get_model("milesight-em500-udl")
    fields = water.codec.decode(bytes.fromhex("01755c03821e00"), 85).fields
    install = {"mount_height_mm": 2000.0}
    us = per_call_us(lambda _p, _q: derive("water_level", fields, install, water), [(b"", 0)], n)
    print(f"{'derive(water_level)':24} {'pure':18} {us:10.2f}")


if __name__ == "__main__":
    main()
