"""The compiled capture scanner travels to the Lambda runtime and works there.

driftloop._scan is built by `pip install` against CPython's stable ABI (3.11+). On a
Linux x86-64 host the Lambda bundle ships that file; these tests hold what makes that
safe: the build is the stable-ABI one, it needs nothing newer from glibc than
manylinux2014 (glibc 2.17), and a Python 3.12 (the Lambda runtime's) loads it from the
bundle, beside the bundle's own cp312 wheels, and reads capture files exactly as the
bundle's numpy path does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driftloop.capture import encode_capture_record
from infra import lambda_bundle
from tests.infra.conftest import ROOT

pytestmark = pytest.mark.skipif(
    not lambda_bundle.lambda_can_load_builds_of_this_host(),
    reason="the bundle ships the scanner only from a Linux x86-64 host",
)

SCANNER = ROOT / "driftloop" / "_scan.abi3.so"


def _python312() -> str | None:
    """A working Python 3.12 interpreter (the Lambda runtime's version), if this host has one."""
    candidates = [shutil.which("python3.12") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for exe in candidates:
        if not exe:
            continue
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 12)":
            return exe
    return None


def test_the_scanner_is_the_stable_abi_build_and_needs_only_old_glibc() -> None:
    # Given the install built the scanner (it must have: this host has a C compiler)
    assert SCANNER.is_file(), "driftloop/_scan.abi3.so missing: reinstall with pip install -e ."
    # When its dynamic symbols are listed
    out = subprocess.run(["objdump", "-T", str(SCANNER)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    found = re.findall(r"GLIBC_([\d.]+)", out.stdout)
    versions = {tuple(int(x) for x in v.split(".")) for v in found}
    # Then it asks glibc for nothing newer than manylinux2014's 2.17 (Lambda has 2.34)
    assert versions and max(versions) <= (2, 17), sorted(versions)


READ = """
import json, sys
from driftloop import capture
from driftloop.capture import read_capture
from driftloop.errors import MalformedLog
from driftloop.schema import Schema
schema = Schema(features=("a", "b", "k"), categorical=frozenset({"k"}))
out = {"scanner": capture._scan.__file__, "python": list(sys.version_info[:2])}
for engine in ("native", "numpy"):
    log = MalformedLog()
    rows = []
    for b in read_capture(sys.argv[1], schema=schema, malformed=log, engine=engine):
        rows += zip(b.columns["a"].tolist(), b.columns["b"].tolist(), b.columns["k"].tolist(),
                    b.predictions.tolist(), b.event_ids)
    out[engine] = {"rows": rows, "malformed": dict(log.by_reason)}
print(json.dumps(out))
"""


def test_lambda_python_reads_capture_with_the_bundled_scanner(tmp_path: Path) -> None:
    # Given the Lambda bundle, and the Lambda runtime's Python version on this host
    py312 = _python312()
    if py312 is None:
        pytest.skip("no Python 3.12 on this host to stand in for the Lambda runtime")
    bundle = lambda_bundle.build_lambda_bundle(ROOT)
    assert (bundle / "driftloop" / "_scan.abi3.so").is_file()
    # and a capture file with good records and a malformed one
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    lines = [
        encode_capture_record(
            input_data=f"{i * 0.25},{-i}e-3,{'xyz'[i % 3] if i % 5 else ''}".encode(),
            input_content_type="text/csv",
            output_data=f"0.{i % 10}".encode(),
            output_content_type="text/csv",
            event_id=f"ev-{i}",
            inference_time=t0 + timedelta(seconds=i),
        )
        for i in range(300)
    ]
    lines[150] = b'{"captureData": truncated\n'
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(b"".join(lines))
    # When Python 3.12 reads it from the bundle alone, with both engines
    run = subprocess.run(
        [py312, "-I", "-c", f"import sys; sys.path.insert(0, {str(bundle)!r}); exec({READ!r})",
         str(capture)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    # Then it ran on 3.12 with the bundle's scanner, and both engines agree
    assert got["python"] == [3, 12]
    assert got["scanner"].startswith(str(bundle)) and got["scanner"].endswith("_scan.abi3.so")
    assert got["native"] == got["numpy"]
    assert len(got["native"]["rows"]) == 299
    assert got["native"]["malformed"] == {"invalid_json": 1}
    assert got["native"]["rows"][1] == [0.25, -0.001, "y", 0.1, "ev-1"]
