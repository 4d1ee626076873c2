"""Writes the two W&B runs kept here as test data. Run in a folder of its own with
wandb installed (they were made with wandb 0.31.0):

    WANDB_SILENT=true python make_runs.py    # then copy wandb/offline-run-*/run-*.wandb
"""

import math

import wandb  # type: ignore[import-not-found]

run = wandb.init(project="digits", mode="offline", name="brisk-pond-1", dir=".")
for e in range(40):
    train = 2.0 * math.exp(-e / 6) + 0.05
    wandb.log({"train/loss": train, "val/loss": train + 0.04 * max(0, e - 12), "epoch": e,
               "val": {"acc": min(0.95, 0.1 + e * 0.03)}})
run.finish()

run = wandb.init(project="digits", mode="offline", name="long-night-2", dir=".")
for step in range(200):
    loss = 2.3 * math.exp(-step / 40) + 0.1 if step < 160 else float("nan")
    wandb.log({"loss": loss, "lr": 0.1})
run.finish(exit_code=1)
