"""Write frames of the embedded dataset as a preprocessed ``(N, 3, S, S)`` float32 ``.npy``.

Calibration and held-out inputs for your own image model (``egoedge export MODEL --calib-file``,
``--example-inputs``), resized to its input size and normalised with ImageNet's mean and std:

    python examples/frames_npy.py calib.npy --count 64 --size 224 --split train
    python examples/frames_npy.py held_out.npy --count 32 --size 224 --split test
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from egoedge.trainer.data import DataConfig, load_split, prepare_data

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    args = p.parse_args()
    data = DataConfig(frames=4, size=64, train=1600, val=320, test=320)  # the quick preset's clips
    prepare_data(data)
    clips = load_split(data, args.split).clips  # (N, T, H, W, 3) uint8
    frames = clips[np.random.default_rng(0).permutation(len(clips))[:args.count], 0]  # each clip's first frame
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(args.size, args.size), mode="bilinear", align_corners=False)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    np.save(args.out, x.numpy().astype(np.float32))
    print(f"wrote {args.out}: {tuple(x.shape)} float32")


if __name__ == "__main__":
    main()
