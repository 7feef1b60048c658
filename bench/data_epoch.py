"""One training epoch over prepared shards, in its own process, printing its peak RSS as JSON.

``python -m bench.data_epoch SHARD_FOLDER REPEAT BATCH``: the train shards listed ``REPEAT``
times (the same bytes read ``REPEAT`` times over: memory must not depend on how many clips an
epoch reads), a ResNet-10 (r10_16) trained one epoch by the engine, video decodes counted.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

import egoedge.trainer.data.decode as decode
from egoedge.trainer.data.clips import ClipSplit, preprocess_spec
from egoedge.trainer.data.shards import ShardClips


def main(folder: str, repeat: int, batch_size: int) -> dict:
    from egoedge.trainer.data import DataConfig
    from egoedge.trainer.engine import TrainConfig
    from egoedge.trainer.models import build_model
    from egoedge.trainer.train import train_teacher

    calls = {"n": 0}
    original = decode.decode_segment

    def counted(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    decode.decode_segment = counted
    index = json.loads((Path(folder) / "index.json").read_text())
    info = index["splits"]["train"]
    clips = ShardClips([Path(folder) / p for p in info["shards"]] * repeat, index["frames"], index["size"])
    split = ClipSplit(clips, np.tile(np.asarray(info["labels"], np.int64), repeat))
    data = DataConfig(frames=index["frames"], size=index["size"])
    model = build_model("resnet", num_classes=len(index["classes"]), frames=data.frames, size=data.size,
                        variant="r10_16")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    train_teacher(model, split, preprocess_spec(data), TrainConfig(epochs=1, batch_size=batch_size))
    return {"repeat": repeat, "clips": len(split), "seconds": round(time.perf_counter() - t0, 2),
            "clips_per_s": round(len(split) / (time.perf_counter() - t0), 1),
            "base_rss_mib": round(base, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "video_decodes": calls["n"]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
