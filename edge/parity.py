"""The parity gate: an artifact ships as ``ok`` only if its outputs match PyTorch's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParityGate:
    """Tolerances per precision: fp32 by max-abs on logits, int8 by agreement and accuracy drop."""

    fp32_max_abs: float = 1e-4
    int8_min_agreement: float = 99.0  # percent top-1 agreement with the fp32 model
    int8_max_accuracy_drop: float = 1.0  # top-1 points

    def check(self, precision: str, parity: dict, accuracy: dict, reference_accuracy: dict) -> str | None:
        """``None`` if the artifact passes, else the reason it fails.

        Reduced precisions (fp16, int8, w8, w8a8) cannot match logits bit for bit, so they are
        judged by what users see: the predicted class and the accuracy.
        """
        if precision == "fp32":
            if parity["max_abs"] > self.fp32_max_abs:
                return f"max |logit diff| {parity['max_abs']:.3g} > {self.fp32_max_abs:.3g}"
            return None
        if parity["top1_agreement"] < self.int8_min_agreement:
            return f"top-1 agreement {parity['top1_agreement']:.2f}% < {self.int8_min_agreement}%"
        if accuracy is None or reference_accuracy is None:  # no labels (your own model's inputs): agreement only
            return None
        drop = reference_accuracy["top1"] - accuracy["top1"]
        if drop > self.int8_max_accuracy_drop:
            return f"top-1 drop {drop:.2f} points > {self.int8_max_accuracy_drop}"
        return None


def on_test_split(batch: dict, test: dict) -> dict:
    """One parity dict: the logit error from the parity batch, every prediction figure from the test split.

    Example: ``on_test_split({"max_abs": 0.1}, {"max_abs": 0.3, "top1_agreement": 99.7})`` keeps ``max_abs`` 0.1.
    """
    return {**batch, **{k: v for k, v in test.items() if k != "max_abs"}}
