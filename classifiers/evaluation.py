"""Why: swapping a model behind a policy must rest on numbers measured on the operator's own
images — a threshold that holds a target false-positive rate, and how a candidate model agrees
with the one it would replace. These are the pure functions (numpy + scipy, no I/O) behind
`consentgate models calibrate` and `consentgate models compare`.

Conventions: a score >= threshold flags (as in policies: `deny: 0.8` denies scores >= 0.8).
`threshold_at_fpr` returns the lowest threshold whose false-positive rate on the negatives is at
most the target; with n negatives the rate moves in steps of 1/n, so a target below 1/n can only
be met by flagging nothing above the highest negative (the result says so: `resolvable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Outcome = str  # "allow" | "review" | "deny"
OUTCOMES: tuple[Outcome, ...] = ("allow", "review", "deny")


@dataclass(frozen=True)
class RocPoint:
    threshold: float
    tpr: float | None
    fpr: float


@dataclass(frozen=True)
class Operating:
    """A chosen threshold with its rates on the calibration set."""

    threshold: float
    fpr: float
    tpr: float | None
    negatives: int
    positives: int
    resolvable: bool  # the negatives are numerous enough to measure the target rate


def _above(value: float) -> float:
    """The smallest float above `value`, rounded up to 6 decimals (what policies store)."""
    return math.ceil(float(np.nextafter(value, np.inf)) * 1e6) / 1e6


def threshold_at_fpr(negatives: Sequence[float], positives: Sequence[float], target_fpr: float) -> Operating:
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError("target rate must be in [0, 1)")
    neg = np.sort(np.asarray(negatives, np.float64))[::-1]
    pos = np.asarray(positives, np.float64)
    if neg.size == 0:
        raise ValueError("calibration needs negative examples")
    allowed = math.floor(target_fpr * neg.size + 1e-9)  # negatives that may score >= threshold
    threshold = min(_above(float(neg[allowed])), 1.0) if allowed < neg.size else float(neg[-1])
    fpr = float((neg >= threshold).mean())
    tpr = float((pos >= threshold).mean()) if pos.size else None
    return Operating(
        threshold, fpr, tpr, int(neg.size), int(pos.size), neg.size * target_fpr >= 1.0 or target_fpr == 0
    )


def roc_points(
    negatives: Sequence[float], positives: Sequence[float], max_points: int = 12
) -> list[RocPoint]:
    """(threshold, TPR, FPR) at up to `max_points` thresholds spread over the observed scores."""
    neg = np.asarray(negatives, np.float64)
    pos = np.asarray(positives, np.float64)
    cuts = np.unique(np.concatenate([neg, pos]))
    if cuts.size > max_points:
        cuts = cuts[np.linspace(0, cuts.size - 1, max_points).round().astype(int)]
    return [
        RocPoint(
            float(t),
            float((pos >= t).mean()) if pos.size else None,
            float((neg >= t).mean()) if neg.size else 0.0,
        )
        for t in cuts
    ]


def auc(negatives: Sequence[float], positives: Sequence[float]) -> float | None:
    """Area under the ROC curve (probability a positive outscores a negative; ties count half)."""
    neg = np.asarray(negatives, np.float64)
    pos = np.asarray(positives, np.float64)
    if neg.size == 0 or pos.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def pair_similarities(embeddings: Mapping[str, Sequence[np.ndarray]]) -> tuple[list[float], list[float]]:
    """Cosine similarities of (genuine pairs: same identity, impostor pairs: different identities)."""
    items = [(ident, np.asarray(e, np.float64)) for ident, embs in embeddings.items() for e in embs]
    genuine: list[float] = []
    impostor: list[float] = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = items[i][1], items[j][1]
            sim = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            (genuine if items[i][0] == items[j][0] else impostor).append(sim)
    return genuine, impostor


def outcome(score: float, deny: float | None, review: float | None) -> Outcome:
    if deny is not None and score >= deny:
        return "deny"
    if review is not None and score >= review:
        return "review"
    return "allow"


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    return max(outcomes, key=OUTCOMES.index, default="allow")


def correlations(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    """(Pearson, Spearman); None where undefined (fewer than 3 pairs or a constant side)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    from scipy import stats

    return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0])


@dataclass
class LabelComparison:
    """Baseline vs candidate on one (baseline label, candidate label) pair."""

    baseline_label: str
    candidate_label: str
    n: int
    agreement: float
    confusion: dict[str, dict[str, int]]  # baseline outcome -> candidate outcome -> count
    pearson: float | None
    spearman: float | None
    disagreements: list[dict[str, object]] = field(default_factory=list)


def compare_label(
    items: Sequence[str],
    base_scores: Sequence[float],
    cand_scores: Sequence[float],
    base_thr: tuple[float | None, float | None],
    cand_thr: tuple[float | None, float | None],
    labels: tuple[str, str],
    top: int = 5,
) -> LabelComparison:
    """Agreement and confusion of the verdicts at the thresholds ((deny, review) per side), score
    correlations, and the `top` items where the two disagree most (verdict first, then score gap)."""
    confusion = {b: dict.fromkeys(OUTCOMES, 0) for b in OUTCOMES}
    rows = []
    for item, sb, sc in zip(items, base_scores, cand_scores, strict=True):
        ob, oc = outcome(sb, *base_thr), outcome(sc, *cand_thr)
        confusion[ob][oc] += 1
        rows.append((ob != oc, abs(sb - sc), item, sb, sc, ob, oc))
    n = len(rows)
    agree = sum(1 for r in rows if not r[0])
    pearson, spearman = correlations(base_scores, cand_scores)
    rows.sort(key=lambda r: (not r[0], -r[1], r[2]))
    worst_rows = [
        {
            "item": r[2],
            "baseline": round(r[3], 6),
            "candidate": round(r[4], 6),
            "baseline_outcome": r[5],
            "candidate_outcome": r[6],
        }
        for r in rows[:top]
        if r[0] or r[1] > 0
    ]
    return LabelComparison(
        labels[0], labels[1], n, agree / n if n else 1.0, confusion, pearson, spearman, worst_rows
    )


def percentile_ms(seconds: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if len(seconds) else None
