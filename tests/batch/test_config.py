"""A batch job's settings: read from the environment as ``Settings`` reads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelport.batch.config import BatchSettings
from modelport.settings import Settings

ENVIRONMENTS = [
    {},
    {"MODELPORT_HOME": "/data/mp"},
    {"MODELPORT_HOME": "~/mp", "MODELPORT_BLOB_DIR": "relative/blobs"},
    {"modelport_home": "/lower/case", "MODELPORT_INTRA_OP_THREADS": "3"},
    {"MODELPORT_DATABASE_URL": "postgresql://u@db/mp", "MODELPORT_GRAPH_OPTIMIZATION": "basic"},
    {"MODELPORT_BATCH_MEMORY_BUDGET": "512MiB", "MODELPORT_INTER_OP_THREADS": "2"},
    {"MODELPORT_VERIFY_ON_LOAD": "0"},
    {"MODELPORT_VERIFY_ON_LOAD": "yes"},
    # not plain, or not batch's: read by Settings itself
    {"MODELPORT_VERIFY_ON_LOAD": "False"},
    {"MODELPORT_INTRA_OP_THREADS": " 4"},
    {"MODELPORT_BATCH_MEMORY_BUDGET": "1073741824"},
    {"MODELPORT_USER": "someone", "MODELPORT_HOME": "/data/mp"},
    {"MODELPORT_SERVE__MAX_BATCH_SIZE": "32"},
    {"MODELPORT_HOME": " /padded "},
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    for key in list(os.environ):
        if key.lower().startswith("modelport_"):
            monkeypatch.delenv(key)

    def use(values: dict[str, str]) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return use


@pytest.mark.parametrize("values", ENVIRONMENTS)
def test_read_as_settings_reads(environment, values: dict[str, str]) -> None:
    environment(values)
    read = BatchSettings.read()
    assert read == BatchSettings.of(Settings())
    assert read.resolved_database_url == Settings().resolved_database_url
    assert read.resolved_blob_dir == Settings().resolved_blob_dir
    assert BatchSettings.read(home=Path("/over")) == BatchSettings.of(Settings(home="/over"))


@pytest.mark.parametrize("values", [{"MODELPORT_INTRA_OP_THREADS": "many"},
                                    {"MODELPORT_BATCH_MEMORY_BUDGET": "lots"},
                                    {"MODELPORT_RATE_LIMIT": "fast"}])  # fmt: skip
def test_bad_values_are_the_errors_settings_give(environment, values: dict[str, str]) -> None:
    environment(values)
    with pytest.raises(ValidationError) as want:
        Settings()
    with pytest.raises(ValidationError) as got:
        BatchSettings.read()
    assert str(got.value) == str(want.value)


def test_plain_variables_are_read_without_pydantic(tmp_path: Path) -> None:
    code = (
        "import sys; from modelport.batch.config import BatchSettings\n"
        "s = BatchSettings.read(); print(s.home, s.intra_op_threads, s.batch_memory_budget)\n"
        "print(sorted(m for m in ('pydantic', 'pydantic_settings') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("modelport_")}
    env.update(MODELPORT_HOME=str(tmp_path), MODELPORT_INTRA_OP_THREADS="2",
               MODELPORT_BATCH_MEMORY_BUDGET="64MiB")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.stdout.splitlines() == [f"{tmp_path} 2 {64 << 20}", "[]"], out.stderr
