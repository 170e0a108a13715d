"""Reports people can trust: side-by-side table, plain-words notes, Pareto table, plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.compression.cpu import cpu_info
from modelport.errors import InvalidInput, MissingDependency

if TYPE_CHECKING:
    from rich.table import Table

    from modelport.compression.evaluate import Comparison
    from modelport.compression.pipeline import Candidate
    from modelport.registry import ModelVersion, Registry


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _ratio(before: float, after: float, unit: str = "x") -> str:
    return f"{before / after:.2f}{unit}" if after else "-"


def comparison_table(c: Comparison, title: str = "") -> Table:
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    table.add_column("")
    table.add_column(c.parent.label, justify="right")
    table.add_column(c.child.label, justify="right")
    table.add_column("change", justify="right")
    p, k = c.parent, c.child
    table.add_row("file size", kib(p.size), kib(k.size), f"{_ratio(p.size, k.size)} smaller")
    table.add_row(
        "gzip size",
        kib(p.gzip_size),
        kib(k.gzip_size),
        f"{_ratio(p.gzip_size, k.gzip_size)} smaller",
    )
    if p.parameters is not None or k.parameters is not None:
        ratio = "-"
        if p.parameters is not None and k.parameters is not None:
            ratio = f"{k.parameters / max(p.parameters, 1):.0%}"
        table.add_row("parameters", _count(p.parameters), _count(k.parameters), ratio)
    for batch in p.latency_ms:
        table.add_row(
            f"latency batch {batch}",
            f"{p.latency_ms[batch]:.3f} ms",
            f"{k.latency_ms[batch]:.3f} ms",
            f"{c.speedup(batch):.2f}x speed",
        )
    if p.accuracy is not None:
        drop = c.accuracy_drop
        table.add_row("accuracy", _pct(p.accuracy), _pct(k.accuracy), f"{-drop * 100:+.2f} points")
    if c.agreement is not None:
        table.add_row("top-1 agreement", "", _pct(c.agreement), "")
    table.add_row("max abs difference", "", f"{c.max_abs_diff:.3g}", "")
    table.add_row("mean cosine similarity", "", f"{c.cosine:.5f}", "")
    return table


_PAST = {"quantize": "quantized", "prune": "pruned", "distill": "distilled"}


def notes(c: Comparison, transform: str, params: dict[str, Any]) -> list[str]:
    """Plain-words findings under the table."""
    out = []
    threads = "all cores" if c.threads == 0 else f"{c.threads} thread(s)"
    out.append(
        f"Latency: median of interleaved runs of both models in one process, {threads}, "
        f"{c.rows} evaluation rows."
    )
    if c.synthetic:
        out.append(
            "No evaluation data was given: agreement was measured on random inputs, which says "
            "little about accuracy; pass --eval-data (and --eval-labels) for a real check."
        )
    if transform == "quantize":
        out.append(f"CPU: {cpu_info().summary()}.")
    for batch in c.parent.latency_ms:
        if c.speedup(batch) < 0.97:
            out.append(
                f"On this machine the {_PAST.get(transform, 'second')} model is SLOWER than "
                f"its parent at batch {batch} "
                f"({c.child.latency_ms[batch]:.3f} ms vs {c.parent.latency_ms[batch]:.3f} ms)."
            )
    out.extend(recipe_notes(params))
    if transform == "prune" and params.get("kind") == "magnitude":
        out.append(
            "Unstructured sparsity keeps every matrix at full shape: a dense runtime does the same "
            "work, so expect no speed-up; the zeros only shrink the gzip size."
        )
    return out


_FORMAT_NAMES = {"qdq": "QDQ", "qoperator": "QOperator"}


def recipe_notes(params: dict[str, Any]) -> list[str]:
    """What a quantization recipe chose and skipped (``format_choice``), and what it left in
    float (``left_in_float``), in plain words."""
    out = []
    choice = params.get("format_choice") or {}
    kept = params.get("format")
    for fmt, r in sorted(choice.items(), key=lambda item: item[0] != kept):  # the kept one first
        name = _FORMAT_NAMES.get(fmt, fmt)
        speed = f"{r['speedup']:.2f}x the parent's speed at batch {r['batch']}"
        if fmt == kept:
            out.append(f"Format: kept {name} ({speed}), the fastest of QDQ and QOperator "
                       "within the budget.")  # fmt: skip
        else:
            why = "over the accuracy budget" if not r["within_budget"] else "slower"
            out.append(f"Skipped {name}: {why} ({speed}); --format {fmt} forces it.")
    left = params.get("left_in_float") or {}
    if left:
        ops = ", ".join(f"{n} {op}" for op, n in left.items())
        share = params.get("float_parameter_share", 0.0)
        out.append(
            f"Dynamic int8 covers MatMul and Gemm only: it left {ops} in float "
            f"({share:.0%} of the weights), so expect little change in size or speed; "
            "static int8 (--calibration FILE) quantizes Conv."
        )
    return out


def pareto(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates no other one beats on size, batch-32 latency and accuracy/agreement at once."""

    def key(c: Candidate) -> tuple[float, float, float]:
        comp = c.comparison
        batch = max(comp.child.latency_ms)
        return comp.child.size, comp.child.latency_ms[batch], comp.guard_drop()[0]

    front = []
    for c in candidates:
        kc = key(c)
        dominated = any(
            all(a <= b for a, b in zip(key(o), kc, strict=False)) and key(o) != kc
            for o in candidates
            if o is not c
        )
        if not dominated:
            front.append(c)
    return front


def pareto_table(candidates: Sequence[Candidate], chosen: Candidate | None) -> Table:
    from rich.table import Table

    front = {id(c) for c in pareto(candidates)}
    table = Table(title="candidates", title_justify="left")
    for col in (
        "candidate",
        "size",
        "gzip",
        "params",
        "lat b1",
        "lat b32",
        "speed b32",
        "accuracy",
        "drop",
        "pareto",
        "budget",
    ):
        if col == "candidate":  # never wraps, so the label and its mark stay on one line
            table.add_column(col, justify="left", no_wrap=True)
        else:
            table.add_column(col, justify="right")
    for c in candidates:
        comp = c.comparison
        k = comp.child
        b = max(k.latency_ms)
        drop, _ = comp.guard_drop()
        mark = "[bold green]<- chosen[/]" if c is chosen else ""
        table.add_row(
            f"{c.label} {mark}",
            kib(k.size),
            kib(k.gzip_size),
            f"{k.parameters:,}",
            f"{k.latency_ms[min(k.latency_ms)]:.3f}",
            f"{k.latency_ms[b]:.3f}",
            f"{comp.speedup(b):.2f}x",
            _pct(k.accuracy if k.accuracy is not None else comp.agreement),
            f"{drop * 100:.2f}",
            "yes" if id(c) in front else "",
            "ok" if c.within else "over",
        )
    return table


def plot_versions(registry: Registry, name: str, out: Path) -> Path:
    """Size vs accuracy vs latency (colour) for every version of ``name`` with measurements."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", "compress") from None
    if Path(out).suffix.lower() != ".png":
        raise InvalidInput(f"the plot file must end in .png, got {out}")
    points = _version_points(registry.list_versions(name))
    if not points:
        raise InvalidInput(f"no version of {name!r} has compression measurements to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    xs = [p["size"] / 1024 for p in points]
    ys = [p["quality"] * 100 for p in points]
    cs = [p["latency"] for p in points]
    sc = ax.scatter(xs, ys, c=cs, cmap="viridis_r", s=90, edgecolors="black", zorder=3)
    for i, (p, x, y) in enumerate(zip(points, xs, ys, strict=True)):
        offset = (7, 6) if i % 2 == 0 else (7, -12)  # alternate so neighbours do not collide
        ax.annotate(f"{p['ref']} {p['label']}", (x, y), textcoords="offset points",
                    xytext=offset, fontsize=8)  # fmt: skip
    ax.margins(x=0.18, y=0.12)
    fig.colorbar(sc, ax=ax, label=f"latency at batch {points[0]['batch']} (ms)")
    ax.set_xlabel("file size (KiB)")
    ax.set_ylabel(points[0]["quality_name"] + " (%)")
    ax.set_title(f"{name}: size vs {points[0]['quality_name']} vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def _version_points(versions: Sequence[ModelVersion]) -> list[dict[str, Any]]:
    """One point per version with measurements; a parent's point comes from what its children
    measured of it (latency: the median over them)."""
    import statistics

    by_ref = {v.ref: v for v in versions}
    measured: dict[str, tuple[int, float, float, str]] = {}
    parent_latency: dict[str, list[float]] = {}
    quality_name, batch = "accuracy", None
    for v in versions:
        m = v.metrics
        batches = sorted(int(k[12:]) for k in m if k.startswith("latency_ms_b"))
        batch = batch or (batches[-1] if batches else None)
        if batch is None or f"latency_ms_b{batch}" not in m:
            continue
        if "accuracy" not in m:
            quality_name = "agreement with parent"
        quality = m.get("accuracy", m.get("agreement", m.get("cosine", 0.0)))
        measured[v.ref] = (v.size, quality, m[f"latency_ms_b{batch}"], v.transform or "")
        if v.parent in by_ref:
            parent_latency.setdefault(v.parent, []).append(m[f"parent_latency_ms_b{batch}"])
            if v.parent not in measured:
                quality = m.get("parent_accuracy", 1.0)
                measured[v.parent] = (by_ref[v.parent].size, quality, 0.0, "original")
    for ref, lats in parent_latency.items():
        size, quality, own, label = measured[ref]
        measured[ref] = (size, quality, own or statistics.median(lats), label)
    ordered = sorted(measured.items(), key=lambda kv: by_ref[kv[0]].version)
    return [
        {"ref": ref, "size": s, "quality": q, "latency": lat, "label": label,
         "quality_name": quality_name, "batch": batch}
        for ref, (s, q, lat, label) in ordered
    ]  # fmt: skip
