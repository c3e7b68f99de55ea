"""The 12 semantic classes of the SAHS-NeRF paper, in label order, with display colours.

The paper used BiSeNet face parsing; we derive the map from the face mesh and the person mask
(no model download). Two classes are approximations and one stays empty:
- ``ears``: person pixels beside the face outline, between eyebrow and nose-bottom height.
- ``hair``: head pixels (person, above the jaw line) outside the face outline and ears; this
  includes the top of the forehead above the face mesh.
- ``glasses``: cannot be derived from landmarks, so it is always empty.
"""

from __future__ import annotations

SEMANTIC_CLASSES = (
    "background",
    "hair",
    "skin",
    "eyebrows",
    "eyes",
    "nose",
    "ears",
    "lips",
    "inner_mouth",
    "glasses",
    "neck",
    "torso",
)
CLASS_ID = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}
ALWAYS_EMPTY = ("glasses",)

# RGB colours for pictures (contact sheet), one per class.
CLASS_COLOURS = (
    (0, 0, 0),
    (140, 70, 20),
    (255, 200, 160),
    (90, 40, 160),
    (0, 160, 255),
    (255, 140, 0),
    (200, 0, 120),
    (230, 0, 0),
    (120, 0, 0),
    (0, 255, 255),
    (0, 180, 90),
    (60, 90, 220),
)
