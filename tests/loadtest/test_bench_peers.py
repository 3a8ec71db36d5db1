"""The peers benchmark's pure parts: parity, tuning choice, CPU accounting of a process tree, generated
configuration and the report. No installs, no peer servers (the benchmark itself is opt-in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadtest.bench import procs
from loadtest.bench.procs import ProcessTree, ProcStat, descendants, parse_stat, tree_by_name, tree_ticks
from loadtest.bench.report import cpu_us_per_request
from loadtest.bench_peers import (
    ceiling_sentence,
    compare_answers,
    max_score_difference,
    medians,
    pick_best,
    ratio_rows,
    render,
    result_rows,
    rotated,
    select_texts,
)
from loadtest.peers import install
from loadtest.peers.servers import (
    RAY_ENV,
    TORCHSERVE_LOG4J2,
    ray_route,
    stop_tree,
    torchserve_model_config,
    torchserve_properties,
    torchserve_variant,
)
from loadtest.run_benchmarks import BENCHMARKS, main


def answer(label: str, pos: float) -> dict:
    scores = {"negative": 1 - pos, "positive": pos}
    return {"model": "m", "results": [{"label": label, "score": scores[label], "scores": scores}]}


# ---------------------------------------------------------------- parity


def test_parity_accepts_equal_answers_and_tiny_float_noise():
    ref = [answer("positive", 0.9), answer("negative", 0.2)]
    got = [answer("positive", 0.9 + 4e-7), answer("negative", 0.2)]
    assert compare_answers(ref, got) == []
    assert max_score_difference(ref, got) == pytest.approx(4e-7, rel=1e-3)


def test_parity_reports_labels_scores_shapes_and_counts():
    ref = [answer("positive", 0.9), answer("negative", 0.2), answer("positive", 0.7)]
    got = [answer("negative", 0.4), answer("negative", 0.2 + 1e-4), {"error": "boom"}]
    problems = compare_answers(ref, got)
    assert any("text 0: label 'negative'" in p for p in problems)
    assert any("text 1: scores differ by 0.0001" in p for p in problems)
    assert any(p.startswith("text 2: not a /sentiment answer") for p in problems)
    assert compare_answers(ref, got[:2]) == ["2 answers for 3 texts"]
    other_labels = {
        "model": "m",
        "results": [{"label": "pos", "score": 0.9, "scores": {"pos": 0.9, "neg": 0.1}}],
    }
    assert "labels" in compare_answers([answer("positive", 0.9)], [other_labels])[-1]


def test_texts_are_chosen_by_token_count():
    texts = ["a " * n for n in (3, 15, 20, 25, 26)]
    assert select_texts(texts, lambda t: len(t.split())) == texts[1:4]


# ---------------------------------------------------------------- rounds, tuning, medians


def test_tuning_keeps_the_fastest_then_the_lower_p99():
    trials = {(2, 2): {"rps": 900, "p99_ms": 40}, (2, 5): {"rps": 950, "p99_ms": 60}}
    assert pick_best(trials) == (2, 5)
    trials[(2, 2)]["rps"] = 950
    assert pick_best(trials) == (2, 2)


def test_order_rotates_per_round_and_medians_sum_errors():
    assert [rotated(["a", "b", "c"], k) for k in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"],
    ]  # fmt: skip
    runs = [
        {"rps": r, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": p, "server_cpu_us": c, "errors": e}
        for r, p, c, e in [(100, 5, 300, 0), (300, 1, 100, 2), (200, 3, 200, 1)]
    ]
    m = medians(runs)
    assert (m["rps"], m["p99_ms"], m["server_cpu_us"], m["errors"]) == (200, 3, 200, 3)


def test_cpu_per_request_counts_the_warmup_requests():
    # 2 s of CPU over 8 s measured + 2 s warm-up at 1,000 requests per measured 8 s -> 1,250 served
    assert cpu_us_per_request(2.0, 1000, duration=8, warmup=2) == pytest.approx(1600)
    assert cpu_us_per_request(1.0, 0, duration=8, warmup=2) == 1e6  # nothing served: no division by zero


# ---------------------------------------------------------------- CPU accounting of a process tree


def stat_line(
    pid: int, name: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0
) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    return f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0 0"


def test_parse_stat_takes_names_with_spaces_and_parentheses():
    s = parse_stat(stat_line(42, "ray::Serve (x) y", 7, 10, 5, 3, 2))
    assert s == ProcStat(42, 7, "ray::Serve (x) y", 20)


def test_a_process_runs_until_it_exits_even_before_it_is_reaped(tmp_path):
    for pid, state in ((5, "S"), (6, "Z")):
        (tmp_path / str(pid)).mkdir()
        # a name that holds what looks like a state
        line = stat_line(pid, "a (b) Z", 1, 0, 0).replace(") S ", f") {state} ")
        (tmp_path / str(pid) / "stat").write_text(line)
    assert procs.running(5, tmp_path)
    assert not procs.running(6, tmp_path)  # exited, not yet reaped
    assert not procs.running(7, tmp_path)  # gone
    assert procs.running(os.getpid())


def test_tree_sums_the_root_and_every_descendant_only():
    stats = {
        s.pid: s
        for s in [
            ProcStat(1, 0, "init", 1000),
            ProcStat(10, 1, "torchserve", 1),  # launcher
            ProcStat(11, 10, "java", 50),  # frontend
            ProcStat(12, 11, "python", 30),  # workers
            ProcStat(13, 11, "python", 20),
            ProcStat(20, 1, "python", 999),  # someone else's process
        ]
    }
    assert descendants(stats, [10]) == {10, 11, 12, 13}
    assert tree_ticks(stats, [10]) == 101
    assert tree_by_name(stats, [10]) == {"torchserve": 1, "java": 50, "python": 50}
    assert descendants(stats, [99]) == set()  # a root that is gone


def test_a_reaped_childs_time_stays_in_the_tree():
    """utime+stime+cutime+cstime: when a child exits and its parent reaps it, the total does not drop."""
    alive = {1: ProcStat(1, 0, "p", 10), 2: ProcStat(2, 1, "c", 40)}
    reaped = {1: ProcStat(1, 0, "p", 10 + 40)}  # the child's 40 ticks moved to the parent's cutime
    assert tree_ticks(alive, [1]) == tree_ticks(reaped, [1]) == 50


def test_process_tree_reads_proc(tmp_path: Path):
    for pid, line in {
        5: stat_line(5, "server", 1, 100, 50),
        6: stat_line(6, "worker", 5, 30, 20, 7, 3),
        7: stat_line(7, "other", 1, 999, 0),
    }.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(line)
    (tmp_path / "self").mkdir()
    tree = ProcessTree(5, proc=tmp_path)
    assert tree.cpu_seconds() == pytest.approx(210 / os.sysconf("SC_CLK_TCK"))
    assert tree.processes() == 2
    assert set(tree.by_name()) == {"server", "worker"}


def test_process_tree_sees_the_cpu_of_a_child_process():
    """Real /proc: a parent that only waits and a child that spins; the child's CPU is the tree's."""
    spin = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess,sys; subprocess.run([sys.executable,'-c',{spin!r}])"]
    )
    try:
        tree = ProcessTree(parent.pid)
        deadline = time.monotonic() + 20
        while tree.cpu_seconds() < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tree.processes() == 2
        assert tree.cpu_seconds() >= 0.3
        assert procs.read_all()[parent.pid].ticks < 0.3 * os.sysconf("SC_CLK_TCK")  # not the parent's own
    finally:
        for pid in descendants(procs.read_all(), [parent.pid]) - {parent.pid}:
            os.kill(pid, 9)
        parent.kill()
        parent.wait()


# ---------------------------------------------------------------- generated configuration


def test_torchserve_properties_bind_loopback_and_raise_the_queue(tmp_path: Path):
    ports = {"inference": 1, "management": 2, "metrics": 3, "grpc_inference": 4, "grpc_management": 5}
    text = torchserve_properties(ports, tmp_path / "store", 2, 1000, tmp_path / "log4j2.xml")
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["inference_address"] == "http://127.0.0.1:1"
    assert props["management_address"] == "http://127.0.0.1:2"
    assert props["metrics_address"] == "http://127.0.0.1:3"
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert props["default_workers_per_model"] == "2" and props["job_queue_size"] == "1000"
    assert props["disable_token_authorization"] == "true" and props["load_models"] == "all"
    assert props["vmargs"] == f"-Dlog4j.configurationFile=file://{tmp_path / 'log4j2.xml'}"


def test_torchserve_model_config_and_names():
    cfg = dict(line.split(": ") for line in torchserve_model_config(2, 64, 5).splitlines())
    assert cfg == {
        "minWorkers": "2", "maxWorkers": "2", "batchSize": "64", "maxBatchDelay": "5",
        "responseTimeout": "120",
    }  # fmt: skip
    assert torchserve_variant("sentiment-gru", 2, 5) == "sentiment-gru-w2-d5"
    assert ray_route(2) == "/sentiment-r2"


def test_torchserve_log_config_turns_the_access_log_off():
    root = ET.fromstring(TORCHSERVE_LOG4J2)
    levels = {lg.get("name"): lg.get("level") for lg in root.iter("Logger")}
    assert levels["ACCESS_LOG"] == "off" and levels["org.pytorch.serve"] == "warn"


def test_ray_stays_on_loopback_without_usage_stats_at_normal_priority():
    assert RAY_ENV == {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_worker_niceness": "0",
    }


# ---------------------------------------------------------------- installs (logic only)


def test_peer_venvs_pin_the_serving_deps_of_this_interpreter():
    ts, ray = install.requirements(install.PEERS["torchserve"]), install.requirements(install.PEERS["ray"])
    assert {"torchserve==0.12.*", "torch-model-archiver==0.12.*", "pyyaml", "torch==2.13.0"} <= set(ts)
    assert "ray[serve]==2.60.*" in ray
    import onnxruntime

    assert (
        f"onnxruntime=={onnxruntime.__version__}" in ts and f"onnxruntime=={onnxruntime.__version__}" in ray
    )
    names = {r.split("==")[0] for r in install.pinned_serving_deps()}
    assert names == {"onnxruntime", "numpy", "sentencepiece", "pydantic", "pydantic-settings"}
    assert "no-such-dist-xyz" in install.pinned_serving_deps(["no-such-dist-xyz"])


def test_install_is_skipped_only_for_the_same_requirements(tmp_path: Path):
    venv = tmp_path / "v"
    assert not install.is_installed(venv, ["a==1"])
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    assert not install.is_installed(venv, ["a==1"])  # no marker: an interrupted install
    (venv / install.MARKER).write_text(json.dumps({"requirements": ["a==1"]}))
    assert install.is_installed(venv, ["a==1"]) and not install.is_installed(venv, ["a==2"])
    (venv / install.MARKER).write_text("{broken")
    assert not install.is_installed(venv, ["a==1"])


def test_jre_choice_follows_apt_cache_policy():
    none = "openjdk-17-jre-headless:\n  Installed: (none)\n  Candidate: (none)\n"
    has = "openjdk-21-jre-headless:\n  Installed: (none)\n  Candidate: 21.0.5+11-1~deb12u1\n"
    assert install.pick_jre({"openjdk-17-jre-headless": none, "openjdk-21-jre-headless": has}) == (
        "openjdk-21-jre-headless"
    )
    assert install.pick_jre({"openjdk-17-jre-headless": none}) is None
    assert install.pick_jre({}) is None


def test_the_codec_and_session_options_do_not_need_fastapi():
    """What the peers' venvs import (loadtest.peers.engine) must work without FastAPI, uvicorn or torch."""
    code = (
        "import sys\n"
        "BLOCKED = ('fastapi', 'starlette', 'uvicorn', 'torch', 'prometheus_client')\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import loadtest.peers.engine\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- report and registry


def fake_info() -> dict:
    def r(rps: float, p50: float, p99: float, cpu: float) -> dict:
        return {"rps": rps, "p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "server_cpu_us": cpu, "errors": 0}

    results = {
        "sentiment-gru": {
            1: {
                "rnnserve": r(600, 1.6, 2.4, 1600),
                "torchserve": r(300, 3.2, 6.0, 4000),
                "ray": r(150, 6.5, 9, 9000),
            },
            64: {
                "rnnserve": r(1200, 50, 60, 800),
                "torchserve": r(800, 75, 90, 1500),
                "ray": r(400, 150, 200, 5000),
            },
        }
    }
    cfg = {
        "version": 1,
        "rnnserve": {"processes": 1},
        "torchserve": {
            "workers": 2, "batch_size": 64, "max_batch_delay_ms": 5, "processes": 4,
            "tuning": {"2 workers / 2 ms": 780.0, "2 workers / 5 ms": 800.0},
        },
        "ray": {
            "replicas": 2, "max_batch_size": 64, "batch_wait_timeout_s": 0.002, "max_ongoing_requests": 256,
            "processes": 12, "tuning": {},
        },
        "parity": {"torchserve": 0.0, "ray": 5.96e-8},
        "idle_cpu_pct": {"rnnserve": 0.1, "torchserve": 0.5, "ray": 4.0},
    }  # fmt: skip
    return {
        "models": ["sentiment-gru"],
        "clients": [1, 64],
        "servers": ["rnnserve", "torchserve", "ray"],
        "rounds": 3,
        "seconds": 10.0,
        "warmup": 2.0,
        "texts": 89,
        "parity": 50,
        "versions": {"onnxruntime": "1.32.0", "torchserve": "0.12.0", "torch": "2.13.0+cpu", "ray": "2.60.0"},
        "config": {"sentiment-gru": cfg},
        "results": results,
        "breakdown": {"sentiment-gru": {"torchserve": {"java": 700.0, "python": 800.0}}},
        "machine": "2-core CPU (X), no GPU",
        "load_before": (0.5, 0.6, 0.7),
        "load_after": (2.0, 1.5, 1.0),
        "date": "2026-12-01 12:00 UTC",
        "command": "python -m loadtest.bench_peers",
    }


def test_table_rows_and_ratios():
    info = fake_info()
    rows = result_rows(info["results"], info["models"], [1, 64], info["servers"])
    assert rows[0] == ["`sentiment-gru`", 1, "rnnserve", "600", "1.60", "2.40", "1600", 0]
    assert [row[2] for row in rows] == ["rnnserve", "TorchServe", "Ray Serve"] * 2
    ratios = ratio_rows(info["results"], info["models"], [1, 64], "torchserve")
    assert ratios == [
        ["`sentiment-gru`", 1, "2.00", "0.50", "0.40", "0.40"],
        ["`sentiment-gru`", 64, "1.50", "0.67", "0.67", "0.53"],
    ]


def test_rendered_section_states_method_machine_load_and_config():
    text = render(fake_info())
    assert "| `sentiment-gru` | 64 | TorchServe | 800 | 75.00 | 90.00 | 1500 | 0 |" in text
    assert "0.50 / 0.60 / 0.70 before and 2.00 / 1.50 / 1.00 after" in text
    assert "TorchServe 2 workers, batch 64, `max_batch_delay` 5 ms (the best at 64 clients of" in text
    assert "(1 process);" in text and "Medians of 3 rounds" in text
    assert "Ray Serve 2 replicas, `@serve.batch` 64 / 2 ms" in text
    assert "```bash\npython -m loadtest.bench_peers\n```" in text
    assert "rnnserve / TorchServe at 1 and 64 clients (requests/s above 1" in text
    assert "java 700, python 800" in text
    assert "POST /" not in text  # docs may name only endpoints the service serves (tests/test_docs.py)


def test_peers_benchmark_is_opt_in(monkeypatch: pytest.MonkeyPatch):
    (peers,) = [b for b in BENCHMARKS if b.name == "peers"]
    assert peers.opt_in and peers.module == "loadtest.bench_peers" and peers.available()
    chosen = []
    monkeypatch.setattr(
        "loadtest.run_benchmarks.run", lambda b, *a, **k: chosen.append([x.name for x in b]) or []
    )
    main([])
    main(["--only", "peers"])
    assert "peers" not in chosen[0] and chosen[1] == ["peers"]


def test_stop_tree_also_ends_children_that_outlive_their_parent(tmp_path: Path):
    """Like Ray's actors (own process groups, orphaned when the raylet goes): the root is stopped by
    SIGTERM, and a descendant still running afterwards gets SIGKILL."""
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time;"
        " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    t0 = time.monotonic()
    stop_tree(root, group=False, grace_s=5, linger_s=0.5)
    assert root.poll() is not None and time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while procs.start_time(child) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # killed; its new parent (init or a subreaper) reaps it
    assert not procs.running(child)


def test_the_ceiling_is_the_best_batch_and_thread_count_and_the_service_is_set_against_it():
    ceiling = {1: {1: 400, 16: 900}, 2: {1: 350, 128: 1500}}
    results = {64: {"rnnserve": {"rps": 1200.0}}}
    text = ceiling_sentence(ceiling, results, 64)
    assert "1,500 sentences/s at batch 128 with 2 threads" in text
    assert "rnnserve at 64 clients: 80% of it" in text
    assert "of it" not in ceiling_sentence(ceiling, {}, 64)
