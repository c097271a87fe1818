"""Patient-identifier canaries (RELIABILITY.md C26): identifiers planted in DICOM tags and
in case/file/folder names never reach what dentpy writes or prints.

Planted: patient name ``CANARY^PHI^93``, patient ID ``PHIID9393``, birth date ``19330303``
(DICOM PatientName, PatientID, PatientBirthDate, InstitutionName, ReferringPhysicianName of
a series used as prediction input, in a folder named ``CANARY_PHI_93``), and case names
``CANARY_PHI_93_<i>_PHIID9393`` plus a patients.csv naming ``CANARY^PHI^93`` /
``PHIID9393-<i>`` in a tiny nnU-Net training set.

Driven through the CLI in-process (``data check``, ``data split``, ``init``, ``train``,
``evaluate``, ``predict --overlay``, ``volume``) with the root logger at DEBUG written to a
file (dentpy itself has no logging; third-party libraries might), then errors provoked on purpose
through the real entry point ``dentpy.cli.main`` (an undeclared label value in a
canary-named case, via ``train`` and ``data check --json``; a truncated slice in a
canary-named, canary-tagged DICOM series, via ``predict``).

Scanned, case-insensitively, as raw bytes (.gz decompressed, zip members such as torch's
state.pt read one by one): every file and file name in the run folder and the preprocessing
cache, data check's JSON report and PNG pictures, the contents of every prediction output
(plus the NIfTI header fields descrip, aux_file, intent_name), stdout/stderr of every
command, the DEBUG log.

Exceptions, by design:
- Files inside the user's own dataset folder (``data split`` writes splits.json there, naming
  the user's own cases) are not scanned.
- Prediction output FILE NAMES are derived from the input's name (``<input>_seg.nii.gz``):
  the user's own output for their own input; only their contents are scanned.
- Command output echoes what the user typed or owns: the path arguments (``wrote
  <path>``, ``report: <path>``) and the prediction file names (``predict``'s "wrote
  preds/CANARY_PHI_93_seg.nii.gz", ``volume``'s table title). The scan of command output
  ignores exactly those strings, nothing else.

Error texts are checked apart: no DICOM-tag canary (name, birth date, institution) may
appear, and apart from the offending file's dataset-relative name (which the user needs to
find the file, see docs/reliability.md) no identifier either.
"""

from __future__ import annotations

import gzip
import io
import logging
import shutil
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dentpy.cli import app

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

pytestmark = pytest.mark.slow
runner = CliRunner()

NAME, PATIENT_ID, BIRTH = "CANARY^PHI^93", "PHIID9393", "19330303"
FOLDER = "CANARY_PHI_93"
NEEDLES = (b"canary", b"phi^93", b"phi_93", b"phiid9393", b"19330303")
FAST = [
    "train.iterations=4",
    "train.validate_every=2",
    "train.patch_size=[32, 32, 32]",
    "model.channels=[8, 16, 32]",
    "train.sw_batch_size=2",
]


@dataclass
class Scan:
    """Every hit found, as 'what: context'; and how much was looked at."""

    hits: list[str] = field(default_factory=list)
    files: int = 0
    texts: int = 0

    def text(self, what: str, data: bytes | str, ignore: tuple[str, ...] = ()) -> None:
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        for allowed in ignore:
            raw = raw.replace(allowed.encode(), b"<path>")
        self.texts += 1
        lowered = raw.lower()
        for needle in NEEDLES:
            at = lowered.find(needle)
            if at >= 0:
                snippet = raw[max(0, at - 40) : at + 40].decode("utf-8", "replace")
                self.hits.append(f"{what}: ...{snippet!r}...")

    def file(self, path: Path, root: Path, check_name: bool = True) -> None:
        shown = f"{root.name}/{path.relative_to(root).as_posix()}"
        if check_name:
            self.text(f"file name {shown}", path.relative_to(root).as_posix())
        self.files += 1
        for part, data in _contents(path.read_bytes()):
            self.text(f"{shown}{part}", data)

    def tree(self, root: Path, check_names: bool = True) -> None:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        assert files, f"nothing written under {root.name}"
        for path in files:
            self.file(path, root, check_names)


def _contents(raw: bytes, part: str = "") -> Iterator[tuple[str, bytes]]:
    """The bytes, and recursively what gzip or zip wrappers hold."""
    yield part, raw
    if raw[:2] == b"\x1f\x8b":
        with suppress(OSError, EOFError):
            yield from _contents(gzip.decompress(raw), part + " (gunzipped)")
    elif raw[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                for member in archive.namelist():
                    yield from _contents(archive.read(member), f"{part} [{member}]")
        except zipfile.BadZipFile:
            pass


def _write_series(folder: Path, n: int = 32, size: int = 32) -> None:
    """A CT series whose tags carry every canary (geometry as tests/test_dicom_series.py)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"s{k:02d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = BIRTH
        ds.InstitutionName = f"{NAME} clinic {PATIENT_ID}"
        ds.ReferringPhysicianName = NAME
        ds.StudyDescription = f"{NAME} {BIRTH}"
        ds.SeriesDescription = f"{PATIENT_ID} {BIRTH}"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9393"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.93"
        ds.Rows, ds.Columns = size, size
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.InstanceNumber = k + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.PixelData = rng.integers(0, 3000, (size, size), dtype=np.uint16).tobytes()
        ds.save_as(folder / f"s{k:02d}.dcm", enforce_file_format=True)


def _canary_dataset(root: Path) -> Path:
    """The tiny synthetic nnU-Net set with every case renamed after the canary patient."""
    result = runner.invoke(
        app,
        ["synth", "cbct", "--out", str(root), "--cases", "6", "--test-cases", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = root / "Dataset001_SynthCBCT"
    old = sorted(p.name.removesuffix("_0000.nii.gz") for p in (data / "imagesTr").iterdir())
    rows = []
    for i, case in enumerate(old):
        new = f"{FOLDER}_{i}_{PATIENT_ID}"
        (data / "imagesTr" / f"{case}_0000.nii.gz").rename(data / "imagesTr" / f"{new}_0000.nii.gz")
        (data / "labelsTr" / f"{case}.nii.gz").rename(data / "labelsTr" / f"{new}.nii.gz")
        rows.append(f"{new},{NAME if i < 2 else f'{PATIENT_ID}-{i}'}")
    for i, image in enumerate(sorted((data / "imagesTs").iterdir())):
        case, new = image.name.removesuffix("_0000.nii.gz"), f"{FOLDER}_test{i}_{PATIENT_ID}"
        image.rename(data / "imagesTs" / f"{new}_0000.nii.gz")
        label = data / "labelsTs" / f"{case}.nii.gz"
        if label.exists():
            label.rename(data / "labelsTs" / f"{new}.nii.gz")
    (data / "patients.csv").write_text("case,patient\n" + "\n".join(rows) + "\n")
    return data


class _Commands:
    """Runs CLI commands in-process and scans their output; paths the test passes are the
    user's own words and are not counted as hits."""

    def __init__(self, scan: Scan, user_paths: tuple[str, ...]) -> None:
        self.scan, self.user_paths = scan, user_paths
        self.names: list[str] = []

    def __call__(self, *args: str, exit_code: int = 0) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == exit_code, result.output
        self.names.append(args[0] if args[0] not in ("data", "synth") else " ".join(args[:2]))
        self.scan.text(f"output of `dentpy {self.names[-1]}`", result.output, self.user_paths)
        return result.output


def _main(*args: str) -> tuple[int, str, str]:
    """`dentpy ARGS` through the real entry point (`main`, which prints `error: ...` and
    exits 2), in-process to save the import time: (exit status, stdout, stderr + traceback
    of any exception that escaped)."""
    import contextlib
    import traceback

    from dentpy.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["dentpy", *args]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # an escaped exception is itself a finding
        err.write("".join(traceback.format_exception(exc)))
        code = -1
    finally:
        sys.argv = argv
    return int(code or 0) if not isinstance(code, str) else 1, out.getvalue(), err.getvalue()


@dataclass
class Pipeline:
    """What one run of every command left behind."""

    scan: Scan
    errors: dict[str, str]
    commands: list[str]


@contextmanager
def _debug_log(path: Path) -> Iterator[None]:
    """The root logger at DEBUG into `path` (dentpy has no logger; libraries do)."""
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("c26")
    with pytest.MonkeyPatch.context() as patch, _debug_log(tmp / "debug.log"):
        patch.setenv("DENTPY_CACHE", str(tmp / "cache"))
        patch.chdir(tmp)
        yield _run_everything(tmp)


def _run_everything(tmp: Path) -> Pipeline:
    data = _canary_dataset(tmp / "data")
    series = tmp / "clinic" / FOLDER
    _write_series(series)
    scan = Scan()
    # The user's own words echoed back: the paths typed, and the names of the prediction
    # files derived from their input's name.
    user_words = (str(series), str(tmp), f"{FOLDER}_seg.nii.gz", f"{FOLDER}_overlay.png")
    dentpy = _Commands(scan, user_words)

    dentpy("data", "check", str(data), "--json", "report.json", "--pictures", "pics")
    dentpy("data", "split", str(data), "--val", "0.2", "--test", "0.2")
    spec = "spec.yaml"
    dentpy("init", "--template", "ian-cbct", "--data", "data/Dataset001_SynthCBCT", "--out", spec)
    dentpy("train", spec, *FAST, "--runs", "runs", "--no-progress")
    run = tmp / "runs" / "ian-cbct"
    dentpy("evaluate", str(run))
    dentpy("predict", str(run), str(series), "--out", "preds", "--overlay")
    predictions = sorted((tmp / "preds").iterdir())
    assert {p.name for p in predictions} == {f"{FOLDER}_seg.nii.gz", f"{FOLDER}_overlay.png"}
    segmentation = tmp / "preds" / f"{FOLDER}_seg.nii.gz"
    dentpy("volume", str(segmentation))
    dentpy("volume", str(segmentation), "--json")

    # Errors on purpose: an undeclared label value in a canary-named case; a truncated
    # slice in a canary-named, canary-tagged DICOM series.
    bad = tmp / "bad" / "Dataset001_SynthCBCT"
    shutil.copytree(data, bad)
    (bad / "splits.json").unlink()
    label_path = bad / "labelsTr" / f"{FOLDER}_3_{PATIENT_ID}.nii.gz"
    label = nib.load(label_path)
    array = np.asarray(label.dataobj).astype(np.uint8)
    array[0, 0, 0] = 77
    nib.save(nib.Nifti1Image(array, label.affine, label.header), label_path)
    broken = tmp / "clinic2" / FOLDER
    shutil.copytree(series, broken)
    slice_bytes = (broken / "s05.dcm").read_bytes()
    (broken / "s05.dcm").write_bytes(slice_bytes[:-300])
    errors: dict[str, str] = {}
    for what, args in {
        "`dentpy train` on a label with an undeclared value": (
            "train", spec, *FAST, f"input.data={bad}", "--runs", "runs_bad", "--no-progress",
        ),
        "`dentpy predict` on a truncated DICOM series": (
            "predict", str(run), str(broken), "--out", "preds_bad",
        ),
    }.items():  # fmt: skip
        code, out, err = _main(*args)
        assert code == 2, f"{what}: exit {code}\n{err}"
        assert err.startswith("error:") and "Traceback" not in err, err
        scan.text(f"stdout of {what}", out, user_words)
        errors[what] = err
    check = ["data", "check", str(bad), "--json", "bad_report.json"]
    result = runner.invoke(app, check, catch_exceptions=False)
    assert result.exit_code == 1 and "77" in result.output, result.output
    errors["`dentpy data check` on a label with an undeclared value"] = result.output
    errors["its report.json"] = (tmp / "bad_report.json").read_text()

    # What dentpy wrote outside the user's dataset.
    scan.tree(run)
    scan.tree(tmp / "cache")
    scan.file(tmp / "report.json", tmp)
    scan.tree(tmp / "pics")
    for path in predictions:  # contents only: the file names follow the input's name
        scan.file(path, tmp, check_name=False)
    header = nib.load(segmentation).header
    for key in ("descrip", "aux_file", "intent_name"):
        scan.text(f"NIfTI header {key} of the prediction", bytes(header[key].tobytes()))
    for extension in header.extensions:
        scan.text("NIfTI header extension of the prediction", extension.get_content())
    scan.file(tmp / "debug.log", tmp)
    assert list((run / "tensorboard").iterdir()), "no TensorBoard files to scan"
    assert list((run / "checkpoints").glob("*.safetensors")), "no checkpoint to scan"
    return Pipeline(scan, errors, dentpy.names)


def test_no_canary_in_run_folder_outputs_logs_or_command_output(pipeline: Pipeline) -> None:
    scan = pipeline.scan
    assert scan.files >= 20, f"only {scan.files} files scanned"
    assert not scan.hits, (
        f"canary identifiers found ({scan.files} files, {scan.texts} texts scanned; "
        f"commands: {', '.join(pipeline.commands)}):\n" + "\n".join(scan.hits)
    )


def test_errors_never_show_dicom_tag_canaries(pipeline: Pipeline) -> None:
    for what, text in pipeline.errors.items():
        for tag_value in (NAME, BIRTH, "PHI^93"):
            assert tag_value.lower() not in text.lower(), f"{what} shows {tag_value!r}:\n{text}"


def test_errors_name_the_offending_file_and_nothing_else(pipeline: Pipeline) -> None:
    """Policy (docs/reliability.md, C26): an error names the offending file relative to the
    dataset, because the user must find and fix it; that name is the user's own, shown on
    their terminal (and in the report they asked for), never in a run folder or log. With
    those file names masked, no identifier may remain in any error text."""
    import re

    hits = Scan()
    for what, text in pipeline.errors.items():
        masked = re.sub(r"\b(imagesTr|labelsTr|imagesTs|labelsTs)/[^\s():,]+", "<file>", text)
        hits.text(what, masked)
    assert not hits.hits, "identifiers in error texts beyond the file name:\n" + "\n".join(
        hits.hits
    )


def _canary_image_folder(root: Path, n: int = 24) -> Path:
    """ImageFolder crops named after the canary patient; patients.csv in canary words."""
    from PIL import Image

    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        label = "caries" if i % 3 == 0 else "sound"
        name = f"{label}/{FOLDER}_{PATIENT_ID}_{BIRTH}_{i:02d}.png"
        crop = rng.normal(2400, 250, (40, 36))
        if label == "caries":
            crop[8:24, 2:10] -= 900
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop.clip(0, 4095).astype(np.uint16)).save(root / name)
        rows.append(f"{name},{NAME if i < 4 else f'{PATIENT_ID}-{i // 2}'}")
    (root / "patients.csv").write_text("image,patient\n" + "\n".join(rows) + "\n")
    return root


def test_no_canary_in_a_classification_run(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2D: ImageFolder with canary file names through init/train/evaluate/predict --explain.
    The `image` column of predictions.csv and the `<image>_cam.png` names legitimately name
    the user's own input files; everything else (their other columns included) is scanned."""
    import csv

    tmp_path = tmp_path_factory.mktemp("c26_2d")  # pytest's tmp_path holds the test's name
    monkeypatch.setenv("DENTPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = _canary_image_folder(tmp_path / "crops")
    scan = Scan()
    with _debug_log(tmp_path / "debug.log"):
        dentpy = _Commands(scan, (str(tmp_path),))
        dentpy("init", "--template", "caries-binary", "--data", "crops", "--out", "spec.yaml")
        dentpy(
            "train", "spec.yaml", "model.name=tiny_cnn", "train.iterations=4",
            "train.validate_every=2", "train.batch_size=8", "preprocess.image_size=[32, 32]",
            "evaluation.bootstrap=10", "--runs", "runs", "--no-progress",
        )  # fmt: skip
        run = tmp_path / "runs" / "caries-binary"
        dentpy("evaluate", str(run))
        result = runner.invoke(
            app,
            ["predict", str(run), str(data / "caries"), "--out", "preds", "--explain"],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
    scan.text("output of `dentpy predict`", result.output, ("preds/predictions.csv",))
    scan.tree(run)
    if (tmp_path / "cache").exists():
        scan.tree(tmp_path / "cache")
    scan.file(tmp_path / "debug.log", tmp_path)
    table = tmp_path / "preds" / "predictions.csv"
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["image"].startswith(FOLDER) for row in rows)
    for row in rows:
        scan.text("predictions.csv (image column left out)", repr(row | {"image": ""}))
    pictures = [p for p in (tmp_path / "preds").iterdir() if p != table]
    assert pictures, "--explain wrote no Grad-CAM pictures"
    for path in pictures:  # contents only: named after the user's input images
        scan.file(path, tmp_path, check_name=False)
    assert scan.files >= 10, f"only {scan.files} files scanned"
    assert not scan.hits, (
        f"canary identifiers found ({scan.files} files, {scan.texts} texts scanned):\n"
        + "\n".join(scan.hits)
    )
