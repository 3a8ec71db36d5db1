"""Sequence classification (many-to-one): encoder, pooling, and a linear head over class logits.

``members > 1`` makes the classifier an ensemble of independently initialised encoder/pooling/head
members trained side by side (each with its own loss, see :meth:`SequenceClassifier.member_logits`);
its ``forward`` returns the log of the members' mean probability, so softmax of the output is the
ensemble's averaged prediction and the exported graph stays one ``(input_ids, lengths) -> probabilities``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.encoder import CharCNN, RNNEncoder
from training.tasks.sentiment.pooling import Pooling


class _Member(nn.Module):
    def __init__(
        self,
        encoder: dict[str, Any],
        num_classes: int,
        pooling: str,
        head_dropout: float,
        chars: dict[str, Any] | None,
    ):
        super().__init__()
        self.chars = CharCNN(**chars) if chars else None
        self.encoder = RNNEncoder(**encoder, extra_dim=self.chars.output_size if chars else 0)
        self.pooling = Pooling(pooling, self.encoder.output_size)
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(self.pooling.output_size, num_classes))

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        extra = self.chars(char_ids) if self.chars is not None else None
        return self.head(self.pooling(self.encoder(input_ids, lengths, extra)))


class SequenceClassifier(nn.Module):
    def __init__(
        self,
        encoder: dict[str, Any],
        num_classes: int,
        pooling: str = "max",
        head_dropout: float = 0.0,
        members: int = 1,
        chars: dict[str, Any] | None = None,
    ):
        """``encoder`` holds :class:`RNNEncoder` keyword arguments, and ``chars`` :class:`CharCNN`'s for a
        model that also reads each token's characters (its features join the token's embedding), so the
        whole model is rebuilt from plain data stored in a checkpoint."""
        super().__init__()
        if members < 1:
            raise ValueError("members must be >= 1")
        self.members = nn.ModuleList(
            _Member(encoder, num_classes, pooling, head_dropout, chars) for _ in range(members)
        )

    def member_logits(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Each member's own logits (training gives every member its own loss)."""
        return [member(input_ids, lengths, char_ids) for member in self.members]

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(self.members) == 1:
            return self.members[0](input_ids, lengths, char_ids)
        logits = torch.stack(self.member_logits(input_ids, lengths, char_ids))
        mean_log_prob = torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0)
        return mean_log_prob - torch.log(torch.tensor(float(len(self.members))))


class ProbabilityModel(nn.Module):
    """Export wrapper: the served graph returns softmax probabilities."""

    def __init__(self, classifier: SequenceClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.softmax(self.classifier(input_ids, lengths, char_ids), dim=-1)
