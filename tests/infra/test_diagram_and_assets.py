"""docs/retraining.md's diagram equals a fresh render; the code assets are deterministic."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from driftloop.errors import DriftloopError
from infra import lambda_bundle
from infra.diagram import (
    BEGIN,
    END,
    definition_from_template,
    extract_block,
    render_block,
    render_mermaid,
    replace_block,
)
from tests.infra.conftest import ROOT, Synth

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("cdk")]


@pytest.mark.parametrize("page", ["docs/retraining.md", "README.md"])
def test_doc_diagram_equals_a_fresh_render(synth: Synth, page: str) -> None:
    # Given the diagram on the page and the synthesized definition
    doc = (ROOT / page).read_text()
    fresh = render_block(definition_from_template(synth.templates["retraining"]))
    # Then they are the same (regenerate: python -m infra.diagram PAGE)
    assert extract_block(doc, page) == fresh


def test_render_draws_states_choices_and_catches() -> None:
    # Given a tiny definition
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                "Next": "C",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}],
            },
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "W"}],
                "Default": "F",
            },
            "W": {"Type": "Wait", "Seconds": 5, "End": True},
            "F": {"Type": "Fail"},
        },
    }
    text = render_mermaid(definition)
    # Then each construct has its shape and edge
    assert 'A["A<br/><small>sagemaker:createTrainingJob.sync</small>"]' in text
    assert 'C{"C"}' in text and 'W(["W<br/><small>5 s</small>"])' in text
    assert 'C -- "ok Equals true" --> W' in text and 'C -- "otherwise" --> F' in text
    assert 'A -. "States.ALL" .-> F' in text and "W --> Done((end))" in text


def test_replace_block_needs_markers() -> None:
    with pytest.raises(DriftloopError, match="no diagram markers"):
        replace_block("no markers here", "x", "doc.md")
    doc = f"before\n{BEGIN}\nold\n{END}\nafter"
    assert replace_block(doc, "NEW", "doc.md") == "before\nNEW\nafter"


def _fake_tree(root: Path) -> None:
    for rel, text in {
        "training/train.py": "print('train')\n",
        "training/evaluate.py": "print('eval')\n",
        "training/__init__.py": "",
        "driftloop/__init__.py": "",
        "driftloop/core.py": "x = 1\n",
        "driftloop/__pycache__/core.cpython-311.pyc": "junk",
        "driftloop/_scan.cpython-311-x86_64-linux-gnu.so": "built here, for this Python",
        "driftloop/_scan.abi3.so": "built here, for CPython's stable ABI",
        "lambdas/handler.py": "def handler(e, c): return 1\n",
        "lambdas/tests/test_x.py": "",
        "build/lambda-deps/numpy/__init__.py": "",
        "build/lambda-deps/numpy/_core.cpython-312-x86_64-linux-gnu.so": "",
        "build/lambda-deps/orjson/__init__.py": "",
        "build/lambda-deps/orjson-3.9.0.dist-info/METADATA": "",
        "training/requirements.txt": "orjson\n",
        "build/lambda-deps/bin/f2py": "",
        "build/lambda-deps/.installed": "",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_sourcedir_is_deterministic_and_laid_out_for_script_mode(tmp_path: Path) -> None:
    # Given a project tree
    _fake_tree(tmp_path)
    # When the sourcedir is built twice (the second time after touching a file)
    first = lambda_bundle.build_sourcedir(tmp_path).read_bytes()
    (tmp_path / "training" / "train.py").touch()
    second_path = lambda_bundle.build_sourcedir(tmp_path)
    # Then the bytes are identical (same asset hash, no needless re-upload)
    assert second_path.read_bytes() == first
    with tarfile.open(second_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    # And train.py sits at the top with driftloop/ beside it, without caches or
    # extensions compiled here; for a non-3.12 image the container installs requirements.txt
    assert set(members) == {
        "train.py",
        "evaluate.py",
        "driftloop/__init__.py",
        "driftloop/core.py",
        "requirements.txt",
    }
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())
    # And a source change changes the tarball
    (tmp_path / "driftloop" / "core.py").write_text("x = 2\n")
    assert lambda_bundle.build_sourcedir(tmp_path).read_bytes() != first


def test_sourcedir_for_a_py312_image_vendors_orjson_instead_of_pip(tmp_path: Path) -> None:
    # Given a tree with the Lambda wheels (manylinux, Python 3.12)
    _fake_tree(tmp_path)
    # When the sourcedir is built for a -py312 scikit-learn image
    with tarfile.open(lambda_bundle.build_sourcedir(tmp_path, vendor_py312=True)) as tar:
        names = set(tar.getnames())
    # Then orjson travels with the code and nothing is left for pip to install
    assert {"orjson/__init__.py", "orjson-3.9.0.dist-info/METADATA", "train.py"} <= names
    assert "requirements.txt" not in names and "numpy/__init__.py" not in names


def test_sourcedir_without_train_py_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "training").mkdir()
    with pytest.raises(DriftloopError, match="train.py"):
        lambda_bundle.build_sourcedir(tmp_path)


@pytest.mark.parametrize("linux_x86_64", [True, False])
def test_lambda_bundle_holds_code_and_wheels_without_caches(
    tmp_path: Path, linux_x86_64: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tree with filled build/lambda-deps, on a Linux x86-64 host or another one
    _fake_tree(tmp_path)
    monkeypatch.setattr(lambda_bundle, "lambda_can_load_builds_of_this_host", lambda: linux_x86_64)
    # When the bundle is assembled
    bundle = lambda_bundle.build_lambda_bundle(tmp_path)
    files = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    # Then it holds lambdas/, driftloop/ and the wheels (compiled parts included) at the
    # top, nothing else: not the extension compiled for this machine's Python, and the
    # stable-ABI one only from a host whose builds the Lambda runtime can load
    scanner = {"driftloop/_scan.abi3.so"} if linux_x86_64 else set()
    assert files == scanner | {
        "lambdas/handler.py",
        "driftloop/__init__.py",
        "driftloop/core.py",
        "numpy/__init__.py",
        "numpy/_core.cpython-312-x86_64-linux-gnu.so",
        "orjson/__init__.py",
        "orjson-3.9.0.dist-info/METADATA",
    }
    # And the same sources give the same folder
    assert lambda_bundle.build_lambda_bundle(tmp_path) == bundle


def test_missing_lambda_deps_tell_the_user_to_run_make_install(tmp_path: Path) -> None:
    (tmp_path / "lambdas").mkdir()
    with pytest.raises(DriftloopError, match="make install"):
        lambda_bundle.build_lambda_bundle(tmp_path)
