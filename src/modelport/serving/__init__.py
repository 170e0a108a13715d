"""Real-time serving: Open Inference Protocol (REST + gRPC) and TF-Serving REST in one process.

    from modelport.serving import ServeConfig, ServerOptions, run
    run(registry, ServeConfig(alias="production"), ServerOptions(http_port=8080, grpc_port=8081))

Layers, one way: transports (``rest_v2``, ``rest_tfserving``, ``grpc_v2``; wired in ``app``)
decode the wire with ``codecs`` and call the protocol-agnostic ``DataPlane``, which asks the
``ModelSet`` (``models``) for a ``LoadedModel`` and awaits its ``infer``. Names resolve lazily so
``import modelport.serving`` stays cheap.
"""

from __future__ import annotations

from modelport._lazy import lazy

_LAZY = {
    "ApiKeys": "modelport.serving.auth",
    "BatchConfig": "modelport.serving.config",
    "DataPlane": "modelport.serving.dataplane",
    "LoadedModel": "modelport.serving.loaded",
    "ModelSet": "modelport.serving.models",
    "ServeConfig": "modelport.serving.config",
    "ServerOptions": "modelport.serving.app",
    "ServingApp": "modelport.serving.app",
    "build": "modelport.serving.app",
    "run": "modelport.serving.app",
    "serve": "modelport.serving.app",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy(__name__, _LAZY)
