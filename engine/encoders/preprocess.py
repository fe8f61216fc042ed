"""Image -> model input: stretch / letterbox / centre-crop resizing, normalisation and the point geometry."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from engine.encoders.base import Preprocessing, to_uint8_rgb
from engine.errors import InputError


@dataclass
class ImageGeometry:
    """How one original image maps onto the model input.

    Points are continuous pixel coordinates (x, y) whose origin is the top-left corner of the top-left
    pixel (so the centre of pixel column c is at x = c + 0.5); ``x_in = x * scale_x + offset_x``.
    This is exactly the mapping of an antialiased bilinear resize with ``align_corners=False``.
    """

    orig_size: tuple[int, int]  # (w, h)
    input_size: tuple[int, int]  # (H, W)
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_input(self, points_xy: np.ndarray) -> np.ndarray:
        """N x 2 original (x, y) -> N x 2 model-input (x, y)."""
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([pts[:, 0] * self.scale_x + self.offset_x, pts[:, 1] * self.scale_y + self.offset_y], axis=1)

    def to_original(self, points_xy: np.ndarray) -> np.ndarray:
        """N x 2 model-input (x, y) -> N x 2 original (x, y)."""
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([(pts[:, 0] - self.offset_x) / self.scale_x, (pts[:, 1] - self.offset_y) / self.scale_y], axis=1)

    def valid_input_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the input region covered by image content (padding excluded)."""
        w, h = self.orig_size
        height, width = self.input_size
        x0, y0 = max(self.offset_x, 0.0), max(self.offset_y, 0.0)
        x1 = min(w * self.scale_x + self.offset_x, float(width))
        y1 = min(h * self.scale_y + self.offset_y, float(height))
        return x0, y0, x1, y1


def _geometry(w: int, h: int, pre: Preprocessing) -> tuple[ImageGeometry, tuple[int, int]]:
    """The geometry and the intermediate resized size (rh, rw) for one image."""
    height, width = pre.input_size
    if pre.resize == "stretch":
        rh, rw = height, width
        geom = ImageGeometry((w, h), (height, width), rw / w, rh / h, 0.0, 0.0)
    elif pre.resize == "letterbox":
        scale = min(height / h, width / w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        geom = ImageGeometry((w, h), (height, width), rw / w, rh / h, float((width - rw) // 2), float((height - rh) // 2))
    elif pre.resize == "shortest_side_center_crop":
        scale = max(height / h, width / w)
        rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
        geom = ImageGeometry((w, h), (height, width), rw / w, rh / h, -float((rw - width) // 2), -float((rh - height) // 2))
    else:
        raise InputError(f"unknown resize strategy {pre.resize!r} (use stretch, letterbox or shortest_side_center_crop)")
    return geom, (rh, rw)


def upload_images(arrays: list[np.ndarray], device: str | torch.device) -> list[torch.Tensor]:
    """uint8 arrays -> uint8 tensors of the same shapes on ``device``, views of one buffer filled on the host and
    copied over once. To a CUDA device the buffer is pinned and the copy asynchronous: nothing waits for the work
    already queued there (a forward), and the caching host allocator keeps the buffer until the copy is done."""
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    sizes = [int(np.asarray(a).size) for a in arrays]
    host = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=on_cuda)
    flat = host.numpy()
    offset = 0
    for arr, size in zip(arrays, sizes, strict=True):
        np.copyto(flat[offset : offset + size].reshape(np.shape(arr)), arr, casting="no")
        offset += size
    packed = host.to(device, non_blocking=True) if on_cuda else host.to(device)
    views, offset = [], 0
    for arr, size in zip(arrays, sizes, strict=True):
        views.append(packed[offset : offset + size].view(np.shape(arr)))
        offset += size
    return views


def _constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float32).view(3, 1, 1)
    if device.type == "cuda":  # a pageable copy would wait for the queued forward
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def prepare(
    images: list[np.ndarray], pre: Preprocessing, device: str | torch.device | None = None
) -> tuple[torch.Tensor, list[ImageGeometry]]:
    """uint8 RGB H x W x 3 arrays -> normalised B x 3 x H x W float tensor and one geometry per image.

    ``device`` (default CPU) is where the resize and normalisation run: on a GPU only the uint8 images are copied
    over, in one asynchronous copy (``upload_images``), then the same operations as on the CPU, a small fraction of
    their cost beside an encoder. Nothing in it waits for the GPU.
    """
    if not images:
        raise InputError("no images to prepare")
    device = torch.device("cpu") if device is None else torch.device(device)
    arrays = []
    for k, image in enumerate(images):
        arr = to_uint8_rgb(image)
        h, w = arr.shape[:2]
        if h < 1 or w < 1:
            raise InputError(f"image {k} is empty ({w}x{h})")
        _geometry(w, h, pre)  # an unknown resize strategy fails here, before any copy
        arrays.append(arr)
    if device.type == "cuda":
        uploaded = upload_images(arrays, device)
    else:
        uploaded = [torch.from_numpy(np.ascontiguousarray(arr)).to(device) for arr in arrays]
    return prepare_tensors(uploaded, pre)


def prepare_tensors(images: list[torch.Tensor], pre: Preprocessing) -> tuple[torch.Tensor, list[ImageGeometry]]:
    """``prepare`` of non-empty uint8 H x W x 3 tensors, on the device they are on."""
    if not images:
        raise InputError("no images to prepare")
    device = images[0].device
    height, width = pre.input_size
    mean = _constant(pre.mean, device)
    std = _constant(pre.std, device)
    batch = torch.empty(len(images), 3, height, width, dtype=torch.float32, device=device)
    geometries = []
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        geom, (rh, rw) = _geometry(w, h, pre)
        x = image.permute(2, 0, 1).float().div_(255.0)
        if (rh, rw) != (h, w):
            x = F.interpolate(x[None], size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)[0]
            x = x.clamp_(0.0, 1.0)
        x = (x - mean) / std
        if pre.resize == "letterbox":
            canvas = torch.full((3, height, width), float(pre.pad_value), dtype=torch.float32, device=device)
            oy, ox = int(geom.offset_y), int(geom.offset_x)
            canvas[:, oy : oy + rh, ox : ox + rw] = x
            x = canvas
        elif pre.resize == "shortest_side_center_crop":
            oy, ox = int(-geom.offset_y), int(-geom.offset_x)
            x = x[:, oy : oy + height, ox : ox + width]
        batch[k] = x
        geometries.append(geom)
    return batch, geometries


PREPROCESSING_VARIANTS = ("clean", "paper-c", "llava")


def variant_preprocessing(pre: Preprocessing, variant: str) -> Preprocessing:
    """An encoder's preprocessing under a named variant.

    - ``clean`` (default): as the encoder declares (stretch to its input size, its own mean/std).
    - ``paper-c``: the released C-score code: stretch, and ``x * 2 - 1`` (mean = std = 0.5) for every encoder,
      CLIP and DINOv2 included.
    - ``llava``: LLaVA-1.5's ``image_aspect_ratio=pad``: letterbox (centred) padded with the mean colour
      (0 after normalisation), then the model's own mean/std.
    """
    if variant == "clean":
        return pre
    if variant == "paper-c":
        return replace(pre, resize="stretch", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    if variant == "llava":
        return replace(pre, resize="letterbox", pad_value=0.0)
    raise InputError(f"unknown preprocessing variant {variant!r} (use one of {', '.join(PREPROCESSING_VARIANTS)})")


def feature_to_input(ij: np.ndarray, stride: int, patch_size: int) -> np.ndarray:
    """N x 2 feature cells (i=row, j=col) -> N x 2 model-input (x, y) of the cell centres."""
    cells = np.asarray(ij, dtype=np.float64).reshape(-1, 2)
    half = patch_size / 2.0
    return np.stack([cells[:, 1] * stride + half, cells[:, 0] * stride + half], axis=1)


def input_to_feature(xy: np.ndarray, stride: int, patch_size: int) -> np.ndarray:
    """N x 2 model-input (x, y) -> N x 2 continuous feature coordinates (i, j); inverse of ``feature_to_input``.

    Round and clip to the grid (see ``nearest_cell``) to index a cell.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    half = patch_size / 2.0
    return np.stack([(pts[:, 1] - half) / stride, (pts[:, 0] - half) / stride], axis=1)


def nearest_cell(xy: np.ndarray, stride: int, patch_size: int, grid: tuple[int, int]) -> np.ndarray:
    """N x 2 model-input (x, y) -> N x 2 integer (i, j) of the nearest cell centre, clipped to the grid (h, w)."""
    ij = np.rint(input_to_feature(xy, stride, patch_size)).astype(np.int64)
    ij[:, 0] = np.clip(ij[:, 0], 0, grid[0] - 1)
    ij[:, 1] = np.clip(ij[:, 1], 0, grid[1] - 1)
    return ij
