"""The SPair pair index: equal to a fresh parse field by field, invalidated by every change of the files it came from,
hostile or half-written index files ignored (parsed again and rewritten), parse errors unchanged."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.correspondence.datasets import SPairDataset, pair_index
from engine.correspondence.synthetic import write_synthetic_spair
from engine.errors import InputError

OLD = time.time_ns() - 3600 * 10**9  # an hour ago: older than the racy window


def age(root: Path, ns: int = OLD) -> None:
    """Give every pair and Layout file an old mtime (a freshly written stamp is used but not stored)."""
    for path in [*(root / "PairAnnotation").rglob("*.json"), *(root / "Layout").rglob("*.txt")]:
        os.utime(path, ns=(ns, ns))


@pytest.fixture
def spair(tmp_path, isolated_home) -> Path:
    root = write_synthetic_spair(tmp_path / "SPair-71k", n_categories=2, images_per_category=5, n_pairs=14,
                                 size_range=(32, 40))  # fmt: skip
    age(root)
    return root


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The pair files ``SPairDataset._parse`` read (0 on an index hit)."""
    seen: list[str] = []
    original = SPairDataset._parse

    def spy(self, path):
        seen.append(Path(path).name)
        return original(self, path)

    monkeypatch.setattr(SPairDataset, "_parse", spy)
    return seen


def parsed(root: Path, monkeypatch) -> list:
    """An independent fresh parse with the index off."""
    monkeypatch.setenv(pair_index.ENV, "0")
    try:
        return SPairDataset(root).pairs("test")
    finally:
        monkeypatch.delenv(pair_index.ENV)


def assert_same_pairs(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b)
        for field in a.__dataclass_fields__:
            x, y = getattr(a, field), getattr(b, field)
            assert type(x) is type(y), field
            if isinstance(x, np.ndarray):
                assert (x.dtype, x.shape, x.flags.writeable, x.flags.c_contiguous) == (y.dtype, y.shape, True, True), field
                assert np.array_equal(x, y) and np.array_equal(np.signbit(x), np.signbit(y)), field
            elif isinstance(x, tuple):
                assert [type(v) for v in x] == [type(v) for v in y] and x == y, field
            else:
                assert x == y, field


def index_files() -> list[Path]:
    return sorted(pair_index.index_folder().glob(f"*{pair_index.SUFFIX}"))


def test_index_equals_a_fresh_parse_field_by_field(spair, parses, monkeypatch):
    want = parsed(spair, monkeypatch)
    assert len(parses) == 14 and not index_files()  # the index off writes nothing
    parses.clear()
    first = SPairDataset(spair).pairs("test")
    assert len(parses) == 14 and len(index_files()) == 1
    parses.clear()
    again = SPairDataset(spair).pairs("test")
    assert parses == []  # from the index
    assert_same_pairs(first, want)
    assert_same_pairs(again, want)
    # and against the JSON itself, not only the parser
    raw = json.loads((spair / "PairAnnotation" / "test" / f"{again[3].pair_id}.json").read_text())
    assert again[3].src_kps.tolist() == [[float(x), float(y)] for x, y in raw["src_kps"]]
    assert again[3].trg_bbox == tuple(float(v) for v in raw["trg_bndbox"])
    assert again[3].src_size == tuple(raw["src_imsize"][:2]) and again[3].src_id == f"{raw['category']}/{raw['src_imname']}"
    assert [p.pair_id for p in again] == (spair / "Layout" / "large" / "test.txt").read_text().split()
    assert_same_pairs(SPairDataset(spair).pairs("test", limit=3), want[:3])


def _pair_file(root: Path, k: int) -> Path:
    stems = (root / "Layout" / "large" / "test.txt").read_text().split()
    return root / "PairAnnotation" / "test" / f"{stems[k]}.json"


def _edit_same_size(root: Path) -> None:
    """Change a keypoint's digit (same file size) and give the file another old mtime."""
    path = _pair_file(root, 2)
    data = json.loads(path.read_text())
    x = data["src_kps"][0][0]
    data["src_kps"][0][0] = x + 1 if x % 10 != 9 else x - 1
    path.write_text(json.dumps(data))
    os.utime(path, ns=(OLD + 10**9, OLD + 10**9))


def _edit_restoring_mtime(root: Path) -> None:
    """The same edit with the old size and mtime put back (only ctime and content differ)."""
    path = _pair_file(root, 2)
    st = path.stat()
    _edit_same_size(root)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _add_unlisted(root: Path) -> None:
    source = _pair_file(root, 0)
    target = source.with_name("99-extra:cat00.json")
    target.write_text(source.read_text())
    os.utime(target, ns=(OLD, OLD))


def _add_listed(root: Path) -> None:
    _add_unlisted(root)
    layout = root / "Layout" / "large" / "test.txt"
    layout.write_text(layout.read_text() + "99-extra:cat00\n")
    os.utime(layout, ns=(OLD, OLD))


def _remove(root: Path) -> None:
    path = _pair_file(root, 5)
    layout = root / "Layout" / "large" / "test.txt"
    layout.write_text("\n".join(s for s in layout.read_text().split() if s != path.stem) + "\n")
    path.unlink()
    os.utime(layout, ns=(OLD, OLD))


def _reorder_layout(root: Path) -> None:
    layout = root / "Layout" / "large" / "test.txt"
    layout.write_text("\n".join(reversed(layout.read_text().split())) + "\n")
    os.utime(layout, ns=(OLD, OLD))


@pytest.mark.parametrize("change", [_edit_same_size, _edit_restoring_mtime, _add_unlisted, _add_listed, _remove,
                                    _reorder_layout])  # fmt: skip
def test_every_change_of_the_files_invalidates(spair, parses, monkeypatch, change):
    before = SPairDataset(spair).pairs("test")
    change(spair)
    want = parsed(spair, monkeypatch)
    parses.clear()
    got = SPairDataset(spair).pairs("test")
    assert parses  # parsed again, not served from the stale index
    assert_same_pairs(got, want)
    if change in (_edit_same_size, _edit_restoring_mtime):
        assert got[2].src_kps[0, 0] != before[2].src_kps[0, 0]
    elif change is _add_listed:
        assert [p.pair_id for p in got] == [p.pair_id for p in before] + ["99-extra:cat00"]
    elif change is _remove:
        assert len(got) == len(before) - 1
    elif change is _reorder_layout:
        assert [p.pair_id for p in got] == [p.pair_id for p in reversed(before)]
    parses.clear()
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert parses == [] and len(index_files()) == 1  # rewritten in place


def _columns(pairs: list) -> dict:
    """The index's arrays built here from the pairs (not with the module's encoder)."""
    counts = [len(p.src_kps) for p in pairs]
    return {
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "src_kps": np.concatenate([p.src_kps for p in pairs]).astype(np.float64),
        "trg_kps": np.concatenate([p.trg_kps for p in pairs]).astype(np.float64),
        "boxes": np.array([[*p.src_bbox, *p.trg_bbox] for p in pairs], dtype=np.float64),
        "sizes": np.array([[*p.src_size, *p.trg_size] for p in pairs], dtype=np.int64),
        "strings": {f: [getattr(p, f) for p in pairs] for f in ("pair_id", "category", "src_id", "trg_id")},
    }


def _packed(key: str, c: dict) -> bytes:
    return pair_index.pack(key, c["offsets"], c["src_kps"], c["trg_kps"], c["boxes"], c["sizes"],
                           json.dumps(c["strings"]).encode())  # fmt: skip


def _valid_checksum(mutate):
    """A file whose sizes and checksum are right but whose content breaks a rule ``_parse`` enforces."""
    def make(good: bytes, pairs: list, key: str) -> bytes:
        c = _columns(pairs)
        mutate(c)
        return _packed(key, c)
    return make


def _set(target, index, value):
    return _valid_checksum(lambda c: c[target].__setitem__(index, value))


def _header_edit(**changes):
    def make(good: bytes, pairs: list, key: str) -> bytes:
        magic, header, blob = good.split(b"\n", 2)
        fields = json.loads(header)
        fields.update(changes)
        return magic + b"\n" + json.dumps(fields).encode() + b"\n" + blob
    return make


def _swap_ids(c):
    c["strings"]["pair_id"][0], c["strings"]["pair_id"][1] = c["strings"]["pair_id"][1], c["strings"]["pair_id"][0]


def _float32_keypoints(good: bytes, pairs: list, key: str) -> bytes:
    magic, header, blob = good.split(b"\n", 2)
    fields = json.loads(header)
    c = _columns(pairs)
    blob = b"".join([c["offsets"].tobytes(), c["src_kps"].astype(np.float32).tobytes(), c["trg_kps"].astype(np.float32).tobytes(),
                     c["boxes"].tobytes(), c["sizes"].tobytes(), json.dumps(c["strings"]).encode()])  # fmt: skip
    fields["blake2b"] = hashlib.blake2b(blob, digest_size=20).hexdigest()
    return magic + b"\n" + json.dumps(fields).encode() + b"\n" + blob


CORRUPT = {
    "empty": lambda good, pairs, key: b"",
    "truncated": lambda good, pairs, key: good[: len(good) // 2],
    "one byte short": lambda good, pairs, key: good[:-1],
    "random bytes": lambda good, pairs, key: np.random.default_rng(0).integers(0, 256, len(good), dtype=np.uint8).tobytes(),
    "wrong magic": lambda good, pairs, key: b"X" + good[1:],
    "header not json": lambda good, pairs, key: pair_index.MAGIC + b"{nope\n" + good.split(b"\n", 2)[2],
    "header without newline": lambda good, pairs, key: pair_index.MAGIC + b"{" * 10_000,
    "flipped byte": lambda good, pairs, key: good[:-1] + bytes([good[-1] ^ 1]),
    "far larger than its pair files": lambda good, pairs, key: good + b"\0" * (8 << 20),
    "huge pair count": _header_edit(pairs=10**12),
    "huge point count": _header_edit(points=10**15),
    "negative count": _header_edit(strings_bytes=-5),
    "boolean count": _header_edit(pairs=True),
    "other format": _header_edit(format=99),
    "other key": _header_edit(key="0" * 32),
    "float32 keypoints": _float32_keypoints,
    "NaN keypoint": _set("src_kps", (1, 0), np.nan),
    "inf box": _set("boxes", (0, 5), np.inf),
    "inverted box": _set("boxes", (1, 2), -1.0),
    "zero image size": _set("sizes", (2, 3), 0),
    "offsets decreasing": _valid_checksum(lambda c: c.__setitem__("offsets", c["offsets"][[0, 2, 1, *range(3, len(c["offsets"]))]])),
    "pair ids swapped": _valid_checksum(_swap_ids),
    "strings not a list": _valid_checksum(lambda c: c["strings"].__setitem__("category", "cat00")),
}


def test_the_hand_built_index_is_accepted(spair, parses):
    """The control for the hostile variants below: the same builder, unmodified, gives a hit."""
    pairs = SPairDataset(spair).pairs("test")
    path = index_files()[0]
    key = json.loads(path.read_bytes().split(b"\n", 2)[1])["key"]
    path.write_bytes(_packed(key, _columns(pairs)))
    parses.clear()
    assert_same_pairs(SPairDataset(spair).pairs("test"), pairs)
    assert parses == []


@pytest.mark.parametrize("variant", sorted(CORRUPT))
def test_a_corrupt_or_hostile_index_is_ignored_and_rewritten(spair, parses, monkeypatch, variant):
    want = parsed(spair, monkeypatch)
    SPairDataset(spair).pairs("test")
    path = index_files()[0]
    good = path.read_bytes()
    key = json.loads(good.split(b"\n", 2)[1])["key"]
    path.write_bytes(CORRUPT[variant](good, want, key))
    assert path.read_bytes() != good
    parses.clear()
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert len(parses) == len(want)  # ignored: parsed again
    assert path.read_bytes() == good  # and rewritten
    parses.clear()
    SPairDataset(spair).pairs("test")
    assert parses == []


def test_a_folder_in_place_of_the_index_file_is_survived(spair, parses, monkeypatch):
    want = parsed(spair, monkeypatch)
    SPairDataset(spair).pairs("test")
    path = index_files()[0]
    path.unlink()
    (path / "inner").mkdir(parents=True)
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert path.is_dir()


def test_concurrent_readers_and_writers_never_see_half_an_index(tmp_path, isolated_home):
    root = write_synthetic_spair(tmp_path / "big", n_categories=2, images_per_category=6, n_pairs=400, size_range=(32, 36))
    age(root)
    pairs = SPairDataset(root).pairs("test")
    path = index_files()[0]
    key = json.loads(path.read_bytes().split(b"\n", 2)[1])["key"]
    stems = [p.pair_id for p in pairs]
    other = [p.__class__(**{**p.__dict__, "src_kps": p.src_kps + 1.0}) for p in pairs]
    seen, errors, stop = [], [], threading.Event()

    def write(versions):
        try:
            for k in range(40):
                assert pair_index.save(path, versions[k % 2], key)
        except BaseException as exc:
            errors.append(exc)

    def read():
        try:
            reads = 0
            while not stop.is_set() or reads < 10:
                reads += 1
                got = pair_index.load(path, key, stems)
                seen.append(None if got is None else float(got[0].src_kps[0, 0]) - float(pairs[0].src_kps[0, 0]))
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=write, args=(v,)) for v in ([pairs, other], [other, pairs])]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert len(seen) >= 30 and set(seen) <= {0.0, 1.0}  # always a whole version, never None (half a file)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    final = pair_index.load(path, key, stems)
    assert final is not None and len(final) == 400


def test_a_pair_file_parse_rejects_gives_the_same_error_with_the_index(spair, monkeypatch):
    SPairDataset(spair).pairs("test")  # index warm
    victim = _pair_file(spair, 4)
    data = json.loads(victim.read_text())
    data["trg_bndbox"] = [10, 10, 5, 20]
    victim.write_text(json.dumps(data))
    os.utime(victim, ns=(OLD + 5 * 10**9, OLD + 5 * 10**9))
    with pytest.raises(InputError) as with_index:
        SPairDataset(spair).pairs("test")
    monkeypatch.setenv(pair_index.ENV, "0")
    with pytest.raises(InputError) as without:
        SPairDataset(spair).pairs("test")
    assert str(with_index.value) == str(without.value) and "\n" not in str(with_index.value)
    assert gc.isenabled()  # switched back on after the failed read
    assert "trg_bndbox [10.0, 10.0, 5.0, 20.0] is not an [x1, y1, x2, y2] box" in str(with_index.value)
    assert victim.name.replace(":", ".") in str(with_index.value).replace(":", ".")


def test_values_an_index_cannot_hold_exactly_are_parsed_every_time(spair, parses, monkeypatch):
    victim = _pair_file(spair, 1)
    data = json.loads(victim.read_text())
    data["src_imsize"] = [10**30, 40, 3]  # int() keeps it; int64 cannot
    data["category"] = "cat\u0000\ud800zero"  # survives JSON; numpy strings would drop the NUL
    victim.write_text(json.dumps(data))
    os.utime(victim, ns=(OLD, OLD))
    want = parsed(spair, monkeypatch)
    assert want[1].src_size[0] == 10**30
    parses.clear()
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert len(parses) == len(want) and not index_files()
    data["src_imsize"] = [40, 40, 3]
    victim.write_text(json.dumps(data))
    os.utime(victim, ns=(OLD + 1, OLD + 1))
    want = parsed(spair, monkeypatch)
    SPairDataset(spair).pairs("test")
    parses.clear()
    got = SPairDataset(spair).pairs("test")
    assert parses == [] and got[1].category == "cat\u0000\ud800zero"
    assert_same_pairs(got, want)


def test_a_freshly_written_folder_is_not_stored_until_it_settles(tmp_path, isolated_home, parses, monkeypatch):
    root = write_synthetic_spair(tmp_path / "new", n_categories=1, images_per_category=3, n_pairs=3, size_range=(32, 36))
    monkeypatch.setattr(pair_index, "RACY_NS", 600 * 10**9)  # "recent" = the last 10 minutes: no timing in the test
    SPairDataset(root).pairs("test")
    assert not index_files()  # files changed within the racy window
    age(root)
    SPairDataset(root).pairs("test")
    assert len(index_files()) == 1


def test_the_environment_variable_turns_it_off(spair, parses, monkeypatch):
    monkeypatch.setenv(pair_index.ENV, "off")
    SPairDataset(spair).pairs("test")
    SPairDataset(spair).pairs("test")
    assert len(parses) == 28 and not index_files()


def test_pair_ids_follow_the_pair_files_for_odd_layouts(spair, parses, monkeypatch):
    folder = spair / "PairAnnotation" / "test"
    layout = spair / "Layout" / "large" / "test.txt"
    stems = layout.read_text().split()
    (folder / "alias.json").symlink_to(folder / f"{stems[0]}.json")  # a symlink inside: resolved to its target
    stems[1] = f"../test/{stems[1]}"  # a path that stays in the folder
    layout.write_text("\n".join([*stems, "alias"]) + "\n")
    age(spair)
    ds = SPairDataset(spair)
    from engine.correspondence.datasets.spair import _listing

    listing = _listing(folder)
    files = ds._pair_files("test", listing)
    assert ds._pair_ids("test", listing) == [p.stem for p in files]
    assert files[-1].stem == stems[0] and files[1].stem == stems[1].split("/")[-1]
    want = parsed(spair, monkeypatch)
    SPairDataset(spair).pairs("test")
    parses.clear()
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert parses == []
    layout.write_text("\n".join([*stems, "../../Layout/large/test"]) + "\n")
    os.utime(layout, ns=(OLD + 7, OLD + 7))
    with pytest.raises(InputError, match="leaves"):
        SPairDataset(spair).pairs("test")


def test_old_index_files_are_trimmed(tmp_path, isolated_home, monkeypatch):
    monkeypatch.setattr(pair_index, "MAX_FILES", 2)
    roots = []
    for k in range(3):
        root = write_synthetic_spair(tmp_path / f"s{k}", n_categories=1, images_per_category=3, n_pairs=2, size_range=(32, 34))
        age(root)
        roots.append(root)
        SPairDataset(root).pairs("test")
        time.sleep(0.02)
    assert len(index_files()) == 2
    SPairDataset(roots[1]).pairs("test")  # a hit refreshes its file
    time.sleep(0.02)
    root = write_synthetic_spair(tmp_path / "s3", n_categories=1, images_per_category=3, n_pairs=2, size_range=(32, 34))
    age(root)
    SPairDataset(root).pairs("test")
    kept = {p.name for p in index_files()}
    assert len(kept) == 2 and pair_index.index_path(
        {"root": str(roots[1].resolve()), "split": "test", "layout": "large"}).name in kept


def test_an_index_larger_than_its_bound_is_not_read(spair, monkeypatch):
    pairs = SPairDataset(spair).pairs("test")
    path = index_files()[0]
    size = path.stat().st_size
    key = json.loads(path.read_bytes().split(b"\n", 2)[1])["key"]
    stems = [p.pair_id for p in pairs]
    assert pair_index.load(path, key, stems, max_bytes=size - 1) is None
    assert_same_pairs(pair_index.load(path, key, stems, max_bytes=size), pairs)


def test_no_usable_state_folder_still_parses(spair, tmp_path, monkeypatch):
    want = parsed(spair, monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LAW_EXPLORER_HOME", str(blocker))
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)


def test_an_index_that_would_outgrow_its_bound_is_not_written(spair, parses, monkeypatch):
    for path in (spair / "PairAnnotation" / "test").glob("*.json"):
        data = json.loads(path.read_text())
        data["category"] = "\u00e9" * 20_000  # 2 bytes a character here, 3 x 6 in the index (three columns, escaped)
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    age(spair)
    want = parsed(spair, monkeypatch)
    parses.clear()
    assert_same_pairs(SPairDataset(spair).pairs("test"), want)
    assert len(parses) == len(want) and not index_files()
