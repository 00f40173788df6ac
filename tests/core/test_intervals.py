"""Interval arithmetic, checked against plain Python sets."""

from hypothesis import given
from hypothesis import strategies as st

from ipamd.core import intervals as iv

small_intervals = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 30)).map(lambda p: (p[0], p[0] + p[1])), max_size=8
)


def as_set(intervals):
    return {value for first, last in intervals for value in range(first, last + 1)}


@given(small_intervals)
def test_normalize_is_sorted_disjoint_and_same_set(intervals):
    result = iv.normalize(intervals)
    assert as_set(result) == as_set(intervals)
    assert all(a[1] + 1 < b[0] for a, b in zip(result, result[1:]))


@given(small_intervals, small_intervals)
def test_subtract_matches_set_difference(base, removed):
    assert as_set(iv.subtract(base, removed)) == as_set(base) - as_set(removed)


@given(small_intervals, small_intervals)
def test_intersect_matches_set_intersection(left, right):
    assert as_set(iv.intersect(left, right)) == as_set(left) & as_set(right)


@given(small_intervals, st.integers(0, 300))
def test_nth_walks_the_set_in_order(intervals, index):
    ordered = sorted(as_set(intervals))
    expected = ordered[index] if index < len(ordered) else None
    assert iv.nth(iv.normalize(intervals), index) == expected


def test_size_of_an_ipv6_slash_64_is_exact():
    first = 0x20010DB8000000000000000000000000
    assert iv.size([(first + 1, first + 2**64 - 1)]) == 2**64 - 1
