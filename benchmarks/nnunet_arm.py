"""The nnU-Net v2 arm of benchmarks/nnunet_time_to_quality.py: nnU-Net's own trainer on its
own plan (3d_fullres, fold 0 = the split it was given), stopped by a wall-clock budget.

Runs in nnU-Net's environment (benchmarks/nnunet_env.sh), never imports dentpy. nnU-Net is
epoch-based (1000 epochs of 250 iterations, poly LR decay over the epochs): a CPU budget
of minutes holds only tens of iterations of its plan, so epochs are shortened to
--iterations-per-epoch and, after the first epoch, the number of epochs is set to what the
budget holds, so that its learning rate still decays to zero at the end of the budget (as
dentpy's pacing does).
A budget that ends mid-epoch stops training after the current iteration (the epoch's
validation batches and checkpoint still run, then the final checkpoint is written).
The budget starts before the trainer is built, so data loading and network set-up count,
as they do in dentpy's arm. Prints one JSON line: iterations, epochs, seconds, the plan.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="nnU-Net dataset name, DatasetXXX_Name")
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations-per-epoch", type=int, default=5)
    parser.add_argument("--val-iterations-per-epoch", type=int, default=1)
    parser.add_argument(
        "--time-step",
        action="store_true",
        help="only time 3 bare training steps of the planned network (random batch)",
    )
    args = parser.parse_args()
    if args.time_step:
        time_step(args)
        return
    start = time.monotonic()
    deadline = start + 60 * args.minutes
    torch.set_num_threads(args.threads)
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(args.dataset, "3d_fullres", 0, device=torch.device("cpu"))
    trainer.num_iterations_per_epoch = args.iterations_per_epoch
    trainer.num_val_iterations_per_epoch = args.val_iterations_per_epoch
    trainer.on_train_start()
    epochs, epoch_seconds, iterations = 1, [], 0
    while trainer.current_epoch < epochs:
        began = time.monotonic()
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        losses = []
        for _ in range(trainer.num_iterations_per_epoch):
            losses.append(trainer.train_step(next(trainer.dataloader_train)))
            iterations += 1
            if time.monotonic() >= deadline:
                break  # the budget ends mid-epoch: stop here, as the other arms do
        trainer.on_train_epoch_end(losses)
        with torch.no_grad():
            trainer.on_validation_epoch_start()
            outputs = [
                trainer.validation_step(next(trainer.dataloader_val))
                for _ in range(trainer.num_val_iterations_per_epoch)
            ]
            trainer.on_validation_epoch_end(outputs)
        trainer.on_epoch_end()
        epoch_seconds.append(time.monotonic() - began)
        if time.monotonic() >= deadline:
            break
        if trainer.current_epoch == 1:
            # The epochs the budget holds at the first epoch's pace; the poly LR decays
            # over them.
            epochs = max(1, 1 + math.floor((deadline - time.monotonic()) / epoch_seconds[0]))
            trainer.num_epochs = epochs
            trainer.lr_scheduler.max_steps = epochs
    trainer.on_train_end()
    configuration = trainer.configuration_manager
    print(
        json.dumps(
            {
                "iterations": iterations,
                "epochs": trainer.current_epoch,
                "planned_epochs": epochs,
                "seconds": round(time.monotonic() - start, 1),
                "epoch_seconds": [round(s, 1) for s in epoch_seconds],
                "patch_size": list(configuration.patch_size),
                "batch_size": configuration.batch_size,
                "features_per_stage": list(
                    configuration.network_arch_init_kwargs["features_per_stage"]
                ),
                "spacing": list(configuration.spacing),
                "out": trainer.output_folder,
            }
        )
    )


def time_step(args: argparse.Namespace) -> None:
    """Forward, deep-supervised loss stand-in, backward and SGD step of the planned network
    on a random batch of the planned patch and batch size: what one iteration costs without
    the data path."""
    torch.set_num_threads(args.threads)
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(args.dataset, "3d_fullres", 0, device=torch.device("cpu"))
    trainer.initialize()
    configuration = trainer.configuration_manager
    x = torch.randn(configuration.batch_size, 1, *configuration.patch_size)
    seconds = []
    for _ in range(3):
        began = time.perf_counter()
        outputs = trainer.network(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum(o.float().mean() for o in outputs)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        seconds.append(round(time.perf_counter() - began, 1))
    print(json.dumps({"step_seconds": seconds, "patch_size": list(configuration.patch_size)}))


if __name__ == "__main__":
    main()
