"""High-level alignment operations shared by the CLI, pages and jobs: score dumps (A-v1), A-v3 job, import, attach."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.alignment import records
from engine.alignment.data import load_pairs
from engine.alignment.dumps import dump_files, dump_fingerprint, iter_dump
from engine.alignment.features import TokenCache, build_encoder
from engine.alignment.llm import llm_fingerprint, llm_hidden_size, load_llm
from engine.alignment.loglik import a_v3_loglik
from engine.alignment.projector import import_projector, load_projector
from engine.alignment.scores import a_v1
from engine.errors import InputError, LawExplorerError
from engine.hashing import hash_file
from engine.jobs import targets

LOGLIK_TARGET = targets.A_V3_LOGLIK
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def parse_attach(spec: str | None) -> tuple[str, str] | None:
    """``STUDY:SETTING`` -> (study, setting)."""
    if not spec:
        return None
    study, sep, setting = spec.partition(":")
    if not sep or not study or not setting:
        raise InputError(f"--attach expects STUDY:SETTING, got {spec!r}")
    return study, setting


def attach_a(
    attach: tuple[str, str] | None, a: float, a_method: str, record_id: str, benchmark: str | None = None,
    llm: str | None = None, projector: str | None = None,
) -> None:
    """Store an A score on a study setting (``engine.study.set_setting_scores``), per benchmark when given."""
    if attach is None:
        return
    try:
        study = importlib.import_module("engine.study")
    except ImportError as exc:
        raise LawExplorerError("studies are not available (engine.study is not installed)") from exc
    metadata = {"a_method": a_method, "recipe": f"alignment_scores:{record_id}"}
    if llm:
        metadata["llm"] = llm
    if projector:
        metadata["projector"] = projector
    value = {benchmark: float(a)} if benchmark else float(a)
    study.set_setting_scores(attach[0], attach[1], A=value, metadata=metadata)


def score_dumps(
    target: str | Path,
    references: list[str | Path],
    n_images: int | None = None,
    variant: str = "clean",
    chunk: int = 1024,
    record: bool = True,
    attach: str | None = None,
    benchmark: str | None = None,
) -> dict:
    """A-v1 of a target dump folder against reference dump folders (reference name = folder basename)."""
    if not references:
        raise InputError("give at least one reference dump folder")
    names = [Path(r).name for r in references]
    if len(set(names)) != len(names):
        raise InputError(f"reference folder names must differ (they name the references): {names}")
    count = len(dump_files(target, n_images))
    for ref in references:
        available = len(dump_files(ref))
        if n_images is None and available != count:
            raise InputError(f"{Path(ref).name} holds {available} images but the target holds {count}")
        if n_images is not None and available < n_images:
            raise InputError(f"{Path(ref).name} holds {available} images, fewer than {n_images}")
    refs = {name: iter_dump(ref, count) for name, ref in zip(names, references, strict=True)}
    result = a_v1(iter_dump(target, count), refs, chunk=chunk, variant=variant)
    recipe = {
        "target": str(target), "target_fingerprint": dump_fingerprint(target, count),
        "references": {n: str(r) for n, r in zip(names, references, strict=True)},
        "reference_fingerprints": {n: dump_fingerprint(r, count) for n, r in zip(names, references, strict=True)},
        "images": f"tensor_1..tensor_{count}", "skipped": result["skipped"],
    }
    attach_to = parse_attach(attach)
    if record or attach_to:
        result["record_id"] = records.record_a_score(
            "v1", result["A"], variant=variant, per_reference=result["per_reference"], n_images=result["n_images"],
            setting=Path(target).name, recipe={**recipe, "benchmark": benchmark},
        )
        method = f"A-v1 {variant} vs {'+'.join(names)}, N={result['n_images']}"
        attach_a(attach_to, result["A"], method, result["record_id"], benchmark=benchmark)
    return result


def projected_tokens(
    encoder: str, projector: str | Path, images: list[str | Path], batch_size: int = 8, device: str = "cpu"
) -> Iterator[torch.Tensor]:
    """Yield each image's projected tokens ``[tokens, llm_hidden]`` (what A-v1 compares), encoder tokens cached."""
    enc = build_encoder(encoder, device=device)
    proj = load_projector(projector, in_dim=enc.embed_dim).to(device).eval()
    cache = TokenCache(enc, batch_size=batch_size)
    for start in range(0, len(images), batch_size):
        feats = cache.tokens(list(images[start : start + batch_size])).to(device)
        with torch.inference_mode():
            out = proj(feats).float().cpu()
        yield from out


def write_dump(tensors: Iterable[torch.Tensor], folder: str | Path) -> int:
    """Write tensors in the authors' layout (``tensor_1 ...``) as safetensors; returns the count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise InputError(f"{folder} is not empty; choose a new folder for the dump")
    count = 0
    for count, tensor in enumerate(tensors, start=1):
        save_file({"embeddings": tensor.contiguous()}, str(folder / f"tensor_{count}.safetensors"))
    return count


def image_files(folder: str | Path, n: int | None = None) -> list[Path]:
    """Image files of a folder in name order (first ``n``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink())
    if not files:
        raise InputError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files[:n] if n else files


A_V1_TARGET = targets.A_V1


def a_v1_job(params: dict, ctx) -> dict:
    """Job function for A-v1 computed by the engine (no dumps): projected tokens of a target setting and of
    reference settings over the same images.

    params: ``target`` {encoder, projector}, ``references`` {name: {encoder, projector}}, ``images`` (folder),
    ``n`` (default 100, first n files in name order), ``variant``, ``setting``, ``attach``, ``benchmark``.
    """
    target, refs = params.get("target") or {}, params.get("references") or {}
    if not target.get("encoder") or not target.get("projector") or not refs:
        raise InputError("A-v1 needs a target {encoder, projector} and at least one reference")
    files = image_files(params["images"], int(params.get("n") or 100))
    ctx.progress(0, len(files), "encoding and projecting")
    result = a_v1(
        projected_tokens(target["encoder"], target["projector"], files),
        {name: projected_tokens(r["encoder"], r["projector"], files) for name, r in refs.items()},
        variant=params.get("variant") or "clean",
    )
    ctx.progress(len(files), len(files), f"A-v1 = {result['A']:.4f}")
    recipe = {"images": [f.name for f in files], "image_folder": str(params["images"]), "target": target, "references": refs}
    result["record_id"] = records.record_a_score(
        "v1", result["A"], variant=result["variant"], per_reference=result["per_reference"], n_images=result["n_images"],
        setting=params.get("setting"), encoder=target["encoder"], projector_hash=hash_file(target["projector"]), recipe=recipe,
    )
    method = f"A-v1 {result['variant']} vs {'+'.join(refs)}, N={result['n_images']}"
    attach_a(parse_attach(params.get("attach")), result["A"], method, result["record_id"], benchmark=params.get("benchmark"),
             projector=str(target["projector"]))
    return result


def latest_projector(encoder: str, llm: str) -> str:
    table = records.list_projectors()
    rows = table[(table["encoder"] == encoder) & (table["llm"] == llm)]
    if rows.empty:
        raise InputError(f"no stored projector for encoder {encoder!r} and this LLM; train or import one first (or pass --projector)")
    return str(rows.iloc[0]["path"])


def loglik_job(params: dict, ctx) -> dict:
    """Job function for A-v3: params encoder, projector, llm, data, images, n, seed, batch_size, averaging, demo."""
    p = dict(params)
    if p.get("demo"):
        from engine.alignment.train import resolve_params

        filled = resolve_params({"demo": True, **{k: p[k] for k in ("encoder", "llm", "data", "images") if p.get(k)}})
        p.update({k: filled[k] for k in ("encoder", "llm", "data", "images")})
    missing = [k for k in ("encoder", "llm", "data", "images") if not p.get(k)]
    if missing:
        raise InputError(f"A-v3 needs {', '.join('--' + m for m in missing)} (or --demo)")
    projector_path = p.get("projector") or latest_projector(p["encoder"], p["llm"])
    pairs = load_pairs(p["data"], p["images"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx.progress(0, 3, "loading LLM, encoder and projector")
    llm, tokenizer = load_llm(p["llm"], device=device, dtype=torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    encoder = build_encoder(p["encoder"], device=device)
    hidden = int(llm.get_input_embeddings().weight.shape[1])
    projector = load_projector(projector_path, in_dim=encoder.embed_dim, out_dim=hidden)
    ctx.progress(1, 3, "scoring captions")
    ctx.check_cancelled()
    n, seed = int(p.get("n") or 100), int(p.get("seed") or 0)
    result = a_v3_loglik(
        encoder, projector, llm, tokenizer, pairs, n=n, seed=seed, batch_size=int(p.get("batch_size") or 8),
        averaging=p.get("averaging") or "pooled", cache=TokenCache(encoder),
    )
    recipe = {
        "data": str(p["data"]), "images": str(p["images"]), "ids": result["ids"], "indices": result["indices"],
        "projector": str(projector_path), "averaging": result["averaging"], "demo": bool(p.get("demo")),
    }
    hashes = {
        "encoder": p["encoder"], "encoder_hash": encoder.weights_hash(), "projector_hash": hash_file(projector_path),
        "llm": p["llm"], "llm_hash": llm_fingerprint(p["llm"]),
    }
    result["record_id"] = records.record_a_score(
        "v3", result["A"], variant=result["averaging"], n_images=result["n_images"], n_tokens=result["n_tokens"],
        seed=seed, setting=p.get("setting"), recipe=recipe, **hashes,
    )
    method = f"A-v3 {result['averaging']} caption log-lik, N={result['n_images']}, seed={seed}"
    attach_a(parse_attach(p.get("attach")), result["A"], method, result["record_id"], benchmark=p.get("benchmark"),
             llm=p["llm"], projector=str(projector_path))
    ctx.progress(3, 3, f"A-v3 = {result['A']:.4f}")
    result.update(hashes)
    result.pop("per_caption", None)
    return result


def import_projector_file(path: str | Path, encoder: str, llm: str) -> dict:
    """Validate a LLaVA projector against the encoder width and LLM hidden size, store it, record it."""
    enc = build_encoder(encoder)
    hidden = llm_hidden_size(llm)
    stored, sha = import_projector(path, in_dim=enc.embed_dim, out_dim=hidden)
    records.record_projector(encoder, llm, enc.embed_dim, hidden, str(stored), f"imported from {Path(path).name}", sha)
    return {"projector": str(stored), "sha": sha, "in_dim": enc.embed_dim, "out_dim": hidden, "encoder": encoder, "llm": llm}
