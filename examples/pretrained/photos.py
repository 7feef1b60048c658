"""Real photos from installed packages, cropped for an ImageNet model: calibration and held-out arrays.

Photos ship inside scikit-image, scikit-learn and matplotlib wheels; nothing is downloaded. The
photos are split in two, so no held-out crop comes from a photo the model was calibrated on.

    python examples/pretrained/photos.py --out photos   # photos/calib.npy (192), photos/heldout.npy (256)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# (package, path inside it): colour photos. The held-out ones show single objects, as an ImageNet
# evaluation image does; the rest, scenes and textures too, calibrate (a stereo pair stays together).
HELD_OUT = (
    ("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"), ("skimage", "data/rocket.jpg"),
    ("sklearn", "datasets/images/flower.jpg"), ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
CALIBRATION = (
    ("skimage", "data/astronaut.png"), ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"), ("sklearn", "datasets/images/china.jpg"),
    ("skimage", "data/hubble_deep_field.jpg"), ("skimage", "data/retina.jpg"), ("skimage", "data/ihc.png"),
    ("skimage", "data/brick.png"), ("skimage", "data/grass.png"), ("skimage", "data/gravel.png"),
)
# EfficientNet-Lite's input: RGB scaled to [-1, 1] as (x - 127) / 128.
MEAN, STD = 127.0, 128.0


def photo_paths(photos: tuple[tuple[str, str], ...]) -> list[Path]:
    """The photos found among the installed packages (a missing package's are skipped)."""
    import importlib.util

    out = []
    for package, inside in photos:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent / inside
            if path.is_file():
                out.append(path)
    return out


def crops(paths: list[Path], count: int, size: int = 224, seed: int = 0,
          scale: tuple[float, float] = (0.25, 1.0)) -> np.ndarray:
    """``count`` random square crops (``scale`` of the short side), resized to ``size``, NCHW float32."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.open(p).convert("RGB") for p in paths]
    out = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        image = images[i % len(images)]
        w, h = image.size
        side = int(min(w, h) * rng.uniform(*scale))
        x, y = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        crop = image.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out[i] = ((np.asarray(crop, np.float32) - MEAN) / STD).transpose(2, 0, 1)
    return out


def write(out_dir: Path, calib: int = 192, heldout: int = 256, size: int = 224) -> tuple[Path, Path]:
    """``calib.npy`` (random crops of the calibration photos) and ``heldout.npy`` (crops of most of each held-out
    photo, as an evaluation's centre crop shows most of the image) in ``out_dir``."""
    calibration, held_out = photo_paths(CALIBRATION), photo_paths(HELD_OUT)
    if len(calibration) < 3 or len(held_out) < 3:
        raise SystemExit("too few photos found; pip install scikit-image scikit-learn matplotlib")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = out_dir / "calib.npy", out_dir / "heldout.npy"
    np.save(files[0], crops(calibration, calib, size, seed=0))
    np.save(files[1], crops(held_out, heldout, size, seed=1, scale=(0.6, 1.0)))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("photos"))
    parser.add_argument("--calib", type=int, default=192)
    parser.add_argument("--heldout", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    for path in write(args.out, args.calib, args.heldout, args.size):
        print(path)


if __name__ == "__main__":
    main()
