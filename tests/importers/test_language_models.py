"""Registering GGUF files and Hugging Face checkpoints; corrupt ones are refused with a reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelport.api import register
from modelport.errors import InvalidInput
from modelport.importers.gguf import read_card
from tests.generation.conftest import build_bert, build_causal_lm, smollm2_path


@pytest.fixture
def cli(tmp_path: Path):
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "modelport", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def test_gguf_card_is_read_from_the_header() -> None:
    card = read_card(smollm2_path())
    assert card["architecture"] == "llama"
    assert card["task"] == "text-generation"
    assert card["quantization"] == "Q4_1"
    assert 130e6 < int(card["parameters"]) < 140e6
    assert card["context_length"] == "8192" and card["vocab_size"] == "49152"
    assert card["chat_template"] == "yes"


def test_gguf_registers_and_show_prints_the_card(cli, tmp_path) -> None:
    done = cli("register", str(smollm2_path()), "--name", "smol")
    assert done.returncode == 0, done.stderr
    assert "smol:1" in done.stdout and "gguf" in done.stdout
    shown = cli("show", "smol").stdout
    for needle in ("text-generation", "llama", "Q4_1", "8192", "49152", "134.5M"):
        assert needle in shown, shown


@pytest.mark.parametrize("keep", [100, 2_000_000, -1000])
def test_truncated_gguf_is_refused(cli, tmp_path, keep) -> None:
    data = smollm2_path().read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[:keep])
    proc = cli("register", str(bad), "--name", "cut")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "truncated" in proc.stderr


def test_corrupt_gguf_header_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + b"\xff" * 64)
    with pytest.raises(InvalidInput, match="corrupt"):
        register(bad, "bad", registry=_registry(tmp_path))
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(InvalidInput, match="not a GGUF file"):
        register(bad, "bad", registry=_registry(tmp_path))


def _registry(tmp_path: Path):
    from modelport.registry import Registry

    return Registry.open(tmp_path / "home")


@pytest.mark.parametrize(
    ("kind", "task"), [("llama", "text-generation"), ("bert", "feature-extraction")]
)
def test_checkpoint_folder_registers_with_its_tokenizer(tmp_path, kind, task) -> None:
    folder = (
        build_causal_lm(tmp_path / "ckpt", "llama")
        if kind == "llama"
        else build_bert(tmp_path / "ckpt")
    )
    version = register(folder, "ckpt", registry=_registry(tmp_path))
    assert version.format == "hf" and version.tags["task"] == task
    files = {f.path for f in version.files}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert version.tags["quantization"] == "F32"
    assert int(version.tags["parameters"]) > 10_000
    if kind == "llama":
        assert version.tags["chat_template"] == "yes"
        assert version.tags["context_length"] == "256"


def test_sequence_classification_checkpoint_is_detected(tmp_path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = build_bert(tmp_path / "enc")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=400,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    version = register(folder, "cls", registry=_registry(tmp_path))
    assert version.tags["task"] == "text-classification"
    assert version.tags["architecture"] == "BertForSequenceClassification"


def test_truncated_or_incomplete_checkpoint_is_refused(tmp_path) -> None:
    folder = build_bert(tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="truncated"):
        register(folder, "ckpt", registry=_registry(tmp_path))
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(InvalidInput, match="corrupt"):
        register(folder, "ckpt", registry=_registry(tmp_path))
    weights.write_bytes(data)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InvalidInput, match="no tokenizer.json"):
        register(folder, "ckpt", registry=_registry(tmp_path))


def test_registering_twice_stores_the_blobs_once(tmp_path) -> None:
    reg = _registry(tmp_path)
    copy = tmp_path / "copy.gguf"
    shutil.copy(smollm2_path(), copy)
    a = register(copy, "smol", registry=reg)
    b = register(smollm2_path(), "smol", registry=reg)
    assert a.sha256 == b.sha256 and len(list(reg.blobs.digests())) == 1
    assert np.isclose(a.size, smollm2_path().stat().st_size)
