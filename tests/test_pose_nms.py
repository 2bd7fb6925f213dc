"""Parametric pose NMS: hand-worked cases, properties, and parity with the per-pair reference loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rmpe.benchmarks.nms_baseline import pose_nms_loop
from rmpe.benchmarks.nms_scenes import candidates, make_scene
from rmpe.runtime.pose_nms import PoseNMSResult, pose_nms

K = 17
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _person(x0: float, y0: float, step: float = 10.0, k: int = K) -> np.ndarray:
    """A (k, 2) pose: keypoints on a vertical line from (x0, y0), step px apart."""
    return np.stack([np.full(k, x0), y0 + step * np.arange(k)], axis=1)


def _box(pose: np.ndarray) -> np.ndarray:
    """The keypoints' bounding box, xyxy."""
    return np.r_[pose.min(0), pose.max(0)]


def _assert_partition(res: PoseNMSResult, n: int) -> None:
    """Every input is in exactly one kept cluster or in ``dropped``; picks are in their clusters."""
    everything = np.concatenate([*res.merged, res.dropped]) if n else np.zeros(0, int)
    assert np.array_equal(np.sort(everything), np.arange(n))
    for p, members in zip(res.pick, res.merged):
        assert p in members


# --- hand-made cases, worked out on paper -------------------------------------------------------

def test_two_duplicates_merge_to_weighted_values() -> None:
    """B is A shifted 2 px right: 17 matches (≤ 7 px) → one cluster; weights 0.8 and 0.4."""
    a = _person(100, 100)
    b = a + [2.0, 0.0]
    poses = np.stack([a, b])
    boxes = np.stack([[90, 90, 190, 290], [92, 90, 192, 290]]).astype(float)  # ref = 20 px
    scores = np.stack([np.full(K, 0.8), np.full(K, 0.4)])
    res = pose_nms(boxes, np.array([0.9, 0.5]), poses, scores, ids=np.array([7, 8]))
    assert res.pick.tolist() == [0] and res.merged[0].tolist() == [0, 1]
    # x̂ = (0.8·100 + 0.4·102) / 1.2 = 100.666…, ŝ = (0.64 + 0.16) / 1.2 = 0.666…
    np.testing.assert_allclose(res.keypoints[0, :, 0], 100 + 2 / 3, atol=1e-4)
    np.testing.assert_allclose(res.keypoints[0, :, 1], a[:, 1], atol=1e-4)
    np.testing.assert_allclose(res.keypoint_scores[0], 2 / 3, atol=1e-6)
    # score = mean ŝ + box score + 1.25·max ŝ = 2/3 + 0.9 + 1.25·2/3
    np.testing.assert_allclose(res.scores, [2 / 3 + 0.9 + 1.25 * 2 / 3], atol=1e-6)
    assert res.ids.tolist() == [7] and res.boxes.tolist() == [boxes[0].tolist()]
    assert res.box_scores.tolist() == [0.9] and res.dropped.size == 0


def test_merge_radius_excludes_far_keypoints() -> None:
    """B matches A on 16 keypoints; its last keypoint is 40 px off (> 15 px) and is not merged."""
    a = _person(100, 100)
    b = a.copy()
    b[-1, 0] += 40
    res = pose_nms(np.tile([90.0, 90, 190, 290], (2, 1)), np.ones(2), np.stack([a, b]),
                   np.stack([np.full(K, 0.9), np.full(K, 0.6)]))
    assert res.merged[0].tolist() == [0, 1]
    assert res.keypoints[0, -1, 0] == pytest.approx(100.0)
    assert res.keypoint_scores[0, -1] == pytest.approx(0.9)  # 0.81 / 0.9
    assert res.keypoint_scores[0, 0] == pytest.approx((0.81 + 0.36) / 1.5)


def test_two_separate_people_are_both_kept() -> None:
    a, b = _person(100, 100), _person(400, 100)
    res = pose_nms(np.stack([_box(a), _box(b)]), np.ones(2), np.stack([a, b]),
                   np.stack([np.full(K, 0.6), np.full(K, 0.9)]))
    assert res.pick.tolist() == [1, 0]  # greedy order: higher mean keypoint score first
    assert [m.tolist() for m in res.merged] == [[1], [0]]
    np.testing.assert_allclose(res.keypoints, np.stack([b, a]), atol=1e-4)


def test_low_score_pick_is_dropped_with_its_cluster() -> None:
    a, b = _person(100, 100), _person(400, 100)
    scores = np.stack([np.full(K, 0.29), np.full(K, 0.9)])  # max 0.29 < 0.3
    res = pose_nms(np.stack([_box(a), _box(b)]), np.ones(2), np.stack([a, b]), scores)
    assert res.pick.tolist() == [1] and res.dropped.tolist() == [0]
    assert res.keypoints.shape == (1, K, 2)


def test_person_score_by_mode() -> None:
    """A: half its keypoints sure (0.95), half not (0.35), a sure box; B: every keypoint 0.6, a weak box.

    AlphaPose's sum ranks A first (0.65 + 1.0 + 1.25·0.95 > 0.6 + 0.1 + 1.25·0.6); rmpe's median
    ranks B first (0.6 > 0.35: A's median keypoint is one of its unsure ones).
    """
    a, b = _person(100, 100), _person(400, 100)
    a_scores = np.r_[np.full(8, 0.95), np.full(9, 0.35)]
    args = (np.stack([_box(a), _box(b)]), np.array([1.0, 0.1]), np.stack([a, b]), np.stack([a_scores, np.full(K, 0.6)]))
    alphapose = pose_nms(*args, mode="alphapose")
    np.testing.assert_allclose(alphapose.scores, [a_scores.mean() + 1.0 + 1.25 * 0.95, 0.6 + 0.1 + 1.25 * 0.6], rtol=1e-6)
    rmpe = pose_nms(*args, mode="rmpe")
    assert rmpe.pick.tolist() == [0, 1]  # the greedy order is still by mean keypoint score
    np.testing.assert_allclose(rmpe.scores, [0.35, 0.6], rtol=1e-6)
    np.testing.assert_allclose(pose_nms(*args, mode="alphapose", person_score="median").scores, rmpe.scores, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown person score 'mean'"):
        pose_nms(*args, person_score="mean")


def test_area_filter() -> None:
    """A pose spanning 1 px × 160 px has 2.25·1·160 = 360 px² of area."""
    pose = _person(100, 100)
    pose[0, 0] += 1
    args = (_box(pose)[None], np.ones(1), pose[None], np.full((1, K), 0.9))
    assert pose_nms(*args, area_thresh=359.0).pick.tolist() == [0]
    res = pose_nms(*args, area_thresh=361.0)
    assert res.pick.size == 0 and res.dropped.tolist() == [0]


def test_ties_go_to_the_first_index() -> None:
    a = _person(100, 100)
    poses = np.stack([a, a + [1.0, 0.0], a + [2.0, 0.0]])
    res = pose_nms(np.tile(_box(a), (3, 1)), np.ones(3), poses, np.full((3, K), 0.5))
    assert res.pick.tolist() == [0] and res.merged[0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(res.keypoints[0, :, 0], 101.0, atol=1e-4)


def test_zero_scores_count_as_1e5() -> None:
    a = _person(100, 100)
    res = pose_nms(_box(a)[None], np.ones(1), a[None], np.r_[np.zeros(K - 1), 0.9][None])
    assert res.keypoint_scores[0, 0] == pytest.approx(1e-5)


def test_pick_is_in_its_own_cluster_for_few_keypoints() -> None:
    """With K = 2 neither the similarity nor the match count reaches its threshold for p itself."""
    a = _person(100, 100, k=2)
    res = pose_nms(_box(a)[None], np.ones(1), a[None], np.full((1, 2), 0.9))
    assert res.pick.tolist() == [0] and res.merged[0].tolist() == [0]


@pytest.mark.parametrize("mode", ["alphapose", "rmpe"])
def test_empty_single_and_other_k(mode: str) -> None:
    empty = pose_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), np.zeros((0, 5)), mode=mode)
    assert empty.keypoints.shape == (0, 5, 2) and empty.pick.size == 0 and empty.ids is None
    a = _person(10, 10, k=5)
    one = pose_nms(_box(a)[None], np.ones(1), a[None], np.full((1, 5), 0.7), mode=mode)
    assert one.pick.tolist() == [0] and one.keypoints.dtype == np.float32
    np.testing.assert_allclose(one.keypoints[0], a, atol=1e-4)


@pytest.mark.parametrize("mode", ["alphapose", "rmpe"])
def test_nan_keypoints_are_missing(mode: str) -> None:
    a = _person(100, 100)
    b = a + [2.0, 0.0]
    b[:3] = np.nan
    c = np.full_like(a, np.nan)  # no keypoints at all: its own, dropped, cluster
    res = pose_nms(np.stack([_box(a)] * 3), np.ones(3), np.stack([a, b, c]), np.full((3, K), 0.8),
                   mode=mode)
    assert res.merged[0].tolist() == [0, 1] and res.dropped.tolist() == [2]
    np.testing.assert_allclose(res.keypoints[0, :3], a[:3], atol=1e-4)  # only A contributes
    np.testing.assert_allclose(res.keypoints[0, 3:, 0], 101.0, atol=1e-4)
    assert np.isfinite(res.scores).all()


def test_shape_errors_and_unknown_constants() -> None:
    good = (np.zeros((2, 4)), np.zeros(2), np.zeros((2, K, 2)), np.zeros((2, K)))
    with pytest.raises(ValueError, match="pose_scores"):
        pose_nms(*good[:3], np.zeros((2, K + 1)))
    with pytest.raises(ValueError, match="boxes"):
        pose_nms(np.zeros((3, 4)), *good[1:])
    with pytest.raises(ValueError, match="poses"):
        pose_nms(good[0], good[1], np.zeros((2, K)), good[3])
    with pytest.raises(ValueError, match="ids"):
        pose_nms(*good, ids=np.zeros(3))
    with pytest.raises(ValueError, match="mode"):
        pose_nms(*good, mode="nope")
    with pytest.raises(TypeError, match="match_cap"):
        pose_nms(*good, mode="rmpe", match_cap=3.0)


# --- properties ---------------------------------------------------------------------------------

def _scene(seed: int, n_people: int, jitter_rel: float):
    """A random scene of people 20–800 px with duplicate candidates."""
    return make_scene(np.random.default_rng(seed), n_people, jitter_rel=jitter_rel, image=1500.0)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n_people=st.integers(0, 8),
       jitter=st.floats(0.0, 0.1), mode=st.sampled_from(["alphapose", "rmpe"]))
def test_partition_and_count(seed: int, n_people: int, jitter: float, mode: str) -> None:
    scene = _scene(seed, n_people, jitter)
    res = pose_nms(*candidates(scene), mode=mode)
    assert len(res.pick) <= len(scene.poses)
    _assert_partition(res, len(scene.poses))


@FAST
@given(seed=st.integers(0, 2**32 - 1), n_people=st.integers(1, 8), jitter=st.floats(0.0, 0.1),
       factor=st.floats(1e-3, 1e3))
def test_rmpe_decisions_are_scale_invariant(seed: int, n_people: int, jitter: float,
                                            factor: float) -> None:
    boxes, box_scores, poses, scores = candidates(_scene(seed, n_people, jitter))
    base = pose_nms(boxes, box_scores, poses, scores, mode="rmpe")
    scaled = pose_nms(boxes * factor, box_scores, poses * factor, scores, mode="rmpe")
    assert np.array_equal(base.pick, scaled.pick)
    assert all(np.array_equal(a, b) for a, b in zip(base.merged, scaled.merged))
    np.testing.assert_allclose(scaled.keypoints, base.keypoints * factor, rtol=1e-5)
    np.testing.assert_allclose(scaled.scores, base.scores, rtol=1e-5)


@FAST
@example(seed=404, n_people=6, jitter=0.0195)  # 7 poses for 6 people; the second pass merges two
@example(seed=3528742594, n_people=2, jitter=0.01912131119816389)
@given(seed=st.integers(0, 2**32 - 1), n_people=st.integers(1, 6), jitter=st.floats(0.0, 0.02))
def test_rmpe_second_pass_only_merges_leftover_duplicates(seed: int, n_people: int,
                                                          jitter: float) -> None:
    """A second pass merges only duplicates of one person; every pose it keeps alone is unchanged.

    Not idempotent: a duplicate just under both thresholds of its pick (similarity 22.0 < 22.48)
    survives as a pose of its own, yet the merged pose lies nearer to it than the pick did (and
    may rank below it), so a second pass merges the two. One pose per person: nothing changes.
    """
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, n_people, jitter_rel=jitter, size_range=(20, 100), image=1.0)
    offsets = np.arange(n_people)[:, None] * [300.0, 0.0]  # one person per 300 px column
    shift = offsets[scene.person]
    poses, boxes = scene.poses + shift[:, None], scene.boxes + np.tile(shift, 2)
    first = pose_nms(boxes, scene.box_scores, poses, scene.pose_scores, mode="rmpe")
    again = pose_nms(first.boxes, first.box_scores, first.keypoints, first.keypoint_scores,
                     mode="rmpe")
    _assert_partition(again, len(first.pick))
    person = scene.person[first.pick]  # the true person of each first-pass pose
    for i, (p, members) in enumerate(zip(again.pick, again.merged)):
        assert len(set(person[members].tolist())) == 1
        if len(members) == 1:
            np.testing.assert_allclose(again.keypoints[i], first.keypoints[p], atol=1e-4)
            np.testing.assert_allclose(again.keypoint_scores[i], first.keypoint_scores[p], atol=1e-6)


# --- parity with the reference loop --------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 2**32 - 1), n_people=st.integers(0, 6), jitter_px=st.floats(0.25, 10.0),
       image=st.floats(100.0, 2000.0), k=st.sampled_from([17, 5]),
       area=st.sampled_from([0.0, 2000.0]))
def test_alphapose_parity_with_reference_loop(seed: int, n_people: int, jitter_px: float,
                                              image: float, k: int, area: float) -> None:
    scene = make_scene(np.random.default_rng(seed), n_people, k=k, jitter_px=jitter_px,
                       jitter_rel=0.0, image=image)
    ids = np.arange(len(scene.poses)) + 100
    ours = pose_nms(*candidates(scene), ids=ids, area_thresh=area)
    ref = pose_nms_loop(*candidates(scene), ids=ids, area_thresh=area)
    assert ours.pick.tolist() == ref.pick.tolist()
    assert [m.tolist() for m in ours.merged] == [m.tolist() for m in ref.merged]
    assert ours.dropped.tolist() == ref.dropped.tolist()
    np.testing.assert_allclose(ours.keypoints, ref.keypoints, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.keypoint_scores, ref.keypoint_scores, atol=1e-6)
    np.testing.assert_allclose(ours.scores, ref.scores, atol=1e-5)
    assert np.array_equal(ours.ids, ref.ids) and np.array_equal(ours.boxes, ref.boxes)
