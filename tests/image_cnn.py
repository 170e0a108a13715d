"""A small residual image CNN (Conv + BatchNorm + ReLU, two residual adds) built with PyTorch,
registered through modelport's importer and converted to OpenVINO and TFLite, for tests that need
an image model on every runtime. Input ``image`` float32[batch, 3, 96, 96], output ``logits``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from modelport.registry import Registry

SHAPE = (3, 96, 96)


def images(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, *SHAPE)).astype(np.float32)


def residual_cnn() -> Any:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(x + self.bn2(self.conv2(y)))  # the residual add

    def stage(cin: int, cout: int) -> Any:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(), Block(cout))  # fmt: skip

    torch.manual_seed(0)
    model = nn.Sequential(stage(3, 8), stage(8, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10))  # fmt: skip
    model.train()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for seed in range(4):
            model(torch.from_numpy(images(16, seed) * 2 + 0.5))
    return model.eval()


def register_cnn(registry: Registry, name: str = "cnn") -> dict[str, str]:
    """``name``:1 ONNX (production), :2 OpenVINO, :3 TFLite; runtime name -> reference."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import torch

    import modelport
    from modelport.conversion import convert

    onnx = modelport.register(residual_cnn(), name, registry=registry, alias="production",
                              sample_input=torch.from_numpy(images(2)), input_names=["image"],
                              output_names=["logits"])  # fmt: skip
    sample = {"image": images(16, seed=9)}
    openvino = convert(onnx.ref, "openvino", registry=registry, sample=sample)
    tflite = convert(onnx.ref, "tflite", registry=registry, sample=sample)
    return {"onnxruntime": onnx.ref, "openvino": openvino.version.ref,
            "litert": tflite.version.ref}  # fmt: skip
