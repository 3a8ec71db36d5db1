"""The NER network: word embeddings + char-CNN features -> padding-invariant (Bi)RNN -> emissions, + CRF.

Only :class:`EmissionTagger` is exported to ONNX (inputs ``word_ids [B, T]``, ``char_ids [B, T, C]``,
``lengths [B]``; output ``emissions [B, T, K]``). The :class:`CRF` is trained here and its scores are
decoded by the service in numpy (``service.tasks.ner``), with the same BIO constraints applied in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from service.tasks.ner.codec import FORBIDDEN, CrfScores, transition_masks
from service.tasks.ner.contract import CHAR_IDS, LENGTHS, WORD_IDS
from training.config import DistillConfig
from training.distillation import mixed_loss
from training.encoder import CELLS, CharCNN, reverse_index
from training.task import Batch


def _reverse_within_length(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class EmissionTagger(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        num_chars: int,
        num_tags: int,
        word_dim: int = 100,
        char_dim: int = 30,
        char_filters: int = 50,
        char_kernel: int = 3,
        hidden_size: int = 200,
        cell: str = "lstm",
        bidirectional: bool = True,
        num_layers: int = 1,
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        padding_idx: int = 0,
        unk_idx: int = 1,
    ):
        super().__init__()
        self.padding_idx, self.unk_idx, self.word_dropout = padding_idx, unk_idx, word_dropout
        self.bidirectional = bidirectional
        self.words = nn.Embedding(vocab_size, word_dim, padding_idx=padding_idx)
        self.chars = CharCNN(num_chars, char_dim, char_filters, char_kernel, padding_idx)
        self.dropout = nn.Dropout(dropout)
        rnn = CELLS[cell]
        directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        in_size = word_dim + self.chars.output_size
        for _ in range(num_layers):
            self.layers.append(
                nn.ModuleList(rnn(in_size, hidden_size, batch_first=True) for _ in range(directions))
            )
            in_size = hidden_size * directions
        self.head = nn.Linear(in_size, num_tags)

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp(min=1)
        width = word_ids.size(1)
        mask = torch.arange(width, device=word_ids.device).unsqueeze(0) < lengths.unsqueeze(1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(word_ids.shape, device=word_ids.device) < self.word_dropout
            word_ids = word_ids.masked_fill(drop & mask, self.unk_idx)
        x = torch.cat([self.words(word_ids), self.chars(char_ids)], dim=-1)
        rev = reverse_index(lengths, width) if self.bidirectional else None
        for directions in self.layers:
            x = self.dropout(x)
            outs = [directions[0](x)[0]]
            if rev is not None:
                backward, _ = directions[1](_reverse_within_length(x, rev))
                outs.append(_reverse_within_length(backward, rev))
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return self.head(self.dropout(x))


class CRF(nn.Module):
    """Linear-chain CRF with BIO-forbidden moves fixed at ``FORBIDDEN`` (as in the service's decoder)."""

    def __init__(self, labels: Sequence[str]):
        super().__init__()
        k = len(labels)
        self.transitions = nn.Parameter(torch.zeros(k, k))
        self.start = nn.Parameter(torch.zeros(k))
        self.end = nn.Parameter(torch.zeros(k))
        allowed, allowed_start = transition_masks(labels)
        self.register_buffer("allowed", torch.from_numpy(allowed), persistent=False)
        self.register_buffer("allowed_start", torch.from_numpy(allowed_start), persistent=False)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        forbidden = torch.tensor(FORBIDDEN, dtype=self.transitions.dtype)
        return (
            torch.where(self.allowed, self.transitions, forbidden),
            torch.where(self.allowed_start, self.start, forbidden),
            self.end,
        )

    def neg_log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Mean over the batch of ``log Z - score(gold path)``; ``emissions [B, T, K]``, ``tags [B, T]``."""
        transitions, start, end = self.scores()
        batch, width, _ = emissions.shape
        mask = torch.arange(width, device=emissions.device).unsqueeze(0) < lengths.unsqueeze(1)
        rows = torch.arange(batch, device=emissions.device)
        gold = start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        alpha = start + emissions[:, 0]
        for t in range(1, width):
            step = mask[:, t]
            gold = gold + torch.where(
                step, transitions[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]], 0.0
            )
            nxt = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(step.unsqueeze(1), nxt, alpha)
        last = tags[rows, lengths - 1]
        gold = gold + end[last]
        log_z = torch.logsumexp(alpha + end, dim=1)
        return (log_z - gold).mean()


class _Member(nn.Module):
    def __init__(self, labels: list[str], crf: bool, tagger: dict[str, Any]):
        super().__init__()
        self.tagger = EmissionTagger(num_tags=len(labels), **tagger)
        self.crf = CRF(labels) if crf else None

    def loss(self, batch: Batch, distill: DistillConfig | None = None) -> torch.Tensor:
        """The gold loss (CRF likelihood or per-token cross-entropy), mixed with the soft loss on the
        emission scores when the batch carries a teacher's per-token distributions (``soft``)."""
        emissions = self.tagger(batch[WORD_IDS], batch[CHAR_IDS], batch[LENGTHS])
        mask = torch.arange(emissions.size(1)).unsqueeze(0) < batch[LENGTHS].unsqueeze(1)
        if self.crf is not None:
            gold = self.crf.neg_log_likelihood(emissions, batch["tags"], batch[LENGTHS])
        else:
            gold = nn.functional.cross_entropy(emissions[mask], batch["tags"][mask])
        if distill is None or "soft" not in batch:
            return gold
        return mixed_loss(gold, emissions[mask], batch["soft"][mask], distill)


class NerNetwork(nn.Module):
    """The tagger plus (optionally) its CRF; ``forward`` gives emissions, as the exported graph does.

    ``members > 1`` trains independent taggers (each with its own CRF and loss) side by side. The ensemble
    decodes with the members' *mean* emission and transition scores: a path's mean score is the log of the
    geometric mean of the members' (unnormalised) path probabilities, so Viterbi over the averaged scores
    is the product-of-experts decision, and the graph and ``transitions.json`` keep the single-model form
    the service already decodes. Without a CRF the members' log-softmax outputs are averaged.
    """

    def __init__(self, labels: list[str], crf: bool, tagger: dict[str, Any], members: int = 1):
        super().__init__()
        if members < 1:
            raise ValueError("members must be >= 1")
        self.has_crf = crf
        self.members = nn.ModuleList(_Member(labels, crf, tagger) for _ in range(members))

    def loss(self, batch: Batch, distill: DistillConfig | None = None) -> torch.Tensor:
        """Sum of the members' own losses (each member learns as if trained alone)."""
        return torch.stack([member.loss(batch, distill) for member in self.members]).sum()

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if len(self.members) == 1:
            return self.members[0].tagger(word_ids, char_ids, lengths)
        scores = [member.tagger(word_ids, char_ids, lengths) for member in self.members]
        if not self.has_crf:
            scores = [torch.log_softmax(s, dim=-1) for s in scores]
        return torch.stack(scores).mean(dim=0)

    def crf_scores(self) -> CrfScores | None:
        if not self.has_crf:
            return None
        crfs = [member.crf for member in self.members]
        return CrfScores(
            *(
                torch.stack([getattr(c, name) for c in crfs]).mean(dim=0).detach().double().numpy()
                for name in ("transitions", "start", "end")
            )
        )
