"""The test order under pytest-xdist: each worker's share starts with its slow tests."""
from tests import conftest


def test_each_share_starts_with_every_nth_slow_test_and_keeps_all_tests():
  items = [f"t{i}" for i in range(11)]
  slow = {"t3", "t7", "t8", "t10"}
  order = conftest.slow_first_order(items, slow.__contains__, 2)
  assert sorted(order) == sorted(items)
  assert conftest._share_sizes(11, 2) == [5, 6]
  first, second = order[:5], order[5:]
  assert first[:2] == ["t3", "t8"] and second[:2] == ["t7", "t10"]
  assert [t for t in order if t not in slow] == [t for t in items if t not in slow]


def test_one_worker_runs_the_slow_tests_first():
  items = ["a", "b", "c"]
  assert conftest.slow_first_order(items, "c".__eq__, 1) == ["c", "a", "b"]
