from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from modelport.registry import Registry
from modelport.settings import Settings

WRITERS = 8
PER_WRITER = 4


def _writer(settings: Settings, workdir: str, writer: int, barrier, results) -> None:  # type: ignore[no-untyped-def]
    import modelport
    from tests.conftest import make_mlp_onnx

    registry = Registry(settings)
    paths = [
        make_mlp_onnx(Path(workdir) / f"w{writer}-{i}.onnx", seed=1000 * writer + i)
        for i in range(PER_WRITER)
    ]
    barrier.wait()
    for path in paths:
        version = modelport.register(path, "shared", registry=registry)
        results.put((writer, version.version, version.sha256))
    registry.close()


def test_concurrent_writers_get_distinct_versions(settings: Settings, tmp_path: Path) -> None:
    Registry(settings).close()  # create the catalogue once, as a deployment would
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(settings, str(tmp_path), w, barrier, results))
        for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=240) for _ in range(WRITERS * PER_WRITER)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    numbers = sorted(v for _, v, _ in got)
    assert numbers == list(range(1, WRITERS * PER_WRITER + 1))
    assert len({sha for _, _, sha in got}) == WRITERS * PER_WRITER

    registry = Registry(settings)
    try:
        stored = {v.version: v.sha256 for v in registry.list_versions("shared")}
        assert stored == {v: sha for _, v, sha in got}
        assert [e.version for e in registry.history("shared")] == numbers
        assert registry.verify() == []
    finally:
        registry.close()
