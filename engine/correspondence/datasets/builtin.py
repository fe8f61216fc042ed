"""The ``builtin`` dataset: real images shipped in installed wheels, deterministic warps, exact ground truth.

Images come from ``skimage.data`` and ``sklearn.datasets.load_sample_images``. Each base image (downscaled to a
longest side of 192 px) is paired with warped copies of itself (flip, crop, scales, rotations, a homography, a
photometric change, a combined warp); keypoints (Harris corners plus a coarse grid) are carried through the exact
transform and marked not visible when they leave the warped image. ``stereo_motorcycle`` adds real stereo pairs
with ground-truth disparity (x_right = x_left - d). Coordinates are continuous pixels (pixel centre at c + 0.5).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.correspondence.datasets.base import Dataset, Pair, normalise_split
from engine.errors import InputError
from engine.hashing import hash_obj

BUILTIN_VERSION = 1
MAX_SIDE = 192
_SEED = 1234


def _sources() -> list[tuple[str, str, Callable[[], np.ndarray]]]:
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    def sample(index: int) -> Callable[[], np.ndarray]:
        return lambda: load_sample_images().images[index]

    return [
        ("astronaut", "person", sd.astronaut),
        ("camera", "person", sd.camera),
        ("chelsea", "cat", sd.chelsea),
        ("coffee", "cup", sd.coffee),
        ("rocket", "rocket", sd.rocket),
        ("hubble", "galaxy", sd.hubble_deep_field),
        ("ihc", "tissue", sd.immunohistochemistry),
        ("coins", "coins", sd.coins),
        ("colorwheel", "pattern", sd.colorwheel),
        ("china", "building", sample(0)),
        ("flower", "flower", sample(1)),
    ]


def _to_rgb(image: np.ndarray) -> np.ndarray:
    from engine.encoders.base import to_uint8_rgb

    return to_uint8_rgb(image)


def _downscale(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    from skimage.transform import resize

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    out = resize(image, (round(h * scale), round(w * scale)), anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _keypoints(image: np.ndarray, max_corners: int = 14) -> np.ndarray:
    """Harris corners plus a 4 x 4 interior grid, as continuous (x, y) pixel centres."""
    from skimage.color import rgb2gray
    from skimage.feature import corner_harris, corner_peaks

    gray = rgb2gray(image)
    h, w = gray.shape
    peaks = corner_peaks(corner_harris(gray), min_distance=6, threshold_rel=0.02, num_peaks=max_corners)
    rows = [(int(r), int(c)) for r, c in peaks]
    for fy in (0.2, 0.4, 0.6, 0.8):
        for fx in (0.2, 0.4, 0.6, 0.8):
            rows.append((int(h * fy), int(w * fx)))
    rc = np.asarray(rows, dtype=np.float64)
    return np.stack([rc[:, 1] + 0.5, rc[:, 0] + 0.5], axis=1)


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _warps(w: int, h: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray, tuple[int, int], int, bool]]:
    """(name, 3x3 continuous-pixel transform src->trg, output (w, h), interpolation order, photometric)."""
    cx, cy = w / 2.0, h / 2.0

    def about_centre(m: np.ndarray, out: tuple[int, int]) -> np.ndarray:
        return _translate(out[0] / 2.0, out[1] / 2.0) @ m @ _translate(-cx, -cy)

    def rot(deg: float, s: float = 1.0) -> np.ndarray:
        t = np.deg2rad(deg)
        return np.array([[s * np.cos(t), -s * np.sin(t), 0], [s * np.sin(t), s * np.cos(t), 0], [0, 0, 1.0]])

    dx, dy = int(w * 0.15), int(h * 0.1)
    crop_size = (w - 2 * dx, h - 2 * dy)
    small = (round(w * 0.75), round(h * 0.75))
    jitter = rng.uniform(-0.08, 0.08, size=(4, 2)) * np.array([w, h])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    homography = _homography(corners, corners + jitter)
    flip = np.array([[-1.0, 0, w], [0, 1.0, 0], [0, 0, 1.0]])
    return [
        ("hflip", flip, (w, h), 0, False),
        ("crop", _translate(-dx, -dy), crop_size, 0, False),
        ("scale075", about_centre(np.diag([0.75, 0.75, 1.0]), small), small, 1, False),
        ("zoom130", about_centre(np.diag([1.3, 1.3, 1.0]), (w, h)), (w, h), 1, False),
        ("rot15", about_centre(rot(15), (w, h)), (w, h), 1, False),
        ("rot-30", about_centre(rot(-30, 0.9), (w, h)), (w, h), 1, False),
        ("homography", homography, (w, h), 1, False),
        ("photometric", np.eye(3), (w, h), 0, True),
        ("flip-rot-scale", about_centre(rot(10, 0.85) @ np.diag([-1.0, 1.0, 1.0]), (w, h)), (w, h), 1, False),
    ]


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3 x 3 projective transform mapping 4 points ``src`` onto ``dst`` (direct linear solve, h33 = 1)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    h = np.linalg.solve(np.asarray(rows), np.asarray(rhs))
    return np.append(h, 1.0).reshape(3, 3)


def _apply_warp(image: np.ndarray, m: np.ndarray, out: tuple[int, int], order: int) -> np.ndarray:
    """Warp with a continuous-pixel transform (converted to skimage's pixel-index convention)."""
    from skimage.transform import ProjectiveTransform, warp

    m_index = _translate(-0.5, -0.5) @ m @ _translate(0.5, 0.5)
    inverse = ProjectiveTransform(matrix=np.linalg.inv(m_index))
    warped = warp(image, inverse, output_shape=(out[1], out[0]), order=order, preserve_range=True, mode="constant")
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def _photometric(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float64) / 255.0
    x = np.clip(0.85 * x**0.7 + 0.05, 0, 1)
    x = x * np.array([1.0, 0.95, 0.85])
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _project(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    homog = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ m.T
    return homog[:, :2] / homog[:, 2:3]


def _inside(pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return (pts[:, 0] >= 0) & (pts[:, 0] < size[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < size[1])


def _box_of(m: np.ndarray, size: tuple[int, int], out: tuple[int, int]) -> tuple[float, float, float, float]:
    w, h = size
    corners = _project(m, np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64))
    x1, y1 = np.clip(corners.min(axis=0), 0, None)
    x2, y2 = np.minimum(corners.max(axis=0), out)
    return float(x1), float(y1), float(x2), float(y2)


class BuiltinDataset(Dataset):
    """Deterministic offline pairs with exact ground truth (see module docstring); only a ``test`` split."""

    name = "builtin"

    def __init__(self) -> None:
        import skimage
        import sklearn

        self.key = hash_obj({"builtin": BUILTIN_VERSION, "skimage": skimage.__version__, "sklearn": sklearn.__version__})
        self._images: dict[str, np.ndarray] = {}
        self._pairs: list[Pair] = []
        self._build()
        self.categories = sorted({p.category for p in self._pairs})

    def _build(self) -> None:
        rng = np.random.default_rng(_SEED)
        for base, category, loader in _sources():
            image = _downscale(_to_rgb(loader()))
            h, w = image.shape[:2]
            self._images[base] = image
            kps = _keypoints(image)
            full = (0.0, 0.0, float(w), float(h))
            for warp_name, m, out, order, photometric in _warps(w, h, rng):
                trg_id = f"{base}~{warp_name}"
                self._images[trg_id] = _photometric(image) if photometric else _apply_warp(image, m, out, order)
                trg = _project(m, kps)
                self._pairs.append(
                    Pair(
                        pair_id=f"{base}:{warp_name}",
                        category=category,
                        src_id=base,
                        trg_id=trg_id,
                        src_kps=kps.copy(),
                        trg_kps=trg,
                        visible=_inside(trg, out),
                        src_bbox=full,
                        trg_bbox=_box_of(m, (w, h), out),
                        src_size=(w, h),
                        trg_size=out,
                    )
                )
        self._add_stereo()

    def _add_stereo(self) -> None:
        import skimage.data as sd

        left, right, disparity = sd.stereo_motorcycle()
        for scale_name, side in (("stereo-small", 160), ("stereo", 240)):
            scale = side / max(left.shape[:2])
            lft, rgt = _downscale(left, side), _downscale(right, side)
            h, w = lft.shape[:2]
            kps = _keypoints(lft, max_corners=20)
            rows = np.clip(((kps[:, 1]) / scale).astype(int), 0, disparity.shape[0] - 1)
            cols = np.clip(((kps[:, 0]) / scale).astype(int), 0, disparity.shape[1] - 1)
            d = disparity[rows, cols].astype(np.float64) * scale
            trg = np.stack([kps[:, 0] - d, kps[:, 1]], axis=1)
            visible = np.isfinite(d) & _inside(np.nan_to_num(trg, nan=-1.0, posinf=-1.0, neginf=-1.0), (w, h))
            trg = np.where(np.isfinite(trg), trg, 0.0)
            self._images[f"motorcycle-left@{side}"] = lft
            self._images[f"motorcycle-right@{side}"] = rgt
            self._pairs.append(
                Pair(
                    pair_id=f"motorcycle:{scale_name}",
                    category="motorcycle",
                    src_id=f"motorcycle-left@{side}",
                    trg_id=f"motorcycle-right@{side}",
                    src_kps=kps,
                    trg_kps=trg,
                    visible=visible,
                    src_bbox=(0.0, 0.0, float(w), float(h)),
                    trg_bbox=(0.0, 0.0, float(w), float(h)),
                    src_size=(w, h),
                    trg_size=(w, h),
                )
            )

    def pairs(self, split: str = "test", limit: int | None = None) -> list[Pair]:
        if normalise_split(split) != "test":
            raise InputError("the builtin dataset has only the test split")
        return self._pairs if limit is None else self._pairs[: max(0, int(limit))]

    def load_image(self, image_id: str) -> np.ndarray:
        if image_id not in self._images:
            raise InputError(f"unknown builtin image {image_id!r}")
        return self._images[image_id]

    def image_key(self, image_id: str) -> str:
        if image_id not in self._images:
            raise InputError(f"unknown builtin image {image_id!r}")
        return f"builtin:{self.key}:{image_id}"

    def info(self) -> dict:
        """Counts per category and per warp, for ``correspondence datasets``."""
        per_cat: dict[str, int] = {}
        for p in self._pairs:
            per_cat[p.category] = per_cat.get(p.category, 0) + 1
        return {
            **self.describe(),
            "pairs": len(self._pairs),
            "images": len(self._images),
            "pairs_per_category": per_cat,
            "warps": sorted({p.pair_id.split(":", 1)[1] for p in self._pairs}),
        }
