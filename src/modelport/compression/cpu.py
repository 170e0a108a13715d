"""What this CPU offers for int8 inference, read from /proc/cpuinfo flags."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# flag -> what it means for int8 kernels, strongest first
_INT8_FLAGS = (
    ("amx_int8", "AMX int8 tiles"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512bw", "AVX-512BW"),
    ("avx2", "AVX2"),
    ("asimddp", "Arm dot product"),
    ("i8mm", "Arm int8 matrix multiply"),
)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def int8_features(self) -> list[str]:
        return [label for flag, label in _INT8_FLAGS if flag in self.flags]

    @property
    def has_vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"} & self.flags)

    def summary(self) -> str:
        features = ", ".join(self.int8_features) or "no int8 SIMD extensions detected"
        verdict = (
            "int8 dot-product instructions available"
            if self.has_vnni
            else "no int8 dot-product instructions: int8 matmuls emulate them and gain little"
        )
        return f"{self.model}: {features} ({verdict})"


@lru_cache(maxsize=1)
def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> CpuInfo:
    path = Path(cpuinfo)
    model, flags = platform.processor() or platform.machine(), set()
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return CpuInfo(model or "unknown CPU", frozenset(flags))
