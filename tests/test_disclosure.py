"""Disclosure control: suppression and rounding, query-seeded noise, budgets, and the attacks
DESIGN §6 says it must defeat (differencing, averaging)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oncofed.catalog.results import CohortCounts, CohortResult, FacetBucket
from oncofed.disclosure import (
    DisclosureError,
    DisclosurePolicy,
    Protected,
    QueryBudget,
    QueryBudgetError,
    QueryNoise,
    query_key,
)
from oncofed.errors import ConfigError, ForbiddenError

SCALE = 10.0
TRIALS = 3000  # node secrets per (n, difference) in the attack tests
QUERY_A = {"modality": ["CT"], "age": [40, 70]}
QUERY_B = {"modality": ["CT"], "age": [40, 70], "collection": ["lung-1"]}  # one patient more?


def noisy(seed: int = 0) -> DisclosurePolicy:
    secret = hashlib.sha256(f"node-secret-{seed}".encode()).digest()
    return DisclosurePolicy(min_count=10, rounding=10, noise=QueryNoise(secret, SCALE, bound=50))


def result(patients: int, facets: dict[str, list[FacetBucket]] | None = None) -> CohortResult:
    counts = CohortCounts(patients, 2 * patients, 7 * patients, 300 * patients, 123_456_789)
    return CohortResult({"modality": ["CT"]}, counts, facets or {}, 1.5)


# --- suppression and rounding (no noise) -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "released"),
    [(0, "<10"), (9, "<10"), (10, 10), (14, 10), (15, 20), (26, 30), (1234, 1230)],
)
def test_small_counts_are_suppressed_and_others_rounded(value: int, released: Protected) -> None:
    assert DisclosurePolicy().protect(value) == released


def test_protect_result_without_noise_keeps_its_shape() -> None:
    facets = {"sex": [FacetBucket("F", 12, 80), FacetBucket("M", 3, 20)]}
    out = DisclosurePolicy().protect_result(result(15, facets))
    assert out["counts"] == {
        "patients": 20,
        "studies": 30,
        "series": 100,
        "instances": 4500,
        "bytes": 123_000_000,
    }
    assert out["facets"] == {"sex": [{"value": "F", "patients": 10, "series": 80}]}
    assert out["protected"] is True and out["filter"] == {"modality": ["CT"]}
    small = DisclosurePolicy().protect_totals(CohortCounts(3, 3, 9, 90, 10**9).__dict__)
    assert small["patients"] == "<10" and small["bytes"] == "<10"


# --- noise -----------------------------------------------------------------------------------


def test_noise_is_bounded_laplace_and_keyed() -> None:
    noise = QueryNoise(b"s" * 32)
    offsets = [noise.offset({"q": i}, "patients") for i in range(20_000)]
    assert min(offsets) >= -50 and max(offsets) <= 50
    assert abs(sum(offsets) / len(offsets)) < 0.3  # centred
    assert 0.045 < offsets.count(0) / len(offsets) < 0.056  # P(0) = 0.0503 for scale 10
    assert 8.5 < sum(map(abs, offsets)) / len(offsets) < 10.5  # mean |e| = 9.5
    assert set(
        Counter(QueryNoise(b"s" * 32, 2.0, 3).offset(i.to_bytes(2), "") for i in range(999))
    ) == set(range(-3, 4))
    reordered = dict(reversed(QUERY_A.items()))
    assert noise.offset(QUERY_A, "patients") == noise.offset(reordered, "patients")
    keyed = {noise.offset(q, label) for q in (b"a" * 8, b"b" * 8) for label in ("x", "y", "z")}
    assert len(keyed) > 1  # queries and labels get their own offsets
    assert "sss" not in repr(noise)
    assert query_key(b"raw") == b"raw"


def test_noise_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        QueryNoise(b"short")
    with pytest.raises(ConfigError, match="scale > 0 and bound >= 0"):
        QueryNoise(b"s" * 16, bound=-1)
    with pytest.raises(ConfigError, match="scale > 0"):
        QueryNoise(b"s" * 16, scale=0)


def test_noise_needs_the_query() -> None:
    with pytest.raises(DisclosureError, match="needs the query"):
        noisy().protect(42)


def test_noisy_suppression_uses_the_noisy_count() -> None:
    released = {noisy(seed).protect(9, query=QUERY_A, label="patients") for seed in range(200)}
    assert {"<10", 10, 20} <= released  # 9 + offset: often over the threshold
    facet = {"sex": [FacetBucket("F", 10, 10)]}
    kept = [
        bool(noisy(seed).protect_result(result(50, facet))["facets"]["sex"]) for seed in range(200)
    ]
    assert 0 < sum(kept) < 200  # facet inclusion follows the noisy count, not the true one


# --- the averaging attack --------------------------------------------------------------------


def test_averaging_attack_gets_one_value() -> None:
    """Repeating a query 1,000 times (even across restarts: a new policy object, same secret)
    yields one answer, so averaging cannot remove the noise."""
    answers = {str(noisy(seed=7).protect_result(result(123))["counts"]) for _ in range(1000)}
    assert len(answers) == 1
    reordered = CohortResult({"modality": ["CT"]}, result(123).counts)
    assert str(noisy(seed=7).protect_result(reordered)["counts"]) in answers
    others = {str(noisy(seed).protect_result(result(123))["counts"]) for seed in range(50)}
    assert len(others) > 1  # the single value is noisy: other node secrets give other values


# --- the differencing attack -----------------------------------------------------------------


def released(policy_seed: int, n: int, query: dict[str, object]) -> Protected:
    return noisy(policy_seed).protect(n, query=query, label="patients")


def attack(n: int, difference: int, with_noise: bool) -> Counter[tuple[Protected, Protected]]:
    """(answer to A, answer to B) over many node secrets, where |A| = n, |B| = n + difference."""
    if not with_noise:
        plain = DisclosurePolicy()
        return Counter({(plain.protect(n), plain.protect(n + difference)): TRIALS})
    return Counter(
        (released(seed, n, QUERY_A), released(seed, n + difference, QUERY_B))
        for seed in range(TRIALS)
    )


def total_variation(
    p: Counter[tuple[Protected, Protected]], q: Counter[tuple[Protected, Protected]]
) -> float:
    """How far apart two answer distributions are: the best attacker guesses the patient's
    membership right with probability 1/2 + TV/2."""
    total_p, total_q = p.total(), q.total()
    return sum(abs(p[k] / total_p - q[k] / total_q) for k in p.keys() | q.keys()) / 2


def differ_rate(answers: Counter[tuple[Protected, Protected]]) -> float:
    return sum(c for (a, b), c in answers.items() if a != b) / answers.total()


# n covers the suppression edge (9/10) and every rounding edge (x4/x5) up to 60.
SIZES = range(0, 60)


def test_without_noise_differencing_reveals_the_patient_at_the_edges() -> None:
    """The baseline: rounding alone leaks at its edges, e.g. 14 -> 10 but 15 -> 20."""
    revealed = [n for n in SIZES if total_variation(attack(n, 0, False), attack(n, 1, False)) == 1]
    assert revealed == [9, 14, 25, 34, 45, 54]  # halves round to even: 25 -> 20, 26 -> 30


def test_with_noise_differencing_stays_near_chance() -> None:
    """With discrete Laplace noise, shifting the true count by one moves at most P(offset = 0)
    = 0.0503 (scale 10) of the probability mass, and rounding can only shrink that. So for every
    n the best attacker's accuracy is at most 1/2 + 0.0503/2 = 0.525 (tested with a sampling
    allowance of 0.035 in TV over 3,000 node secrets per case); the naive rule "the answers
    differ, so the patient is in" gains at most 0.0503 over its false-alarm rate."""
    limit = math.tanh(1 / (2 * SCALE)) + 0.001  # P(0) of the untruncated law, plus truncation
    worst_tv = worst_gain = 0.0
    for n in SIZES:
        absent, present = attack(n, 0, True), attack(n, 1, True)
        worst_tv = max(worst_tv, total_variation(absent, present))
        worst_gain = max(worst_gain, differ_rate(present) - differ_rate(absent))
    assert worst_tv <= limit + 0.035
    assert worst_gain <= limit + 0.035
    assert 0.5 + worst_tv / 2 < 0.55  # best attacker accuracy, against 1.0 without noise


# --- budgets ---------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 1, 23, 59, 0, tzinfo=UTC))


@pytest.fixture
def budget(tmp_path: Path, clock: Clock) -> Iterator[QueryBudget]:
    with QueryBudget(tmp_path / "budget.sqlite", per_day=3, clock=clock) as opened:
        yield opened


def test_budget_refuses_the_extra_query_and_resets_next_day(
    budget: QueryBudget, clock: Clock
) -> None:
    assert [budget.charge("rita") for _ in range(3)] == [2, 1, 0]
    with pytest.raises(
        QueryBudgetError, match=r"'rita' has used all 3 .* resets at 2025-03-02 00:00 UTC"
    ):
        budget.charge("rita")
    assert budget.remaining("rita") == 0
    assert budget.charge("oscar") == 2  # per user
    clock.now += timedelta(seconds=59)  # 23:59:59, same day
    with pytest.raises(QueryBudgetError):
        budget.charge("rita")
    clock.now += timedelta(seconds=1)  # midnight UTC
    assert budget.remaining("rita") == 3
    assert budget.charge("rita") == 2


def test_budget_survives_reopen_and_is_a_forbidden_error(tmp_path: Path, clock: Clock) -> None:
    with QueryBudget(tmp_path / "b.sqlite", per_day=1, clock=clock) as first:
        first.charge("rita")
    with (
        QueryBudget(tmp_path / "b.sqlite", per_day=1, clock=clock) as reopened,
        pytest.raises(ForbiddenError) as caught,
    ):
        reopened.charge("rita")
    assert caught.value.code == "query_budget_exhausted"


def test_budget_must_allow_a_query() -> None:
    with pytest.raises(ConfigError, match="must be >= 1"):
        QueryBudget(Path("unused.sqlite"), per_day=0)
