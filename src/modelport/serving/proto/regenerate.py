"""Regenerate the gRPC stubs from inference.proto (needs grpcio-tools, in the serve-dev extra).

    python src/modelport/serving/proto/regenerate.py          # rewrite the stubs
    python src/modelport/serving/proto/regenerate.py --check  # exit 1 if they are out of date

The stubs are committed so that serving needs only grpcio and protobuf at run time.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]  # .../src
PROTO = HERE.relative_to(SRC) / "inference.proto"
STUBS = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def generate(out: Path) -> None:
    from grpc_tools import protoc

    status = protoc.main([
        "grpc_tools.protoc", f"-I{SRC}", f"--python_out={out}", f"--pyi_out={out}",
        f"--grpc_python_out={out}", str(PROTO),
    ])  # fmt: skip
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")


# The messages live in a private descriptor pool, not protobuf's default one, so that a process
# may import modelport's stubs and another copy of the same protocol (tritonclient.grpc) at once.
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def private_pool(path: Path) -> None:
    text = path.read_text()
    if _DEFAULT_POOL not in text:
        raise SystemExit(f"{path.name}: the generated code changed shape; update regenerate.py")
    path.write_text(text.replace(_DEFAULT_POOL, _PRIVATE_POOL))


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        built = Path(tmp) / PROTO.parent
        private_pool(built / "inference_pb2.py")
        stale = [n for n in STUBS if (built / n).read_bytes() != _read(HERE / n)]
        if "--check" in argv:
            for name in stale:
                print(f"{name} is out of date: run python {Path(__file__).relative_to(SRC.parent)}")
            return 1 if stale else 0
        for name in STUBS:
            (HERE / name).write_bytes((built / name).read_bytes())
        print(f"regenerated {', '.join(STUBS)} in {HERE}")
    return 0


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
