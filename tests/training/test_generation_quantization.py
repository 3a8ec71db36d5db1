"""Generation export's fp32-or-int8 choice (shared weights, served int8) and the post-hoc
``python -m training quantize --model`` for models exported in fp32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from service.manifest import ModelManifest
from tests.service.tasks.generation.tiny_model import TEXT, generation_config
from training.cli import main
from training.export import ort_session
from training.settings import TrainingSettings
from training.tasks.generation.export import external_tensors, is_int8
from training.tasks.generation.task import GRAPH_FILES, GenerationTask, QuantizeExportedError
from training.trainer import Trainer
from training.weight_sharing import WEIGHTS_FILE, graph_bytes

NAME = "generation-tiny-q"
SHIPPED = (*GRAPH_FILES.values(), WEIGHTS_FILE, "vocab.json")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One tiny LSTM, exported with ``quantize="always"`` (``int8/``) and ``"never"`` (``fp32/``)."""
    work = tmp_path_factory.mktemp("generation-quantization")
    data = work / "data" / "tiny.txt"
    data.parent.mkdir()
    data.write_text(TEXT, encoding="utf-8")
    settings = TrainingSettings(data_dir=work / "data", runs_dir=work / "runs", models_dir=work / "int8")
    config = generation_config(data, name=NAME, epochs=5)
    task = GenerationTask(config, settings)
    task.load_data()
    model = task.build_model()
    checkpoint = Trainer(task, model, config, settings.runs_dir / NAME).fit()
    for precision, quantize in (("int8", "always"), ("fp32", "never")):
        config.export.quantize = quantize
        fresh = task.build_model(checkpoint["model_args"])
        fresh.load_state_dict(checkpoint["state_dict"])
        task.export(fresh.eval(), work / precision, checkpoint)
    return SimpleNamespace(work=work, settings=settings, codec=task.codec)


def version(root: Path) -> Path:
    return root / NAME / "1"


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def test_always_ships_int8_weights_dequantized_into_the_recurrent_ops(exports):
    manifest = ModelManifest.load(exports.work / "int8" / NAME)
    assert manifest.precision == "int8"
    report = manifest.quantization
    assert report is not None and report.max_abs_diff <= report.tolerance
    assert set(report.metrics["fp32"]) == set(report.metrics["int8"]) == {"dev_loss"}
    dev = manifest.metrics["dev"]
    assert dev["loss"] == report.metrics["int8"]["dev_loss"] != report.metrics["fp32"]["dev_loss"]
    assert {"loss_pytorch", "window_loss_pytorch", "window_loss"} <= set(dev)
    for file in GRAPH_FILES.values():
        graph = onnx.load(str(version(exports.work / "int8") / file), load_external_data=False).graph
        int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
        made_by = producers(graph)
        lstm = [node for node in graph.node if node.op_type == "LSTM"]
        assert len(lstm) == 2  # one per layer
        for node in lstm:
            for weight in node.input[1:3]:  # W and R
                dequantize = made_by[weight]
                assert dequantize.op_type == "DequantizeLinear" and dequantize.input[0] in int8
        assert is_int8(version(exports.work / "int8") / file)


def test_fp32_export_records_no_choice_and_keeps_fp32_graphs(exports):
    manifest = ModelManifest.load(exports.work / "fp32" / NAME)
    assert manifest.precision == "fp32" and manifest.quantization is None
    assert not any(is_int8(version(exports.work / "fp32") / f) for f in GRAPH_FILES.values())
    int8 = ModelManifest.load(exports.work / "int8" / NAME)
    assert manifest.metrics["dev"]["loss"] == int8.quantization.metrics["fp32"]["dev_loss"]
    assert int8.quantization.fp32_size_bytes == manifest.size_bytes
    assert manifest.size_bytes > 3 * int8.size_bytes


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_prefill_and_step_store_their_weights_once(exports, precision):
    version_dir = version(exports.work / precision)
    assert sorted(p.name for p in version_dir.iterdir()) == sorted([*SHIPPED, "metrics.json"])
    prefill, step = (external_tensors(version_dir / f) for f in GRAPH_FILES.values())
    assert {at[0] for at in (*prefill.values(), *step.values())} == {WEIGHTS_FILE}
    # Every weight of the step graph lies at an offset the prefill graph reads too (no second copy), and
    # the weights file holds nothing else but alignment padding.
    assert set(step.values()) <= set(prefill.values())
    stored = sum(length for _, _, length in set(prefill.values()))
    assert stored <= (version_dir / WEIGHTS_FILE).stat().st_size < stored + 64 * len(set(prefill.values()))
    manifest = ModelManifest.load(exports.work / precision / NAME)
    assert manifest.size_bytes == graph_bytes(version_dir, list(GRAPH_FILES.values()), WEIGHTS_FILE)


def ort_greedy(version_dir: Path, codec, prompt: str, steps: int) -> str:
    """Greedy decoding through the shipped graphs as the service loads them (special tokens excluded)."""
    prefill, step = (ort_session(version_dir / f) for f in GRAPH_FILES.values())
    ids = np.array([codec.encode(prompt)], dtype=np.int64)
    logits, *state = prefill.run(None, {"input_ids": ids, "lengths": np.array([ids.shape[1]], np.int64)})
    names = [i.name for i in step.get_inputs() if i.name != "input_ids"]
    out = []
    for _ in range(steps):
        logits[:, codec.special_ids] = -np.inf
        token = logits.argmax(-1).astype(np.int64)
        out.append(int(token[0]))
        logits, *state = step.run(None, {"input_ids": token, **dict(zip(names, state, strict=True))})
    return codec.decode(out)


def test_the_service_generates_from_the_int8_export(exports):
    from service.tasks.generation.plugin import PLUGIN
    from tests.service.conftest import serving, settings_for

    with serving(settings_for(exports.work / "int8"), plugins=[PLUGIN]) as client:
        answer = client.post("/generate", json={"prompt": "All:\n", "temperature": 0, "max_new_tokens": 40})
    assert answer.status_code == 200, answer.text
    text = answer.json()["text"]
    assert text and text == ort_greedy(version(exports.work / "int8"), exports.codec, "All:\n", 40)


def test_post_hoc_quantize_gives_the_export_files_and_refuses_a_second_run(exports, tmp_path, capsys):
    repo = tmp_path / "models"
    shutil.copytree(exports.work / "fp32", repo)
    # A recorded config from an older schema (a key since removed) still resolves.
    manifest = ModelManifest.load(repo / NAME)
    manifest.training.config["lm"]["min_lr_ratio"] = 0.05
    manifest.save(repo / NAME)

    assert main(["quantize", "--model", str(repo / NAME), "--export.quantize=always"]) == 0
    for file in SHIPPED:
        assert (version(repo) / file).read_bytes() == (version(exports.work / "int8") / file).read_bytes(), (
            file
        )
    done, exported = ModelManifest.load(repo / NAME), ModelManifest.load(exports.work / "int8" / NAME)
    assert done.precision == "int8" and done.size_bytes == exported.size_bytes
    assert done.metrics["dev"] == exported.metrics["dev"]
    assert json.loads((version(repo) / "metrics.json").read_text()) == done.metrics
    post_hoc = done.quantization.metrics.pop("post_hoc")
    assert (
        post_hoc["command"] == f"python -m training quantize --model {repo / NAME} --export.quantize=always"
    )
    assert done.quantization == exported.quantization
    assert done.training.config["export"]["quantize"] == "always"
    assert not list((repo / NAME).glob(".quantize-*"))

    capsys.readouterr()
    assert main(["quantize", "--model", str(repo / NAME), "--export.quantize=always"]) == 1
    assert "already int8" in capsys.readouterr().err
    with pytest.raises(QuantizeExportedError, match="already int8"):
        GenerationTask.quantize_exported(repo / NAME, exports.settings, ["--export.quantize=auto"])


def test_post_hoc_auto_keeps_fp32_when_the_loss_rule_fails(exports, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(exports.work / "fp32", repo)
    before = {f: (version(repo) / f).read_bytes() for f in SHIPPED}
    report = GenerationTask.quantize_exported(
        repo / NAME,
        exports.settings,
        ["--export.quantize=auto", "--export.quantize_max_drop=0", "--export.quantize_tolerance=1e-9"],
    )
    assert report.metrics["shipped"]["graph"] == "fp32"
    assert {f: (version(repo) / f).read_bytes() for f in SHIPPED} == before
    manifest = ModelManifest.load(repo / NAME)
    assert manifest.precision == "fp32" and manifest.quantization == report


def test_quantize_refuses_tasks_without_the_hook_and_never(exports, tmp_path, capsys):
    other = tmp_path / "sentiment-x"
    ModelManifest(
        name="sentiment-x",
        task="sentiment",
        architecture={},
        graphs={},
        tokenizer={},
        parameters=0,
        size_bytes=0,
    ).save(other)
    assert main(["quantize", "--model", str(other)]) == 1
    assert "no post-hoc quantization" in capsys.readouterr().err
    repo = tmp_path / "models"
    shutil.copytree(exports.work / "fp32", repo)
    with pytest.raises(QuantizeExportedError, match="never"):
        GenerationTask.quantize_exported(repo / NAME, exports.settings, ["--export.quantize=never"])
