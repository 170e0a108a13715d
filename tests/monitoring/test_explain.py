"""Explanations: a background set stored on the version, additive attributions, the REST routes
(V2 and TF Serving's :explain) on the real app with a time budget and bounded jobs, the CLI."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx
from tests.serving.conftest import running_app, v2_input

BACKGROUND_ROWS = 30  # a small background keeps the kernel method fast in tests


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, object]:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: the attributions need no good model
        clf = MLPClassifier((16,), max_iter=40, random_state=0).fit(x, y)
    return x, clf


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, digits) -> Iterator[tuple[Path, Registry]]:
    """digits:1 (64 features) with a background set stored by the CLI; mlp:1 (4) without."""
    tmp = tmp_path_factory.mktemp("explain")
    x, clf = digits
    registry = Registry(Settings(home=tmp / "home", user="tester"))
    modelport.register(clf, "digits", registry=registry, sample_input=x[:2], alias="production")
    modelport.register(make_mlp_onnx(tmp / "mlp.onnx"), "mlp", registry=registry,
                       alias="production")  # fmt: skip
    np.save(tmp / "background.npy", x[:BACKGROUND_ROWS])
    result = cli(tmp / "home", "explain", "background", "digits:1", "--data",
                 str(tmp / "background.npy"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"background set of digits:1: {BACKGROUND_ROWS} rows x 64 features" in result.output
    try:
        yield tmp, registry
    finally:
        registry.close()


@dataclass
class Result:
    exit_code: int
    output: str


def cli(home: Path, *args: str) -> Result:
    """The ``modelport`` entry point in this process (its error handling included)."""
    from modelport.cli import main
    from modelport.cli.common import state

    state.overrides.clear()
    state._settings = state._registry = None
    out, argv = io.StringIO(), sys.argv
    sys.argv = ["modelport", "--home", str(home), *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
        if state._registry is not None:
            state._registry.close()
        state._settings = state._registry = None
    return Result(code, out.getvalue())


def test_the_background_set_is_a_blob_the_version_references(home) -> None:
    from modelport.monitoring.explain import background_of

    tmp, registry = home
    version = registry.resolve("digits:1")
    digest = version.tags["attachment.explain-background"]
    registry.gc(grace_seconds=0)  # referenced from the tags: kept
    assert registry.blobs.check(digest) is None
    stored = background_of(registry, version)
    assert stored.shape == (BACKGROUND_ROWS, 64) and stored.dtype == np.float32
    [event] = [e for e in registry.history("digits") if e.action == "attach"]
    assert event.version == 1


@pytest.mark.parametrize("method", ["permutation", "kernel"])
def test_attributions_sum_to_the_output_minus_its_expectation(home, digits, method) -> None:
    from modelport.api import load
    from modelport.monitoring.explain import background_of, explain

    _tmp, registry = home
    x, _clf = digits
    version = registry.resolve("digits:1")
    background = background_of(registry, version)
    runtime = load(version, registry=registry)
    try:
        result = explain(runtime, x[500:502], background, method=method)
        expected = runtime.predict({"input": background})["probabilities"].mean(axis=0)
    finally:
        runtime.close()
    assert result.output == "probabilities" and result.values.shape == (2, 64, 10)
    np.testing.assert_allclose(result.base_values, np.broadcast_to(expected, (2, 10)), atol=1e-5)
    total = result.values.sum(axis=1) + result.base_values
    np.testing.assert_allclose(total, result.prediction, atol=1e-5)
    assert np.abs(result.values).max() > 1e-3  # the model's inputs matter: not all zeros


def test_the_exact_method_on_a_small_model_is_additive_too(home) -> None:
    from modelport.api import load
    from modelport.monitoring.explain import explain

    tmp, registry = home
    rng = np.random.default_rng(0)
    runtime = load(registry.resolve("mlp:1"), registry=registry)
    try:
        x, background = rng.standard_normal((3, 4)), rng.standard_normal((20, 4))
        result = explain(runtime, x, background, method="exact")
    finally:
        runtime.close()
    np.testing.assert_allclose(result.values.sum(axis=1) + result.base_values, result.prediction,
                               atol=1e-5)  # fmt: skip


def test_the_cli_explains_rows_and_says_how_to_add_a_background(home, digits) -> None:
    tmp, _registry = home
    x, _clf = digits
    np.save(tmp / "rows.npy", x[600:602])
    result = cli(tmp / "home", "explain", "digits", "--input", str(tmp / "rows.npy"),
                 "--method", "kernel", "--top", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "digits:1: kernel attributions of 'probabilities'" in result.output
    assert "top 3 features" in result.output
    np.save(tmp / "mlp_rows.npy", np.ones((1, 4), np.float32))
    missing = cli(tmp / "home", "explain", "mlp", "--input", str(tmp / "mlp_rows.npy"))
    assert missing.exit_code == 1
    assert "no background set" in missing.output
    assert "modelport explain background mlp:1 --data FILE" in missing.output
    np.save(tmp / "narrow.npy", np.ones((10, 3), np.float32))
    narrow = cli(tmp / "home", "explain", "background", "mlp", "--data", str(tmp / "narrow.npy"))
    assert narrow.exit_code == 1 and "needs [rows, 4]" in narrow.output
    for failed in (missing, narrow):
        assert "Traceback" not in failed.output and failed.output.startswith("error: ")
        assert len(failed.output.strip().splitlines()) == 1


# -- the REST routes on the real app ---------------------------------------------------------


@pytest.fixture(scope="module")
async def client(home) -> AsyncIterator:
    from modelport.serving.rest_explain import ExplainOptions

    _tmp, registry = home
    async with running_app(registry, explain=ExplainOptions(budget=30.0, max_jobs=1)) as client:
        yield client


def _explain_body(x: np.ndarray, method: str = "kernel") -> dict:
    return {"inputs": [v2_input(x)], "parameters": {"method": method}}


@pytest.mark.anyio
async def test_v2_and_tfserving_explain_within_the_budget(client, digits) -> None:
    x, _clf = digits
    reply = await client.post("/v2/models/digits/explain", json=_explain_body(x[700:701]))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == "digits" and body["shape"] == [1, 64, 10]
    values, base = np.array(body["attributions"]), np.array(body["base_values"])
    np.testing.assert_allclose(values.sum(axis=1) + base, body["prediction"], atol=1e-5)
    tf = await client.post("/v1/models/digits/versions/1:explain",
                           json={"instances": x[700:701].tolist(),
                                 "parameters": {"method": "kernel"}})  # fmt: skip
    assert tf.status_code == 200, tf.text
    tf_values, tf_base = np.array(tf.json()["attributions"]), np.array(tf.json()["base_values"])
    np.testing.assert_allclose(tf.json()["prediction"], body["prediction"], atol=1e-6)
    np.testing.assert_allclose(tf_values.sum(axis=1) + tf_base, body["prediction"], atol=1e-5)


@pytest.mark.anyio
async def test_explain_refuses_bad_input_with_a_400(client, digits) -> None:
    x, _clf = digits
    missing = await client.post("/v2/models/mlp/explain", json=_explain_body(np.ones((1, 4))))
    assert missing.status_code == 400
    assert "modelport explain background mlp:1 --data FILE" in missing.json()["error"]
    wrong = await client.post("/v2/models/digits/explain", json=_explain_body(x[:1, :60]))
    assert wrong.status_code == 400 and "the model expects 64" in wrong.json()["error"]
    tf_wrong = await client.post("/v1/models/digits:explain", json={"instances": [[1.0, 2.0]]})
    assert tf_wrong.status_code == 400
    many = await client.post("/v2/models/digits/explain", json=_explain_body(x[:17]))
    assert many.status_code == 400 and "1 to 16 rows" in many.json()["error"]
    method = await client.post("/v2/models/digits/explain", json=_explain_body(x[:1], "magic"))
    assert method.status_code == 400 and "permutation, kernel, exact" in method.json()["error"]
    unknown = await client.post("/v2/models/nope/explain", json=_explain_body(x[:1]))
    assert unknown.status_code == 404
    job = await client.get("/v2/models/digits/explain/0123456789abcdef")
    assert job.status_code == 404


@pytest.mark.anyio
async def test_past_the_budget_a_job_answers_later_and_jobs_are_bounded(client, digits) -> None:
    from modelport.serving.rest_explain import ExplainOptions

    x, _clf = digits
    explainer = client._transport.app.explain
    assert explainer.warm()  # digits has a background set: shap loads in the explain thread
    explainer._executor.submit(lambda: None).result(timeout=120)  # warmed
    explainer.options = ExplainOptions(budget=0.05, max_jobs=1)
    gate = threading.Event()
    explainer._executor.submit(gate.wait, 30)  # the one explain thread is busy: requests wait
    try:
        first = await client.post("/v2/models/digits/explain", json=_explain_body(x[800:801]))
        assert first.status_code == 202, first.text
        job = first.json()["id"]
        assert first.headers["location"] == f"/v2/models/digits/explain/{job}"
        second = await client.post("/v2/models/digits/explain", json=_explain_body(x[801:802]))
        assert second.status_code == 429 and "retry later" in second.json()["error"]
        running = await client.get(f"/v2/models/digits/explain/{job}")
        assert running.status_code == 202 and running.json()["status"] == "running"
        infer = await client.post("/v2/models/digits/infer", json={"inputs": [v2_input(x[:2])]})
        assert infer.status_code == 200  # inference goes on while explanations wait
    finally:
        gate.set()
    for _ in range(600):  # bounded: at most 600 polls of 50 ms
        done = await client.get(f"/v2/models/digits/explain/{job}")
        if done.status_code != 202:
            break
        await anyio.sleep(0.05)
    assert done.status_code == 200, done.text
    assert done.json()["job"] == job and done.json()["shape"] == [1, 64, 10]
    assert (await client.get(f"/v2/models/mlp/explain/{job}")).status_code == 404


def test_explain_options_refuse_nonsense() -> None:
    from modelport.errors import InvalidInput
    from modelport.serving.rest_explain import ExplainOptions

    assert ExplainOptions(budget=0).budget == 0  # every explanation becomes a job
    for bad in ({"budget": -1.0}, {"budget": float("nan")}, {"max_jobs": 0}, {"workers": 0}):
        with pytest.raises(InvalidInput):
            ExplainOptions(**bad)
