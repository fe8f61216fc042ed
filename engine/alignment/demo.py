"""Offline smoke-scale demo material: captioned synthetic scenes and wheel-shipped photos, a tiny word-level LM.

Everything here is built locally from code and images inside installed wheels (skimage, sklearn);
nothing is downloaded. It exercises the real training / scoring code paths; its numbers are not results.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from engine import config
from engine.alignment.data import write_pairs
from engine.atomic import atomic_path
from engine.hashing import hash_obj

DEMO_VERSION = "demo-2"
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 220), "yellow": (235, 210, 40), "purple": (140, 60, 180)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
RELATIONS = {"above": (0, 1), "below": (0, -1), "left of": (1, 0), "right of": (-1, 0)}
PHOTOS = {
    "astronaut": "a portrait of an astronaut in a white space suit with a flag",
    "camera": "a black and white photo of a man with a camera on a tripod",
    "coffee": "a cup of coffee on a saucer with a spoon",
    "chelsea": "a photo of an orange tabby cat looking at the camera",
    "rocket": "a rocket standing on a launch pad under a blue sky",
    "coins": "a grey photo of old coins on a dark background",
    "horse": "a black silhouette of a horse on a white background",
    "china": "a photo of a chinese temple with trees",
    "flower": "a close photo of a pink flower",
}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre: tuple[int, int], r: int, colour: tuple) -> None:
    x, y = centre
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)


def synthetic_scene(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, str]:
    """Two coloured shapes in a spatial relation on a plain background, with its caption."""
    bg = str(rng.choice(list(BACKGROUNDS)))
    (s1, s2) = rng.choice(SHAPES, 2)
    c1, c2 = rng.choice([c for c in COLOURS], 2, replace=False)
    rel = str(rng.choice(list(RELATIONS)))
    dx, dy = RELATIONS[rel]
    img = Image.new("RGB", (size, size), BACKGROUNDS[bg])
    draw = ImageDraw.Draw(img)
    r = size // 8
    jitter = rng.integers(-size // 16, size // 16 + 1, 2)
    centre = np.array([size // 2, size // 2]) + jitter
    offset = np.array([dx, dy]) * size // 4
    _draw_shape(draw, str(s1), tuple(int(v) for v in centre - offset), r, COLOURS[c1])
    _draw_shape(draw, str(s2), tuple(int(v) for v in centre + offset), r, COLOURS[c2])
    caption = f"a {c1} {s1} {rel} a {c2} {s2} on a {bg} background"
    return np.asarray(img), caption


def _photos() -> list[tuple[str, np.ndarray]]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = []
    for name in PHOTOS:
        try:
            image = getattr(data, name)() if hasattr(data, name) else None
        except Exception:  # a wheel without this sample image: skip it
            image = None
        if image is not None:
            out.append((name, image))
    for fname, image in zip(load_sample_images().filenames, load_sample_images().images, strict=True):
        out.append((Path(fname).stem, image))
    return out


def demo_dataset(n_synthetic: int = 240, crops_per_photo: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """Write (once) the demo pairs as LLaVA-Pretrain JSON + PNG folder; returns (json path, image folder)."""
    folder = config.subdir("alignment") / "demo" / f"data-{hash_obj([DEMO_VERSION, n_synthetic, crops_per_photo, seed])}"
    data_json = folder / "pretrain.json"
    if data_json.is_file():
        return data_json, folder / "images"
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    triples = []
    for i in range(n_synthetic):
        image, caption = synthetic_scene(rng)
        Image.fromarray(image).save(images / f"scene_{i:04d}.png")
        triples.append((f"scene_{i:04d}", f"scene_{i:04d}.png", caption))
    for name, image in _photos():
        image = np.asarray(Image.fromarray(image).convert("RGB"))
        h, w = image.shape[:2]
        for k in range(crops_per_photo):
            side = int(min(h, w) * rng.uniform(0.6, 0.95))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = image[y : y + side, x : x + side]
            if k % 2:
                crop = crop[:, ::-1]
            Image.fromarray(np.ascontiguousarray(crop)).resize((96, 96)).save(images / f"{name}_{k}.png")
            triples.append((f"{name}_{k}", f"{name}_{k}.png", PHOTOS.get(name, f"a photo of a {name}")))
    with atomic_path(data_json) as tmp:
        write_pairs(triples, tmp)
    return data_json, images


def build_word_tokenizer(captions: list[str]):
    """A word-level fast tokenizer over the captions' vocabulary (works offline, saves with save_pretrained)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for c in captions for w in c.lower().split()})
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "<s>", "</s>", *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="[PAD]", unk_token="[UNK]"
    )


def _warm_up(model, opt, seqs: list[list[int]], pad_id: int, steps: int, gen: torch.Generator, batch: int = 32) -> None:
    """Next-token training on the captions as plain text, so the tiny LM knows the caption language."""
    for _ in range(steps):
        idx = torch.randint(len(seqs), (batch,), generator=gen).tolist()
        longest = max(len(seqs[i]) for i in idx)
        ids = torch.full((batch, longest), pad_id)
        labels = torch.full((batch, longest), -100)
        for row, i in enumerate(idx):
            ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
            labels[row, : len(seqs[i])] = torch.tensor(seqs[i])
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def demo_llm(data_json: Path, hidden: int = 96, layers: int = 2, lm_steps: int = 150, seed: int = 0) -> Path:
    """Build (once) a tiny Llama from a config, warm it up on the captions as text, save it with its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from engine.alignment.llm import caption_ids, prefix_ids

    captions = [e["conversations"][1]["value"] for e in json.loads(Path(data_json).read_text())]
    key = hash_obj([DEMO_VERSION, sorted(set(captions)), hidden, layers, lm_steps, seed])
    folder = config.subdir("alignment") / "demo" / f"llm-{key}"
    if (folder / "config.json").is_file():
        return folder
    tokenizer = build_word_tokenizer(captions)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    seqs = [prefix_ids(tokenizer) + caption_ids(tokenizer, c) for c in captions]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs faster on one thread (no sync cost on a busy machine)
    try:
        _warm_up(model, opt, seqs, tokenizer.pad_token_id, lm_steps, gen)
    finally:
        torch.set_num_threads(threads)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    hf_logging.disable_progress_bar()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.replace(folder)
    except OSError:  # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
