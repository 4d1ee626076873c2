"""lossdoctor schedules in PyTorch, through torch.optim.lr_scheduler.LambdaLR."""

from __future__ import annotations

import torch

from lossdoctor.schedules import Schedule


def torch_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR that gives every parameter group exactly schedule(t), t = the number
    of scheduler.step() calls (per epoch or per batch, as you call it).

    LambdaLR multiplies each group's initial lr by a factor, so the groups' lr is
    set to schedule.base_lr first: the schedule owns the learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = schedule.base_lr
        group.pop("initial_lr", None)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule.factor)
