"""Embedding a JSON Lines file: ``modelport batch`` against the encoder called in a plain loop.

    .venv/bin/python benchmarks/batch_text.py [--sentences 2048] [--markdown]

Same encoder (a BERT built from the all-MiniLM-L6-v2 config, random weights: speed does not
depend on them, converted to ONNX fp32 by modelport), same file of sentences, batch 32, every
core. The loop is what a script does by hand: read the file, ``encoder.embed`` 32 lines at a
time on one ONNX Runtime session with every core, ``np.save`` the vectors. The batch job is
``predict_batch`` (what ``modelport batch REF -i texts.jsonl --text-column text -o out.parquet``
runs): chunks, parts, the Parquet output. Both times run from the file to the output on disk,
model loading included; CPU seconds are the whole process's (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.embeddings import MINILM_L6, sentences  # noqa: E402
from tests.generation.conftest import build_bert  # noqa: E402

console = Console()
THREADS = len(os.sched_getaffinity(0))


def timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def plain_loop(folder: Path, texts_file: Path, out: Path) -> np.ndarray:
    from modelport.generation.encoder import open_encoder

    encoder = open_encoder(folder, THREADS)
    texts = [json.loads(line)["text"] for line in texts_file.read_text().splitlines()]
    vectors = np.concatenate([encoder.embed(texts[i : i + 32])[0]
                              for i in range(0, len(texts), 32)])  # fmt: skip
    np.save(out, vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    from modelport.api import register
    from modelport.batch import predict_batch
    from modelport.conversion.encoder import convert_encoder
    from modelport.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="batch-text-bench-"))
    reg = Registry.open(work / "home")
    register(build_bert(work / "minilm-l6", MINILM_L6), "minilm", registry=reg)
    version = convert_encoder(reg, "minilm:1")
    texts = sentences(args.sentences)
    source = work / "texts.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    warm = work / "warm.jsonl"  # page cache and first loads, for both
    warm.write_text("".join(source.read_text().splitlines(keepends=True)[:64]))
    plain_loop(reg.path(version).parent, warm, work / "warm.npy")
    loop = timed(lambda: plain_loop(reg.path(version).parent, source, work / "loop.npy"))
    job = timed(lambda: predict_batch("minilm:2", source, work / "out.parquet", registry=reg,
                                      text_column="text", batch_size=32))  # fmt: skip
    got = np.array(pq.read_table(work / "out.parquet").column("embedding").to_pylist())
    diff = float(np.abs(got - loop[2]).max())
    head = ["run", "texts/s", "vs the loop", "wall s", "CPU s"]
    rows = [("encoder.embed in a loop, np.save", loop), ("modelport batch -> Parquet", job)]
    table = Table(*head, title=f"{len(texts)} sentences, batch 32, {THREADS} cores, "
                  f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, (wall, cpu, _) in rows:
        cells = [label, f"{len(texts) / wall:.0f}", f"{loop[0] / wall:.2f}x", f"{wall:.1f}",
                 f"{cpu:.1f}"]  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    console.print(f"largest difference between the two outputs: {diff:.2e}")
    if args.markdown:
        print("\n".join(lines))
    reg.close()


if __name__ == "__main__":
    main()
