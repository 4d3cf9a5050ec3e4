"""SageMaker training and processing jobs on a laptop: the script-mode contract, no Docker.

The retraining workflow's Train and Evaluate steps are SageMaker jobs in AWS. Locally the
same scripts (training/train.py, training/evaluate.py) run as subprocesses under the
contract the prebuilt scikit-learn container gives them, so what passes here runs there:

- an /opt/ml-style tree in a scratch folder: input/data/{channel}/ (channels downloaded
  from S3 through the client passed in, or copied from local paths),
  input/config/{hyperparameters,inputdataconfig,resourceconfig}.json, model/,
  output/data/, and code/ (the source dir: training/*.py and the driftloop package);
- the SM_* environment (SM_MODEL_DIR, SM_CHANNELS, SM_CHANNEL_<NAME>, SM_HPS,
  SM_HP_<NAME>, SM_OUTPUT_DATA_DIR, SM_OUTPUT_DIR, ...);
- hyperparameters as `--key value` arguments, in the training toolkit's way: sorted by
  key, values JSON-decoded then str()'d (so true -> "True"), sagemaker_* keys left out;
- the model dir packed as model.tar.gz (its contents at the archive root) and uploaded
  to `{output_s3_uri}/{job_name}/output/model.tar.gz`, with output/data as
  output.tar.gz next to it. train.py itself puts code/inference.py into the model dir,
  exactly as it must in AWS, where SageMaker tars SM_MODEL_DIR unchanged.

A failing script raises DriftloopError carrying its failure file or stderr tail. Both
runners also take the CreateTrainingJob / CreateProcessingJob request shapes, so the
local workflow can hand them what Step Functions would hand SageMaker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.errors import DriftloopError

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = REPO_ROOT / "training"
DRIFTLOOP_DIR = REPO_ROOT / "driftloop"
PROCESSING_ROOT = "/opt/ml/processing"
# Environment variable the local processing runner sets so scripts find their remapped
# /opt/ml/processing tree (training/evaluate.py reads it; in AWS it is unset).
PROCESSING_ROOT_ENV = "DRIFTLOOP_PROCESSING_ROOT"
STDERR_TAIL_LINES = 20
# The metric definitions the training job declares (name -> regex with one group).
DEFAULT_METRIC_DEFINITIONS: dict[str, str] = {
    "validation:auc": r"validation:auc=([0-9.eE+-]+);",
    "validation:accuracy": r"validation:accuracy=([0-9.eE+-]+);",
    "validation:f1": r"validation:f1=([0-9.eE+-]+);",
    "validation:log_loss": r"validation:log_loss=([0-9.eE+-]+);",
    "train:auc": r"train:auc=([0-9.eE+-]+);",
}


@dataclass
class JobResult:
    """What a finished local job leaves behind."""

    job_name: str
    root: Path  # the /opt/ml tree: under work_dir, or a temporary folder already deleted
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    model_data_url: str | None = None  # s3://.../model.tar.gz (training jobs)
    model_tar: Path | None = None  # local copy of model.tar.gz (training jobs)
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> where it went


# --------------------------------------------------------------------------- S3 and paths


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/prefix` -> ("bucket", "key/prefix")."""
    if not uri.startswith("s3://"):
        raise DriftloopError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise DriftloopError(f"S3 URI without a bucket: {uri!r}")
    return bucket, key


def _require_client(s3_client: Any, uri: str) -> Any:
    if s3_client is None:
        raise DriftloopError(f"{uri}: an S3 URI needs an s3 client (pass s3_client=)")
    return s3_client


def download_s3(uri: str, dest: Path, s3_client: Any) -> int:
    """Copy an S3 object, or every object under a prefix, into `dest`; returns the count.

    Like SageMaker's S3Prefix data source: keys keep their path below the prefix. No
    object at all is an error (SageMaker fails the job the same way).
    """
    client = _require_client(s3_client, uri)
    bucket, prefix = split_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", ()) if not obj["Key"].endswith("/"))
    if not keys:
        raise DriftloopError(f"no S3 objects found under S3 URL {uri!r}")
    for key in keys:
        # SageMaker strips the prefix: s3://b/data/train + data/train/a.csv -> a.csv; a URI
        # naming one object keeps that object's file name.
        relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
        target = (dest / relative).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise DriftloopError(f"s3://{bucket}/{key}: key escapes the channel folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
    return len(keys)


def fetch(source: str | Path, dest: Path, s3_client: Any) -> None:
    """An S3 URI or a local file/folder into the folder `dest`."""
    if isinstance(source, str) and source.startswith("s3://"):
        download_s3(source, dest, s3_client)
        return
    path = Path(source)
    if path.is_dir():
        if not any(p.is_file() for p in path.rglob("*")):
            raise DriftloopError(f"no files found under {path} (an empty channel)")
        shutil.copytree(path, dest, dirs_exist_ok=True)
    elif path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / path.name)
    else:
        raise DriftloopError(f"{path}: no such file or directory")


def upload(local: Path, uri: str, s3_client: Any) -> str:
    bucket, key = split_s3_uri(uri)
    _require_client(s3_client, uri).upload_file(str(local), bucket, key)
    return uri


def pack_tar(folder: Path, tar_path: Path) -> Path:
    """Tar+gzip `folder`'s contents at the archive root, in sorted order."""
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return tar_path


def extract_tar(tar_path: Path, dest: Path) -> Path:
    """Extract a model tarball, refusing links and members that would leave `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                target = (root / member.name).resolve()
                if member.issym() or member.islnk() or not target.is_relative_to(root):
                    raise DriftloopError(f"{tar_path}: unsafe member {member.name!r}")
            # Members are checked above; the "data" filter (Python 3.11.4+) also drops
            # special files and unsafe modes.
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DriftloopError(f"{tar_path}: not a readable model tarball ({exc})") from exc
    return dest


def _copy_source(code_dir: Path, source_dir: Path, include_driftloop: bool) -> None:
    """The submit directory: source_dir's top-level *.py (+ requirements.txt) and driftloop/."""
    code_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(source_dir.iterdir()):
        if path.is_file() and (path.suffix == ".py" or path.name == "requirements.txt"):
            shutil.copy2(path, code_dir / path.name)
    if include_driftloop:
        shutil.copytree(
            DRIFTLOOP_DIR,
            code_dir / "driftloop",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "local"),
        )


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def parse_metrics(log: str, definitions: Mapping[str, str]) -> dict[str, float]:
    """The last value each metric regex finds in the log (as SageMaker's metric scraper)."""
    found: dict[str, float] = {}
    for name, pattern in definitions.items():
        matches = re.findall(pattern, log)
        if matches:
            try:
                found[name] = float(matches[-1])
            except ValueError:
                continue
    return found


# --------------------------------------------------------------------------- hyperparameters


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _arg_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def hyperparameter_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """`--key value` pairs the way the SageMaker training toolkit builds them."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        if key.startswith("sagemaker_"):
            continue  # framework parameters (sagemaker_program, ...), not script arguments
        args += [
            f"--{key}" if len(key) > 1 else f"-{key}",
            _arg_value(_decode(hyperparameters[key])),
        ]
    return args


def _api_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    # The CreateTrainingJob API holds strings only; the SDK JSON-encodes non-strings.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}


# --------------------------------------------------------------------------- training


def _training_env(
    root: Path,
    job_name: str,
    channels: Sequence[str],
    hyperparameters: Mapping[str, str],
    entry_point: str,
    user_args: list[str],
) -> dict[str, str]:
    decoded = {k: _decode(v) for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    env = {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_DATA_DIR": str(root / "input" / "data"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(root / "output" / "intermediate"),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(decoded, sort_keys=True),
        "SM_USER_ARGS": json.dumps(user_args),
        "SM_USER_ENTRY_POINT": entry_point,
        "SM_MODULE_NAME": Path(entry_point).stem,
        "SM_MODULE_DIR": str(root / "code"),
        "SM_FRAMEWORK_MODULE": "sagemaker_sklearn_container.training:main",
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_NETWORK_INTERFACE_NAME": "lo",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_LOG_LEVEL": "20",
        "SM_TRAINING_JOB_NAME": job_name,
        "TRAINING_JOB_NAME": job_name,
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = str(root / "input" / "data" / name)
    for key, value in decoded.items():
        env[f"SM_HP_{key.upper().replace('-', '_')}"] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    return env


def _run(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float | None,
    what: str,
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DriftloopError(
            f"{what}: stopped after {timeout:.0f} s (MaxRuntimeInSeconds)"
        ) from exc


def _failure(what: str, result: subprocess.CompletedProcess[str], failure_file: Path) -> str:
    reason = failure_file.read_text().strip() if failure_file.is_file() else ""
    tail = _tail(result.stderr) or _tail(result.stdout)
    detail = reason or tail or "no output"
    return f"{what} failed with exit code {result.returncode}: {detail}"


def _scratch(work_dir: Path | None, job_name: str) -> Path:
    if work_dir is None:
        return Path(tempfile.mkdtemp(prefix=f"{job_name}-"))
    root = work_dir / job_name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return root


def run_training_job(
    *,
    job_name: str,
    channels: Mapping[str, str | Path],
    hyperparameters: Mapping[str, Any] | None = None,
    output_s3_uri: str | None = None,
    s3_client: Any = None,
    source_dir: Path = TRAINING_DIR,
    entry_point: str = "train.py",
    work_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 3600.0,
    metric_definitions: Mapping[str, str] = DEFAULT_METRIC_DEFINITIONS,
    python: str = sys.executable,
) -> JobResult:
    """Run a script-mode training job; returns where model.tar.gz went and the metrics.

    `channels` maps channel names (train, validation, ...) to S3 URIs or local paths.
    With `output_s3_uri` the tarball is uploaded to
    `{output_s3_uri}/{job_name}/output/model.tar.gz`. With `work_dir` the job's tree is
    kept in `work_dir/job_name` (and `result.model_tar` is the local tarball); without it
    a temporary tree is used and deleted. `env` adds variables to the job's environment.
    """
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", job_name):
        raise DriftloopError(f"training job name {job_name!r} is not a valid SageMaker name")
    if not channels:
        raise DriftloopError(f"training job {job_name}: no input channels")
    hps = _api_hyperparameters(hyperparameters or {})
    root = _scratch(work_dir, job_name)
    started = time.perf_counter()
    try:
        config = root / "input" / "config"
        config.mkdir(parents=True)
        for sub in ("model", "output/data", "output/intermediate"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(hps, indent=1))
        (config / "inputdataconfig.json").write_text(
            json.dumps({name: {"TrainingInputMode": "File"} for name in channels})
        )
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )
        for name, source in channels.items():
            fetch(source, root / "input" / "data" / name, s3_client)
        _copy_source(root / "code", source_dir, include_driftloop=True)

        user_args = hyperparameter_args(hps)
        job_env = {**os.environ, **(env or {})}
        job_env.update(_training_env(root, job_name, list(channels), hps, entry_point, user_args))
        job_env["PYTHONPATH"] = str(root / "code")
        command = [python, entry_point, *user_args]
        what = f"training job {job_name}"
        result = _run(command, cwd=root / "code", env=job_env, timeout=timeout, what=what)
        (root / "output" / "logs.txt").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise DriftloopError(_failure(what, result, root / "output" / "failure"))

        model_tar = pack_tar(root / "model", root / "output" / "model.tar.gz")
        output_tar = pack_tar(root / "output" / "data", root / "output" / "output.tar.gz")
        job = JobResult(
            job_name=job_name,
            root=root,
            exit_code=0,
            stdout=result.stdout,
            stderr=result.stderr,
            seconds=time.perf_counter() - started,
            metrics=parse_metrics(result.stdout + result.stderr, metric_definitions),
            model_tar=model_tar if work_dir is not None else None,
        )
        if output_s3_uri:
            base = f"{output_s3_uri.rstrip('/')}/{job_name}/output"
            job.model_data_url = upload(model_tar, f"{base}/model.tar.gz", s3_client)
            job.outputs["output"] = upload(output_tar, f"{base}/output.tar.gz", s3_client)
        return job
    finally:
        if work_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def run_training_job_request(
    request: Mapping[str, Any], *, s3_client: Any, **kwargs: Any
) -> JobResult:
    """Run a CreateTrainingJob request (the shape Step Functions passes) locally.

    Reads TrainingJobName, HyperParameters, InputDataConfig (S3DataSource.S3Uri per
    channel) and OutputDataConfig.S3OutputPath; `kwargs` go to run_training_job.
    """
    try:
        channels = {
            c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in request["InputDataConfig"]
        }
        job_name = request["TrainingJobName"]
        output = request["OutputDataConfig"]["S3OutputPath"]
    except (KeyError, TypeError) as exc:
        raise DriftloopError(f"CreateTrainingJob request lacks {exc}") from exc
    hps = dict(request.get("HyperParameters") or {})
    timeout = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if timeout is not None:
        kwargs.setdefault("timeout", float(timeout))
    return run_training_job(
        job_name=job_name,
        channels=channels,
        hyperparameters=hps,
        output_s3_uri=output,
        s3_client=s3_client,
        **kwargs,
    )


# --------------------------------------------------------------------------- processing


def _local_path(container_path: str, root: Path) -> Path:
    if not container_path.startswith(PROCESSING_ROOT + "/"):
        raise DriftloopError(f"processing path {container_path!r} must be under {PROCESSING_ROOT}/")
    return root / container_path[len(PROCESSING_ROOT) + 1 :]


def _remap(arg: str, root: Path) -> str:
    return str(root) + arg[len(PROCESSING_ROOT) :] if arg.startswith(PROCESSING_ROOT) else arg


def run_processing_job(
    *,
    job_name: str,
    inputs: Mapping[str, tuple[str | Path | None, str]],
    outputs: Mapping[str, tuple[str, str | None]],
    script: Path | None = None,
    entrypoint: Sequence[str] = (),
    arguments: Sequence[str] = (),
    s3_client: Any = None,
    work_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 3600.0,
    python: str = sys.executable,
) -> JobResult:
    """Run a processing script under a local /opt/ml/processing tree.

    `inputs`: name -> (S3 URI, local path or None, container path under
    /opt/ml/processing/); None leaves the folder empty (e.g. no champion yet).
    `outputs`: name -> (container path, S3 URI prefix or None); every file an output
    folder holds is uploaded under its prefix. The script is `script` (copied to
    /opt/ml/processing/input/code/) or else the last `.py` of `entrypoint`, which an
    input (named "code" in SageMaker's convention) must have brought. Container paths in
    `arguments` are remapped to the local tree, and DRIFTLOOP_PROCESSING_ROOT tells the
    script where that tree is.
    """
    root = _scratch(work_dir, job_name)
    processing = root / "processing"
    started = time.perf_counter()
    try:
        for name, (source, container_path) in inputs.items():
            dest = _local_path(container_path, processing)
            dest.mkdir(parents=True, exist_ok=True)
            if source is None:
                continue
            try:
                fetch(source, dest, s3_client)
            except DriftloopError as exc:
                raise DriftloopError(f"processing job {job_name}, input {name}: {exc}") from exc
        if script is not None:
            code = processing / "input" / "code"
            code.mkdir(parents=True, exist_ok=True)
            shutil.copy2(script, code / script.name)
            script_path = code / script.name
        else:
            entry = [a for a in entrypoint if a.endswith(".py")]
            if not entry:
                raise DriftloopError(f"processing job {job_name}: no script and no .py entrypoint")
            script_path = _local_path(entry[-1], processing)
            if not script_path.is_file():
                raise DriftloopError(f"processing job {job_name}: {entry[-1]} was not provided")
        for container_path, _ in outputs.values():
            _local_path(container_path, processing).mkdir(parents=True, exist_ok=True)

        job_env = {**os.environ, **(env or {}), PROCESSING_ROOT_ENV: str(processing)}
        job_env["PYTHONPATH"] = str(script_path.parent)
        command = [python, str(script_path), *(_remap(a, processing) for a in arguments)]
        what = f"processing job {job_name}"
        result = _run(command, cwd=script_path.parent, env=job_env, timeout=timeout, what=what)
        (root / "logs.txt").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise DriftloopError(_failure(what, result, root / "failure"))
        job = JobResult(
            job_name=job_name,
            root=root,
            exit_code=0,
            stdout=result.stdout,
            stderr=result.stderr,
            seconds=time.perf_counter() - started,
        )
        for name, (container_path, destination) in outputs.items():
            folder = _local_path(container_path, processing)
            if destination is None:
                job.outputs[name] = str(folder)
                continue
            prefix = destination.rstrip("/")
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                upload(path, f"{prefix}/{path.relative_to(folder).as_posix()}", s3_client)
            job.outputs[name] = prefix + "/"
        return job
    finally:
        if work_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def run_processing_job_request(
    request: Mapping[str, Any], *, s3_client: Any, script: Path | None = None, **kwargs: Any
) -> JobResult:
    """Run a CreateProcessingJob request locally.

    Reads ProcessingJobName, ProcessingInputs (S3Input.S3Uri -> S3Input.LocalPath),
    ProcessingOutputConfig.Outputs (S3Output.LocalPath -> S3Output.S3Uri) and
    AppSpecification (ContainerEntrypoint, ContainerArguments). Without a code input the
    script defaults to training/<name of the entrypoint's .py>.
    """
    try:
        job_name = request["ProcessingJobName"]
        app = request["AppSpecification"]
        inputs: dict[str, tuple[str | Path | None, str]] = {
            item["InputName"]: (item["S3Input"]["S3Uri"], item["S3Input"]["LocalPath"])
            for item in request.get("ProcessingInputs", ())
        }
        outputs = {
            item["OutputName"]: (item["S3Output"]["LocalPath"], item["S3Output"]["S3Uri"])
            for item in (request.get("ProcessingOutputConfig") or {}).get("Outputs", ())
        }
    except (KeyError, TypeError) as exc:
        raise DriftloopError(f"CreateProcessingJob request lacks {exc}") from exc
    entrypoint = list(app.get("ContainerEntrypoint") or ())
    has_code = any(path.startswith(f"{PROCESSING_ROOT}/input/code") for _, path in inputs.values())
    if script is None and not has_code:
        names = [a for a in entrypoint if a.endswith(".py")]
        if not names:
            raise DriftloopError("CreateProcessingJob request: no .py in ContainerEntrypoint")
        script = TRAINING_DIR / Path(names[-1]).name
    timeout = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if timeout is not None:
        kwargs.setdefault("timeout", float(timeout))
    return run_processing_job(
        job_name=job_name,
        inputs=inputs,
        outputs=outputs,
        script=script,
        entrypoint=entrypoint,
        arguments=list(app.get("ContainerArguments") or ()),
        s3_client=s3_client,
        **kwargs,
    )
