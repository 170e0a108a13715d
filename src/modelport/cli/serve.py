"""``modelport serve``: Open Inference Protocol (REST + gRPC) and TF-Serving REST in one process."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport.cli.common import console, registry

SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
              "gb": 1000**3, "gib": 1024**3}  # fmt: skip


def serve(
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to serve: 'digits' (newest), 'digits:2' (a version), 'digits@staging'. "
            "Default: every model that has --alias.",
            show_default=False,
        ),
    ] = None,
    alias: Annotated[
        str, typer.Option(help="Serve every model with this alias (no REFs).")
    ] = "production",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    http_port: Annotated[
        int, typer.Option(help="HTTP port (V2, TF-Serving, /metrics).", min=1, max=65535)
    ] = 8080,
    grpc_port: Annotated[
        int, typer.Option(help="gRPC port; 0 turns gRPC off.", min=0, max=65535)
    ] = 8081,
    policy: Annotated[
        str, typer.Option(help="Which versions stay loaded: aliased | latest:N | specific.")
    ] = "aliased",
    max_batch_size: Annotated[
        int, typer.Option(help="Dynamic batching: most requests merged in one call (1 = off).")
    ] = 1,
    max_queue_delay_us: Annotated[
        int, typer.Option(help="Dynamic batching: longest wait for a batch to fill, microseconds.")
    ] = 500,
    batch: Annotated[
        list[str] | None,
        typer.Option(
            help="Per-model batching, NAME=SIZE or NAME=SIZE:DELAY_US (overrides the two options "
            "above for that model); repeatable.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Per-request timeout in seconds (504).")] = 30.0,
    max_request_size: Annotated[
        str, typer.Option(help="Largest request body (413 above it), e.g. 64MiB.")
    ] = "64MiB",
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            help="ROLE:KEY or NAME=ROLE:KEY, role 'infer' or 'admin'; repeatable. Env "
            "MODELPORT_API_KEYS (comma-separated). No key: open server, loopback only unless "
            "--allow-unauthenticated.",
            show_default=False,
        ),
    ] = None,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between registry checks for alias moves.")
    ] = 2.0,
    workers: Annotated[int, typer.Option(help="Inference threads (0 = one per core).")] = 0,
    inline_below_us: Annotated[
        int,
        typer.Option(
            help="Run a model call on the event loop when it is estimated to take less than this "
            "(microseconds; 0 = always in a worker thread)."
        ),
    ] = 1000,
    rollout_key: Annotated[
        str | None,
        typer.Option(
            help="An input whose value keys the sticky rollout split when a request has no "
            "X-Modelport-Key header.",
            show_default=False,
        ),
    ] = None,
    shadow_runner: Annotated[
        str,
        typer.Option(
            help="Where rollout shadow copies run: process (a worker process opening the "
            "candidate), thread, or loop (on the event loop between requests)."
        ),
    ] = "process",
    intra_op_threads: Annotated[
        int | None,
        typer.Option(
            help="Threads inside one model call (default: the registry setting; 1 suits small "
            "models under concurrent load).",
            show_default=False,
        ),
    ] = None,
    slots: Annotated[
        int, typer.Option(help="Language models: sequences decoded together (continuous batching).")
    ] = 4,
    context: Annotated[
        int, typer.Option(help="Language models: positions per sequence (0: model's, <= 4096).")
    ] = 0,
    max_queue: Annotated[
        int, typer.Option(help="Language models: requests waiting for a slot before 429.")
    ] = 64,
    memory_budget: Annotated[
        str | None,
        typer.Option(
            help="Language models: memory for all open ones (e.g. 8GiB); idle ones close "
            "least-recently-used to make room (default: at most 2 open).",
            show_default=False,
        ),
    ] = None,
    model_repository: Annotated[
        str | None,
        typer.Option(
            help="Serve a Triton / TF Serving / OVMS folder DIR/<name>/<version>/<model file> "
            "instead of the catalogue, polled for new versions.",
            show_default=False,
        ),
    ] = None,
    model_dir: Annotated[
        str | None,
        typer.Option(
            help="Serve one model folder (KServe's /mnt/models): <version>/<file> or the file.",
            show_default=False,
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="The name --model-dir serves under (default: the folder's name).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            help="TLS certificate (PEM chain) for HTTPS and gRPC; needs --tls-key.",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option(help="TLS private key (PEM) of --tls-cert.", show_default=False)
    ] = None,
    tls_client_ca: Annotated[
        str | None,
        typer.Option(
            help="Require client certificates signed by this CA (PEM) on both ports.",
            show_default=False,
        ),
    ] = None,
    explain_budget: Annotated[
        float, typer.Option(help="Seconds an explanation may take before it answers 202 + a job.")
    ] = 1.0,
    first_token_timeout: Annotated[
        float, typer.Option(help="Language models: seconds to the first token (queue included).")
    ] = 300.0,
    token_gap_timeout: Annotated[
        float, typer.Option(help="Language models: seconds allowed between two tokens.")
    ] = 60.0,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(help="Serve a non-loopback address without API keys (admin routes off)."),
    ] = False,
    admin_routes: Annotated[
        bool | None,
        typer.Option(
            "--admin-routes/--no-admin-routes",
            help="Repository load/unload and rollout routes (default: on, except on a server "
            "open to the network without keys).",
            show_default=False,
        ),
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            help="Requests per second per API key (or client address); 429 above. "
            "Env MODELPORT_RATE_LIMIT; 0 = off.",
            show_default=False,
            min=0,
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            help="Requests a key may send at once under --rate-limit (default: one "
            "second's worth). Env MODELPORT_RATE_BURST.",
            show_default=False,
            min=0,
        ),
    ] = None,
    concurrency_limit: Annotated[
        int | None,
        typer.Option(
            help="Requests in flight per API key (or client address); 429 above. "
            "Env MODELPORT_CONCURRENCY_LIMIT; 0 = off.",
            show_default=False,
            min=0,
        ),
    ] = None,
    drain_timeout: Annotated[
        float,
        typer.Option(
            help="On SIGTERM: stop accepting, then wait this long at most for requests "
            "in flight before exiting (seconds).",
            min=0,
        ),
    ] = 30.0,
    max_inflight: Annotated[
        int | None,
        typer.Option(
            help="Requests in flight on the whole server; 503 above, before latency "
            "collapses. Env MODELPORT_MAX_INFLIGHT; 0 = off.",
            show_default=False,
            min=0,
        ),
    ] = None,
    payload_log: Annotated[
        str | None,
        typer.Option(
            help="Log requests and replies to a folder or fsspec URL (Parquet) or an "
            "http(s) URL (CloudEvents). Env MODELPORT_PAYLOAD_LOG. Default: off.",
            show_default=False,
        ),
    ] = None,
    payload_sample: Annotated[
        float | None,
        typer.Option(
            help="Share of requests logged, 0-1 (env MODELPORT_PAYLOAD_SAMPLE, default 1).",
            show_default=False,
        ),
    ] = None,
    payload_model: Annotated[
        list[str] | None,
        typer.Option(
            help="Log only this model; repeatable (default: every model).", show_default=False
        ),
    ] = None,
    payload_mask: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=redact (an input or output left out of the log) or NAME=hash (logged as "
            "a SHA-256 per row); repeatable.",
            show_default=False,
        ),
    ] = None,
    drift_window: Annotated[
        int, typer.Option(help="Rows in each version's drift window.", min=10)
    ] = 10_000,
    drift_refresh: Annotated[
        float, typer.Option(help="Seconds between drift scores.", min=0.1)
    ] = 5.0,
) -> None:
    """Serve models over HTTP and gRPC until Ctrl-C; alias moves are followed without restart.
    Language models (GGUF, encoders) answer the OpenAI API under /v1 on the same port."""
    import os

    from modelport.cli.monitor import monitor_options
    from modelport.generation.options import EngineOptions
    from modelport.monitoring.tracing import Tracing
    from modelport.serving.app import ServerOptions, run
    from modelport.serving.auth import ApiKeys
    from modelport.serving.config import BatchConfig, ServeConfig
    from modelport.serving.limits import Limits
    from modelport.serving.repository import open_folder
    from modelport.serving.rest_explain import ExplainOptions
    from modelport.serving.tls import tls_options

    tls = tls_options(tls_cert, tls_key, tls_client_ca)
    source = open_folder(model_repository, model_dir, model_name, poll_interval) or registry()
    runtime = None
    if intra_op_threads is not None:
        from modelport.runtimes import RuntimeOptions

        runtime = RuntimeOptions.from_settings(source.settings,
                                               intra_op_threads=intra_op_threads)  # fmt: skip
    settings = source.settings
    keys = ApiKeys.parse([*(api_key or []), settings.api_keys])
    limits = Limits(
        rate=settings.rate_limit if rate_limit is None else rate_limit,
        burst=settings.rate_burst if burst is None else burst,
        concurrency=settings.concurrency_limit if concurrency_limit is None else concurrency_limit,
        max_inflight=settings.max_inflight if max_inflight is None else max_inflight,
    )
    config = ServeConfig(
        refs=tuple(refs or ()), alias=alias, version_policy=policy, poll_interval=poll_interval,
        batching=parse_batching(batch or [], BatchConfig(max_batch_size, max_queue_delay_us)),
        request_timeout=timeout, workers=workers, runtime=runtime,
        inline_below_us=inline_below_us, rollout_key=rollout_key, shadow_runner=shadow_runner,
    )  # fmt: skip
    options = ServerOptions(
        host=host, http_port=http_port, grpc_port=grpc_port or None, api_keys=keys,
        max_request_bytes=parse_size(max_request_size),
        memory_budget=parse_size(memory_budget) if memory_budget else None,
        generation=EngineOptions(slots=slots, context=context, max_queue=max_queue,
                                 threads=intra_op_threads or 0,
                                 first_token_timeout=first_token_timeout,
                                 token_gap_timeout=token_gap_timeout),
        tracing=Tracing.from_environment(os.environ),  # the standard OTEL_* settings
        tls=tls,
        explain=ExplainOptions(budget=explain_budget),
        limits=limits, allow_unauthenticated=allow_unauthenticated, admin_routes=admin_routes,
        drain_timeout=drain_timeout,
        monitor=monitor_options(source.settings, payload_log, payload_sample,
                                payload_model, payload_mask, drift_window, drift_refresh),
    )  # fmt: skip
    scheme = "https" if tls else "http"
    run(source, config, options, started=lambda *args: _started(host, keys, *args, scheme))
    console.print("stopped")


def parse_batching(specs: list[str], default: Any) -> dict[str, Any]:
    """``NAME=SIZE[:DELAY_US]`` per model, on top of the ``"*"`` default."""
    from modelport.errors import InvalidInput
    from modelport.serving.config import BatchConfig
    from modelport.uri import validate_name

    batching: dict[str, Any] = {"*": default}
    for spec in specs:
        name, sep, value = spec.partition("=")
        size, _, delay = value.partition(":")
        try:
            if not sep:
                raise ValueError
            config = BatchConfig(int(size), int(delay) if delay else default.max_queue_delay_us)
        except ValueError:
            raise InvalidInput(
                f"--batch {spec!r} is not NAME=SIZE or NAME=SIZE:DELAY_US, e.g. digits=32:500"
            ) from None
        batching[validate_name(name.strip())] = config
    return batching


def parse_size(text: str) -> int:
    from modelport.errors import InvalidInput

    number = text.strip().lower().rstrip("s")
    unit = number.lstrip("0123456789.")
    value = number[: len(number) - len(unit)]
    try:
        size = int(float(value) * SIZE_UNITS[unit.strip()])
    except (ValueError, KeyError):
        raise InvalidInput(f"size {text!r} is not a byte count like 1048576 or 64MiB") from None
    if size < 1:
        raise InvalidInput(f"size {text!r} must be at least one byte")
    return size


def _started(host: str, keys: Any, models: Any, http_port: int, grpc_port: int | None,
             scheme: str = "http") -> None:  # fmt: skip
    from rich.table import Table

    base = f"{scheme}://{host}:{http_port}"
    table = Table("model", "version", "labels", "plain URL", "infer URL", title="serving")
    for name in models.names():
        labels = models.labels(name)
        default = models.default_version(name)
        for version in models.versions(name):
            tags = ", ".join(sorted(a for a, v in labels.items() if v == version))
            url = f"{base}/v2/models/{name}/versions/{version}/infer"
            plain = f"/v2/models/{name}/infer" if version == default else ""
            table.add_row(name, str(version), tags, plain, url)
    if models.names():
        console.print(table)
    else:
        console.print("[yellow]no model is served yet[/]: the server keeps looking")
    problems = [row for row in models.index() if row["state"] == "FAILED"]
    for row in problems:
        where = row["name"] if row["version"] is None else f"{row['name']}:{row['version']}"
        console.print(f"[red]failed:[/] {where}: {row['reason']}", highlight=False)
    secure = " with TLS" if scheme == "https" else ""
    grpc = f", gRPC{secure} on {host}:{grpc_port}" if grpc_port else ""
    auth = ", API keys required" if keys.required else ""
    if not keys.admin_routes:
        auth += ", admin routes off"
    console.print(f"listening on {base} (V2, TF-Serving, OpenAI /v1, /metrics){grpc}{auth}; "
                  "Ctrl-C stops", highlight=False)  # fmt: skip
