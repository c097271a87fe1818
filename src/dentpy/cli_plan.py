"""`dentpy plan` (registered on the main app by dentpy.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Define the command(s) of this module on `app`."""
