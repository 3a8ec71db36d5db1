"""The model-time estimate admission relies on: per batch-size bucket, interpolated and extrapolated."""

from __future__ import annotations

import pytest

from service.batch_cost import BatchCostModel, bucket_sizes


def test_buckets_are_powers_of_two_up_to_the_largest_batch():
    assert bucket_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert bucket_sizes(48) == [1, 2, 4, 8, 16, 32, 48]
    assert bucket_sizes(1) == [1]


def test_nothing_measured_prices_nothing():
    cost = BatchCostModel(64)
    assert not cost.measured
    assert cost.batch_s(10) == 0.0 and cost.queue_s(100) == 0.0


def test_a_batch_is_priced_from_its_own_bucket_then_from_its_neighbours():
    cost = BatchCostModel(64)
    cost.observe(1, 0.010)  # 10 ms a single item
    cost.observe(16, 0.040)  # 2.5 ms an item in a batch of 16
    assert cost.batch_s(1) == pytest.approx(0.010)
    assert cost.batch_s(16) == pytest.approx(0.040)
    assert cost.batch_s(12) == pytest.approx(0.030)  # bucket 16, at its time per item
    assert cost.batch_s(5) == pytest.approx(0.010 + 0.030 * (5 - 1) / 15)  # between buckets 1 and 16
    assert cost.batch_s(64) == pytest.approx(64 * 0.0025)  # beyond: the largest measured time per item


def test_a_queue_runs_in_full_batches():
    cost = BatchCostModel(8)
    cost.observe(8, 0.080)
    cost.observe(2, 0.030)
    assert cost.queue_s(18) == pytest.approx(2 * 0.080 + 0.030)
    assert cost.queue_s(0) == 0.0


def test_the_estimate_follows_recent_batches():
    cost = BatchCostModel(8)
    cost.observe(4, 0.040)
    for _ in range(50):
        cost.observe(4, 0.080)  # the machine got slower
    assert cost.batch_s(4) == pytest.approx(0.080, rel=0.01)


def test_invalid_observations_are_ignored():
    cost = BatchCostModel(8)
    cost.observe(0, 1.0)
    cost.observe(3, float("nan"))
    cost.observe(3, -1.0)
    assert not cost.measured


@pytest.mark.parametrize("max_batch_size", [1, 3, 48, 64, 100])
def test_every_batch_size_is_priced_from_the_smallest_bucket_that_holds_it(max_batch_size):
    cost = BatchCostModel(max_batch_size)
    sizes = bucket_sizes(max_batch_size)
    for k, size in enumerate(sizes):
        cost.observe(size, size * (k + 1) * 1e-3)  # a distinct time per item in every bucket
    for n in range(1, 3 * max_batch_size + 1):
        k = next((k for k, size in enumerate(sizes) if n <= size), len(sizes) - 1)
        assert cost.batch_s(n) == pytest.approx(n * (k + 1) * 1e-3)
