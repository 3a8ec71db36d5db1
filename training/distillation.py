"""Knowledge distillation: a student learns from a teacher's output distributions as well as the gold labels.

The teacher is an exported model, ``models/<name>`` (an ensemble, usually): its shipped graph runs once
through ONNX Runtime with its own codec (the service's) on the student's training examples, before
training starts, so the student's task holds one soft target per training example (sentiment: class
probabilities ``[C]``; NER: a distribution over tags per token ``[T, K]``). The loss is

    (1 - alpha) * gold loss  +  alpha * T² * KL(teacher_T || student_T)

where ``x_T`` is a distribution sharpened or softened by the temperature ``T`` (Hinton et al., 2015). The
student's gold loss stays the task's own (cross-entropy, or the CRF likelihood for a CRF tagger, which
keeps its own transition scores). ``python -m training distill`` is ``train`` with a ``[distill]``
section; the manifest's training record names the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import torch

from service.manifest import ModelManifest, version_dirs
from training.config import ConfigError, DistillConfig
from training.export import ort_session
from training.settings import cwd_or_repo_path


@dataclass(frozen=True)
class Teacher:
    manifest: ModelManifest
    version_dir: Path
    session: ort.InferenceSession


def load_teacher(path: str | Path, task: str) -> Teacher:
    """The teacher's manifest, newest version folder and its (single) graph's session; a relative path is
    taken from the working directory, else from the repository."""
    model_dir = cwd_or_repo_path(path)
    try:
        manifest = ModelManifest.load(model_dir)
    except OSError as exc:
        raise ConfigError(f"distill.teacher {path}: not an exported model folder ({exc})") from None
    if manifest.task != task:
        raise ConfigError(f"distill.teacher {path} is a {manifest.task!r} model, not {task!r}")
    if len(manifest.graphs) != 1:
        raise ConfigError(f"distill.teacher {path}: a teacher with one graph is needed")
    _, version_dir = version_dirs(model_dir)[-1]
    (graph,) = manifest.graphs.values()
    return Teacher(
        manifest, version_dir, ort_session(version_dir / graph.file, threads=torch.get_num_threads())
    )


def label_order(teacher_labels: list[str], student_labels: list[str]) -> list[int]:
    """Columns of the teacher's outputs in the student's label order (labels are matched by name)."""
    missing = sorted(set(student_labels) - set(teacher_labels))
    if missing or len(teacher_labels) != len(student_labels):
        raise ConfigError(f"teacher labels {teacher_labels} do not match the student's {student_labels}")
    return [teacher_labels.index(label) for label in student_labels]


def soft_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(teacher_T ‖ student_T)``, averaged over rows (``[N, C]`` each; teacher rows sum to 1)."""
    log_teacher = torch.log_softmax(torch.log(teacher_probs.clamp_min(1e-12)) / temperature, dim=-1)
    log_student = torch.log_softmax(student_logits / temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
    return temperature * temperature * kl.mean()


def mixed_loss(
    gold: torch.Tensor, student_logits: torch.Tensor, teacher_probs: torch.Tensor, cfg: DistillConfig
) -> torch.Tensor:
    return (1 - cfg.alpha) * gold + cfg.alpha * soft_loss(student_logits, teacher_probs, cfg.temperature)
