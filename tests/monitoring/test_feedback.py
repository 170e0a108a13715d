"""Ground truth joined to logged predictions: realized and estimated accuracy, regressors' error,
and feedback the server refuses (unknown ids, labels of the wrong type) with V2 error bodies."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import numpy as np
import pytest

import modelport
from modelport.monitoring.monitor import MonitorOptions
from tests.monitoring.conftest import infer_body, metric, monitored_app
from tests.serving.conftest import save_graph

pytestmark = pytest.mark.anyio
ROWS = 5


def make_regressor_onnx(path: Path) -> Path:
    """input [batch, 4] -> value [batch, 1]: the sum of the inputs."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["value"])], "sum",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.ones((4, 1), np.float32), "w")],
    )  # fmt: skip
    return save_graph(graph, path)


async def predict(client, model: str, request_id: str, x: np.ndarray) -> np.ndarray:
    reply = await client.post(f"/v2/models/{model}/infer", json=infer_body(x, request_id))
    assert reply.status_code == 200
    out = reply.json()["outputs"][0]
    return np.asarray(out["data"]).reshape(out["shape"])


async def test_realized_and_estimated_accuracy(monitored_registry) -> None:
    rng = np.random.default_rng(5)
    options = MonitorOptions(interval=0.05, refresh=0.2)
    async with monitored_app(monitored_registry, options) as (client, monitor):
        probabilities = []
        for i in range(20):
            x = rng.standard_normal((ROWS, 4)).astype(np.float32)
            probabilities.append(await predict(client, "mlp", f"q{i}", x))
        classes = [p.argmax(axis=1) for p in probabilities]
        wrong = [(c + 1) % 3 for c in classes]
        labels = [c.tolist() for c in classes[:10]] + [w.tolist() for w in wrong[10:]]
        reply = await client.post("/v2/models/mlp/feedback", json={
            "request_ids": [f"q{i}" for i in range(20)], "ground_truth": labels})  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"model": "mlp", "joined": 100, "metric": "accuracy",
                                "realized": {"1": 0.5}}  # fmt: skip
        expected = np.concatenate(probabilities).max(axis=1).mean()  # over all 100 rows
        deadline = time.monotonic() + 10
        while monitor.feedbacks.estimated("mlp", 1) != pytest.approx(expected, abs=1e-6):
            assert time.monotonic() < deadline, "the estimate never took in every row"
            await anyio.sleep(0.02)
        text = (await client.get("/metrics")).text

        refused = await client.post("/v2/models/mlp/feedback", json={
            "request_ids": ["q0", "never-seen"], "ground_truth": [0, 1]})  # fmt: skip
        assert refused.status_code == 404 and "'never-seen'" in refused.json()["error"]
        assert monitor.feedbacks.realized("mlp", 1) == 0.5  # nothing of a refused call counts
        for labels, why in ((["cat"], "number"), ([True], "number"), ([1.5], "class index"),
                            ([[0, 1]], "5 rows")):  # fmt: skip
            bad = await client.post(
                "/v2/models/mlp/feedback", json={"request_ids": ["q0"], "ground_truth": labels}
            )
            assert bad.status_code == 400 and why in bad.json()["error"], bad.text
        for body in ([1, 2], {"request_ids": "q0", "ground_truth": [0]},
                     {"request_ids": ["q0"], "ground_truth": []}):  # fmt: skip
            bad = await client.post("/v2/models/mlp/feedback", json=body)
            assert bad.status_code == 400 and "error" in bad.json()
    assert metric(text, "modelport_accuracy", model="mlp", version="1", kind="realized") == 0.5
    estimated = metric(text, "modelport_accuracy", model="mlp", version="1", kind="estimated")
    assert estimated == pytest.approx(expected, abs=1e-6)


async def test_a_regressor_reports_its_error(tmp_path: Path, monitored_registry) -> None:
    modelport.register(make_regressor_onnx(tmp_path / "sum.onnx"), "summer",
                       registry=monitored_registry, alias="production")  # fmt: skip
    x = np.arange(8, dtype=np.float32).reshape(2, 4)  # sums 6 and 22
    async with monitored_app(monitored_registry, MonitorOptions()) as (client, _monitor):
        assert (await predict(client, "summer", "s1", x)).ravel().tolist() == [6.0, 22.0]
        reply = await client.post(
            "/v2/models/summer/feedback", json={"request_ids": ["s1"], "ground_truth": [[7, 20.5]]}
        )
        assert reply.status_code == 200 and reply.json()["realized"] == {"1": 1.25}
        assert reply.json()["metric"] == "mae"
        text = (await client.get("/metrics")).text
        wrong_model = await client.post(
            "/v2/models/mlp/feedback", json={"request_ids": ["s1"], "ground_truth": [1]}
        )
        assert wrong_model.status_code == 404  # ids are per model
    assert metric(text, "modelport_prediction_error", model="summer", version="1",
                  metric="mae") == 1.25  # fmt: skip


async def test_a_classifier_with_a_label_output(tmp_path: Path, monitored_registry) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    x, y = iris.data.astype(np.float32), iris.target
    model = LogisticRegression(max_iter=300).fit(x, y)
    modelport.register(model, "iris", registry=monitored_registry, sample_input=x[:1],
                       alias="production")  # fmt: skip
    rows = x[::10]  # 15 rows
    async with monitored_app(monitored_registry, MonitorOptions()) as (client, _monitor):
        reply = await client.post("/v2/models/iris/infer", json=infer_body(rows, "i1"))
        outputs = {o["name"]: o for o in reply.json()["outputs"]}
        label = next(o for o in outputs.values() if o["datatype"].startswith("INT"))
        feedback = await client.post("/v2/models/iris/feedback", json={
            "request_ids": ["i1"], "ground_truth": [y[::10].tolist()]})  # fmt: skip
    expected = float(np.mean(np.asarray(label["data"]) == y[::10]))
    assert feedback.json()["metric"] == "accuracy"
    assert feedback.json()["realized"] == {"1": pytest.approx(expected)}
