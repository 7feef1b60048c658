"""Action anticipation on the generated clips: after a few actions, which one comes next?

People do things in habitual orders (open the drawer, take the knife out, close the drawer),
so the next action is predictable from the ones before it, though not certain. Here every
action has three likely successors with probabilities 0.6, 0.25 and 0.15, fixed for the
dataset (one seeded draw, shared by every split), and a sample is a Markov chain of
``history + 1`` actions: the ``history`` past ones are its context (as words, for a language
teacher), the clip shows only the last of them being done (for the video student), and the
label is the next one. The best any model can do is the transition table itself:
:func:`oracle_accuracy` gives that ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from egoedge.trainer.data.labeling import LABELINGS, Labeling
from egoedge.trainer.data.synthetic import SPLITS, ClipSpec, render_split
from egoedge.trainer.data.vocab import LABELS

if TYPE_CHECKING:
    from egoedge.trainer.data.clips import DataConfig

SUCCESSOR_PROBS = (0.6, 0.25, 0.15)
_TABLE_SEED = 2024


def transition_matrix() -> np.ndarray:
    """``(C, C)`` row-stochastic: ``P[a, b]`` is the chance that action ``b`` follows ``a``."""
    rng = np.random.default_rng(_TABLE_SEED)
    c = len(LABELS)
    table = np.zeros((c, c))
    for a in range(c):
        others = rng.permutation([b for b in range(c) if b != a])[:len(SUCCESSOR_PROBS)]
        table[a, others] = SUCCESSOR_PROBS
    return table


def action_sequences(split: str, n: int, length: int, seed: int = 0) -> np.ndarray:
    """``(n, length)`` action indices, each row a chain from a uniform first action."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
    if n <= 0 or length < 2:
        raise ValueError(f"need n > 0 sequences of length >= 2, got n={n}, length={length}")
    table = np.cumsum(transition_matrix(), axis=1)
    rng = np.random.default_rng([seed, SPLITS[split], 23])
    seq = np.empty((n, length), np.int64)
    seq[:, 0] = rng.integers(0, len(LABELS), n)
    for k in range(1, length):
        u = rng.random(n)[:, None]
        seq[:, k] = np.minimum((u > table[seq[:, k - 1]]).sum(axis=1), len(LABELS) - 1)
    return seq


def generate_anticipation_split(split: str, n: int, spec: ClipSpec, history: int = 3, seed: int = 0,
                                annotations: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed clips ``(n, T, H, W, 3)``, next actions ``(n,)`` and past actions ``(n, history)``.

    Example::

        clips, nxt, past = generate_anticipation_split("train", 64, ClipSpec(4, 64))
    """
    if history < 1:
        raise ValueError(f"history must be at least one action, got {history}")
    seq = action_sequences(split, n, history + 1, seed)
    # Its own random stream so that the observed clips are not the recognition split's clips.
    clips = render_split(split, seq[:, history - 1], spec, seed, annotations, stream=29)
    return clips, seq[:, history], seq[:, :history]


def history_text(actions: np.ndarray) -> str:
    """The words a language teacher reads, e.g. ``"open drawer, pick knife, close drawer"``."""
    return ", ".join(LABELS[int(a)].replace("_", " ") for a in actions)


def oracle_accuracy(history: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1/top-5 (percent) of the true transition table given the last past action: the ceiling."""
    table = transition_matrix()
    order = np.argsort(-table[history[:, -1]], axis=1, kind="stable")
    return {"top1": float(100.0 * np.mean(order[:, 0] == labels)),
            "top5": float(100.0 * np.mean((order[:, :5] == labels[:, None]).any(axis=1)))}


@dataclass(frozen=True)
class NextAction(Labeling):
    """A clip is labelled with the action that follows it: it ends ``gap_s`` before that action starts and
    shows the ``cfg.observe_s`` seconds before (EPIC-KITCHENS' anticipation protocol, 1 s ahead)."""

    extras: tuple[str, ...] = ("history",)
    gap_s: float = 1.0

    def window(self, start: float, stop: float, cfg: DataConfig) -> tuple[float, float] | str:
        end = start - self.gap_s
        if end <= 0:
            return f"the action starts {start:.2f} s into its video: under {self.gap_s:.0f} s to observe"
        return max(0.0, end - cfg.observe_s), end

    def generate(self, split: str, n: int, spec: ClipSpec, cfg: DataConfig,
                 extras: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        clips, labels, extras["history"] = generate_anticipation_split(split, n, spec, cfg.history, cfg.seed, extras)
        return clips, labels


LABELINGS.register("anticipation")(NextAction())
