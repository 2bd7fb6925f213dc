"""Keypoint layouts: names, skeleton, flip pairs and OKS sigmas of COCO 17, Halpe 26 and MPII 16 (DESIGN §2).

An exported model carries its layout in its metadata and the runtime reads it from there; these
tables are what the exporter writes, and what an older model (one without a ``layout`` entry) is
matched against by its keypoint names.
"""

from __future__ import annotations

from dataclasses import dataclass

COCO_KEYPOINTS: list[str] = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]

# 1-based, as in a COCO annotation file's categories[0]["skeleton"].
COCO_SKELETON: list[list[int]] = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]

# 0-based left/right pairs swapped by a horizontal flip.
COCO_FLIP_PAIRS: list[list[int]] = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]

COCO_OKS_SIGMAS: list[float] = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
]

# Halpe Full-Body's first 26 keypoints (Fang-Haoshu/Halpe-FullBody README; AlphaPose's halpe_26
# models): COCO's 17, then head, neck, hip and six foot points.
HALPE26_KEYPOINTS: list[str] = COCO_KEYPOINTS + [
    "head", "neck", "hip", "left_big_toe", "right_big_toe",
    "left_small_toe", "right_small_toe", "left_heel", "right_heel",
]

# The limbs AlphaPose draws for 26 keypoints, 1-based.
HALPE26_SKELETON: list[list[int]] = [
    [1, 2], [1, 3], [2, 4], [3, 5], [6, 19], [7, 19], [6, 8], [8, 10], [7, 9], [9, 11],
    [18, 19], [19, 20], [20, 12], [20, 13], [12, 14], [13, 15], [14, 16], [15, 17],
    [21, 25], [22, 26], [24, 26], [23, 25], [16, 25], [17, 26],
]

HALPE26_FLIP_PAIRS: list[list[int]] = COCO_FLIP_PAIRS + [[20, 21], [22, 23], [24, 25]]

# The 26 body sigmas Halpe's evaluation (halpecocotools) and AlphaPose's pose NMS use.
HALPE26_OKS_SIGMAS: list[float] = COCO_OKS_SIGMAS + [0.08, 0.08, 0.08, 0.089, 0.089, 0.089, 0.089, 0.089, 0.089]

MPII_KEYPOINTS: list[str] = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
]

# A stick figure, 1-based: ankles-knees-hips-pelvis-thorax-neck-head top, wrists-elbows-shoulders-thorax.
MPII_SKELETON: list[list[int]] = [
    [1, 2], [2, 3], [3, 7], [6, 5], [5, 4], [4, 7], [7, 8], [8, 9], [9, 10],
    [11, 12], [12, 13], [13, 8], [16, 15], [15, 14], [14, 8],
]

# Flip permutation [5,4,3,2,1,0,6,7,8,9,15,14,13,12,11,10] as pairs.
MPII_FLIP_PAIRS: list[list[int]] = [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]


@dataclass(frozen=True)
class Layout:
    """One keypoint layout: what a model's K output channels mean and how they are scored."""

    name: str
    keypoint_names: list[str]
    skeleton: list[list[int]]  # 1-based pairs, as in COCO JSON
    flip_pairs: list[list[int]]  # 0-based left/right pairs
    oks_sigmas: list[float] | None  # None: COCO keypoint AP does not apply (MPII is scored by PCKh)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)


LAYOUTS: dict[str, Layout] = {
    "coco17": Layout("coco17", COCO_KEYPOINTS, COCO_SKELETON, COCO_FLIP_PAIRS, COCO_OKS_SIGMAS),
    "halpe26": Layout("halpe26", HALPE26_KEYPOINTS, HALPE26_SKELETON, HALPE26_FLIP_PAIRS, HALPE26_OKS_SIGMAS),
    "mpii16": Layout("mpii16", MPII_KEYPOINTS, MPII_SKELETON, MPII_FLIP_PAIRS, None),
}


def get_layout(name: str) -> Layout:
    """The layout called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown keypoint layout {name!r}; choose from {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def layout_for_names(names: list[str]) -> Layout | None:
    """The known layout whose keypoint names are ``names`` (case-insensitive), or None."""
    wanted = [str(n).lower() for n in names]
    return next((layout for layout in LAYOUTS.values() if layout.keypoint_names == wanted), None)


def flip_permutation(num_keypoints: int, flip_pairs: list[list[int]]) -> list[int]:
    """Index list that swaps each left/right pair and leaves the other keypoints in place."""
    perm = list(range(num_keypoints))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def check_layout(names: object, skeleton: object, flip_pairs: object) -> None:
    """Raise ``ValueError`` unless ``names`` is a list of unique names, ``skeleton`` pairs of 1-based
    and ``flip_pairs`` disjoint pairs of 0-based keypoint numbers within it."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("keypoint_names must be a non-empty list of names")
    if len(set(names)) != len(names):
        raise ValueError("keypoint_names must be unique")
    k = len(names)
    for name, pairs, base in (("skeleton", skeleton, 1), ("flip_pairs", flip_pairs, 0)):
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(type(i) is int and base <= i < k + base for i in p)
                for p in pairs):
            raise ValueError(f"{name} must be pairs of keypoint numbers {base} to {k - 1 + base}")
    flipped = [i for pair in flip_pairs for i in pair]
    if len(set(flipped)) != len(flipped):
        raise ValueError("flip_pairs must name each keypoint at most once")


def check_sigmas(sigmas: object, num_keypoints: int) -> None:
    """Raise ``ValueError`` unless ``sigmas`` is None or ``num_keypoints`` positive numbers."""
    if sigmas is None:
        return
    if not isinstance(sigmas, list) or len(sigmas) != num_keypoints or not all(
            type(s) in (int, float) and s > 0 for s in sigmas):
        raise ValueError(f"oks_sigmas must be {num_keypoints} positive numbers (one per keypoint) or null")
