"""ingest.registration: the token buckets and the cap on quarantined devices, with time passed in."""

from __future__ import annotations

from ingest.registration import CAP_CAUSE, MAX_IDLE_BUCKETS, RATE_CAUSE, AutoRegistration, TokenBuckets


def test_a_bucket_holds_per_min_tokens_and_refills_at_that_rate() -> None:
    buckets = TokenBuckets(per_min=3)
    assert [buckets.take("gw1", 0) for _ in range(4)] == [True, True, True, False]
    assert buckets.take("gw2", 0)  # another origin has its own bucket
    assert not buckets.take("gw1", 19_999)  # one token takes 20 s to come back
    assert buckets.take("gw1", 20_000)
    assert not buckets.take("gw1", 20_000)
    assert [buckets.take("gw1", 10 * 60_000) for _ in range(4)] == [True, True, True, False]  # never above 3


def test_full_buckets_are_forgotten_when_many_origins_came_and_went() -> None:
    buckets = TokenBuckets(per_min=60)
    for i in range(MAX_IDLE_BUCKETS):
        assert buckets.take(f"gw{i}", 0)
    assert buckets.take("late", 60_000)  # every earlier bucket has refilled: none is kept
    assert set(buckets.buckets) == {"late"}


def test_refusals_name_the_rate_limit_then_the_cap() -> None:
    quarantined = [0]
    bounds = AutoRegistration(per_min=2, cap=3, count_quarantined=lambda: quarantined[0])
    assert bounds.refusal("d1", "gw1", 0) is None
    assert bounds.refusal("d2", "gw1", 0) is None
    refused = bounds.refusal("d3", "gw1", 0)
    assert refused is not None and refused.cause == RATE_CAUSE
    assert refused.reason.startswith("自动注册超出速率限制 (auto-registration rate limit)") and "d3" in refused.reason
    assert bounds.refusal("d4", "gw2", 0) is None  # 3 quarantined now, counted without a recount
    refused = bounds.refusal("d5", "gw2", 0)
    assert refused is not None and refused.cause == CAP_CAUSE
    assert refused.reason.startswith("自动注册已达上限 (auto-registration cap)")
    quarantined[0] = 1  # an operator registered two of them: the next recount sees it
    assert bounds.refusal("d6", "gw3", 1000) is None
