"""Keypoint matches: one pair through an encoder — predicted matches, click-a-point similarity, feature PCA, per-category PCK."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from engine import correspondence as corr
from engine import export
from engine.errors import InputError, LawExplorerError
from engine.hashing import hash_obj
from engine.plots import matches as mplots
from engine.plots import style
from pages import _ui

ALPHAS = (0.01, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)
SPLITS = ("test", "val", "trn")
EVAL_JOB_KEY = "mx_eval_job"


# ----------------------------------------------------------------------------- cached engine calls


@st.cache_resource(show_spinner=False, max_entries=8)
def _dataset(spec: str, split: str) -> corr.Dataset:
    return corr.open_dataset(spec, split)


@st.cache_data(show_spinner=False, max_entries=16)
def _pair_table(spec: str, split: str) -> pd.DataFrame:
    pairs = _dataset(spec, split).pairs(split)
    return pd.DataFrame(
        {
            "pair_id": [p.pair_id for p in pairs],
            "category": [p.category for p in pairs],
            "src_id": [p.src_id for p in pairs],
            "trg_id": [p.trg_id for p in pairs],
            "trg_bbox": [tuple(float(v) for v in p.trg_bbox) for p in pairs],
            "keypoints": [int(np.asarray(p.visible, dtype=bool).sum()) for p in pairs],
        }
    )


def _encoder_table() -> pd.DataFrame:
    """Every registered encoder, uploads included; re-read on every run so that a new upload is listed at once."""
    from engine.encoders import list_encoders

    specs = list_encoders()
    return _encoder_rows(tuple((s.name, s.family, s.label or "") for s in specs), specs)


@st.cache_data(show_spinner=False, max_entries=8)
def _encoder_rows(registry: tuple, _specs: list) -> pd.DataFrame:
    """The table of ``_encoder_table``, cached on the registry's content (offline checks touch the disk)."""
    from engine.encoders import display_names

    shown = display_names(_specs)
    columns = {"name": "name", "label": "label", "family": "family", "pretrained": "pretrained",
               "offline_available": "offline", "description": "description"}
    rows = [s.as_dict(params=False) | {"label": shown[s.name]} for s in _specs]
    table = pd.DataFrame(rows, columns=list(columns)).rename(columns=columns)
    # offline-available first, pretrained before random / baseline, registry order otherwise
    order = np.lexsort((np.arange(len(table)), ~table["pretrained"].to_numpy(), ~table["offline"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


@st.cache_resource(show_spinner=False, max_entries=4)
def _encoder(name: str):
    from engine.encoders import build_encoder

    return build_encoder(name)


@st.cache_data(show_spinner=False, max_entries=64)
def _thumbnail(spec: str, split: str, image_id: str, side: int = 160) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(_dataset(spec, split).load_image(image_id))
    img.thumbnail((side, side))
    return np.asarray(img)


@st.cache_data(show_spinner=False, max_entries=32)
def _predict(encoder_name: str, spec: str, split: str, pair_id: str, protocol: str) -> corr.PairPrediction:
    from engine.correspondence import predict_pair

    return predict_pair(_encoder(encoder_name), _dataset(spec, split), pair_id, protocol, split)


@st.cache_data(show_spinner=False, max_entries=128)
def _query(encoder_name: str, spec: str, split: str, pair_id: str, protocol: str, query_xy: tuple[float, float]) -> dict:
    return corr.query_similarity(_predict(encoder_name, spec, split, pair_id, protocol), query_xy, protocol)


@st.cache_data(show_spinner=False, max_entries=32)
def _pca(encoder_name: str, spec: str, split: str, pair_id: str, protocol: str) -> dict:
    return corr.pca_maps(_predict(encoder_name, spec, split, pair_id, protocol))


def _category_pairs(dataset_spec: str, split: str, limit: Any) -> dict[str, int]:
    """Pairs per category an evaluation covered, counted from the dataset (results stored before the count was kept)."""
    limit = None if limit is None or (isinstance(limit, float) and np.isnan(limit)) else int(limit)
    table = _pair_table(dataset_spec, split)
    counts = table.head(limit) if limit else table
    return counts["category"].value_counts().to_dict()


def _results_frame(dataset_name: str, split: str, protocol: str, alpha: float) -> pd.DataFrame:
    """Newest stored evaluation per encoder for this dataset, split and protocol, one row per category.

    ``pairs`` is the number of pairs of that category the evaluation scored (not the run's total).
    """
    from engine.correspondence import list_results

    key = corr.alpha_key(alpha)
    rows, seen = [], set()
    for res in list_results():  # newest first
        if (res["dataset"], res["split"], res["protocol_name"]) != (dataset_name, split, protocol) or res["encoder"] in seen:
            continue
        seen.add(res["encoder"])
        counts = res["pck"].get("per_category_pairs")
        if counts is None:
            counts = _category_pairs(dataset_name, split, res.get("limit_pairs"))
        for category, values in res["pck"]["per_category"].items():
            if values.get(key) is not None:
                rows.append({"encoder": _label(res["encoder"]), "encoder id": res["encoder"], "category": category,
                             "pck": values[key], "pairs": int(counts.get(category, 0)), "split": res["split"],
                             "result_id": res["id"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["encoder", "encoder id", "category", "pck", "pairs", "split", "result_id"])


# ----------------------------------------------------------------------------- helpers


def _provenance(**extra: object) -> export.Provenance:
    record = {k: str(v) for k, v in extra.items()}
    return export.Provenance(study="keypoint-matches", study_hash=hash_obj(record), extra=record)


_LABELS: dict[str, str] = {}  # encoder id -> display name (an upload's label), filled by render on every run


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def _file_part(name: str) -> str:
    """An encoder id as a piece of a file name (``upload:ab12`` -> ``upload-ab12``)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


@st.cache_data(show_spinner=False, max_entries=32)
def _weights_hash(name: str) -> str:
    return _encoder(name).weights_hash()


def _show_image_figure(fig, name: str, provenance: export.Provenance) -> None:
    """An image canvas at its own aspect-derived width (stretching it would only add blank bands), with exports."""
    st.plotly_chart(fig, width="content", key=f"chart-{name}", theme=None)
    _ui.export_buttons(fig, name, provenance)


def _default_encoders(table: pd.DataFrame) -> list[str]:
    usable = table[table["offline"]]
    return usable["name"].head(1).tolist() or table["name"].head(1).tolist()


def _preselect_encoders(table: pd.DataFrame) -> None:
    """``?encoder=`` (the Encoders page's next steps, or a deep link) selects that encoder, once."""
    known = set(table["name"])
    wanted = st.query_params.get("encoder")
    if wanted in known:
        st.session_state["mx_encoders"] = [wanted]
        st.session_state["mx_job_encoder"] = wanted
        del st.query_params["encoder"]
    chosen = st.session_state.get("mx_encoders")
    if chosen is not None and not set(chosen) <= known:  # e.g. an upload deleted meanwhile
        st.session_state["mx_encoders"] = [n for n in chosen if n in known] or _default_encoders(table)
    if "mx_encoders" not in st.session_state:
        st.session_state["mx_encoders"] = _default_encoders(table)


def _dataset_controls() -> tuple[str, str]:
    cols = st.columns([1.2, 3, 1])
    source = cols[0].radio("Dataset", ["builtin", "SPair-71k folder"], key="mx_source", horizontal=True,
                           help="builtin: real images shipped in wheels with exact warps; or a local SPair-71k copy")  # fmt: skip
    if source == "builtin":
        cols[1].caption("Built-in pairs: images from scikit-image / scikit-learn with known warps (exact ground truth).")
        cols[2].selectbox("Split", ["test"], key="mx_split_builtin", disabled=True, help="builtin has one split")
        return "builtin", "test"
    split = cols[2].selectbox("Split", SPLITS, key="mx_split")
    path = cols[1].text_input("SPair-71k folder", key="mx_spair_path", placeholder="/data/SPair-71k")
    if not path.strip():
        raise InputError("enter the path of a local SPair-71k folder (the one holding JPEGImages/ and PairAnnotation/)")
    return f"spair:{path.strip()}", split


def _pair_controls(spec: str, split: str, table: pd.DataFrame) -> pd.Series:
    if table.empty:
        raise InputError(f"the dataset has no pairs in split {split!r}")
    cols = st.columns([1.2, 2.5, 1, 1])
    categories = sorted(table["category"].unique())
    category = cols[0].selectbox("Category", categories, key="mx_category")
    in_cat = table[table["category"] == category].reset_index(drop=True)
    index = cols[1].selectbox(
        f"Pair ({len(in_cat)} in {category})", range(len(in_cat)), key="mx_pair_index",
        format_func=lambda i: f"{i}: {in_cat.loc[i, 'pair_id']} ({in_cat.loc[i, 'keypoints']} kps)",
    )  # fmt: skip
    pair = in_cat.loc[min(int(index), len(in_cat) - 1)]
    cols[2].image(_thumbnail(spec, split, pair["src_id"]), caption="source")
    cols[3].image(_thumbnail(spec, split, pair["trg_id"]), caption="target")
    return pair


def _model_controls(encoders: pd.DataFrame) -> tuple[list[str], str, float]:
    cols = st.columns([3, 1.2, 2])
    labels = {r.name: f"{r.label}{'' if r.offline else ' (needs download)'}" for r in encoders.itertuples()}
    _preselect_encoders(encoders)
    chosen = cols[0].multiselect(
        "Encoder(s)", list(encoders["name"]), key="mx_encoders", format_func=lambda n: labels.get(n, n),
        help="Offline-available encoders are listed first; type to search (uploads by their label). Pick several "
             "to compare them side by side.",
    )  # fmt: skip
    names = [p.name for p in corr.list_protocols()]
    protocol = cols[1].selectbox("Protocol", names, key="mx_protocol",
                                 help=corr.get_protocol(names[0]).description)  # fmt: skip
    alpha = cols[2].select_slider("α (PCK threshold)", ALPHAS, value=0.1, key="mx_alpha",
                                  help="A keypoint is correct when its error is within α × the protocol's normaliser.")  # fmt: skip
    if not chosen:
        raise InputError("pick at least one encoder")
    return chosen, protocol, float(alpha)


# ----------------------------------------------------------------------------- views


def _matches_view(encoders: list[str], spec: str, split: str, pair: pd.Series, protocol: str, alpha: float) -> None:
    show_circles = st.toggle("Show the α circles around the ground truth", key="mx_circles",
                             help="Also toggled from the figure legend; hover a ground-truth point for its radius.")  # fmt: skip
    for name in encoders:
        with _ui.user_errors(), st.spinner(f"Matching with {_label(name)} ..."):
            result = _predict(name, spec, split, pair["pair_id"], protocol)
            scored = corr.correct_at(result, pair["trg_bbox"], alpha, protocol)
            fig = mplots.pair_matches_figure(
                result.src_image, result.trg_image, result.src_kps, result.gt_kps, result.pred_kps,
                result.visible, scored["correct"], threshold_px=scored["threshold_px"], alpha=alpha,
                show_threshold=show_circles, title=f"{_label(name)} · {pair['pair_id']}",
            )  # fmt: skip
            _show_image_figure(fig, f"matches-{_file_part(name)}-{pair['pair_id']}".replace("/", "_"),
                               _provenance(view="matches", encoder=name, encoder_label=_label(name),
                                           weights_hash=_weights_hash(name), dataset=spec, split=split,
                                           pair=pair["pair_id"], source_image=pair["src_id"],
                                           target_image=pair["trg_id"], c_protocol=protocol, alpha=alpha))  # fmt: skip
            per_alpha = ", ".join(f"@{a}: {'–' if v is None else f'{100 * v:.1f} %'}" for a, v in result.pck.items())
            st.caption(f"Pair PCK under protocol {protocol!r} ({per_alpha}); error threshold at α={alpha:g}: "
                       f"{scored['threshold_px']:.1f} px.")  # fmt: skip


def _selected_query(chart_key: str, grid_trace: int) -> tuple[float, float] | None:
    """A point newly clicked on this chart's source grid (read from its widget state), else None."""
    state = st.session_state.get(chart_key)
    points = (state or {}).get("selection", {}).get("points", []) if isinstance(state, dict) else []
    if not points:
        points = getattr(getattr(state, "selection", None), "points", []) or []
    for point in points:
        if point.get("curve_number") == grid_trace and point.get("x") is not None:
            marker = hash_obj(points)
            if st.session_state.get(f"mx_last_click-{chart_key}") == marker:  # one marker per chart: side by side,
                return None  # an older click on another chart must not move the query back
            st.session_state[f"mx_last_click-{chart_key}"] = marker
            return float(point["x"]), float(point["y"])
    return None


def _side_by_side(encoders: list[str]) -> list:
    """One column per encoder (two per row), so that several encoders are compared on the same pair."""
    per_row = min(2, len(encoders))
    cells = []
    for _ in range(0, len(encoders), per_row):
        cells.extend(st.columns(per_row))
    return cells[: len(encoders)]


def _height(encoders: list[str]) -> int:
    """Canvas height: side by side, each figure is drawn smaller so that two fit in a row at their own aspect."""
    return mplots.DEFAULT_HEIGHT_PX if len(encoders) == 1 else int(mplots.DEFAULT_HEIGHT_PX * 0.6)


def _similarity_view(encoders: list[str], spec: str, split: str, pair: pd.Series, protocol: str) -> None:
    results = {name: _predict(name, spec, split, pair["pair_id"], protocol) for name in encoders}
    first = results[encoders[0]]
    src_h, src_w = first.src_image.shape[:2]
    pair_key = f"{spec}|{split}|{pair['pair_id']}"
    if st.session_state.get("mx_query_pair") != pair_key:  # new pair: start at its first visible keypoint
        visible = np.flatnonzero(first.visible)
        start = first.src_kps[visible[0]] if len(visible) else (src_w / 2, src_h / 2)
        st.session_state["mx_qx"], st.session_state["mx_qy"] = float(start[0]), float(start[1])
        st.session_state["mx_query_pair"] = pair_key
    chart_keys = {name: f"mx-sim-chart-{hash_obj([pair_key, name, protocol])}" for name in encoders}
    blank = mplots.similarity_figure(first.src_image, first.trg_image, np.zeros((1, 1)), None)
    grid_trace = next(i for i, t in enumerate(blank.data) if t.name == "click a source point")
    for name in encoders:
        clicked = _selected_query(chart_keys[name], grid_trace)
        if clicked is not None:
            st.session_state["mx_qx"], st.session_state["mx_qy"] = clicked
    cols = st.columns([1, 1, 1, 3])
    qx = cols[0].number_input("query x (px)", 0.0, float(src_w), step=1.0, key="mx_qx")
    qy = cols[1].number_input("query y (px)", 0.0, float(src_h), step=1.0, key="mx_qy")
    opacity = cols[2].slider("heatmap opacity", 0.0, 1.0, 0.55, 0.05, key="mx_opacity")
    cols[3].caption("Click a grid dot on a source (or type x / y): each target shows the cosine similarity of the "
                    "query's feature cell to every target cell. Star: the query; diamond: the best match the "
                    "protocol would predict; magenta ring: the true match of an annotated keypoint.")  # fmt: skip
    gap = np.linalg.norm(first.src_kps - np.array([qx, qy]), axis=1)
    on_kp = np.flatnonzero(first.visible & (gap < 1.0))
    for name, cell in zip(encoders, _side_by_side(encoders), strict=True):
        with cell, _ui.user_errors():
            result = results[name]
            query = _query(name, spec, split, pair["pair_id"], protocol, (float(qx), float(qy)))
            fig = mplots.similarity_figure(
                result.src_image, result.trg_image, query["similarity"], query["query_xy"], query["best_xy"],
                gt_xy=result.gt_kps[on_kp[0]] if len(on_kp) else None, extent=query["extent"], opacity=opacity,
                height_px=_height(encoders), title=style.titled(_label(name), f"best match ({query['best_xy'][0]:.0f}, "
                                                          f"{query['best_xy'][1]:.0f}), cosine {query['best_score']:.3f}"),
            )  # fmt: skip
            st.plotly_chart(fig, width="content", key=chart_keys[name],
                            on_select="rerun", selection_mode="points", theme=None)
            _ui.export_buttons(fig, f"similarity-{_file_part(name)}-{pair['pair_id']}".replace("/", "_"),
                               _provenance(view="similarity", encoder=name, dataset=spec, pair=pair["pair_id"],
                                           encoder_label=_label(name), weights_hash=_weights_hash(name), split=split,
                                           c_protocol=protocol, query=f"{qx:.0f},{qy:.0f}"))  # fmt: skip


def _pca_view(encoders: list[str], spec: str, split: str, pair: pd.Series, protocol: str) -> None:
    st.caption("Same colour = similar feature direction in both images: good encoders colour corresponding parts alike. "
               "Several encoders are shown side by side on the same pair.")
    for name, cell in zip(encoders, _side_by_side(encoders), strict=True):
        with cell, _ui.user_errors():
            result = _predict(name, spec, split, pair["pair_id"], protocol)
            maps = _pca(name, spec, split, pair["pair_id"], protocol)
            fig = mplots.pca_figure(maps["src_rgb"], maps["trg_rgb"], result.src_image, result.trg_image,
                                    src_extent=maps["src_extent"], trg_extent=maps["trg_extent"],
                                    height_px=_height(encoders),  # two encoders side by side: a one-line title was cut
                                    title=style.titled(_label(name), "joint PCA of the features (3 components → RGB)"))  # fmt: skip
            st.plotly_chart(fig, width="content", key=f"chart-pca-{_file_part(name)}", theme=None)
            _ui.export_buttons(fig, f"pca-{_file_part(name)}-{pair['pair_id']}".replace("/", "_"),
                               _provenance(view="pca", encoder=name, dataset=spec, pair=pair["pair_id"],
                                           encoder_label=_label(name), weights_hash=_weights_hash(name), split=split,
                                           c_protocol=protocol))  # fmt: skip


def _job_status(job_id: str) -> None:
    """Progress of the launched evaluation; when it ends, one full rerun so the bars pick up the new result."""
    from engine.jobs import ACTIVE, get_job

    try:
        job = get_job(job_id)
    except LawExplorerError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    done, total, message = job.progress
    label = f"{job.title}: {job.status}" + (f" — {message}" if message else "")
    st.progress(min(1.0, done / total) if total else 0.0, text=label)
    if job.status in ACTIVE:
        return
    if st.session_state.get("mx_eval_seen") != (job_id, job.status):
        st.session_state["mx_eval_seen"] = (job_id, job.status)
        st.rerun(scope="app")
    if job.status == "failed":
        st.error(f"evaluation failed: {(job.error or 'unknown error').strip().splitlines()[-1]}")
    elif job.status == "done":
        st.success("evaluation finished; the bars below include it")
    else:
        st.warning(f"evaluation {job.status}; resume it from the Jobs page")


def _category_view(encoders: list[str], spec: str, split: str, dataset: corr.Dataset, protocol: str, alpha: float) -> None:
    proto = corr.get_protocol(protocol)
    bar_alpha = alpha if alpha in proto.alphas else 0.1
    cols = st.columns([2, 1, 1.2])
    job_encoder = cols[0].selectbox("Evaluate encoder", encoders, key="mx_job_encoder")
    limit = cols[1].number_input("pairs (0 = all)", 0, 100_000, 0, step=10, key="mx_job_limit")
    cols[2].write("")
    if cols[2].button("Evaluate", key="mx_eval_button", icon=":material/play_arrow:",
                      help="Runs the C evaluation of this encoder on this dataset / split / protocol as a background job "
                           "(it survives page changes; see the Jobs page)."):  # fmt: skip
        from engine.correspondence import submit_evaluation

        st.session_state[EVAL_JOB_KEY] = submit_evaluation(spec, job_encoder, protocol, split, int(limit) or None)
        st.session_state.pop("mx_eval_seen", None)
    job_id = st.session_state.get(EVAL_JOB_KEY)
    if job_id:
        from engine.jobs import ACTIVE, get_job

        if get_job(job_id).status in ACTIVE:
            st.fragment(_job_status, run_every=1)(job_id)
        else:
            _job_status(job_id)
    table = _results_frame(dataset.name, split, protocol, bar_alpha)
    if table.empty:
        st.info(f"No stored evaluation of {dataset.name} ({split}) under protocol {protocol!r} yet: launch one above "
                "(or `python -m engine correspondence evaluate ...`).")  # fmt: skip
        return
    comparable = spec.startswith("spair:")
    scale_note = "" if comparable else " (builtin pairs: not comparable to SPair-71k C)"
    # the detail wraps under the main line (one line of ~95 characters was cut in a 1000-px window)
    fig = mplots.per_category_bars(table, title=style.titled(f"PCK@{bar_alpha:g} per category", f"{dataset.name}, protocol "
                                                       f"{protocol}{scale_note}"),
                                   value_title=f"PCK@{bar_alpha:g} (share of keypoints matched)")
    if not comparable:
        st.warning("C on the builtin pairs is a demo-scale check (a handful of synthetic warps of stock images): it is "
                   "**not comparable** to C on SPair-71k, the C of the law. Use a SPair-71k folder for the law's C.",
                   icon=":material/science:")
    if bar_alpha != alpha:
        st.caption(f"Stored results hold PCK at α ∈ {list(proto.alphas)}; showing α={bar_alpha:g}.")
    prov = _provenance(view="per-category", dataset=spec, split=split, c_protocol=protocol, alpha=bar_alpha,
                       c_scale="SPair-71k" if comparable else "builtin (not comparable to SPair-71k C)",
                       encoders=", ".join(sorted(set(table["encoder id"]))))
    _ui.show_figure(fig, f"pck-per-category-{protocol}", prov)
    st.caption("Pairs: how many pairs of each category the evaluation scored (pairs without a visible keypoint are "
               "left out).")
    _ui.show_table(table.rename(columns={"pck": f"PCK@{bar_alpha:g} (share of keypoints matched)",
                                         "result_id": "stored result"}), f"pck-per-category-{protocol}-table", prov)


# ----------------------------------------------------------------------------- page


def render() -> None:
    st.title("Keypoint matches")
    st.caption("How the C of the law is measured, one pair at a time: each source keypoint is matched to the most "
               "similar target feature cell; a match is correct when it lands within α × the normaliser of the truth.")  # fmt: skip
    spec, split = _dataset_controls()
    dataset = _dataset(spec, split)
    pair = _pair_controls(spec, split, _pair_table(spec, split))
    table = _encoder_table()
    _LABELS.clear()
    _LABELS.update(zip(table["name"], table["label"], strict=True))
    encoders, protocol, alpha = _model_controls(table)
    tabs = st.tabs(["Matches", "Click a point", "Feature PCA", "PCK per category"])
    with tabs[0]:
        _matches_view(encoders, spec, split, pair, protocol, alpha)
    with tabs[1], _ui.user_errors():
        _similarity_view(encoders, spec, split, pair, protocol)
    with tabs[2], _ui.user_errors():
        _pca_view(encoders, spec, split, pair, protocol)
    with tabs[3], _ui.user_errors():
        _category_view(encoders, spec, split, dataset, protocol, alpha)


_ui.ensure_app_navigation()
with _ui.collecting_exports("matches"), _ui.user_errors():
    render()
