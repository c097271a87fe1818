"""Weights & Biases, offline by default: written under a folder, uploaded only by an
explicit `wandb sync`. No code, git state, command line, host or system stats are kept."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from dentpy.tracking.base import TrackerRun, TrackingError, missing_extra


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as error:
        raise missing_extra("Weights & Biases", "wandb", error) from None
    return wandb


class WandbTracker:
    backend = "wandb"

    def __init__(self, folder: Path, project: str, group: str, mode: str = "offline") -> None:
        self.folder = folder
        self.project = project
        self.group = group
        self.mode = mode
        self.run: Any = None

    def _settings(self, wandb: Any) -> Any:
        # The command line, program path, host and user name can name a dataset folder or a
        # person: W&B must not record them (x_disable_meta), nor code, git or system stats.
        return wandb.Settings(
            mode=self.mode,
            silent=True,
            console="off",
            save_code=False,
            disable_code=True,
            disable_git=True,
            disable_job_creation=True,
            x_disable_meta=True,
            x_disable_stats=True,
            x_disable_machine_info=True,
            x_save_requirements=False,
            label_disable=True,
            program="dentpy",
            host="dentpy",
            username="dentpy",
        )

    def start(self, name: str, resume_id: str | None, tags: dict[str, str]) -> TrackerRun:
        wandb = _import_wandb()
        self.folder.mkdir(parents=True, exist_ok=True)
        # W&B run ids: lowercase letters and digits, unique within the project.
        run_id = resume_id or secrets.token_hex(6)
        try:
            self.run = wandb.init(
                project=self.project,
                group=self.group,
                name=name,
                id=run_id,
                resume="allow",
                dir=str(self.folder),
                tags=[f"{key}={value}"[:64] for key, value in sorted(tags.items())],
                settings=self._settings(wandb),
            )
        except Exception as error:  # W&B raises its own kinds (login, folder, service)
            raise TrackingError(
                f"cannot start a W&B {self.mode} run",
                expected="offline: a writable folder; online: a W&B login (`wandb login`)",
                found=f"{type(error).__name__}: {str(error)[:300]}",
                fix="use tracking.wandb_mode: offline, or check the folder / login",
            ) from None
        # Offline, every sync of the run writes one more offline-run-*-ID folder (a chunk);
        # `wandb sync` uploads them in order as one run.
        chunks = self.folder / "wandb" / f"offline-run-*-{run_id}"
        view = f"wandb sync {chunks}" if self.mode == "offline" else f"project {self.project}"
        return TrackerRun(
            backend=self.backend, run_id=run_id, location=str(Path(self.run.dir).parent), view=view
        )

    def log_params(self, params: dict[str, str]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        # W&B steps only grow within a run; `sync` logs each training row once, in order.
        self.run.log(metrics, step=step)

    def log_final(self, metrics: dict[str, float], step: int) -> None:
        # Evaluation results are the run's summary: W&B shows them as the final values.
        for key, value in metrics.items():
            self.run.summary[key] = value

    def log_artifact(self, path: Path, folder: str) -> None:
        # Copied (not symlinked, W&B's default) into the run's files, so the offline run is
        # complete on its own and the staged copy may be deleted.
        target = Path(self.run.dir) / folder / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        self.run.save(str(target), base_path=self.run.dir, policy="now")

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
