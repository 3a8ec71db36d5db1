"""The generic training loop every task plug-in shares.

Backpropagation through time with AdamW and a warmup + linear/cosine schedule; the total gradient norm is
measured every step *before* clipping to ``trainer.clip_norm`` and logged per epoch (mean, max, share of
clipped steps), so exploding gradients (norms far above the threshold) and vanishing ones (norms near zero)
are visible in ``metrics.json`` and the plot. Early stopping on the task's dev selection metric; the best
epoch's weights are kept in a self-describing checkpoint (task, config, model_args, task_state, metric).

Per run, in ``runs/<name>/``: ``best.pt``, ``metrics.json`` and ``training.png`` (train loss, dev metric and
gradient norm per epoch).
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.config import ExperimentConfig
from training.machine import machine_description
from training.tasks.base import TrainingTask

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Trainer:
    def __init__(self, task: TrainingTask, model: nn.Module, config: ExperimentConfig, run_dir: Path):
        self.task, self.model, self.config = task, model, config
        self.cfg = config.trainer
        self.run_dir = run_dir
        self.history: list[dict[str, Any]] = []

    @classmethod
    def for_task(cls, task: TrainingTask, run_dir: Path) -> Trainer:
        """Seeds everything, *then* builds the task's model, so initial weights are reproducible too."""
        torch.set_num_threads(task.config.trainer.threads)
        seed_everything(task.config.seed)
        return cls(task, task.build_model(), task.config, run_dir)

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.task.selection_mode == "max" else value < best

    def fit(self) -> dict[str, Any]:
        """Trains, keeps the best dev epoch, writes checkpoint/metrics/plot; returns the checkpoint dict."""
        torch.set_num_threads(self.cfg.threads)
        generator = seed_everything(self.config.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = self.task.num_train_batches()
        if self.cfg.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, self.cfg.max_steps_per_epoch)
        total = steps_per_epoch * self.cfg.epochs
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, betas=self.cfg.betas
        )
        warmup = int(self.cfg.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.cfg.schedule, warmup, total))
        metric = self.task.selection_metric
        best: float | None = None
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch, stale = 0, 0
        started = time.perf_counter()
        for epoch in range(1, self.cfg.epochs + 1):
            epoch_start = time.perf_counter()
            self.model.train()
            losses, norms = [], []
            bar = tqdm(
                self.task.train_batches(generator),
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{self.cfg.epochs}",
                disable=not self.cfg.progress,
                file=sys.stderr,
                leave=False,
            )
            for step, batch in enumerate(bar):
                if step >= steps_per_epoch:
                    break
                loss = self.task.loss(self.model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm))
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                norms.append(norm)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", grad_norm=f"{norm:.2f}")
            bar.close()
            self.model.eval()
            dev = self.task.evaluate(self.model, "dev")
            record = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "grad_norm_mean": float(np.mean(norms)),
                "grad_norm_max": float(np.max(norms)),
                "grad_norm_min": float(np.min(norms)),
                "clipped_share": float(np.mean(np.asarray(norms) > self.cfg.clip_norm)),
                "lr": float(scheduler.get_last_lr()[0]),
                "dev": dev,
                "epoch_time_s": time.perf_counter() - epoch_start,
            }
            self.history.append(record)
            improved = self._better(dev[metric], best)
            if improved:
                best, best_epoch, stale = dev[metric], epoch, 0
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                stale += 1
            log.info(
                "epoch %d: train_loss %.4f grad_norm mean %.3f max %.3f (clipped %.0f%%) dev %s=%.4f%s",
                epoch,
                record["train_loss"],
                record["grad_norm_mean"],
                record["grad_norm_max"],
                100 * record["clipped_share"],
                metric,
                dev[metric],
                " *" if improved else "",
            )
            if stale >= self.cfg.patience:
                log.info("early stop: no dev improvement in %d epochs", stale)
                break
        train_time = time.perf_counter() - started
        assert best_state is not None
        self.model.load_state_dict(best_state)
        self.model.eval()
        final = {split: self.task.evaluate(self.model, split) for split in self.task.eval_splits()}
        checkpoint = {
            "task": self.task.name,
            "config": self.config.model_dump(mode="json"),
            "model_args": self.task.model_args(),
            "task_state": self.task.task_state(),
            "state_dict": best_state,
            "selection_metric": metric,
            "best_metric": best,
            "best_epoch": best_epoch,
            "epochs_run": len(self.history),
            "train_time_s": train_time,
            "history": self.history,
            "metrics": final,
            "data": self.task.data_info(),
            "seed": self.config.seed,
            "machine": machine_description(),
            "command": " ".join(["python -m training", *sys.argv[1:]]),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        torch.save(checkpoint, self.run_dir / "best.pt")
        summary = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "task_state")}
        (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_history(self.history, metric, self.run_dir / "training.png", title=self.config.name)
        return checkpoint


def plot_history(history: list[dict[str, Any]], metric: str, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["train_loss"] for h in history], marker="o")
    axes[0].set_title("train loss")
    axes[1].plot(epochs, [h["dev"][metric] for h in history], marker="o", color="tab:green")
    axes[1].set_title(f"dev {metric}")
    axes[2].plot(epochs, [h["grad_norm_mean"] for h in history], marker="o", label="mean")
    axes[2].plot(epochs, [h["grad_norm_max"] for h in history], marker="x", label="max")
    axes[2].set_yscale("log")
    axes[2].set_title("gradient norm (before clipping)")
    axes[2].legend()
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
