"""The student objective's settings (:class:`KDConfig`) and its named recipes, selectable with ``--recipe``."""

from __future__ import annotations

from dataclasses import dataclass, field

from egoedge.trainer.common.registry import Registry


@dataclass(frozen=True)
class KDConfig:
    """The student objective ``alpha*feature + beta*response + gamma*task + delta*hint``.

    ``response``: ``response_kl`` (full KL at ``temperature``) or ``topk_kl`` (teacher's
    ``top_k`` classes + rest). ``feature``: ``feature_mse`` or ``feature_cosine`` on the clip
    embeddings. ``hints``: ``(student module, teacher module)`` name pairs for intermediate
    FitNets hints; ``[("auto", "auto")]`` picks a pair at the same relative depth.
    ``ensemble``: how several teachers' logits combine (``mean`` or ``learned``).
    """

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.5
    temperature: float = 4.0
    response: str = "response_kl"
    top_k: int = 5
    feature: str = "feature_mse"
    hints: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    delta: float = 1.0
    ensemble: str = "mean"

RECIPES: Registry = Registry("distillation recipe")

# The student trained on labels only: the baseline every KD recipe has to beat.
RECIPES.register("ce")(KDConfig(alpha=0.0, beta=0.0, gamma=1.0))
# Hinton et al.: softened teacher logits (KL at T, x T^2) plus cross-entropy.
RECIPES.register("response")(KDConfig(alpha=0.0, beta=1.0, gamma=0.5))
# Only the teacher's top-K classes plus a rest bucket (for large label spaces).
RECIPES.register("topk")(KDConfig(alpha=0.0, beta=1.0, gamma=0.5, response="topk_kl", top_k=5))
# CLIP ViT -> MobileViT: feature (MSE on unit embeddings) + response + task. The default.
RECIPES.register("clip_kd")(KDConfig())
# The same with a cosine feature term.
RECIPES.register("cosine")(KDConfig(feature="feature_cosine"))
# clip_kd plus a FitNets hint between intermediate blocks at the same relative depth.
RECIPES.register("hints")(KDConfig(hints=(("auto", "auto"),)))
# Several teachers (one per --teacher), logits ensembled with weights fitted on the labels.
RECIPES.register("multi_teacher")(KDConfig(alpha=0.0, beta=1.0, gamma=0.5, ensemble="learned"))

DEFAULT_RECIPE = "clip_kd"


def recipe(name: str) -> KDConfig:
    """The KD settings of a named recipe."""
    return RECIPES.get(name)
