"""distillab.metrics: pass@k, mean pass@1 ± s.e., lengths and per-group tables.

Every expected number below is computed by hand in the comment next to it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from distillab.metrics import (by_group, length_stats, mean_and_stderr, mean_pass_at_1,
                               pass_at_k, pass_at_k_table)

T, F = True, False


# --- pass_at_k ---------------------------------------------------------------------------

@pytest.mark.parametrize("k, expected", [
    (1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
    (2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
    (4, 1.0),  # C(3,4) = 0: every 4 of 5 samples include a correct one
    (5, 1.0),
])
def test_pass_at_k_n5_c2_by_hand(k: int, expected: float) -> None:
    assert pass_at_k(5, 2, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n, k", [(1, 1), (5, 1), (5, 3), (64, 1), (64, 64)])
def test_pass_at_k_no_correct_is_zero_all_correct_is_one(n: int, k: int) -> None:
    assert pass_at_k(n, 0, k) == 0.0
    assert pass_at_k(n, n, k) == 1.0


def test_pass_at_1_is_the_fraction_correct() -> None:
    for n in (1, 4, 16, 64):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


def test_pass_at_k_stable_for_large_n_matches_exact_binomials() -> None:
    n, c, k = 1000, 10, 100
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 2, 6), (5, 2, 0), (5, 6, 1), (5, -1, 1), (0, 0, 1)])
def test_pass_at_k_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers() -> None:
    with pytest.raises(TypeError):
        pass_at_k(5, 2.0, 1)  # type: ignore[arg-type]


# --- mean pass@1 and its standard error --------------------------------------------------

def test_mean_pass_at_1_and_stderr_by_hand() -> None:
    table = {"a": [T, T, F, F],  # 0.5
             "b": [T, T, T, T],  # 1.0
             "c": [F, F, F, F]}  # 0.0
    mean, stderr = mean_pass_at_1(table)
    # mean 0.5; deviations 0, +0.5, -0.5 -> sample var 0.5/2 = 0.25, sd 0.5 -> 0.5/sqrt(3)
    assert mean == pytest.approx(0.5)
    assert stderr == pytest.approx(0.5 / math.sqrt(3))


def test_mean_pass_at_1_weighs_problems_not_samples() -> None:
    # rates 1/2 and 3/4 -> mean 0.625 (pooled samples would say 4/6)
    # deviations ±0.125 -> sample var 2 * 0.015625 / 1 = 0.03125, sd 0.17678 -> / sqrt(2) = 0.125
    mean, stderr = mean_pass_at_1({"a": [T, F], "b": [T, T, T, F]})
    assert mean == pytest.approx(0.625)
    assert stderr == pytest.approx(0.125)


def test_mean_pass_at_1_single_problem_has_zero_stderr() -> None:
    assert mean_pass_at_1({"only": [T, F, F, F]}) == (0.25, 0.0)


def test_mean_pass_at_1_rejects_empty_input() -> None:
    with pytest.raises(ValueError):
        mean_pass_at_1({})
    with pytest.raises(ValueError, match="'b' has no samples"):
        mean_pass_at_1({"a": [T], "b": []})
    with pytest.raises(ValueError):
        mean_and_stderr([])


# --- pass@k table --------------------------------------------------------------------------

def test_pass_at_k_table_by_hand_and_only_ks_all_problems_have() -> None:
    table = {"a": [T, F, F, F, F],  # n=5, c=1
             "b": [T, T, F]}        # n=3, c=2
    got = pass_at_k_table(table, [5, 3, 1, 2, 2])
    assert list(got) == [1, 2, 3]  # k=5 > 3 samples of "b": left out
    # k=1: a 1/5, b 2/3 -> (0.2 + 0.6667) / 2
    assert got[1] == pytest.approx((0.2 + 2 / 3) / 2)
    # k=2: a 1 - C(4,2)/C(5,2) = 1 - 6/10 = 0.4; b: n-c=1 < 2 -> 1.0
    assert got[2] == pytest.approx((0.4 + 1.0) / 2)
    # k=3: a 1 - C(4,3)/C(5,3) = 1 - 4/10 = 0.6; b 1.0
    assert got[3] == pytest.approx((0.6 + 1.0) / 2)
    assert got[1] == pytest.approx(mean_pass_at_1(table)[0])


# --- lengths -------------------------------------------------------------------------------

def test_length_stats() -> None:
    assert length_stats([1, 2, 3, 10]) == (4.0, 2.5)
    assert length_stats([7]) == (7.0, 7.0)
    with pytest.raises(ValueError):
        length_stats([])


# --- per group -----------------------------------------------------------------------------

def test_by_group_by_hand() -> None:
    rates = {"p1": 1.0, "p2": 0.5, "p3": 0.0, "p4": 0.25, "p5": 1.0}
    tokens = {"p1": [100, 200],  # mean 150
              "p2": 300, "p3": [1000], "p4": 500, "p5": 9}
    levels = {"p1": 1, "p2": 1, "p3": 5, "p4": 3, "p5": None}  # p5: no group, left out
    got = by_group(rates, tokens, levels)
    assert list(got) == [1, 3, 5]
    assert got[1] == {"n_problems": 2, "accuracy": 0.75, "mean_tokens": 225.0}
    assert got[3] == {"n_problems": 1, "accuracy": 0.25, "mean_tokens": 500.0}
    assert got[5] == {"n_problems": 1, "accuracy": 0.0, "mean_tokens": 1000.0}


def test_by_group_function_and_explicit_order() -> None:
    rates = {"e": 1.0, "m": 0.5, "h": 0.0, "x": 0.5}
    tokens = {"e": 10, "m": 20, "h": 30, "x": 40}
    difficulty = {"e": "easy", "m": "medium", "h": "hard", "x": "extra"}.__getitem__
    got = by_group(rates, tokens, difficulty, order=["easy", "medium", "hard"])
    assert list(got) == ["easy", "medium", "hard", "extra"]
    assert list(by_group(rates, tokens, difficulty)) == ["easy", "extra", "hard", "medium"]


def test_by_group_missing_tokens_or_group_is_an_error() -> None:
    with pytest.raises(KeyError, match="token counts"):
        by_group({"a": 1.0, "b": 0.0}, {"a": 5}, {"a": 1, "b": 1})
    with pytest.raises(KeyError, match="no group for problem 'b'"):
        by_group({"a": 1.0, "b": 0.0}, {"a": 5, "b": 6}, {"a": 1})
