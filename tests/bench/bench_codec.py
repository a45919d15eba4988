"""Vitals codec throughput: encode and decode of a 1000-sample batch, samples/s on one core.

Baseline in the same run: the same rows as row-wise JSON with the stdlib (what a naive protocol does).
Target (issue 2): >= 1,000,000 samples/s each way for the columnar codec.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zlib

import numpy as np

from proto import envelope, keys, topics
from proto.envelope import SignerKey
from proto.vitals import VitalsBatch, VitalsBatchBuilder, decode_batch, encode_batch
from tests.bench.harness import BenchContext, median

BATCH = 1000


def realistic_batch(n: int = BATCH, seed: int = 7) -> VitalsBatch:
    """A second of a busy ward: 1 Hz HR/SpO2/RR-interval streams with physiological noise."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)
    builder = VitalsBatchBuilder()
    kinds = ("heart_rate", "spo2", "respiratory_rate", "rr_interval")
    base = {"heart_rate": 78.0, "spo2": 97.0, "respiratory_rate": 16.0, "rr_interval": 0.77}
    noise = {"heart_rate": 3.0, "spo2": 1.0, "respiratory_rate": 1.5, "rr_interval": 0.04}
    for i in range(n):
        kind = kinds[i % len(kinds)]
        value = round(base[kind] + rng.normal(0, noise[kind]), 3 if kind == "rr_interval" else 0)
        builder.add(start + dt.timedelta(milliseconds=i * 20), f"pt-{i % 50:04d}", kind, value,
                    device_id=f"dev-{i % 120:04d}")
    return builder.build()


def _rate(fn, n_samples: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        rates.append(n_samples * repeat / (time.perf_counter() - start))
    return median(rates)


def run(ctx: BenchContext) -> None:
    batch = realistic_batch()
    repeat = ctx.scale(400, 5)
    body = zlib.compress(encode_batch(batch), 1)
    rows = [{"t": s.time.isoformat(), "p": s.patient_id, "k": s.kind, "v": s.value, "d": s.device_id,
             "q": int(s.quality)} for s in batch.samples()]
    json_body = json.dumps(rows).encode()

    json_enc = _rate(lambda: json.dumps(rows).encode(), BATCH, repeat)
    json_dec = _rate(lambda: json.loads(json_body), BATCH, repeat)
    enc = _rate(lambda: zlib.compress(encode_batch(batch), 1), BATCH, repeat)
    dec = _rate(lambda: decode_batch(zlib.decompress(body)), BATCH, repeat)
    ctx.record("encode 1000-sample batch (columnar+zlib)", enc, "samples/s", baseline=json_enc,
               baseline_name="row JSON", target=1_000_000)
    ctx.record("decode 1000-sample batch (columnar+zlib)", dec, "samples/s", baseline=json_dec,
               baseline_name="row JSON", target=1_000_000)

    key = keys.generate()
    registry = {"edge-a": SignerKey(key.public_key(), site="s1")}.get
    topic = topics.build("s1", "edge-a", "vitals")
    sealed = envelope.seal(batch, edge_id="edge-a", sequence=1, signer=key)
    seal_rate = _rate(lambda: envelope.seal(batch, edge_id="edge-a", sequence=1, signer=key), BATCH, repeat)
    open_rate = _rate(lambda: envelope.open_envelope(sealed, topic=topic, keys=registry), BATCH, repeat)
    ctx.record("seal envelope (validate+encode+sign)", seal_rate, "samples/s")
    ctx.record("open envelope (verify+decode+validate)", open_rate, "samples/s")
    ctx.record("wire size", len(sealed) / BATCH, "bytes/sample", baseline=len(json_body) / BATCH,
               baseline_name="row JSON", higher_is_better=False)
