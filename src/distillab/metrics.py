"""Benchmark metrics: pass@k, mean pass@1 with its standard error, lengths, groups.

The paper reports pass@1 as the mean over k samples per problem (PAPER.md §8:
AIME k=64, LiveCodeBench k=16, MATH500 k=4): for each problem the fraction of its
samples that pass, then the mean over problems. Its standard error here is that of a
mean over problems (sample standard deviation of the per-problem rates / sqrt(n)),
which treats the problems as the random draw; it ignores the (smaller) sampling noise
within a problem.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

G = TypeVar("G", bound=Hashable)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct samples out of ``n``
    (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"):
    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``,
    which never forms the huge binomials (the same product LiveCodeBench's
    ``estimate_pass_at_k`` uses).

    Raises ValueError unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    for label, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"pass_at_k: {label} must be an int, got {value!r}")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and n >= 1, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k} with n={n} samples")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def _rates(per_problem: Mapping[str, Sequence[bool]]) -> dict[str, float]:
    if not per_problem:
        raise ValueError("no problems")
    rates = {}
    for pid, outcomes in per_problem.items():
        if len(outcomes) == 0:
            raise ValueError(f"problem {pid!r} has no samples")
        rates[pid] = sum(1 for o in outcomes if o) / len(outcomes)
    return rates


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std / sqrt(n)); the error is 0 for a single value."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    stderr = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, stderr


def mean_pass_at_1(per_problem: Mapping[str, Sequence[bool]]) -> tuple[float, float]:
    """(pass@1, standard error) from each problem's sample outcomes.

    pass@1 = mean over problems of the problem's pass rate over its samples (problems
    count equally whatever their sample count); the error is the sample standard
    deviation of those rates over sqrt(number of problems), 0 for one problem.
    """
    return mean_and_stderr(list(_rates(per_problem).values()))


def pass_at_k_table(per_problem: Mapping[str, Sequence[bool]], ks: Iterable[int]
                    ) -> dict[int, float]:
    """Mean unbiased pass@k over problems for each ``k`` in ``ks`` that every problem
    has samples for (``k <= min`` samples per problem); other ks are left out.
    Keys ascending."""
    _rates(per_problem)  # same checks: problems present, none without samples
    counts = [(len(o), sum(1 for x in o if x)) for o in per_problem.values()]
    n_min = min(n for n, _ in counts)
    table = {}
    for k in sorted(set(ks)):
        if 1 <= k <= n_min:
            table[k] = statistics.fmean(pass_at_k(n, c, k) for n, c in counts)
    return table


def length_stats(tokens: Sequence[float]) -> tuple[float, float]:
    """(mean, median) of response lengths in tokens. Raises ValueError when empty."""
    if len(tokens) == 0:
        raise ValueError("no lengths")
    return statistics.fmean(tokens), float(statistics.median(tokens))


def by_group(per_problem_rates: Mapping[str, float],
             tokens_per_problem: Mapping[str, float | Sequence[float]],
             group_of: Mapping[str, G | None] | Callable[[str], G | None],
             order: Sequence[G] | None = None) -> dict[G, dict[str, float]]:
    """Accuracy and mean length per group of problems (e.g. MATH500 level 1-5, LCB
    difficulty), for the length-vs-difficulty plot.

    ``per_problem_rates``: problem -> pass rate over its samples. ``tokens_per_problem``:
    problem -> its mean tokens, or the token counts of its samples (averaged first).
    ``group_of``: problem -> group, as a mapping or a function; problems whose group is
    None are left out. Per group: ``n_problems``, ``accuracy`` (mean rate) and
    ``mean_tokens`` (mean of the per-problem means: every problem weighs the same, as in
    the accuracy). Groups come sorted, or in ``order`` when given (groups not in it
    follow, sorted).
    """
    missing = sorted(set(per_problem_rates) - set(tokens_per_problem))
    if missing:
        raise KeyError(f"no token counts for {len(missing)} problems, e.g. {missing[:3]}")
    lookup = group_of if callable(group_of) else group_of.__getitem__
    rates: dict[G, list[float]] = {}
    lengths: dict[G, list[float]] = {}
    for pid, rate in per_problem_rates.items():
        try:
            group = lookup(pid)
        except KeyError:
            raise KeyError(f"no group for problem {pid!r}") from None
        if group is None:
            continue
        tokens = tokens_per_problem[pid]
        if isinstance(tokens, (int, float)):
            mean_tokens = float(tokens)
        else:
            if len(tokens) == 0:
                raise ValueError(f"problem {pid!r} has no token counts")
            mean_tokens = statistics.fmean(tokens)
        rates.setdefault(group, []).append(rate)
        lengths.setdefault(group, []).append(mean_tokens)
    first = [g for g in (order or []) if g in rates]
    rest = sorted((g for g in rates if g not in set(first)), key=_sort_key)
    return {g: {"n_problems": len(rates[g]), "accuracy": statistics.fmean(rates[g]),
                "mean_tokens": statistics.fmean(lengths[g])} for g in first + rest}


def _sort_key(group: Hashable) -> tuple:
    """Numbers before strings, each in natural order; anything else by its repr."""
    if isinstance(group, (int, float)) and not isinstance(group, bool):
        return (0, group, "")
    if isinstance(group, str):
        return (1, 0, group)
    return (2, 0, repr(group))
