"""The champion/challenger gate: deploy only a strictly better challenger."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.errors import DriftloopError
from driftloop.gate import decide, higher_is_better


def test_better_challenger_by_the_margin_is_deployed() -> None:
    # Given a champion AUC of 0.80 and a challenger of 0.83, margin required 0.01
    d = decide(
        {"auc": 0.80}, {"auc": 0.83}, metric="auc", higher_is_better=True, min_improvement=0.01
    )
    # Then the challenger is deployed and the margin is recorded
    assert d.deploy is True
    assert d.margin == pytest.approx(0.03)
    assert d.to_dict()["champion"] == 0.80 and d.to_dict()["challenger"] == 0.83


def test_improvement_below_the_margin_keeps_the_champion() -> None:
    d = decide(
        {"auc": 0.80}, {"auc": 0.805}, metric="auc", higher_is_better=True, min_improvement=0.01
    )
    assert d.deploy is False
    assert "below the required" in d.reason


def test_equal_metric_with_zero_margin_keeps_the_champion() -> None:
    # Given a tie and no required margin: "strictly better" is not met
    d = decide({"auc": 0.8}, {"auc": 0.8}, metric="auc", higher_is_better=True, min_improvement=0.0)
    assert d.deploy is False


def test_lower_is_better_metric() -> None:
    # Given RMSE, where a smaller error is better
    better = decide(
        {"rmse": 2.0}, {"rmse": 1.5}, metric="rmse", higher_is_better=False, min_improvement=0.1
    )
    worse = decide(
        {"rmse": 2.0}, {"rmse": 2.5}, metric="rmse", higher_is_better=False, min_improvement=0.0
    )
    assert better.deploy is True and better.margin == pytest.approx(0.5)
    assert worse.deploy is False and worse.margin == pytest.approx(-0.5)


def test_no_champion_deploys_a_valid_challenger() -> None:
    d = decide(None, {"auc": 0.6}, metric="auc", higher_is_better=True, min_improvement=0.05)
    assert d.deploy is True and d.champion is None and "no champion" in d.reason


@pytest.mark.parametrize(
    "challenger",
    [{}, {"auc": math.nan}, {"auc": math.inf}, {"auc": "0.9"}, {"auc": None}, None, {"auc": True}],
)
def test_missing_or_invalid_challenger_metric_never_deploys(challenger: dict | None) -> None:
    # Given a challenger without a usable metric, with or without a champion
    for champion in ({"auc": 0.1}, None):
        d = decide(champion, challenger, metric="auc", higher_is_better=True, min_improvement=0.0)
        # Then the challenger is never deployed
        assert d.deploy is False
        assert "challenger auc is missing or not finite" in d.reason


@pytest.mark.parametrize("champion", [{}, {"auc": math.nan}, {"f1": 0.9}])
def test_champion_without_the_metric_is_kept(champion: dict) -> None:
    d = decide(champion, {"auc": 0.99}, metric="auc", higher_is_better=True, min_improvement=0.0)
    assert d.deploy is False and "cannot compare" in d.reason


def test_overflowing_margin_keeps_the_champion() -> None:
    d = decide(
        {"auc": -1e308}, {"auc": 1e308}, metric="auc", higher_is_better=True, min_improvement=0.0
    )
    assert d.deploy is False


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf, "a lot"])
def test_bad_min_improvement_is_a_clear_error(bad: object) -> None:
    with pytest.raises(DriftloopError, match="min_improvement"):
        decide({"auc": 0.1}, {"auc": 0.2}, metric="auc", higher_is_better=True, min_improvement=bad)  # type: ignore[arg-type]


def test_metric_direction_by_name() -> None:
    assert higher_is_better("auc") and higher_is_better("f1") and higher_is_better("r2")
    assert not higher_is_better("rmse") and not higher_is_better("MAE")


metric_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.none(),
    st.integers(min_value=-10, max_value=10),
)


@settings(max_examples=400, deadline=None)
@given(
    champion=metric_value,
    challenger=metric_value,
    hib=st.booleans(),
    min_improvement=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_never_deploys_a_challenger_that_is_not_strictly_better(
    champion: float | None,
    challenger: float | None,
    hib: bool,
    min_improvement: float,
) -> None:
    # Given random metric pairs (including NaN, infinities and missing values)
    champ = {} if champion is None else {"m": champion}
    chall = {} if challenger is None else {"m": challenger}
    # When the gate decides
    d = decide(champ, chall, metric="m", higher_is_better=hib, min_improvement=min_improvement)
    # Then a deployment implies both finite and the challenger strictly better by the margin
    if d.deploy:
        assert champion is not None and challenger is not None
        assert math.isfinite(champion) and math.isfinite(challenger)
        gain = challenger - champion if hib else champion - challenger
        assert gain > 0
        assert gain >= min_improvement
    # And a finite, strictly better challenger by the margin is deployed
    if (
        champion is not None
        and challenger is not None
        and math.isfinite(champion)
        and math.isfinite(challenger)
    ):
        gain = challenger - champion if hib else champion - challenger
        if math.isfinite(gain) and gain > 0 and gain >= min_improvement:
            assert d.deploy
