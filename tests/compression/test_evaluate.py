from __future__ import annotations

import io

import numpy as np
import pytest

from modelport.compression import cpu_info, evaluate_models, plot_versions, quantize_model
from modelport.compression.cpu import CpuInfo
from modelport.compression.data import load_dataset
from modelport.errors import InvalidInput

FAST = {"threads": 1, "rounds": 3}


def test_evaluate_two_versions_side_by_side(sqlite_registry, tutorial, digits):
    child = quantize_model(tutorial, bits=16, registry=sqlite_registry, **FAST).version
    comp = evaluate_models(
        tutorial,
        child.ref,
        registry=sqlite_registry,
        data=digits.x_test,
        labels=digits.y_test,
        **FAST,
    )
    assert comp.parent.label == tutorial and comp.child.label == child.ref
    assert comp.parent.size == sqlite_registry.resolve(tutorial).size
    assert comp.child.size == child.size
    assert 0 < comp.child.gzip_size < comp.child.size
    assert set(comp.parent.latency_ms) == set(comp.child.latency_ms) == {1, 32}
    assert comp.parent.accuracy > 0.95 and abs(comp.accuracy_drop) < 0.005
    assert comp.agreement > 0.99 and comp.cosine > 0.999 and comp.max_abs_diff < 0.01
    same = evaluate_models(tutorial, tutorial, registry=sqlite_registry, data=digits.x_test, **FAST)
    assert same.agreement == 1.0 and same.max_abs_diff == 0.0 and same.child.accuracy is None
    assert same.guard_drop() == (0.0, "top-1 disagreement with the parent")


def test_plot_of_all_versions(sqlite_registry, tutorial, digits, tmp_path):
    ev = {"eval_data": digits.x_test, "eval_labels": digits.y_test, "registry": sqlite_registry}
    quantize_model(tutorial, bits=8, **ev, **FAST)
    quantize_model(tutorial, bits=16, **ev, **FAST)
    out = plot_versions(sqlite_registry, "digits", tmp_path / "digits.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(InvalidInput, match=r"\.png"):
        plot_versions(sqlite_registry, "digits", tmp_path / "digits.jpg")


def test_cpu_flags_are_read(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Test CPU\nflags\t\t: fpu sse2 avx2 avx512bw avx512_vnni\n")
    info = cpu_info.__wrapped__(str(fake))
    assert info == CpuInfo(
        "Test CPU", frozenset({"fpu", "sse2", "avx2", "avx512bw", "avx512_vnni"})
    )
    assert info.has_vnni and info.int8_features == ["AVX-512 VNNI", "AVX-512BW", "AVX2"]
    plain = tmp_path / "plain"
    plain.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert "no int8 dot-product" in cpu_info.__wrapped__(str(plain)).summary()


def test_dataset_files(tutorial, sqlite_registry, tmp_path, digits):
    sig = sqlite_registry.resolve(tutorial).signature
    npz = tmp_path / "d.npz"
    np.savez(npz, input=digits.x_test[:20])
    labels_csv = tmp_path / "y.csv"
    np.savetxt(labels_csv, digits.y_test[:20], fmt="%d", header="label", comments="")
    data = load_dataset(npz, sig, labels_csv)
    assert len(data) == 20 and data.labels.tolist() == digits.y_test[:20].tolist()
    bad_labels = tmp_path / "bad.npy"
    np.save(bad_labels, np.full(20, 0.5))
    with pytest.raises(InvalidInput, match="integer class indices"):
        load_dataset(npz, sig, bad_labels)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, other=digits.x_test[:2], more=digits.x_test[:2])
    with pytest.raises(InvalidInput, match="columns must be plain numbers|holds"):
        load_dataset(wrong, sig)
    with pytest.raises(InvalidInput, match="use one of"):
        (tmp_path / "x.txt").write_text("1,2")
        load_dataset(tmp_path / "x.txt", sig)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_dataset(tmp_path / "missing.npy", sig)


def test_pareto_table_keeps_the_chosen_mark_on_one_line(tutorial, sqlite_registry, digits):
    """The longest labels auto produces, in a table as wide as the CLI prints to a pipe."""
    from rich.console import Console

    from modelport.compression.evaluate import compare
    from modelport.compression.pipeline import Candidate
    from modelport.compression.report import pareto_table

    version = sqlite_registry.resolve(tutorial)
    path = sqlite_registry.path(version)
    comparison = compare(path, path, version.signature, batches=(1, 32), threads=1, rounds=1)
    labels = ["int8-static-qdq-per-channel-minmax", "int8-static-qoperator-per-tensor-minmax"]
    candidates = [Candidate(label, "quantize", {}, path, comparison) for label in labels]
    for chosen in candidates:
        console = Console(width=140, record=True, file=io.StringIO())
        console.print(pareto_table(candidates, chosen))
        lines = console.export_text().splitlines()
        marked = [line for line in lines if "<- chosen" in line]
        assert len(marked) == 1 and chosen.label in marked[0]
        assert all(len(line) <= 140 for line in lines)


def test_auto_measures_the_parent_once_for_all_candidates(
    tutorial, sqlite_registry, digits, monkeypatch
):
    from modelport.compression import auto_compress, pipeline
    from modelport.compression import evaluate as ev

    measured = []
    real = ev.measure

    def counting(path, sess, rows):
        measured.append(path)
        return real(path, sess, rows)

    monkeypatch.setattr(pipeline, "measure", counting)
    monkeypatch.setattr(ev, "measure", counting)
    result = auto_compress(tutorial, registry=sqlite_registry, eval_data=digits.x_test,
                           eval_labels=digits.y_test, **FAST)  # fmt: skip
    parent = sqlite_registry.path(tutorial)
    assert len(result.candidates) >= 3
    assert measured.count(parent) == 1
    assert len(measured) == len(result.candidates) + 1
    from modelport.compression.data import as_dataset

    signature = sqlite_registry.resolve(tutorial).signature
    rows = as_dataset(digits.x_test, signature, digits.y_test)
    chosen = result.outcome.version  # the candidate files are gone; the chosen one is registered
    fresh = ev.compare(parent, sqlite_registry.path(chosen), signature, rows, threads=1, rounds=1)
    kept = result.chosen.comparison  # its parent figures are the ones a fresh compare finds
    assert (fresh.parent.size, fresh.parent.parameters) == (
        kept.parent.size,
        kept.parent.parameters,
    )
    assert fresh.parent.accuracy == kept.parent.accuracy and fresh.agreement == kept.agreement
