"""Person detection with YOLO-family ONNX models (ultralytics YOLOv8/YOLO11, YOLOX), numpy only.

What each family expects and returns (checked against their reference pre-processing):

- ``yolov8`` (ultralytics YOLOv8 / YOLO11 ``export format=onnx``): input ``[1, 3, H, W]`` float RGB in
  0…1, the image letterboxed **centred** with grey (114) padding; output ``[1, 4 + C, N]``: box
  centre x, y, width, height in input pixels, then C class scores (already sigmoid, no objectness).
- ``yolox`` (Megvii YOLOX ``tools/export_onnx.py``): input ``[1, 3, H, W]`` float **BGR in 0…255**
  (no mean/std since YOLOX 0.1.1), the image resized and placed at the **top-left** of a grey (114)
  canvas; output ``[1, N, 5 + C]``: cx, cy, w, h, objectness, C class scores; score = obj × class.
  The default export leaves the boxes raw (grid offsets and log sizes for strides 8, 16, 32); they
  are decoded here. Raw outputs are recognised by their size (one row per grid cell) and by centre
  values that stay below 8 (decoded centres are input pixels).

The format is read from the output shape (``[1, small, large]`` → yolov8, ``[1, large, small]`` →
yolox) unless given. Person is class 0 (COCO).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Backend, BackendOptions, open_backend
from .boxes import Boxes

FORMATS = ("auto", "yolov8", "yolox")
YOLOX_STRIDES = (8, 16, 32)
PAD_VALUE = 114
DEFAULT_SIZE = 640


class DetectorError(ValueError):
    """A detector model whose output this module cannot interpret."""


@dataclass
class Letterbox:
    """How an image was placed in the detector input: ``input = image * scale + (left, top)``."""

    scale: float
    left: int
    top: int


def letterbox(image: np.ndarray, height: int, width: int, centre: bool) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio onto a grey canvas of ``height × width`` (uint8 HxWx3)."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    if centre:
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        left, top = round((width - new_w) / 2 - 0.1), round((height - new_h) / 2 - 0.1)
    else:
        new_w, new_h = max(1, int(w * scale)), max(1, int(h * scale))
        left = top = 0
    resized = image if (new_w, new_h) == (w, h) else np.asarray(
        Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, Letterbox(scale, left, top)


def nms_boxes(xyxy: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy IoU suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (xyxy[:, 2] - xyxy[:, 0]).clip(0) * (xyxy[:, 3] - xyxy[:, 1]).clip(0)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        ix1 = np.maximum(xyxy[i, 0], xyxy[rest, 0])
        iy1 = np.maximum(xyxy[i, 1], xyxy[rest, 1])
        ix2 = np.minimum(xyxy[i, 2], xyxy[rest, 2])
        iy2 = np.minimum(xyxy[i, 3], xyxy[rest, 3])
        inter = (ix2 - ix1).clip(0) * (iy2 - iy1).clip(0)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_thr]
    return np.asarray(keep, np.int64)


def guess_format(shape: tuple[int | None, ...]) -> str:
    """``yolov8`` for ``[1, 4+C, N]``, ``yolox`` for ``[1, N, 5+C]``; a dynamic N counts as large."""
    big = 1 << 30
    dims = [big if d is None else d for d in shape]
    if len(dims) != 3 or min(dims[1:]) < 5 or dims[1] == dims[2]:
        shown = ["?" if d is None else d for d in shape]
        raise DetectorError(f"detector output shape {shown} is neither YOLOv8 [1, 4+C, N] nor YOLOX [1, N, 5+C]; "
                            "set --detector-format")
    return "yolov8" if dims[1] < dims[2] else "yolox"


def yolox_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (N, 2) and strides (N, 1) of YOLOX's raw output rows, stride 8 first."""
    grids, strides = [], []
    for s in YOLOX_STRIDES:
        gy, gx = np.mgrid[0:height // s, 0:width // s]
        grids.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        strides.append(np.full((gx.size, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode_yolov8(out: np.ndarray, person_class: int) -> tuple[np.ndarray, np.ndarray]:
    """``[1, 4+C, N]`` → cxcywh (N, 4) in input pixels and person scores (N,)."""
    rows = out[0].T
    return rows[:, :4], rows[:, 4 + person_class]


def decode_yolox(out: np.ndarray, person_class: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``[1, N, 5+C]`` (raw or decoded) → cxcywh (N, 4) in input pixels and person scores (N,)."""
    rows = out[0].astype(np.float32)
    boxes = rows[:, :4].copy()
    grid, stride = yolox_grid(height, width)
    if len(rows) == len(grid) and np.abs(boxes[:, :2]).max(initial=0) < 8:
        boxes[:, :2] = (boxes[:, :2] + grid) * stride
        boxes[:, 2:] = np.exp(boxes[:, 2:]) * stride
    return boxes, rows[:, 4] * rows[:, 5 + person_class]


class YoloDetector:
    """Person boxes for an RGB uint8 image from a YOLOv8/YOLO11 or YOLOX ONNX model."""

    def __init__(self, path: str | Path, fmt: str = "auto", options: BackendOptions | None = None,
                 score_thr: float = 0.05, iou_thr: float = 0.6, person_class: int = 0) -> None:
        if fmt not in FORMATS:
            raise DetectorError(f"unknown detector format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.backend: Backend = open_backend(path, options)
        if len(self.backend.inputs) != 1:
            raise DetectorError(f"{Path(path).name}: a YOLO detector has one input, this one has {len(self.backend.inputs)}")
        self.input = self.backend.inputs[0]
        shape = self.input.shape
        self.height = shape[2] if len(shape) == 4 and shape[2] else DEFAULT_SIZE
        self.width = shape[3] if len(shape) == 4 and shape[3] else DEFAULT_SIZE
        out_shape = self.backend.outputs[0].shape
        self.format = fmt if fmt != "auto" else guess_format(out_shape)
        self.score_thr, self.iou_thr, self.person_class = score_thr, iou_thr, person_class

    def __call__(self, image: np.ndarray) -> Boxes:
        """Detect people; boxes in image pixels, best first."""
        yolox = self.format == "yolox"
        canvas, lb = letterbox(image, self.height, self.width, centre=not yolox)
        chw = (canvas[:, :, ::-1] if yolox else canvas).transpose(2, 0, 1)[None]
        blob = chw.astype(np.float32) if yolox else chw.astype(np.float32) / np.float32(255)
        out = self.backend.run({self.input.name: blob.astype(self.input.dtype)})
        raw = np.asarray(next(iter(out.values())), np.float32)
        if yolox:
            cxcywh, scores = decode_yolox(raw, self.person_class, self.height, self.width)
        else:
            cxcywh, scores = decode_yolov8(raw, self.person_class)
        keep = scores >= self.score_thr
        cxcywh, scores = cxcywh[keep], scores[keep]
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        xyxy = (xyxy - np.array([lb.left, lb.top, lb.left, lb.top], np.float32)) / np.float32(lb.scale)
        order = nms_boxes(xyxy, scores, self.iou_thr)
        return Boxes(xyxy[order].astype(np.float32), scores[order].astype(np.float32))

    def close(self) -> None:
        """Release the detector's session."""
        self.backend.close()
