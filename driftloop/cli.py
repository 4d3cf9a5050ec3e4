"""The `driftloop` command: baselines, drift and quality checks on files, and the loop's status.

It runs the checks the scheduled Lambdas run, on a laptop or in CI, against local
files: a training table becomes a baseline; capture files (or tables) are profiled
on the baseline's bins, merged and compared; ground truth is joined to captured
predictions. The exit code is the verdict, so a shell script or a CI step can gate
on it:

    0  no drift / quality not degraded / not enough data for a verdict
    1  drift found / quality degraded
    2  bad input or usage: one line on stderr naming the file (and line), no traceback

Malformed records inside otherwise readable files are not errors: they are counted,
skipped, reported (`n_malformed` in the JSON report) and summarised on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from driftloop.errors import DriftloopError, MalformedLog

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_BAD_INPUT = 2

TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})
CAPTURE_SUFFIXES = frozenset({".jsonl", ".json"})
MAX_LISTED = 10


# --------------------------------------------------------------------------- helpers


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _read_json_file(path: Path, what: str) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DriftloopError(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise DriftloopError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DriftloopError(f"{path}: {what} is not valid JSON ({exc})") from exc


def _load_baseline(path: str) -> Any:
    from driftloop.profile import DatasetProfile

    return DatasetProfile.load(path)


def _expand(paths: Sequence[str], allowed: frozenset[str], what: str) -> list[Path]:
    """Files as given (checked for a known suffix); folders walked for ``*.jsonl``, sorted."""
    from driftloop.capture import iter_capture_paths

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(iter_capture_paths(path))
        elif not path.exists():
            raise DriftloopError(f"{path}: no such file or folder")
        elif path.suffix.lower() not in allowed:
            kinds = ", ".join(sorted(allowed))
            raise DriftloopError(f"{path}: unsupported {what} file type (expected {kinds})")
        else:
            files.append(path)
    return files


def _print_malformed(log: MalformedLog, out: TextIO) -> None:
    if log.total:
        reasons = ", ".join(f"{k}={v:,}" for k, v in sorted(log.by_reason.items()))
        print(f"skipped: {log.total:,} malformed record(s) ({reasons})", file=out)
        for example in log.examples[:3]:
            print(f"  e.g. {example}", file=out)


def _write_outputs(
    args: argparse.Namespace, report: dict[str, Any], html: Callable[[], str]
) -> list[str]:
    """Write the requested reports; the lines that say where (printed after the verdict)."""
    from driftloop.report import write_json_report, write_text_report

    lines = []
    if args.json:
        lines.append(f"json report: {write_json_report(report, args.json)}")
    if args.html:
        lines.append(f"html report: {write_text_report(html(), args.html)}")
    return lines


# --------------------------------------------------------------------------- baseline


def _cmd_baseline(args: argparse.Namespace, out: TextIO) -> int:
    from driftloop import profile as prof

    if args.from_model_monitor and args.train:
        raise DriftloopError("baseline: give a training table or --from-model-monitor, not both")
    malformed = MalformedLog()
    if args.from_model_monitor:
        baseline = _baseline_from_model_monitor(Path(args.from_model_monitor), args)
        source = args.from_model_monitor
    elif args.train:
        baseline, malformed = _baseline_from_table(Path(args.train), args)
        source = args.train
    else:
        raise DriftloopError(
            "baseline: give a training table (.csv/.parquet) or --from-model-monitor"
        )
    if args.metrics:
        metrics = _read_json_file(Path(args.metrics), "metrics file")
        if not isinstance(metrics, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise DriftloopError(f"{args.metrics}: metrics must be a JSON object of numbers")
        baseline.metrics.update({str(k): float(v) for k, v in metrics.items()})
    baseline.save(args.out)
    print(
        f"baseline: {baseline.n_rows:,} rows, {len(baseline.features)} features "
        f"({len(baseline.schema.categorical)} categorical) from {source} -> {args.out}",
        file=out,
    )
    if baseline.predictions is not None:
        print("predictions: profiled (prediction drift will be checked)", file=out)
    if baseline.metrics:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(baseline.metrics.items()))
        print(f"metrics: {shown}", file=out)
    _print_malformed(malformed, out)
    if args.model_monitor_dir:
        from driftloop.report import write_json_report

        mm = Path(args.model_monitor_dir)
        stats = write_json_report(
            prof.to_model_monitor_statistics(baseline), mm / "statistics.json"
        )
        cons = write_json_report(
            prof.to_model_monitor_constraints(baseline), mm / "constraints.json"
        )
        print(f"model monitor: {stats}, {cons}", file=out)
    return EXIT_OK


def _baseline_from_model_monitor(path: Path, args: argparse.Namespace) -> Any:
    from driftloop.profile import from_model_monitor_statistics
    from driftloop.schema import Schema

    stats = _read_json_file(path, "Model Monitor statistics")
    schema = None
    if args.categorical or args.target or args.problem != "binary":
        features = stats.get("features") if isinstance(stats, dict) else None
        if not isinstance(features, list):
            raise DriftloopError(
                f"{path}: not a Model Monitor statistics document (no features list)"
            )
        names = [str(f.get("name")) for f in features if isinstance(f, dict)]
        categorical = _split(args.categorical) or [
            str(f.get("name"))
            for f in features
            if isinstance(f, dict) and f.get("inferred_type") == "String"
        ]
        schema = Schema(
            features=tuple(n for n in names if n != args.target),
            categorical=frozenset(c for c in categorical if c != args.target),
            target=args.target,
            problem=args.problem,
        )
    return from_model_monitor_statistics(stats, schema, where=str(path))


def _target_values(values: Any, path: Path, column: str, problem: str) -> Any:
    """The target column (read as text) as float64; NaN where empty. Bad labels stop the work."""
    import numpy as np

    out = np.full(len(values), np.nan)
    for i, v in enumerate(values.tolist()):
        if v is None or str(v).strip() == "":
            continue
        text = str(v).strip().lower()
        if problem == "binary" and text in ("true", "false"):
            out[i] = 1.0 if text == "true" else 0.0
            continue
        try:
            out[i] = float(text)
        except ValueError:
            raise DriftloopError(
                f"{path}: target {column!r} holds {str(v)[:40]!r}, not a number"
            ) from None
    finite = out[np.isfinite(out)]
    if problem == "binary" and not np.isin(finite, (0.0, 1.0)).all():
        bad = finite[~np.isin(finite, (0.0, 1.0))][0]
        raise DriftloopError(f"{path}: binary target {column!r} must be 0 or 1, found {bad:g}")
    return out


def _baseline_from_table(path: Path, args: argparse.Namespace) -> Any:
    import numpy as np

    from driftloop import tables
    from driftloop.profile import build_baseline
    from driftloop.quality import classification_metrics, regression_metrics
    from driftloop.schema import Schema

    if not path.exists():
        raise DriftloopError(f"{path}: no such file")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DriftloopError(f"{path}: a training table must be .csv or .parquet")
    with_metrics = bool(args.target and args.predictions)
    schema = tables.infer_schema(
        path,
        target=args.target,
        categorical=_split(args.categorical) or None,
        exclude=[args.predictions] if args.predictions else (),
        problem=args.problem,
    )
    # The model's scores are read as one more numeric column and become the profile's
    # predictions; the target (only needed for metrics) is read as text so that a label
    # like "yes" gives a clear error instead of dropping every row as unparseable.
    extra = tuple(c for c in (args.predictions, args.target if with_metrics else None) if c)
    reading = Schema(
        features=(*schema.features, *extra),
        categorical=schema.categorical | ({args.target} if with_metrics else set()),
    )
    malformed = MalformedLog()
    batches = []
    targets: list[np.ndarray] = []
    for batch in tables.read_table(path, schema=reading, malformed=malformed, name=str(path)):
        if args.predictions:
            batch.predictions = batch.columns.pop(args.predictions)
        if with_metrics:
            targets.append(batch.columns.pop(args.target))
        batches.append(batch)
    if sum(b.n_rows for b in batches) == 0:
        detail = (
            f" ({malformed.total:,} malformed, e.g. {malformed.examples[0]})"
            if malformed.total
            else ""
        )
        raise DriftloopError(f"{path}: no usable rows{detail}")
    metrics: dict[str, float] = {}
    if with_metrics:
        y = _target_values(np.concatenate(targets), path, args.target, schema.problem)
        score = np.concatenate([b.predictions for b in batches])
        ok = np.isfinite(y) & np.isfinite(score)
        if schema.problem == "regression":
            metrics = regression_metrics(y[ok], score[ok])
        else:
            metrics = classification_metrics(y[ok], score[ok])
        metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    baseline = build_baseline(batches, schema, n_bins=args.bins, top_k=args.top_k, metrics=metrics)
    baseline.n_malformed = malformed.total
    return baseline, malformed


# --------------------------------------------------------------------------- drift


def _drift_config(args: argparse.Namespace) -> Any:
    from driftloop.drift import DriftConfig

    settings: dict[str, Any] = {}
    where = "drift config"
    if args.config:
        where = str(args.config)
        loaded = _read_json_file(Path(args.config), "drift config")
        if not isinstance(loaded, dict):
            raise DriftloopError(f"{args.config}: drift config must be a JSON object")
        settings.update(loaded)
    if args.critical:
        settings["critical_features"] = _split(args.critical)
    return DriftConfig.from_dict(settings, where=where)


def _cmd_drift(args: argparse.Namespace, out: TextIO) -> int:
    from driftloop.drift import check_sources
    from driftloop.report import render_html

    config = _drift_config(args)
    baseline = _load_baseline(args.baseline)
    unknown = sorted(set(config.critical_features) - set(baseline.schema.features))
    if unknown:  # checked before reading any data, which may take a while
        where = "--critical" if args.critical else args.config
        raise DriftloopError(
            f"{where}: critical features not in the baseline {args.baseline}: {unknown}"
        )
    files = _expand(args.current, TABLE_SUFFIXES | CAPTURE_SUFFIXES, "input")
    log = MalformedLog()
    result, current = check_sources(baseline, files, config, malformed=log)
    report = result.to_dict()
    report.update(
        {"malformed": log.to_dict(), "sources": list(args.current), "n_files": len(files)}
    )
    written = _write_outputs(
        args,
        report,
        lambda: render_html(
            report, baseline, current, title=args.title or "driftloop drift report"
        ),
    )
    _print_drift_summary(report, len(files), log, out)
    print(*written, sep="\n", file=out, end="\n" if written else "")
    return EXIT_FOUND if report["dataset_drift"] else EXIT_OK


def _print_drift_summary(
    report: dict[str, Any], n_files: int, log: MalformedLog, out: TextIO
) -> None:
    if report["status"] == "insufficient_data":
        verdict = "INSUFFICIENT DATA"
    else:
        verdict = "DRIFT" if report["dataset_drift"] else "NO DRIFT"
    print(f"{verdict}: {report['reason']}", file=out)
    print(
        f"rows: {report['n_rows']:,} from {n_files} file(s) "
        f"(baseline {report['n_baseline_rows']:,}); malformed: {report['n_malformed']:,}",
        file=out,
    )
    _print_malformed(log, out)
    if report["missing_features"]:
        print(f"absent from the input: {', '.join(report['missing_features'])}", file=out)
    drifted = [(n, report["features"][n]) for n in report["drifted_features"]]
    pred = report.get("prediction_drift")
    if pred and pred.get("drift"):
        counted = report.get("config", {}).get("count_prediction_drift", False)
        drifted.append(("(model output)" if counted else "(model output, not in verdict)", pred))
    for name, f in drifted[:MAX_LISTED]:
        score = "n/a" if f["score"] is None else f"{f['score']:.4g}"
        why = ", ".join(f["reasons"])
        print(
            f"  {name}: {f['method']} {score} (threshold {f['threshold']:g}, "
            f"p_adj {f['p_value_adjusted']:.3g}; {why})",
            file=out,
        )
    if len(drifted) > MAX_LISTED:
        print(f"  ... and {len(drifted) - MAX_LISTED} more (see the JSON report)", file=out)


# --------------------------------------------------------------------------- quality


def _quality_config(args: argparse.Namespace, problem: str) -> Any:
    from driftloop.quality import QualityConfig

    settings: dict[str, Any] = {}
    where = "quality config"
    if args.config:
        where = str(args.config)
        loaded = _read_json_file(Path(args.config), "quality config")
        if not isinstance(loaded, dict):
            raise DriftloopError(f"{args.config}: quality config must be a JSON object")
        settings.update(loaded)
    settings.setdefault("problem", problem)
    for key in ("metric", "max_drop", "min_labels", "threshold"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    return QualityConfig.from_dict(settings, where=where)


def _capture_batches(files: list[Path], schema: Any, log: MalformedLog) -> Iterator[Any]:
    from driftloop.capture import read_capture

    for file in files:
        yield from read_capture(file, schema=schema, malformed=log, name=str(file))


def _cmd_quality(args: argparse.Namespace, out: TextIO) -> int:
    from driftloop.quality import (
        check_quality,
        join_predictions,
        predictions_by_id,
        read_ground_truth,
    )
    from driftloop.report import render_quality_html

    baseline = _load_baseline(args.baseline)
    config = _quality_config(args, baseline.schema.problem)
    capture_files = _expand(args.capture, CAPTURE_SUFFIXES, "capture")
    label_files = _expand(args.ground_truth, CAPTURE_SUFFIXES, "ground truth")
    log = MalformedLog()
    predictions = predictions_by_id(_capture_batches(capture_files, baseline.schema, log), log)
    labels: dict[str, float] = {}
    for file in label_files:
        read_ground_truth(file, log, str(file), labels=labels)
    joined = join_predictions(predictions, labels)
    try:
        result = check_quality(baseline.metrics, joined, config, malformed=log)
    except DriftloopError as exc:
        raise DriftloopError(f"{args.baseline}: {exc}") from exc
    report = result.to_dict()
    report.update(
        {
            "sources": {"capture": list(args.capture), "ground_truth": list(args.ground_truth)},
            "n_capture_files": len(capture_files),
            "n_label_files": len(label_files),
        }
    )
    written = _write_outputs(
        args,
        report,
        lambda: render_quality_html(report, title=args.title or "driftloop quality report"),
    )
    if report["status"] == "insufficient_data":
        verdict = "INSUFFICIENT DATA"
    else:
        verdict = "DEGRADED" if report["degraded"] else "OK"
    print(f"{verdict}: {report['reason']}", file=out)
    print(
        f"labels: {report['n_matched']:,} matched, {report['n_unmatched_labels']:,} without a "
        f"prediction; predictions without a label: {report['n_unlabelled']:,}; "
        f"invalid pairs: {report['n_invalid']:,}; malformed: {report['n_malformed']:,}",
        file=out,
    )
    _print_malformed(result.malformed, out)
    for name, m in report["metrics"].items():
        current, base, drop = m["current"], m["baseline"], m["drop"]
        if base is None and name != report["metric"]:
            continue
        mark = " <- watched" if name == report["metric"] else ""
        print(
            f"  {name}: {_num(current)} (baseline {_num(base)}, drop {_num(drop)}){mark}",
            file=out,
        )
    print(*written, sep="\n", file=out, end="\n" if written else "")
    return EXIT_FOUND if report["degraded"] else EXIT_OK


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


# --------------------------------------------------------------------------- runs / status


def _ops_call(args: argparse.Namespace, call: Callable[[dict[str, Any]], Any]) -> Any:
    """Run an ops query; an AWS failure becomes one line naming where it went."""
    from driftloop import ops

    try:
        clients = ops.clients(endpoint_url=args.endpoint_url, region=args.region)
        return call(clients)
    except DriftloopError:
        raise
    except Exception as exc:
        # botocore's errors (no credentials, no region, connection refused, AccessDenied,
        # missing table or bucket) are the user's environment, not a driftloop bug.
        if not type(exc).__module__.startswith(("botocore", "boto3", "urllib3")):
            raise
        where = args.endpoint_url or "AWS"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DriftloopError(f"{where}: {first}") from exc


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _cell(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    from driftloop import ops

    runs = _ops_call(args, lambda c: ops.list_runs(c["sagemaker"], args.model_package_group))
    if args.limit is not None:
        runs = runs[: args.limit]
    if args.json:
        print(orjson.dumps(runs, option=orjson.OPT_INDENT_2).decode(), file=out)
        return EXIT_OK
    if not runs:
        print(f"no retraining runs in model package group {args.model_package_group}", file=out)
        return EXIT_OK
    header = [
        "version",
        "created",
        "approval",
        "decision",
        "metric",
        "challenger",
        "champion",
        "margin",
        "run_id",
    ]
    rows = [
        [
            _cell(r.get("version")),
            _cell(r.get("created_at"))[:19],
            _cell(r.get("approval")),
            _cell(r.get("decision")),
            _cell(r.get("metric")),
            _cell(r.get("challenger")),
            _cell(r.get("champion")),
            _cell(r.get("margin")),
            _cell(r.get("run_id")),
        ]
        for r in runs
    ]
    print(_table(rows, header), file=out)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from driftloop import ops

    st = _ops_call(
        args,
        lambda c: ops.status(
            c["sagemaker"],
            c["s3"],
            c["dynamodb"],
            endpoint=args.endpoint,
            state_table=args.state_table,
            reports_bucket=args.reports_bucket,
            model_package_group=args.model_package_group,
        ),
    )
    if args.json:
        print(orjson.dumps(st, option=orjson.OPT_INDENT_2).decode(), file=out)
        return EXIT_OK
    serving = st.get("serving") or {}
    package = serving.get("model_package") or {}
    rows = [
        ["endpoint", f"{st.get('endpoint')} ({_cell(serving.get('status'))})"],
        ["model", _cell(serving.get("model_name"))],
        ["model data", _cell(serving.get("model_data_url"))],
        [
            "registry version",
            _cell(package.get("version"))
            + (f" ({package.get('approval')}, run {package.get('run_id')})" if package else ""),
        ],
        ["data capture", "on" if serving.get("data_capture") else "off"],
    ]
    if serving.get("failure_reason"):
        rows.append(["failure", str(serving["failure_reason"])])
    for kind in ("drift", "quality"):
        info = st.get(kind) or {}
        last = info.get("last") or {}
        if not last:
            verdict = "no report yet"
        elif last.get("status") == "insufficient_data":
            verdict = "insufficient data"
        elif kind == "drift":
            drifted = ", ".join(last.get("drifted_features") or [])
            verdict = f"DRIFT ({drifted})" if last.get("dataset_drift") else "no drift"
        else:
            verdict = (
                f"{'DEGRADED' if last.get('degraded') else 'ok'}: "
                f"{last.get('metric')}={_cell(last.get('value'))} (drop {_cell(last.get('drop'))})"
            )
        window = f" in [{last.get('window_start')}, {last.get('window_end')})" if last else ""
        rows.append(
            [
                f"{kind} check",
                f"checked until {_cell(info.get('checked_until'))}; last: {verdict}{window}",
            ]
        )
        if last.get("report_uri"):
            rows.append(["", str(last["report_uri"])])
    lock = st.get("last_retraining")
    if lock:
        rows.append(
            [
                "last retraining",
                f"started {_cell(lock.get('started_at'))}, "
                f"execution {_cell(lock.get('execution_arn'))}",
            ]
        )
    else:
        rows.append(["last retraining", "none"])
    print(_table(rows, ["", ""]).split("\n", 1)[1], file=out)
    return EXIT_OK


def _add_aws_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint-url",
        default=os.environ.get("DRIFTLOOP_ENDPOINT_URL"),
        help="AWS API endpoint, e.g. http://127.0.0.1:PORT for the local moto server "
        "(default: $DRIFTLOOP_ENDPOINT_URL, else AWS)",
    )
    p.add_argument("--region", help="AWS region (default: the boto3 configuration)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from driftloop import __version__
    from driftloop.profile import DEFAULT_BINS, DEFAULT_TOP_K

    parser = argparse.ArgumentParser(
        prog="driftloop",
        description="Drift and model-quality checks for SageMaker endpoints, "
        "and the loop around them.",
        epilog="Exit codes: 0 fine (or not enough data), 1 drift found / quality degraded, "
        "2 bad input or usage.",
    )
    parser.add_argument("--version", action="version", version=f"driftloop {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show a traceback on unexpected errors (for bug reports)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "baseline",
        help="build a baseline profile from a training table",
        description="Profile a training table (CSV with a header, or parquet) into baseline.json: "
        "bin edges and counts per numeric feature, top categories per categorical one.",
    )
    b.add_argument("train", nargs="?", help="training table (.csv or .parquet)")
    b.add_argument("--out", required=True, help="where to write the baseline (baseline.json)")
    b.add_argument("--target", help="the label column (left out of the features)")
    b.add_argument("--categorical", help="comma-separated categorical columns (default: inferred)")
    b.add_argument(
        "--predictions",
        help="a column of model scores: profiled for prediction drift, and "
        "with --target used to compute the baseline metrics the quality check compares with",
    )
    b.add_argument("--problem", choices=("binary", "regression"), default="binary")
    b.add_argument("--metrics", help='JSON object of baseline metrics, e.g. {"auc": 0.91}')
    b.add_argument(
        "--bins",
        type=int,
        default=DEFAULT_BINS,
        help=f"bins per numeric feature (default {DEFAULT_BINS})",
    )
    b.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"categories kept by name (default {DEFAULT_TOP_K})",
    )
    b.add_argument(
        "--model-monitor-dir",
        help="also write Model Monitor statistics.json and constraints.json here",
    )
    b.add_argument(
        "--from-model-monitor",
        metavar="STATISTICS_JSON",
        help="build the baseline from a Model Monitor statistics.json instead of a table",
    )
    b.set_defaults(handler=_cmd_baseline)

    d = sub.add_parser(
        "drift",
        help="compare data with a baseline",
        description="Profile CURRENT on the baseline's bins (capture .jsonl files, folders of "
        "them, or .csv/.parquet tables with a header), merge, and compare. "
        "Exit 1 when drift is found.",
    )
    d.add_argument("--baseline", required=True, help="baseline.json from `driftloop baseline`")
    d.add_argument("current", nargs="+", metavar="CURRENT", help="capture files, folders or tables")
    d.add_argument("--json", help="write the JSON report here")
    d.add_argument("--html", help="write the HTML report here")
    d.add_argument("--config", help="JSON file of DriftConfig settings")
    d.add_argument("--critical", help="comma-separated features whose drift alone is drift")
    d.add_argument("--title", help="title of the HTML report")
    d.set_defaults(handler=_cmd_drift)

    q = sub.add_parser(
        "quality",
        help="join ground truth to captured predictions and compare metrics with the baseline",
        description="Ground truth in the SageMaker merge format is joined to captured predictions "
        "by inferenceId (else eventId). "
        "Exit 1 when the watched metric dropped by more than max_drop.",
    )
    q.add_argument("--baseline", required=True, help="baseline.json holding the baseline metrics")
    q.add_argument("--capture", nargs="+", required=True, help="capture .jsonl files or folders")
    q.add_argument(
        "--ground-truth", nargs="+", required=True, help="ground-truth .jsonl files or folders"
    )
    q.add_argument("--config", help="JSON file of QualityConfig settings")
    q.add_argument("--metric", help="metric to watch (default auc / rmse)")
    q.add_argument("--max-drop", type=float, help="largest tolerated absolute drop (default 0.05)")
    q.add_argument(
        "--min-labels", type=int, help="fewer matched labels -> insufficient data (default 100)"
    )
    q.add_argument("--threshold", type=float, help="binary decision threshold (default 0.5)")
    q.add_argument("--json", help="write the JSON report here")
    q.add_argument("--html", help="write the HTML report here")
    q.add_argument("--title", help="title of the HTML report")
    q.set_defaults(handler=_cmd_quality)

    r = sub.add_parser(
        "runs",
        help="list retraining runs (the model registry)",
        description="Every retraining run recorded in the model package group, newest first, "
        "with the gate's decision and the metrics behind it.",
    )
    r.add_argument("--model-package-group", required=True, help="the model package group")
    r.add_argument("--limit", type=int, help="show only the newest N runs")
    _add_aws_options(r)
    r.set_defaults(handler=_cmd_runs)

    st = sub.add_parser(
        "status",
        help="what serves now, and the checks' last verdicts",
        description="The endpoint's serving model (and its registry version), the drift and "
        "quality checkpoints with their last verdicts, and the last retraining.",
    )
    st.add_argument("--endpoint", required=True, help="the SageMaker endpoint name")
    st.add_argument("--state-table", required=True, help="the DynamoDB state table")
    st.add_argument("--reports-bucket", required=True, help="the reports bucket")
    st.add_argument("--model-package-group", help="match the serving model to a registry version")
    _add_aws_options(st)
    st.set_defaults(handler=_cmd_status)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are 2, --help / --version 0
        return int(exc.code) if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return int(args.handler(args, out))
    except DriftloopError as exc:
        print(f"driftloop: error: {exc}", file=err)
    except OSError as exc:
        where = exc.filename or "input"
        print(f"driftloop: error: {where}: {exc.strerror or exc}", file=err)
    except KeyboardInterrupt:
        print("driftloop: interrupted", file=err)
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        if args.debug or os.environ.get("DRIFTLOOP_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"driftloop: error: {args.command}: unexpected {type(exc).__name__}: {first} "
            "(rerun with --debug for a traceback)",
            file=err,
        )
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
