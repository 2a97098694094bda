"""The statistics every figure in the reports goes through, in one place.

The machine is shared and noisy (runs of one target drift by +-15%), so a
comparison is never "median of A vs median of B". Targets are measured in
rounds, every target once per round in a rotated order, and the comparison
is the *paired ratio* within each round (task / valuetask measured minutes
apart, not hours): a burst from another tenant lands on one round's pair,
not on every run of one target. A ratio is reported as its median with
the min-max spread over rounds.

A difference is called "beyond the spread" when every round's paired
ratio falls on the same side of 1. For a metric with no real difference
each round's ratio is above or below 1 with even odds, so noise alone does
that with probability 2 * 0.5**n for n rounds (sign_chance), and with m
metrics compared the chance that at least one of them does is
1 - (1 - p)**m (family_chance). The reports print both next to their
findings.
"""

import statistics


def median(values):
    """Median of the values that are not None; None if there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values):
    """{median, min, max, n} of the values that are not None, or None."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return dict(median=statistics.median(vals), min=min(vals), max=max(vals), n=len(vals))


def rotated(items, k):
    """items rotated left by k: round k of a rotation (A B C, B C A, ...)."""
    items = list(items)
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


def paired_ratios(numerators, denominators):
    """Per-round ratios a_i / b_i; rounds where either side is missing or
    the denominator is 0 are left out."""
    return [a / b for a, b in zip(numerators, denominators)
            if a is not None and b is not None and b != 0]


def ratio_summary(ratios):
    """A paired ratio's median and spread, and whether every round falls on
    one side of 1 ("beyond": the finding whose chance sign_chance gives)."""
    s = spread(ratios)
    if s is None:
        return None
    s["beyond"] = s["n"] >= 2 and (s["min"] > 1 or s["max"] < 1)
    s["chance"] = sign_chance(s["n"])
    return s


def sign_chance(n):
    """The probability that noise alone puts all n paired ratios of a
    metric with no difference on one side of 1."""
    return 2 * 0.5 ** n if n >= 1 else 1.0


def family_chance(p, m):
    """The probability that at least one of m independent no-difference
    metrics, each with chance p, shows a finding."""
    return 1 - (1 - p) ** m if m >= 1 else 0.0


def fmt_ratio(s, digits=2):
    """'1.04 (0.98-1.10, n=5)' for a ratio_summary; '-' for None."""
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f} (n=1)"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f}, n={s['n']})"
