"""numpy stand-ins for the decoder-step graph: a random attention decoder and a hand-built trap."""

from __future__ import annotations

import numpy as np

from service.tasks.translation.search import Arrays


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class RandomAttentionDecoder:
    """h' = tanh(A h + E[token] + context); attention over the first ``src_lengths`` memory rows."""

    def __init__(self, vocab: int = 12, hidden: int = 8, seed: int = 0, eos_bias: float = 0.0):
        rng = np.random.default_rng(seed)
        self.a = rng.normal(0, 0.6, (hidden, hidden))
        self.e = rng.normal(0, 1.0, (vocab, hidden))
        self.w = rng.normal(0, 1.5, (hidden, vocab))
        self.w[:, :3] = -50.0  # never pad / unk / bos
        self.bias = np.zeros(vocab)
        self.bias[3] = eos_bias
        self.hidden = hidden

    def sources(self, lengths: list[int], seed: int = 1) -> tuple[Arrays, Arrays]:
        """(state, memory) of a batch of sources, padded with garbage beyond each length."""
        rng = np.random.default_rng(seed)
        width = max(lengths)
        memory = rng.normal(0, 1, (len(lengths), width, self.hidden))
        for b, n in enumerate(lengths):
            memory[b, n:] = 1e3  # padding must not matter
        state = {"hidden": np.tanh(memory[:, 0] * 0.5)}
        return state, {"memory": memory, "src_lengths": np.asarray(lengths, dtype=np.int64)}

    def __call__(self, tokens: np.ndarray, state: Arrays, memory: Arrays):
        h = state["hidden"]
        scores = np.einsum("nsh,nh->ns", memory["memory"], h)
        mask = np.arange(scores.shape[1])[None, :] < memory["src_lengths"][:, None]
        scores = np.where(mask, scores, -np.inf)
        attention = np.exp(scores - scores.max(axis=1, keepdims=True))
        attention /= attention.sum(axis=1, keepdims=True)
        context = np.einsum("ns,nsh->nh", attention, np.where(mask[..., None], memory["memory"], 0.0))
        h = np.tanh(h @ self.a + self.e[tokens] + context)
        return log_softmax(h @ self.w + self.bias), {"hidden": h}, attention


class TrapDecoder:
    """Greedy takes A (0.6) and then never gets a likely end; beam search finds B <eos> (0.4 * 0.99).

    Tokens: 3 = <eos>, 4 = A, 5 = B. The state is the previous token.
    """

    def __call__(self, tokens: np.ndarray, state: Arrays, memory: Arrays):
        probs = np.full((tokens.size, 6), 1e-9)
        for row, token in enumerate(tokens.tolist()):
            if token == 2:
                probs[row, 4], probs[row, 5] = 0.6, 0.4
            elif token == 4:
                probs[row, 3], probs[row, 4], probs[row, 5] = 0.3, 0.36, 0.34
            else:
                probs[row, 3], probs[row, 4] = 0.99, 0.01
        attention = np.ones((tokens.size, memory["memory"].shape[1]))
        return np.log(probs), {"last": tokens[:, None].astype(np.float64)}, attention

    @staticmethod
    def sources(n: int) -> tuple[Arrays, Arrays]:
        return {"last": np.zeros((n, 1))}, {"memory": np.zeros((n, 1, 1))}
