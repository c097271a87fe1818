"""`import dentpy` and `dentpy --help` stay light: no torch, MONAI or nibabel at start-up."""

import subprocess
import sys

HEAVY = ("torch", "monai", "nibabel", "SimpleITK", "scipy", "matplotlib")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_dentpy_is_light() -> None:
    assert not _imported_after("import dentpy") & set(HEAVY)


def test_cli_help_is_light() -> None:
    code = (
        "import sys\nfrom dentpy.cli import app\nsys.argv=['dentpy','--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert not _imported_after(code) & set(HEAVY)
