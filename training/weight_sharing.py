"""One weights file for the graphs of a model version: byte-identical initializers stored once.

A model served as several graphs (generation's ``prefill`` and ``step``, translation's ``encoder`` and
``step``) exports the same weights into each graph. :func:`share_weights` moves every initializer of at
least ``min_bytes`` into one external-data file next to the graphs (ONNX's ``external_data`` fields:
``location``, ``offset``, ``length``), writing each distinct byte content once at a 64-byte aligned offset.
ONNX Runtime resolves ``location`` relative to the graph file, so sessions must be created from the file
path (``ort.InferenceSession(str(path))``), as the service does.

:func:`share_weights_checked` also proves the rewrite lossless (bit-identical ONNX Runtime outputs on a
random valid input, else the originals are restored), and :func:`share_model_weights` applies that to a
model folder of the repository and updates its manifest (``python -m training share-weights``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import AttributeProto, TensorProto, numpy_helper
from onnx.external_data_helper import set_external_data, uses_external_data

from service.manifest import MANIFEST_NAME, ModelManifest, version_dirs

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.bin"
WEIGHTS_KEY = "weights"  # the manifest's ``files`` entry, so the service checks the file exists
ALIGNMENT = 64
MIN_BYTES = 1024
_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


class WeightSharingError(RuntimeError):
    """The graphs cannot be rewritten, or the rewrite changed their outputs (originals restored)."""


@dataclass(frozen=True)
class SharingReport:
    version_dir: Path
    graph_files: tuple[str, ...]
    weights_file: str
    tensors: int  # initializers that point into the weights file
    unique_tensors: int  # distinct byte contents stored there
    bytes_before: int  # the graphs and the external-data files they referenced
    bytes_after: int  # the graphs and the weights file
    unreferenced_files: tuple[str, ...] = ()  # external-data files the graphs no longer use (not deleted)

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def summary(self) -> dict[str, object]:
        return {
            "version_dir": str(self.version_dir),
            "graphs": list(self.graph_files),
            "weights_file": self.weights_file,
            "tensors": self.tensors,
            "unique_tensors": self.unique_tensors,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_saved": self.bytes_saved,
            "unreferenced_files": list(self.unreferenced_files),
        }


# --- the rewrite ----------------------------------------------------------------------------------------
def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and its subgraphs (``If``/``Loop``/``Scan`` bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def initializers(model: onnx.ModelProto) -> Iterator[TensorProto]:
    for graph in _graphs(model.graph):
        yield from graph.initializer


def _external_locations(model: onnx.ModelProto) -> set[str]:
    return {
        entry.value
        for tensor in initializers(model)
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }


def _to_raw(tensor: TensorProto) -> bool:
    """Moves typed data (``float_data`` ...) into ``raw_data``; False when that cannot be done losslessly."""
    if tensor.HasField("raw_data"):
        return True
    if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return False
    raw = numpy_helper.from_array(numpy_helper.to_array(tensor))
    if raw.data_type != tensor.data_type:
        return False
    for field in _TYPED_FIELDS:
        tensor.ClearField(field)
    tensor.raw_data = raw.raw_data
    return True


def _make_inline(tensor: TensorProto) -> None:
    """A tensor whose external data is already loaded into ``raw_data`` becomes a plain one."""
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT


def graph_bytes(version_dir: Path, graph_files: Sequence[str], weights_file: str | None) -> int:
    """What a version ships: the graph files plus the weights file when there is one."""
    files = [*graph_files, *([weights_file] if weights_file else [])]
    return sum((version_dir / f).stat().st_size for f in dict.fromkeys(files) if (version_dir / f).is_file())


def _check_no_other_user(version_dir: Path, graph_files: Sequence[str], weights_file: str) -> None:
    """Another graph of the folder reading ``weights_file`` would break when it is rewritten."""
    for other in sorted(version_dir.glob("*.onnx")):
        if other.name in graph_files:
            continue
        model = onnx.load(str(other), load_external_data=False)
        if weights_file in _external_locations(model):
            raise WeightSharingError(f"{other.name} also reads {weights_file}; include it in the graphs")


def share_weights(
    version_dir: Path,
    graph_files: Sequence[str],
    weights_file: str = WEIGHTS_FILE,
    min_bytes: int = MIN_BYTES,
) -> SharingReport:
    """Rewrites ``graph_files`` of ``version_dir`` so that their initializers of at least ``min_bytes`` live
    in ``weights_file``, each distinct content once (SHA-256), at 64-byte aligned offsets.

    Every graph is loaded with its external data before anything is written, so running it again on its own
    output (idempotence) or on graphs that already use ``weights_file`` reads the old data first; the result
    of a second run is byte-identical to the first. The new files are written next to the old ones and then
    renamed over them. String tensors and smaller initializers stay inside their graph.
    """
    version_dir = Path(version_dir)
    graph_files = tuple(dict.fromkeys(graph_files))
    if not graph_files:
        raise WeightSharingError("no graph files given")
    if Path(weights_file).name != weights_file:
        raise WeightSharingError(f"the weights file must be a plain file name, not {weights_file!r}")
    _check_no_other_user(version_dir, graph_files, weights_file)

    models: dict[str, onnx.ModelProto] = {}
    referenced: set[str] = set()
    for name in graph_files:
        path = version_dir / name
        if not path.is_file():
            raise WeightSharingError(f"graph file {path} does not exist")
        referenced |= _external_locations(onnx.load(str(path), load_external_data=False))
        models[name] = onnx.load(str(path), load_external_data=True)
    bytes_before = graph_bytes(version_dir, graph_files, None) + sum(
        (version_dir / loc).stat().st_size for loc in referenced if (version_dir / loc).is_file()
    )

    blob = bytearray()
    offsets: dict[bytes, tuple[int, int]] = {}
    moved = 0
    for model in models.values():
        for tensor in initializers(model):
            if uses_external_data(tensor):
                _make_inline(tensor)
            if not _to_raw(tensor):
                continue
            data = tensor.raw_data
            if len(data) < min_bytes:
                continue
            key = hashlib.sha256(data).digest()
            if key not in offsets:
                blob.extend(b"\0" * (-len(blob) % ALIGNMENT))
                offsets[key] = (len(blob), len(data))
                blob.extend(data)
            offset, length = offsets[key]
            set_external_data(tensor, location=weights_file, offset=offset, length=length)
            tensor.ClearField("raw_data")
            moved += 1

    staged: list[tuple[Path, Path]] = []
    try:
        targets = {weights_file: bytes(blob)} | {n: m.SerializeToString() for n, m in models.items()}
        for name, content in targets.items():
            tmp = version_dir / f".{name}.{os.getpid()}.tmp"
            with tmp.open("xb") as out:  # plain open: the umask's permissions, readable by the service user
                staged.append((tmp, version_dir / name))
                out.write(content)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return SharingReport(
        version_dir=version_dir,
        graph_files=graph_files,
        weights_file=weights_file,
        tensors=moved,
        unique_tensors=len(offsets),
        bytes_before=bytes_before,
        bytes_after=graph_bytes(version_dir, graph_files, weights_file),
        unreferenced_files=tuple(sorted(referenced - {weights_file})),
    )


# --- losslessness ---------------------------------------------------------------------------------------
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def random_feed(session: ort.InferenceSession, seed: int = 0, dynamic: int = 3) -> dict[str, np.ndarray]:
    """A random input every graph of the repository accepts: dynamic dimensions are ``dynamic``, floats are
    standard normal, integers lie in ``[1, dynamic]`` (valid token ids past ``<pad>``, and valid lengths
    of a ``dynamic``-long padded batch)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in session.get_inputs():
        if arg.type not in _NUMPY_TYPES:
            raise WeightSharingError(f"no random input for {arg.name!r} of type {arg.type}")
        dtype = _NUMPY_TYPES[arg.type]
        shape = [d if isinstance(d, int) and d >= 0 else dynamic for d in arg.shape]
        if np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(shape)
        elif dtype is np.bool_:
            value = rng.random(shape) < 0.5
        else:
            value = rng.integers(1, dynamic + 1, size=shape)
        feed[arg.name] = np.asarray(value, dtype=dtype)
    return feed


def run_graph(path: Path, seed: int = 0) -> list[np.ndarray]:
    """ONNX Runtime outputs of the graph at ``path`` (created from the path, so external data resolves)
    on :func:`random_feed`, with the service's optimisation level and one thread (deterministic)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, random_feed(session, seed))


def _identical(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return len(before) == len(after) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(before, after, strict=True)
    )


def share_weights_checked(
    version_dir: Path,
    graph_files: Sequence[str],
    weights_file: str = WEIGHTS_FILE,
    min_bytes: int = MIN_BYTES,
) -> SharingReport:
    """:func:`share_weights`, then each graph must give bit-identical outputs on the same random input as
    before; otherwise (or on any error) the original files are put back and :class:`WeightSharingError`
    is raised."""
    version_dir = Path(version_dir)
    graph_files = tuple(dict.fromkeys(graph_files))
    before = {name: run_graph(version_dir / name) for name in graph_files}
    referenced: set[str] = set()
    for name in graph_files:
        referenced |= _external_locations(onnx.load(str(version_dir / name), load_external_data=False))
    touched = [*graph_files, weights_file, *sorted(referenced)]
    with tempfile.TemporaryDirectory(prefix=".share-weights-", dir=version_dir) as backup:
        saved = set()
        for name in dict.fromkeys(touched):
            if (version_dir / name).is_file():
                shutil.copy2(version_dir / name, Path(backup) / name)
                saved.add(name)
        try:
            report = share_weights(version_dir, graph_files, weights_file, min_bytes)
            changed = [n for n in graph_files if not _identical(before[n], run_graph(version_dir / n))]
            if changed:
                raise WeightSharingError(f"outputs changed after sharing weights: {changed}; restored")
        except BaseException:
            for name in dict.fromkeys(touched):
                if name in saved:
                    shutil.copy2(Path(backup) / name, version_dir / name)
                else:
                    (version_dir / name).unlink(missing_ok=True)
            raise
    return report


def share_model_weights(path: Path, weights_file: str = WEIGHTS_FILE) -> list[SharingReport]:
    """Shares the weights of a repository model (``models/<name>``: every version; ``models/<name>/<N>``:
    that version) with :func:`share_weights_checked`, then records ``files["weights"]`` and the newest
    version's ``size_bytes`` (graphs + weights) in ``models/<name>/config.json``."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        model_dir, targets = path, [p for _, p in version_dirs(path)]
    elif path.name.isdigit() and (path.parent / MANIFEST_NAME).is_file():
        model_dir, targets = path.parent, [path]
    else:
        raise WeightSharingError(f"{path} is neither a model folder (with {MANIFEST_NAME}) nor its version")
    manifest = ModelManifest.load(model_dir)
    if manifest.files.get(WEIGHTS_KEY, weights_file) != weights_file:
        found = manifest.files[WEIGHTS_KEY]
        raise WeightSharingError(f"{model_dir.name}: files[{WEIGHTS_KEY!r}] is {found!r}, not {weights_file}")
    versions = [p for _, p in version_dirs(model_dir)]
    if not targets:
        raise WeightSharingError(f"{model_dir} has no numbered version folder")
    left = [p.name for p in versions if p not in targets and not (p / weights_file).is_file()]
    if left:
        raise WeightSharingError(
            f"versions {left} of {model_dir.name} would lack {weights_file}; pass the model folder"
        )
    graph_files = [spec.file for spec in manifest.graphs.values()]
    reports = [share_weights_checked(version, graph_files, weights_file) for version in targets]
    for report in reports:
        if report.unreferenced_files:
            log.warning("%s: no graph reads %s any more", report.version_dir, list(report.unreferenced_files))
    updated = manifest.model_copy(
        update={
            "files": {**manifest.files, WEIGHTS_KEY: weights_file},
            "size_bytes": graph_bytes(versions[-1], graph_files, weights_file),
        }
    )
    updated.save(model_dir)
    return reports
