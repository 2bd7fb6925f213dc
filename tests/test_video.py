"""Video in and out: PyAV decoding (frame indices, --every/--start/--end, rotation), --save-video,
results per frame, folders mixing images and videos, resuming a video run, bounded read-ahead."""

from __future__ import annotations

import json
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")

from rmpe.runtime.cli import main as run_main  # noqa: E402
from rmpe.runtime.video import FrameRange, VideoReader, VideoWriter, ahead, parse_time  # noqa: E402
from rmpe.runtime.writers import journal_path  # noqa: E402
from rmpe.training.synth_video import ClipConfig, write_clip  # noqa: E402

CLIP = ClipConfig(frames=12, fps=10, size=(192, 144), min_people=2, max_people=2)


def numbered_video(path: Path, frames: int = 20, fps: int = 10, rotation: int = 0) -> Path:
    """Frames whose brightness is 10 * index, with a white square in the top-left corner."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            image = np.full((48, 64, 3), 10 * i, np.uint8)
            image[:8, :8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 12-frame synthetic clip of two walkers, with its ground truth and detections."""
    root = tmp_path_factory.mktemp("clip")
    write_clip(root, seed=3, clip=0, config=CLIP)
    return root / "clip_000.mp4"


def brightness(image: np.ndarray) -> int:
    return int(round(float(image[20:, 20:].mean()) / 10))


def test_frames_every_start_end(tmp_path: Path) -> None:
    video = numbered_video(tmp_path / "n.mp4")
    with VideoReader(video) as reader:
        assert reader.fps == 10 and reader.frame_count == 20
        frames = list(reader.frames())
    assert [i for i, _ in frames] == list(range(20))
    assert [brightness(im) for _, im in frames] == list(range(20))
    for span, expected in ((FrameRange(every=3), list(range(0, 20, 3))),
                           (FrameRange(start=0.5, end=1.2), list(range(5, 12))),
                           (FrameRange(every=4, start=0.55, end=1.9), [6, 10, 14, 18])):
        with VideoReader(video) as reader:
            got = list(reader.frames(span))
        assert [i for i, _ in got] == expected
        assert [brightness(im) for _, im in got] == expected  # seeking never renumbers frames


@pytest.mark.parametrize("rotation, corner", [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right")])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int, corner: str) -> None:
    video = numbered_video(tmp_path / "r.mp4", frames=2, rotation=rotation)
    with VideoReader(video) as reader:
        image = next(reader.frames())[1]
    assert image.shape[:2] == ((64, 48) if rotation % 180 else (48, 64))
    h, w = image.shape[:2]
    corners = {"bottom-left": image[h - 4, 3], "top-right": image[3, w - 4], "bottom-right": image[h - 4, w - 4]}
    assert corners[corner].min() > 200 and image[3, 3].max() < 100


def test_bad_video_is_one_line(tmp_path: Path) -> None:
    from rmpe.runtime.video import VideoError

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError, match="cannot open as a video"):
        VideoReader(junk)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("1:xx")
    assert parse_time("1:02.5") == 62.5 and parse_time("1:00:00") == 3600


def test_writer_keeps_rate_and_pads_odd_sizes(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "o.mp4", Fraction(30000, 1001))
    for i in range(5):
        writer.add(np.full((45, 61, 3), 40 * i, np.uint8))
    assert writer.close() == tmp_path / "o.mp4" and not list(tmp_path.glob(".*partial*"))
    with VideoReader(tmp_path / "o.mp4") as reader:
        assert reader.fps == Fraction(30000, 1001) and reader.frame_count == 5
        assert next(reader.frames())[1].shape == (46, 62, 3)


def test_read_ahead_is_bounded() -> None:
    made = []

    def values():
        for i in range(50):
            made.append(i)
            yield i

    stream = ahead(values(), 3)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(made) <= 5  # one taken, three queued, one waiting to be queued
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "rmpe-video-decode"]


def test_run_on_a_clip_writes_frames_and_a_video(default_onnx: Path, clip: Path, tmp_path: Path, capsys) -> None:
    out, drawn = tmp_path / "r.json", tmp_path / "poses.mp4"
    assert run_main([str(default_onnx), str(clip), "--boxes", str(clip.with_suffix(".detections.json")), "--every", "2",
                     "--out", str(out), "--save-video", str(drawn), "--track", "--threads", "1"]) == 0
    results = json.loads(out.read_text())
    assert {r["frame"] for r in results} == set(range(0, 12, 2))
    assert all(r["image_id"] == r["frame"] and r["video"] == "clip_000.mp4" and r["idx"] >= 1 for r in results)
    with VideoReader(drawn) as reader:
        assert reader.fps == 5 and reader.frame_count == 6  # --every 2 halves the rate, the duration stays
        first = next(reader.frames())[1]
    with VideoReader(clip) as reader:
        source = next(reader.frames())[1]
    assert first.shape == source.shape and np.abs(first.astype(int) - source).max() > 100  # poses drawn
    assert "wrote" in capsys.readouterr().err


def test_alphapose_frame_ids_and_mixed_folder(default_onnx: Path, clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip.read_bytes())
    with VideoReader(clip) as reader:
        Image.fromarray(next(reader.frames())[1]).save(folder / "still.png")
    out = tmp_path / "r.json"
    assert run_main([str(default_onnx), str(folder), "--out", str(out), "--frame-ids", "alphapose", "--end", "0.3",
                     "--save-img", str(tmp_path / "vis"), "--quiet", "--threads", "1"]) == 0
    results = json.loads(out.read_text())
    assert results[0]["image_id"] == "still.png" and "frame" not in results[0]
    assert [r["image_id"] for r in results[1:]] == ["0.jpg", "1.jpg", "2.jpg"]  # whole-frame boxes: one each
    assert sorted(p.relative_to(tmp_path / "vis").as_posix() for p in (tmp_path / "vis").rglob("*") if p.is_file()) == [
        "a.mp4/000000.jpg", "a.mp4/000001.jpg", "a.mp4/000002.jpg", "still.png"]


def test_resume_continues_after_the_last_frame(default_onnx: Path, clip: Path, tmp_path: Path, capsys) -> None:
    argv = [str(default_onnx), str(clip), "--boxes", str(clip.with_suffix(".detections.json")), "--track",
            "--quiet", "--threads", "1"]
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    assert run_main([*argv, "--out", str(full)]) == 0
    assert run_main([*argv, "--out", str(part), "--end", "0.5"]) == 0
    lines = [json.dumps({"name": f"clip_000.mp4#{r['frame']}", "image_id": r["frame"],
                         "entries": [e for e in json.loads(full.read_text()) if e["frame"] == r["frame"]]})
             for r in {e["frame"]: e for e in json.loads(part.read_text())}.values()]
    journal_path(part).write_text("\n".join(lines) + "\n")  # the journal of a run stopped after frame 4
    assert run_main([*argv, "--out", str(part), "--resume"]) == 0
    assert "resuming: 0 of 0 images and 5 video frames" in capsys.readouterr().err
    assert json.loads(part.read_text()) == json.loads(full.read_text())  # same poses, and the same ids


@pytest.mark.parametrize("extra, message", [
    (["--save-video", "x.webm"], "cannot write .webm"),
    (["--save-video", "out.mp4", "--resume", "--out", "r.json"], "without --resume"),
    (["--end", "1", "--start", "2"], "must come after --start"),
    (["--every", "0"], "--every 0: must be a number of at least 1"),
    (["--ray"], "--ray runs images"),
])
def test_bad_video_options_are_one_line(default_onnx: Path, clip: Path, tmp_path: Path, capsys, extra, message) -> None:
    extra = [str(tmp_path / e) if e.endswith((".webm", ".mp4", ".json")) else e for e in extra]
    assert run_main([str(default_onnx), str(clip), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_save_video_needs_a_video(default_onnx: Path, tmp_path: Path, capsys) -> None:
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    assert run_main([str(default_onnx), str(tmp_path / "a.png"), "--save-video", str(tmp_path / "o.mp4")]) == 2
    assert "no video among the inputs" in capsys.readouterr().err
