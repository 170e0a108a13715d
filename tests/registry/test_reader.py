"""The read-only catalogue reader answers as the Registry does, on a real SQLite catalogue."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelport
from modelport.errors import InvalidReference, ModelportError, NotFound
from modelport.registry import Registry, catalog
from modelport.registry.reader import LAYOUT, CatalogReader, open_reader
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx

REFS = ["m", "m:1", "m:2", "m:3", "m@production", "m@staging", "solo", "solo:1", "solo@prod",
        "m2", "m2:1"]  # fmt: skip
MISSES = ["nope", "mm", "m:9", "m@canary", "solo@staging", "m2@x", "m:0", "bad name!", "m@"]


@pytest.fixture
def catalogue(tmp_path: Path) -> Iterator[Registry]:
    """Three models: versions, moved aliases, metrics and tags, a child with lineage."""
    with Registry(Settings(home=tmp_path / "home", user="tester")) as registry:
        for seed in (1, 2, 3):
            modelport.register(make_mlp_onnx(tmp_path / f"m{seed}.onnx", seed=seed), "m",
                               registry=registry, metrics={"acc": 0.9 + seed / 100},
                               tags={"seed": str(seed)})  # fmt: skip
        registry.set_alias("m", "production", 1)
        registry.set_alias("m", "staging", 3)
        registry.set_alias("m", "production", 2)  # moved
        modelport.register(make_mlp_onnx(tmp_path / "solo.onnx", seed=7), "solo",
                           registry=registry, alias="prod", description="only one")  # fmt: skip
        modelport.register(make_mlp_onnx(tmp_path / "child.onnx", seed=8), "m2",
                           registry=registry, parent="m:2", transform="quantize",
                           transform_params={"bits": 8})  # fmt: skip
        yield registry


def test_every_reference_resolves_to_the_registry_answer(catalogue: Registry) -> None:
    reader = CatalogReader.open(catalogue.settings)
    assert reader is not None
    with reader:
        for ref in REFS:
            got, want = reader.resolve(ref), catalogue.resolve(ref)
            assert got == want, ref
            assert reader.path(got) == catalogue.path(want)
        assert reader.resolve("m2").parent == "m:2"
        assert reader.resolve("m2").transform_params == {"bits": 8}
        assert reader.resolve("m").created_at.tzinfo is not None


def test_unknown_references_give_the_registry_errors(catalogue: Registry) -> None:
    with open_reader(catalogue.settings) as reader:
        assert isinstance(reader, CatalogReader)
        for ref in MISSES:
            with pytest.raises(ModelportError) as want:
                catalogue.resolve(ref)
            with pytest.raises(type(want.value)) as got:
                reader.resolve(ref)
            assert str(got.value) == str(want.value), ref
        with pytest.raises(NotFound, match="did you mean 'm'"):
            reader.resolve("mm")
        with pytest.raises(InvalidReference):
            reader.resolve("")


def test_it_sees_what_the_registry_writes_after_it_opened(catalogue: Registry,
                                                          tmp_path: Path) -> None:  # fmt: skip
    with open_reader(catalogue.settings) as reader:
        assert reader.resolve("m@production").version == 2
        catalogue.set_alias("m", "production", 3)
        modelport.register(make_mlp_onnx(tmp_path / "m4.onnx", seed=4), "m", registry=catalogue)
        assert reader.resolve("m@production").version == 3
        assert reader.resolve("m") == catalogue.resolve("m:4")


def test_what_it_cannot_read_is_left_to_a_registry(catalogue: Registry, tmp_path: Path) -> None:
    assert LAYOUT == catalog.SCHEMA_VERSION  # a new layout: teach the reader, then raise LAYOUT
    postgres = Settings(home=tmp_path / "pg", database_url="postgresql://u@127.0.0.1:1/none")
    assert CatalogReader.open(postgres) is None
    fresh = Settings(home=tmp_path / "fresh")  # no catalogue yet: the Registry makes one
    assert CatalogReader.open(fresh) is None
    with open_reader(fresh) as registry:
        assert isinstance(registry, Registry)
        with pytest.raises(NotFound, match="model 'm' not found"):
            registry.resolve("m")
    assert CatalogReader.open(fresh) is not None  # now there is one
    other = tmp_path / "other"  # a catalogue of another layout
    shutil.copytree(catalogue.settings.home, other)
    db = sqlite3.connect(other / "registry.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    assert CatalogReader.open(Settings(home=other)) is None


def test_reading_imports_no_sqlalchemy(catalogue: Registry) -> None:
    code = ("import sys; from pathlib import Path; from modelport.batch.config import "
            "BatchSettings; from modelport.registry.reader import open_reader\n"
            f"home = Path({str(catalogue.settings.home)!r})\n"
            "with open_reader(BatchSettings.read(home=home)) as r:\n"
            "    print(r.resolve('m@production').ref, type(r).__name__)\n"
            "print(sorted(m for m in ('sqlalchemy', 'pydantic') if m in sys.modules))")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("modelport_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.stdout.split("\n")[:2] == ["m:2 CatalogReader", "[]"], out.stderr
