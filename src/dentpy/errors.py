"""dentpy's own error types.

Every message follows one pattern so a user can act on it: what went wrong (naming the
file or case, never a patient identifier), what was expected, what was found, how to fix.
"""

from __future__ import annotations


class DentpyError(Exception):
    """Base of every error dentpy raises on purpose."""

    def __init__(
        self,
        what: str,
        *,
        expected: str | None = None,
        found: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.what]
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        if self.fix is not None:
            lines.append(f"  fix:      {self.fix}")
        return "\n".join(lines)


class InputDataError(DentpyError):
    """An image, label or dataset on disk is not what dentpy can use safely."""


class SpecError(DentpyError):
    """The problem spec or a command-line override is invalid."""


class CheckpointError(DentpyError):
    """A checkpoint is missing, corrupt, untrusted, or belongs to another run."""


class OutputError(DentpyError):
    """An output file (prediction, table, picture) could not be written."""


class TrainingError(DentpyError):
    """Training cannot continue (for example a non-finite loss)."""
