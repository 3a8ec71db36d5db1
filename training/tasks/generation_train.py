"""Training loop of the character language model: random ``<bos>``-led windows, AdamW, warmup + cosine,
gradient clipping, validation every epoch, resumable checkpoints in ``runs/<name>/``.

An LM over one long text has no natural example list, so this loop samples windows rather than going
through the generic example-based trainer; it reads the same ``trainer`` config section.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from training.tasks.generation_config import GenerationConfig
from training.tasks.generation_data import CharCorpus, stream_segments, training_batch
from training.tasks.generation_model import CharLM

CHECKPOINT, BEST = "checkpoint.pt", "best.pt"


@dataclass
class TrainResult:
    model: CharLM
    corpus: CharCorpus
    metrics: dict[str, float]
    epochs_run: int
    best_epoch: int
    train_time_s: float


def build_model(config: GenerationConfig, vocab_size: int) -> CharLM:
    m = config.model
    return CharLM(vocab_size, m.embed_dim, m.hidden_size, m.num_layers, m.cell, m.dropout)


@torch.no_grad()
def stream_loss(model: CharLM, corpus: CharCorpus, segments: int, chunk: int = 512) -> float:
    """Mean nats per character over the held-out text, each segment read from ``<bos>`` with its state
    carried through (how a served generation conditions on its whole history)."""
    model.eval()
    inputs, targets = stream_segments(corpus.val, min(segments, len(corpus.val)), corpus.codec.vocab.bos_id)
    state, total = None, 0.0
    for start in range(0, inputs.shape[1], chunk):
        logits, state = model(inputs[:, start : start + chunk], state)
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets[:, start : start + chunk].reshape(-1),
            reduction="sum",
        ).item()
    return total / targets.numel()


@torch.no_grad()
def window_loss(model: CharLM, corpus: CharCorpus, seq_len: int, batch_size: int = 64) -> float:
    """Mean nats per character over non-overlapping held-out windows, each read from a zero state (the
    training objective; nanoGPT-style context of at most ``seq_len`` characters)."""
    model.eval()
    usable = (len(corpus.val) // seq_len) * seq_len
    targets_all = torch.from_numpy(corpus.val[:usable].reshape(-1, seq_len))
    bos = torch.full((targets_all.shape[0], 1), corpus.codec.vocab.bos_id, dtype=torch.int64)
    inputs_all = torch.cat([bos, targets_all[:, :-1]], dim=1)
    total = 0.0
    for start in range(0, len(inputs_all), batch_size):
        logits, _ = model(inputs_all[start : start + batch_size])
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets_all[start : start + batch_size].reshape(-1),
            reduction="sum",
        ).item()
    return total / targets_all.numel()


def _lr_at(step: int, total: int, config: GenerationConfig) -> float:
    base, warmup = config.trainer.lr, max(1, int(config.trainer.warmup_ratio * total))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = config.lm.min_lr_ratio
    if config.trainer.schedule == "constant":
        return base
    if config.trainer.schedule == "linear":
        return base * (1 - (1 - floor) * progress)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def steps_per_epoch(config: GenerationConfig, train_chars: int) -> int:
    steps = max(1, train_chars // (config.trainer.batch_size * config.lm.seq_len))
    cap = config.trainer.max_steps_per_epoch
    return min(steps, cap) if cap else steps


def train(
    config: GenerationConfig, corpus: CharCorpus, run_dir: Path, resume: bool = True, log=print
) -> TrainResult:
    """Trains (or resumes) and returns the best model by validation stream loss."""
    torch.set_num_threads(config.trainer.threads)
    torch.manual_seed(config.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(config, len(corpus.codec.vocab))
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.trainer.lr,
        betas=config.trainer.betas,
        weight_decay=config.trainer.weight_decay,
    )
    generator = np.random.default_rng(config.seed)
    per_epoch = steps_per_epoch(config, len(corpus.train))
    total_steps = per_epoch * config.trainer.epochs
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "train_time_s": 0.0, "history": []}

    checkpoint_path = run_dir / CHECKPOINT
    if resume and checkpoint_path.exists():
        saved = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.bit_generator.state = saved["generator"]
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        log(f"resumed from {checkpoint_path} after epoch {state['epoch']}")

    bad_epochs = state["epoch"] - state["best_epoch"]

    while state["epoch"] < config.trainer.epochs and bad_epochs < config.trainer.patience:
        epoch = state["epoch"] + 1
        model.train()
        started, running = time.perf_counter(), 0.0
        for i in range(per_epoch):
            step = state["epoch"] * per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total_steps, config)
            inputs, targets = training_batch(
                corpus.train,
                config.trainer.batch_size,
                config.lm.seq_len,
                generator,
                corpus.codec.vocab.bos_id,
            )
            logits, _ = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.trainer.clip_norm)
            optimizer.step()
            running += loss.item()
            if config.trainer.progress and (i + 1) % 20 == 0:
                rate = (i + 1) * inputs.numel() / (time.perf_counter() - started)
                log(
                    f"epoch {epoch} step {i + 1}/{per_epoch} loss {running / (i + 1):.4f} "
                    f"lr {optimizer.param_groups[0]['lr']:.2e} {rate:.0f} chars/s"
                )
        state["train_time_s"] += time.perf_counter() - started
        val = stream_loss(model, corpus, config.lm.eval_segments)
        record = {"epoch": epoch, "train_loss": running / per_epoch, "val_loss": val}
        state["history"].append(record)
        state["epoch"] = epoch
        if val < state["best_loss"]:
            state["best_loss"], state["best_epoch"], bad_epochs = val, epoch, 0
            torch.save(model.state_dict(), run_dir / BEST)
        else:
            bad_epochs += 1
        log(
            f"epoch {epoch} train_loss {record['train_loss']:.4f} val_loss {val:.4f} "
            f"best {state['best_loss']:.4f}@{state['best_epoch']} train_time {state['train_time_s']:.0f}s"
        )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "state": state,
            },
            checkpoint_path,
        )
        (run_dir / "history.json").write_text(json.dumps(state, indent=2))

    model.load_state_dict(torch.load(run_dir / BEST))
    metrics = {
        "val_loss": stream_loss(model, corpus, config.lm.eval_segments),
        "val_window_loss": window_loss(model, corpus, config.lm.seq_len),
    }
    return TrainResult(model, corpus, metrics, state["epoch"], state["best_epoch"], state["train_time_s"])


def main(argv: list[str] | None = None) -> None:
    """``python -m training.tasks.generation_train CONFIG [--key=value ...]``: trains, resuming from
    ``runs/<name>/checkpoint.pt``, then writes ``runs/<name>/model.pt`` in the format of
    ``python -m training export --checkpoint`` (the generic trainer's self-describing checkpoint)."""
    import sys

    from training.config import build_config, load_config_data
    from training.machine import machine_description
    from training.settings import get_training_settings
    from training.tasks.generation import GenerationTask

    args = sys.argv[1:] if argv is None else argv
    config = build_config(GenerationConfig, load_config_data(Path(args[0])), args[1:])
    settings = get_training_settings()
    task = GenerationTask(config, settings)
    task.load_data()
    run_dir = settings.runs_dir / config.name
    result = train(config, task.corpus, run_dir, log=lambda m: print(m, flush=True))
    history = json.loads((run_dir / "history.json").read_text())
    checkpoint = {
        "task": task.name,
        "config": config.model_dump(mode="json"),
        "model_args": task.model_args(),
        "task_state": task.task_state(),
        "state_dict": result.model.state_dict(),
        "selection_metric": task.selection_metric,
        "best_metric": result.metrics["val_loss"],
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_time_s": result.train_time_s,
        "history": history["history"],
        "metrics": {
            "dev": {"loss": result.metrics["val_loss"], "window_loss": result.metrics["val_window_loss"]}
        },
        "data": task.data_info(),
        "seed": config.seed,
        "machine": machine_description() + f", torch threads {config.trainer.threads}",
        "command": " ".join(["python -m training.tasks.generation_train", *args]),
        "parameters": sum(p.numel() for p in result.model.parameters()),
    }
    torch.save(checkpoint, run_dir / "model.pt")
    print(json.dumps({"metrics": checkpoint["metrics"], "train_time_s": result.train_time_s}), flush=True)


if __name__ == "__main__":
    main()
