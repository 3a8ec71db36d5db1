"""One shared weights file per model version: halves the bytes, outputs bit-identical, idempotent, restorable,
served by the service, and a missing weights file makes the model fail to load with a clear reason."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import uses_external_data

from service.manifest import GraphSpec, ModelManifest, TensorSpec
from training import weight_sharing
from training.weight_sharing import (
    ALIGNMENT,
    WEIGHTS_FILE,
    WeightSharingError,
    initializers,
    run_graph,
    share_model_weights,
    share_weights,
    share_weights_checked,
)

GRAPHS = ("a.onnx", "b.onnx")


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_two_graphs(version_dir: Path, seed: int = 0) -> None:
    """``a.onnx``: ``x @ W + b``; ``b.onnx``: ``x @ W`` (``W`` stored as ``float_data``, not raw) and an
    ``If`` whose branches hold ``W`` again and a different ``V`` as subgraph initializers. ``b`` is too
    small to move; every other tensor is 8 KiB."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    v = rng.standard_normal((64, 32)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])
    a = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "a",
        [x],
        [y],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(rng.standard_normal(32).astype("f4"), "b")],
    )

    def branch(name: str, weight: np.ndarray) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["batch", 32])
        node = helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_out"])
        return helper.make_graph([node], name, [], [out], [numpy_helper.from_array(weight, f"{name}_w")])

    typed_w = helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel().tolist())  # float_data
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 32])
    b = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"]),
            helper.make_node(
                "If", ["flag"], ["z"], then_branch=branch("then", w), else_branch=branch("else", v)
            ),
        ],
        "b",
        [x, flag],
        [y, z],
        [typed_w],
    )
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(_model(a), version_dir / "a.onnx")
    onnx.save(_model(b), version_dir / "b.onnx")


def write_two_graph_model(root: Path, name: str = "shared-tiny") -> Path:
    """A repository entry holding the two graphs (no task plug-in needs to serve it for sharing)."""
    write_two_graphs(root / name / "1")
    x = TensorSpec(name="x", dtype="float32", dims=[-1, 64])
    y = TensorSpec(name="y", dtype="float32", dims=[-1, 32])
    manifest = ModelManifest(
        name=name,
        task="sentiment",
        architecture={},
        graphs={
            "a": GraphSpec(file="a.onnx", inputs=[x], outputs=[y]),
            "b": GraphSpec(file="b.onnx", inputs=[x], outputs=[y]),
        },
        tokenizer={},
        parameters=64 * 32 * 2 + 32,
        size_bytes=sum((root / name / "1" / g).stat().st_size for g in GRAPHS),
    )
    manifest.save(root / name)
    return root / name


def digests(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def outputs(folder: Path, graphs=GRAPHS) -> dict[str, list[np.ndarray]]:
    return {g: run_graph(folder / g) for g in graphs}


def assert_identical(before: dict[str, list[np.ndarray]], after: dict[str, list[np.ndarray]]) -> None:
    assert before.keys() == after.keys()
    for name in before:
        assert [o.tobytes() for o in before[name]] == [o.tobytes() for o in after[name]], name


def test_identical_tensors_are_stored_once_at_aligned_offsets(tmp_path: Path) -> None:
    write_two_graphs(tmp_path)
    before = outputs(tmp_path)
    size_before = sum((tmp_path / g).stat().st_size for g in GRAPHS)

    report = share_weights(tmp_path, GRAPHS)

    assert (report.tensors, report.unique_tensors) == (4, 2)  # W three times (one in a subgraph), V once
    assert report.bytes_before == size_before and report.bytes_saved == size_before - report.bytes_after
    assert report.bytes_after < 0.6 * size_before
    assert (tmp_path / WEIGHTS_FILE).stat().st_size == 2 * 8192  # V starts at 8192, already aligned
    assert_identical(before, outputs(tmp_path))
    for name in GRAPHS:
        model = onnx.load(str(tmp_path / name), load_external_data=False)
        for tensor in initializers(model):
            if tensor.name == "b":
                assert not uses_external_data(tensor) and len(tensor.raw_data) == 128
                continue
            assert uses_external_data(tensor) and not tensor.HasField("raw_data")
            fields = {e.key: e.value for e in tensor.external_data}
            assert fields["location"] == WEIGHTS_FILE and int(fields["offset"]) % ALIGNMENT == 0
        onnx.checker.check_model(str(tmp_path / name))


def test_sharing_again_changes_nothing(tmp_path: Path) -> None:
    write_two_graphs(tmp_path)
    first = share_weights(tmp_path, GRAPHS)
    files = digests(tmp_path)
    again = share_weights(tmp_path, GRAPHS)
    assert digests(tmp_path) == files
    assert again.bytes_before == again.bytes_after == first.bytes_after and again.bytes_saved == 0


def test_small_threshold_moves_the_bias_and_a_large_one_brings_tensors_back(tmp_path: Path) -> None:
    write_two_graphs(tmp_path)
    before = outputs(tmp_path)
    assert share_weights(tmp_path, GRAPHS, min_bytes=1).tensors == 5
    back = share_weights(tmp_path, GRAPHS, min_bytes=1 << 20)  # reads the shared file, then inlines all
    assert back.tensors == 0 and (tmp_path / WEIGHTS_FILE).stat().st_size == 0
    assert_identical(before, outputs(tmp_path))


def test_graphs_from_other_external_data_files_are_merged(tmp_path: Path) -> None:
    write_two_graphs(tmp_path)
    before = outputs(tmp_path)
    model = onnx.load(str(tmp_path / "a.onnx"))
    onnx.save(model, tmp_path / "a.onnx", save_as_external_data=True, location="a.data", size_threshold=0)
    report = share_weights(tmp_path, GRAPHS)
    assert report.unreferenced_files == ("a.data",)
    (tmp_path / "a.data").unlink()
    assert_identical(before, outputs(tmp_path))


def test_a_graph_left_out_that_reads_the_weights_file_is_refused(tmp_path: Path) -> None:
    write_two_graphs(tmp_path)
    share_weights(tmp_path, GRAPHS)
    with pytest.raises(WeightSharingError, match=r"b\.onnx also reads weights\.bin"):
        share_weights(tmp_path, ["a.onnx"])


def test_changed_outputs_restore_the_original_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_two_graphs(tmp_path)
    original = digests(tmp_path)
    calls = {"n": 0}

    def drifting(path: Path, seed: int = 0) -> list[np.ndarray]:
        calls["n"] += 1
        result = run_graph(path, seed)
        return [r + 1 for r in result] if calls["n"] > len(GRAPHS) else result  # "after" runs differ

    monkeypatch.setattr(weight_sharing, "run_graph", drifting)
    with pytest.raises(WeightSharingError, match="outputs changed"):
        share_weights_checked(tmp_path, GRAPHS)
    assert digests(tmp_path) == original  # no weights.bin left, graphs as they were
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_model_folder_is_rewritten_and_its_manifest_updated(tmp_path: Path) -> None:
    model_dir = write_two_graph_model(tmp_path)
    before = outputs(model_dir / "1")
    old = ModelManifest.load(model_dir)
    (report,) = share_model_weights(model_dir)
    manifest = ModelManifest.load(model_dir)
    assert manifest.files == {"weights": WEIGHTS_FILE}
    assert manifest.size_bytes == report.bytes_after < 0.6 * old.size_bytes
    changed = {"files", "size_bytes"}
    assert manifest.model_dump(exclude=changed) == old.model_dump(exclude=changed)
    assert_identical(before, outputs(model_dir / "1"))
    share_model_weights(model_dir / "1")  # a version folder works too, and changes nothing now
    assert ModelManifest.load(model_dir) == manifest


def test_a_version_alone_is_refused_when_another_would_lack_the_weights(tmp_path: Path) -> None:
    model_dir = write_two_graph_model(tmp_path)
    shutil.copytree(model_dir / "1", model_dir / "2")
    with pytest.raises(WeightSharingError, match=r"versions \['1'\]"):
        share_model_weights(model_dir / "2")
    assert len(share_model_weights(model_dir)) == 2
    assert (model_dir / "1" / WEIGHTS_FILE).is_file() and (model_dir / "2" / WEIGHTS_FILE).is_file()


# --- a real character LM: export, sharing, serving ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory):
    """An (untrained) LSTM character LM exported by the generation task into a model repository."""
    torch = pytest.importorskip("torch")
    from tests.service.tasks.generation.tiny_model import TEXT, TinyGeneration, generation_config
    from training.checkpoints import upgrade
    from training.settings import TrainingSettings
    from training.tasks.generation.task import GenerationTask

    work = tmp_path_factory.mktemp("lm")
    (work / "tiny.txt").write_text(TEXT, encoding="utf-8")
    config = generation_config(work / "tiny.txt", name="lm-tiny")
    task = GenerationTask(config, TrainingSettings(data_dir=work, runs_dir=work / "runs", models_dir=work))
    task.load_data()
    torch.manual_seed(0)
    model = task.build_model().eval()
    checkpoint = upgrade(  # a best.pt of the earliest format: no training record beyond the config
        {
            "task": "generation",
            "model_args": task.model_args(),
            "config": config.model_dump(mode="json"),
            "state_dict": model.state_dict(),
        }
    )
    task.export(model, work / "models", checkpoint)
    return TinyGeneration(work / "models", "lm-tiny", model, task.codec)


def inline_weights(model_dir: Path) -> None:
    """Back to self-contained graphs and a manifest without the weights file, as models were shipped."""
    manifest = ModelManifest.load(model_dir)
    version_dir = model_dir / "1"
    files = [spec.file for spec in manifest.graphs.values()]
    for name in files:
        onnx.save(onnx.load(str(version_dir / name)), version_dir / name)
    (version_dir / WEIGHTS_FILE).unlink()
    size = sum((version_dir / f).stat().st_size for f in files)
    files_left = {k: v for k, v in manifest.files.items() if k != "weights"}
    manifest.model_copy(update={"files": files_left, "size_bytes": size}).save(model_dir)


def greedy(root: Path) -> dict:
    from service.tasks.generation.plugin import PLUGIN
    from tests.service.conftest import serving, settings_for

    with serving(settings_for(root), plugins=[PLUGIN]) as client:
        answer = client.post("/generate", json={"prompt": "All:\n", "temperature": 0, "max_new_tokens": 40})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_generation_export_writes_one_shared_weights_file(tiny_lm) -> None:
    model_dir = tiny_lm.root / tiny_lm.name
    manifest = ModelManifest.load(model_dir)
    version_dir = model_dir / "1"
    assert manifest.files == {"vocab": "vocab.json", "weights": WEIGHTS_FILE}
    graphs = [spec.file for spec in manifest.graphs.values()]
    assert manifest.size_bytes == sum((version_dir / f).stat().st_size for f in [*graphs, WEIGHTS_FILE])
    weights = sum(p.numel() * 4 for p in tiny_lm.model.parameters())
    assert (version_dir / WEIGHTS_FILE).stat().st_size < 1.5 * weights  # once, not once per graph
    assert manifest.parity is not None and manifest.parity.max_abs_diff <= manifest.parity.tolerance


def test_cli_halves_a_shipped_model_and_the_service_answers_the_same(tiny_lm, tmp_path: Path) -> None:
    from tests.service.tasks.generation.test_routes import torch_greedy
    from training.cli import main

    root = tmp_path / "models"
    shutil.copytree(tiny_lm.root / tiny_lm.name, root / tiny_lm.name)
    model_dir = root / tiny_lm.name
    inline_weights(model_dir)
    graphs = ["prefill.onnx", "step.onnx"]
    before, answer_before = outputs(model_dir / "1", graphs), greedy(root)
    shipped = ModelManifest.load(model_dir).size_bytes

    assert main(["share-weights", str(model_dir)]) == 0

    manifest = ModelManifest.load(model_dir)
    weights = sum(p.numel() * 4 for p in tiny_lm.model.parameters())
    assert manifest.files["weights"] == WEIGHTS_FILE
    assert shipped - manifest.size_bytes > 0.8 * weights  # the second copy of the weights is gone
    assert_identical(before, outputs(model_dir / "1", graphs))
    answer = greedy(root)
    assert answer == answer_before and answer["tokens"] == 40
    assert answer["text"] == torch_greedy(tiny_lm, "All:\n", 40)


def test_a_missing_weights_file_fails_that_model_with_a_clear_reason(tiny_lm, tmp_path: Path) -> None:
    from service.tasks.generation.plugin import PLUGIN
    from tests.service.conftest import serving, settings_for, wait_loaded

    root = tmp_path / "models"
    shutil.copytree(tiny_lm.root / tiny_lm.name, root / tiny_lm.name)
    (root / tiny_lm.name / "1" / WEIGHTS_FILE).unlink()
    with serving(settings_for(root), plugins=[PLUGIN], ready=False) as client:
        wait_loaded(client)
        (entry,) = client.get("/models").json()["models"]
        ready = client.get("/ready")
    assert entry["state"] == "failed" and WEIGHTS_FILE in entry["error"]
    assert ready.status_code == 503 and WEIGHTS_FILE in ready.text
