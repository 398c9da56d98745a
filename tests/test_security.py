"""Security (see SECURITY.md): the HTTP API fuzzed from its own OpenAPI schema (schemathesis) answers no 5xx;
every route but /healthz needs the token when one is configured (routes enumerated from the app, so new ones are
covered); and the package's source never deserializes with pickle, runs remote code or hands strings to a shell."""

from __future__ import annotations

import ast
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from tests._harness.metadatasets import FAST, synthetic_metadataset
from tuneahead_ray.predictor import ScorePredictor, load_predictor, save_predictor
from tuneahead_ray.serve import ModelBackend, ServeConfig, create_fastapi_app

schemathesis = pytest.importorskip("schemathesis")

PACKAGE = Path(__file__).resolve().parents[1] / "tuneahead_ray"
TOKEN = "fuzz-token"
PUBLIC = {"/healthz"}


def make_app(directory: Path, data_root: Path | None = None):
    save_predictor(ScorePredictor(config=FAST).fit(synthetic_metadataset(300, seed=5), "y"), directory / "model")
    (directory / "token").write_text(TOKEN)
    predictor, card = load_predictor(directory / "model")
    config = ServeConfig(
        model_dir=directory / "model", token_file=directory / "token", max_rows=50, data_root=data_root
    )
    return create_fastapi_app(ModelBackend(predictor, card), config)


#: Built at import: schemathesis parametrizes the test from the app's schema at collection time.
APP = make_app(Path(tempfile.mkdtemp(prefix="tuneahead-fuzz-")))
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def fuzz_counts():
    counts: Counter[str] = Counter()
    yield counts
    print(f"\nfuzzed cases per operation (each sent with and without the token): {dict(counts)}")


@SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_from_the_openapi_schema_never_get_a_5xx(case, fuzz_counts) -> None:
    fuzz_counts[f"{case.method} {case.path}"] += 1
    authed = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert authed.status_code < 500, (case.method, case.path, case.body, authed.text)
    anonymous = case.call()
    expected = 200 if case.path in PUBLIC else 401
    assert anonymous.status_code < 500 and (anonymous.status_code == expected or case.path in PUBLIC)


def app_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app answers: API routes, the docs and the schema."""
    routes = []
    for route in app.routes:
        methods = route.methods if isinstance(route, APIRoute) else getattr(route, "methods", None) or {"GET"}
        routes += [(method, route.path) for method in sorted(methods - {"HEAD"})]
    return routes


def test_every_route_but_health_needs_the_token() -> None:
    client = TestClient(APP)
    routes = app_routes(APP)
    assert {("POST", "/v1/predict"), ("POST", "/v1/explain"), ("GET", "/v1/model"), ("GET", "/docs")} <= set(routes)
    assert ("GET", "/openapi.json") in routes
    for method, path in routes:
        url = path.replace("{", "").replace("}", "")  # any path parameter: the token is checked first
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
            response = client.request(method, url, headers=headers, json={"rows": [{}]})
            if path in PUBLIC:
                assert response.status_code == 200, (method, path)
            else:
                assert response.status_code == 401, (method, path, headers, response.status_code)
                assert response.json()["error"] == "unauthorized"
        response = client.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}, json={"rows": [{}]})
        assert response.status_code != 401, (method, path)


# ------------------------------------------------------------------------------------------ static scan

#: Modules whose import would deserialize or execute untrusted bytes.
FORBIDDEN_MODULES = {"pickle", "cPickle", "joblib", "dill", "cloudpickle", "marshal", "shelve"}
#: (file relative to the package, call) pairs that are allowed, with the reason; empty today.
ALLOWED: dict[tuple[str, str], str] = {}


def _call_name(node: ast.Call) -> str:
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")  # model.eval() is not eval()
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _is_true(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def findings(source: str, relative: str) -> list[str]:
    """Every dangerous construct in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name in ("os.system", "os.popen", "eval", "exec", "subprocess.getoutput", "subprocess.getstatusoutput"):
            found.append(f"calls {name}")
        if _is_true(_keyword(node, "shell")):
            found.append(f"calls {name} with shell=True")
        if _keyword(node, "trust_remote_code") is not None and not _is_false(_keyword(node, "trust_remote_code")):
            found.append(f"calls {name} with trust_remote_code not False")
        if name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"calls {name} without weights_only=True")
        if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load") and "SafeLoader" not in ast.unparse(node):
            found.append(f"calls {name} without a safe loader")
        if name in ("numpy.load", "np.load") and _is_true(_keyword(node, "allow_pickle")):
            found.append(f"calls {name} with allow_pickle=True")
    return [f"{relative}:{item}" for item in found if (relative, item.split(" ", 1)[1]) not in ALLOWED]


def _is_false(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is False


def test_the_package_never_unpickles_runs_remote_code_or_uses_a_shell() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 30
    problems = [p for path in sources for p in findings(path.read_text("utf-8"), str(path.relative_to(PACKAGE)))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("snippet", "problem"),
    [
        ("import pickle", "imports pickle"),
        ("from joblib import load", "imports joblib"),
        ("import torch\ntorch.load(path)", "calls torch.load without weights_only=True"),
        ("subprocess.run(cmd, shell=True)", "calls subprocess.run with shell=True"),
        ("os.system('ls ' + name)", "calls os.system"),
        ("AutoModel.from_pretrained(p, trust_remote_code=True)", "trust_remote_code not False"),
        ("yaml.load(text, Loader=yaml.Loader)", "calls yaml.load without a safe loader"),
        ("eval(user_text)", "calls eval"),
    ],
)
def test_the_scan_catches_each_dangerous_construct(snippet, problem) -> None:
    assert any(problem in finding for finding in findings(snippet, "x.py")), findings(snippet, "x.py")


def test_the_scan_accepts_the_safe_forms() -> None:
    safe = (
        "torch.load(p, weights_only=True)\nyaml.safe_load(t)\nsubprocess.run(['ls', name])\n"
        "AutoModel.from_pretrained(p, trust_remote_code=False)\nyaml.load(t, Loader=yaml.SafeLoader)"
    )
    assert findings(safe, "x.py") == []
