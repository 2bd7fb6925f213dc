"""Other projects' checkpoints through `rmpe-export --checkpoint`: AlphaPose FastPose / FastPose-DUC /
SimplePose / HRNet, microsoft's SimpleBaseline, leoxiaobin's HRNet and the two stacked hourglasses.

Each checkpoint is made as its source saves it — our plain definition of the architecture, whose
state dict has the source's exact key names and shapes (checked against the key lists the sources'
own model code printed, in both directions), with random weights — and exported. The graph's raw
heatmaps must equal the network run on a crop made here in numpy by the source's own rules (an
OpenCV-style affine warp, the source's normalisation), and its keypoints the source's decode written
here in numpy (argmax, quarter offset away from the border, a non-positive peak zeroing the cell,
back through the crop affine; flip test with the one-column shift): the same numbers as the source.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rmpe.export.cli import main as export_main
from rmpe.export.networks import build_network
from rmpe.export.sources import CONVENTIONS, detect_arch, import_state
from rmpe.runtime.keypoints import LAYOUTS
from source_models import randomised, source_keys

CROP = (256, 192)  # the sources' COCO crop (h, w): real-sized inputs
IMAGE_SIZE = (300, 400)
BOXES = np.array([[40, 30, 160, 280], [180, 60, 330, 250], [-30, 150, 120, 340], [300, 10, 420, 140]], np.float32)

# name: (architecture, options, keypoints, key list of the source or None, how the source saves it, conventions)
CASES = {
    "alphapose-fastpose": ("fastpose", {}, 17, "alphapose_coco_256x192_res50_lr1e-3_1x.txt", "plain", "alphapose"),
    "alphapose-fastpose-duc": ("fastpose-duc", {}, 17, "alphapose_coco_256x192_res50_lr1e-3_1x-duc.txt", "plain", "alphapose"),
    "alphapose-simplepose": ("simplebaseline", {}, 17, "alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt", "plain", "alphapose"),
    "alphapose-fastpose-halpe26": ("fastpose", {}, 26, None, "plain", "alphapose"),
    "microsoft-simplebaseline": ("simplebaseline", {}, 17, "alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt", "microsoft",
                                 "simplebaseline"),
    "leoxiaobin-hrnet-w32": ("hrnet", {"width": 32}, 17, "hrnet_w32_coco17.txt", "plain", "hrnet"),
}


def saved_as_source(network: torch.nn.Module, how: str) -> dict[str, torch.Tensor]:
    """The state dict as the source writes it: AlphaPose and HRNet plain; microsoft's SimpleBaseline with its
    backbone at the top level, saved from a DataParallel (``module.``) inside ``{"state_dict": ...}``."""
    state = network.state_dict()
    if how == "microsoft":
        return {"state_dict": {"module." + k.removeprefix("preact."): v for k, v in state.items()}}
    return state


def image(seed: int = 0) -> np.ndarray:
    """A smooth, person-sized-structure RGB image with noise."""
    rng = np.random.default_rng(seed)
    h, w = IMAGE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 70 * np.sin(xx[..., None] / rng.uniform(6, 25, 3) + rng.uniform(0, 6, 3)) * np.cos(yy[..., None] / rng.uniform(6, 25, 3))
    return np.clip(base + rng.normal(0, 15, (h, w, 3)), 0, 255).astype(np.uint8)


def box_centre_size(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sources' box → centre and size: clipped to the image (AlphaPose's detection loader clamps its
    boxes so), the shorter side grown to the crop's aspect, then ×1.25."""
    h_img, w_img = IMAGE_SIZE
    x1, y1, x2, y2 = np.clip(box.astype(np.float64), 0, [w_img, h_img, w_img, h_img])
    w, h = x2 - x1, y2 - y1
    aspect = CROP[1] / CROP[0]
    w, h = max(w, h * aspect), max(h, w / aspect)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.array([w, h]) * 1.25


def warp_crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """OpenCV's warpAffine of the sources, in numpy: crop pixel (u, v) — centred on integer coordinates —
    reads the image point centre + ((u, v) − crop/2)·size/crop bilinearly, zero outside the image."""
    centre, size = box_centre_size(box)
    ch, cw = CROP
    v, u = np.mgrid[0:ch, 0:cw].astype(np.float64)
    x = centre[0] + (u - cw / 2) * size[0] / cw
    y = centre[1] + (v - ch / 2) * size[1] / ch
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    padded = np.zeros((img.shape[0] + 4, img.shape[1] + 4, 3), np.float64)
    padded[2:-2, 2:-2] = img

    def at(yi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        inside = (yi >= -2) & (yi < img.shape[0] + 2) & (xi >= -2) & (xi < img.shape[1] + 2)
        return padded[np.clip(yi + 2, 0, padded.shape[0] - 1), np.clip(xi + 2, 0, padded.shape[1] - 1)] * inside[..., None]

    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def network_input(crop: np.ndarray, conventions: str) -> torch.Tensor:
    """A crop (H, W, 3 RGB 0..255) normalised as the source does, (1, 3, H, W)."""
    conv = CONVENTIONS[conventions]
    pixels = crop[..., ::-1] if conv.channel_order == "bgr" else crop
    x = (pixels / 255.0 - np.array(conv.mean)) / np.array(conv.std)
    return torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))


def flipped_back(heatmaps: np.ndarray, flip_pairs: list[list[int]]) -> np.ndarray:
    """The mirrored crop's heatmaps mirrored back, left/right swapped and shifted one column right."""
    out = heatmaps[:, :, ::-1].copy()
    for a, b in flip_pairs:
        out[[a, b]] = out[[b, a]]
    out[:, :, 1:] = out[:, :, :-1].copy()
    return out


def decode(heatmaps: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sources' decode of (K, h, w) heatmaps to image pixels and raw-peak scores."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    index, peak = flat.argmax(1), flat.max(1)
    cells = np.stack([index % w, index // w], 1).astype(np.float64) * (peak > 0)[:, None]
    for j, (px, py) in enumerate(cells.astype(int)):
        if 1 < px < w - 1 and 1 < py < h - 1:
            hm = heatmaps[j]
            cells[j] += 0.25 * np.sign([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]])
    centre, size = box_centre_size(box)
    return centre + (cells - np.array([w, h]) / 2) * size / np.array([w, h]), peak


def reference(network: torch.nn.Module, img: np.ndarray, conventions: str, flip_pairs: list[list[int]]) -> tuple:
    """Per box: the raw heatmaps, and keypoints/scores with flip test, by the source's rules."""
    raws, keypoints, scores = [], [], []
    with torch.no_grad():
        for box in BOXES:
            crop = warp_crop(img, box)
            raw = network(network_input(crop, conventions))[0].numpy()
            mirrored = network(network_input(crop[:, ::-1], conventions))[0].numpy()
            kp, sc = decode((raw + flipped_back(mirrored, flip_pairs)) / 2, box)
            raws.append(raw), keypoints.append(kp), scores.append(sc)
    return np.stack(raws), np.stack(keypoints), np.stack(scores)


def run_export(tmp_path: Path, checkpoint: Path, *flags: str) -> tuple[ort.InferenceSession, dict]:
    out = tmp_path / "export"
    assert export_main(["--checkpoint", str(checkpoint), "--out", str(out), "--heatmaps", "--flip", "--crop-taps", "0",
                        "--max-boxes", "8", *flags]) == 0
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    return session, json.loads((out / "model.json").read_text())


def run_graph(session: ort.InferenceSession, img: np.ndarray) -> list[np.ndarray]:
    feeds = {"images": img[None], "image_sizes": np.array([IMAGE_SIZE], np.int32), "boxes": BOXES,
             "box_image_index": np.zeros(len(BOXES), np.int32)}
    return session.run(["keypoints", "scores", "heatmaps"], feeds)


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_source_checkpoint_exports_and_matches_the_sources_rules(tmp_path: Path, name: str) -> None:
    arch, options, num_keypoints, key_list, how, conventions = CASES[name]
    torch.manual_seed(0)
    network = randomised(build_network(arch, num_keypoints, options), seed=1)
    saved = saved_as_source(network, how)
    if key_list:  # the file holds exactly the source's keys, shapes and dtypes: nothing more, nothing less
        listed = source_keys(key_list)
        if how == "microsoft":  # PoseResNet: AlphaPose's SimplePose keys without the backbone's prefix
            listed = {"module." + k.removeprefix("preact."): v for k, v in listed.items()}
        tensors = saved["state_dict"] if how == "microsoft" else saved
        assert {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in tensors.items()} == listed
    checkpoint = tmp_path / "source.pth"
    torch.save(saved, checkpoint)

    session, meta = run_export(tmp_path, checkpoint)
    layout = LAYOUTS[{17: "coco17", 26: "halpe26"}[num_keypoints]]
    assert meta["keypoint_names"] == list(layout.keypoint_names) and meta["input_size"] == list(CROP)
    assert meta["extra"]["architecture"]["arch"] == arch and meta["extra"]["conventions"]["flip_shift"] == 1
    assert [o.name for o in session.get_outputs()] == ["keypoints", "scores", "heatmaps"]
    assert session.get_outputs()[2].shape == ["boxes", num_keypoints, CROP[0] // 4, CROP[1] // 4]

    img = image()
    keypoints, scores, heatmaps = run_graph(session, img)
    raw, ref_keypoints, ref_scores = reference(network, img, conventions, layout.flip_pairs)
    assert np.abs(heatmaps - raw).max() <= 1e-4 * np.abs(raw).max()
    assert np.abs(keypoints - ref_keypoints).max() <= 0.05
    assert np.abs(scores - ref_scores).max() <= 1e-4 * np.abs(ref_scores).max()


def test_alphapose_hrnet_takes_alphapose_conventions_when_asked(tmp_path: Path) -> None:
    """AlphaPose's HRNet has leoxiaobin's keys: auto picks leoxiaobin's input; --conventions alphapose AlphaPose's."""
    with torch.device("meta"):
        keys = build_network("hrnet", 17, {"width": 32}).state_dict()
    assert detect_arch(keys) == "hrnet"
    torch.manual_seed(0)
    network = randomised(build_network("hrnet", 17, {"width": 32}), seed=2)
    checkpoint = tmp_path / "hrnet_w32_256x192.pth"
    torch.save(network.state_dict(), checkpoint)
    session, meta = run_export(tmp_path, checkpoint, "--conventions", "alphapose", "--input-size", "128x96")
    assert meta["normalisation"]["mean"] == list(CONVENTIONS["alphapose"].mean) and meta["normalisation"]["std"] == [1, 1, 1]


def test_detection_reads_each_sources_keys() -> None:
    expected = {"alphapose_coco_256x192_res50_lr1e-3_1x.txt": "fastpose",
                "alphapose_coco_256x192_res50_lr1e-3_1x-duc.txt": "fastpose-duc",
                "alphapose_coco_256x192_res152_lr1e-3_1x-duc.txt": "fastpose-duc",
                "alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt": "simplebaseline",
                "hrnet_w32_coco17.txt": "hrnet", "princeton_hg2.txt": "hourglass-princeton",
                "bearpaw_hg2.txt": "hourglass-bearpaw"}
    for key_list, arch in expected.items():
        assert detect_arch(source_keys(key_list)) == arch, key_list
    microsoft = {k.removeprefix("preact."): v for k, v in source_keys("alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt").items()}
    assert detect_arch(microsoft) == "simplebaseline"


@pytest.mark.parametrize("source", ["hourglass-bearpaw", "hourglass-princeton"])
def test_hourglass_checkpoints_are_recognised_by_rmpe_export(tmp_path: Path, source: str) -> None:
    """A 2-stack MPII hourglass in the source's own key layout and wrapper: detected, MPII 16, 256x256."""
    from test_hourglass_sources import WRAPPERS, random_source_state

    layout = source_keys({"hourglass-bearpaw": "bearpaw_hg2.txt", "hourglass-princeton": "princeton_hg2.txt"}[source])
    state = random_source_state(layout)
    checkpoint = tmp_path / "checkpoint.pth.tar"
    torch.save({"state_dict": {WRAPPERS[source] + k: v for k, v in state.items()}}, checkpoint)
    session, meta = run_export(tmp_path, checkpoint)
    assert meta["keypoint_names"] == list(LAYOUTS["mpii16"].keypoint_names) and meta["input_size"] == [256, 256]
    assert meta["extra"]["architecture"]["stacks"] == 2 and f"({source.split('-')[1]})" in meta["decode"]
    keypoints, scores, heatmaps = run_graph(session, image())
    assert keypoints.shape == (len(BOXES), 16, 2) and heatmaps.shape == (len(BOXES), 16, 64, 64)
    assert np.isfinite(keypoints).all()


def test_bad_source_checkpoints_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with torch.device("meta"):
        keys = build_network("fastpose", 17, {}).state_dict()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in keys.items()}
    cases = {
        "dcn": ({**state, "preact.layer2.0.conv2_offset.weight": torch.zeros(18, 128, 3, 3)}, [], "DCN"),
        "missing": ({k: v for k, v in state.items() if k != "conv_out.bias"}, [], "missing (1): conv_out.bias"),
        "layout": (state, ["--layout", "halpe26"], "--layout halpe26 has 26 keypoints"),
        "arch": (state, ["--arch", "hrnet"], "the checkpoint's keys are a fastpose's"),
        "heads": ({**state, "conv_out.weight": torch.zeros(5, 128, 3, 3), "conv_out.bias": torch.zeros(5)}, [],
                  "the head predicts 5 heatmaps"),
    }
    for name, (tensors, flags, message) in cases.items():
        checkpoint = tmp_path / f"{name}.pth"
        torch.save(tensors, checkpoint)
        assert export_main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / name), *flags]) == 2, name
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and str(checkpoint) in err, err


@pytest.mark.parametrize("key_list, arch, options", [
    ("alphapose_coco_256x192_res50_lr1e-3_1x.txt", "fastpose", {"depth": 50, "conv_dim": 128}),
    ("alphapose_coco_256x192_res50_lr1e-3_1x-duc.txt", "fastpose-duc", {"depth": 50, "backbone": "shuffle", "duc_convs": [4, 2, 1]}),
    ("alphapose_coco_256x192_res152_lr1e-3_1x-duc.txt", "fastpose-duc",
     {"depth": 152, "backbone": "se-resnet", "duc_convs": [4, 2, 1]}),
    ("alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt", "simplebaseline", {"depth": 50}),
    ("hrnet_w32_coco17.txt", "hrnet", {"width": 32}),
])
def test_full_size_key_lists_import_strictly_with_their_options(key_list: str, arch: str, options: dict) -> None:
    """Every listed key of the sources' full-size models is used and none is missing (shapes only, no memory)."""
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    state = {k: torch.empty(shape, dtype=dtypes[dtype], device="meta") for k, (shape, dtype) in source_keys(key_list).items()}
    imported = import_state(state, key_list)
    assert (imported.arch, imported.config.arch_options) == (arch, options)
    assert set(imported.state) == set(state) and imported.config.num_keypoints == 17 and imported.config.input_size == (256, 192)
    assert imported.conventions == ("hrnet" if arch == "hrnet" else "alphapose")
