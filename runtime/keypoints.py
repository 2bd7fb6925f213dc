"""The COCO 17-keypoint layout: names, skeleton, flip pairs and OKS sigmas (DESIGN §2).

These are defaults for making models; at run time the keypoint layout is read from the model's
metadata, so a model with another layout runs without touching this file.
"""

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


def flip_permutation(num_keypoints: int, flip_pairs: list[list[int]]) -> list[int]:
    """Index list that swaps each left/right pair and leaves the other keypoints in place."""
    perm = list(range(num_keypoints))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def check_layout(names: object, skeleton: object, flip_pairs: object) -> None:
    """Raise ``ValueError`` unless ``names`` is a non-empty list of strings, ``skeleton`` pairs of
    1-based and ``flip_pairs`` pairs of 0-based keypoint numbers within it."""
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("keypoint_names must be a non-empty list of names")
    k = len(names)
    for name, pairs, base in (("skeleton", skeleton, 1), ("flip_pairs", flip_pairs, 0)):
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(type(i) is int and base <= i < k + base for i in p)
                for p in pairs):
            raise ValueError(f"{name} must be pairs of keypoint numbers {base} to {k - 1 + base}")
