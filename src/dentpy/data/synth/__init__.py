"""Procedural synthetic CBCT of the lower jaw: dentpy's embedded default dataset.

`generate_case` draws one case (image, labels, tooth instances) from a seed; `write_dataset`
writes many in the nnU-Net v2, Pulpy3D or ToothFairy layout so the real-data readers serve
synthetic data unchanged. DATA.md §2 lists the anatomy and gray values it follows.
"""

from __future__ import annotations

from dentpy.data.synth.cbct import LABELS, PROFILES, SyntheticCase, SynthProfile, generate_case
from dentpy.data.synth.writers import write_dataset

__all__ = ["LABELS", "PROFILES", "SynthProfile", "SyntheticCase", "generate_case", "write_dataset"]
