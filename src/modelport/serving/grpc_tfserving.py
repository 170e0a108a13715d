"""TensorFlow Serving's gRPC API beside the V2 service, on the same port.

    add_tfserving(server, plane, keys)   # tensorflow.serving.PredictionService + ModelService

``Predict``, ``Classify``, ``Regress`` and ``GetModelMetadata`` of ``PredictionService`` and
``ModelService.GetModelStatus``, as clients built on ``tensorflow-serving-api`` call them
(``PredictionServiceStub(channel).Predict(request)``). The model spec's ``version`` or
``version_label`` (a registry alias) picks the version; the only signature is
``serving_default``. Each call decodes its TensorProtos (or tf.Examples) into one
``InferenceRequest``, makes the one ``DataPlane.infer`` call and encodes the reply; errors carry
TF Serving's status codes (NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for an
unknown label, signature, input or dtype).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from modelport.errors import InvalidInput, NotFound
from modelport.serving.auth import ApiKeys
from modelport.serving.dataplane import DataPlane
from modelport.serving.grpc_v2 import _rpc, _text
from modelport.serving.messages import InferenceRequest, InferenceResponse, Tensor
from modelport.serving.proto.tfserving import tfserving_messages
from modelport.serving.tfexamples import classification, example_inputs, regression

SIGNATURE = "serving_default"
_PREDICT_METHOD, _CLASSIFY, _REGRESS = (
    "tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress",
)  # fmt: skip
# TensorFlow DataType enum name -> (V2 datatype, numpy dtype, TensorProto value field)
_DTYPES = {
    "DT_FLOAT": ("FP32", np.float32, "float_val"), "DT_DOUBLE": ("FP64", np.float64, "double_val"),
    "DT_INT32": ("INT32", np.int32, "int_val"), "DT_UINT8": ("UINT8", np.uint8, "int_val"),
    "DT_INT16": ("INT16", np.int16, "int_val"), "DT_INT8": ("INT8", np.int8, "int_val"),
    "DT_STRING": ("BYTES", object, "string_val"), "DT_INT64": ("INT64", np.int64, "int64_val"),
    "DT_BOOL": ("BOOL", np.bool_, "bool_val"), "DT_UINT16": ("UINT16", np.uint16, "int_val"),
    "DT_HALF": ("FP16", np.float16, "half_val"), "DT_UINT32": ("UINT32", np.uint32, "uint32_val"),
    "DT_UINT64": ("UINT64", np.uint64, "uint64_val"),
}  # fmt: skip
_BY_NUMPY = {np.dtype(v[1]): k for k, v in _DTYPES.items() if v[1] is not object}
_BY_SIGNATURE = {np.dtype(v[1]).name: k for k, v in _DTYPES.items() if v[1] is not object}


class TFServing:
    """The servicer of both services; ``m`` holds the message classes by short name."""

    def __init__(self, plane: DataPlane, keys: ApiKeys | None = None) -> None:
        self.plane = plane
        self.keys = keys or ApiKeys()
        messages = tfserving_messages()
        self.m = _Classes(messages)
        enum = messages.pool.FindEnumTypeByName("tensorflow.DataType")
        self.dtype_name = {v.number: v.name for v in enum.values}
        self.dtype_number = {v.name: v.number for v in enum.values}

    # -- PredictionService ---------------------------------------------------------------------

    @_rpc("infer")
    async def Predict(self, request: Any, context: Any) -> Any:
        neutral = self._request(request.model_spec)
        try:
            neutral.inputs = [self._decode(name, t) for name, t in request.inputs.items()]
        except InvalidInput as exc:
            neutral.error = exc
        neutral.outputs = list(request.output_filter) or None
        answer = await self._infer(neutral)
        response = self.m.PredictResponse()
        self._spec(response.model_spec, answer, request.model_spec.signature_name)
        for name, array in answer.outputs.items():
            self._encode(response.outputs[name], array)
        return response

    @_rpc("infer")
    async def Classify(self, request: Any, context: Any) -> Any:
        answer = await self._examples(request, _CLASSIFY)
        scores, classes = classification(answer)
        response = self.m.ClassificationResponse()
        self._spec(response.model_spec, answer, request.model_spec.signature_name)
        for row, labels in zip(scores, classes, strict=True):
            entry = response.result.classifications.add()
            for label, score in zip(labels, row, strict=True):
                entry.classes.add(label=label, score=float(score))
        return response

    @_rpc("infer")
    async def Regress(self, request: Any, context: Any) -> Any:
        answer = await self._examples(request, _REGRESS)
        values = regression(answer)
        response = self.m.RegressionResponse()
        self._spec(response.model_spec, answer, request.model_spec.signature_name)
        for value in values:
            response.result.regressions.add(value=float(value))
        return response

    @_rpc("infer")
    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
        unknown = [f for f in fields if f != "signature_def"]
        if unknown:
            raise InvalidInput(f"Metadata field {unknown[0]} is not supported")
        model = self._model(request.model_spec)
        _check_signature(request.model_spec.signature_name)
        signatures = self.m.SignatureDefMap()
        signature = signatures.signature_def[SIGNATURE]
        signature.method_name = _PREDICT_METHOD
        for specs, target in ((model.signature.inputs, signature.inputs),
                              (model.signature.outputs, signature.outputs)):  # fmt: skip
            for spec in specs:
                info = target[spec.name]
                info.name = spec.name
                info.dtype = self.dtype_number[_BY_SIGNATURE.get(spec.dtype, "DT_STRING")]
                for dim in spec.shape:
                    info.tensor_shape.dim.add(size=dim if isinstance(dim, int) else -1)
        response = self.m.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        packed = response.metadata["signature_def"]
        packed.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        packed.value = signatures.SerializeToString()
        return response

    # -- ModelService --------------------------------------------------------------------------

    @_rpc("infer")
    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        spec = request.model_spec
        model = self._model(spec)
        explicit = spec.HasField("version") or spec.HasField("version_label")
        versions = [model.version] if explicit else self.plane.models.versions(model.name)
        response = self.m.GetModelStatusResponse()
        for version in sorted(versions, reverse=True):
            status = response.model_version_status.add(version=version)
            status.state = 30  # AVAILABLE
        return response

    # -- decoding and encoding -----------------------------------------------------------------

    def _request(self, spec: Any) -> InferenceRequest:
        if not spec.name:
            raise InvalidInput("Missing ModelSpec")
        _check_signature(spec.signature_name)
        version = spec.version.value if spec.HasField("version") else None
        label = spec.version_label if spec.HasField("version_label") else None
        return InferenceRequest(spec.name, [], version, label, protocol="tfserving-grpc")

    def _model(self, spec: Any) -> Any:
        request = self._request(spec)
        try:
            return self.plane.model(request.model, request.version, request.label)
        except NotFound as exc:
            raise _label_error(self.plane, request, exc) from None

    async def _infer(self, request: InferenceRequest) -> InferenceResponse:
        try:
            return await self.plane.infer(request)
        except NotFound as exc:
            raise _label_error(self.plane, request, exc) from None

    def _spec(self, target: Any, answer: InferenceResponse, signature: str) -> None:
        target.name = answer.model
        target.version.value = answer.version
        target.signature_name = signature or SIGNATURE

    def _decode(self, name: str, proto: Any) -> Tensor:
        """One TensorProto as the neutral tensor: raw ``tensor_content`` or the typed values."""
        dtype = self.dtype_name.get(proto.dtype, str(proto.dtype))
        if dtype not in _DTYPES:
            raise InvalidInput(f"input {name!r} has dtype {dtype}, which is not supported")
        datatype, numpy_type, field = _DTYPES[dtype]
        shape = [d.size for d in proto.tensor_shape.dim]
        if any(size < 0 for size in shape):
            raise InvalidInput(f"input {name!r} has an unknown dimension in {shape}")
        if proto.tensor_content and datatype != "BYTES":
            return Tensor(name, proto.tensor_content, datatype, shape)
        values: Any = list(getattr(proto, field))
        count = int(np.prod(shape)) if shape else 1
        if len(values) == 1 and count > 1:  # TF's compressed form: one value fills the tensor
            values = values * count
        if datatype == "FP16":
            values = np.array(values, np.uint16).view(np.float16).reshape(shape).tolist()
            return Tensor(name, values, datatype, shape)
        if datatype == "BYTES":
            values = [_text(v) for v in values]
        elif len(values) == count:
            values = np.asarray(values, numpy_type).reshape(shape).tolist()
        return Tensor(name, values, datatype, shape)

    def _encode(self, target: Any, array: np.ndarray) -> None:
        for dim in array.shape:
            target.tensor_shape.dim.add(size=dim)
        if array.dtype.kind in "OSU":
            target.dtype = self.dtype_number["DT_STRING"]
            target.string_val.extend(_bytes(v) for v in array.ravel())
            return
        name = _BY_NUMPY.get(array.dtype)
        if name is None:
            raise InvalidInput(f"output dtype {array.dtype} has no TensorFlow dtype")
        target.dtype = self.dtype_number[name]
        target.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"),
                                                                  copy=False).tobytes()  # fmt: skip

    async def _examples(self, request: Any, method: str) -> InferenceResponse:
        """Classify / Regress: tf.Examples as rows of the model's inputs, one feature each."""
        neutral = self._request(request.model_spec)
        try:
            neutral.inputs = example_inputs(request.input, self.plane, neutral)
        except InvalidInput as exc:
            neutral.error = exc
        return await self._infer(neutral)


class _Classes:
    def __init__(self, messages: Any) -> None:
        self._messages = messages

    def __getattr__(self, name: str) -> type:
        full = "tensorflow.serving." + name
        cls = self._messages[full]
        setattr(self, name, cls)
        return cls


def _check_signature(name: str) -> None:
    if name and name != SIGNATURE:
        raise InvalidInput(f'Serving signature key "{name}" not found.')


def _label_error(plane: DataPlane, request: InferenceRequest, exc: NotFound) -> Exception:
    """TF Serving answers an unknown version label with INVALID_ARGUMENT, not NOT_FOUND."""
    if request.label is not None and request.model in plane.models.names():
        return InvalidInput(f"Unrecognized servable version label: {request.label}")
    return exc


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def add_tfserving(server: Any, plane: DataPlane, keys: ApiKeys | None = None) -> tuple[str, ...]:
    """Register both services on a ``grpc.aio`` server; returns their full names."""
    servicer = TFServing(plane, keys)
    m = servicer.m
    services = {
        "tensorflow.serving.PredictionService": {
            "Predict": (servicer.Predict, m.PredictRequest),
            "Classify": (servicer.Classify, m.ClassificationRequest),
            "Regress": (servicer.Regress, m.RegressionRequest),
            "GetModelMetadata": (servicer.GetModelMetadata, m.GetModelMetadataRequest),
        },
        "tensorflow.serving.ModelService": {
            "GetModelStatus": (servicer.GetModelStatus, m.GetModelStatusRequest),
        },
    }
    for service, methods in services.items():
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                call,
                request_deserializer=kind.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )  # fmt: skip
            for name, (call, kind) in methods.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    return tuple(services)
