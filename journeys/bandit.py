"""The A/B that learns (a split with ``mode: bandit``). Pure: the runner counts, this decides.

- **Weights** (``thompson_weights``): each arm's probability of being the best, estimated by
  Thompson sampling (draws from Beta(1 + conversions, 1 + assigned − conversions) per arm,
  with a fixed seed), then floored at ``min_share`` per arm: ``min_share + (1 − k·min_share)
  · P(best)``, so every arm keeps learning.
- **Which arm** (``arm_for``): a contact's draw is a number in [0, 1) from a hash of the
  journey, the step and the contact (``draw``), the same every time; the arm is where it
  falls in the current weights. So a contact gets the same arm as long as the weights stay,
  and when the weights change, contacts near an edge move.
- **Same arm** means: the arm given on a contact's *first pass* is kept, whatever the weights
  do later. The engine keeps it for the rest of the enrollment (``kept_arm`` reads the path);
  the runner stores it (``assignments``), counts conversions for the arm the contact really
  got, and gives a later enrollment of the contact weights with all the weight on that arm
  (bot.automation.bandits.pinned). Contacts not yet assigned are drawn against the weights in
  force when they first reach the split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from journeys.model import Condition, Definition

DRAWS = 4000  # Monte Carlo draws per recompute: P(best) to about ±1 %


def bandit_steps(d: Definition) -> list[Condition]:
    return [
        s
        for s in d.steps
        if isinstance(s, Condition) and s.mode == "bandit" and s.split is not None
    ]


def draw(journey: str, step: str, contact_id: int | str) -> float:
    """The contact's fixed number in [0, 1) for this split."""
    digest = hashlib.sha256(f"bandit:{journey}:{step}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm_for(u: float, weights: Sequence[float]) -> int:
    """The arm whose share of [0, 1) holds ``u`` (weights need not add up to exactly 1)."""
    total = sum(weights)
    edge = 0.0
    for i, w in enumerate(weights):
        edge += w / total
        if u < edge:
            return i
    return len(weights) - 1


def kept_arm(step: Condition, history: Sequence[str]) -> int | None:
    """The arm this enrollment took on its first pass through ``step``, if it passed before
    (the step after it in the path; the last entry is the pass being made now)."""
    assert step.split is not None
    path = list(history)
    if step.id not in path[:-1]:
        return None
    went = path[path.index(step.id) + 1]
    for n, arm in enumerate(step.split):
        if arm.next == went:
            return n
    return None


def assignments(
    d: Definition, before: Sequence[str], after: Sequence[str]
) -> list[tuple[str, int]]:
    """(step, arm) of every bandit split an enrollment passed for the first time between two
    of its paths (``before`` is a prefix of ``after``)."""
    found = []
    for s in bandit_steps(d):
        if s.id not in after:
            continue
        i = list(after).index(s.id)
        if i + 1 < len(before) or i + 1 >= len(after):
            continue  # given before, or not gone on yet
        arm = next((n for n, a in enumerate(s.split or []) if a.next == after[i + 1]), None)
        if arm is not None:
            found.append((s.id, arm))
    return found


def floor(p: Sequence[float], min_share: float) -> list[float]:
    free = 1.0 - len(p) * min_share
    return [round(min_share + free * x, 4) for x in p]


def thompson_weights(
    counts: Sequence[tuple[int, int]], min_share: float, seed: int, draws: int = DRAWS
) -> list[float]:
    """The arms' weights from their (assigned, converted) counts."""
    rng = random.Random(seed)
    params = [(1 + conv, 1 + max(0, assigned - conv)) for assigned, conv in counts]
    wins = [0] * len(counts)
    for _ in range(draws):
        samples = [rng.betavariate(a, b) for a, b in params]
        wins[samples.index(max(samples))] += 1
    return floor([w / draws for w in wins], min_share)


def seed_for(journey_id: int, step: str, counts: Sequence[tuple[int, int]]) -> int:
    """The same counts give the same weights (no change to log when nothing happened)."""
    text = f"{journey_id}:{step}:{list(counts)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
