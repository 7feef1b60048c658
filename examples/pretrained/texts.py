"""Real English sentences from a package every Python has (the language reference in ``pydoc_data``), tokenized for
all-MiniLM-L6-v2: ``calib.npy`` and ``heldout.npy`` of int64 token ids, split by reference topic. Nothing is
downloaded.

    python examples/pretrained/texts.py --out texts
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

MAX_LEN = 32  # tokens: the reference's sentences are mostly shorter; longer ones are cut
# Markup, code and quoting make a sentence something other than prose.
NOT_PROSE = re.compile(r"[*=|\[\]{}<>\"'\\]|::|\(\)")


def sentences() -> dict[str, list[str]]:
    """The prose sentences of each topic of the Python language reference, in topic order."""
    from pydoc_data.topics import topics

    out = {}
    for name in sorted(topics):
        text = re.sub(r"\s+", " ", topics[name])
        found = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
        out[name] = [s for s in found if 50 < len(s) < 220 and not NOT_PROSE.search(s)]
    return out


def write(out_dir: Path, calib: int = 192, heldout: int = 256) -> tuple[Path, Path]:
    """``calib.npy`` from the sentences of every other topic, ``heldout.npy`` from the rest (no topic in both)."""
    from egoedge.trainer.data.text import minilm_ids

    by_topic = sentences()
    names = [n for n in by_topic if by_topic[n]]
    first = [s for i, n in enumerate(names) if i % 2 == 0 for s in by_topic[n]]
    second = [s for i, n in enumerate(names) if i % 2 == 1 for s in by_topic[n]]
    if len(first) < calib or len(second) < heldout:
        raise SystemExit(f"too few sentences in pydoc_data ({len(first)} + {len(second)}); "
                         f"ask for fewer with --calib and --heldout")
    rng = np.random.default_rng(0)
    picked = [rng.choice(len(part), count, replace=False) for part, count in ((first, calib), (second, heldout))]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = out_dir / "calib.npy", out_dir / "heldout.npy"
    for path, part, rows in zip(files, (first, second), picked, strict=True):
        np.save(path, minilm_ids([part[i] for i in sorted(rows)], MAX_LEN))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("texts"))
    parser.add_argument("--calib", type=int, default=192)
    parser.add_argument("--heldout", type=int, default=256)
    args = parser.parse_args()
    for path in write(args.out, args.calib, args.heldout):
        print(path, np.load(path).shape)


if __name__ == "__main__":
    main()
