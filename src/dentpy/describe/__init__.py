"""How raw data becomes output for one spec: an ordered list of pipeline stages.

`describe_pipeline(spec, run_dir)` reads the spec, the task code and (when given) a run's
plan.json / fingerprint.json, and returns plain frozen dataclasses that a terminal printer
(`describe_text`) or the SVG drawer (`dentpy.report.diagram.pipeline_svg`) turn into words
or boxes. Nothing is hard-coded per template: class counts come from the run's plan, the
dataset (when it exists) or the spec, and the network's tensor shapes come from building
the task's own network and running one forward pass on torch's "meta" device (no memory,
no arithmetic).

Shared outputs must not leak patient data: no dataset folder name, path or file name
appears in a Pipeline, only the layout, counts and statistics.

Modules, one idea each: `model` (the dataclasses), `facts` (what is known about the data),
`network` (the network's shapes), `stages_input`, `stages_augment`, `stages_training` and
`stages_results` (the stage builders, in pipeline order), `pipeline` (putting them
together) and `text` (plain-text summaries). Importing this package stays cheap: torch and
the task code load only inside the functions that need them.
"""

from __future__ import annotations

from dentpy.describe.model import STAGE_KEYS, STAGE_KIND, Pipeline, Stage
from dentpy.describe.pipeline import describe_pipeline
from dentpy.describe.text import describe_problem, describe_text, metric_definition

__all__ = [
    "STAGE_KEYS",
    "STAGE_KIND",
    "Pipeline",
    "Stage",
    "describe_pipeline",
    "describe_problem",
    "describe_text",
    "metric_definition",
]
