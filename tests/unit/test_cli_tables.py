"""`driftloop baseline` from tables, and `driftloop drift` on CSV / parquet input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.metrics import roc_auc_score

from driftloop.cli import main
from driftloop.profile import DatasetProfile

HEADER = "age,income,region,default,score"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def table_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[str]:
    age = rng.normal(40 + 12 * shift, 10, n)
    income = rng.lognormal(10, 0.5, n)
    region = rng.choice(["north", "south", "east"], n)
    score = 1 / (1 + np.exp(-(age - 40) / 8))
    y = (rng.uniform(size=n) < score).astype(int)
    return [
        f"{a:.1f},{i:.0f},{r},{t},{s:.4f}"
        for a, i, r, t, s in zip(age, income, region, y, score, strict=True)
    ]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(8)
    train = write_csv(d / "train.csv", table_rows(rng, 3000))
    code, out, err = run(
        "baseline",
        str(train),
        "--out",
        str(d / "baseline.json"),
        "--target",
        "default",
        "--predictions",
        "score",
        "--model-monitor-dir",
        str(d / "mm"),
    )
    assert code == 0, err
    return {
        "dir": d,
        "train": train,
        "baseline": d / "baseline.json",
        "same": write_csv(d / "same.csv", table_rows(rng, 1000)),
        "shifted": write_csv(d / "shifted.csv", table_rows(rng, 1000, shift=1.0)),
        "out": d / "baseline.out",
    }


def test_baseline_from_csv_profiles_features_predictions_and_metrics(files) -> None:
    # Given the baseline built from the training CSV with a target and a score column
    baseline = DatasetProfile.load(files["baseline"])
    # Then the target and score are not features, the region is categorical,
    assert baseline.schema.features == ("age", "income", "region")
    assert baseline.schema.categorical == frozenset({"region"})
    assert baseline.n_rows == 3000 and baseline.predictions is not None
    # and the metrics are those of the score against the target
    lines = files["train"].read_text().splitlines()[1:]
    y = [int(line.split(",")[3]) for line in lines]
    s = [float(line.split(",")[4]) for line in lines]
    assert baseline.metrics["auc"] == pytest.approx(roc_auc_score(y, s))
    # and Model Monitor files were written beside it
    stats = orjson.loads((files["dir"] / "mm" / "statistics.json").read_bytes())
    assert [f["name"] for f in stats["features"]] == ["age", "income", "region"]
    assert (files["dir"] / "mm" / "constraints.json").exists()


def test_drift_on_tables(files) -> None:
    base = str(files["baseline"])
    assert run("drift", "--baseline", base, str(files["same"]))[0] == 0
    code, out, _ = run("drift", "--baseline", base, str(files["shifted"]))
    assert code == 1 and "  age: wasserstein" in out


def test_bad_csv_rows_are_counted_and_skipped(files, tmp_path) -> None:
    # Given a CSV with wrong column counts, a string in a numeric column, NaN and inf
    rng = np.random.default_rng(9)
    rows = table_rows(rng, 500)
    rows[5] = "41.0,5000,north"  # too few fields
    rows[6] = "41.0,5000,north,0,0.5,extra"  # too many
    rows[7] = "forty,5000,north,0,0.5"  # string in a numeric column
    rows[8] = "nan,5000,north,0,0.5"  # NaN: missing, kept
    rows[9] = "41.0,inf,north,0,0.5"  # inf: kept, counted invalid
    path = write_csv(tmp_path / "bad.csv", rows)
    # When checked
    code, out, err = run(
        "drift", "--baseline", str(files["baseline"]), str(path), "--json", str(tmp_path / "r.json")
    )
    # Then the three bad rows are skipped and counted with their line numbers
    assert code == 0, err
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    assert report["n_malformed"] == 3
    assert report["malformed"]["by_reason"] == {"wrong_column_count": 2, "unparseable_value": 1}
    assert report["n_rows"] == 497
    assert f"{path}:7: wrong_column_count" in out  # header is line 1


def test_header_only_csv_is_insufficient_data(files, tmp_path) -> None:
    path = write_csv(tmp_path / "empty.csv", [])
    code, out, _ = run("drift", "--baseline", str(files["baseline"]), str(path))
    assert code == 0 and out.startswith("INSUFFICIENT DATA")


def test_table_missing_a_feature_column_is_bad_input(files, tmp_path) -> None:
    path = write_csv(tmp_path / "narrow.csv", ["41,north"], header="age,region")
    code, _, err = run("drift", "--baseline", str(files["baseline"]), str(path))
    assert code == 2 and "narrow.csv" in err and "income" in err and err.count("\n") == 1


def test_parquet_input(files, tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(10)
    n = 800
    table = pa.table(
        {
            "age": rng.normal(52, 10, n),
            "income": rng.lognormal(10, 0.5, n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    pq.write_table(table, tmp_path / "shifted.parquet")
    code, out, err = run(
        "drift", "--baseline", str(files["baseline"]), str(tmp_path / "shifted.parquet")
    )
    assert code == 1, err
    assert "  age:" in out


@pytest.mark.parametrize(
    ("rows", "args", "needle"),
    [
        (
            ["41,5000,north,yes,0.5"],
            ("--target", "default", "--predictions", "score"),
            "not a number",
        ),
        (
            ["41,5000,north,2,0.5"],
            ("--target", "default", "--predictions", "score"),
            "must be 0 or 1",
        ),
        (["41,5000,north,1,0.5"], ("--target", "nope"), "'nope' is not in the header"),
        (
            ["forty,5000,north,1,0.5"],
            ("--target", "default", "--categorical", "region"),
            "no usable rows",
        ),
    ],
)
def test_bad_training_tables(tmp_path, rows: list[str], args: tuple[str, ...], needle: str) -> None:
    path = write_csv(tmp_path / "train.csv", rows)
    code, _, err = run("baseline", str(path), "--out", str(tmp_path / "b.json"), *args)
    assert code == 2 and needle in err and "train.csv" in err and err.count("\n") == 1


def test_training_table_that_does_not_exist_or_is_not_a_table(tmp_path) -> None:
    assert (
        "no such file"
        in run("baseline", str(tmp_path / "x.csv"), "--out", str(tmp_path / "b.json"))[2]
    )
    (tmp_path / "x.jsonl").write_text("{}")
    assert (
        ".csv or .parquet"
        in run("baseline", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "b.json"))[2]
    )
