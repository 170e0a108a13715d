"""Chunks and model batches are sized from a row's bytes and a memory budget, for any model."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from modelport.batch import predict_batch
from modelport.batch.plan import MAX_BATCH_SIZE, MAX_CHUNK_ROWS, row_bytes, sizes
from modelport.errors import InvalidInput
from modelport.registry import Registry
from modelport.settings import Settings, parse_size
from modelport.signature import Signature, TensorSpec
from tests.batch.conftest import expected, features

OUT = (TensorSpec("y", "float32", (-1, 10)),)
DIGITS = Signature((TensorSpec("input", "float32", (-1, 64)),), OUT)
IMAGES = Signature((TensorSpec("x", "float32", (-1, 3, 96, 96)),), OUT)
FREE = Signature((TensorSpec("x", "float32", (-1, 3, -1, -1)),), OUT)


def test_a_row_is_as_many_bytes_as_its_model_inputs() -> None:
    assert row_bytes(DIGITS) == 64 * 4
    assert row_bytes(IMAGES) == 3 * 96 * 96 * 4
    assert row_bytes(FREE, (3, 96, 96)) == 3 * 96 * 96 * 4  # an NPY row fills free dimensions
    two = Signature((TensorSpec("a", "float32", (-1, 8)), TensorSpec("k", "int64", (-1,))), OUT)
    assert row_bytes(two) == 8 * 4 + 8


def test_small_rows_reach_the_caps_and_large_rows_share_the_budget() -> None:
    gib = 1 << 30
    assert sizes(DIGITS, None, gib, workers=2) == (MAX_CHUNK_ROWS, MAX_BATCH_SIZE)
    chunk_rows, batch_size = sizes(IMAGES, None, gib, workers=2)
    assert (chunk_rows, batch_size) == (gib // (3 * 6 * 110_592), gib // (32 * 2 * 110_592))
    assert (chunk_rows, batch_size) == (539, 151)
    for workers in (1, 2, 4, 16):  # the chunks in flight fit the budget, whatever the cores
        chunk_rows, batch_size = sizes(IMAGES, None, gib, workers)
        assert 3 * (2 * workers + 2) * chunk_rows * 110_592 <= gib
        assert 1 <= batch_size <= chunk_rows
    assert sizes(IMAGES, None, 1 << 20, workers=2) == (1, 1)  # never below one row


def test_sizes_given_by_hand_win_and_the_budget_is_a_setting(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = features(9000)
    budget = 1 << 20
    auto = sizes(reg.resolve("mlp").signature, None, budget, os.cpu_count() or 1)
    summary = predict_batch("mlp", x, registry=reg, memory_budget="1MiB")
    assert (summary.chunk_rows, summary.batch_size) == auto
    assert summary.chunks == 1 + math.ceil((9000 - auto[1]) / auto[0]) > 2  # one batch first
    assert np.array_equal(summary.outputs["probabilities"], expected(reg, x))
    summary = predict_batch("mlp", x, registry=reg, chunk_rows=1000, batch_size=7,
                            memory_budget="1MiB")  # fmt: skip
    assert (summary.chunk_rows, summary.batch_size, summary.chunks) == (1000, 7, 1 + 9)
    monkeypatch.setenv("MODELPORT_BATCH_MEMORY_BUDGET", "1MiB")
    assert Settings().batch_memory_budget == budget
    with Registry(Settings(home=reg.settings.home)) as from_env:
        assert predict_batch("mlp", x, registry=from_env).chunk_rows == auto[0]


def test_memory_budgets_are_sizes() -> None:
    assert parse_size("1GiB") == parse_size(1 << 30) == 1 << 30
    assert parse_size("512MiB") == 512 << 20 and parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5 G") == 3 << 29
    for bad in ("lots", "12 parsecs", "-1G", "100KiB"):
        with pytest.raises(InvalidInput):
            parse_size(bad)


def test_sizes_given_by_hand_are_checked(reg: Registry) -> None:
    x = features(10)
    with pytest.raises(InvalidInput, match="--chunk-rows must be at least 1"):
        predict_batch("mlp", x, registry=reg, chunk_rows=0)
    with pytest.raises(InvalidInput, match="--batch-size must be at least 1"):
        predict_batch("mlp", x, registry=reg, batch_size=0)
    with pytest.raises(InvalidInput, match="not a size"):
        predict_batch("mlp", x, registry=reg, memory_budget="plenty")
