"""A third clip task, made up for the tests, in one module: importing it registers everything it needs.

``toy``: name the action in a clip played backwards (the generated clips, rewound), scored by top-1 and by
its own figure, the error rate. Nothing outside this module knows it: ``egoedge run --task toy`` trains,
exports and benches it through the clip flow once it is imported.
"""

from __future__ import annotations

import numpy as np

from egoedge.trainer.data.labeling import LABELINGS, Labeling
from egoedge.trainer.tasks import TASKS
from egoedge.trainer.tasks.clips import ClipEvaluation, ClipTask


class Rewound(Labeling):
    """The clip's own action, on the clip played backwards."""

    def generate(self, split, n, spec, cfg, extras):
        clips, labels = super().generate(split, n, spec, cfg, extras)
        return np.ascontiguousarray(clips[:, ::-1]), labels


class ErrorRateEvaluation(ClipEvaluation):
    def score(self, outputs):
        scored = super().score(outputs)
        return {**scored, "metrics": {"error %": 100.0 - scored["accuracy"]["top1"]}}


class ErrorRateTask(ClipTask):
    def evaluation(self, ckpt):
        return ErrorRateEvaluation(ckpt)


LABELINGS.register("toy")(Rewound())
TASKS.register("toy")(ErrorRateTask("toy", metric_column="top-1 (toy) %", report_field="toy",
                                    report_note="A toy task: actions played backwards."))
