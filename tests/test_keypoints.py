"""Keypoint layouts: each table is self-consistent, and old models are matched by their names."""

import pytest

from rmpe.runtime.keypoints import (
    COCO_KEYPOINTS, LAYOUTS, MPII_KEYPOINTS, check_layout, check_sigmas, flip_permutation, get_layout,
    layout_for_names,
)


@pytest.mark.parametrize("key", sorted(LAYOUTS))
def test_layout_is_consistent(key):
    layout = LAYOUTS[key]
    k = layout.num_keypoints
    assert layout.name == key
    check_layout(layout.keypoint_names, layout.skeleton, layout.flip_pairs)
    check_sigmas(layout.oks_sigmas, k)
    perm = flip_permutation(k, layout.flip_pairs)
    assert sorted(perm) == list(range(k))
    assert [perm[i] for i in perm] == list(range(k))  # an involution
    assert all(perm[i] != i for pair in layout.flip_pairs for i in pair)
    for a, b in layout.flip_pairs:  # a flip pair is a left/right pair of the same part
        na, nb = layout.keypoint_names[a], layout.keypoint_names[b]
        assert {na.split("_")[0], nb.split("_")[0]} == {"left", "right"}
        assert na.split("_", 1)[1] == nb.split("_", 1)[1]
    unpaired = set(range(k)) - {i for p in layout.flip_pairs for i in p}
    assert not any(layout.keypoint_names[i].startswith(("left_", "right_")) for i in unpaired)
    joined = {i for pair in layout.skeleton for i in pair}
    assert joined == set(range(1, k + 1))  # every keypoint is drawn


def test_layout_sizes_and_sigmas():
    assert [LAYOUTS[k].num_keypoints for k in ("coco17", "halpe26", "mpii16")] == [17, 26, 16]
    assert LAYOUTS["mpii16"].oks_sigmas is None
    assert LAYOUTS["halpe26"].oks_sigmas[:17] == LAYOUTS["coco17"].oks_sigmas
    assert LAYOUTS["halpe26"].oks_sigmas[17:] == pytest.approx([0.08] * 3 + [0.089] * 6)


def test_mpii_flip_permutation_is_the_documented_one():
    assert flip_permutation(16, LAYOUTS["mpii16"].flip_pairs) == [5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10]


def test_layout_for_names():
    assert layout_for_names(list(COCO_KEYPOINTS)).name == "coco17"
    assert layout_for_names([n.upper() for n in MPII_KEYPOINTS]).name == "mpii16"
    assert layout_for_names(LAYOUTS["halpe26"].keypoint_names).name == "halpe26"
    assert layout_for_names(["a", "b"]) is None


def test_bad_layouts_raise_one_line_errors():
    with pytest.raises(ValueError, match="unknown keypoint layout 'x'; choose from coco17"):
        get_layout("x")
    with pytest.raises(ValueError, match="unique"):
        check_layout(["a", "a"], [], [])
    with pytest.raises(ValueError, match="at most once"):
        check_layout(["a", "b", "c"], [], [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="skeleton"):
        check_layout(["a", "b"], [[0, 1]], [])
    with pytest.raises(ValueError, match="2 positive numbers"):
        check_sigmas([0.1], 2)
    with pytest.raises(ValueError, match="positive"):
        check_sigmas([0.1, float("nan")], 2)
