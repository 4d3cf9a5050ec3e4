"""`make bench`: run every benchmark script in bench/, one subprocess each, in name order.

Any engineer adds a benchmark by dropping a `bench/*.py` script that prints its figures;
this runner finds it. Scripts run with this interpreter and the caller's environment
(BENCH_SIZES and friends pass through; BENCH_ONLY=drift_bench,gen_capture runs just
those). A failing script is reported and the rest still run; the exit code is 1 when
any failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SELF = Path(__file__).resolve()


def scripts() -> list[Path]:
    """Every bench/*.py but this runner (a module named _*.py is a private helper)."""
    return sorted(
        p for p in HERE.glob("*.py") if p.resolve() != SELF and not p.name.startswith("_")
    )


def main() -> int:
    only = os.environ.get("BENCH_ONLY", "")
    chosen = [p for p in scripts() if not only or p.stem in only.split(",")]
    summary: list[tuple[str, int, float]] = []
    for script in chosen:
        print(f"\n=== {script.name} " + "=" * max(0, 66 - len(script.name)), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False).returncode
        summary.append((script.name, rc, time.perf_counter() - t0))
    print("\n=== summary " + "=" * 60)
    for name, rc, secs in summary:
        print(f"{name:<32} {'ok' if rc == 0 else f'FAILED (exit {rc})':<18} {secs:8.1f} s")
    return 1 if any(rc for _, rc, _ in summary) else 0


if __name__ == "__main__":
    raise SystemExit(main())
