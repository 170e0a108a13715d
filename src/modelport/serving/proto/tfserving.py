"""TensorFlow Serving's gRPC messages, built from the ``tensorflow-serving-api`` package's own
descriptors without importing TensorFlow.

    messages = tfserving_messages()
    request = messages["tensorflow.serving.PredictRequest"].FromString(wire_bytes)
    pool = messages.pool           # every file loaded, for server reflection

The package's ``*_pb2`` modules import ``tensorflow.core.framework``, which runs TensorFlow's
``__init__`` (about 7 s and 700 MB here) only to reach a few message definitions. Each generated
module carries its file's serialized ``FileDescriptorProto``; this reads those bytes from the
installed files (the modules are never executed), adds them with their dependencies to a private
descriptor pool and builds the message classes from it: the same definitions, on the same wire.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import MissingDependency

SERVICES = (
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
)


@dataclass(frozen=True)
class Messages:
    pool: Any  # google.protobuf.descriptor_pool.DescriptorPool
    files: tuple[Any, ...]  # FileDescriptorProto of every file added, dependencies first

    def __getitem__(self, full_name: str) -> type:
        from google.protobuf import message_factory

        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))


@functools.cache
def tfserving_messages() -> Messages:
    """The messages of PredictionService and ModelService (MissingDependency without the
    ``tfserving`` extra)."""
    from google.protobuf import descriptor_pool

    tf = _package_dir("tensorflow")
    roots = {"tensorflow_serving": _package_dir("tensorflow_serving"), "tensorflow": tf,
             "xla": tf / "compiler" / "xla", "tsl": tf / "compiler" / "xla" / "tsl"}  # fmt: skip
    pool, added, order = descriptor_pool.DescriptorPool(), set(), []

    def add(name: str) -> None:
        if name in added:
            return
        added.add(name)
        proto = _file(name, roots)
        for dependency in proto.dependency:
            add(dependency)
        pool.Add(proto)
        order.append(proto)

    for service in SERVICES:
        add(service)
    return Messages(pool, tuple(order))


def _package_dir(top: str) -> Path:
    spec = importlib.util.find_spec(top)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("tensorflow-serving-api", "tfserving")
    return Path(next(iter(spec.submodule_search_locations)))


def _file(name: str, roots: dict[str, Path]) -> Any:
    """The FileDescriptorProto of ``a/b/c.proto``: protobuf's own well-known types from the
    protobuf package, the others read out of ``a/b/c_pb2.py``."""
    from google.protobuf import descriptor_pb2

    top, _, rest = name.partition("/")
    if top == "google":
        module = importlib.import_module(name.removesuffix(".proto").replace("/", ".") + "_pb2")
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        return proto
    source = (roots[top] / rest).with_name(Path(rest).stem + "_pb2.py")
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
    raise MissingDependency("tensorflow-serving-api", "tfserving")
