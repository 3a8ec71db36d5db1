from __future__ import annotations

import numpy as np
import pytest
import torch

from service.tasks.translation.search import SearchParams, beam_search, greedy_search
from service.text import pad_batch
from training.tasks.translation.export import check_graph_parity, export_graphs, torch_encode, torch_step
from training.tasks.translation.network import Seq2Seq

SOURCES = [[5, 6, 7, 8, 9, 3], [10, 11, 3], [12, 3], [4, 5, 6, 7, 8, 9, 10, 11, 3]]


def tiny(cell: str) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(23, 19, embedding_dim=12, hidden_size=16, cell=cell, decoder_layers=2, dropout=0.1).eval()


def feeds(sources):
    ids, lengths = pad_batch(sources)
    return {"src_ids": ids, "src_lengths": lengths}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padding_does_not_change_decoding(cell):
    model = tiny(cell)
    params = [SearchParams(beam_size=3, max_length=8)] * len(SOURCES)
    batch = beam_search(torch_step(model), *torch_encode(model, feeds(SOURCES)), params)
    for source, hyp in zip(SOURCES, batch, strict=True):
        (alone,) = beam_search(torch_step(model), *torch_encode(model, feeds([source])), params[:1])
        assert alone.tokens == hyp.tokens
        assert alone.score == pytest.approx(hyp.score, abs=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_onnx_graphs_match_pytorch(cell, tmp_path):
    model = tiny(cell)
    graphs = export_graphs(model, tmp_path)
    encoder, step = graphs["encoder"], graphs["step"]
    report = check_graph_parity(model, encoder, step, [feeds(SOURCES), feeds(SOURCES[1:2])], tolerance=1e-4)
    assert report.max_abs_diff < 1e-4
    # the served search over ONNX gives the PyTorch search's translations
    from training.export import ort_session

    enc, stp = ort_session(encoder), ort_session(step)
    names = ["memory", "keys", *model.state_names]
    f = feeds(SOURCES)
    out = dict(zip(names, enc.run(names, f), strict=True))
    state = {n: out[n] for n in model.state_names}
    memory = {"memory": out["memory"], "keys": out["keys"], "src_lengths": f["src_lengths"]}
    outputs = ["log_probs", *(f"{n}_out" for n in model.state_names), "attention"]

    def onnx_step(tokens, st, mem):
        lp, *new, att = stp.run(outputs, {"prev_tokens": tokens, **st, **mem})
        return lp, dict(zip(model.state_names, new, strict=True)), att

    params = [SearchParams(beam_size=1, max_length=6)] * len(SOURCES)
    got = greedy_search(onnx_step, state, memory, params)
    want = greedy_search(torch_step(model), *torch_encode(model, f), params)
    assert [h.tokens for h in got] == [h.tokens for h in want]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
