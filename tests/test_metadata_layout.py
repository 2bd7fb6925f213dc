"""Model metadata's layout and OKS sigmas: filled for older models, validated for new ones."""

import json

import pytest

from rmpe.runtime.keypoints import LAYOUTS
from rmpe.runtime.metadata import ModelMetadata


def _props(layout_key: str, **over) -> dict[str, str]:
    layout = LAYOUTS[layout_key]
    values = dict(keypoint_names=layout.keypoint_names, skeleton=layout.skeleton, flip_pairs=layout.flip_pairs,
                  input_size=[64, 48], normalisation={"scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]})
    values.update(over)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


@pytest.mark.parametrize("key", sorted(LAYOUTS))
def test_old_model_gets_layout_and_sigmas_from_its_names(key):
    meta = ModelMetadata.from_props(_props(key))
    assert meta.layout == key
    assert meta.oks_sigmas == LAYOUTS[key].oks_sigmas
    again = ModelMetadata.from_props(meta.to_props())
    assert (again.layout, again.oks_sigmas) == (meta.layout, meta.oks_sigmas)


def test_json_sidecar_round_trip(tmp_path):
    meta = ModelMetadata.from_props(_props("halpe26"))
    meta.write_json(tmp_path / "model.json")
    back = ModelMetadata.read_json(tmp_path / "model.json")
    assert back.layout == "halpe26" and len(back.oks_sigmas) == 26


def test_explicit_sigmas_and_a_layout_of_ones_own_are_kept():
    sigmas = [0.05] * 16
    meta = ModelMetadata.from_props(_props("mpii16", oks_sigmas=sigmas))
    assert meta.oks_sigmas == sigmas
    custom = ModelMetadata.from_props(_props("mpii16", keypoint_names=[f"k{i}" for i in range(16)], layout="mine"))
    assert (custom.layout, custom.oks_sigmas) == ("mine", None)
    unknown = ModelMetadata.from_props(_props("mpii16", keypoint_names=[f"k{i}" for i in range(16)]))
    assert (unknown.layout, unknown.oks_sigmas) == ("", None)


@pytest.mark.parametrize("over, message", [
    (dict(oks_sigmas=[0.1] * 3), "metadata oks_sigmas must be 16 positive numbers"),
    (dict(oks_sigmas=[0.1] * 15 + [-1]), "metadata oks_sigmas must be 16"),
    (dict(layout="coco17"), "metadata layout coco17 has 17 keypoints, keypoint_names has 16"),
])
def test_bad_layout_entries_raise_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message):
        ModelMetadata.from_props(_props("mpii16", **over))


def test_layout_that_is_not_a_name_is_refused():
    meta = ModelMetadata.from_props(_props("mpii16"))
    meta.layout = [1]
    with pytest.raises(ValueError, match="metadata layout must be a name"):
        meta.check()
