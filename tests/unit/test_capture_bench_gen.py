"""The benchmark's vectorised capture generator writes exactly what the capture writer writes."""

from __future__ import annotations

import importlib.util
import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import orjson

from driftloop.capture import encode_capture_record, read_capture
from driftloop.errors import MalformedLog
from driftloop.schema import Schema

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gen_capture.py"


def load_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_capture", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_capture"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generated_lines_equal_the_writer_output_and_read_back() -> None:
    # Given a block of generated records
    gen = load_gen()
    hour = datetime(2026, 11, 1, 5, tzinfo=UTC)
    pieces, at = gen._build_pieces(hour)
    num, cats, score = gen.sample(50, seed=3)
    ids = np.random.default_rng(0).integers(0, 256, size=(50, 16))
    seconds = np.arange(50) * 60
    blob = gen.render_block(pieces, at, num, cats, score, ids, seconds)
    lines = blob.splitlines(keepends=True)
    assert len(lines) == 50
    # Then each line is byte for byte what encode_capture_record writes for the same request
    for line in lines:
        doc = orjson.loads(line)
        again = encode_capture_record(
            input_data=doc["captureData"]["endpointInput"]["data"].encode(),
            input_content_type="text/csv",
            output_data=doc["captureData"]["endpointOutput"]["data"].encode(),
            output_content_type="text/csv; charset=utf-8",
            event_id=doc["eventMetadata"]["eventId"],
            inference_time=datetime.fromisoformat(doc["eventMetadata"]["inferenceTime"]),
        )
        assert again == line
    # And the reader returns the sampled values
    schema = Schema.from_dict(gen.schema_dict())
    log = MalformedLog()
    (batch,) = list(read_capture(io.BytesIO(blob), schema=schema, malformed=log))
    assert log.total == 0
    np.testing.assert_array_equal(batch.columns["n00"], num[:, 0] / 100)
    np.testing.assert_array_equal(batch.predictions, score / 10_000)
    assert batch.columns["c1"].tolist() == [gen.CATEGORIES[1][k] for k in cats[:, 1]]
    assert str(batch.inference_times[1]) == "2026-11-01T05:01:00"
