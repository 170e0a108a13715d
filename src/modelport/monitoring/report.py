"""A drift report from the payload log: scores per feature, distributions, latency and volume.

    summary = write_report(registry, "digits:3", "/var/log/modelport", Path("report.html"),
                           since="24h")
    summary["flagged"]     # features past the drift thresholds

The log is read batch by batch (only the columns needed) and binned by the version's reference
as it goes, so memory stays near one batch however many rows there are; only event times,
latencies and row counts are kept whole (for the time plots). The HTML holds one PNG of the
plots and a table of scores: no logged row is written out.
"""

from __future__ import annotations

import base64
import html
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InvalidInput, MissingDependency, NotFound
from modelport.monitoring.drift import DriftOptions, scores
from modelport.monitoring.reference import Reference, load_reference

if TYPE_CHECKING:
    from modelport.registry import Registry

SHOWN = 8  # feature distributions drawn, the most drifted first
BUCKETS = 48  # time buckets of the latency and volume plots


def write_report(
    registry: Registry, ref: str, log: str, output: Path, since: str | None = None,
    options: DriftOptions | None = None,
) -> dict:  # fmt: skip
    """Write ``output`` (.html or .png); returns a summary (rows, events, flagged...)."""
    if output.suffix.lower() not in (".html", ".png"):
        raise InvalidInput(f"cannot write {output.name}: the report is .html or .png")
    version = registry.resolve(ref)
    reference = load_reference(registry, version)
    if reference is None:
        raise InvalidInput(f"{version.ref} has no reference statistics: add them with "
                           f"'modelport monitor baseline {version.ref} --data FILE'")  # fmt: skip
    tally = _scan(reference, version, log, _since(since))
    options = options or DriftOptions()
    total = tally["counts"].sum(axis=1, keepdims=True)
    expected = np.zeros(tally["counts"].shape)
    for j, feature in enumerate(reference.features):
        expected[j, : feature.bins] = feature.probs
    psi, ks, js = scores(expected, tally["counts"] / np.maximum(total, 1))
    numeric = np.array([f.kind == "numeric" for f in reference.features])
    flagged = np.where(numeric, (psi >= options.psi) | (ks >= options.ks), js >= options.js)
    table = [{"feature": f.name, "kind": f.kind, "psi": psi[j], "ks": ks[j] if numeric[j]
              else None, "js": js[j], "flagged": bool(flagged[j])}
             for j, f in enumerate(reference.features)]  # fmt: skip
    image = _figure(reference, tally, expected, psi, flagged, version.ref)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".png":
        output.write_bytes(image)
    else:
        output.write_text(_html(version.ref, tally, table, image, since))
    return {"rows": tally["rows"], "events": len(tally["times"]), "features": len(table),
            "flagged": int(flagged.sum()), "scores": table}  # fmt: skip


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--since {text!r} is neither an ISO time nor an age like 24h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _scan(reference: Reference, version: Any, log: str, since: datetime | None) -> dict:
    try:
        import pyarrow as pa
        import pyarrow.dataset as ds
    except ImportError:
        raise MissingDependency("pyarrow", "monitoring") from None
    from modelport.monitoring.reference import input_columns, output_columns

    folder = f"{log.rstrip('/')}/{version.name}"
    try:
        data = ds.dataset(folder, format="parquet", exclude_invalid_files=True)
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise NotFound(f"no payload log of {version.name!r} under {log}: {exc}") from None
    names = set(data.schema.names)
    wanted = [f"input.{s.name}" for s in version.signature.inputs]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise InvalidInput(f"the payload log of {version.name!r} has no {missing} (redacted?)")
    outs = [n for n in data.schema.names if n.startswith("output.")]
    where = ds.field("version") == version.version
    if since is not None:
        where &= ds.field("time") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    width = max(f.bins for f in reference.features)
    counts = np.zeros((len(reference.features), width), np.int64)
    times, latencies, rows = [], [], []
    columns = ["time", "latency_ms", "rows", *wanted, *outs]
    # in this thread, no read-ahead: Arrow's threaded scan reads ahead of a slower consumer
    # (the binning) until most of the log is decoded in memory; this way one batch at a time
    for batch in data.to_batches(columns=columns, filter=where, batch_size=65536,
                                 batch_readahead=0, fragment_readahead=1,
                                 use_threads=False):  # fmt: skip
        if not batch.num_rows:
            continue
        n = batch.column("rows").to_numpy()
        feed = {s.name: _values(batch.column(f"input.{s.name}"), int(n.sum()))
                for s in version.signature.inputs}  # fmt: skip
        outputs = {c[7:]: _values(batch.column(c), int(n.sum())) for c in outs}
        _, ins = input_columns(version.signature, feed)
        out_names, out_cols = output_columns(outputs)
        expected = reference.names[len(reference.names) - reference.outputs :]
        if out_names != expected:
            out_cols = np.full((len(ins), len(expected)), np.nan)
        counts += reference.bin(np.hstack([ins, out_cols]))
        times.append(batch.column("time").cast(pa.int64()).to_numpy())
        latencies.append(batch.column("latency_ms").to_numpy())
        rows.append(n)
    if not times:
        raise NotFound(f"the payload log of {version.ref} has no events"
                       + (f" since {since.isoformat()}" if since else ""))  # fmt: skip
    row_counts = np.concatenate(rows)
    return {"counts": counts, "times": np.concatenate(times), "rows": int(row_counts.sum()),
            "latency": np.concatenate(latencies), "row_counts": row_counts}  # fmt: skip


def _values(column: Any, rows: int) -> np.ndarray:
    """A list column's values as [rows, ...] (each event's tensor flattened, rows kept)."""
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(rows, -1) if rows else flat


def _figure(reference: Reference, tally: dict, expected: np.ndarray, psi: np.ndarray,
            flagged: np.ndarray, title: str) -> bytes:  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("matplotlib", "monitoring") from None
    order = np.argsort(-psi)[:SHOWN]
    cols = 4
    grid_rows = 2 + -(-len(order) // cols)
    fig = plt.figure(figsize=(13, 2.6 * grid_rows), dpi=72)
    spec = fig.add_gridspec(grid_rows, cols, hspace=0.7, wspace=0.3)
    ax = fig.add_subplot(spec[0, :])
    ax.bar(range(len(psi)), psi, color=np.where(flagged, "#d62728", "#1f77b4"))
    ax.set_title(f"{title}: PSI per feature (red: drifted)")
    ax.set_xticks(range(len(psi)), reference.names, rotation=90, fontsize=6)
    _time_plots(fig.add_subplot(spec[1, :2]), fig.add_subplot(spec[1, 2:]), tally)
    counts = tally["counts"]
    for k, j in enumerate(order):
        ax = fig.add_subplot(spec[2 + k // cols, k % cols])
        feature = reference.features[j]
        bins = np.arange(feature.bins)
        share = counts[j, : feature.bins] / max(counts[j].sum(), 1)
        ax.bar(bins - 0.2, expected[j, : feature.bins], 0.4, label="reference", color="#999999")
        ax.bar(bins + 0.2, share, 0.4, label="logged", color="#d62728" if flagged[j] else "#1f77b4")
        ax.set_title(f"{feature.name}  PSI {psi[j]:.3f}", fontsize=9)
        ax.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.subplots_adjust(left=0.05, right=0.98, top=0.95, bottom=0.04)
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _time_plots(volume: Any, latency: Any, tally: dict) -> None:
    times = tally["times"] / 1e6
    edges = np.linspace(times.min(), times.max() + 1e-6, BUCKETS + 1)
    which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, BUCKETS - 1)
    rows = np.bincount(which, weights=tally["row_counts"], minlength=BUCKETS)
    start = datetime.fromtimestamp(edges[0], UTC).isoformat(timespec="seconds")
    stamps = ((edges[:-1] + edges[1:]) / 2 - edges[0]) / 60  # minutes since the first event
    volume.plot(stamps, rows, color="#1f77b4")
    step = edges[1] - edges[0]
    volume.set_title(f"rows per {step:.3g} s" if step < 60 else f"rows per {step / 60:.3g} min",
                     fontsize=9)  # fmt: skip
    order = np.argsort(which, kind="stable")
    split = np.split(tally["latency"][order], np.cumsum(np.bincount(which, minlength=BUCKETS))[:-1])
    for q, color in ((50, "#1f77b4"), (99, "#d62728")):
        values = [np.percentile(part, q) if len(part) else np.nan for part in split]
        latency.plot(stamps, values, color=color, label=f"p{q}")
    latency.set_title("latency in the server (ms)", fontsize=9)
    latency.legend(fontsize=7)
    for ax in (volume, latency):
        ax.tick_params(labelsize=6)
        ax.set_xlabel(f"minutes since {start}", fontsize=7)


def _html(ref: str, tally: dict, table: list[dict], image: bytes, since: str | None) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = "".join(
        f"<tr{' class=drift' if r['flagged'] else ''}><td>{html.escape(r['feature'])}</td>"
        f"<td>{r['kind']}</td><td>{cell(float(r['psi']))}</td>"
        f"<td>{cell(None if r['ks'] is None else float(r['ks']))}</td>"
        f"<td>{cell(float(r['js']))}</td><td>{'yes' if r['flagged'] else ''}</td></tr>"
        for r in table
    )
    first, last = (datetime.fromtimestamp(t / 1e6, UTC).isoformat(timespec="seconds")
                   for t in (tally["times"].min(), tally["times"].max()))  # fmt: skip
    flagged = sum(r["flagged"] for r in table)
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(ref)} drift</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}tr.drift{{background:#fdd}}</style>
</head><body><h1>Drift report: {html.escape(ref)}</h1>
<p>{tally["rows"]} rows in {len(tally["times"])} events from {first} to {last}
{"(since " + html.escape(since) + ")" if since else ""}; {flagged} of {len(table)} features
drifted.</p><img alt="drift plots" src="data:image/png;base64,{base64.b64encode(image).decode()}">
<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>KS</th><th>JS</th><th>drifted</th></tr>
{rows}</table></body></html>
"""
