"""A synthetic dataset written in the SPair-71k layout (benchmarks and loader tests); smooth random images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N_KEYPOINTS = 30


def _image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth random colour field (bilinear upsampling of a coarse random grid)."""
    import torch
    import torch.nn.functional as F

    coarse = torch.from_numpy(rng.random((1, 3, 6, 6), dtype=np.float32))
    img = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    return np.clip(img * 255.0, 0, 255).astype(np.uint8)


def write_synthetic_spair(
    root: str | Path,
    n_categories: int = 18,
    images_per_category: int = 100,
    n_pairs: int = 12_234,
    size_range: tuple[int, int] = (96, 160),
    split: str = "test",
    seed: int = 0,
) -> Path:
    """Write JPEGImages/, ImageAnnotation/, PairAnnotation/<split>/ and Layout/large/<split>.txt under ``root``."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    categories = [f"cat{k:02d}" for k in range(n_categories)]
    pair_dir = root / "PairAnnotation" / split
    pair_dir.mkdir(parents=True, exist_ok=True)
    layout_dir = root / "Layout" / "large"
    layout_dir.mkdir(parents=True, exist_ok=True)
    annotations: dict[str, list[dict]] = {}
    for category in categories:
        (root / "JPEGImages" / category).mkdir(parents=True, exist_ok=True)
        (root / "ImageAnnotation" / category).mkdir(parents=True, exist_ok=True)
        annotations[category] = []
        for index in range(images_per_category):
            w, h = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
            name = f"{index:06d}"
            Image.fromarray(_image(rng, w, h)).save(root / "JPEGImages" / category / f"{name}.jpg", quality=90)
            box = [int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4)), int(rng.integers(3 * w // 4, w)), int(rng.integers(3 * h // 4, h))]
            kps: dict[str, list[int] | None] = {}
            for k in range(N_KEYPOINTS):
                visible = rng.random() < 0.5
                kps[str(k)] = [int(rng.integers(box[0], box[2])), int(rng.integers(box[1], box[3]))] if visible else None
            ann = {"filename": f"{name}.jpg", "category": category, "image_width": w, "image_height": h, "bndbox": box, "kps": kps}
            (root / "ImageAnnotation" / category / f"{name}.json").write_text(json.dumps(ann), encoding="utf-8")
            annotations[category].append(ann)
    stems = []
    per_cat = np.full(n_categories, n_pairs // n_categories)
    per_cat[: n_pairs % n_categories] += 1
    pair_id = 0
    for category, count in zip(categories, per_cat, strict=True):
        anns = annotations[category]
        for _ in range(int(count)):
            a, b = rng.choice(len(anns), size=2, replace=False)
            src, trg = anns[a], anns[b]
            ids = [k for k in range(N_KEYPOINTS) if src["kps"][str(k)] is not None and trg["kps"][str(k)] is not None]
            data = {
                "pair_id": pair_id,
                "src_imname": src["filename"],
                "trg_imname": trg["filename"],
                "src_imsize": [src["image_width"], src["image_height"], 3],
                "trg_imsize": [trg["image_width"], trg["image_height"], 3],
                "src_bndbox": src["bndbox"],
                "trg_bndbox": trg["bndbox"],
                "category": category,
                "src_kps": [src["kps"][str(k)] for k in ids],
                "trg_kps": [trg["kps"][str(k)] for k in ids],
                "kps_ids": [str(k) for k in ids],
            }
            stem = f"{pair_id:06d}-{src['filename'][:-4]}-{trg['filename'][:-4]}:{category}"
            (pair_dir / f"{stem}.json").write_text(json.dumps(data), encoding="utf-8")
            stems.append(stem)
            pair_id += 1
    (layout_dir / f"{split}.txt").write_text("\n".join(stems) + "\n", encoding="utf-8")
    return root
