"""`rmpe-bench ap` and `evaluate()`: COCO keypoint AP of models run through rmpe-run on a synthetic set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rmpe.benchmarks.ap import evaluate
from rmpe.benchmarks.cli import main as bench_main
from test_runtime_models import make_pose_model, metadata

pytest.importorskip("pycocotools")
COLUMNS = ["model", "precision", "nms", "AP", "AP50", "AP75", "APm", "APl", "AR", "images/s"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rmpe.training.data_cli import main as data_main

    out = tmp_path_factory.mktemp("synth")
    assert data_main(["synth", "--out", str(out), "--images", "4", "--seed", "3"]) == 0
    return out


def gt_results(annotations: dict) -> list[dict]:
    """The ground truth as COCO keypoint results (score 1)."""
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": list(a["keypoints"]), "score": 1.0}
            for a in annotations["annotations"]]


def header(output: str) -> list[str]:
    """Column names of the first Markdown table row in ``output``."""
    line = next(x for x in output.splitlines() if x.startswith("| model"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_ground_truth_scores_one(data):
    gt = json.loads((data / "person_keypoints.json").read_text())
    path = data / "gt_results.json"
    path.write_text(json.dumps(gt_results(gt)))
    stats = evaluate(path, data / "person_keypoints.json")
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert stats["nonfinite"] == 0


def test_perturbed_results_score_below_one(data):
    gt = json.loads((data / "person_keypoints.json").read_text())
    rng = np.random.default_rng(0)
    results = gt_results(gt)
    for r, a in zip(results, gt["annotations"]):
        kps = np.array(r["keypoints"], float).reshape(-1, 3)
        kps[:, :2] += rng.normal(0, 0.1 * max(a["bbox"][2:]), (len(kps), 2))
        r["keypoints"] = kps.ravel().tolist()
    assert evaluate(results, gt)["AP"] < 0.9


def test_nan_keypoints_are_misses_not_matches(data):
    # COCOeval alone would count a NaN OKS as a match at every threshold
    gt = json.loads((data / "person_keypoints.json").read_text())
    results = gt_results(gt)
    results[0]["keypoints"] = [math.nan if i % 3 < 2 else 1.0 for i in range(51)]
    stats = evaluate(results, gt)
    assert stats["AP"] < 1.0 and stats["nonfinite"] == 17


def test_image_ids_restrict_the_evaluation(data):
    gt = json.loads((data / "person_keypoints.json").read_text())
    only_first = [r for r in gt_results(gt) if r["image_id"] == 1]
    assert evaluate(only_first, gt)["AR"] < 1.0
    assert evaluate(only_first, gt, image_ids=[1])["AP"] == pytest.approx(1.0)


def test_cli_table_with_stick_figure_model(data, tmp_path, capsys):
    model = make_pose_model(tmp_path / "fake.onnx")
    flip = make_pose_model(tmp_path / "flip.onnx", metadata(precision="fp16", flip_test=True))
    out = tmp_path / "ap.json"
    assert bench_main(["ap", str(model), "--data", str(data), "--nms", "alphapose", "none",
                       "--flip-model", str(flip), "--limit", "2", "--out-json", str(out)]) == 0
    printed = capsys.readouterr()
    assert header(printed.out) == COLUMNS
    rows = [x for x in printed.out.splitlines() if x.startswith("| ")][1:]
    assert len(rows) == 4
    assert rows[0].startswith(f"| {model} (untrained) | fp32 | alphapose |") and "| fp32 | none |" in rows[1]
    assert rows[3].startswith(f"| {flip} (untrained) | fp16 + flip | none |")
    assert "Average Precision" not in printed.out + printed.err
    saved = json.loads(out.read_text())
    assert saved["images"] == 2 and [r["nms"] for r in saved["rows"]] == ["alphapose", "none"] * 2
    assert all(0.0 <= r["stats"]["AP"] <= 1.0 and r["images_per_s"] > 0 for r in saved["rows"])


def test_cli_refine_rows(data, tmp_path, capsys):
    model = make_pose_model(tmp_path / "fake.onnx")
    assert bench_main(["ap", str(model), "--data", str(data), "--nms", "rmpe", "alphapose", "--refine",
                       "--limit", "2"]) == 0
    rows = [x for x in capsys.readouterr().out.splitlines() if x.startswith(f"| {model}")]
    assert [r.split("|")[3].strip() for r in rows] == ["rmpe + refine", "alphapose + refine"]


def test_cli_upscale_rows_and_moves(data, tmp_path, capsys):
    """The stick-figure model draws its figure into each box, so ×2 and ×4 copies move nothing and
    the AP of every scale is the same; rows come per scale with the moves against ×1."""
    model = make_pose_model(tmp_path / "fake.onnx")
    out = tmp_path / "ap.json"
    assert bench_main(["ap", str(model), "--data", str(data), "--limit", "2", "--upscale", "2,4",
                       "--out-json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert header(printed)[3:5] == ["scale", "keypoint move p50 / p90 / max px"]
    rows = json.loads(out.read_text())["rows"]
    assert [r["scale"] for r in rows] == [1, 2, 4] and rows[0]["shift_px"] is None
    assert all(r["shift_px"]["max"] < 0.01 for r in rows[1:])
    assert rows[1]["stats"]["AP"] == pytest.approx(rows[0]["stats"]["AP"], abs=1e-6)
    with pytest.raises(SystemExit):
        bench_main(["ap", str(model), "--data", str(data), "--upscale", "0,2"])


@pytest.mark.parametrize("problem", ["no data", "no model", "not flip", "bad limit", "no out folder", "refine none"])
def test_cli_bad_input_exits_2(data, tmp_path, capsys, problem):
    model = make_pose_model(tmp_path / "fake.onnx")
    argv = {"no data": ["ap", str(model), "--data", str(tmp_path / "nowhere")],
            "no model": ["ap", str(tmp_path / "missing.onnx"), "--data", str(data)],
            "not flip": ["ap", str(model), "--data", str(data), "--flip-model", str(model)],
            "bad limit": ["ap", str(model), "--data", str(data), "--limit", "0"],
            "no out folder": ["ap", str(model), "--data", str(data), "--out-json", str(tmp_path / "no" / "x.json")],
            "refine none": ["ap", str(model), "--data", str(data), "--nms", "rmpe", "none", "--refine"],
            }[problem]
    assert bench_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rmpe-bench ap: error: ")


@pytest.mark.slow
def test_cli_with_bundled_default_export(data, tmp_path, capsys):
    pytest.importorskip("torch")
    from rmpe.export.cli import main as export_main

    assert export_main(["--out", str(tmp_path / "export")]) == 0
    capsys.readouterr()
    model = tmp_path / "export" / "model.onnx"
    assert bench_main(["ap", str(model), "--data", str(data), "--nms", "rmpe", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert header(out) == COLUMNS
    row = next(x for x in out.splitlines() if x.startswith(f"| {model}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["fp32", "rmpe"] and "(untrained)" not in cells[0]
    assert float(cells[3]) > 0.05  # the bundled model is trained: it finds some of the synthetic people
