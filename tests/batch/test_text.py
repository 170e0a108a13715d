"""``modelport batch`` over a text column: embeddings, class scores and generated text, through
the same resumable pipeline as tensor jobs (tiny models built from configs, nothing downloaded)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.api import register
from modelport.batch import predict_batch
from modelport.batch.plan import workdir_for
from modelport.batch.sinks import committed
from modelport.errors import InvalidInput
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx
from tests.generation.conftest import build_bert, build_causal_lm

TEXTS = [f"the lazy dog number {i} " * (1 + i % 4) for i in range(40)]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A catalogue with an ONNX encoder (bert:2), a classifier (sentiment:2), a GGUF language
    model (llama:1) and a tensor model (mlp:1)."""
    from modelport.conversion.encoder import convert_encoder
    from modelport.conversion.gguf import write_gguf

    tmp = tmp_path_factory.mktemp("text-batch")
    with Registry(Settings(home=tmp / "home", user="tester")) as reg:
        register(build_bert(tmp / "bert"), "bert", registry=reg)
        convert_encoder(reg, "bert:1")
        register(build_bert(tmp / "sentiment", classes=3), "sentiment", registry=reg)
        convert_encoder(reg, "sentiment:1")
        write_gguf(build_causal_lm(tmp / "llama", "llama"), tmp / "llama.gguf", "f32")
        register(tmp / "llama.gguf", "llama", registry=reg)
        register(make_mlp_onnx(tmp / "mlp.onnx", n_in=4), "mlp", registry=reg)
    return tmp / "home"


@pytest.fixture(scope="module")
def reg(home: Path):
    with Registry(Settings(home=home, user="tester", intra_op_threads=1)) as registry:
        yield registry


def jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(home: Path, *args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "modelport", "--home", str(home), "batch", *args]
    env = {**os.environ, "COLUMNS": "200", "MODELPORT_INTRA_OP_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def encoder(reg: Registry, ref: str):
    from modelport.generation.encoder import open_encoder

    return open_encoder(reg.path(reg.resolve(ref)).parent, threads=1)


def test_embeddings_with_ids_and_bad_rows(reg: Registry, tmp_path: Path) -> None:
    records = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(TEXTS)]
    records[3]["text"], records[5]["text"] = 5, "  "
    del records[8]["text"]
    out = tmp_path / "vectors.parquet"
    summary = predict_batch("bert:2", jsonl(tmp_path / "in.jsonl", records), out, registry=reg,
                            text_column="text", id_column="id", chunk_rows=16)  # fmt: skip
    assert (summary.rows, summary.errors, summary.chunks) == (37, 3, 3)
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    keep = [i for i in range(40) if i not in (3, 5, 8)]
    assert table.column("id").to_pylist() == [f"doc-{i}" for i in keep]
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    expected, _ = encoder(reg, "bert:2").embed([TEXTS[i] for i in keep])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    lines = (tmp_path / "vectors.parquet.errors.csv").read_text().splitlines()
    assert lines[1:] == ["3,in.jsonl,3,non-string value 5 in column 'text'",
                         "5,in.jsonl,5,empty text in column 'text'",
                         "8,in.jsonl,8,missing column 'text'"]  # fmt: skip


def test_classifier_labels_and_scores_from_parquet(reg: Registry, tmp_path: Path) -> None:
    pq.write_table(pa.table({"review": TEXTS, "n": np.arange(40)}), tmp_path / "in.parquet")
    out = tmp_path / "labels.csv"
    summary = predict_batch("sentiment:2", tmp_path / "in.parquet", out, registry=reg,
                            text_column="review", id_column="n")  # fmt: skip
    assert summary.rows == 40 and summary.errors == 0
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(out)
    assert table.column_names == ["n", "label", "score", "scores_0", "scores_1", "scores_2"]
    logits, _ = encoder(reg, "sentiment:2").classify(TEXTS)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = np.stack([table.column(f"scores_{j}").to_numpy() for j in range(3)], axis=1)
    np.testing.assert_allclose(scores, probs, atol=1e-5)
    assert table.column("label").to_pylist() == [f"LABEL_{k}" for k in probs.argmax(axis=1)]
    np.testing.assert_allclose(table.column("score").to_numpy(), probs.max(axis=1), atol=1e-5)


def generate(engine, prompts: list[list[int]], chunk: int, max_tokens: int) -> list[tuple]:
    """(text, completion tokens) of each prompt, ``chunk`` prompts queued at a time."""
    from modelport.generation import SamplingParams

    done = []
    for start in range(0, len(prompts), chunk):
        queues = [queue.Queue() for _ in prompts[start : start + chunk]]
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        pairs = zip(prompts[start:], queues, strict=False)
        engine.scheduler.submit_all([(p, params, q.put) for p, q in pairs])
        for events in queues:
            parts = []
            while (event := events.get(timeout=60)).finish is None:
                parts.append(event.text)
            done.append(("".join([*parts, event.text]), event.completion_tokens))
    return done


def test_generation_is_the_serving_engine(reg: Registry, tmp_path: Path) -> None:
    """What the serving engine generates for the same prompts, chunk by chunk, three slots
    decoding together: plain prompts, with --chat, and from a column of chat messages."""
    from modelport.generation import EngineOptions, open_engine

    prompts = TEXTS[:12]
    pq.write_table(pa.table({"prompt": prompts}), tmp_path / "p.parquet")
    messages = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": p}]
                for p in prompts]  # fmt: skip
    jsonl(tmp_path / "m.jsonl", [{"messages": m} for m in messages])
    engine = open_engine(reg.path("llama"), "gguf", EngineOptions(slots=3, threads=1))
    try:
        for source, chat, column, make in (
            ("p.parquet", False, "prompt", engine.encode),
            ("p.parquet", True, "prompt",
             lambda p: engine.chat_prompt([{"role": "user", "content": p}])),
            ("m.jsonl", False, "messages", engine.chat_prompt),
        ):  # fmt: skip
            out = tmp_path / f"{column}-{chat}.parquet"
            predict_batch("llama", tmp_path / source, out, registry=reg, text_column=column,
                          max_tokens=12, chat=chat, batch_size=3, chunk_rows=5)  # fmt: skip
            table = pq.read_table(out).to_pydict()
            items = [make(p) for p in (prompts if column == "prompt" else messages)]
            expected = generate(engine, items, 5, 12)
            assert table["generated_text"] == [text for text, _ in expected], (source, chat)
            assert table["completion_tokens"] == [n for _, n in expected]
            assert table["prompt_tokens"] == [len(p) for p in items]
            assert set(table["finish_reason"]) <= {"stop", "length"}
        assert len(set(table["generated_text"])) > 6
    finally:
        engine.close()


def test_plain_text_lines_to_npy(reg: Registry, tmp_path: Path) -> None:
    (tmp_path / "lines.txt").write_bytes("\n".join(TEXTS[:6]).encode() + b"\r\n\xff\xfe\n")
    out = tmp_path / "vectors.npy"
    summary = predict_batch("bert:2", tmp_path / "lines.txt", out, registry=reg)
    assert (summary.rows, summary.errors) == (6, 1)
    expected, _ = encoder(reg, "bert:2").embed(TEXTS[:6])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    reason = (tmp_path / "vectors.npy.errors.csv").read_text().splitlines()[1]
    assert reason == "6,lines.txt,6,not UTF-8 text"


BAD = {
    "missing column": ("bert", "docs.jsonl", ["--text-column", "body"],
                       "unknown column(s) ['body'] in --text-column; columns: id, text"),
    "numbers": ("bert", "numbers.parquet", ["--text-column", "text"],
                "column 'text' of numbers.parquet holds numbers, not text"),
    "empty file": ("bert", "empty.jsonl", ["--text-column", "text"],
                   "empty.jsonl is empty: no texts to score"),
    "tensor model": ("mlp", "docs.jsonl", ["--text-column", "text"],
                     "mlp:1 is a tensor model (onnx); --text-column is for encoders"),
    "no text column": ("bert", "docs.jsonl", [],
                       "bert:2 is a feature-extraction model: name the column that holds the "
                       "texts with --text-column"),
}  # fmt: skip
REFUSED = {  # the same checks, in the Python API
    "chat on an encoder": ("bert", "docs.jsonl", ["--text-column", "text", "--chat"],
                           "--chat applies a language model's chat template"),
    "messages to an encoder": ("bert", "messages.jsonl", ["--text-column", "messages"],
                               "column 'messages' holds lists; an encoder or classifier takes"),
    "bad temperature": ("llama", "docs.jsonl", ["--text-column", "text", "--temperature", "3"],
                        "--temperature must be between 0 and 2, got 3.0"),
    "no tokens": ("llama", "docs.jsonl", ["--text-column", "text", "--max-tokens", "0"],
                  "--max-tokens must be between 1 and 65536, got 0"),
}  # fmt: skip


def inputs(folder: Path) -> None:
    jsonl(folder / "docs.jsonl", [{"id": 1, "text": "hello"}])
    jsonl(folder / "messages.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    pq.write_table(pa.table({"text": [1.5, 2.5]}), folder / "numbers.parquet")
    (folder / "empty.jsonl").write_text("")


@pytest.mark.parametrize("case", REFUSED)
def test_refused_before_the_model_loads(reg: Registry, tmp_path: Path, case: str) -> None:
    inputs(tmp_path)
    model, source, args, message = REFUSED[case]
    options = {"text_column": args[1], "chat": "--chat" in args,
               "temperature": float(args[-1]) if "--temperature" in args else 0.0,
               "max_tokens": int(args[-1]) if "--max-tokens" in args else 1}  # fmt: skip
    with pytest.raises(InvalidInput, match=re.escape(message)):
        predict_batch(model, tmp_path / source, tmp_path / "o.parquet", registry=reg, **options)
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_1(home: Path, tmp_path: Path, case: str) -> None:
    inputs(tmp_path)
    model, source, args, message = BAD[case]
    result = run(home, model, "-i", str(tmp_path / source), "-o", str(tmp_path / "o.parquet"),
                 *args)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_interrupted_generation_resumes_to_the_same_bytes(home: Path, reg: Registry,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """Interrupt a sampling job (temperature 0.8, a seed) half-way, as Ctrl-C does: the chunk
    being generated is not committed with its sequences cut short; the same command finishes
    the job, and its output is byte for byte an uninterrupted run's."""
    n = 120
    pq.write_table(pa.table({"id": np.arange(n), "text": [TEXTS[i % 40] for i in range(n)]}),
                   tmp_path / "in.parquet")  # fmt: skip
    args = ["llama", "-i", str(tmp_path / "in.parquet"), "--text-column", "text",
            "--id-column", "id", "--max-tokens", "32", "--temperature", "0.8", "--seed", "7",
            "--chunk-rows", "6"]  # fmt: skip
    (tmp_path / "a").mkdir()
    whole = tmp_path / "a" / "out.parquet"
    predict_batch("llama", tmp_path / "in.parquet", whole, registry=reg, text_column="text",
                  id_column="id", max_tokens=32, temperature=0.8, seed=7, chunk_rows=6)  # fmt: skip
    out = tmp_path / "out.parquet"
    job = run(home, *args, "-o", str(out), wait=False)
    deadline = time.monotonic() + 60
    while len(committed(workdir_for(out))) < 3 and time.monotonic() < deadline:
        assert job.poll() is None, job.communicate()[1].decode()
        time.sleep(0.01)
    job.send_signal(signal.SIGINT)
    assert job.wait(timeout=60) == 130
    assert 3 <= len(committed(workdir_for(out))) < n // 6 and not out.exists()
    again = run(home, *args, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert "chunks resumed" in again.stdout and "rows/s" in again.stderr
    assert out.read_bytes() == whole.read_bytes()
    assert not (tmp_path / "out.parquet.errors.csv").exists()  # no row was cut short
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == list(range(n))
    assert len(set(table.column("generated_text").to_pylist()[:40])) > 30  # sampled, per row


def test_a_dataframe_in_memory(reg: Registry) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": [7, 8, 9], "text": [TEXTS[0], None, TEXTS[1]]})
    summary = predict_batch("bert:2", frame, registry=reg, text_column="text", id_column="id")
    assert (summary.rows, summary.errors) == (2, 1)
    expected, _ = encoder(reg, "bert:2").embed([TEXTS[0], TEXTS[1]])
    np.testing.assert_allclose(summary.outputs["embedding"], expected, atol=1e-5)
    assert summary.outputs["id"].tolist() == [7, 9]
    assert summary.error_rows == [[1, "<memory-table>", 1, "missing value in column 'text'"]]
