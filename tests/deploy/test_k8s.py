"""deploy/k8s (kustomize) and deploy/kserve: every rendered object valid for a real cluster, and the
manifests consistent with the service (settings, routes, metrics), the image (user, environment) and each
other (selectors, names, ports). No cluster and no network: tests/deploy/kube.py says how."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings
from service.main import create_app
from service.metrics import Metrics
from tests.deploy.dockerfile import REPO_ROOT, Stage, setting_problem, stages
from tests.deploy.kube import (
    COMPONENTS,
    K8S_DIR,
    K8S_VERSIONS,
    KSERVE_FILE,
    OVERLAYS,
    InvalidObject,
    compose,
    rendered,
    validate,
)

Obj = dict[str, Any]
KSERVE: Obj = yaml.safe_load(KSERVE_FILE.read_text(encoding="utf-8"))
STAGES = stages(REPO_ROOT / "Dockerfile")
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
OVERLAY_IDS = [p.name for p in OVERLAYS]


def overlay(name: str) -> list[Obj]:
    return rendered(K8S_DIR / "overlays" / name)


def only(objects: list[Obj], kind: str) -> Obj:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def container(pod_spec: Obj) -> Obj:
    [main] = pod_spec["containers"]
    return main


def pod_spec(workload: Obj) -> Obj:
    """The pod spec of a Deployment or of an InferenceService's predictor."""
    if workload["kind"] == "InferenceService":
        return workload["spec"]["predictor"]
    return workload["spec"]["template"]["spec"]


def workloads() -> list[tuple[str, Obj, list[Obj]]]:
    """``(id, workload, objects rendered with it)`` for every overlay's Deployment and the KServe file."""
    out = [(name, only(overlay(name), "Deployment"), overlay(name)) for name in OVERLAY_IDS]
    return [*out, ("kserve", KSERVE, [KSERVE])]


WORKLOAD_IDS = [*OVERLAY_IDS, "kserve"]


def stage_of(image: str) -> Stage:
    """The Dockerfile stage an image reference was built from: the compose service with that image names
    its build target."""
    name = image.rsplit("/", 1)[-1]
    [target] = {s["build"]["target"] for s in COMPOSE["services"].values() if s.get("image") == name}
    return STAGES[target]


def container_env(workload: Obj, objects: list[Obj]) -> dict[str, str]:
    """What the container's process sees: the image's ENV, then envFrom ConfigMaps, then env."""
    main = container(pod_spec(workload))
    env = dict(stage_of(main["image"]).env())
    config_maps = {c["metadata"]["name"]: c for c in of_kind(objects, "ConfigMap")}
    for source in main.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e["value"] for e in main.get("env", []) if "value" in e})
    return env


@pytest.fixture
def settings_of(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], Settings]:
    """``Settings()`` as the service builds it in a process with exactly these ``RNNSERVE_*`` variables."""

    def build(env: dict[str, str]) -> Settings:
        for key in [k for k in os.environ if k.startswith("RNNSERVE_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("RNNSERVE_"):
                monkeypatch.setenv(key, value)
        return Settings()

    return build


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The service's own routes, looked up from the app: every path, and the liveness and readiness paths
    by what the app documents them as."""
    app = create_app(Settings(model_repository=tmp_path_factory.mktemp("models")))
    paths = app.openapi()["paths"]

    def documented_as(word: str) -> str:
        [path] = [p for p, ops in paths.items() if ops.get("get", {}).get("summary", "").startswith(word)]
        return path

    return {
        "paths": set(paths),
        "liveness": documented_as("Liveness"),
        "readiness": documented_as("Readiness"),
    }


def resolve_port(port: int | str, main: Obj) -> int:
    """A probe's or Service's target port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in main["ports"] if p.get("name") == port]
    return number


def pre_stop_seconds(main: Obj) -> float:
    pre_stop = main["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    # exec form: python -c "import time; time.sleep(N)"
    [seconds] = re.findall(r"sleep\((\d+(?:\.\d+)?)\)", " ".join(pre_stop["exec"]["command"]))
    return float(seconds)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


# ---------------------------------------------------------------- schema validation


def test_the_layout_is_there() -> None:
    assert {"cpu", "gpu"} <= set(OVERLAY_IDS)
    assert {p.name for p in COMPONENTS} == {"model-volume", "queue-depth-hpa", "migrate-queued-connections"}
    kinds = {o["kind"] for o in overlay("cpu")}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", OVERLAY_IDS)
def test_every_rendered_object_is_valid(name: str, version: str) -> None:
    objects = overlay(name)
    assert objects
    for obj in objects:
        validate(obj, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_component_renders_valid_objects_on_each_overlay(tmp_path: Path, version: str) -> None:
    for base in ("cpu", "gpu"):
        for component in COMPONENTS:
            folder = tmp_path / f"{base}-{component.name}"
            folder.mkdir()
            objects = compose(folder, [K8S_DIR / "overlays" / base], [component])
            for obj in objects:
                validate(obj, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_inferenceservice_is_valid(version: str) -> None:
    validate(KSERVE, version)


def _container_of(o: Obj) -> Obj:
    return container(pod_spec(o))


BROKEN = [
    # a wrong type, a misspelt field, a missing required field, each on a built-in kind
    (
        "port-as-text",
        "cpu",
        "Deployment",
        lambda o: _container_of(o)["ports"][0].update(containerPort="8000"),
    ),
    ("misspelt-probe", "cpu", "Deployment", lambda o: _container_of(o).update(livenesProbe={})),
    (
        "sleep-without-seconds",
        "cpu",
        "Deployment",
        lambda o: _container_of(o)["lifecycle"]["preStop"].update(sleep={"secs": 5}),
    ),
    ("user-as-text", "cpu", "Deployment", lambda o: pod_spec(o)["securityContext"].update(runAsUser="x")),
    ("toleration-effect", "gpu", "Deployment", lambda o: pod_spec(o)["tolerations"][0].update(effect=1)),
    ("service-port-missing", "cpu", "Service", lambda o: o["spec"]["ports"][0].pop("port")),
    ("min-replicas-as-text", "cpu", "HorizontalPodAutoscaler", lambda o: o["spec"].update(minReplicas="2")),
    (
        "metric-without-type",
        "cpu",
        "HorizontalPodAutoscaler",
        lambda o: o["spec"]["metrics"][0].update(type=None),
    ),
    ("selector-as-list", "cpu", "PodDisruptionBudget", lambda o: o["spec"].update(selector=["app"])),
    ("setting-as-number", "cpu", "ConfigMap", lambda o: o["data"].update(RNNSERVE_PORT=8000)),
    # the CRD kinds: their vendored schemas and ObjectMeta
    ("interval-as-number", "cpu", "ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval=15)),
    ("misspelt-endpoints", "cpu", "ServiceMonitor", lambda o: o["spec"].update(endpoint=[])),
    ("label-as-number", "cpu", "ServiceMonitor", lambda o: o["metadata"]["labels"].update(replicas=2)),
    (
        "isvc-port-as-text",
        "kserve",
        "InferenceService",
        lambda o: _container_of(o)["ports"][0].update(containerPort="8000"),
    ),
    (
        "isvc-misspelt-field",
        "kserve",
        "InferenceService",
        lambda o: o["spec"]["predictor"].update(minReplica=1),
    ),
    (
        "isvc-probe-as-text",
        "kserve",
        "InferenceService",
        lambda o: _container_of(o)["readinessProbe"].update(httpGet="/ready"),
    ),
    ("isvc-no-predictor", "kserve", "InferenceService", lambda o: o["spec"].pop("predictor")),
    # no schema at all is a failure, not a pass
    ("unknown-kind", "cpu", "Deployment", lambda o: o.update(kind="Deploymnt")),
    (
        "unknown-crd-version",
        "cpu",
        "ServiceMonitor",
        lambda o: o.update(apiVersion="monitoring.coreos.com/v2"),
    ),
]


@pytest.mark.parametrize(("source", "kind", "mutate"), [pytest.param(*b[1:], id=b[0]) for b in BROKEN])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_validation_rejects_a_broken_object(source: str, kind: str, mutate: Callable, version: str) -> None:
    original = KSERVE if source == "kserve" else only(overlay(source), kind)
    validate(original, version)
    broken = copy.deepcopy(original)
    mutate(broken)
    with pytest.raises(InvalidObject):
        validate(broken, version)


# ---------------------------------------------------------------- consistency with the service and image


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_probes_and_ports_match_the_service(name, workload, objects, settings_of, api) -> None:
    settings = settings_of(container_env(workload, objects))
    assert settings.host == "0.0.0.0", "a pod's service must listen on the pod's address"
    main = container(pod_spec(workload))
    assert main["ports"][0]["containerPort"] == settings.port
    assert {p["containerPort"] for p in main["ports"]} == {settings.port}
    probes = {kind: main[f"{kind}Probe"]["httpGet"] for kind in ("liveness", "readiness", "startup")}
    for kind, probe in probes.items():
        assert probe["path"] in api["paths"], f"{name}: {kind} probe on {probe['path']}, not a route"
        assert resolve_port(probe["port"], main) == settings.port, f"{name}: {kind} probe port"
    assert probes["liveness"]["path"] == api["liveness"], "liveness must not wait for the models"
    assert probes["readiness"]["path"] == probes["startup"]["path"] == api["readiness"]
    for service in of_kind(objects, "Service"):
        for port in service["spec"]["ports"]:
            assert resolve_port(port["targetPort"], main) == settings.port, service["metadata"]["name"]


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_startup_probe_allows_for_model_loading(name, workload, objects) -> None:
    main = container(pod_spec(workload))
    startup = main["startupProbe"]
    budget_s = startup["failureThreshold"] * startup["periodSeconds"]
    assert budget_s >= 180, f"{name}: {budget_s} s to load and warm every default model"
    liveness = main["livenessProbe"]
    assert liveness["failureThreshold"] * liveness["periodSeconds"] < budget_s


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_grace_period_covers_the_pre_stop_pause_and_the_drain(name, workload, objects, settings_of) -> None:
    settings = settings_of(container_env(workload, objects))
    main = container(pod_spec(workload))
    pause = pre_stop_seconds(main)
    assert pause >= 3, "long enough for the endpoint removal to reach every node"
    grace = pod_spec(workload)["terminationGracePeriodSeconds"]
    assert grace > settings.shutdown_timeout_s + pause, (grace, settings.shutdown_timeout_s, pause)


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_runs_as_the_image_user_read_only_and_unprivileged(name, workload, objects) -> None:
    spec = pod_spec(workload)
    main = container(spec)
    user, _, group = stage_of(main["image"]).all("USER")[-1].partition(":")
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(user), int(group or user)), name
    assert spec["automountServiceAccountToken"] is False
    ctx = main["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"] and "add" not in ctx["capabilities"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    [tmp] = [m for m in main["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]], "a writable /tmp on a read-only root"
    for mount in main["volumeMounts"]:
        assert mount["name"] in volumes, f"{name}: mount of an undefined volume {mount['name']}"
    resources = main["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_every_setting_is_a_service_setting(name, workload, objects, settings_of) -> None:
    env = {k: v for k, v in container_env(workload, objects).items() if k.startswith("RNNSERVE_")}
    assert [p for p in map(setting_problem, env) if p] == [], name
    settings_of(env)  # and each value parses


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_the_model_repository_is_in_the_image_or_on_a_mounted_volume(name, workload, objects, settings_of):
    settings = settings_of(container_env(workload, objects))
    spec = pod_spec(workload)
    main = container(spec)
    image_models = stage_of(main["image"]).env()["RNNSERVE_MODEL_REPOSITORY"]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    repository = str(settings.model_repository)
    if repository == image_models:
        assert repository not in mounts, f"{name}: the image's models are hidden by a volume"
        return
    mount = mounts[repository]
    assert mount.get("readOnly") is True, f"{name}: the service only reads the models"
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    claims = {c["metadata"]["name"] for c in of_kind(objects, "PersistentVolumeClaim")}
    assert volume["persistentVolumeClaim"]["claimName"] in claims


@pytest.mark.parametrize("name", OVERLAY_IDS)
def test_selectors_and_references_fit_together(name: str, api: dict[str, Any]) -> None:
    objects = overlay(name)
    deployment = only(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = only(objects, "Service")
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    for spread in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert selects(spread["labelSelector"]["matchLabels"], pod_labels)
    target = only(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    monitor = only(objects, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] in api["paths"]
    config_maps = {c["metadata"]["name"] for c in of_kind(objects, "ConfigMap")}
    for source in container(pod_spec(deployment))["envFrom"]:
        assert source["configMapRef"]["name"] in config_maps


def test_cpu_and_gpu_overlays_can_share_a_namespace() -> None:
    cpu, gpu = overlay("cpu"), overlay("gpu")
    names = [{(o["kind"], o["metadata"]["name"]) for o in objects} for objects in (cpu, gpu)]
    assert not names[0] & names[1]
    for mine, other in ((cpu, gpu), (gpu, cpu)):
        pods = only(other, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert not selects(only(mine, "Service")["spec"]["selector"], pods)
        assert not selects(only(mine, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pods)
        monitor = only(mine, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
        assert not selects(monitor, only(other, "Service")["metadata"]["labels"])


@pytest.mark.parametrize(("name", "workload", "objects"), workloads(), ids=WORKLOAD_IDS)
def test_device_image_and_gpu_resources_go_together(name, workload, objects, settings_of) -> None:
    settings = settings_of(container_env(workload, objects))
    spec = pod_spec(workload)
    main = container(spec)
    stage = stage_of(main["image"])
    assert settings.device == stage.env()["RNNSERVE_DEVICE"], f"{name}: device of the {stage.name} image"
    gpus = main["resources"]["limits"].get("nvidia.com/gpu")
    tolerations = {t["key"] for t in spec.get("tolerations", [])}
    if settings.device == "cuda":
        assert int(gpus) == 1 and int(main["resources"]["requests"]["nvidia.com/gpu"]) == 1
        assert "nvidia.com/gpu" in tolerations
    else:
        assert gpus is None and "nvidia.com/gpu" not in tolerations


def test_gpu_overlay_uses_the_gpu_image_and_device() -> None:
    main = container(pod_spec(only(overlay("gpu"), "Deployment")))
    assert stage_of(main["image"]).name == "gpu"
    assert only(overlay("gpu"), "ConfigMap")["data"]["RNNSERVE_DEVICE"] == "cuda"
    assert stage_of(container(pod_spec(only(overlay("cpu"), "Deployment")))["image"]).name == "runtime"


def test_the_model_volume_overlay_moves_only_the_model_repository() -> None:
    cpu, volume = overlay("cpu"), overlay("cpu-model-volume")
    changed = {
        k: v
        for k, v in only(volume, "ConfigMap")["data"].items()
        if only(cpu, "ConfigMap")["data"].get(k) != v
    }
    assert list(changed) == ["RNNSERVE_MODEL_REPOSITORY"]
    assert changed["RNNSERVE_MODEL_REPOSITORY"] != "/app/models"
    assert len(of_kind(volume, "PersistentVolumeClaim")) == 1 and not of_kind(cpu, "PersistentVolumeClaim")


def test_hpa_scales_on_cpu_by_default_and_the_queue_depth_component_adds_the_exported_gauge(
    tmp_path: Path,
) -> None:
    for name in OVERLAY_IDS:
        hpa = only(overlay(name), "HorizontalPodAutoscaler")
        assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"], name
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    component = K8S_DIR / "components" / "queue-depth-hpa"
    hpa = only(compose(tmp_path, [K8S_DIR / "overlays" / "cpu"], [component]), "HorizontalPodAutoscaler")
    resource, pods = hpa["spec"]["metrics"]
    assert resource["type"] == "Resource" and pods["type"] == "Pods"
    metric = pods["pods"]["metric"]["name"]
    rules = yaml.safe_load((component / "prometheus-adapter-rules.yaml").read_text(encoding="utf-8"))
    [rule] = rules["rules"]["custom"]
    assert rule["name"]["as"] == metric
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    assert re.fullmatch(rule["name"]["matches"], series)
    gauges = {m.name: m.type for m in Metrics().registry.collect()}
    assert gauges.get(series) == "gauge", f"{series} is not a gauge the service exports"
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_the_migration_component_asks_the_kernel_to_hand_over_queued_connections(tmp_path: Path) -> None:
    """The sysctl the service checks at start (service.listener), on the pod, and nothing else changed."""
    from service.listener import MIGRATE_REQ

    for base in ("cpu", "gpu"):
        plain = pod_spec(only(overlay(base), "Deployment"))
        component = K8S_DIR / "components" / "migrate-queued-connections"
        folder = tmp_path / base
        folder.mkdir()
        spec = pod_spec(only(compose(folder, [K8S_DIR / "overlays" / base], [component]), "Deployment"))
        sysctls = spec["securityContext"].pop("sysctls")
        assert sysctls == [{"name": ".".join(MIGRATE_REQ.parts[3:]), "value": "1"}]
        assert spec == plain, base


def test_the_inferenceservice_is_a_custom_predictor_on_the_task_routes(api: dict[str, Any]) -> None:
    assert KSERVE["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = KSERVE["spec"]["predictor"]
    main = container(predictor)
    assert main["name"] == "kserve-container", "KServe's name for a custom predictor's container"
    assert not {"model", "sklearn", "onnx", "triton"} & set(predictor), "a custom container, no runtime"
    protocol = {e["name"]: e["value"] for e in main["env"]}.get("PROTOCOL", "v1")
    speaks_v2 = "/v2/health/ready" in api["paths"]
    assert protocol == ("v2" if speaks_v2 else "v1"), "declare v2 exactly when the service serves it"


def test_the_deployment_doc_names_existing_manifests() -> None:
    doc = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    named = set(re.findall(r"deploy/(?:k8s|kserve)/[\w./-]*\w", doc))
    assert {
        "deploy/k8s/overlays/cpu",
        "deploy/k8s/overlays/gpu",
        "deploy/kserve/inferenceservice.yaml",
    } <= named
    for path in named:
        assert (REPO_ROOT / path).exists(), path
