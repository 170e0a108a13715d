"""The least a batch job must do, as one process: read the file, run ONNX Runtime, write the file.

    python benchmarks/batch_reference.py model.onnx in.npy out.npy --batch-size 4096 --threads 2
    python benchmarks/batch_reference.py model.onnx in.parquet out.parquet

The same batch size and threads as ``modelport batch`` (``--threads`` sessions calls side by side,
each on one intra-op thread), the same output format (NPY: one array; Parquet: one float column
per output value, stored plain). No bad-row checks, no parts, no resume.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pool = ThreadPoolExecutor(args.threads)

    def score(x: np.ndarray) -> np.ndarray:
        starts = range(0, len(x), args.batch_size)
        runs = pool.map(lambda s: session.run(None, {name: x[s : s + args.batch_size]})[0], starts)
        return np.concatenate(list(runs))

    if args.input.endswith(".npy"):
        x = np.load(args.input, mmap_mode="r")
        out = None
        for start in range(0, len(x), args.chunk_rows):
            y = score(np.array(x[start : start + args.chunk_rows]))
            if out is None:
                out = np.lib.format.open_memmap(args.output, "w+", y.dtype, (len(x), *y.shape[1:]))
            out[start : start + len(y)] = y
        out.flush()
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        for batch in pq.ParquetFile(args.input).iter_batches(args.chunk_rows):
            x = np.column_stack([c.to_numpy() for c in batch.columns])
            y = score(x)
            table = pa.table({f"output_{j}": y[:, j] for j in range(y.shape[1])})
            if writer is None:
                writer = pq.ParquetWriter(args.output, table.schema, use_dictionary=False,
                                          compression="none", write_statistics=False)  # fmt: skip
            writer.write_table(table)
        writer.close()


if __name__ == "__main__":
    main()
