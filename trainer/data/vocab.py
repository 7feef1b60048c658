"""The generated dataset's action vocabulary: verbs, nouns, their ``verb_noun`` labels and box classes.

Kept apart from the renderers so that the video and audio renderers can both read it.
"""

from __future__ import annotations

VERBS: tuple[str, ...] = ("open", "close", "pick", "put")
NOUNS: tuple[str, ...] = ("drawer", "cup", "knife", "box")
LABELS: tuple[str, ...] = tuple(f"{v}_{n}" for v in VERBS for n in NOUNS)
# What an object detector would name in these clips: the hand, the four nouns, and clutter.
BOX_CLASSES: tuple[str, ...] = ("hand", *NOUNS, "clutter")
