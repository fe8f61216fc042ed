"""Benchmark of the diffusion extractors on SD-shaped random UNets / DiT: early exit after the hooked block vs a full forward.

Random weights (offline), reduced widths, the real block layout (4 UNet levels, 4-level VAE).
Usage: python bench/bench_diffusion.py [--device cpu|cuda] [--size 256] [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _timed(fn, repeats: int, device: str) -> float:
    import torch

    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    import diffusers
    import torch

    from engine.encoders import diffusion_transformer as tr
    from engine.encoders import diffusion_unet as un
    from engine.encoders.diffusion_common import ddpm_noisy, vae_latents
    from engine.encoders.registry import EncoderSpec

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(32, 32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=16)
    unet = diffusers.UNet2DConditionModel(
        sample_size=32, block_out_channels=(64, 128, 256, 256), layers_per_block=2, cross_attention_dim=64,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=8, norm_num_groups=16,
    )
    alphas = diffusers.DDPMScheduler().alphas_cumprod
    spec = EncoderSpec("bench-sd", "diffusion", "", False, "bench", {"image_size": args.size, "t": 1})
    enc = un.unet_encoder(spec, vae, unet, torch.zeros(1, 77, 64), alphas, None).to(args.device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    module = enc.module

    def full() -> None:
        with torch.inference_mode():
            latents = vae_latents(module.vae, x)
            t = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
            module.unet(ddpm_noisy(latents, module.alphas_cumprod, t), t, encoder_hidden_states=module.prompt_embeds.expand(x.shape[0], -1, -1))

    early = _timed(lambda: enc.encode(x), args.repeats, args.device)
    whole = _timed(full, args.repeats, args.device)
    print(f"SD-shaped UNet, {args.size} px, batch {args.batch}, {args.device}: up_blocks[0] early exit {early:.3f} s "
          f"({args.batch / early:.1f} img/s), full forward {whole:.3f} s ({args.batch / whole:.1f} img/s), x{whole / early:.2f}")
    dit = diffusers.DiTTransformer2DModel(num_attention_heads=4, attention_head_dim=32, in_channels=4, out_channels=8, num_layers=8,
                                          sample_size=args.size // 8, patch_size=2)
    for block in ("-1", "3"):
        enc = tr.dit_encoder(EncoderSpec("bench-dit", "diffusion", "", False, "bench", {"image_size": args.size, "t": 1}),
                             vae, dit, alphas, block).to(args.device)
        sec = _timed(lambda enc=enc: enc.encode(x), args.repeats, args.device)
        print(f"DiT-shaped (8 blocks, width 128), block {block}: {sec:.3f} s ({args.batch / sec:.1f} img/s), grid {enc.encode(x).grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
