"""``modelport convert REF --to openvino|tflite`` and ``modelport runtimes``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelport.cli.common import console, human_size, print_json, registry


class Target(StrEnum):
    openvino = "openvino"
    tflite = "tflite"
    onnx_encoder = "onnx-encoder"
    gguf = "gguf"
    genai = "genai"


class Precision(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
    int4 = "int4"


def convert(
    ref: Annotated[
        str, typer.Argument(help="The ONNX or checkpoint version: name, name:3, name@alias.")
    ],
    to: Annotated[Target, typer.Option("--to", help="Target format.")],
    precision: Annotated[
        Precision,
        typer.Option(help="Weights (and, for int8, activations; genai: weights only)."),
    ] = Precision.fp32,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration inputs for int8 (.npy, .npz, .json, .csv).")
    ] = None,
    sample: Annotated[
        Path | None, typer.Option(help="Parity inputs (default: calibration data, else random).")
    ] = None,
    atol: Annotated[
        float | None, typer.Option(help="Max abs error allowed for every output (no default).")
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(
            help="Max error relative to the output's range (1e-4 fp32, 1e-2 fp16, 0.25 int8)"
        ),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(help="Top-1 agreement a classifier output needs (default 0.97 for int8)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Register even above tolerance.")] = False,
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Convert a registered ONNX model to OpenVINO IR or TensorFlow Lite as a new version."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from modelport.cli.predict import read_inputs
    from modelport.conversion import convert as do_convert

    reg = registry()
    if to in (Target.onnx_encoder, Target.gguf, Target.genai):
        _language_model(reg, ref, to, precision, force, json_out)
        return
    parent = reg.resolve(ref)
    calib = read_inputs(calibration, parent.signature) if calibration is not None else None
    samples = read_inputs(sample, parent.signature) if sample is not None else None
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=True, disable=json_out or not console.is_terminal,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"converting {parent.ref}", total=None)
        result = do_convert(
            parent.ref,
            to.value,
            registry=reg,
            precision=precision.value,
            calibration=calib,
            sample=samples,
            atol=atol,
            rtol=rtol,
            min_agreement=min_agreement,
            force=force,
            alias=alias,
            on_step=lambda text: progress.update(task, description=text),
        )
    version, report = result.version, result.report
    if json_out:
        print_json({"version": version.to_dict(), "parity": _parity_dict(report)})
        return
    title = f"parity of {version.ref} against {version.parent}"
    title += f" ({report.rows} rows of {report.source})"
    table = Table("output", "max abs error", "max rel error", "top-1 agreement", "bound",
                  title=title)  # fmt: skip
    for out in report.outputs:
        top1 = "-" if out.top1 is None else f"{out.top1:.2%}"
        bound = report.tolerance.bound(out) + ("" if report.tolerance.passes(out) else " (outside)")
        table.add_row(out.name, f"{out.max_abs:.3g}", f"{out.max_rel:.3g}", top1, bound)
    console.print(table)
    verdict = "[green]ok[/]"
    if result.forced:
        verdict = "[yellow]above tolerance, registered with --force[/]"
    console.print(
        f"registered {version.ref} ({version.format}, {precision.value}, "
        f"{human_size(version.size)}) from {version.parent}: parity {verdict}",
        highlight=False,
    )


def _language_model(
    reg: Any, ref: str, to: Target, precision: Precision, force: bool, json_out: bool
) -> None:
    """Encoders to ONNX (fp32, int8), Llama / Qwen2 checkpoints to GGUF (fp32, int8 = q8_0) or
    to onnxruntime-genai (fp32, int8, int4)."""
    from modelport.errors import InvalidInput

    if to is Target.genai:
        from modelport.conversion.genai import convert_to_genai

        if precision is Precision.fp16:
            raise InvalidInput("--to genai converts to fp32, int8 or int4")
        version = convert_to_genai(reg, ref, precision.value, force=force)
    elif precision in (Precision.fp16, Precision.int4):
        raise InvalidInput(f"--to {to.value} converts to fp32 or int8")
    elif to is Target.gguf:
        from modelport.conversion.gguf import convert_to_gguf

        gguf_precision = "q8_0" if precision is Precision.int8 else "f32"
        version = convert_to_gguf(reg, ref, gguf_precision, force=force)
    else:
        from modelport.conversion.encoder import convert_encoder

        version = convert_encoder(reg, ref, int8=precision is Precision.int8, force=force)
    if json_out:
        print_json(version.to_dict())
        return
    p = version.transform_params or {}
    if to in (Target.gguf, Target.genai):
        parity = (
            f"next-token agreement {p['next_token_agreement']:.2%} over {p['tokens']} "
            f"tokens, perplexity {p['perplexity_fp32']:.3f} -> {p['perplexity']:.3f}"
        )
        if p.get("forced"):
            parity += " (above tolerance, registered with --force)"
    elif "max_prob_diff" in p:
        parity = (
            f"class probabilities within {p['max_prob_diff']:.2g} of transformers, same class "
            f"on {p['argmax_agreement']:.0%} of {p['sentences']} sentences"
        )
    else:
        parity = (
            f"cosine against transformers mean {p['mean_cosine']:.6f}, least "
            f"{p['min_cosine']:.6f} over {p['sentences']} sentences"
        )
    console.print(
        f"registered {version.ref} ({version.format}, {p.get('precision')}, "
        f"{human_size(version.size)}) from {version.parent}: {parity}",
        highlight=False,
    )


def _parity_dict(report: Any) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "tolerance": {k[7:]: v for k, v in report.tolerance.metrics().items()},
        "rows": report.rows,
        "source": report.source,
        "outputs": [
            {
                "name": o.name,
                "max_abs": o.max_abs,
                "max_rel": o.max_rel,
                "top1": o.top1,
                "rule": report.tolerance.rule(o),
                "ok": report.tolerance.passes(o),
            }
            for o in report.outputs
        ],  # fmt: skip
    }


def runtimes(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the runtime backends, what each loads, and how to install the missing ones."""
    import importlib.metadata

    from rich.markup import escape

    from modelport.errors import install_command
    from modelport.runtimes import KNOWN

    rows = []
    for info in KNOWN:
        try:
            version = importlib.metadata.version(info.package) if info.installed else None
        except importlib.metadata.PackageNotFoundError:
            version = None
        rows.append({"name": info.name, "formats": list(info.formats),
                     "installed": version is not None, "version": version,
                     "install": install_command(info.extra)})  # fmt: skip
    if json_out:
        print_json(rows)
        return
    title = "runtime backends"
    table = Table("backend", "loads", "status", title=title)
    for row in rows:
        status = f"[yellow]missing[/]: {escape(row['install'])}"
        if row["installed"]:
            status = f"[green]installed[/] {row['version']}"
        table.add_row(row["name"], ", ".join(row["formats"]), status)
    console.print(table)
