"""Procedural egocentric clips: a first-person hand acting on an object on a cluttered table.

Every clip is a verb x noun action (``open_drawer``, ``pick_cup`` ...). The noun is told by
the object's silhouette (its colour is random), the verb only by motion over time: ``open``
and ``close`` are time-reversals of each other, as are ``pick`` and ``put``, so a model must
order frames to tell them apart and a single averaged frame cannot. On top of the action the
camera moves (head ego-motion: drift, bob and zoom), the table carries random clutter, the
light changes per clip and per frame, and sensor noise is added.

Rendering works in "world" coordinates (the table plane, unit = image width) for all ``T``
frames at once: each frame's pixel grid is mapped through that frame's camera pose, and
every shape is a mask evaluated on the mapped grid. Everything is deterministic in
``(seed, split, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egoedge.trainer.data.audio import AUDIO_BANDS, AUDIO_STEPS, render_audio
from egoedge.trainer.data.vocab import BOX_CLASSES, LABELS, NOUNS

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
MAX_CLUTTER = 4
BOX_SLOTS = 2 + MAX_CLUTTER  # hand, acted-on object, clutter items

_SKIN = np.array([[224, 172, 138], [198, 134, 92], [141, 85, 54], [240, 200, 170]], np.float32)


@dataclass(frozen=True)
class ClipSpec:
    """Shape of the generated clips."""

    frames: int = 8
    size: int = 64


def label_of(verb: str, noun: str) -> int:
    """Class index of a verb/noun pair."""
    return LABELS.index(f"{verb}_{noun}")


def _ellipse(x: np.ndarray, y: np.ndarray, cx, cy, a, b) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _rect(x: np.ndarray, y: np.ndarray, cx, cy, w, h, angle=0.0) -> np.ndarray:
    """Axis ``w`` x ``h`` half-extents, rotated by ``angle`` radians around the centre."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return (np.abs(u) <= w) & (np.abs(v) <= h)


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``(x1, y1, x2, y2)`` in [0, 1] of a ``(T, H, W)`` mask, and whether it is visible."""
    t, h, w = mask.shape
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    present = rows.any(axis=1)
    y1, y2 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    x1, x2 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    box = np.stack([x1 / w, y1 / h, x2 / w, y2 / h], axis=-1).astype(np.float32)
    box[~present] = 0.0
    return box, present


def _paint(img: np.ndarray, mask: np.ndarray, color) -> None:
    """Paint ``color`` (3,) or (T,1,1,3) into ``img`` (T,H,W,3) where ``mask`` (T,H,W)."""
    col = np.broadcast_to(np.asarray(color, np.float32), img.shape)
    img[mask] = col[mask]


def _contrasting_colors(rng: np.random.Generator, avoid: list[np.ndarray], n: int,
                        min_dist: float = 110.0) -> np.ndarray:
    """``n`` random RGB colours, each at least ``min_dist`` away from ``avoid`` and from the previous one.

    Uniformly random colours often vanish against the table (an invisible object is label
    noise); random but contrasting ones keep colour uninformative without hiding the shape.
    """
    out: list[np.ndarray] = []
    for _ in range(n):
        refs = avoid + out[-1:]
        best, best_d = None, -1.0
        for _ in range(32):
            c = rng.uniform(10, 245, 3).astype(np.float32)
            d = min(float(np.linalg.norm(c - r)) for r in refs) if refs else np.inf
            if d >= min_dist:
                best = c
                break
            if d > best_d:
                best, best_d = c, d
        out.append(best)
    return np.stack(out)


def _smooth_path(rng: np.random.Generator, t: np.ndarray, scale: float) -> np.ndarray:
    """A smooth random 1-D trajectory over normalised time ``t`` (sum of two sinusoids + drift)."""
    out = rng.uniform(-1, 1) * t
    for freq in (rng.uniform(0.5, 1.5), rng.uniform(2.0, 4.0)):
        out = out + rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return scale * out


def _object_parts(noun: str, x, y, cx, cy, s, rot, opening, colors: np.ndarray) -> list[tuple]:
    """Masks and colours of one object; ``opening`` in [0, 1] per frame moves its moving part.

    Returned back-to-front. Only the silhouette and the way it opens tell the nouns apart:
    ``colors`` (4 random RGB rows: body, moving part, inside, detail) are drawn independently
    per clip, so no colour and no amount of any colour belongs to a class.
    """
    body, part, inside, detail = colors
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if noun == "drawer":
        # Wide cabinet; the drawer front slides towards the camera (down the image),
        # uncovering the inside behind it.
        parts.append((_rect(x, y, cx, cy, 0.17 * s, 0.11 * s, rot), body))
        shift = 0.09 * s * opening
        interior = _rect(x, y, cx, cy + 0.02 * s, 0.14 * s, 0.05 * s + shift * 0.5, rot) & (opening > 0.05)
        parts.append((interior, inside))
        parts.append((_rect(x, y, cx, cy + 0.05 * s + shift, 0.15 * s, 0.035 * s, rot), part))
        parts.append((_rect(x, y, cx, cy + 0.05 * s + shift, 0.05 * s, 0.008 * s, rot), detail))
    elif noun == "cup":
        # Round body with a side handle; the lid lifts off upwards.
        s = 1.4 * s
        ring = _ellipse(x, y, cx + 0.085 * s, cy, 0.035 * s, 0.045 * s)
        parts.append((ring & ~_ellipse(x, y, cx + 0.085 * s, cy, 0.018 * s, 0.028 * s), body))
        parts.append((_rect(x, y, cx, cy + 0.01 * s, 0.07 * s, 0.07 * s), body))
        parts.append((_ellipse(x, y, cx, cy + 0.08 * s, 0.07 * s, 0.025 * s), body))
        parts.append((_ellipse(x, y, cx, cy - 0.06 * s, 0.07 * s, 0.022 * s), inside))
        lid_y = cy - 0.065 * s - 0.12 * s * opening
        parts.append((_ellipse(x, y, cx, lid_y, 0.078 * s, 0.026 * s), part))
        parts.append((_rect(x, y, cx, lid_y - 0.025 * s, 0.015 * s, 0.012 * s), detail))
    elif noun == "knife":
        # Long thin handle; a folding blade swings out of it.
        parts.append((_rect(x, y, cx - 0.07 * s, cy, 0.14 * s, 0.03 * s, rot), body))
        ang = rot + np.pi * (1.0 - opening)
        bx = cx + 0.07 * s + 0.14 * s * np.cos(ang)
        by = cy + 0.14 * s * np.sin(ang)
        parts.append((_rect(x, y, bx, by, 0.14 * s, 0.022 * s, ang), part))
        parts.append((_ellipse(x, y, cx + 0.07 * s, cy, 0.024 * s, 0.024 * s), detail))
    elif noun == "box":
        # Square box; its lid flap rotates up from the back edge, showing the inside.
        parts.append((_rect(x, y, cx, cy, 0.12 * s, 0.12 * s, rot), body))
        parts.append((_rect(x, y, cx, cy, 0.10 * s, 0.10 * s, rot) & (opening > 0.05), inside))
        flap_h = 0.12 * s * (1.0 - 1.6 * opening)
        flap = _rect(x, y, cx, cy - 0.12 * s + np.abs(flap_h), 0.125 * s, np.abs(flap_h) + 1e-4, rot)
        parts.append((flap, part))
    else:
        raise ValueError(f"unknown noun '{noun}'")
    return parts


def action_timeline(verb: str, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(reach, opening, lift)`` in [0, 1] at normalised times ``t``.

    The hand grips the object in every frame of every verb (its presence says nothing about
    the class). open/close move the object's part, pick/put the whole object; close is open
    played backwards and put is pick played backwards, so only the order of frames separates them.
    """
    zero = np.zeros_like(t)
    reach = np.ones_like(t)
    act = np.clip((t - 0.15) / 0.7, 0, 1)
    if verb == "open":
        return reach, act, zero
    if verb == "close":
        return reach, 1.0 - act, zero
    if verb == "pick":
        return reach, zero, act
    if verb == "put":
        return reach, zero, 1.0 - act
    raise ValueError(f"unknown verb '{verb}'")


def render_clip(label: int, rng: np.random.Generator, spec: ClipSpec, annotate: dict | None = None) -> np.ndarray:
    """Render one clip of class ``label`` as uint8 ``(T, H, W, 3)``.

    With ``annotate`` (a dict) it also receives the ground-truth boxes of what was drawn:
    ``boxes`` ``(T, BOX_SLOTS, 4)`` xyxy in [0, 1], ``present`` ``(T, BOX_SLOTS)`` and
    ``classes`` ``(BOX_SLOTS,)`` indices into :data:`BOX_CLASSES` (-1: empty slot). Annotating
    draws no random numbers, so the clip is the same with or without it.
    """
    verb, noun = LABELS[label].split("_")
    T, S = spec.frames, spec.size
    t = np.linspace(0.0, 1.0, T, dtype=np.float32)[:, None, None]  # (T,1,1)

    # Camera pose per frame: drift + head bob + slight zoom/roll.
    pan_x = _smooth_path(rng, t, 0.05)
    pan_y = _smooth_path(rng, t, 0.05)
    zoom = rng.uniform(0.85, 1.15) + _smooth_path(rng, t, 0.04)
    roll = rng.uniform(-0.2, 0.2) + _smooth_path(rng, t, 0.05)
    pix = (np.arange(S, dtype=np.float32) + 0.5) / S - 0.5
    px, py = np.meshgrid(pix, pix)  # (H,W), centred
    c, s = np.cos(roll), np.sin(roll)
    x = (c * px - s * py) / zoom + pan_x
    y = (s * px + c * py) / zoom + pan_y

    img = np.empty((T, S, S, 3), np.float32)
    # Wall above the table edge, wood-like table below it.
    horizon = rng.uniform(-0.45, -0.25)
    table = rng.uniform(90, 200, 3).astype(np.float32)
    wall = rng.uniform(60, 220, 3).astype(np.float32)
    grain = np.sin(y * rng.uniform(25, 60) + 3 * np.sin(x * rng.uniform(3, 8)))[..., None]
    img[:] = table + 12 * grain
    _paint(img, y < horizon, wall)

    shapes: list[tuple[int, np.ndarray]] = []  # (class, mask) of everything a detector could box
    # Clutter: primitives of random colour that never match an object silhouette exactly.
    for _ in range(rng.integers(1, MAX_CLUTTER + 1)):
        ccx, ccy = rng.uniform(-0.5, 0.5), rng.uniform(horizon, 0.5)
        col = rng.uniform(0, 255, 3).astype(np.float32)
        if rng.random() < 0.5:
            mask = _ellipse(x, y, ccx, ccy, rng.uniform(0.015, 0.045), rng.uniform(0.015, 0.045))
        else:
            mask = _rect(x, y, ccx, ccy, rng.uniform(0.015, 0.04), rng.uniform(0.015, 0.04), rng.uniform(0, np.pi))
        _paint(img, mask, col)
        shapes.append((BOX_CLASSES.index("clutter"), mask))

    # The acted-on object.
    ocx, ocy = rng.uniform(-0.22, 0.22), rng.uniform(-0.1, 0.16)
    scale = rng.uniform(1.1, 1.6)
    rot = rng.uniform(-0.4, 0.4)
    colors = _contrasting_colors(rng, [table, wall], 4)

    reach, opening, lift = action_timeline(verb, t)
    obj_y = ocy - 0.35 * lift
    obj_s = scale * (1.0 + 0.35 * lift)  # lifted objects come towards the camera

    shadow = _ellipse(x, y, ocx + 0.02, ocy + 0.06 * scale, 0.15 * scale * (1 - 0.5 * lift), 0.05 * scale)
    img[shadow] *= 0.7
    obj_mask = np.zeros(x.shape, bool)
    for mask, col in _object_parts(noun, x, y, ocx, obj_y, obj_s, rot, opening, colors):
        _paint(img, mask, col)
        obj_mask |= mask

    # Hand: forearm from the bottom edge to a palm with four fingers near the grip point.
    grip_x = ocx + 0.02 + (0.1 if noun == "cup" and verb in ("pick", "put") else 0.0)
    grip_y = obj_y + 0.06 * obj_s
    if verb in ("open", "close"):
        grip_y = grip_y + (0.05 * opening if noun == "drawer" else -0.12 * opening if noun in ("cup", "box") else 0.0)
    # Fingertips on the grip point, palm below it: the hand must not hide the moving part.
    hx = grip_x + (1 - reach) * rng.uniform(-0.1, 0.1)
    hy = grip_y + 0.08 + (1 - reach) * 0.55
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.85, 1.1)
    ax, ay = hx + 0.12, 0.75
    arm_len = np.hypot(ax - hx, ay - hy)
    arm_ang = np.arctan2(ay - hy, ax - hx)
    hand_parts = [(_rect(x, y, (ax + hx) / 2, (ay + hy) / 2, arm_len / 2, 0.04, arm_ang), skin * 0.9),
                  (_ellipse(x, y, hx, hy, 0.048, 0.038), skin)]
    hand_parts += [(_rect(x, y, hx - 0.033 + 0.022 * k, hy - 0.05, 0.008, 0.03), skin * 1.03) for k in range(4)]
    for mask, col in hand_parts:
        _paint(img, mask, col)
    # The palm and fingers, not the forearm that runs out of the frame, are what a hand box holds.
    palm = np.logical_or.reduce([mask for mask, _ in hand_parts[1:]])
    shapes = [(BOX_CLASSES.index("hand"), palm), (BOX_CLASSES.index(noun), obj_mask), *shapes]

    # Lighting: per-clip gain and direction, per-frame flicker, vignette; then sensor noise.
    gain = rng.uniform(0.6, 1.3)
    lx, ly = rng.uniform(-1, 1, 2)
    light = gain * (1 + 0.35 * (lx * px + ly * py)) * (1 - 0.6 * (px**2 + py**2))
    flicker = 1 + rng.normal(0, 0.04, (T, 1, 1))
    img *= (light * flicker)[..., None]
    img += rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    mirrored = rng.random() < 0.5
    if mirrored:  # left-handed wearer: the whole view mirrored
        img = img[:, :, ::-1]
    if annotate is not None:
        annotate.update(_annotations(shapes, mirrored))
    return np.clip(img, 0, 255).astype(np.uint8)


def _annotations(shapes: list[tuple[int, np.ndarray]], mirrored: bool) -> dict[str, np.ndarray]:
    t = shapes[0][1].shape[0]
    boxes = np.zeros((t, BOX_SLOTS, 4), np.float32)
    present = np.zeros((t, BOX_SLOTS), bool)
    classes = np.full(BOX_SLOTS, -1, np.int64)
    for k, (cls, mask) in enumerate(shapes[:BOX_SLOTS]):
        boxes[:, k], present[:, k] = _bbox(mask)
        classes[k] = cls
    if mirrored:
        boxes[..., [0, 2]] = np.where(present[..., None], 1.0 - boxes[..., [2, 0]], 0.0)
    return {"boxes": boxes, "present": present, "classes": classes}


def generate_split(split: str, n: int, spec: ClipSpec, seed: int = 0,
                   annotations: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clips ``(n, T, H, W, 3)`` uint8 and labels ``(n,)`` int64 for one split; balanced by class.

    With ``annotations`` (a dict) it also receives the other modalities of the same clips:
    ``boxes``/``present``/``box_classes`` as an object detector would report them (see
    :func:`detections`) and ``audio`` (``(n, AUDIO_BANDS, AUDIO_STEPS)`` log spectrograms,
    :mod:`trainer.data.audio`).

    Example::

        clips, labels = generate_split("train", 32, ClipSpec(frames=4, size=64), seed=0)
    """
    labels = _balanced_labels(split, n, seed)
    return render_split(split, labels, spec, seed, annotations), labels


def _balanced_labels(split: str, n: int, seed: int) -> np.ndarray:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
    if n <= 0:
        raise ValueError(f"split size must be positive, got {n}")
    labels = np.arange(n, dtype=np.int64) % len(LABELS)
    # A fixed permutation so that batches are mixed but the class counts stay exact.
    return np.random.default_rng([seed, SPLITS[split], 7]).permutation(labels)


def render_split(split: str, labels: np.ndarray, spec: ClipSpec, seed: int = 0, annotations: dict | None = None,
                 stream: int | None = None) -> np.ndarray:
    """Render one clip per label (clip ``i`` from the random stream ``(seed, split, i[, stream])``)."""
    n = len(labels)
    clips = np.empty((n, spec.frames, spec.size, spec.size, 3), np.uint8)
    if annotations is not None:
        annotations.update(boxes=np.zeros((n, spec.frames, BOX_SLOTS, 4), np.float32),
                           present=np.zeros((n, spec.frames, BOX_SLOTS), bool),
                           box_classes=np.zeros((n, BOX_SLOTS), np.int64),
                           audio=np.zeros((n, AUDIO_BANDS, AUDIO_STEPS), np.float16))
    extra = [] if stream is None else [stream]
    for i, lab in enumerate(labels):
        note: dict | None = {} if annotations is not None else None
        clips[i] = render_clip(int(lab), np.random.default_rng([seed, SPLITS[split], i, *extra]), spec, note)
        if annotations is not None:
            # Their own random streams: adding modalities changed no frame of the clips.
            det = detections(note, np.random.default_rng([seed, SPLITS[split], i, *extra, 19]))
            annotations["boxes"][i], annotations["present"][i] = det["boxes"], det["present"]
            annotations["box_classes"][i] = det["classes"]
            sound = np.random.default_rng([seed, SPLITS[split], i, *extra, 17])
            annotations["audio"][i] = render_audio(int(lab), sound)
    return clips


def detections(truth: dict[str, np.ndarray], rng: np.random.Generator, jitter: float = 0.02, miss: float = 0.1,
               confuse: float = 0.15) -> dict[str, np.ndarray]:
    """What a real detector makes of the drawn boxes: jittered, sometimes missed, nouns sometimes confused.

    ``truth`` is :func:`render_clip`'s annotation. A confused noun keeps its box but takes
    another noun's name for the whole clip (a tracker keeps the identity it first gave).
    """
    boxes = np.clip(truth["boxes"] + rng.normal(0, jitter, truth["boxes"].shape), 0, 1).astype(np.float32)
    present = truth["present"] & (rng.random(truth["present"].shape) >= miss)
    classes = truth["classes"].copy()
    nouns = [BOX_CLASSES.index(n) for n in NOUNS]
    for k, c in enumerate(classes):
        if c in nouns and rng.random() < confuse:
            classes[k] = rng.choice([n for n in nouns if n != c])
    boxes[~present] = 0.0
    return {"boxes": boxes, "present": present, "classes": classes}
