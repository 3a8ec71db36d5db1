"""The generic training loop every task plug-in shares.

Backpropagation through time with AdamW and a warmup + linear/cosine schedule (optionally decaying to a floor,
``trainer.min_lr_ratio``); the total gradient norm is measured every step *before* clipping to
``trainer.clip_norm`` and logged per epoch (mean, max, share of clipped steps), so exploding gradients (norms
far above the threshold) and vanishing ones (norms near zero) are visible in ``metrics.json`` and the plot.
Early stopping on the task's dev selection metric; the best epoch's weights are kept in a self-describing
checkpoint (task, config, model_args, task_state, metric).

Per run, in ``runs/<name>/``: ``best.pt``, ``metrics.json`` and ``training.png`` (train loss, dev metric and
gradient norm per epoch); while a run is in progress also ``checkpoint.pt``, from which an interrupted run
continues exactly (``fit(resume=True)``, ``python -m training train --config X --resume``); with
``trainer.keep_epochs = N`` also ``epochs/epoch-NNN.pt``, the last N epochs' weights, which
``python -m training average`` (:mod:`training.averaging`) averages into one model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.checkpoints import FORMAT as CHECKPOINT_FORMAT
from training.checkpoints import warm_start
from training.config import ConfigError, ExperimentConfig
from training.machine import machine_description
from training.task import TrainingTask

log = logging.getLogger(__name__)

BEST_FILE = "best.pt"
CHECKPOINT_FILE = "checkpoint.pt"
EPOCHS_DIR = "epochs"
#: config entries that do not change what a run computes: a checkpoint resumes across changes to them
RESUME_INDIFFERENT: tuple[tuple[str, ...], ...] = (
    ("trainer", "progress"),
    ("trainer", "threads"),
    ("trainer", "keep_epochs"),
    ("export",),
)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0):
    """LR factor per step: linear warmup, then constant or a linear/cosine decay from 1 to ``min_ratio``."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return min_ratio + (1.0 - min_ratio) * max(0.0, 1.0 - progress)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@dataclass
class RunProgress:
    """Where a run stands after its last completed epoch (saved in ``checkpoint.pt``)."""

    epoch: int = 0
    best: float | None = None
    best_epoch: int = 0
    stale: int = 0
    train_time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: an interruption never leaves a truncated file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_run(checkpoint: dict[str, Any], run_dir: Path) -> None:
    """A finished run's ``best.pt`` and ``metrics.json`` (the checkpoint without weights and vocabularies)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_save(checkpoint, run_dir / BEST_FILE)
    summary = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "task_state")}
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")


def without_paths(data: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """A deep copy of ``data`` without the entries at ``paths`` (tuples of nested keys)."""
    data = json.loads(json.dumps(data))
    for path in paths:
        node = data
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return data


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as ``key: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for key in sorted(old.keys() | new.keys())
            for line in config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _data_identity(info: Any) -> Any:
    """``data_info`` without file locations: the same data read from another folder still resumes."""
    if isinstance(info, dict):
        return {k: _data_identity(v) for k, v in info.items() if k not in ("path", "source")}
    return info


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


class Trainer:
    def __init__(self, task: TrainingTask, model: nn.Module, config: ExperimentConfig, run_dir: Path):
        self.task, self.model, self.config = task, model, config
        self.cfg = config.trainer
        self.run_dir = run_dir
        self.history: list[dict[str, Any]] = []
        # how the run was started, recorded in best.pt (the CLI sets it; this process's argv otherwise)
        self.command = " ".join(["python -m training", *sys.argv[1:]])

    @classmethod
    def for_task(cls, task: TrainingTask, run_dir: Path) -> Trainer:
        """Seeds everything, *then* builds the task's model, so initial weights are reproducible too (or
        loads them from ``trainer.init_from``)."""
        torch.set_num_threads(task.config.trainer.threads)
        seed_everything(task.config.seed)
        model = task.build_model()
        if task.config.trainer.init_from:
            warm_start(model, task.config.trainer.init_from)
        return cls(task, model, task.config, run_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.task.selection_mode == "max" else value < best

    def _save_checkpoint(
        self,
        progress: RunProgress,
        best_state: dict[str, torch.Tensor] | None,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        generator: torch.Generator,
        data: dict[str, Any],
    ) -> None:
        atomic_save(
            {
                "task": self.task.name,
                "config": self.config.model_dump(mode="json"),
                "data": data,
                "progress": asdict(progress),
                "model": self.model.state_dict(),
                "best_state": best_state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_states(generator),
            },
            self.checkpoint_path,
        )

    def _load_checkpoint(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        generator: torch.Generator,
        data: dict[str, Any],
    ) -> tuple[RunProgress, dict[str, torch.Tensor] | None]:
        """Restores model, optimizer, schedule and RNG states; refuses a checkpoint of another experiment."""
        saved = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        if not isinstance(saved, dict) or not {"config", "data", "progress", "rng"} <= saved.keys():
            raise ConfigError(
                f"{self.checkpoint_path} is not a resumable checkpoint of this trainer (an older loop's?); "
                "train without --resume to start afresh (overwriting it)."
            )
        changed = config_differences(
            without_paths(saved["config"], RESUME_INDIFFERENT),
            without_paths(self.config.model_dump(mode="json"), RESUME_INDIFFERENT),
        )
        data_changed = config_differences(_data_identity(saved["data"]), _data_identity(data))
        changed += [f"data {line}" for line in data_changed]
        if changed:
            raise ConfigError(
                f"cannot resume from {self.checkpoint_path}: it was written for a different experiment "
                f"({'; '.join(changed)}). Resume with the config and data it was written with, or train "
                "without --resume to start afresh (overwriting it)."
            )
        self.model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng_states(saved["rng"], generator)
        return RunProgress(**saved["progress"]), saved["best_state"]

    def _keep_epoch(self, epoch: int, dev: dict[str, float]) -> None:
        """``epochs/epoch-NNN.pt`` (weights and dev metrics) for the last ``keep_epochs`` epochs."""
        folder = self.run_dir / EPOCHS_DIR
        folder.mkdir(exist_ok=True)
        atomic_save(
            {"epoch": epoch, "state_dict": self.model.state_dict(), "dev": dev},
            folder / f"epoch-{epoch:03d}.pt",
        )
        for old in sorted(folder.glob("epoch-*.pt"))[: -self.cfg.keep_epochs]:
            old.unlink()

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Trains, keeps the best dev epoch, writes ``best.pt``/metrics/plot; returns the ``best.pt`` dict.

        After every epoch ``runs/<name>/checkpoint.pt`` is replaced (atomically) by the run's whole state:
        model, optimizer and LR-schedule state, the batch-order generator and the global torch/numpy/python
        RNG states, history, best metric/weights/epoch, epochs without improvement and train time so far.
        ``resume=True`` continues from it exactly where the last completed epoch ended (the interrupted epoch
        is redone; with the same ``trainer.threads`` the result is bit-identical to an uninterrupted run). It
        refuses (:class:`ConfigError`) a checkpoint whose config or data differ, apart from
        :data:`RESUME_INDIFFERENT` entries; without a checkpoint it starts afresh. ``resume=False`` always
        starts afresh, overwriting an existing checkpoint. A completed run deletes ``checkpoint.pt``, so a
        rerun never silently resumes a finished one.
        """
        torch.set_num_threads(self.cfg.threads)
        generator = seed_everything(self.config.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = self.task.num_train_batches()
        if self.cfg.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, self.cfg.max_steps_per_epoch)
        optimizer, scheduler = self._optimizer(steps_per_epoch * self.cfg.epochs)
        metric = self.task.selection_metric
        data = self.task.data_info()
        progress, best_state = self._start(resume, optimizer, scheduler, generator, data)
        while progress.epoch < self.cfg.epochs and progress.stale < self.cfg.patience:
            progress.epoch += 1
            epoch_start = time.perf_counter()
            record = self._train_epoch(progress.epoch, generator, optimizer, scheduler, steps_per_epoch)
            dev = record["dev"]
            improved = self._better(dev[metric], progress.best)
            if improved:
                progress.best, progress.best_epoch, progress.stale = dev[metric], progress.epoch, 0
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                progress.stale += 1
            log.info(
                "epoch %d: train_loss %.4f grad_norm mean %.3f max %.3f (clipped %.0f%%) dev %s=%.4f%s",
                progress.epoch,
                record["train_loss"],
                record["grad_norm_mean"],
                record["grad_norm_max"],
                100 * record["clipped_share"],
                metric,
                dev[metric],
                " *" if improved else "",
            )
            progress.train_time_s += time.perf_counter() - epoch_start
            self._save_checkpoint(progress, best_state, optimizer, scheduler, generator, data)
            if self.cfg.keep_epochs:
                self._keep_epoch(progress.epoch, dev)
            if progress.stale >= self.cfg.patience:
                log.info("early stop: no dev improvement in %d epochs", progress.stale)
        assert best_state is not None
        return self._finish(progress, best_state, data)

    def _optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """AdamW and its learning-rate schedule (warm-up, then ``trainer.schedule``) over the whole run."""
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, betas=self.cfg.betas
        )
        warmup = int(self.cfg.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.cfg.schedule, warmup, total_steps, self.cfg.min_lr_ratio)
        )
        return optimizer, scheduler

    def _start(
        self, resume: bool, optimizer, scheduler, generator: torch.Generator, data: dict[str, Any]
    ) -> tuple[RunProgress, dict[str, torch.Tensor] | None]:
        """The run's progress and best weights so far: from ``checkpoint.pt`` when resuming, else fresh."""
        progress, best_state = RunProgress(), None
        if resume and self.checkpoint_path.exists():
            progress, best_state = self._load_checkpoint(optimizer, scheduler, generator, data)
            log.info(
                "resumed from %s after epoch %d/%d (best dev %s %s at epoch %d)",
                self.checkpoint_path,
                progress.epoch,
                self.cfg.epochs,
                self.task.selection_metric,
                "-" if progress.best is None else f"{progress.best:.4f}",
                progress.best_epoch,
            )
        elif resume:
            log.info("no %s to resume from: starting afresh", self.checkpoint_path)
        elif self.checkpoint_path.exists():
            log.warning(
                "%s exists (an interrupted run): starting afresh and overwriting it; --resume continues it",
                self.checkpoint_path,
            )
        self.history = progress.history
        if progress.epoch == 0:  # a fresh start: no earlier run's epoch weights to average with this one's
            shutil.rmtree(self.run_dir / EPOCHS_DIR, ignore_errors=True)
        return progress, best_state

    def _train_epoch(
        self, epoch: int, generator: torch.Generator, optimizer, scheduler, steps_per_epoch: int
    ) -> dict[str, Any]:
        """One pass over the training batches, then the dev evaluation; appends and returns the epoch's
        history record (losses, gradient norms before clipping, learning rate, dev metrics, time)."""
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
        return record

    def _finish(
        self, progress: RunProgress, best_state: dict[str, torch.Tensor], data: dict[str, Any]
    ) -> dict[str, Any]:
        """The best epoch's weights evaluated on every split and saved as ``best.pt`` with the run's record;
        the plot is written and ``checkpoint.pt`` removed (the run is complete)."""
        metric = self.task.selection_metric
        self.model.load_state_dict(best_state)
        self.model.eval()
        final = {split: self.task.evaluate(self.model, split) for split in self.task.eval_splits()}
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "task": self.task.name,
            "config": self.config.model_dump(mode="json"),
            "model_args": self.task.model_args(),
            "task_state": self.task.task_state(),
            "state_dict": best_state,
            "selection_metric": metric,
            "best_metric": progress.best,
            "best_epoch": progress.best_epoch,
            "epochs_run": len(self.history),
            "train_time_s": progress.train_time_s,
            "history": self.history,
            "metrics": final,
            "data": data,
            "seed": self.config.seed,
            "machine": machine_description(),
            "command": self.command,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        save_run(checkpoint, self.run_dir)
        plot_history(self.history, metric, self.run_dir / "training.png", title=self.config.name)
        self.checkpoint_path.unlink(missing_ok=True)
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
