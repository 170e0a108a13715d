"""``modelport monitor``: reference statistics, labels for a running server, drift reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.cli.common import console, registry

monitor_app = typer.Typer(help="Watch served models: reference data, feedback, drift reports.",
                          no_args_is_help=True)  # fmt: skip


@monitor_app.command("baseline")
def baseline(
    ref: Annotated[str, typer.Argument(help="The version: 'digits:3', 'digits@production'.")],
    data: Annotated[
        Path, typer.Option(help="Training or evaluation inputs (NPY, NPZ, CSV, Parquet, JSON).")
    ],  # fmt: skip
) -> None:
    """Store reference statistics on a version: per-feature bins and quantiles, and the
    distribution of its outputs (the model runs on DATA). Drift is measured against them."""
    from modelport.datafiles import read_numbers
    from modelport.monitoring.reference import TAG, load_reference
    from modelport.monitoring.reference import baseline as compute

    version = compute(registry(), ref, read_numbers(data))
    reference = load_reference(registry(), version)
    console.print(f"{version.ref}: reference of {reference.rows} rows, "
                  f"{len(reference.features) - reference.outputs} input features, "
                  f"{reference.outputs} outputs ({TAG}={version.tags[TAG][:19]}...)",
                  highlight=False)  # fmt: skip


@monitor_app.command("feedback")
def feedback(
    model: Annotated[str, typer.Argument(help="The served model's name.")],
    labels: Annotated[
        Path,
        typer.Option(
            help='CSV (request_id,label) or JSON {"request_ids": [...], "ground_truth": [...]}.'
        ),
    ],
    url: Annotated[str, typer.Option(help="The server.")] = "http://127.0.0.1:8080",
    api_key: Annotated[str | None, typer.Option(help="An 'infer' API key.")] = None,
) -> None:
    """Send ground truth for logged predictions to a running server; print realized accuracy."""
    body = _labels(labels)
    answer = _post(f"{url.rstrip('/')}/v2/models/{model}/feedback", body, api_key)
    realized = ", ".join(f"version {v}: {a:.4f}" for v, a in answer["realized"].items())
    metric = "accuracy" if answer["metric"] == "accuracy" else "mean absolute error"
    console.print(f"{model}: {answer['joined']} labelled rows joined; realized {metric} "
                  f"{realized}", highlight=False)  # fmt: skip


@monitor_app.command("report")
def report(
    ref: Annotated[str, typer.Argument(help="The version whose reference to compare against.")],
    log: Annotated[str, typer.Option(help="The payload log: a folder or fsspec URL.")],
    output: Annotated[Path, typer.Option(help="report.html, or a .png of the plots.")],
    since: Annotated[
        str | None,
        typer.Option(help="Only events after this: an ISO time or an age like 90m, 24h, 7d."),
    ] = None,  # fmt: skip
) -> None:
    """Drift per feature with plots, distributions against the reference, latency and volume
    over time, from the payload log; no raw rows in the output."""
    from modelport.monitoring.report import write_report

    summary = write_report(registry(), ref, log, output, since)
    console.print(f"{output}: {summary['rows']} rows of {summary['events']} events, "
                  f"{summary['flagged']} of {summary['features']} features drifted",
                  highlight=False)  # fmt: skip


def monitor_options(settings: Any, log: str | None, sample: float | None, models: Any,
                    masks: Any, window: int, refresh: float) -> Any:  # fmt: skip
    """The server's MonitorOptions from ``serve``'s options, on top of the settings."""
    from modelport.errors import InvalidInput
    from modelport.monitoring.drift import DriftOptions
    from modelport.monitoring.monitor import MonitorOptions
    from modelport.monitoring.payload import PayloadOptions

    sample = settings.payload_sample if sample is None else sample
    if not 0.0 <= sample <= 1.0:
        raise InvalidInput(f"--payload-sample must be between 0 and 1, got {sample}")
    how: dict[str, list[str]] = {"redact": [], "hash": []}
    for mask in masks or ():
        name, _, action = mask.partition("=")
        if action not in how or not name:
            raise InvalidInput(f"--payload-mask {mask!r} is not NAME=redact or NAME=hash")
        how[action].append(name)
    payload = PayloadOptions(sample=sample, models=tuple(models or ()),
                             redact=tuple(how["redact"]), hash=tuple(how["hash"]))  # fmt: skip
    drift = DriftOptions(window=window, min_rows=min(1000, window // 2))
    return MonitorOptions(payload_log=log or settings.payload_log or None, payload=payload,
                          drift_options=drift, refresh=refresh)  # fmt: skip


def _labels(path: Path) -> dict[str, Any]:
    from modelport.errors import InvalidInput

    if not path.is_file():
        raise InvalidInput(f"labels file {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise InvalidInput(f"{path} is not JSON: {exc}") from None
    ids, truth = [], []
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if not row or row[0] == "request_id":
                continue
            if len(row) != 2:
                raise InvalidInput(f"{path}: each row must be request_id,label")
            ids.append(row[0])
            truth.append(_number(row[1]))
    return {"request_ids": ids, "ground_truth": truth}


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # the server says why a label is not a number
    return int(value) if value.is_integer() else value


def _post(url: str, body: dict, api_key: str | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    from modelport.errors import InvalidInput, ModelportError

    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError):
            message = exc.reason
        error = ModelportError(f"the server refused the feedback ({exc.code}): {message}")
        error.status = exc.code
        raise error from None
    except (urllib.error.URLError, OSError) as exc:
        raise InvalidInput(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
