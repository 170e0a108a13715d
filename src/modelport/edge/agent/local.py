"""The device's local V2 REST endpoint: it answers from whichever slot is active, so a switch
(one assignment of ``agent.serving``) drops no request.

    GET  /v2/health/live | /v2/health/ready
    GET  /v2/models/{name}            metadata, with the release, slot and verification
    POST /v2/models/{name}/infer      JSON tensors in, JSON tensors out
    GET  /v2/edge/state               what the agent reports to the fleet
"""

from __future__ import annotations

from typing import Any

from modelport.edge.web import Request, Router, json_reply
from modelport.errors import InvalidInput, NotFound, NotReady
from modelport.serving.codecs import decode_tensor, encode_json, signature_datatype


class LocalApp(Router):
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        super().__init__(
            {
                ("GET", "v2/health/live"): self.live,
                ("GET", "v2/health/ready"): self.ready,
                ("GET", "v2/models/{}"): self.metadata,
                ("POST", "v2/models/{}/infer"): self.infer,
                ("GET", "v2/edge/state"): self.state,
            },
            max_body=16 << 20,
        )

    def _model(self, name: str) -> Any:
        serving = self.agent.serving
        if serving is None:
            raise NotReady("no verified model on this device yet")
        if name != serving.name:
            raise NotFound(f"this device serves {serving.name!r}, not {name!r}")
        return serving

    async def live(self, request: Request):
        return json_reply({"live": True})

    async def ready(self, request: Request):
        if self.agent.serving is None:
            raise NotReady("no verified model on this device yet")
        return json_reply({"ready": True})

    async def state(self, request: Request):
        return json_reply(self.agent.state())

    async def metadata(self, request: Request, name: str):
        serving = self._model(name)
        signature = serving.runtime.signature
        tensors = lambda specs: [  # noqa: E731
            {"name": s.name, "datatype": signature_datatype(s.dtype), "shape": list(s.shape)}
            for s in specs
        ]
        return json_reply(
            {
                "name": serving.name,
                "versions": [str(serving.release_id)],
                "platform": serving.manifest["format"],
                "inputs": tensors(signature.inputs),
                "outputs": tensors(signature.outputs),
                "parameters": {
                    "release_id": serving.release_id,
                    "release": serving.number,
                    "model": serving.manifest["model"],
                    "slot": serving.slot,
                    "verified": True,
                },
            }
        )

    async def infer(self, request: Request, name: str):
        serving = self._model(name)  # the slot active now serves this whole request
        body = request.json()
        tensors = body.get("inputs")
        if not isinstance(tensors, list) or not tensors:
            raise InvalidInput("'inputs' must be a non-empty list of tensors")
        inputs = {}
        for tensor in tensors:
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise InvalidInput("each input must be an object with a 'name'")
            inputs[tensor["name"]] = decode_tensor(
                tensor["name"], tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
            )
        outputs = serving.runtime.predict(inputs)
        self.agent.served += 1
        return json_reply(
            {
                "model_name": serving.name,
                "model_version": str(serving.release_id),
                "outputs": [encode_json(k, v) for k, v in outputs.items()],
            }
        )
