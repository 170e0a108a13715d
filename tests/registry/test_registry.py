from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.errors import Conflict, InvalidInput, InvalidReference, NotFound
from modelport.registry import Registry
from tests.conftest import make_mlp_onnx


def _register(registry: Registry, tmp_path: Path, name: str = "m", seed: int = 0, **kw):
    path = make_mlp_onnx(tmp_path / f"{name}-{seed}.onnx", seed=seed)
    return modelport.register(path, name, registry=registry, **kw)


def test_versions_are_numbered_and_immutable(registry: Registry, tmp_path: Path) -> None:
    v1 = _register(registry, tmp_path, seed=1, metrics={"acc": 0.9}, tags={"team": "vision"},
                   description="first")  # fmt: skip
    v2 = _register(registry, tmp_path, seed=2)
    assert (v1.version, v2.version) == (1, 2)
    got = registry.get("m:1")
    assert got.metrics == {"acc": 0.9}
    assert got.tags == {"team": "vision"}
    assert got.description == "first"
    assert got.format == "onnx"
    assert got.signature.inputs[0].shape == (-1, 4)
    assert got.signature.outputs[0].name == "probabilities"
    assert got.created_by == "tester"
    assert registry.resolve("m").version == 2
    with pytest.raises(AttributeError):
        got.version = 5  # type: ignore[misc]


def test_aliases_move_and_roll_back_through_history(registry: Registry, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        _register(registry, tmp_path, seed=seed)
    registry.set_alias("m", "production", 1)
    registry.set_alias("m", "production", 2)
    registry.set_alias("m", "production", 3)
    assert registry.resolve("m@production").version == 3
    assert registry.rollback("m", "production").version == 2
    assert registry.rollback("m", "production").version == 1
    with pytest.raises(Conflict, match="no earlier position"):
        registry.rollback("m", "production")
    assert registry.resolve("m@production").version == 1
    moves = [(e.action, e.from_version, e.version) for e in registry.history("m", "production")]
    assert moves == [
        ("alias_set", None, 1), ("alias_set", 1, 2), ("alias_set", 2, 3),
        ("rollback", 3, 2), ("rollback", 2, 1),
    ]  # fmt: skip
    assert all(e.actor == "tester" for e in registry.history("m"))


def test_alias_on_register_and_remove(registry: Registry, tmp_path: Path) -> None:
    v = _register(registry, tmp_path, alias="staging")
    assert v.aliases == ("staging",)
    assert registry.list_models()[0].aliases == {"staging": 1}
    registry.remove_alias("m", "staging")
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        registry.resolve("m@staging")
    with pytest.raises(NotFound):
        registry.remove_alias("m", "staging")


def test_rollback_refuses_a_deleted_target(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, seed=1)
    _register(registry, tmp_path, seed=2)
    registry.set_alias("m", "production", 1)
    registry.set_alias("m", "production", 2)
    registry.delete("m:1")
    with pytest.raises(Conflict, match="deleted"):
        registry.rollback("m", "production")
    assert registry.resolve("m@production").version == 2


def test_delete_is_refused_while_aliased_and_numbers_are_not_reused(
    registry: Registry, tmp_path: Path
) -> None:
    _register(registry, tmp_path, seed=1, alias="production")
    _register(registry, tmp_path, seed=2)
    with pytest.raises(Conflict, match="production"):
        registry.delete("m:1")
    with pytest.raises(InvalidInput, match="which version"):
        registry.delete("m")
    registry.delete("m:2")
    with pytest.raises(NotFound, match="no version 2"):
        registry.get("m:2")
    assert _register(registry, tmp_path, seed=3).version == 3
    assert [v.version for v in registry.list_versions("m")] == [1, 3]
    actions = [e.action for e in registry.history("m")]
    assert actions.count("delete") == 1


def test_lineage_records_parent_and_transform(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, seed=1)
    child = _register(registry, tmp_path, name="m", seed=2, parent="m:1", transform="quantize",
                      transform_params={"bits": 8, "per_channel": True})  # fmt: skip
    grandchild = _register(registry, tmp_path, name="small", seed=3, parent="m:2",
                           transform="prune", transform_params={"sparsity": 0.5})  # fmt: skip
    assert child.parent == "m:1"
    assert child.transform_params == {"bits": 8, "per_channel": True}
    assert [v.ref for v in registry.lineage(grandchild.ref)] == ["small:1", "m:2", "m:1"]
    with pytest.raises(NotFound):
        _register(registry, tmp_path, seed=4, parent="m:99", transform="prune")


def test_identical_content_is_stored_once(registry: Registry, tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "same.onnx")
    a = modelport.register(path, "a", registry=registry)
    b = modelport.register(path, "b", registry=registry)
    assert a.sha256 == b.sha256
    assert len(list(registry.blobs.digests())) == 1


def test_export_copies_the_verified_artifact(registry: Registry, tmp_path: Path) -> None:
    v = _register(registry, tmp_path)
    out = registry.export("m:1", tmp_path / "out" / "model.onnx")
    from modelport.registry.blobs import sha256_file

    assert sha256_file(out)[0] == v.sha256
    with pytest.raises(Conflict, match="already exists"):
        registry.export("m:1", out)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert registry.export("m", folder) == folder / v.entrypoint


def test_verify_and_gc(registry: Registry, tmp_path: Path) -> None:
    v1 = _register(registry, tmp_path, seed=1)
    v2 = _register(registry, tmp_path, seed=2)
    assert registry.verify() == []
    for ref in ("m:1", "m:2"):
        registry.path(ref)  # checked out, hashed and stamped
    stamps = registry.checkouts / ".verified"
    assert sorted(p.name for p in stamps.iterdir()) == sorted([v1.sha256, v2.sha256])
    registry.delete("m:2")
    (registry.blobs.tmp / "stale.part").write_bytes(b"half")
    report = registry.gc(grace_seconds=0)
    assert report.removed_blobs == 1 and report.removed_tmp == 1 and report.kept_blobs == 1
    assert report.freed_bytes == v2.size
    assert not registry.blobs.exists(v2.sha256)
    assert [p.name for p in stamps.iterdir()] == [v1.sha256]  # kept for the live version only
    assert registry.path("m:1").is_file()
    assert registry.verify() == []
    assert registry.gc(grace_seconds=0).removed_blobs == 0


def test_gc_keeps_young_unreferenced_blobs(registry: Registry, tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "x.onnx")
    digest, _ = registry.blobs.put_file(path)  # as if a registration were about to commit
    assert registry.gc(grace_seconds=600).removed_blobs == 0
    assert registry.blobs.exists(digest)


def test_unknown_things_are_typed_errors(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, alias="production")
    with pytest.raises(NotFound, match="did you mean 'm'"):
        registry.resolve("mm")
    with pytest.raises(NotFound, match=r"no version 7 \(versions: 1\)"):
        registry.resolve("m:7")
    with pytest.raises(NotFound, match=r"aliases: production"):
        registry.resolve("m@prod")
    with pytest.raises(NotFound):
        registry.set_alias("m", "staging", 9)
    with pytest.raises(NotFound):
        registry.history("nope")


@pytest.mark.parametrize(
    "ref",
    ["", "a/b", "..", "a\\b", "x\x00y", "x\ny", "n" * 129, "m:0", "m:-1", "m:one", "m@", "m@1x",
     "m:1:2", "-lead"],
)  # fmt: skip
def test_malformed_references_never_touch_the_catalogue(
    sqlite_registry: Registry, ref: str
) -> None:
    with pytest.raises(InvalidReference):
        sqlite_registry.resolve(ref)


def test_bad_names_metrics_and_tags_write_nothing(registry: Registry, tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "m.onnx")
    for name in ("a/b", "x" * 129, "bad\tname"):
        with pytest.raises(InvalidReference):
            modelport.register(path, name, registry=registry)
    with pytest.raises(InvalidInput, match="must be a number"):
        modelport.register(path, "m", registry=registry, metrics={"acc": "high"})
    with pytest.raises(InvalidInput, match="finite"):
        modelport.register(path, "m", registry=registry, metrics={"acc": float("nan")})
    with pytest.raises(InvalidReference):
        modelport.register(path, "m", registry=registry, tags={"bad/key": "v"})
    with pytest.raises(InvalidReference):
        modelport.register(path, "m", registry=registry, alias="9lives")
    assert registry.list_models() == []
    assert list(registry.blobs.digests()) == []


def test_non_model_files_are_rejected(registry: Registry, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a model\n")
    truncated = tmp_path / "broken.onnx"
    truncated.write_bytes(make_mlp_onnx(tmp_path / "ok.onnx").read_bytes()[:-40])
    for path in (text, truncated, tmp_path / "missing.onnx", tmp_path):
        with pytest.raises(InvalidInput):
            modelport.register(path, "m", registry=registry)
    assert registry.list_models() == []


def test_loaded_model_predicts(registry: Registry, tmp_path: Path) -> None:
    _register(registry, tmp_path, alias="production")
    runtime = modelport.load("m@production", registry=registry)
    out = runtime.predict({"input": np.ones((3, 4))})
    assert out["probabilities"].shape == (3, 3)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    runtime.close()


def test_replicas_share_one_catalogue(settings, tmp_path: Path) -> None:
    one, two = Registry(settings), Registry(settings)
    try:
        _register(one, tmp_path, alias="production")
        assert two.resolve("m@production").version == 1
        two.set_alias("m", "production", 1)
        _register(two, tmp_path, seed=5)
        two.set_alias("m", "production", 2)
        assert one.resolve("m@production").version == 2
    finally:
        one.close()
        two.close()
