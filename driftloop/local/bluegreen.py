"""Blue/green (canary) deployment of a new model on the laptop, as SageMaker does it.

In AWS, `UpdateEndpoint` with a `DeploymentConfig` whose `BlueGreenUpdatePolicy` has a
CANARY traffic routing configuration stands up the new (green) fleet, sends it a canary
share of the traffic for `WaitIntervalInSeconds` (the bake period) while watching the
`AutoRollbackConfiguration` CloudWatch alarms, then shifts all traffic to green — or, if
an alarm fires, sends everything back to blue. moto records the UpdateEndpoint call but
plays none of this, so the local loop does it here, reading the same DeploymentConfig
and the same alarm definitions (metric, statistic, threshold, comparison) the CDK
creates.

`BlueGreenDeployment` is a small state machine on the simulated clock: `route()` picks
blue or green for each request (a deterministic canary share: every request's share
accumulates, so 10% means exactly every tenth request), `record()` notes each green
response's outcome and latency, and `poll(now)` ends the bake when its time is up.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from driftloop.errors import DriftloopError

# SageMaker endpoint metrics the rollback alarms may watch, and how to compute them from
# what the local router observes. SageMaker reports latencies in microseconds.
ERROR_METRICS = ("Invocation5XXErrors", "Invocation4XXErrors", "InvocationModelErrors")
LATENCY_METRICS = ("ModelLatency", "OverheadLatency")
COMPARISONS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass(frozen=True)
class RollbackAlarm:
    """One CloudWatch alarm of the AutoRollbackConfiguration, evaluated on green's traffic."""

    name: str
    metric: str
    threshold: float
    comparison: str = "GreaterThanThreshold"
    statistic: str = "Sum"  # Sum | Average | Maximum | pNN (ExtendedStatistic)

    def __post_init__(self) -> None:
        if self.metric not in ERROR_METRICS + LATENCY_METRICS:
            raise DriftloopError(
                f"blue/green: alarm {self.name} watches {self.metric}, which the local "
                f"router cannot measure (known: {', '.join(ERROR_METRICS + LATENCY_METRICS)})"
            )
        if self.comparison not in COMPARISONS:
            raise DriftloopError(
                f"blue/green: alarm {self.name}: unknown comparison {self.comparison}"
            )

    @classmethod
    def from_cloudwatch(cls, alarm: dict[str, Any]) -> RollbackAlarm:
        """From a DescribeAlarms `MetricAlarms` entry (or the CFN AWS::CloudWatch::Alarm props)."""
        try:
            return cls(
                name=str(alarm.get("AlarmName") or alarm.get("name") or "alarm"),
                metric=str(alarm["MetricName"]),
                threshold=float(alarm["Threshold"]),
                comparison=str(alarm.get("ComparisonOperator", "GreaterThanThreshold")),
                statistic=str(alarm.get("ExtendedStatistic") or alarm.get("Statistic") or "Sum"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftloopError(f"blue/green: cannot read alarm {alarm!r} ({exc})") from exc

    def value(self, stats: FleetStats) -> float | None:
        """The alarm's statistic over green's requests (None = no data, which never breaches)."""
        if self.metric in ERROR_METRICS:
            if stats.requests == 0:
                return None
            errors = float(stats.errors)
            return errors / stats.requests if self.statistic == "Average" else errors
        samples = sorted(us for us in stats.latencies_us)
        if not samples:
            return None
        if self.statistic == "Average":
            return sum(samples) / len(samples)
        if self.statistic == "Maximum":
            return samples[-1]
        if self.statistic.startswith("p"):
            q = float(self.statistic[1:]) / 100.0
            return samples[min(len(samples) - 1, max(0, math.ceil(q * len(samples)) - 1))]
        return sum(samples)

    def breached(self, stats: FleetStats) -> bool:
        value = self.value(stats)
        return value is not None and COMPARISONS[self.comparison](value, self.threshold)


@dataclass(frozen=True)
class CanaryPolicy:
    """The parts of an UpdateEndpoint DeploymentConfig the local emulation obeys."""

    canary_percent: float
    bake: timedelta
    termination_wait: timedelta = timedelta(0)
    max_duration: timedelta = timedelta(hours=1)
    alarm_names: tuple[str, ...] = ()

    @classmethod
    def from_deployment_config(cls, config: dict[str, Any]) -> CanaryPolicy:
        """Read `BlueGreenUpdatePolicy` + `AutoRollbackConfiguration` (SageMaker API shape).

        ALL_AT_ONCE is a canary of 100%; LINEAR is played as its first step (the first
        LinearStepSize share, baked for WaitIntervalInSeconds) followed by the full shift.
        """
        try:
            policy = config["BlueGreenUpdatePolicy"]
            routing = policy["TrafficRoutingConfiguration"]
            kind = routing["Type"]
            wait = timedelta(seconds=int(routing.get("WaitIntervalInSeconds", 0)))
            if kind == "ALL_AT_ONCE":
                share = 100.0
            else:
                size = routing["CanarySize" if kind == "CANARY" else "LinearStepSize"]
                if size["Type"] != "CAPACITY_PERCENT":
                    # INSTANCE_COUNT: one local "instance" is all there is, so report the
                    # share as a count of 1 out of the fleet the config names.
                    share = 100.0 / max(int(size["Value"]), 1)
                else:
                    share = float(size["Value"])
            alarms = config.get("AutoRollbackConfiguration", {}).get("Alarms", [])
            return cls(
                canary_percent=share,
                bake=wait,
                termination_wait=timedelta(seconds=int(policy.get("TerminationWaitInSeconds", 0))),
                max_duration=timedelta(
                    seconds=int(policy.get("MaximumExecutionTimeoutInSeconds", 3600))
                ),
                alarm_names=tuple(str(a["AlarmName"]) for a in alarms),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftloopError(
                f"blue/green: DeploymentConfig lacks or mangles {exc} (got {config!r})"
            ) from exc


@dataclass
class FleetStats:
    """What the router saw one fleet do."""

    requests: int = 0
    errors: int = 0
    latencies_us: list[float] = field(default_factory=list)

    def add(self, ok: bool, latency_ms: float) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        self.latencies_us.append(latency_ms * 1000.0)


class BlueGreenDeployment:
    """One canary deployment from `blue` to `green` (names of the serving models)."""

    def __init__(
        self,
        *,
        blue: str,
        green: str,
        policy: CanaryPolicy,
        alarms: list[RollbackAlarm],
        started: datetime,
    ) -> None:
        if not 0.0 < policy.canary_percent <= 100.0:
            raise DriftloopError(
                f"blue/green: canary share {policy.canary_percent}% is not in (0, 100]"
            )
        self.blue, self.green = blue, green
        self.policy = policy
        self.alarms = alarms
        self.started = started
        self.status = "baking"  # -> "shifted" | "rolled_back"
        self.finished: datetime | None = None
        self.reason = ""
        self.stats = {blue: FleetStats(), green: FleetStats()}
        self._credit = 0.0

    @property
    def done(self) -> bool:
        return self.status != "baking"

    @property
    def serving(self) -> str:
        """The model that takes all traffic once the deployment ends (blue while baking)."""
        return self.green if self.status == "shifted" else self.blue

    def route(self) -> str:
        """The model for the next request."""
        if self.status == "shifted":
            return self.green
        if self.status == "rolled_back":
            return self.blue
        self._credit += self.policy.canary_percent / 100.0
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return self.green
        return self.blue

    def record(self, model: str, ok: bool, latency_ms: float) -> None:
        if model in self.stats and not self.done:
            self.stats[model].add(ok, latency_ms)

    def breached(self) -> list[str]:
        """Names of the alarms green's canary traffic sets off so far."""
        return [a.name for a in self.alarms if a.breached(self.stats[self.green])]

    def poll(self, now: datetime) -> str:
        """Advance the deployment to `now`; returns the status.

        An alarm rolls back at once (as SageMaker does while baking); otherwise the bake
        ends after `policy.bake` with a full shift to green.
        """
        if self.done:
            return self.status
        fired = self.breached()
        if fired:
            self._finish(now, "rolled_back", f"alarm(s) {', '.join(fired)} fired during the bake")
        elif now - self.started >= self.policy.bake:
            green = self.stats[self.green]
            self._finish(
                now,
                "shifted",
                f"baked {self.policy.bake} with {green.requests} canary "
                f"request{'' if green.requests == 1 else 's'}, no alarm",
            )
        elif now - self.started >= self.policy.max_duration:
            self._finish(now, "rolled_back", "the deployment ran past its maximum duration")
        return self.status

    def _finish(self, now: datetime, status: str, reason: str) -> None:
        self.status, self.finished, self.reason = status, now, reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "blue": self.blue,
            "green": self.green,
            "status": self.status,
            "reason": self.reason,
            "canary_percent": self.policy.canary_percent,
            "bake_seconds": self.policy.bake.total_seconds(),
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "canary_requests": self.stats[self.green].requests,
            "canary_errors": self.stats[self.green].errors,
            "alarms": [a.name for a in self.alarms],
        }


# ---------------------------------------------------------------------------------------
# SageMaker's UpdateEndpoint on moto
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateRequest:
    """One UpdateEndpoint call the deploy step made."""

    endpoint: str
    old_config: str
    new_config: str
    deployment_config: dict[str, Any]


class SageMakerDeploymentEngine:
    """Plays SageMaker's side of UpdateEndpoint on the in-process moto server.

    moto records endpoints but has no UpdateEndpoint. `install()` adds it to moto's
    SageMaker API: the call is validated like SageMaker does (endpoint and config must
    exist), the endpoint goes to `Updating` and the request is queued here. The local
    loop then runs the blue/green deployment (`BlueGreenDeployment`) on the simulated
    clock and calls `finish()`, which leaves the endpoint `InService` on the new config
    (shifted) or on the old one (rolled back) — exactly what DescribeEndpoint shows in
    AWS after a canary deployment, and what the workflow's CheckDeployment step reads.
    """

    def __init__(self) -> None:
        self.requests: list[UpdateRequest] = []
        self._lock = threading.Lock()
        self._backend: Any = None
        self._original: Any = None

    def install(self, account: str, region: str) -> None:
        from moto.core.responses import ActionResult
        from moto.sagemaker.models import sagemaker_backends
        from moto.sagemaker.responses import SageMakerResponse

        engine = self
        self._backend = sagemaker_backends[account][region]

        def update_endpoint(response: Any) -> Any:
            name = response._get_param("EndpointName")
            config = response._get_param("EndpointConfigName")
            backend = response.sagemaker_backend
            endpoint = backend.endpoints.get(name)
            if endpoint is None:
                from moto.sagemaker.exceptions import ValidationError

                raise ValidationError(message=f"Could not find endpoint '{name}'.")
            backend.describe_endpoint_config(config)  # ValidationError if it does not exist
            if endpoint.endpoint_status != "InService":
                from moto.sagemaker.exceptions import ValidationError

                raise ValidationError(
                    message=f"Cannot update in-progress endpoint '{endpoint.arn}'."
                )
            with engine._lock:
                engine.requests.append(
                    UpdateRequest(
                        name,
                        endpoint.endpoint_config_name,
                        config,
                        response._get_param("DeploymentConfig") or {},
                    )
                )
            endpoint.endpoint_status = "Updating"
            return ActionResult({"EndpointArn": endpoint.arn})

        self._original = getattr(SageMakerResponse, "update_endpoint", None)
        SageMakerResponse.update_endpoint = update_endpoint  # type: ignore[attr-defined]

    def uninstall(self) -> None:
        from moto.sagemaker.responses import SageMakerResponse

        if self._original is None:
            if hasattr(SageMakerResponse, "update_endpoint"):
                del SageMakerResponse.update_endpoint
        else:
            SageMakerResponse.update_endpoint = self._original  # type: ignore[attr-defined]

    def take(self) -> list[UpdateRequest]:
        """The update requests made since the last call."""
        with self._lock:
            out, self.requests = self.requests, []
        return out

    def finish(self, request: UpdateRequest, shifted: bool) -> None:
        """End a deployment: InService on the new config (shifted) or the old one."""
        endpoint = self._backend.endpoints[request.endpoint]
        config_name = request.new_config if shifted else request.old_config
        config = self._backend.describe_endpoint_config(config_name)
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config["ProductionVariants"]
        )
        endpoint.data_capture_config = config.get("DataCaptureConfig")
        endpoint.endpoint_status = "InService"
