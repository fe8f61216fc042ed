"""``python -m engine alignment ...``: A scores (v1 dumps, v3 log-likelihood), projector import and training."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from engine import config
from engine.cli.common import Output, leaf, positive_int
from engine.errors import InputError
from engine.hashing import hash_obj


def _progress_printer(label: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with transformers
        return None, None
    bar = tqdm(desc=label, file=sys.stderr, leave=False, disable=not sys.stderr.isatty())

    def update(done: int, total: int, message: str = "") -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message[-40:], refresh=False)
        bar.refresh()

    return update, bar


def _score(args: argparse.Namespace) -> Output:
    from engine.alignment.evaluate import score_dumps

    refs = [r for r in args.references.split(",") if r.strip()]
    result = score_dumps(args.target, refs, n_images=args.images, variant=args.variant, chunk=args.chunk, attach=args.attach,
                         benchmark=args.benchmark)
    data = {"A": result["A"], "per_reference": result["per_reference"], "n_images": result["n_images"]}
    if args.variant != "clean":
        data.update(variant=args.variant, skipped=result["skipped"])
    table = pd.DataFrame({"reference": list(result["per_reference"]), "A": list(result["per_reference"].values())})
    return Output(data=data, text=f"A-v1 ({args.variant}) = {result['A']:.4f} over {result['n_images']} images", tables=[("", table)])


def _train(args: argparse.Namespace) -> Output:
    from engine.alignment import jobctx
    from engine.alignment.distributed import rank_from_env, world_size_from_env
    from engine.alignment.train import TARGET

    if not args.demo and not all([args.encoder, args.llm, args.data, args.images]):
        raise InputError("train-projector needs --demo or all of --encoder, --llm, --data, --images")
    params = {
        "demo": bool(args.demo), "encoder": args.encoder, "llm": args.llm, "data": args.data, "images": args.images,
        "max_steps": args.max_steps, "lr": args.lr, "batch_size": args.batch_size, "micro_batch_size": args.micro_batch_size,
        "epochs": args.epochs, "checkpoint_every": args.checkpoint_every, "seed": args.seed, "device": args.device,
    }
    params = {k: v for k, v in params.items() if v not in (None, False)}
    run_dir = Path(args.run_dir) if args.run_dir else config.subdir("alignment") / "runs" / hash_obj(params)
    launched = world_size_from_env() > 1  # under accelerate launch / torchrun: every rank runs this
    if not args.resume and not args.background:
        if launched:
            params["fresh"] = True  # the main rank drops the old checkpoint; ranks must not race on rmtree
        elif run_dir.exists():
            shutil.rmtree(run_dir)
    params["run_dir"] = str(run_dir)
    if args.num_processes > 1:
        params["num_processes"] = args.num_processes
    if args.gradient_checkpointing:
        params["gradient_checkpointing"] = True
    if args.background:
        job_id = jobctx.submit(TARGET, params, title="train projector" + (" (demo)" if args.demo else ""))
        return Output(data={"job_id": job_id, "run_dir": str(run_dir)}, text=f"submitted job {job_id}")
    update, bar = _progress_printer("training")
    try:
        result = jobctx.run_inline(TARGET, params, progress=update, work_dir=run_dir)
    finally:
        if bar is not None:
            bar.close()
    if rank_from_env() > 0:  # one report per launch: only the main rank prints
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process exits
    data = {k: result[k] for k in ("loss_first", "loss_last", "steps", "checkpoint")}
    data.update(run_dir=result["run_dir"], samples_per_s=result.get("samples_per_s"), num_processes=result.get("num_processes", 1),
                mixed_precision=result.get("mixed_precision"))
    note = " [smoke-scale demo, not a result]" if result.get("demo") else ""
    return Output(data=data, text=f"{result['steps']} steps, loss {result['loss_first']:.4f} -> {result['loss_last']:.4f}; projector {result['checkpoint']}{note}")


def _loglik(args: argparse.Namespace) -> Output:
    from engine.alignment import jobctx
    from engine.alignment.evaluate import LOGLIK_TARGET

    params = {
        "demo": bool(args.demo), "encoder": args.encoder, "projector": args.projector, "llm": args.llm,
        "data": args.data, "images": args.images, "n": args.n, "seed": args.seed, "averaging": args.averaging,
        "attach": args.attach, "benchmark": args.benchmark,
    }
    params = {k: v for k, v in params.items() if v not in (None, False)}
    if args.background:
        job_id = jobctx.submit(LOGLIK_TARGET, params, title="A-v3 log-likelihood")
        return Output(data={"job_id": job_id}, text=f"submitted job {job_id}")
    result = jobctx.run_inline(LOGLIK_TARGET, params)
    data = {"A": result["A"], "n_images": result["n_images"], "n_tokens": result["n_tokens"], "averaging": result["averaging"], "seed": result["seed"]}
    return Output(data=data, text=f"A-v3 ({result['averaging']} token mean log-likelihood) = {result['A']:.4f} over {result['n_images']} captions")


def _import(args: argparse.Namespace) -> Output:
    from engine.alignment.evaluate import import_projector_file

    result = import_projector_file(args.path, args.encoder, args.llm)
    return Output(data=result, text=f"stored projector {result['sha']} ({result['in_dim']} -> {result['out_dim']}) at {result['projector']}")


def _dump(args: argparse.Namespace) -> Output:
    from engine.alignment.evaluate import image_files, projected_tokens, write_dump

    files = image_files(args.images, args.n)
    count = write_dump(projected_tokens(args.encoder, args.projector, files), args.out)
    return Output(data={"out": args.out, "n_images": count}, text=f"wrote {count} projected-token dumps to {args.out}")


def _list(args: argparse.Namespace) -> Output:
    from engine.alignment.records import list_a_scores

    table = list_a_scores(args.definition)
    cols = ["id", "created", "definition", "variant", "a", "n_images", "seed", "setting", "encoder", "llm"]
    return Output(data=table.astype(str).to_dict(orient="records"), tables=[("A scores", table[cols])])


def register(sub) -> None:
    group = sub.add_parser("alignment", help="A scores (v1, v3), stage-1 projector import and training").add_subparsers(dest="cmd", required=True)

    p = leaf(group, "score", _score, "A-v1: max-cosine of target embedding dumps to reference dumps (CLIP@224/336)")
    p.add_argument("--target", required=True, help="folder of tensor_<i>.pt|.safetensors|.npy, each [tokens, dim]")
    p.add_argument("--references", required=True, help="comma-separated reference dump folders (name = basename)")
    p.add_argument("--images", type=positive_int, default=None, help="use the first N images (default: all)")
    p.add_argument("--variant", choices=["clean", "released"], default="clean", help="clean definition or the authors' compute.py")
    p.add_argument("--chunk", type=int, default=1024, help="target tokens per matmul block (memory bound)")
    p.add_argument("--attach", default=None, metavar="STUDY:SETTING", help="store the A on a study setting")
    p.add_argument("--benchmark", default=None, help="with --attach: store the A for this benchmark only")

    p = leaf(group, "train-projector", _train, "Train a LLaVA stage-1 mlp2x_gelu projector (frozen encoder + LLM)")
    p.add_argument("--demo", action="store_true", help="offline smoke-scale demo (synthetic + wheel images, tiny LM)")
    p.add_argument("--encoder")
    p.add_argument("--llm", help="HF id (must be cached) or local model folder")
    p.add_argument("--data", help="LLaVA-Pretrain JSON")
    p.add_argument("--images", help="image folder of the JSON")
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--micro-batch-size", type=positive_int, default=None)
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--checkpoint-every", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--run-dir", default=None, help="checkpoint folder (default: derived from the parameters)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--background", action="store_true", help="run as a background job and print its id")
    p.add_argument("--num-processes", type=positive_int, default=1,
                   help="data-parallel processes (torch.distributed.run; one per GPU, or gloo on CPU); default 1")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute the frozen LLM's activations (less memory)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default=None, help="auto: CUDA when available (bf16), else CPU")

    p = leaf(group, "loglik", _loglik, "A-v3: mean caption token log-likelihood under the frozen LLM")
    p.add_argument("--demo", action="store_true")
    p.add_argument("--encoder")
    p.add_argument("--projector", help="projector file (default: the latest stored for encoder + LLM)")
    p.add_argument("--llm")
    p.add_argument("--data")
    p.add_argument("--images")
    p.add_argument("--n", type=positive_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--averaging", choices=["pooled", "per_caption"], default="pooled")
    p.add_argument("--attach", default=None, metavar="STUDY:SETTING")
    p.add_argument("--benchmark", default=None, help="with --attach: store the A for this benchmark only")
    p.add_argument("--background", action="store_true")

    p = leaf(group, "import-projector", _import, "Validate and store a LLaVA mm_projector.bin / .safetensors")
    p.add_argument("path")
    p.add_argument("--encoder", required=True)
    p.add_argument("--llm", required=True, help="HF id (cached) or local folder, for its hidden size")

    p = leaf(group, "dump", _dump, "Write projected tokens (encoder + projector) of images as tensor_<i> dumps for A-v1")
    p.add_argument("--encoder", required=True)
    p.add_argument("--projector", required=True)
    p.add_argument("--images", required=True, help="image folder (files taken in name order)")
    p.add_argument("--n", type=positive_int, default=100)
    p.add_argument("--out", required=True, help="new folder for tensor_1.safetensors ...")

    p = leaf(group, "list", _list, "Recorded A scores with their recipe")
    p.add_argument("--definition", choices=["v1", "v3"], default=None)
