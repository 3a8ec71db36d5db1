"""Padding never changes a result: a text scored alone equals the same text inside a padded batch."""

from __future__ import annotations

import pytest
import torch

from training.encoder import CELLS, RNNEncoder, reverse_index
from training.tasks.sentiment.network import SequenceClassifier
from training.tasks.sentiment.pooling import POOLINGS


def padded(seqs: list[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
    return ids, torch.tensor([len(s) for s in seqs])


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_alone_equals_in_padded_batch(cell: str, bidirectional: bool, pooling: str) -> None:
    torch.manual_seed(0)
    encoder = {"vocab_size": 40, "embedding_dim": 8, "hidden_size": 6, "cell": cell,
               "bidirectional": bidirectional, "num_layers": 2}  # fmt: skip
    model = SequenceClassifier(encoder, num_classes=3, pooling=pooling).eval()
    seqs = [torch.randint(4, 40, (n,)) for n in (5, 1, 9, 3)]
    ids, lengths = padded(seqs, width=13)  # extra padding beyond the longest row as well
    with torch.no_grad():
        batch = model(ids, lengths)
        alone = torch.cat([model(s.unsqueeze(0), torch.tensor([len(s)])) for s in seqs])
        # garbage in the padding must not matter either
        noisy = ids.clone()
        noisy[noisy == 0] = 7
        noisy_batch = model(noisy, lengths)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(noisy_batch, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_with_characters_alone_equals_in_padded_batch(bidirectional: bool) -> None:
    torch.manual_seed(0)
    encoder = {"vocab_size": 40, "embedding_dim": 8, "hidden_size": 6, "bidirectional": bidirectional}
    chars = {"num_chars": 20, "char_dim": 4, "filters": 5, "kernel": 3}
    model = SequenceClassifier(encoder, num_classes=2, chars=chars).eval()
    seqs = [torch.randint(4, 40, (n,)) for n in (5, 1, 3)]
    spellings = [[torch.randint(4, 20, (int(k),)) for k in torch.randint(1, 7, (len(s),))] for s in seqs]
    ids, lengths = padded(seqs, width=7)
    chars_ids = torch.zeros(len(seqs), 7, 8, dtype=torch.long)
    for row, words in enumerate(spellings):
        for col, word in enumerate(words):
            chars_ids[row, col, : len(word)] = word
    with torch.no_grad():
        batch = model(ids, lengths, chars_ids)
        alone = torch.cat(
            [
                model(s.unsqueeze(0), torch.tensor([len(s)]), chars_ids[row : row + 1, : len(s), :6])
                for row, s in enumerate(seqs)
            ]
        )
        other = chars_ids.clone()
        other[0, 0, 0] = 4 if other[0, 0, 0] != 4 else 5
        changed = model(ids, lengths, other)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[0], batch[0])  # the characters are read


def test_padding_changes_nothing_without_masking_would_fail() -> None:
    """Guard against a vacuous test: a plain bidirectional nn.LSTM *is* affected by padding."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    x = torch.randn(1, 3, 4)
    alone, _ = lstm(x)
    padded_x = torch.cat([x, torch.zeros(1, 2, 4)], dim=1)
    in_batch, _ = lstm(padded_x)
    assert not torch.allclose(alone[0, 0, 3:], in_batch[0, 0, 3:], atol=1e-4)


def test_reverse_index_reverses_within_length() -> None:
    index = reverse_index(torch.tensor([3, 1, 5]), width=5)
    assert index.tolist() == [[2, 1, 0, 3, 4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]]


def test_final_state_is_last_real_position() -> None:
    torch.manual_seed(0)
    encoder = RNNEncoder(vocab_size=20, embedding_dim=4, hidden_size=3, cell="gru", bidirectional=True).eval()
    ids, lengths = padded([torch.tensor([5, 6, 7]), torch.tensor([8])], width=4)
    out = encoder(ids, lengths)
    torch.testing.assert_close(out.final[0, :3], out.outputs[0, 2, :3])  # forward: last real token
    torch.testing.assert_close(out.final[0, 3:], out.outputs[0, 0, 3:])  # backward: first token
    assert out.mask.tolist() == [[True, True, True, False], [True, False, False, False]]


def test_unknown_cell_and_pooling_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown cell"):
        RNNEncoder(vocab_size=10, cell="transformer")
    with pytest.raises(ValueError, match="unknown pooling"):
        SequenceClassifier({"vocab_size": 10}, num_classes=2, pooling="sum")


def test_ensemble_averages_member_probabilities_and_ignores_padding() -> None:
    torch.manual_seed(0)
    encoder = {"vocab_size": 30, "embedding_dim": 6, "hidden_size": 5, "bidirectional": True}
    model = SequenceClassifier(encoder, num_classes=2, members=3).eval()
    ids, lengths = padded([torch.tensor([4, 5, 6]), torch.tensor([7])], width=5)
    with torch.no_grad():
        probs = torch.softmax(model(ids, lengths), -1)
        members = torch.stack([torch.softmax(x, -1) for x in model.member_logits(ids, lengths)])
        alone = torch.softmax(model(ids[1:, :1], lengths[1:]), -1)
    torch.testing.assert_close(probs, members.mean(0))
    torch.testing.assert_close(probs[1:], alone, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(members[0], members[1])  # members are initialised independently
