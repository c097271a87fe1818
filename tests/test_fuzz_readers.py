"""Fuzzing the NIfTI, COCO, YOLO and spec readers (RELIABILITY A11, §10 item 3).

Each reader gets a small valid input, damaged many ways: seeded byte mutations (flip,
truncate, insert, delete, absurd values) and hypothesis-generated structural edits. A read
may succeed -- then it must return a sane object -- or raise one of dentpy's own errors
(DentpyError subclasses). Any other exception escaping is a bug.

The number of examples comes from `DENTPY_FUZZ_EXAMPLES` (tests/conftest.py): small in CI,
thousands under `make fuzz`. Seeds are fixed and hypothesis is derandomized.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dentpy.data.dataset import open_any
from dentpy.data.io import read_image, read_label
from dentpy.data.samples2d import ImageDataset, ImageSample
from dentpy.data.volume import IntensityImage, LabelMap
from dentpy.errors import DentpyError, SpecError
from dentpy.spec import Spec, load_spec

nib = pytest.importorskip("nibabel")

pytestmark = pytest.mark.filterwarnings("ignore")


def _settings(budget: int) -> Any:
    return settings(
        max_examples=budget,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


class _Failures:
    """Collects the inputs that let a raw exception escape, to report them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.read = 0
        self.refused = 0

    def run(self, label: str, call: Callable[[], None]) -> None:
        try:
            call()
            self.read += 1
        except DentpyError:
            self.refused += 1
        except Exception as exc:  # the bug this fuzzer looks for
            self.items.append(f"{label}: {type(exc).__name__}: {str(exc)[:160]}")

    def check(self) -> None:
        assert not self.items, f"{len(self.items)} raw exceptions:\n" + "\n".join(self.items[:20])
        print(f"fuzz outcomes: {self.read} read, {self.refused} refused")
        # With a real budget both outcomes occur: damage is refused, some inputs still read.
        if self.read + self.refused >= 50:
            assert self.refused > 0 and self.read > 0


# --------------------------------------------------------------------------- byte mutations


def _pos(data: bytes, rng: random.Random, header: int) -> int:
    """A position, in the first `header` bytes 3 times in 4 (when the data is longer)."""
    if header and rng.random() < 0.75:
        return rng.randrange(min(header, len(data)))
    return rng.randrange(len(data))


def _flip(data: bytes, rng: random.Random, header: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[_pos(out, rng, header)] ^= 1 << rng.randrange(8)
    return bytes(out)


def _randomize(data: bytes, rng: random.Random, header: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[_pos(out, rng, header)] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    return bytes(out)


def _truncate(data: bytes, rng: random.Random, header: int) -> bytes:
    return data[: rng.randrange(0, len(data))]


def _delete(data: bytes, rng: random.Random, header: int) -> bytes:
    start = _pos(data, rng, header)
    return data[:start] + data[start + rng.randint(1, 64) :]


def _insert(data: bytes, rng: random.Random, header: int) -> bytes:
    start = _pos(data, rng, header)
    return data[:start] + rng.randbytes(rng.randint(1, 64)) + data[start:]


BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random, int], bytes]] = {
    "flip": _flip,
    "randomize": _randomize,
    "truncate": _truncate,
    "delete": _delete,
    "insert": _insert,
}


# --------------------------------------------------------------------------- NIfTI

# NIfTI-1 header fields: (offset, struct format) in little-endian.
_NIFTI_FIELDS: dict[str, tuple[int, str]] = {
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow": (280, "<12f"),
}
_ABSURD_INTS = [0, -1, 1, 2, 3, 4, 7, 8, 255, 32767, -32768]
_ABSURD_FLOATS = [0.0, -1.0, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"), -float("inf")]


def _nifti_bytes(dtype: type[np.generic]) -> bytes:
    rng = np.random.default_rng(7)
    array = rng.integers(0, 5, (8, 8, 6)).astype(dtype)
    affine = np.diag([0.3, 0.3, 0.4, 1.0])
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return bytes(image.to_bytes())


NIFTI = {"int16": _nifti_bytes(np.int16), "float32": _nifti_bytes(np.float32)}


def _absurd_field(data: bytes, rng: random.Random, header: int) -> bytes:
    """One header field set to an absurd value (dims, datatype, offsets, scaling...)."""
    out = bytearray(data)
    offset, fmt = _NIFTI_FIELDS[rng.choice(sorted(_NIFTI_FIELDS))]
    size = struct.calcsize(fmt)
    if len(out) < offset + size:
        return bytes(out)
    values = list(struct.unpack_from(fmt, out, offset))
    index = rng.randrange(len(values))
    if fmt[-1] == "h":
        values[index] = rng.choice(_ABSURD_INTS)
    else:
        values[index] = rng.choice(_ABSURD_FLOATS)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


NIFTI_MUTATIONS = {**BYTE_MUTATIONS, "field": _absurd_field}


def _check_volume(path: Path) -> None:
    image = read_image(path)
    assert isinstance(image, IntensityImage)
    assert image.array.ndim == 3 and np.isfinite(image.array).all()
    assert np.isfinite(image.affine).all()
    label = read_label(path)
    assert isinstance(label, LabelMap)
    assert label.array.ndim == 3 and np.issubdtype(label.array.dtype, np.integer)
    assert label.array.size == 0 or label.array.min() >= 0


def _nifti_cases(budget: int) -> list[tuple[str, str, int]]:
    kinds = sorted(NIFTI_MUTATIONS)
    return [
        (kind, dtype, 5000 + i)
        for i in range(budget)
        for kind in [kinds[i % len(kinds)]]
        for dtype in NIFTI
    ]


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii_gz"])
def test_fuzz_nifti_byte_mutations(tmp_path: Path, fuzz_budget: int, gz: bool) -> None:
    """~budget seeded mutations per file kind; the header (bytes 0-352) is hit 3 in 4 times."""
    failures = _Failures()
    for kind, dtype, seed in _nifti_cases(fuzz_budget):
        rng = random.Random(seed)
        raw = NIFTI_MUTATIONS[kind](NIFTI[dtype], rng, 352)
        if gz:
            blob = gzip.compress(raw, mtime=0)
            if rng.random() < 0.25:  # sometimes damage the gzip stream itself
                blob = BYTE_MUTATIONS[rng.choice(sorted(BYTE_MUTATIONS))](blob, rng, 0)
            path = tmp_path / f"{kind}-{seed}.nii.gz"
        else:
            blob = raw
            path = tmp_path / f"{kind}-{seed}.nii"
        path.write_bytes(blob)
        failures.run(f"{path.name} ({dtype})", lambda p=path: _check_volume(p))
        path.unlink()
    failures.check()


def test_undamaged_nifti_reads(tmp_path: Path) -> None:
    for dtype, data in NIFTI.items():
        (tmp_path / f"{dtype}.nii").write_bytes(data)
        (tmp_path / f"{dtype}.nii.gz").write_bytes(gzip.compress(data))
        for name in (f"{dtype}.nii", f"{dtype}.nii.gz"):
            _check_volume(tmp_path / name)
            assert read_image(tmp_path / name).shape == (8, 8, 6)


_short = st.integers(-32768, 32767)
_dim_value = st.one_of(st.sampled_from([0, -1, 1, 6, 8, 32767, -32768]), _short)
_float = st.one_of(
    st.sampled_from([0.0, -1.0, 1.0, float("nan"), float("inf"), -float("inf"), 1e38, 1e-38]),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
)
# nibabel's datatype codes, plus invalid ones.
_datatype = st.one_of(
    st.sampled_from(
        [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304]
    ),
    _short,
)


@st.composite
def _header_patches(draw: st.DrawFn) -> dict[str, Any]:
    patches: dict[str, Any] = {}
    if draw(st.booleans()):
        patches["dim"] = [draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, -1]))] + [
            draw(_dim_value) for _ in range(3)
        ]
    if draw(st.booleans()):
        patches["datatype"] = [draw(_datatype)]
    if draw(st.booleans()):
        patches["bitpix"] = [draw(st.sampled_from([0, 8, 16, 32, 64, -8, 12]))]
    if draw(st.booleans()):
        patches["vox_offset"] = [
            draw(st.sampled_from([0.0, 352.0, 353.0, 1e9, 3e38, -352.0, float("nan")]))
        ]
    if draw(st.booleans()):
        patches["scl_slope"] = [draw(_float)]
    if draw(st.booleans()):
        patches["scl_inter"] = [draw(_float)]
    if draw(st.booleans()):
        patches["qform_code"] = [draw(st.sampled_from([0, 1, 2, 3, 4, 5, -1, 32767]))]
    if draw(st.booleans()):
        patches["sform_code"] = [draw(st.sampled_from([0, 1, 2, 3, 4, 5, -1, 32767]))]
    if draw(st.booleans()):
        patches["pixdim"] = [draw(st.sampled_from([-1.0, 1.0, 0.0]))] + [
            draw(_float) for _ in range(3)
        ]
    if draw(st.booleans()):
        patches["srow"] = [draw(_float) for _ in range(12)]
    if draw(st.booleans()):
        patches["quatern"] = [draw(_float) for _ in range(6)]
    return patches


def _patched(data: bytes, patches: dict[str, Any]) -> bytes:
    out = bytearray(data)
    for field, values in patches.items():
        offset, fmt = _NIFTI_FIELDS[field]
        current = list(struct.unpack_from(fmt, out, offset))
        current[: len(values)] = values
        struct.pack_into(fmt, out, offset, *current)
    return bytes(out)


def test_fuzz_nifti_header_fields(tmp_path: Path, fuzz_budget: int) -> None:
    """Hypothesis over header field values: dims (0, negative, huge), datatype codes (valid
    and invalid), vox_offset, scl_slope/inter (NaN, inf, 0), pixdim, qform/sform."""
    failures = _Failures()

    @_settings(fuzz_budget)
    @given(patches=_header_patches(), dtype=st.sampled_from(sorted(NIFTI)), gz=st.booleans())
    def one(patches: dict[str, Any], dtype: str, gz: bool) -> None:
        raw = _patched(NIFTI[dtype], patches)
        path = tmp_path / ("h.nii.gz" if gz else "h.nii")
        path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
        failures.run(f"{dtype} gz={gz} {patches}", lambda: _check_volume(path))

    one()
    failures.check()


# --------------------------------------------------------------------------- COCO

W, H = 40, 30


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (np.arange(W * H) % 251).astype(np.uint8).reshape(H, W)
    Image.fromarray(array).save(path)


def _coco() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 17, "image_id": 1, "category_id": 2, "bbox": [2, 3, 10, 5], "iscrowd": 0},
            {"id": 18, "image_id": 1, "category_id": 1, "bbox": [20.5, 10, 4, 4]},
        ],
        "categories": [{"id": 2, "name": "caries"}, {"id": 1, "name": "impacted"}],
    }


def _coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    _png(root / "images" / "a.png")
    _png(root / "images" / "b.png")
    return root


def _open_and_load(root: Path) -> None:
    dataset = open_any(root)
    assert isinstance(dataset, ImageDataset)
    for record in (*dataset.records, *dataset.test_records):
        sample = dataset.load(record)
        assert isinstance(sample, ImageSample)
        for box in sample.boxes or ():
            values = (box.x_min, box.y_min, box.x_max, box.y_max)
            assert all(np.isfinite(v) for v in values)
            assert box.x_min < box.x_max and box.y_min < box.y_max


_WEIRD_VALUES: list[Any] = [
    None,
    "",
    "1",
    "a.png",
    "../a.png",
    "/etc/passwd",
    "ä/😀.png",
    "images/a.png",
    -1,
    0,
    1,
    2,
    10**30,
    -(10**30),
    1.5,
    1e308,
    True,
    [],
    [1, 2],
    [1, 2, 3],
    [1, 2, 3, 4, 5],
    [None, None, None, None],
    ["1", "2", "3", "4"],
    {},
    {"id": 1},
]
_json_leaf = st.sampled_from(_WEIRD_VALUES)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) into a JSON tree, the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def _edit(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    """`data` with the node at `path` deleted, replaced, or given an extra entry."""
    if not path:
        return value if action == "replace" else data
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = value
    elif isinstance(parent, list):
        parent.insert(key, value)
    else:
        parent[f"{key}_x"] = value
    return data


@st.composite
def _coco_edits(draw: st.DrawFn) -> Any:
    data = _coco()
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
        data = _edit(data, path, action, copy.deepcopy(draw(_json_value)))
    return data


def _coco_text(data: Any, rng: random.Random) -> str:
    text = json.dumps(data, ensure_ascii=rng.random() < 0.5)
    if rng.random() < 0.2:  # NaN / Infinity are not JSON, but Python's json reads them
        text = text.replace("10", rng.choice(["NaN", "Infinity", "-Infinity", "1e999"]), 1)
    return text


def test_fuzz_coco_structure(tmp_path: Path, fuzz_budget: int) -> None:
    """Hypothesis-generated structural edits of annotations.json: deleted keys, wrong
    types, None, huge numbers, NaN, negative ids, bboxes of the wrong length, unicode and
    `../` file names."""
    root = _coco_root(tmp_path)
    failures = _Failures()

    @_settings(fuzz_budget)
    @given(data=_coco_edits(), seed=st.integers(0, 2**16))
    def one(data: Any, seed: int) -> None:
        text = _coco_text(data, random.Random(seed))
        (root / "annotations.json").write_text(text, encoding="utf-8")
        failures.run(text[:300], lambda: _open_and_load(root))

    one()
    failures.check()


def test_fuzz_coco_bytes(tmp_path: Path, fuzz_budget: int) -> None:
    root = _coco_root(tmp_path)
    valid = json.dumps(_coco()).encode()
    failures = _Failures()
    kinds = sorted(BYTE_MUTATIONS)
    for index in range(fuzz_budget):
        kind, seed = kinds[index % len(kinds)], 7000 + index
        blob = BYTE_MUTATIONS[kind](valid, random.Random(seed), 0)
        (root / "annotations.json").write_bytes(blob)
        failures.run(f"{kind}-seed{seed}: {blob[:200]!r}", lambda: _open_and_load(root))
    failures.check()


def test_undamaged_coco_reads(tmp_path: Path) -> None:
    root = _coco_root(tmp_path)
    (root / "annotations.json").write_text(json.dumps(_coco()))
    _open_and_load(root)
    assert len(open_any(root).records) == 2


# --------------------------------------------------------------------------- YOLO


def _yolo_config() -> dict[str, Any]:
    return {
        "path": ".",
        "train": "train/images",
        "val": "valid/images",
        "nc": 2,
        "names": {0: "caries", 1: "impacted"},
    }


def _yolo_root(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    _png(root / "train" / "images" / "a.png")
    _png(root / "train" / "images" / "b.png")
    _png(root / "valid" / "images" / "c.png")
    (root / "train" / "labels").mkdir(parents=True)
    (root / "valid" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "a.txt").write_text("1 0.5 0.5 0.25 0.2\n\n0 0.1 0.1 0.1 0.1\n")
    (root / "valid" / "labels" / "c.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text(yaml.safe_dump(_yolo_config()))
    return root


_yaml_leaf = st.sampled_from(
    [
        None,
        "",
        "train/images",
        "valid/images",
        "../outside",
        "/abs/path",
        "missing/images",
        "ä😀",
        -1,
        0,
        2,
        10**30,
        1.5,
        float("nan"),
        True,
        [],
        ["caries"],
        ["caries", "impacted", "x"],
        [None, 1],
        {},
        {0: "caries"},
        {5: "x", -1: "y"},
        {"0": "caries", "1": "impacted"},
        {0: None, 1: ["a"]},
    ]
)


@st.composite
def _yolo_configs(draw: st.DrawFn) -> dict[str, Any]:
    config: dict[str, Any] = _yolo_config()
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(["path", "train", "val", "test", "nc", "names", "extra"]))
        if draw(st.booleans()) and key in config:
            del config[key]
        else:
            config[key] = draw(_yaml_leaf)
    return config


def test_fuzz_yolo_yaml(tmp_path: Path, fuzz_budget: int) -> None:
    """Hypothesis over data.yaml: wrong types for names/nc/train, missing keys, NaN."""
    root = _yolo_root(tmp_path)
    failures = _Failures()

    @_settings(fuzz_budget)
    @given(config=_yolo_configs())
    def one(config: dict[str, Any]) -> None:
        (root / "data.yaml").write_text(
            yaml.safe_dump(config, allow_unicode=True), encoding="utf-8"
        )
        failures.run(repr(config), lambda: _open_and_load(root))

    one()
    failures.check()


def test_fuzz_yolo_yaml_bytes(tmp_path: Path, fuzz_budget: int) -> None:
    """Seeded byte mutations of data.yaml (syntax errors, invalid UTF-8, stray tabs)."""
    root = _yolo_root(tmp_path)
    valid = yaml.safe_dump(_yolo_config()).encode()
    failures = _Failures()
    kinds = sorted(BYTE_MUTATIONS)
    for index in range(fuzz_budget):
        kind, seed = kinds[index % len(kinds)], 9000 + index
        blob = BYTE_MUTATIONS[kind](valid, random.Random(seed), 0)
        (root / "data.yaml").write_bytes(blob)
        failures.run(f"{kind}-seed{seed}: {blob!r}", lambda: _open_and_load(root))
    failures.check()


_LINE_WORDS = [
    "0",
    "1",
    "2",
    "-1",
    "0.5",
    "0.25",
    "1.0",
    "0.0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "1e-320",
    "abc",
    "0x10",
    "1_0",
    "１",
    "\ufeff0",
    "",
]


@st.composite
def _label_texts(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            lines.append("0 0.5 0.5 0.2 0.2")
        else:
            words = draw(st.lists(st.sampled_from(_LINE_WORDS), min_size=0, max_size=7))
            lines.append(draw(st.sampled_from([" ", "  ", "\t"])).join(words))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 4)) == 0:
        data = draw(st.binary(max_size=64))
    return data


def test_fuzz_yolo_labels(tmp_path: Path, fuzz_budget: int) -> None:
    """Hypothesis over label .txt files: random bytes, NaN, inf, extra fields, empty
    lines, a BOM, CRLF."""
    root = _yolo_root(tmp_path)
    label = root / "train" / "labels" / "a.txt"
    failures = _Failures()

    @_settings(fuzz_budget)
    @given(data=_label_texts())
    def one(data: bytes) -> None:
        label.write_bytes(data)
        failures.run(repr(data), lambda: _open_and_load(root))

    one()
    failures.check()


_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
train: train/images
val: valid/images
names: *i
"""


@pytest.mark.parametrize("key", ["names", "train", "nc"])
def test_yolo_alias_bomb_bounded(tmp_path: Path, key: str) -> None:
    """Billion laughs in data.yaml: safe_load shares aliased nodes (no copy), so loading is
    cheap; what matters is that nothing then walks the expanded tree. Refused or read,
    within 2 s."""
    root = _yolo_root(tmp_path)
    text = _BOMB.replace("names: *i", f"{key}: *i")
    if key != "names":
        text += "names: {0: caries, 1: impacted}\n"
        text = text.replace(f"{key}: train/images\n", "").replace(f"{key}: valid/images\n", "")
    (root / "data.yaml").write_text(text)
    start = time.monotonic()
    with pytest.raises(DentpyError):
        _open_and_load(root)
    assert time.monotonic() - start < 2.0


# --------------------------------------------------------------------------- spec


def _template() -> str:
    from dentpy.init import render

    return str(render("pulp-cbct", "x", "data"))


TEMPLATE = _template()


def _check_spec(path: Path, overrides: list[str] | None = None) -> None:
    spec = load_spec(path, overrides)
    assert isinstance(spec, Spec)


def test_fuzz_spec_bytes(tmp_path: Path, fuzz_budget: int) -> None:
    valid = TEMPLATE.encode()
    path = tmp_path / "spec.yaml"
    failures = _Failures()
    kinds = sorted(BYTE_MUTATIONS)
    for index in range(fuzz_budget):
        kind, seed = kinds[index % len(kinds)], 11000 + index
        path.write_bytes(BYTE_MUTATIONS[kind](valid, random.Random(seed), 0))
        failures.run(f"{kind}-seed{seed}", lambda: _check_spec(path))
    failures.check()


_SPEC_KEYS = [
    "name",
    "objective",
    "objective.task",
    "objective.classes",
    "input.data",
    "input.layout",
    "input.assume_spacing_mm",
    "optimizer.lr",
    "metrics.report",
    "paradigm.kind",
    "training.epochs",
    "",
    ".",
    "a..b",
    "name.x",
    "input.data.x.y",
]
_SPEC_VALUES = [
    "",
    "null",
    "~",
    "3e-4",
    "-1",
    "0",
    "1e999",
    ".nan",
    ".inf",
    "[1, 2",
    "{a: 1}",
    "[0.3, 0.3]",
    "!!python/object/apply:os.system ['echo pwned']",
    "!!python/object:__main__.X {}",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "&a [*a]",
    "*undefined",
    "'unterminated",
    "ä😀",
    "=",
    "a=b=c",
    "yes",
    "2024-01-01",
]


@st.composite
def _overrides(draw: st.DrawFn) -> list[str]:
    items = []
    for _ in range(draw(st.integers(0, 4))):
        key = draw(
            st.one_of(
                st.sampled_from(_SPEC_KEYS),
                st.lists(st.text("abcxyz_.0 ", max_size=5), min_size=1, max_size=4).map(".".join),
            )
        )
        value = draw(st.one_of(st.sampled_from(_SPEC_VALUES), st.text(max_size=12)))
        items.append(f"{key}={value}" if draw(st.integers(0, 9)) else key + value)
    return items


def test_fuzz_spec_overrides(tmp_path: Path, fuzz_budget: int) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(TEMPLATE)
    failures = _Failures()

    @_settings(fuzz_budget)
    @given(overrides=_overrides())
    def one(overrides: list[str]) -> None:
        failures.run(repr(overrides), lambda: _check_spec(path, overrides))

    one()
    failures.check()


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:os.system", "!!python/object/new:os.system"],
)
def test_spec_python_tags_never_run(tmp_path: Path, tag: str) -> None:
    """A `!!python/...` tag is never constructed: in an override the value stays the plain
    text (safe_load refuses the tag), in the spec file it is a YAML error."""
    sentinel = tmp_path / "pwned"
    value = f"{tag} ['touch {sentinel}']"
    path = tmp_path / "spec.yaml"
    path.write_text(TEMPLATE)
    spec = load_spec(path, [f"name={value}"])
    assert spec.name == value
    path.write_text(TEMPLATE.replace("name: x", f"name: {value}", 1))
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    assert not sentinel.exists()


def test_spec_not_utf8_is_a_spec_error(tmp_path: Path) -> None:
    """Found by the byte fuzzer: a non-UTF-8 byte made load_spec raise UnicodeDecodeError."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(TEMPLATE.encode()[:40] + b"\xa9\xff" + TEMPLATE.encode()[40:])
    with pytest.raises(SpecError, match=r"spec.yaml: cannot be read as text") as info:
        load_spec(path)
    assert str(tmp_path) not in str(info.value)


def test_label_with_huge_scaled_values_refused(tmp_path: Path) -> None:
    """Found by the header fuzzer: scl_inter 2.6e16 made integral float labels that
    read_label cast to int32, wrapping around to -2147483648."""
    raw = _patched(NIFTI["float32"], {"scl_inter": [2.610859938624307e16]})
    path = tmp_path / "huge.nii.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(DentpyError, match=r"huge.nii.gz: label map holds implausibly large"):
        read_label(path)


def test_spec_alias_bomb_refused_quickly(tmp_path: Path) -> None:
    """Found by review of the YOLO bomb: a spec whose `name` is a billion-laughs alias made
    the validation error's repr() walk 9^8 nodes (12 s; 9^9 and deeper: unbounded)."""
    path = tmp_path / "spec.yaml"
    lines = _BOMB.splitlines()[:9]  # anchors a..i
    path.write_text("\n".join(lines) + "\n" + TEMPLATE.replace("name: x", "name: *i", 1))
    start = time.monotonic()
    with pytest.raises(SpecError, match=r"spec.yaml: YAML expands to more than"):
        load_spec(path)
    flow = "[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], " + ", ".join(
        f"&{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("bcdefgh", "cdefghi", strict=True)
    )
    path.write_text(TEMPLATE)
    with pytest.raises(SpecError, match="YAML expands to more than"):
        load_spec(path, [f"name={flow}, *i]"])
    assert time.monotonic() - start < 2.0


def test_lying_nifti_dims_refused_before_allocating(tmp_path: Path) -> None:
    """Found by the header fuzzer: dim [2, 13307, 13307] in a 3 KB .nii.gz made nibabel
    allocate 700 MB before noticing the data was short (up to 16 GB under MAX_VOXELS)."""
    import resource

    raw = _patched(NIFTI["float32"], {"dim": [3, 13307, 13307, 6]})
    path = tmp_path / "liar.nii.gz"
    path.write_bytes(gzip.compress(raw))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DentpyError, match=r"liar.nii.gz: voxel data is shorter than the header"):
        read_image(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


@pytest.mark.parametrize("code", [128, 2304, 32, 1792])
def test_nifti_non_scalar_voxels_refused(tmp_path: Path, code: int) -> None:
    """Found by the header fuzzer: datatype 128 (RGB24) made read_image's isfinite raise
    TypeError. RGB/RGBA and complex voxels are refused with an InputDataError."""
    path = tmp_path / "odd.nii"
    path.write_bytes(_patched(NIFTI["float32"], {"datatype": [code]}) + bytes(8 * 8 * 6 * 32))
    with pytest.raises(DentpyError, match=r"odd.nii: unsupported voxel type"):
        read_image(path)
