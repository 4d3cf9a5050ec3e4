"""Code assets built at synth time without Docker: the Lambda bundle and the training sourcedir.

The Lambda bundle is a folder holding `lambdas/`, `driftloop/` and the manylinux wheels
for the Lambda runtime that `make install` unpacks into `build/lambda-deps` (pip's
`--platform`/`--python-version` options, so nothing from this machine's site-packages
leaks in), plus driftloop's compiled capture scanner when it was built here for the
stable ABI on Linux x86-64 (see `_walk_sources`). It is assembled once per content
hash under `build/lambda-bundle/<hash>` (written to a temporary folder, then renamed,
so parallel synths never see half a bundle) and handed to `lambda.Code.from_asset`.

The training sourcedir is a byte-for-byte deterministic `sourcedir.tar.gz` of
`training/*.py` and the `driftloop/` package (sorted entries, zero mtimes and owners,
gzip header without a timestamp), so the same sources always give the same asset hash
and an unchanged app never re-uploads or restarts anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from driftloop.errors import DriftloopError

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache"})
SKIP_SUFFIXES = (".pyc", ".pyo")


def _walk(top: Path, *, skip_dirs: frozenset[str] = SKIP_DIRS) -> Iterator[Path]:
    """Files under `top`, sorted, without caches, tests or compiled files."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                yield Path(dirpath) / name


def lambda_can_load_builds_of_this_host() -> bool:
    """Whether an extension compiled here runs in the Lambda runtime (Linux, x86-64)."""
    return platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


def _walk_sources(top: Path, *, stable_abi: bool = False) -> Iterator[Path]:
    """The project's own files under `top`, without extensions compiled on this machine,
    except, with `stable_abi`, those built for CPython's stable ABI (`*.abi3.so`).

    driftloop._scan is built by `pip install` against the stable ABI of CPython 3.11, so
    on a Linux x86-64 host the same file loads in the Lambda runtime's Python 3.12 (it
    needs nothing newer from glibc than manylinux2014 allows; tests hold both). Built
    elsewhere it cannot, and the Lambda reads capture files with its numpy path.
    """
    for p in _walk(top):
        if not p.name.endswith(".so") or (stable_abi and p.name.endswith(".abi3.so")):
            yield p


def _digest(entries: Iterable[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for rel, src in entries:
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(src.read_bytes()).digest())
    return h.hexdigest()


def lambda_deps_dir(root: Path = ROOT) -> Path:
    """`build/lambda-deps`, or a clear error telling the user how to fill it."""
    deps = root / "build" / "lambda-deps"
    if not (deps / ".installed").is_file():
        raise DriftloopError(
            f"{deps}: the Lambda dependencies are missing; run `make install` first "
            "(it fetches manylinux wheels for the Lambda Python runtime)"
        )
    return deps


def lambda_bundle_entries(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(path inside the bundle, source file) for every file of the Lambda bundle."""
    deps = lambda_deps_dir(root)
    entries: list[tuple[str, Path]] = []
    stable_abi = lambda_can_load_builds_of_this_host()
    for package in ("lambdas", "driftloop"):
        entries += [
            (str(p.relative_to(root)), p)
            for p in _walk_sources(root / package, stable_abi=stable_abi)
        ]
    # The wheels' console scripts (bin/) are of no use inside a Lambda.
    for path in _walk(deps, skip_dirs=SKIP_DIRS | {"bin"}):
        rel = str(path.relative_to(deps))
        if rel != ".installed":
            entries.append((rel, path))
    return entries


def _place(src: Path, dst: Path, *, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def build_lambda_bundle(root: Path = ROOT) -> Path:
    """The bundle folder for the current sources (built if it does not exist yet)."""
    entries = lambda_bundle_entries(root)
    out_root = root / "build" / "lambda-bundle"
    target = out_root / _digest(entries)[:20]
    if target.is_dir():
        return target
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_root))
    deps = lambda_deps_dir(root)
    for rel, src in entries:
        # Wheels never change in place (make replaces the folder), so they may be hard
        # links; project sources are copied, since editors may rewrite them in place.
        _place(src, tmp / rel, link=src.is_relative_to(deps))
    try:
        tmp.rename(target)
    except OSError:  # another synth finished the same bundle first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# The one compiled dependency of driftloop/ that the scikit-learn image lacks.
VENDORED = ("orjson",)


def sourcedir_entries(root: Path = ROOT, *, vendor_py312: bool = False) -> list[tuple[str, Path]]:
    """(path in the tarball, source file): training/*.py at the top, driftloop/ beside it.

    driftloop/ needs orjson. For a Python 3.12 image (`-py312` versions: the same
    interpreter and platform as the Lambda runtime) the manylinux orjson from
    build/lambda-deps is vendored next to the scripts, so the job installs nothing at
    start-up. For other images training/requirements.txt goes in instead, and the
    container pip-installs it before running train.py.
    """
    training = sorted(p for p in (root / "training").glob("*.py") if p.name != "__init__.py")
    if not any(p.name == "train.py" for p in training):
        raise DriftloopError(
            f"{root / 'training' / 'train.py'}: the training entry point is missing"
        )
    entries = [(p.name, p) for p in training]
    entries += [(str(p.relative_to(root)), p) for p in _walk_sources(root / "driftloop")]
    if vendor_py312:
        deps = lambda_deps_dir(root)
        for top in sorted(deps.iterdir()):
            if top.is_dir() and top.name.split("-")[0] in VENDORED:
                entries += [(str(p.relative_to(deps)), p) for p in _walk(top)]
    elif (root / "training" / "requirements.txt").is_file():
        entries.append(("requirements.txt", root / "training" / "requirements.txt"))
    return entries


def _tar_bytes(entries: Iterable[tuple[str, Path]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, src in sorted(entries):
            data = src.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def build_sourcedir(root: Path = ROOT, *, vendor_py312: bool = False) -> Path:
    """`build/sourcedir/<hash>/sourcedir.tar.gz` for the current training sources."""
    data = _tar_bytes(sourcedir_entries(root, vendor_py312=vendor_py312))
    target = root / "build" / "sourcedir" / hashlib.sha256(data).hexdigest()[:20]
    path = target / "sourcedir.tar.gz"
    if path.is_file():
        return path
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    Path(tmp_name).replace(path)
    return path


def script_asset_file(name: str, root: Path = ROOT) -> Path:
    """One training script as its own file asset (the processing job runs it directly)."""
    path = root / "training" / name
    if not path.is_file():
        raise DriftloopError(f"{path}: missing (the retraining workflow runs it)")
    return path
