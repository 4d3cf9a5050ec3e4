"""The local closed loop end to end, on a shortened timeline (5 simulated days, onset on day 2).

One run of `driftloop.local.loop` (moto on 127.0.0.1, the CDK's templates, the real
handlers, training and inference code) is shared by the tests below; each asserts one
promise of the loop from what the run left behind (metrics.json and the bucket mirror).
Budget: one run of about a minute on an idle 2-core machine (two under load), plus the
CDK synthesis the first time (cached under build/demo-cdk/).
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from driftloop.local.loop import DemoOptions, DemoRun, main_path
from driftloop.local.progress import Progress

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.xdist_group("closed-loop"),
    # moto's CloudFormation warns for the bucket policies it does not play; Powertools
    # for handlers that publish no metric in a run. Both are expected here.
    pytest.mark.filterwarnings("ignore:Tried to parse .* but it.s not supported by moto"),
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

DAYS, ONSET_DAY = 5, 2
# The retrained model's AUC on live traffic must come back to within this much of the
# seed model's AUC before the drift (measured on the same kind of windows).
QUALITY_MARGIN = 0.03
# ... and the drift must really have hurt the old model, or the swap proves nothing.
MIN_DECAY = 0.03


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("closed-loop") / "demo"
    options = DemoOptions(days=DAYS, onset_day=ONSET_DAY, out=out, quiet=True, min_days=DAYS)
    metrics = DemoRun(options, Progress(io.StringIO(), quiet=True)).run()
    return metrics, out


@pytest.fixture(scope="module")
def metrics(run: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    return run[0]


def _period(metrics: dict[str, Any]) -> timedelta:
    expression = metrics["resources"]["schedules"]["lambdas.drift_check.handler"]
    value, unit = expression[len("rate(") : -1].split()
    return timedelta(**{unit if unit.endswith("s") else unit + "s": int(value)})


def test_no_drift_verdicts_before_onset(metrics: dict[str, Any]) -> None:
    # Given the windows of traffic that closed before the world changed (the first
    # scheduled run also checks the empty window before the endpoint existed)
    onset, start = _t(metrics["onset"]), _t(metrics["start"])
    before = [w for w in metrics["windows"] if _t(w["end"]) <= onset and _t(w["start"]) >= start]
    # Then there are several of them, all checked with enough rows, and none drifted
    assert len(before) >= 4
    assert all(w["status"] == "ok" for w in before)
    assert [w["start"] for w in metrics["windows"] if w["drifted"] and _t(w["end"]) <= onset] == []


def test_drift_found_within_two_schedule_periods_after_onset(metrics: dict[str, Any]) -> None:
    # Given the onset and the drift check's schedule
    onset = _t(metrics["onset"])
    period = _period(metrics)
    # When the first drift verdict was reached
    found = [e for e in metrics["events"] if e["kind"] == "drift"]
    assert found, "no drift was found at all"
    # Then it came after the onset and within two schedule periods of it
    assert onset < _t(found[0]["time"]) <= onset + 2 * period
    first_drifted = next(w for w in metrics["windows"] if w["drifted"])
    assert _t(first_drifted["start"]) >= onset


def test_exactly_one_retraining_per_drift_episode(metrics: dict[str, Any]) -> None:
    # Given one drift episode (the world changes once and stays changed)
    drift_events = [t for t in metrics["triggers"] if t["detail_type"] == "Drift Detected"]
    assert drift_events, "the episode should raise an event"
    # Then exactly one retraining started; every other event (late quality verdicts on
    # the old model's traffic) met the cooldown lock
    assert len(metrics["retrainings"]) == 1
    statuses = [t["status"] for t in metrics["triggers"]]
    assert statuses.count("started") == 1
    assert set(statuses) - {"started"} <= {"cooldown", "already_running"}


def test_no_drift_verdicts_after_the_swap(metrics: dict[str, Any]) -> None:
    # Given the windows that started after the retrained model took all traffic (the
    # window of the swap itself still holds the old world's last hours)
    swaps = [_t(m["from"]) for m in metrics["models"][1:]]
    assert len(swaps) == 1
    after = [w for w in metrics["windows"] if _t(w["start"]) >= swaps[0] and w["status"] == "ok"]
    assert len(after) >= 2
    # Then none drifted: the new model's baseline is the recent (drifted) traffic it was
    # trained to serve, not its mostly pre-drift training set
    assert [w["start"] for w in after if w["drifted"]] == []


def test_challenger_deployed_only_when_it_beats_the_champion(
    run: tuple[dict[str, Any], Path],
) -> None:
    metrics, out = run
    for retraining in metrics["retrainings"]:
        decision = retraining["decision"]
        # Given the evaluation the Evaluate job wrote (read back from the bucket mirror)
        key = retraining["evaluation_uri"].split("/", 3)[3]
        evaluation = json.loads(
            (out / "buckets" / "artifacts" / key / "evaluation.json").read_text()
        )
        champion = evaluation["champion"]["auc"]
        challenger = evaluation["challenger"]["auc"]
        beats = challenger - champion > decision["min_improvement"]
        # Then the gate's decision is exactly "the challenger beats the champion"
        assert decision["deploy"] is beats
        # And a deployment happened for this run if and only if the gate said so
        deployed = [d for d in metrics["deployments"] if d["green"] == retraining["model_name"]]
        assert bool(deployed) is beats
    # And the story's retraining did beat the decayed champion
    assert metrics["retrainings"][0]["decision"]["deploy"] is True
    assert [d["status"] for d in metrics["deployments"]] == ["shifted"]


def test_model_quality_after_the_swap_is_back_within_the_margin(metrics: dict[str, Any]) -> None:
    summary = metrics["summary"]
    before, decayed, after = (
        summary["AUC before drift"],
        summary["AUC after onset"],
        summary["AUC after swap"],
    )
    # Given the AUC from late labels before the drift, after it, and after the swap
    assert None not in (before, decayed, after)
    # Then the drift hurt the old model, and the new one is back near the old level
    assert decayed < before - MIN_DECAY
    assert after >= before - QUALITY_MARGIN
    # And the swap happened after the drift and before the end
    swaps = [m["from"] for m in metrics["models"][1:]]
    assert len(swaps) == 1 and metrics["onset"] < swaps[0] < metrics["end"]


def test_every_request_is_captured_once_and_checked_once(metrics: dict[str, Any]) -> None:
    counts = metrics["counts"]
    # Given what the loop sent over HTTP
    sent, rows = counts["requests_sent"], counts["rows_sent"]
    assert sent == metrics["scenario"]["requests/day"] * DAYS and counts["request_errors"] == 0
    # Then the capture holds exactly one record per request, with the eventIds it returned
    assert counts["captured_records"] == sent
    assert counts["captured_unique_event_ids"] == sent
    assert counts["sent_event_ids_captured"] == sent
    assert counts["captured_rows"] == rows
    # And the drift check looked at every captured row once, each window once
    assert counts["rows_checked"] == rows
    assert counts["windows_checked_once"] is True
    starts = [w["start"] for w in metrics["windows"]]
    assert starts == sorted(set(starts))
    quality = [q["start"] for q in metrics["quality"]]
    assert quality == sorted(set(quality))
    # And every label went up once, in the merge format
    assert counts["labels_uploaded"] == rows


def test_local_step_sequence_is_the_state_machine_definition(metrics: dict[str, Any]) -> None:
    from lambdas.retrain_steps import RETRAIN_STEPS

    definition = metrics["resources"]["state_machine_definition"]
    assert definition, "the synthesized app has no retraining state machine"
    states = definition["States"]
    # Given the definition the CDK synthesized, its success path is RETRAIN_STEPS
    assert [s for s in main_path(definition) if s in RETRAIN_STEPS] == list(RETRAIN_STEPS)
    # When the loop ran a retraining, every transition it took is one the definition has
    executed = metrics["retrainings"][0]["steps"]
    assert executed[0] == definition["StartAt"]
    for a, b in zip(executed, executed[1:], strict=False):
        state = states[a]
        allowed = {state.get("Next"), state.get("Default")}
        allowed |= {c["Next"] for c in state.get("Choices", [])}
        allowed |= {c["Next"] for c in state.get("Catch", [])}
        assert b in allowed, f"{a} -> {b} is not a transition of the definition"
    # And with the deployment's wait loop folded, the run is the workflow's step sequence
    folded: list[str] = []
    for name in executed:
        if name in RETRAIN_STEPS and name not in folded:
            folded.append(name)
    assert folded == list(RETRAIN_STEPS)
    assert states[executed[-1]].get("End") or states[executed[-1]]["Type"] == "Succeed"
