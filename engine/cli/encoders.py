"""`python -m engine encoders ...`: list, show, upload, delete and probe vision encoders (a thin shell over engine.encoders)."""

from __future__ import annotations

import argparse

import pandas as pd

from engine.cli.common import Output, Subparsers, leaf


def _list(args: argparse.Namespace) -> Output:
    from engine.encoders import list_encoders

    rows = [s.as_dict(params=False) for s in list_encoders()]
    if args.offline_only:
        rows = [r for r in rows if r["offline_available"]]
    table = pd.DataFrame(rows, columns=["name", "family", "pretrained", "offline_available", "paper_setting", "source"])
    return Output(data=rows, tables=[("", table.set_index("name") if len(table) else table)])


def _show(args: argparse.Namespace) -> Output:
    from engine.encoders import get_spec

    data = get_spec(args.name).as_dict()
    text = "\n".join(f"{k}: {v}" for k, v in data.items())
    return Output(data=data, text=text)


def _upload(args: argparse.Namespace) -> Output:
    from engine.encoders import upload_file

    result = upload_file(args.path, args.kind, arch=args.arch, model_name=args.model_name, label=args.label)
    data = {"name": result.name, "hash": result.hash, "label": result.label, "kind": result.kind, "existed": result.existed, "describe": result.describe}
    verb = "already stored as" if result.existed else "stored as"
    return Output(data=data, text=f"{args.path} {verb} {result.name} (hash {result.hash})")


def _delete(args: argparse.Namespace) -> Output:
    from engine.encoders import delete_upload

    delete_upload(args.name)
    return Output(data={"deleted": args.name}, text=f"deleted {args.name}")


def _probe(args: argparse.Namespace) -> Output:
    from engine.encoders.probe import probe, sample_image

    result = probe(args.name, device=args.device, layer=args.layer, image=(sample_image(), "synthetic"))
    data = {
        "name": result.info["name"],
        "grid": list(result.grid),
        "channels": result.channels,
        "input_size": list(result.input_size),
        "patch_size": result.patch_size,
        "stride": result.stride,
        "prefix_tokens": result.prefix_tokens,
        "layer": result.layer,
        "weights_hash": result.weights_hash,
        "build_s": round(result.build_s, 3),
        "encode_s": round(result.encode_s, 3),
    }
    return Output(data=data, text="\n".join(f"{k}: {v}" for k, v in data.items()))


def register(sub: Subparsers) -> None:
    group = sub.add_parser("encoders", help="List, inspect, upload and probe vision encoders").add_subparsers(dest="cmd", required=True)
    p = leaf(group, "list", _list, "List registered and uploaded encoders")
    p.add_argument("--offline-only", action="store_true", help="only encoders that load without network")
    p = leaf(group, "show", _show, "Show one encoder's spec")
    p.add_argument("name")
    p = leaf(group, "upload", _upload, "Validate and store a custom checkpoint")
    p.add_argument("path")
    p.add_argument("--kind", required=True, choices=["hf-zip", "open-clip", "state-dict"],
                   help="hf-zip, open-clip or state-dict (TorchScript is code and is not accepted)")
    p.add_argument("--arch", help="registered architecture for --kind state-dict (e.g. dinov2-s14-random)")
    p.add_argument("--model-name", help="open_clip model name for --kind open-clip (e.g. ViT-B-32)")
    p.add_argument("--label", help="a human label shown next to upload:<hash>")
    p = leaf(group, "delete", _delete, "Delete an uploaded encoder (store row and files)")
    p.add_argument("name")
    p = leaf(group, "probe", _probe, "Build an encoder, encode a sample image, print grid/dims/time")
    p.add_argument("name")
    p.add_argument("--device", default="cpu")
    p.add_argument("--layer", default=None, help="layer/block index (default: the encoder's default)")
