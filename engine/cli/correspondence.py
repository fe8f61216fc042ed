"""CLI group ``correspondence``: evaluate C, PCK of a predictions file, protocols, datasets, results, attach."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from engine.cli.common import Output, Subparsers, leaf, non_negative_int, positive_int
from engine.errors import InputError
from engine.jobs.progress import tqdm_progress
from engine.userfiles import read_json_file

_MAX_PREDICTIONS_BYTES = 512 * 1024 * 1024


def _pck_table(pck: dict) -> pd.DataFrame:
    rows = {"overall (per_image)": pck["per_image"], "overall (per_point)": pck["per_point"]}
    rows.update(pck.get("per_category", {}))
    return (pd.DataFrame(rows).T * 100.0).round(2)


def _protocol_arg(value: str) -> str | dict:
    """A registered protocol name, or a JSON file holding a custom protocol (``Protocol.from_dict``)."""
    from engine.correspondence.protocols import Protocol

    path = Path(value)
    if value.endswith(".json") or path.is_file():
        return Protocol.from_dict(read_json_file(value, "protocol file")).to_dict()
    return value


def _evaluate(args: argparse.Namespace) -> Output:
    from engine.correspondence import evaluate as ev
    from engine.devices import check_device
    from engine.scale.backend import check_remote_device, resolve_backend

    args.protocol = _protocol_arg(args.protocol)
    choice = resolve_backend(args.backend, args.ray_address)
    if choice.name == "local":
        check_device(args.device)
    else:  # the actors' device: the cluster is checked when it is joined
        check_remote_device(args.device)
    if args.background:
        job_id = ev.submit_evaluation(args.dataset, args.encoder, args.protocol, args.split, args.limit,
                                      device=args.device, precision=args.precision, backend=choice.name,
                                      ray_address=choice.address)
        return Output(data={"job_id": job_id, "target": ev.JOB_TARGET}, text=f"submitted job {job_id}")
    # the bar shows on a terminal only, so piped stderr keeps the one-line error contract
    with tqdm_progress("pairs") as update:
        result = ev.evaluate(args.dataset, args.encoder, protocol=args.protocol, split=args.split, limit=args.limit,
                             progress=update, batch_size=args.batch_size, device=args.device,
                             precision=args.precision, workers=args.workers, backend=choice.name,
                             ray_address=choice.address)
    stats = result.stats
    text = (
        f"{result.encoder.name} on {result.dataset.spec} ({result.dataset.split}), protocol "
        f"{result.protocol['name']} [{result.protocol['hash']}]: {stats.pairs} pairs, "
        f"{stats.images_encoded} images encoded, {stats.cache_hits} cache hits, {stats.seconds:.1f} s; "
        f"result id {result.result_id}"
    )
    return Output(data=result.to_dict(), text=text, tables=[("PCK (%)", _pck_table(result.pck))])


def _load_predictions(path: str) -> list:
    data = read_json_file(path, "predictions file", _MAX_PREDICTIONS_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise InputError(f"predictions file {path} must be a JSON object with a 'pairs' list")
    return data["pairs"]


def _parse_alphas(text: str) -> list[float]:
    """``--alphas 0.05,0.1``: comma-separated numbers (range checked by ``check_alphas``)."""
    from engine.correspondence.pck import check_alphas

    try:
        return check_alphas([float(a) for a in text.split(",")])
    except ValueError:
        raise InputError(f"--alphas must be comma-separated fractions in (0, 1), got {text!r}") from None


def _pck(args: argparse.Namespace) -> Output:
    from engine.correspondence.pck import pck_from_predictions
    from engine.correspondence.protocols import get_protocol

    proto = get_protocol(_protocol_arg(args.protocol))
    pairs = _load_predictions(args.predictions)
    alphas = _parse_alphas(args.alphas) if args.alphas is not None else list(proto.alphas)
    try:
        pck = pck_from_predictions(
            pairs,
            alphas=alphas,
            normalizer=args.normalizer or proto.normalizer,
            comparison=args.comparison or proto.comparison,
            primary=proto.averaging,
        )
    except InputError as exc:  # the remaining errors are about the file's records: name the file
        raise InputError(f"predictions file {args.predictions}: {exc}") from None
    return Output(data={"pck": pck}, tables=[("PCK (%)", _pck_table(pck))])


def _protocols(args: argparse.Namespace) -> Output:
    from engine.correspondence.protocols import list_protocols

    data = [p.describe() for p in list_protocols()]
    table = pd.DataFrame(data).set_index("name").drop(columns=["description"])
    return Output(data={"protocols": data}, tables=[("protocols", table)])


def _datasets(args: argparse.Namespace) -> Output:
    from engine.correspondence.datasets import open_dataset

    info = open_dataset("builtin").info()  # type: ignore[attr-defined]
    specs = [
        {"spec": "builtin", "description": "offline: wheel images with exact warps + stereo_motorcycle", "pairs": info["pairs"]},
        {"spec": "spair:PATH", "description": "SPair-71k in its standard layout (JPEGImages, PairAnnotation ...)", "pairs": None},
    ]
    cats = pd.DataFrame(sorted(info["pairs_per_category"].items()), columns=["category", "pairs"]).set_index("category")
    return Output(data={"datasets": specs, "builtin": info}, tables=[("datasets", pd.DataFrame(specs)), ("builtin categories", cats)])


def _results(args: argparse.Namespace) -> Output:
    from engine.correspondence.results import c_value, list_results

    rows = list_results(args.encoder)
    table = pd.DataFrame(
        [
            {
                "id": r["id"],
                "encoder": r["encoder"],
                "dataset": r["dataset"],
                "split": r["split"],
                "protocol": r["protocol_name"],
                "PCK@0.1 (per image, %)": None if (c := c_value(r)) is None else round(c, 2),
                "created": r["created"],
            }
            for r in rows
        ]
    )
    return Output(data={"results": rows}, tables=[("C evaluations", table)] if len(table) else [], text=None if len(table) else "no results yet")


def _attach(args: argparse.Namespace) -> Output:
    from engine.correspondence.results import attach_c_to_study

    value = attach_c_to_study(args.result, args.study, args.setting)
    data = {"result": args.result, "study": args.study, "setting": args.setting, "C": value}
    return Output(data=data, text=f"set C = {value:.2f} for setting {args.setting!r} of study {args.study!r}")


def register(sub: Subparsers) -> None:
    group = sub.add_parser("correspondence", help="C: zero-shot keypoint correspondence (PCK) of vision encoders").add_subparsers(
        dest="cmd", required=True
    )
    p = leaf(group, "evaluate", _evaluate, "Evaluate an encoder's keypoint-transfer PCK on a dataset split")
    p.add_argument("--dataset", required=True, help="builtin or spair:/path/to/SPair-71k")
    p.add_argument("--split", default="test", help="trn, val or test (default: test)")
    p.add_argument("--encoder", required=True, help="encoder name (see `encoders list`)")
    p.add_argument("--protocol", default="default", help="protocol name (see `correspondence protocols`) or a JSON file")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32",
                   help="forward precision (default fp32; tf32 acts on CUDA only; part of the feature-cache key)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="image decode threads beside the forward (default: 1 on CPU, up to 8 on a GPU; 0: none)")
    p.add_argument("--background", action="store_true", help="run as a background job and print its id")
    p.add_argument("--backend", choices=["local", "ray"], default=None,
                   help="where images are encoded: local (default) or ray; default from LAW_EXPLORER_BACKEND or the Jobs page")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster HOST:PORT (default RAY_ADDRESS; none: a local Ray instance for this process)")

    p = leaf(group, "pck", _pck, "PCK of a predictions JSON file")
    p.add_argument("--predictions", required=True, help='{"pairs": [{"category", "pred_kps", "gt_kps", "visible", "trg_bndbox", "trg_imsize"}]}')
    p.add_argument("--normalizer", choices=["bbox", "image"], default=None, help="default: the protocol's (bbox)")
    p.add_argument("--comparison", choices=["<=", "<"], default=None, help="default: the protocol's (<=)")
    p.add_argument("--alphas", default=None, help="comma-separated, default: the protocol's (0.05,0.1,0.15)")
    p.add_argument("--protocol", default="default", help="protocol providing the defaults")

    leaf(group, "protocols", _protocols, "List the registered evaluation protocols")
    leaf(group, "datasets", _datasets, "List the datasets (builtin info)")
    p = leaf(group, "results", _results, "List recorded C evaluations")
    p.add_argument("--encoder", default=None)

    p = leaf(group, "attach", _attach, "Set a study setting's C from a recorded evaluation (PCK@0.1 per image x 100)")
    p.add_argument("--result", required=True, help="result id (see `correspondence results`)")
    p.add_argument("--study", required=True)
    p.add_argument("--setting", required=True)
