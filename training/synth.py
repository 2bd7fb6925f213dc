"""Procedural multi-person images in the COCO 17-keypoint layout, with a simulated person detector.

Each person is an articulated 3-D skeleton (human proportions, joint limits, a facing direction)
projected orthographically, then drawn with PIL as shaded capsules, a torso hull and a head with a
face, so that every keypoint sits on a visible, locatable structure and left/right follow from the
facing direction the way they do for real bodies. See docs/synthetic-data.md.

Coordinates: continuous pixels, origin at the top-left corner of the top-left pixel; PIL draws
integer coordinates at pixel centres, so drawing calls subtract half a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.spatial import ConvexHull

NUM_KEYPOINTS = 17
(NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB,
 L_WRI, R_WRI, L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK) = range(NUM_KEYPOINTS)

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 135], [198, 134, 94],
                       [161, 102, 64], [120, 74, 44], [87, 55, 35]], dtype=float)
HAIR_COLOURS = np.array([[20, 18, 16], [60, 40, 25], [110, 75, 40], [200, 160, 90],
                         [150, 60, 30], [150, 150, 150]], dtype=float)


@dataclass(frozen=True)
class SynthConfig:
    """What varies per data set: people per image and the range of image sizes."""

    min_people: int = 1
    max_people: int = 6
    min_size: tuple[int, int] = (320, 240)
    max_size: tuple[int, int] = (512, 384)
    min_person_height: float = 50.0


@dataclass
class Sample:
    """One rendered image with its ground truth (COCO fields, no ids) and simulated detections."""

    image: np.ndarray
    annotations: list[dict]
    detections: list[dict]
    masks: list[np.ndarray] = field(repr=False)


@dataclass
class _Person:
    """A posed, projected person: 2-D keypoints, labelled flags, draw-ready parts and colours."""

    kps: np.ndarray
    labelled: np.ndarray
    height_px: float
    torso_centre: np.ndarray
    head_top: np.ndarray
    parts: list[tuple[float, str, dict]]


def _rot_x(a: float) -> np.ndarray:
    """Rotation about the body's left axis (positive tips +Y toward +Z, i.e. forward)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    """Rotation about the vertical axis (the facing direction, yaw)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    """Rotation about the forward axis (sideways bend, abduction)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _unit(v: np.ndarray) -> np.ndarray:
    """Vector scaled to unit length."""
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _bend(u: np.ndarray, toward: np.ndarray, angle: float) -> np.ndarray:
    """Direction of the next bone: u turned by angle toward the given direction (a hinge joint)."""
    w = toward - float(toward @ u) * u
    if np.linalg.norm(w) < 1e-6:
        w = np.array([0.0, 0.0, 1.0]) - u[2] * u
    return math.cos(angle) * u + math.sin(angle) * _unit(w)


def _deg(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform angle in radians from a range given in degrees."""
    return math.radians(rng.uniform(lo, hi))


def _sample_angles(rng: np.random.Generator) -> tuple[dict, float]:
    """Joint angles (radians, per side) for one of several activity types, and the in-plane roll."""
    kind = rng.choice(["stand", "walk", "raise", "sit", "free", "handstand", "cartwheel", "lying"],
                      p=[0.24, 0.17, 0.13, 0.12, 0.16, 0.06, 0.05, 0.07])
    ang: dict = {"lean": _deg(rng, -5, 15), "side": _deg(rng, -8, 8)}
    for s in ("l", "r"):
        ang[f"arm_a_{s}"] = _deg(rng, 5, 40)
        ang[f"arm_f_{s}"] = _deg(rng, -20, 40)
        ang[f"elbow_{s}"] = _deg(rng, 0, 60)
        ang[f"leg_a_{s}"] = _deg(rng, -3, 12)
        ang[f"leg_f_{s}"] = _deg(rng, -8, 15)
        ang[f"knee_{s}"] = _deg(rng, 0, 20)
    roll = math.radians(rng.normal(0, 6))
    if kind == "walk":
        swing = _deg(rng, 10, 45)
        ang.update(arm_f_l=swing, arm_f_r=-swing * 0.8, elbow_l=_deg(rng, 10, 100),
                   elbow_r=_deg(rng, 10, 100), leg_f_l=-swing * 0.7, leg_f_r=swing,
                   knee_l=_deg(rng, 5, 80), knee_r=_deg(rng, 0, 40))
    elif kind in ("raise", "handstand"):
        for s in ("l", "r") if rng.random() < 0.6 or kind == "handstand" else (rng.choice(["l", "r"]),):
            ang[f"arm_a_{s}"] = _deg(rng, 70, 178)
            ang[f"arm_f_{s}"] = _deg(rng, -20, 80)
            ang[f"elbow_{s}"] = _deg(rng, 0, 110 if kind == "raise" else 20)
        if kind == "handstand":
            roll = math.radians(180 + rng.normal(0, 15))
            for s in ("l", "r"):
                ang[f"arm_a_{s}"] = _deg(rng, 150, 178)
                ang[f"leg_a_{s}"] = _deg(rng, -5, 35)
                ang[f"knee_{s}"] = _deg(rng, 0, 70)
    elif kind == "sit":
        ang["lean"] = _deg(rng, 0, 35)
        for s in ("l", "r"):
            ang[f"leg_f_{s}"] = _deg(rng, 60, 115)
            ang[f"knee_{s}"] = _deg(rng, 50, 140)
            ang[f"leg_a_{s}"] = _deg(rng, -5, 30)
    elif kind == "free":
        ang.update(lean=_deg(rng, -15, 60), side=_deg(rng, -25, 25))
        for s in ("l", "r"):
            ang.update({f"arm_a_{s}": _deg(rng, 0, 178), f"arm_f_{s}": _deg(rng, -40, 160),
                        f"elbow_{s}": _deg(rng, 0, 150), f"leg_a_{s}": _deg(rng, -10, 60),
                        f"leg_f_{s}": _deg(rng, -30, 120), f"knee_{s}": _deg(rng, 0, 140)})
    elif kind == "cartwheel":
        roll = math.radians(rng.choice([-1, 1]) * rng.uniform(40, 140))
        for s in ("l", "r"):
            ang.update({f"arm_a_{s}": _deg(rng, 90, 160), f"arm_f_{s}": _deg(rng, -10, 10),
                        f"elbow_{s}": _deg(rng, 0, 15), f"leg_a_{s}": _deg(rng, 25, 60),
                        f"knee_{s}": _deg(rng, 0, 20)})
    elif kind == "lying":
        roll = math.radians(rng.choice([-90, 90]) + rng.normal(0, 12))
    return ang, roll


def _sample_facing(rng: np.random.Generator) -> float:
    """Yaw of the body: 0 faces the camera, pi shows the back; frontal views are the most common."""
    r = rng.random()
    if r < 0.45:
        return rng.normal(0, 0.45)
    if r < 0.65:
        return math.pi + rng.normal(0, 0.45)
    return rng.uniform(-math.pi, math.pi)


def _body_3d(rng: np.random.Generator, ang: dict) -> tuple[dict, dict]:
    """3-D points (body frame: +X person's left, +Y up, +Z forward; height 1) and body dimensions."""
    g = lambda m: m * rng.uniform(0.92, 1.08)  # noqa: E731 - per-person proportion jitter
    child = rng.random() < 0.12
    dim = {"sho_w": g(0.24), "hip_w": g(0.17), "sho_h": 0.82 - 0.52, "uarm": g(0.17),
           "farm": g(0.15), "hand": g(0.07), "thigh": g(0.245), "shin": g(0.245),
           "foot": g(0.12), "head_r": g(0.066) * (1.25 if child else 1.0), "neck": g(0.03),
           "chest_d": g(0.12), "hip_d": g(0.13), "r_uarm": g(0.036), "r_farm": g(0.029),
           "r_thigh": g(0.058), "r_shin": g(0.042), "r_neck": g(0.028)}
    pts: dict = {}
    down = np.array([0.0, -1.0, 0.0])
    upper = _rot_x(ang["lean"]) @ _rot_z(ang["side"])
    for s, sign in (("l", 1.0), ("r", -1.0)):
        hip = np.array([sign * dim["hip_w"] / 2, 0.0, 0.0])
        thigh = _rot_x(-ang[f"leg_f_{s}"]) @ _rot_z(sign * ang[f"leg_a_{s}"]) @ down
        knee = hip + dim["thigh"] * thigh
        shin = _bend(thigh, _unit(np.array([0.0, -0.3, -1.0])), ang[f"knee_{s}"])
        ankle = knee + dim["shin"] * shin
        toe = ankle + dim["foot"] * _unit(_rot_x(-math.pi / 2) @ shin + np.array([0, -0.15, 0]))
        sho = upper @ np.array([sign * dim["sho_w"] / 2, dim["sho_h"], 0.0])
        uarm = upper @ _rot_x(-ang[f"arm_f_{s}"]) @ _rot_z(sign * ang[f"arm_a_{s}"]) @ down
        elbow = sho + dim["uarm"] * uarm
        toward = upper @ _unit(np.array([-sign * rng.uniform(0, 0.8), rng.uniform(-0.2, 0.8), 1.0]))
        farm = _bend(uarm, toward, ang[f"elbow_{s}"])
        wrist = elbow + dim["farm"] * farm
        pts.update({f"hip_{s}": hip, f"knee_{s}": knee, f"ankle_{s}": ankle, f"toe_{s}": toe,
                    f"sho_{s}": sho, f"elbow_{s}": elbow, f"wrist_{s}": wrist,
                    f"hand_{s}": wrist + dim["hand"] * farm})
        for tag, y, half, d in (("t_sho", dim["sho_h"] + 0.015, dim["sho_w"] / 2 + 0.02, dim["chest_d"]),
                                ("t_hip", -0.02, dim["hip_w"] / 2 + dim["r_thigh"] * 0.9, dim["hip_d"])):
            for fb, zs in (("f", 1), ("b", -1)):
                p = np.array([sign * half, y, zs * d / 2])
                pts[f"{tag}_{s}_{fb}"] = upper @ p if tag == "t_sho" else p
    neck_base = upper @ np.array([0.0, dim["sho_h"], 0.0])
    head_rot = upper @ _rot_y(rng.normal(0, 0.35)) @ _rot_x(rng.normal(0, 0.15))
    head_c = neck_base + upper @ np.array([0.0, dim["neck"] + dim["head_r"] * 1.05, 0.0])
    r = dim["head_r"]
    face = {"nose": (0.0, -0.1, 1.02), "eye_l": (0.36, 0.18, 0.86), "eye_r": (-0.36, 0.18, 0.86),
            "ear_l": (0.93, 0.0, -0.08), "ear_r": (-0.93, 0.0, -0.08), "mouth": (0.0, -0.5, 0.84),
            "face": (0.0, -0.12, 0.5), "head_top": (0.0, 1.2, 0.0), "head_up": (0.0, 1.0, 0.0)}
    for name, v in face.items():
        pts[name] = head_c + head_rot @ (r * np.array(v))
        pts[f"n_{name}"] = head_rot @ _unit(np.array(v))
    chest = {"collar_l": (0.05, 0.0, 0.5), "collar_r": (-0.05, 0.0, 0.5), "collar_v": (0.0, -0.07, 0.52),
             "pocket": (0.055, -0.085, 0.5), "btn0": (0.0, -0.11, 0.5), "btn1": (0.0, -0.18, 0.5),
             "btn2": (0.0, -0.25, 0.5), "yoke_l": (0.1, -0.06, -0.5), "yoke_r": (-0.1, -0.06, -0.5)}
    for name, (x, y, z) in chest.items():
        pts[name] = upper @ np.array([x, dim["sho_h"] + y, z * dim["chest_d"]])
    pts["n_front"] = upper @ np.array([0.0, 0.0, 1.0])
    pts["neck_base"], pts["head_c"], pts["hip_c"] = neck_base, head_c, np.zeros(3)
    return pts, dim


def _palette(rng: np.random.Generator) -> dict:
    """Clothing, skin and hair colours for one person."""
    def hsv(h: float, s: float, v: float) -> np.ndarray:
        return np.array(Image.new("HSV", (1, 1), (int(h * 255), int(s * 255), int(v * 255)))
                        .convert("RGB").getpixel((0, 0)), dtype=float)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.08)
    shirt = hsv(rng.random(), rng.uniform(0.1, 0.9), rng.uniform(0.25, 0.95))
    trousers = hsv(rng.random(), rng.uniform(0.05, 0.7), rng.uniform(0.12, 0.7))
    accent = hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
    shoes = np.array([30, 30, 30]) if rng.random() < 0.6 else hsv(rng.random(), 0.3, 0.9)
    return {"skin": np.clip(skin, 0, 255), "shirt": shirt, "trousers": trousers, "accent": accent,
            "shoes": shoes, "hair": HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
            "long_sleeves": rng.random() < 0.5, "shorts": rng.random() < 0.25,
            "watch": rng.random() < 0.5, "buttons": rng.random() < 0.5}


def _make_person(rng: np.random.Generator, height_px: float) -> _Person:
    """Sample proportions, pose and facing; project to 2-D (person centred at the origin)."""
    ang, roll = _sample_angles(rng)
    return _pose_person(rng, ang, roll, height_px)


def _pose_person(rng: np.random.Generator, ang: dict, roll: float, height_px: float,
                 yaw: float | None = None) -> _Person:
    """The person of joint angles ``ang`` and in-plane ``roll``: proportions, facing (``yaw`` if given)
    and clothes drawn from ``rng``, so the same ``rng`` state gives the same person in a new pose."""
    pts3, dim = _body_3d(rng, ang)
    sampled_yaw = _sample_facing(rng)
    yaw = sampled_yaw if yaw is None else yaw
    names = list(pts3)
    arr = np.stack([pts3[n] for n in names])
    cam = arr @ _rot_y(yaw).T
    c, s = math.cos(roll), math.sin(roll)
    xy = np.stack([cam[:, 0], -cam[:, 1]], axis=1) @ np.array([[c, s], [-s, c]]) * height_px
    p2 = {n: xy[i] for i, n in enumerate(names)}
    z = {n: cam[i, 2] for i, n in enumerate(names)}  # for normals n_*: facing-camera component
    kp_names = ["nose", "eye_l", "eye_r", "ear_l", "ear_r", "sho_l", "sho_r", "elbow_l", "elbow_r",
                "wrist_l", "wrist_r", "hip_l", "hip_r", "knee_l", "knee_r", "ankle_l", "ankle_r"]
    kps = np.stack([p2[n] for n in kp_names])
    labelled = np.ones(NUM_KEYPOINTS, bool)
    labelled[NOSE] = z["n_nose"] > -0.1
    labelled[L_EYE], labelled[R_EYE] = z["n_eye_l"] > 0.12, z["n_eye_r"] > 0.12
    labelled[L_EAR], labelled[R_EAR] = z["n_ear_l"] > -0.3, z["n_ear_r"] > -0.3
    parts = _parts(p2, z, dim, height_px, _palette(rng), labelled)
    torso = (p2["sho_l"] + p2["sho_r"] + p2["hip_l"] + p2["hip_r"]) / 4
    return _Person(kps, labelled, height_px, torso, p2["head_top"], parts)


def _parts(p2: dict, z: dict, dim: dict, h: float, pal: dict, labelled: np.ndarray) -> list:
    """Body parts as (depth, kind, params), to be drawn far-to-near."""
    sleeve = pal["shirt"] if pal["long_sleeves"] else pal["skin"]
    shin = pal["skin"] if pal["shorts"] else pal["trousers"]
    parts = []
    for s in ("l", "r"):
        arm = [("capsule", p2[f"sho_{s}"], p2[f"elbow_{s}"], dim["r_uarm"] * h, dim["r_farm"] * h * 1.05, pal["shirt"]),
               ("capsule", p2[f"elbow_{s}"], p2[f"wrist_{s}"], dim["r_farm"] * h, dim["r_farm"] * h * 0.8, sleeve),
               ("capsule", p2[f"wrist_{s}"], p2[f"hand_{s}"], dim["r_farm"] * h * 0.85, dim["r_farm"] * h * 1.0, pal["skin"])]
        if s == "l" and pal["watch"]:
            arm.append(("band", p2["elbow_l"], p2["wrist_l"], dim["r_farm"] * h * 0.9, pal["accent"]))
        leg = [("capsule", p2[f"hip_{s}"], p2[f"knee_{s}"], dim["r_thigh"] * h, dim["r_shin"] * h * 1.1, pal["trousers"]),
               ("capsule", p2[f"knee_{s}"], p2[f"ankle_{s}"], dim["r_shin"] * h, dim["r_shin"] * h * 0.75, shin),
               ("capsule", p2[f"ankle_{s}"], p2[f"toe_{s}"], dim["r_shin"] * h * 0.8, dim["r_shin"] * h * 0.7, pal["shoes"])]
        parts.append((float(z[f"elbow_{s}"] + z[f"wrist_{s}"]) / 2 + 0.01, "group", {"items": arm}))
        parts.append((float(z[f"knee_{s}"] + z[f"ankle_{s}"]) / 2, "group", {"items": leg}))
    hull_pts = np.stack([p2[k] for k in p2 if k.startswith(("t_sho", "t_hip"))])
    torso = [("polygon", hull_pts[ConvexHull(hull_pts).vertices], pal["shirt"])]
    front = z["n_front"]
    if front > 0.15:
        torso.append(("polygon", np.stack([p2["collar_l"], p2["collar_v"], p2["collar_r"]]), pal["skin"]))
        torso.append(("dot", p2["pocket"], max(0.02 * h, 0.8), pal["accent"]))
        if pal["buttons"]:
            torso += [("dot", p2[f"btn{i}"], max(0.006 * h, 0.5), pal["shirt"] * 0.45) for i in range(3)]
    elif front < -0.15:
        torso.append(("line", p2["yoke_l"], p2["yoke_r"], max(0.008 * h, 1.0), pal["shirt"] * 0.6))
    parts.append((0.0, "group", {"items": torso}))
    head = {"neck": (p2["neck_base"], p2["head_c"], dim["r_neck"] * h), "c": p2["head_c"],
            "r": dim["head_r"] * h, "up": p2["head_up"] - p2["head_c"], "face": p2["face"],
            "face_z": z["n_face"], "pal": pal, "nose": p2["nose"], "mouth": p2["mouth"],
            "mouth_z": z["n_mouth"], "eyes": [p2["eye_l"], p2["eye_r"]],
            "ears": [p2["ear_l"], p2["ear_r"]], "labelled": labelled}
    parts.append((float(z["head_c"]) + 0.02, "head", head))
    parts.sort(key=lambda p: p[0])
    return parts


class _Painter:
    """Draws shapes on the image and, in the same calls, on one person's silhouette mask."""

    def __init__(self, image: Image.Image, light: np.ndarray):
        self.img = ImageDraw.Draw(image)
        self.light = light
        self.mask_img: Image.Image | None = None
        self.mask: ImageDraw.ImageDraw | None = None

    def start_mask(self, size: tuple[int, int]) -> None:
        """Begin a new person's silhouette."""
        self.mask_img = Image.new("L", size, 0)
        self.mask = ImageDraw.Draw(self.mask_img)

    @staticmethod
    def _col(c: np.ndarray) -> tuple[int, int, int]:
        return tuple(int(v) for v in np.clip(c, 0, 255))

    def polygon(self, pts: np.ndarray, colour: np.ndarray, shade: bool = True, on_mask: bool = True) -> None:
        """Filled polygon; shaded ones get a darker rim and a highlight shifted toward the light."""
        pil = [tuple(p) for p in (pts - 0.5)]
        self.img.polygon(pil, fill=self._col(colour * (0.72 if shade else 1.0)))
        if on_mask and self.mask is not None:
            self.mask.polygon(pil, fill=255)
        if shade and len(pts) > 2:
            c = pts.mean(axis=0)
            inner = c + (pts - c) * 0.8 + self.light * 0.06 * float(np.ptp(pts, axis=0).max())
            self.img.polygon([tuple(p) for p in (inner - 0.5)], fill=self._col(colour))

    def ellipse(self, c: np.ndarray, r: float, colour: np.ndarray, on_mask: bool = True) -> None:
        """Filled circle of radius r centred on the pixel holding c (PIL truncates ellipse boxes)."""
        px, py, k = math.floor(c[0]), math.floor(c[1]), max(round(r - 0.5), 0)
        box = [px - k, py - k, px + k, py + k]
        for draw, fill in ((self.img, self._col(colour)), (self.mask if on_mask else None, 255)):
            if draw is not None:
                draw.ellipse(box, fill=fill) if k else draw.point((px, py), fill=fill)

    def _quad(self, p: np.ndarray, q: np.ndarray, r1: float, r2: float) -> np.ndarray:
        """Tapered band between two points with half-widths r1, r2."""
        d = q - p
        n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
        return np.stack([p + n * r1, q + n * r2, q - n * r2, p - n * r1])

    def capsule(self, p: np.ndarray, q: np.ndarray, r1: float, r2: float, colour: np.ndarray, shade: bool = True) -> None:
        """Limb segment with rounded ends, shaded as a cylinder lit from the light direction."""
        layers = [(1.0, 0.0, 0.7), (0.68, 0.28, 1.0), (0.28, 0.55, 1.18)] if shade else [(1.0, 0.0, 1.0)]
        for k, (scale, shift, tone) in enumerate(layers):
            off = self.light * shift * (r1 + r2) / 2
            a, b, ra, rb = p + off, q + off, max(r1 * scale, 0.5), max(r2 * scale, 0.5)
            col = colour * tone
            on_mask = k == 0
            self.polygon(self._quad(a, b, ra, rb), col, shade=False, on_mask=on_mask)
            self.ellipse(a, ra, col, on_mask=on_mask)
            self.ellipse(b, rb, col, on_mask=on_mask)

    def line(self, p: np.ndarray, q: np.ndarray, width: float, colour: np.ndarray) -> None:
        """Straight stroke (image only)."""
        self.img.line([tuple(p - 0.5), tuple(q - 0.5)], fill=self._col(colour), width=max(int(round(width)), 1))


def _ellipse_pts(c: np.ndarray, rx: float, ry: float, up: np.ndarray, n: int = 28) -> np.ndarray:
    """Polygon of an ellipse with semi-axes rx (across) and ry (along the unit vector up)."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    side = np.array([-up[1], up[0]])
    return c + np.outer(np.cos(t) * rx, side) + np.outer(np.sin(t) * ry, up)


def _draw_head(pt: _Painter, h: dict) -> None:
    """Neck, hair, face (only when turned toward the camera), eyes, nose, mouth and ears."""
    pal, r, c = h["pal"], h["r"], h["c"]
    up = h["up"] / max(float(np.hypot(*h["up"])), 1e-6)
    pt.capsule(h["neck"][0], h["neck"][1], h["neck"][2], h["neck"][2], pal["skin"])
    pt.polygon(_ellipse_pts(c, r * 0.95, r * 1.08, up), pal["hair"])
    fz = h["face_z"]
    if fz > -0.25:
        squeeze = 0.55 + 0.45 * min(1.0, max(fz, 0.0) * 1.2)
        face_c = c + (h["face"] - c) * 0.9
        pt.polygon(_ellipse_pts(face_c, r * 0.78 * squeeze, r * 0.86, up), pal["skin"])
        pt.polygon(_ellipse_pts(c + up * r * 0.6, r * 0.9, r * 0.5, up), pal["hair"], shade=False)
    dot = max(r * 0.13, 0.6)
    labelled = h["labelled"]
    for ear, lab in zip(h["ears"], labelled[[L_EAR, R_EAR]]):
        if lab:
            pt.ellipse(ear, max(r * 0.2, 1.2), pal["skin"] * 0.9)
    for eye, lab in zip(h["eyes"], labelled[[L_EYE, R_EYE]]):
        if lab:
            pt.ellipse(eye, dot * 1.3, np.array([245.0, 245.0, 245.0]))
            pt.ellipse(eye, dot, np.array([25.0, 20.0, 20.0]))
    if labelled[NOSE]:
        pt.ellipse(h["nose"], max(r * 0.14, 0.7), pal["skin"] * 0.78)
    if h["mouth_z"] > 0.25:
        pt.ellipse(h["mouth"], max(r * 0.12, 0.5), np.array([150.0, 50.0, 50.0]))


def _draw_person(pt: _Painter, person: _Person) -> None:
    """All parts of one person, far to near."""
    for _, kind, params in person.parts:
        if kind == "head":
            _draw_head(pt, params)
            continue
        for item in params["items"]:
            if item[0] == "capsule":
                pt.capsule(*item[1:])
            elif item[0] == "polygon":
                pt.polygon(item[1], item[2])
            elif item[0] == "dot":
                pt.ellipse(item[1], item[2], item[3], on_mask=False)
            elif item[0] == "line":
                pt.line(*item[1:])
            elif item[0] == "band":
                p, q, r, col = item[1:]
                pt.capsule(q + (p - q) * 0.2, q + (p - q) * 0.14, r * 1.08, r * 1.08, col, shade=False)


def _place_person(rng: np.random.Generator, height_px: float, w: int, h: int) -> _Person:
    """A person of the given height whose keypoint box centre lands inside the image."""
    person = _make_person(rng, height_px)
    lo, hi = person.kps.min(axis=0), person.kps.max(axis=0)
    target = np.array([rng.uniform(0.05, 0.95) * w, rng.uniform(0.08, 0.95) * h])
    return _translate(person, target - (lo + hi) / 2)


def _translate(person: _Person, off: np.ndarray) -> _Person:
    """The same person moved by off pixels (every 2-D point in its draw list too)."""
    def move(v):
        if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[-1] == 2 and v.dtype.kind == "f":
            return v + off
        if isinstance(v, (list, tuple)):
            return type(v)(move(x) for x in v)
        if isinstance(v, dict):
            return {k: (v[k] if k in ("up", "pal", "labelled") else move(v[k])) for k in v}
        return v
    parts = [(d, kind, move(params)) for d, kind, params in person.parts]
    return _Person(person.kps + off, person.labelled, person.height_px, person.torso_centre + off,
                   person.head_top + off, parts)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Cluttered backdrop: a gradient, low-frequency colour noise and one of several textures."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    c1, c2 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    img = c1 + (c2 - c1) * t[..., None]
    small = (128 + rng.uniform(-1, 1, (int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3)) * rng.uniform(10, 60))
    img += np.asarray(Image.fromarray(small.astype(np.uint8), "RGB").resize((w, h), Image.BICUBIC), np.float32) - 128
    kind = rng.integers(5)
    tone = rng.uniform(-1, 1, 3) * rng.uniform(10, 45)
    if kind == 0:  # stripes (fences, blinds, wallpaper)
        b, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
        img += np.sin(2 * math.pi * (xx * math.cos(b) + yy * math.sin(b)) / period)[..., None] * tone
    elif kind == 1:  # tiles
        p = rng.uniform(10, 50)
        img += (((xx // p) + (yy // p)) % 2)[..., None] * tone
    elif kind == 2:  # floor below a horizon
        y0 = rng.uniform(0.3, 0.8) * h
        img = np.where((yy > y0)[..., None], img * 0.6 + rng.uniform(40, 200, 3) * 0.4, img)
    elif kind == 3:  # grain
        img += rng.normal(0, 1, (h // 2 + 1, w // 2 + 1, 1)).repeat(2, 0).repeat(2, 1)[:h, :w] * abs(tone[0]) * 0.5
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_clutter(pt: _Painter, rng: np.random.Generator, w: int, h: int) -> list[np.ndarray]:
    """Distractors that are not people (blobs, boxes, lines, branching sticks); returns xyxy boxes."""
    boxes = []
    for _ in range(int(rng.integers(3, 16))):
        kind = rng.integers(4)
        c = rng.uniform([0, 0], [w, h])
        colour = rng.uniform(0, 255, 3) if rng.random() < 0.8 else SKIN_TONES[rng.integers(len(SKIN_TONES))]
        size = rng.uniform(0.02, 0.15) * min(w, h)
        if kind == 0:
            k = int(rng.integers(5, 10))
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            pts = c + np.stack([np.cos(ang), np.sin(ang)], 1) * (size * rng.uniform(0.5, 1.2, k))[:, None]
            pt.polygon(pts, colour)
        elif kind == 1:
            half = size * rng.uniform(0.3, 1.5, 2)
            pts = c + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
            pt.polygon(pts, colour)
        elif kind == 2:
            q = c + rng.normal(0, 1, 2) * size * 3
            pt.line(c, q, rng.uniform(1, 5), colour)
            pts = np.stack([c, q])
        else:
            pts = [c]
            d = rng.uniform(0, 2 * math.pi)
            for _ in range(int(rng.integers(2, 5))):
                d += rng.normal(0, 0.9)
                pts.append(pts[-1] + size * rng.uniform(0.6, 1.6) * np.array([math.cos(d), math.sin(d)]))
                r = rng.uniform(0.01, 0.03) * min(w, h)
                pt.capsule(pts[-2], pts[-1], r, r * rng.uniform(0.6, 1.0), colour)
            pts = np.stack(pts)
        boxes.append(np.concatenate([pts.min(axis=0), pts.max(axis=0)]))
    return boxes


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _clip_box(b: np.ndarray, w: int, h: int) -> np.ndarray:
    """xyxy box clipped to the image, at least one pixel wide and tall."""
    x0, y0 = np.clip(b[0], 0, w - 1), np.clip(b[1], 0, h - 1)
    return np.array([x0, y0, np.clip(b[2], x0 + 1, w), np.clip(b[3], y0 + 1, h)])


def _xywh(b: np.ndarray) -> list[float]:
    """xyxy → COCO [x, y, w, h], rounded for a compact, deterministic JSON."""
    return [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2), round(float(b[3] - b[1]), 2)]


def _detector_core(rng: np.random.Generator, person: _Person) -> np.ndarray:
    """Where a detector puts its box: extremities pulled toward the torso (raised arms, feet cut off)."""
    pts = np.vstack([person.kps, person.head_top[None]])
    alpha = np.ones(len(pts))
    alpha[[L_WRI, R_WRI, L_ANK, R_ANK]] = rng.uniform(0.55, 1.02, 4)
    alpha[[L_ELB, R_ELB, L_KNE, R_KNE]] = rng.uniform(0.8, 1.02, 4)
    alpha[-1] = rng.uniform(0.85, 1.05)
    pts = person.torso_centre + alpha[:, None] * (pts - person.torso_centre)
    pad = 0.045 * person.height_px
    return np.concatenate([pts.min(axis=0) - pad, pts.max(axis=0) + pad])


def _simulate_detections(rng: np.random.Generator, people: list[tuple[_Person, np.ndarray, float]],
                         clutter: list[np.ndarray], w: int, h: int) -> list[dict]:
    """1-4 pose-biased, jittered boxes per person with quality-correlated scores, plus false positives."""
    dets = []
    for person, gt, vis_frac in people:
        core = _detector_core(rng, person)
        size_conf = min(1.0, person.height_px / 90.0) ** 0.3
        for j in range(int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1]))):
            sigma = 0.035 if j == 0 else 0.09
            cw, ch = core[2] - core[0], core[3] - core[1]
            centre = (core[:2] + core[2:]) / 2 + rng.normal(0, sigma, 2) * [cw, ch]
            half = np.array([cw, ch]) / 2 * np.exp(rng.normal(0, sigma, 2))
            box = _clip_box(np.concatenate([centre - half, centre + half]), w, h)
            quality = _iou(box, gt) ** 2 * vis_frac ** 0.25 * size_conf
            dets.append((box, float(np.clip(0.12 + 0.85 * quality + rng.normal(0, 0.04), 0.02, 0.99))))
    for _ in range(min(int(rng.poisson(1.2)), 4)):
        if clutter and rng.random() < 0.7:
            b = clutter[int(rng.integers(len(clutter)))] + rng.normal(0, 4, 4)
        else:
            bh = rng.uniform(0.1, 0.6) * h
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            b = np.array([x, y, x + bh * rng.uniform(0.3, 0.8), y + bh])
        dets.append((_clip_box(b, w, h), float(rng.uniform(0.02, 0.45))))
    if len(people) >= 2 and rng.random() < 0.2:
        (_, a, _), (_, b, _) = people[-2:]
        if _iou(a, b) > 0.05:
            dets.append((np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])]),
                         float(rng.uniform(0.2, 0.6))))
    return [{"category_id": 1, "bbox": _xywh(b), "score": round(s, 4)} for b, s in dets]


def _finish(rng: np.random.Generator, img: Image.Image) -> np.ndarray:
    """Camera effects: slight blur, contrast/brightness change and sensor noise."""
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    arr = np.asarray(img, np.float32) * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20)
    h, w = arr.shape[:2]
    arr += rng.normal(0, rng.uniform(1, 5), (h, w, 1)).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _keypoint_flags(person: _Person, index: int, label: np.ndarray) -> tuple[list[float], int]:
    """COCO [x, y, v]*17: v=2 on its own visible pixels, 1 under a later person, 0 outside/unlabelled."""
    h, w = label.shape
    out: list[float] = []
    n = 0
    for (x, y), lab in zip(person.kps, person.labelled):
        if lab and 0 <= x < w and 0 <= y < h:
            v = 1 if label[int(y), int(x)] > index + 1 else 2
            out += [round(float(x), 2), round(float(y), 2), v]
            n += 1
        else:
            out += [0, 0, 0]
    return out, n


def render_sample(seed: int, index: int, config: SynthConfig = SynthConfig()) -> Sample:
    """Render image number `index` of data set `seed` in memory (same inputs → same sample)."""
    rng = np.random.default_rng([seed, index])
    w = int(rng.integers(config.min_size[0], config.max_size[0] + 1))
    h = int(rng.integers(config.min_size[1], config.max_size[1] + 1))
    light = _unit(rng.normal(0, 1, 2))
    canvas = Image.fromarray(_background(rng, w, h))
    painter = _Painter(canvas, light)
    clutter = _draw_clutter(painter, rng, w, h)
    n = int(rng.integers(config.min_people, config.max_people + 1))
    lo = min(config.min_person_height, 0.9 * h)
    heights = np.exp(rng.uniform(math.log(lo), math.log(0.95 * h), n))
    heights = heights[np.argsort(heights * rng.lognormal(0, 0.3, n))]  # far (small) people first
    people = [_place_person(rng, float(ph), w, h) for ph in heights]
    annotations, det_people, kept = draw_people(painter, people, w, h, index + 1)
    detections = [{"image_id": index + 1, **d} for d in _simulate_detections(rng, det_people, clutter, w, h)]
    return Sample(_finish(rng, canvas), annotations, detections, kept)


def draw_people(painter: _Painter, people: list[_Person], w: int, h: int,
                image_id: int) -> tuple[list[dict], list[tuple[_Person, np.ndarray, float]], list[np.ndarray]]:
    """Draw ``people`` far to near; their COCO annotations (people left with no visible pixel are
    left out), the (person, box, visible fraction) the simulated detector needs, and their masks."""
    masks = []
    for person in people:
        painter.start_mask((w, h))
        _draw_person(painter, person)
        masks.append(np.asarray(painter.mask_img) > 0)
    label = np.zeros((h, w), np.int16)
    for i, m in enumerate(masks):
        label[m] = i + 1
    annotations, det_people, kept = [], [], []
    for i, (person, m) in enumerate(zip(people, masks)):
        visible = int((label == i + 1).sum())
        if visible == 0:
            continue
        ys, xs = np.nonzero(m)
        gt = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        kps, num = _keypoint_flags(person, i, label)
        annotations.append({"image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": num,
                            "keypoints": kps, "bbox": _xywh(gt), "area": float(visible)})
        det_people.append((person, gt, visible / int(m.sum())))
        kept.append(m)
    return annotations, det_people, kept


def coco_category() -> dict:
    """The COCO 'person' category with the 17-keypoint names and skeleton."""
    from rmpe.runtime.keypoints import COCO_KEYPOINTS, COCO_SKELETON
    return {"id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(COCO_KEYPOINTS), "skeleton": [list(p) for p in COCO_SKELETON]}


def image_file_name(image_id: int) -> str:
    """COCO-style zero-padded file name for an image id."""
    return f"{image_id:012d}.jpg"


def _render_to_disk(job: tuple[int, int, SynthConfig, str]) -> tuple[dict, list[dict], list[dict]]:
    """Worker: render one image, write its JPEG, return the image record, annotations, detections."""
    seed, index, config, image_dir = job
    sample = render_sample(seed, index, config)
    name = image_file_name(index + 1)
    Image.fromarray(sample.image).save(f"{image_dir}/{name}", quality=92)
    h, w = sample.image.shape[:2]
    return ({"id": index + 1, "file_name": name, "width": w, "height": h},
            sample.annotations, sample.detections)


def write_dataset(out_dir: str, num_images: int, seed: int, config: SynthConfig = SynthConfig(),
                  workers: int = 1, progress: bool = True) -> dict:
    """Write images/*.jpg, person_keypoints.json and detections.json; byte-identical for a seed."""
    import json
    import multiprocessing
    import os

    from tqdm import tqdm

    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    jobs = [(seed, i, config, image_dir) for i in range(num_images)]
    images, annotations, detections = [], [], []
    with multiprocessing.Pool(workers) if workers > 1 else _Serial() as pool:
        results = pool.imap(_render_to_disk, jobs, chunksize=8)
        for record, anns, dets in tqdm(results, total=num_images, desc="rmpe-data synth", disable=not progress):
            images.append(record)
            for a in anns:
                annotations.append({"id": len(annotations) + 1, **a})
            detections.extend(dets)
    coco = {"info": {"description": "rmpe synthetic people", "version": "1", "seed": seed},
            "images": images, "annotations": annotations, "categories": [coco_category()]}
    for name, obj in (("person_keypoints.json", coco), ("detections.json", detections)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"))
    return {"images": len(images), "annotations": len(annotations), "detections": len(detections)}


class _Serial:
    """In-process stand-in for multiprocessing.Pool (imap only), so one worker spawns nothing."""

    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def imap(fn, items, chunksize: int = 1):
        """Lazily apply fn to each item."""
        return map(fn, items)
