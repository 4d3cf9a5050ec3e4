"""The local SageMaker job runners: script-mode contract, S3 in and out (moto), loud failures."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from driftloop.errors import DriftloopError
from driftloop.local import training as local
from training.datagen import FEATURES, TARGET, write_dataset

# One worker runs this module, so its module-scoped model is built once.
pytestmark = pytest.mark.xdist_group("local-training")

AUC_FLOOR = 0.76
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # small fits; two test workers share two cores
FAST = {"max-iter": 60, "learning-rate": 0.15, "early-stopping": False, "seed": 4}
# Each job that imports scikit-learn in a subprocess costs seconds on a shared 2-core box:
# two such jobs run here (one training, one evaluation); the rest use tiny probe scripts.


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("datasets", "artifacts"):
            client.create_bucket(Bucket=bucket)
        yield client


@pytest.fixture(scope="module")
def data(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Given the initial snapshot in the datasets bucket (the ARCHITECTURE layout)
    paths = write_dataset(tmp_path_factory.mktemp("data"), rows=2500, seed=41)
    for name in ("train", "validation", "holdout"):
        s3.upload_file(str(paths[name]), "datasets", f"training/initial/{name}/{name}.csv")
    return paths


def _request(job: str, snapshot: str, hps: dict[str, Any]) -> dict[str, Any]:
    def channel(name: str) -> dict[str, Any]:
        uri = f"s3://datasets/training/{snapshot}/{name}"
        return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3Uri": uri}}}

    return {
        "TrainingJobName": job,
        "HyperParameters": {k: json.dumps(v) for k, v in hps.items()},
        "InputDataConfig": [channel("train"), channel("validation")],
        "OutputDataConfig": {"S3OutputPath": "s3://artifacts/models"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


@pytest.fixture(scope="module")
def first_job(s3: Any, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # When a CreateTrainingJob request runs locally
    work = tmp_path_factory.mktemp("jobs")
    result = local.run_training_job_request(
        _request("model-1", "initial", FAST), s3_client=s3, work_dir=work, env=ONE_THREAD
    )
    return result, work


def _members(s3: Any, key: str, dest: Path) -> set[str]:
    dest.mkdir(parents=True, exist_ok=True)
    s3.download_file("artifacts", key, str(dest / "model.tar.gz"))
    with tarfile.open(dest / "model.tar.gz") as tar:
        names = set(tar.getnames())
        tar.extractall(dest / "x", filter="data")
    return names


@pytest.mark.slow
def test_training_job_uploads_a_sagemaker_shaped_model_tarball(
    s3: Any, first_job: tuple[local.JobResult, Path], tmp_path: Path
) -> None:
    result, _ = first_job
    # Then model.tar.gz sits where SageMaker puts it, with the model dir at the root
    assert result.model_data_url == "s3://artifacts/models/model-1/output/model.tar.gz"
    names = _members(s3, "models/model-1/output/model.tar.gz", tmp_path)
    assert {
        "model.joblib", "schema.json", "evaluation.json", "baseline.json",
        "statistics.json", "constraints.json", "code/inference.py",
    } <= names  # fmt: skip
    assert not any(n.startswith(("/", "..")) or "__pycache__" in n for n in names)
    # And output.tar.gz (SM_OUTPUT_DATA_DIR) next to it
    assert s3.head_object(Bucket="artifacts", Key="models/model-1/output/output.tar.gz")
    # And the hyperparameters reached the script typed as SageMaker types them
    evaluation = json.loads((tmp_path / "x" / "evaluation.json").read_text())
    assert evaluation["hyperparameters"]["max_iter"] == 60
    assert evaluation["hyperparameters"]["early_stopping"] is False
    assert evaluation["n_train"] == 1750 and evaluation["n_validation"] == 375


@pytest.mark.slow
def test_training_job_metrics_are_scraped_with_the_metric_regexes(
    first_job: tuple[local.JobResult, Path],
) -> None:
    result, _ = first_job
    assert result.metrics["validation:auc"] >= AUC_FLOOR
    assert result.metrics["train:auc"] >= result.metrics["validation:auc"] - 0.05
    assert 0.5 < result.metrics["validation:accuracy"] <= 1.0


def test_sm_environment_and_arguments_follow_the_container_contract(
    s3: Any, data: dict[str, Path], tmp_path: Path
) -> None:
    # Given an entry point that records what the container gave it
    src = tmp_path / "src"
    src.mkdir()
    (src / "probe.py").write_text(
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('SM_')}\n"
        "out = os.path.join(os.environ['SM_MODEL_DIR'], 'probe.json')\n"
        "listing = sorted(os.listdir(os.environ['SM_CHANNEL_TRAIN']))\n"
        "json.dump({'argv': sys.argv[1:], 'env': env, 'train': listing,"
        " 'cwd': os.getcwd(), 'driftloop': os.path.isdir('driftloop')}, open(out, 'w'))\n"
    )
    hps = {"learning-rate": 0.1, "early-stopping": True, "categorical": "a,b",
           "sagemaker_program": "probe.py"}  # fmt: skip
    # When it runs as a training job with two channels
    result = local.run_training_job(
        job_name="probe-1",
        channels={
            "train": "s3://datasets/training/initial/train",
            "validation": data["validation"],
        },
        hyperparameters=hps,
        s3_client=s3,
        source_dir=src,
        entry_point="probe.py",
        work_dir=tmp_path / "work",
    )
    probe = json.loads((result.root / "model" / "probe.json").read_text())
    # Then arguments are sorted --key value pairs, JSON-decoded then str()'d, framework keys out
    assert probe["argv"] == ["--categorical", "a,b", "--early-stopping", "True",
                             "--learning-rate", "0.1"]  # fmt: skip
    env = probe["env"]
    root = result.root
    assert env["SM_MODEL_DIR"] == str(root / "model")
    assert env["SM_CHANNEL_TRAIN"] == str(root / "input" / "data" / "train")
    assert env["SM_CHANNEL_VALIDATION"] == str(root / "input" / "data" / "validation")
    assert env["SM_OUTPUT_DATA_DIR"] == str(root / "output" / "data")
    assert json.loads(env["SM_CHANNELS"]) == ["train", "validation"]
    assert json.loads(env["SM_HPS"]) == {"categorical": "a,b", "early-stopping": True,
                                         "learning-rate": 0.1}  # fmt: skip
    assert env["SM_HP_LEARNING_RATE"] == "0.1"
    # And the channel holds the S3 prefix's objects, the code dir holds driftloop
    assert probe["train"] == ["train.csv"]
    assert probe["cwd"] == str(root / "code") and probe["driftloop"] is True
    config = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    assert config["learning-rate"] == "0.1" and config["early-stopping"] == "true"


def test_a_failing_script_fails_the_job_with_its_failure_reason(tmp_path: Path) -> None:
    # Given an entry point that fails the way train.py does (failure file + stderr, exit 1)
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(
        "import os, sys\n"
        "print('some progress')\n"
        "msg = 'training failed: /x/train.csv: missing column ' + repr('debt_to_income')\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write(msg)\n"
        "print(msg, file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    # Then the job raises with that one-line reason, and the logs stay in the work dir
    with pytest.raises(DriftloopError) as info:
        local.run_training_job(
            job_name="bad-1",
            channels={"train": tmp_path / "train.csv"},
            source_dir=src,
            work_dir=tmp_path / "work",
        )
    message = str(info.value)
    assert message == (
        "training job bad-1 failed with exit code 1: "
        "training failed: /x/train.csv: missing column 'debt_to_income'"
    )
    assert "some progress" in (tmp_path / "work" / "bad-1" / "output" / "logs.txt").read_text()
    # And without a failure file the stderr tail is the reason
    (src / "train.py").write_text(
        "import sys\nprint('boom: bad thing', file=sys.stderr)\nsys.exit(3)\n"
    )
    with pytest.raises(DriftloopError, match="exit code 3: boom: bad thing"):
        local.run_training_job(job_name="bad-2", channels={"train": tmp_path / "train.csv"},
                               source_dir=src)  # fmt: skip


def test_empty_channel_fails_before_the_script_runs(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(DriftloopError, match="no S3 objects found under S3 URL"):
        local.run_training_job(
            job_name="empty-1",
            channels={"train": "s3://datasets/training/nothing-here/train"},
            s3_client=s3,
        )
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(DriftloopError, match="no files found under .*empty channel"):
        local.run_training_job(job_name="empty-2", channels={"train": empty})


def test_processing_job_request_runs_the_code_input_and_uploads_outputs(
    s3: Any, data: dict[str, Path], tmp_path: Path
) -> None:
    # Given a CreateProcessingJob request whose script arrives as the "code" input
    # (evaluate.py's real logic is tested in-process in tests/unit/test_evaluate.py)
    s3.put_object(
        Bucket="artifacts",
        Key="code/evaluate.py",
        Body=(
            b"import json, os, sys\n"
            b"root = os.environ['DRIFTLOOP_PROCESSING_ROOT']\n"
            b"inp = os.path.join(root, 'input')\n"
            b"seen = {d: sorted(os.listdir(os.path.join(inp, d)))"
            b" for d in sorted(os.listdir(inp))}\n"
            b"out = os.path.join(root, 'output', 'evaluation')\n"
            b"json.dump({'argv': sys.argv[1:], 'seen': seen},"
            b" open(os.path.join(out, 'evaluation.json'), 'w'))\n"
        ),
    )
    s3.put_object(Bucket="artifacts", Key="models/m/output/model.tar.gz", Body=b"tar")

    def inp(name: str, uri: str) -> dict[str, Any]:
        path = f"/opt/ml/processing/input/{name}"
        return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": path}}

    request = {
        "ProcessingJobName": "eval-1",
        "ProcessingInputs": [
            inp("code", "s3://artifacts/code/evaluate.py"),
            inp("challenger", "s3://artifacts/models/m/output/model.tar.gz"),
            inp("holdout", "s3://datasets/training/initial/holdout"),
        ],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "evaluation", "S3Output": {
            "S3Uri": "s3://artifacts/evaluations/run-1",
            "LocalPath": "/opt/ml/processing/output/evaluation"}}]},
        "AppSpecification": {
            "ImageUri": "sklearn",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"],
            "ContainerArguments": ["--metric", "auc"],
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }  # fmt: skip
    # When it runs locally
    result = local.run_processing_job_request(request, s3_client=s3)
    # Then the script saw its inputs where SageMaker puts them, and its output was uploaded
    body = s3.get_object(Bucket="artifacts", Key="evaluations/run-1/evaluation.json")["Body"]
    evaluation = json.loads(body.read())
    assert result.outputs["evaluation"] == "s3://artifacts/evaluations/run-1/"
    assert evaluation["argv"] == ["--metric", "auc"]
    assert evaluation["seen"] == {
        "challenger": ["model.tar.gz"], "code": ["evaluate.py"], "holdout": ["holdout.csv"],
    }  # fmt: skip


def test_processing_request_without_code_input_runs_the_repositorys_script() -> None:
    with pytest.raises(DriftloopError, match="no .py in ContainerEntrypoint"):
        local.run_processing_job_request(
            {"ProcessingJobName": "x", "AppSpecification": {"ContainerEntrypoint": ["bash"]}},
            s3_client=None,
        )
    with pytest.raises(DriftloopError, match="lacks 'ProcessingJobName'"):
        local.run_processing_job_request({"AppSpecification": {}}, s3_client=None)


def test_processing_job_with_local_paths_remaps_the_container_tree(tmp_path: Path) -> None:
    # Given a probe script that lists its inputs and writes one output file
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, os, sys\n"
        "root = os.environ['DRIFTLOOP_PROCESSING_ROOT']\n"
        "out = sys.argv[2]\n"
        "os.makedirs(out, exist_ok=True)\n"
        "seen = {d: sorted(os.listdir(os.path.join(root, 'input', d)))"
        " for d in ('champion', 'holdout')}\n"
        "json.dump({'argv': sys.argv[1:], 'seen': seen, 'root': root},"
        " open(os.path.join(out, 'probe.json'), 'w'))\n"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "holdout.csv").write_text("a\n1\n")
    # When it runs with a missing champion and a local holdout folder
    job = local.run_processing_job(
        job_name="probe-2",
        script=script,
        inputs={
            "champion": (None, "/opt/ml/processing/input/champion"),
            "holdout": (tmp_path / "data", "/opt/ml/processing/input/holdout"),
        },
        outputs={"evaluation": ("/opt/ml/processing/output/evaluation", None)},
        arguments=["--out", "/opt/ml/processing/output/evaluation", "--keep", "/elsewhere"],
        work_dir=tmp_path / "work",
    )
    # Then container paths were remapped under the job's tree and the inputs are in place
    processing = tmp_path / "work" / "probe-2" / "processing"
    out = Path(job.outputs["evaluation"])
    assert out == processing / "output" / "evaluation"
    probe = json.loads((out / "probe.json").read_text())
    assert probe["root"] == str(processing)
    assert probe["argv"] == ["--out", str(out), "--keep", "/elsewhere"]
    assert probe["seen"] == {"champion": [], "holdout": ["holdout.csv"]}


def test_a_failing_processing_script_reports_its_reason(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text(
        "import sys\nprint('evaluation failed: holdout x: no rows', file=sys.stderr)\nsys.exit(1)\n"
    )
    with pytest.raises(
        DriftloopError,
        match=r"processing job eval-3 failed .*: evaluation failed: holdout x: no rows",
    ):
        local.run_processing_job(job_name="eval-3", script=script, inputs={}, outputs={})
    with pytest.raises(DriftloopError, match="must be under /opt/ml/processing/"):
        local.run_processing_job(
            job_name="eval-4", script=script, inputs={"x": (None, "/tmp/x")}, outputs={}
        )


def test_hyperparameter_args_match_the_training_toolkit() -> None:
    args = local.hyperparameter_args(
        {"b": "2", "a": '"text"', "list": "[1, 2]", "flag": "false", "sagemaker_region": "x"}
    )
    assert args == ["-a", "text", "-b", "2", "--flag", "False", "--list", "1,2"]


def test_bad_job_names_and_uris_are_rejected() -> None:
    with pytest.raises(DriftloopError, match="not a valid SageMaker name"):
        local.run_training_job(job_name="bad name", channels={"train": "x"})
    with pytest.raises(DriftloopError, match="needs an s3 client"):
        local.run_training_job(job_name="ok", channels={"train": "s3://b/k"})
    assert FEATURES and TARGET  # the datagen layout the jobs above train on
