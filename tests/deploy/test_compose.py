"""docker-compose.yml: valid against the Compose Specification's JSON schema, and every file, port and
variable it names exists (in the repository, the Dockerfile, the service's settings and routes, nginx.conf,
prometheus.yml and the locust setup). No Docker engine needed."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from service.config import Settings
from service.main import create_app
from tests.deploy.dockerfile import REPO_ROOT, setting_problem, stages

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SCHEMA = json.loads((Path(__file__).with_name("compose-spec.json")).read_text(encoding="utf-8"))
RAW = COMPOSE_FILE.read_text(encoding="utf-8")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
NGINX = (REPO_ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
PROMETHEUS = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))


def with_defaults(text: str) -> str:
    """The file as Compose reads it with no variable set: every ``${VAR:-default}`` becomes its default."""
    return INTERPOLATION.sub(lambda m: m.group(3) or "", text)


COMPOSE: dict[str, Any] = yaml.safe_load(with_defaults(RAW))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
RNNSERVE = {name: s for name, s in SERVICES.items() if "build" in s}


def container_port(service: dict[str, Any]) -> int:
    return int(service["environment"]["RNNSERVE_PORT"])


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """``(host, container)`` pairs of ``ports``."""
    return [tuple(int(p) for p in str(entry).rsplit(":", 2)[-2:]) for entry in service.get("ports", [])]


def flag(service: dict[str, Any], name: str) -> str:
    values = [a.split("=", 1)[1] for a in service["command"] if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"{name} in {service['command']}"
    return values[0]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    validator = Draft202012Validator(SCHEMA)
    for document in (COMPOSE, yaml.safe_load(RAW)):
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)
        ]
        assert errors == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["rnnserve"].update(healthcheck={"test": "x", "intervall": "5s"}),
        lambda c: c["services"]["rnnserve"].update(ports="8000:8000"),
        lambda c: c["services"]["rnnserve"]["deploy"]["resources"]["limits"].update(gpus=1),
        lambda c: c.update(servics={}),
    ],
)
def test_the_schema_rejects_a_wrong_file(mutate) -> None:
    wrong = copy.deepcopy(COMPOSE)
    mutate(wrong)
    assert list(Draft202012Validator(SCHEMA).iter_errors(wrong))


def test_every_variable_has_a_default_and_is_documented() -> None:
    docs = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    found = INTERPOLATION.findall(RAW)
    assert found
    for name, operator, default in found:
        assert operator == ":-" and default, f"${{{name}}} needs a default so the file runs without a .env"
        assert f"`{name}`" in docs, f"{name} is not documented in docs/deployment.md"


def test_service_environment_names_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in RNNSERVE.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        assert [p for p in map(setting_problem, env) if p] == [], name
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.host == "0.0.0.0" and str(settings.model_repository) == "/app/models", name
        for key in env:
            monkeypatch.delenv(key)


def test_builds_name_existing_files_and_dockerfile_targets() -> None:
    for name, service in RNNSERVE.items():
        build = service["build"]
        context = REPO_ROOT / build["context"]
        assert context.is_dir(), name
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), name
        assert build["target"] in stages(dockerfile), f"{name}: no stage {build['target']!r}"
        assert service["image"].startswith("rnnserve:")


def test_rnnserve_services_have_healthcheck_limits_and_matching_ports() -> None:
    image_stage = stages(REPO_ROOT / "Dockerfile")
    for name, service in RNNSERVE.items():
        stage = image_stage[service["build"]["target"]]
        test = service["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"] and test[3] == "/ready", name
        assert test[2] == "/app/deploy/healthcheck.py" and "./deploy/healthcheck.py" in " ".join(
            stage.all("COPY")
        )
        limits = service["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= set(limits), name
        port = container_port(service)
        assert all(inside == port for _, inside in published(service)), name
        assert all(int(p) == port for p in service.get("expose", [])), name
        assert service.get("ports") or service.get("expose"), name


def test_routes_the_deployment_uses_exist(tmp_path: Path) -> None:
    app = create_app(Settings(model_repository=tmp_path))
    assert {"/health", "/ready", "/metrics", "/models"} <= set(app.openapi()["paths"])
    assert app.openapi_url == "/openapi.json", "the locustfile discovers the served endpoints there"


def test_gpu_profile_reserves_an_nvidia_gpu() -> None:
    gpu = SERVICES["rnnserve-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "gpu"
    assert gpu["environment"]["RNNSERVE_DEVICE"] == "cuda"
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_published_host_ports_do_not_collide() -> None:
    ports = [host for s in SERVICES.values() for host, _ in published(s)]
    assert len(ports) == len(set(ports)), ports


def test_bind_mounts_exist() -> None:
    gitignore = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, _target, *mode = volume.split(":")
            assert source.startswith("./"), f"{name}: {volume} (bind mounts only, relative to the repo)"
            path = REPO_ROOT / source
            if mode == ["ro"]:
                assert path.exists(), f"{name}: {source} does not exist"
            else:  # an output folder (reports): created on demand, never committed
                assert path.parent.is_dir() and f"{source[2:].rstrip('/')}/" in gitignore, f"{name}: {volume}"


def _service_port(name: str) -> int:
    return container_port(SERVICES[name])


def test_nginx_balances_every_replica_of_the_scaled_service() -> None:
    balancer = SERVICES["balancer"]
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", NGINX, flags=re.M)
    assert upstreams
    for host, port in upstreams:
        assert host in RNNSERVE and int(port) == _service_port(host), (host, port)
        replica = SERVICES[host]
        assert int(replica["deploy"]["replicas"]) > 1 and "ports" not in replica, (
            "scalable: no fixed host port"
        )
        assert balancer["depends_on"][host]["condition"] == "service_healthy"
    [listen] = re.findall(r"^\s*listen\s+(\d+);", NGINX, flags=re.M)
    assert [inside for _, inside in published(balancer)] == [int(listen)]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in balancer["volumes"]
    probe = " ".join(balancer["healthcheck"]["test"])
    assert f"127.0.0.1:{listen}" in probe and re.search(r"location = (\S+)", NGINX).group(1) in probe


def test_prometheus_scrapes_metrics_of_every_rnnserve_service() -> None:
    prometheus = SERVICES["prometheus"]
    config = "/etc/prometheus/prometheus.yml"
    assert f"./deploy/prometheus.yml:{config}:ro" in prometheus["volumes"]
    assert f"--config.file={config}" in prometheus["command"]
    scraped: set[str] = set()
    for job in PROMETHEUS["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                assert host in RNNSERVE and int(port) == _service_port(host), target
                scraped.add(host)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                assert host in RNNSERVE and dns["port"] == _service_port(host), host
                scraped.add(host)
    assert scraped == set(RNNSERVE)
    profiles = {p for name in RNNSERVE for p in SERVICES[name].get("profiles", [])} - {"gpu"}
    assert profiles <= set(prometheus["profiles"])


def test_locust_master_and_workers_aim_at_the_balancer() -> None:
    master, worker = SERVICES["locust-master"], SERVICES["locust-worker"]
    assert master["profiles"] == worker["profiles"] == ["loadtest"]
    for service in (master, worker):
        assert re.fullmatch(r"locustio/locust:\d+\.\d+\.\d+", service["image"]), "a pinned locust image"
        assert "./loadtest:/mnt/locust:ro" in service["volumes"]
    mounted = {"/mnt/locust": REPO_ROOT / "loadtest"}

    def local(path: str) -> Path:
        return mounted["/mnt/locust"] / Path(path).relative_to("/mnt/locust")

    conf = local(flag(master, "config"))
    assert conf.is_file()
    settings = dict(
        line.split("=", 1) for line in conf.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    assert (conf.parent / settings["locustfile "].strip()).is_file()
    assert local(flag(worker, "locustfile")).is_file()
    assert flag(worker, "master-host") == "locust-master"
    assert int(worker["deploy"]["replicas"]) == int(flag(master, "expect-workers"))
    host = re.fullmatch(r"http://([\w-]+):(\d+)", flag(master, "host"))
    assert host and host.group(1) == "balancer"
    assert int(host.group(2)) == int(re.search(r"listen\s+(\d+);", NGINX).group(1))
    assert master["depends_on"]["balancer"]["condition"] == "service_healthy"
    needed = {"balancer", "prometheus", "rnnserve-replica"}
    assert all("loadtest" in SERVICES[n]["profiles"] for n in needed), (
        "the loadtest profile starts its target"
    )
