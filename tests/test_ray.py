"""rmpe.runtime.ray on one local Ray instance (num_cpus=2, started once for the module): the same
results as the single-process pipeline, failures per row, URI lists in, Parquet and JSON lines out."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from rmpe.runtime.cli import main as run_main  # noqa: E402
from rmpe.runtime.ray import RayError, image_rows, pose_dataset, read_uri_list, write_results  # noqa: E402
from rmpe.training.synth import write_dataset  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (about 2-4 s to start on two shared cores)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Ten synthetic images with detections, plus a file that is not an image."""
    root = tmp_path_factory.mktemp("ray-data")
    write_dataset(str(root), 10, seed=21, progress=False)
    (root / "images" / "000000000099.jpg").write_bytes(b"not a jpeg")
    return root


def test_ray_gives_the_pipeline_results(default_onnx: Path, images: Path, tmp_path: Path, local_ray, capsys) -> None:
    argv = [str(default_onnx), str(images / "images"), "--boxes", str(images / "detections.json"), "--threads", "1"]
    assert run_main([*argv, "--out", str(tmp_path / "plain.json"), "--quiet"]) == 0
    capsys.readouterr()
    assert run_main([*argv, "--out", str(tmp_path / "ray.json"), "--ray", "--ray-workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "000000000099.jpg" in err  # the bad file is reported, the job goes on
    assert "10 images" in err and "2 workers" in err
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "plain.json").read_bytes()


def test_uri_list_in_parquet_and_json_lines_out(default_onnx: Path, images: Path, tmp_path: Path, local_ray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((images / "images").glob("*.jpg"))[:3]
    listing = tmp_path / "uris.parquet"
    pq.write_table(pa.table({"uri": [f"file://{files[0]}", f"../{images.name}/images/{files[1].name}",
                                     str(files[2]), "s3://no-such-scheme-here/x.jpg".replace("s3", "nosuch")]}),
                   listing)
    rows = image_rows([str(listing)], detections=images / "detections.json")
    assert [r["name"] for r in rows] == [f.name for f in files] + ["x.jpg"]
    ds = pose_dataset(ray.data.from_items(rows), default_onnx, workers=1)
    write_results(ds, str(tmp_path / "out.parquet"))
    write_results(ds, str(tmp_path / "out.jsonl"))
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    lines = [json.loads(line) for p in sorted((tmp_path / "out.jsonl").iterdir()) for line in p.read_text().splitlines()]
    for got in (table, lines):
        by_name = {r["name"]: r for r in got}
        assert by_name["x.jpg"]["error"].startswith("cannot fetch") and by_name["x.jpg"]["results"] == ""
        plain = tmp_path / "plain.json"
        assert run_main([str(default_onnx), *map(str, files), "--boxes", str(images / "detections.json"),
                         "--out", str(plain), "--quiet", "--threads", "1"]) == 0
        expected = json.loads(plain.read_text())
        assert [e for f in files for e in json.loads(by_name[f.name]["results"])] == expected


def test_bad_uri_lists_are_one_line(tmp_path: Path, default_onnx: Path, capsys) -> None:
    bad = tmp_path / "list.json"
    bad.write_text(json.dumps([{"name": "a.jpg"}]))
    with pytest.raises(RayError, match="entry 0 is not a URI"):
        read_uri_list(bad)
    bad.write_text("[1, 2")
    assert run_main([str(default_onnx), str(bad), "--ray"]) == 2
    assert "cannot read the list of URIs" in capsys.readouterr().err
    assert run_main([str(default_onnx), "--ray", str(tmp_path), str(bad)]) == 2
    assert "not a Ray address" in capsys.readouterr().err
