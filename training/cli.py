"""``python -m training train|distill|evaluate|export|report|share-weights|quantize|ensemble|average``.

    python -m training train --config training/configs/sentiment_bilstm.toml [--export] [--resume] [--seed=3]
    python -m training distill --teacher models/sentiment-lstm-x5 --config CONFIG
    python -m training evaluate --checkpoint runs/sentiment-bilstm/best.pt [--split test]
    python -m training export --checkpoint runs/sentiment-bilstm/best.pt [--models-dir DIR] [--export.KEY=V]
    python -m training report [--models-dir models] [--output docs/models.md]
    python -m training share-weights models/generation-lstm [--weights-file weights.bin]
    python -m training quantize --model models/generation-lstm [--export.KEY=V]
    python -m training ensemble --name sentiment-lstm-x5 runs/sentiment-lstm-s1{3,4,5,6,7}/best.pt [--default]
    python -m training average runs/translation-gru --last 5 --name translation-gru-avg5 [--default]

Overrides after the named options use dotted config paths and are validated against the task's schema.
``--resume`` continues an interrupted run from ``runs/<name>/checkpoint.pt`` (see ``Trainer.fit``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from training.config import ConfigError, build_config, load_config_data, require_export_overrides
from training.settings import REPO_ROOT, TrainingSettings, get_training_settings

log = logging.getLogger("training")


def load_experiment(config_path: Path, overrides: list[str]):
    from training.registry import get_task

    data = load_config_data(config_path)
    if "task" not in data:
        raise ConfigError(f"{config_path}: missing top-level key 'task'")
    task_cls = get_task(str(data["task"]))
    return task_cls, build_config(task_cls.config_class, data, overrides)


def train(
    config_path: Path,
    overrides: list[str],
    settings: TrainingSettings,
    export: bool,
    resume: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    from training.trainer import Trainer

    task_cls, config = load_experiment(config_path, overrides)
    task = task_cls(config, settings)
    task.load_data()
    trainer = Trainer.for_task(task, settings.runs_dir / config.name)
    if command:
        trainer.command = command
    model = trainer.model
    log.info("%s: %d parameters", config.name, sum(p.numel() for p in model.parameters()))
    checkpoint = trainer.fit(resume=resume)
    log.info(
        "best dev %s %.4f at epoch %d; final %s",
        task.selection_metric,
        checkpoint["best_metric"],
        checkpoint["best_epoch"],
        json.dumps(checkpoint["metrics"]),
    )
    if export:
        path = task.export(model, settings.models_dir, checkpoint)
        log.info("exported to %s", path)
    return checkpoint


def load_checkpoint(path: Path, settings: TrainingSettings, export_overrides: list[str] = ()):
    """Task, model (eval mode) and checkpoint dict; ``--export.*`` overrides change how it is exported."""
    from training.checkpoints import load_run
    from training.registry import get_task

    checkpoint = load_run(path)
    task_cls = get_task(checkpoint["task"])
    if export_overrides:
        require_export_overrides(export_overrides, "export")
        config = build_config(task_cls.config_class, checkpoint["config"], export_overrides)
        checkpoint["config"] = config.model_dump(mode="json")
    task = task_cls.from_checkpoint(checkpoint, settings)
    model = task.build_model(checkpoint["model_args"])
    model.load_state_dict(checkpoint["state_dict"])
    return task, model.eval(), checkpoint


def share_weights(path: Path, weights_file: str) -> int:
    """Rewrites a repository model's graphs to share one weights file; 1 (originals kept) if it cannot."""
    from training.weight_sharing import WeightSharingError, share_model_weights

    try:
        reports = share_model_weights(path, weights_file)
    except WeightSharingError as exc:
        print(f"share-weights: {exc}", file=sys.stderr)
        return 1
    print(json.dumps([r.summary() for r in reports], indent=2))
    return 0


def quantize_exported(model_dir: Path, settings: TrainingSettings, overrides: list[str]) -> int:
    """fp32-or-int8 for a model already in the repository, by its task's ``quantize_exported`` hook; 1 if
    the task has none or refuses the model (already int8, unreadable data)."""
    from service.manifest import ModelManifest
    from training.registry import get_task

    try:
        task_cls = get_task(ModelManifest.load(model_dir).task)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"quantize: {model_dir}: {exc}", file=sys.stderr)
        return 1
    hook = getattr(task_cls, "quantize_exported", None)
    if hook is None:
        print(
            f"quantize: the {task_cls.name!r} task has no post-hoc quantization (quantize_exported); "
            "re-export its checkpoint with --export.quantize=auto",
            file=sys.stderr,
        )
        return 1
    try:
        report = hook(model_dir, settings, overrides)
    except (ValueError, FileNotFoundError) as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"quantize: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.model_dump(mode="json"), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job (``python -m training <command> --help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one experiment config")
    p_train.add_argument("--config", type=Path, required=True)
    p_train.add_argument("--export", action="store_true", help="export the best checkpoint afterwards")
    p_train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from runs/<name>/checkpoint.pt (same config; afresh without one)",
    )
    p_distill = sub.add_parser(
        "distill",
        help="train one experiment config as the student of an exported teacher (training.distillation)",
    )
    p_distill.add_argument("--teacher", required=True, help="the teacher: models/<name> (an exported model)")
    p_distill.add_argument("--config", type=Path, required=True)
    p_distill.add_argument("--export", action="store_true", help="export the best checkpoint afterwards")
    p_distill.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p_eval = sub.add_parser("evaluate", help="evaluate a checkpoint on a split")
    p_eval.add_argument("--checkpoint", type=Path, required=True)
    p_eval.add_argument("--split", default="dev")
    p_export = sub.add_parser("export", help="export a checkpoint into the model repository")
    p_export.add_argument("--checkpoint", type=Path, required=True)
    p_export.add_argument("--models-dir", type=Path, default=None)
    p_report = sub.add_parser("report", help="write docs/models.md from the model repository")
    p_report.add_argument("--models-dir", type=Path, default=None)
    p_report.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "models.md")
    p_share = sub.add_parser(
        "share-weights",
        help="store a model's weights once in a shared file (checked lossless; updates config.json)",
    )
    p_share.add_argument("path", type=Path, help="models/<name> (every version) or models/<name>/<N>")
    p_share.add_argument("--weights-file", default="weights.bin")
    p_quantize = sub.add_parser(
        "quantize",
        help="fp32-or-int8 choice (export.quantize rule) for a model exported in fp32; rewrites its graphs",
    )
    p_quantize.add_argument("--model", type=Path, required=True, help="models/<name> (its newest version)")
    p_ensemble = sub.add_parser(
        "ensemble", help="one model from separately trained runs (training.ensemble); runs/<name>/best.pt"
    )
    p_ensemble.add_argument("checkpoints", type=Path, nargs="+", help="best.pt of each run (same config)")
    p_ensemble.add_argument("--name", required=True, help="the ensemble's run and model name")
    p_average = sub.add_parser(
        "average",
        help="one model from the mean weights of a run's last epochs (training.averaging; "
        "needs trainer.keep_epochs)",
    )
    p_average.add_argument("run", type=Path, help="runs/<name> of a finished run")
    p_average.add_argument("--last", type=int, default=5, help="how many of its last epochs (default 5)")
    p_average.add_argument("--name", required=True, help="the averaged model's run and model name")
    for p in (p_ensemble, p_average):
        p.add_argument(
            "--default",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="mark the exported model as its task's default (or not); default: as the run's config",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if rest and args.command not in ("train", "distill", "export", "quantize"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    command = " ".join(["python -m training", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args, rest, get_training_settings(), command)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, rest: list[str], settings: TrainingSettings, command: str) -> int:
    """Carries out one parsed command; ``rest`` holds its ``--section.key=value`` config overrides."""
    if args.command == "train":
        train(args.config, rest, settings, args.export, args.resume, command)
    elif args.command == "distill":
        overrides = [*rest, f"--distill.teacher={args.teacher}"]
        train(args.config, overrides, settings, args.export, args.resume, command)
    elif args.command == "evaluate":
        task, model, _ = load_checkpoint(args.checkpoint, settings)
        task.load_data()
        print(json.dumps(task.evaluate(model, args.split), indent=2))
    elif args.command == "export":
        task, model, checkpoint = load_checkpoint(args.checkpoint, settings, rest)
        print(task.export(model, args.models_dir or settings.models_dir, checkpoint))
    elif args.command == "report":
        from training.report import write_report

        print(write_report(args.models_dir or settings.models_dir, args.output))
    elif args.command == "share-weights":
        return share_weights(args.path, args.weights_file)
    elif args.command == "quantize":
        return quantize_exported(args.model, settings, rest)
    elif args.command == "ensemble":
        from training.ensemble import merge_checkpoints

        checkpoint = merge_checkpoints(args.checkpoints, args.name, settings, args.default, command)
        print(json.dumps(checkpoint["metrics"], indent=2))
    elif args.command == "average":
        from training.averaging import average_run

        checkpoint = average_run(args.run, args.last, args.name, settings, args.default, command)
        print(json.dumps(checkpoint["metrics"], indent=2))
    return 0
