"""``modelport compress prune|quantize|distill|auto`` and ``modelport evaluate A B``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from modelport.cli.common import console, registry

if TYPE_CHECKING:
    from modelport.compression.pipeline import Outcome

compress_app = typer.Typer(
    help="Prune, quantize or distill a version into a new, measured version.", no_args_is_help=True
)

Ref = Annotated[str, typer.Argument(help="Parent version: name, name:3 or name@alias.")]
EvalData = Annotated[
    Path | None, typer.Option("--eval-data", help="Evaluation inputs (.npy/.npz/.csv/.parquet).")
]
EvalLabels = Annotated[
    Path | None, typer.Option("--eval-labels", help="Class labels for --eval-data.")
]
MaxDrop = Annotated[
    float | None,
    typer.Option("--max-accuracy-drop", help="Refuse a candidate losing more (0.01 = 1 point)."),
]
Threads = Annotated[
    int, typer.Option("--threads", help="Intra-op threads while measuring (0 = all cores).")
]
Alias = Annotated[str | None, typer.Option("--alias", help="Point this alias at the new version.")]
Name = Annotated[
    str | None,
    typer.Option("--name", help="Register under this model name (default: the parent's)."),
]
Plot = Annotated[
    Path | None,
    typer.Option("--plot", help="Draw size vs accuracy vs latency of all versions to FILE.png."),
]
Epochs = Annotated[int, typer.Option("--epochs", help="Training epochs.")]
Batch = Annotated[int, typer.Option("--batch-size", help="Training batch size.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
Temperature = Annotated[float, typer.Option("--temperature", help="Distillation temperature.")]
Alpha = Annotated[
    float, typer.Option("--alpha", help="Weight of the label loss when labels are given.")
]
LR = Annotated[float, typer.Option("--lr", help="Learning rate.")]


def _evaluation(
    eval_data: Path | None, eval_labels: Path | None, max_drop: float | None, threads: int
) -> dict[str, Any]:
    return {
        "eval_data": eval_data,
        "eval_labels": eval_labels,
        "max_accuracy_drop": max_drop,
        "threads": threads,
    }


def _train(
    epochs: int, batch_size: int, lr: float, temperature: float, alpha: float, seed: int
) -> Any:
    from modelport.compression.training import TrainConfig

    return TrainConfig(epochs, batch_size, lr, temperature, alpha, seed).check()


def _finish(outcome: Outcome, plot: Path | None) -> None:
    from modelport.compression.report import comparison_table, notes

    cand = outcome.candidate
    console.print(
        comparison_table(cand.comparison, f"{cand.label}: {outcome.parent.ref} -> candidate")
    )
    for line in notes(cand.comparison, cand.transform, cand.params):
        console.print(f"  {escape(line)}", highlight=False)
    if outcome.version is None:
        console.print(f"[red]{escape(outcome.rejected or '')}[/]", highlight=False)
        raise typer.Exit(1)
    console.print(
        f"registered [bold]{outcome.version.ref}[/] ({cand.transform} of {outcome.parent.ref})",
        highlight=False,
    )
    _plot(outcome.version.name, plot)


def _plot(name: str, plot: Path | None) -> None:
    if plot is not None:
        from modelport.compression.report import plot_versions

        console.print(f"plot written to {plot_versions(registry(), name, plot)}", highlight=False)


@compress_app.command("quantize")
def quantize(
    ref: Ref,
    bits: Annotated[
        int, typer.Option("--bits", help="16 (fp16), 8 (int8) or 4 (4-bit MatMul weights).")
    ] = 8,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Calibration inputs: static int8.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="Calibration: minmax, entropy or percentile.")
    ] = "minmax",
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel.")
    ] = True,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="Static int8: auto (measure both, keep the faster), qdq or qoperator.",
        ),
    ] = "auto",
    block_size: Annotated[int, typer.Option("--block-size", help="4-bit block size.")] = 32,
    eval_data: EvalData = None,
    eval_labels: EvalLabels = None,
    max_accuracy_drop: MaxDrop = None,
    threads: Threads = 0,
    alias: Alias = None,
    name: Name = None,
    plot: Plot = None,
) -> None:
    """fp16, dynamic int8, static int8 (with --calibration) or 4-bit weight-only."""
    from modelport.compression.api import quantize_model

    outcome = quantize_model(
        ref,
        bits=bits,
        calibration=calibration,
        method=method,
        per_channel=per_channel,
        format=format,
        block_size=block_size,
        registry=registry(),
        name=name,
        alias=alias,
        **_evaluation(eval_data, eval_labels, max_accuracy_drop, threads),
    )
    _finish(outcome, plot)


@compress_app.command("prune")
def prune(
    ref: Ref,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Zero weights with |w| below this.")
    ] = None,
    sparsity: Annotated[
        float | None, typer.Option("--sparsity", help="Zero this fraction of weights, in [0, 1).")
    ] = None,
    scope: Annotated[
        str, typer.Option("--scope", help="Sparsity over all weights (global) or per layer.")
    ] = "global",
    structured: Annotated[
        float | None,
        typer.Option("--structured", help="Remove this fraction of hidden units/channels."),
    ] = None,
    finetune_data: Annotated[
        Path | None,
        typer.Option("--finetune-data", help="Inputs to fine-tune on after structured pruning."),
    ] = None,
    finetune_labels: Annotated[
        Path | None, typer.Option("--finetune-labels", help="Labels for --finetune-data.")
    ] = None,
    epochs: Epochs = 20,
    batch_size: Batch = 64,
    lr: LR = 3e-3,
    temperature: Temperature = 2.0,
    alpha: Alpha = 0.5,
    seed: Seed = 0,
    eval_data: EvalData = None,
    eval_labels: EvalLabels = None,
    max_accuracy_drop: MaxDrop = None,
    threads: Threads = 0,
    alias: Alias = None,
    name: Name = None,
    plot: Plot = None,
) -> None:
    """Magnitude pruning (--threshold or --sparsity) or structured pruning (--structured)."""
    from modelport.compression.api import prune_model

    outcome = prune_model(
        ref,
        threshold=threshold,
        sparsity=sparsity,
        scope=scope,
        structured=structured,
        finetune_data=finetune_data,
        finetune_labels=finetune_labels,
        train=_train(epochs, batch_size, lr, temperature, alpha, seed),
        registry=registry(),
        name=name,
        alias=alias,
        **_evaluation(eval_data, eval_labels, max_accuracy_drop, threads),
    )
    _finish(outcome, plot)


@compress_app.command("distill")
def distill(
    ref: Ref,
    data: Annotated[
        Path, typer.Option("--data", help="Training inputs, unlabeled (.npy/.npz/.csv/.parquet).")
    ],
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Optional labels mixed into the loss.")
    ] = None,
    hidden: Annotated[
        str, typer.Option("--hidden", help="Student MLP hidden sizes, e.g. 32 or 64,32.")
    ] = "32",
    student: Annotated[
        str | None, typer.Option("--student", help="FILE.py:NAME giving a torch.nn.Module.")
    ] = None,
    epochs: Epochs = 30,
    batch_size: Batch = 64,
    lr: LR = 3e-3,
    temperature: Temperature = 2.0,
    alpha: Alpha = 0.5,
    seed: Seed = 0,
    eval_data: EvalData = None,
    eval_labels: EvalLabels = None,
    max_accuracy_drop: MaxDrop = None,
    threads: Threads = 0,
    alias: Alias = None,
    name: Name = None,
    plot: Plot = None,
) -> None:
    """Train a small student on the teacher's outputs; export it to ONNX and register it."""
    from modelport.compression.api import distill_model
    from modelport.compression.distill import load_student
    from modelport.errors import InvalidInput

    try:
        sizes = tuple(int(h) for h in hidden.split(",") if h.strip())
    except ValueError:
        raise InvalidInput(f"--hidden must be comma-separated integers, got {hidden!r}") from None
    outcome = distill_model(
        ref,
        data=data,
        labels=labels,
        hidden=sizes,
        student=load_student(student) if student else None,
        train=_train(epochs, batch_size, lr, temperature, alpha, seed),
        registry=registry(),
        name=name,
        alias=alias,
        **_evaluation(eval_data, eval_labels, max_accuracy_drop, threads),
    )
    _finish(outcome, plot)


@compress_app.command("auto")
def auto(
    ref: Ref,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Inputs for calibration, fine-tuning and distillation."),
    ] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Labels for --data.")] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="Pick the fastest (latency) or smallest (size).")
    ] = "latency",
    promote: Annotated[
        str | None, typer.Option("--promote", help="Move this alias to the chosen version.")
    ] = None,
    epochs: Epochs = 20,
    seed: Seed = 0,
    eval_data: EvalData = None,
    eval_labels: EvalLabels = None,
    max_accuracy_drop: MaxDrop = None,
    threads: Threads = 0,
    name: Name = None,
    plot: Plot = None,
) -> None:
    """Try quantization variants, pruning levels and a distilled student; register the best."""
    from modelport.compression.auto import auto_compress
    from modelport.compression.report import pareto_table

    result = auto_compress(
        ref,
        data=data,
        labels=labels,
        objective=objective,
        promote=promote,
        train=_train(epochs, 64, 3e-3, 2.0, 0.5, seed),
        registry=registry(),
        name=name,
        **_evaluation(eval_data, eval_labels, max_accuracy_drop, threads),
    )
    console.print(pareto_table(result.candidates, result.chosen))
    for line in result.skipped:
        console.print(f"  skipped {escape(line)}", highlight=False)
    if result.outcome is None or result.outcome.version is None:
        console.print("[red]not registered: no candidate is within the accuracy budget[/]")
        raise typer.Exit(1)
    version = result.outcome.version
    promoted = f", alias {promote} -> {version.ref}" if promote else ""
    console.print(
        f"registered [bold]{version.ref}[/] ({result.chosen.label}){promoted}", highlight=False
    )
    _plot(version.name, plot)


def evaluate(
    a: Annotated[str, typer.Argument(help="Reference version (plays the parent).")],
    b: Annotated[str, typer.Argument(help="Version to compare with it.")],
    data: Annotated[Path | None, typer.Option("--data", help="Evaluation inputs.")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Labels for --data.")] = None,
    threads: Threads = 0,
    plot: Plot = None,
) -> None:
    """Compare two versions side by side: size, parameters, latency, accuracy or agreement."""
    from modelport.compression.api import evaluate_models
    from modelport.compression.report import comparison_table, notes

    comparison = evaluate_models(
        a, b, registry=registry(), data=data, labels=labels, threads=threads
    )
    console.print(comparison_table(comparison, f"{a} vs {b}"))
    for line in notes(comparison, "", {}):
        console.print(f"  {escape(line)}", highlight=False)
    _plot(registry().resolve(b).name, plot)
