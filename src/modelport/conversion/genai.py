"""Hugging Face checkpoint -> onnxruntime-genai folder (fp32, int8 or int4 weights), offline.

    version = convert_to_genai(registry, "tiny-llama:1", precision="int4")

onnxruntime-genai's model builder runs on the registered checkpoint folder (never a hub name,
so nothing is downloaded) for the CPU execution provider; int8 and int4 quantize the MatMul
weights in blocks (``MatMulNBits``). The result is a new version with lineage, the builder's
exact options, and a parity check against the fp32 transformers model (``textparity``),
refused above the tolerance unless forced.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

from modelport.conversion.textparity import check, checkpoint, measure, parity_tokens
from modelport.errors import BackendError, InvalidInput, MissingDependency
from modelport.registry import ModelVersion, Registry

PRECISIONS = ("fp32", "int8", "int4")
TOLERANCE = {"fp32": (0.99, 0.01), "int8": (0.90, 0.05), "int4": (0.80, 0.10)}
# weight-only quantization: blocks of 32 along K, symmetric, activations kept in fp32
QUANTIZED = {"block_size": "32", "is_symmetric": "true", "accuracy_level": "1"}


def builder_options(precision: str) -> dict[str, str]:
    """The builder's extra options for ``precision`` (recorded on the version)."""
    options = {"hf_token": "false"}
    if precision != "fp32":
        options.update(QUANTIZED)
    return options


def build(folder: Path, target: Path, precision: str, cache: Path) -> None:
    """Run the model builder on ``folder`` into ``target`` (its console output kept quiet)."""
    try:
        from onnxruntime_genai.models.builder import create_model, parse_extra_options
    except ImportError:
        raise MissingDependency("onnxruntime-genai", "genai") from None
    extra = [f"{k}={v}" for k, v in builder_options(precision).items()]
    noise = io.StringIO()
    muted = logging.root.manager.disable
    logging.disable(logging.ERROR)  # the quantizer logs every MatMul; its failures raise
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            options = parse_extra_options(
                None, str(folder), str(target), precision, "cpu", str(cache), extra
            )
            create_model(None, str(folder), str(target), precision, "cpu", str(cache), **options)
    except (NotImplementedError, ValueError, KeyError, AttributeError) as exc:
        raise InvalidInput(f"the model builder cannot convert this checkpoint: {exc}") from None
    except Exception as exc:
        raise BackendError(f"the model builder failed: {type(exc).__name__}: {exc}") from None
    finally:
        logging.disable(muted)


def measure_parity(folder: Path, built: Path) -> dict[str, float]:
    from modelport.generation.genai import GenaiModel
    from modelport.generation.options import EngineOptions

    ids, expected = parity_tokens(folder)
    options = EngineOptions(slots=1, threads=1, batch=max(len(ids), 32))
    return measure(ids, expected, GenaiModel.load(built, options))


def convert_to_genai(
    registry: Registry, ref: str, precision: str = "fp32", force: bool = False
) -> ModelVersion:
    from modelport.importers.genai import from_folder

    if precision not in PRECISIONS:
        raise InvalidInput(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    parent, folder = checkpoint(registry, ref)
    with tempfile.TemporaryDirectory(dir=registry.blobs.tmp, prefix="genai-") as work:
        target = Path(work) / f"{parent.name}-{precision}"
        build(folder, target, precision, Path(work) / "cache")
        parity = measure_parity(folder, target)
        within = check(parity, TOLERANCE[precision], f"the {precision} genai model", force)
        artifact = from_folder(target)
        params: dict[str, Any] = {
            "to": "genai",
            "precision": precision,
            "execution_provider": "cpu",
            "builder": f"onnxruntime-genai {importlib.metadata.version('onnxruntime-genai')}",
            "builder_options": {
                k: v for k, v in builder_options(precision).items() if k != "hf_token"
            },
            "tolerance": dict(zip(("min_agreement", "max_perplexity_change"),
                                  TOLERANCE[precision], strict=True)),
            "forced": not within,
            **parity,
        }  # fmt: skip
        return registry.add(
            artifact, parent.name, parent=parent.ref, transform="convert",
            transform_params=params,
            description=f"{parent.ref} converted to onnxruntime-genai ({precision})",
            metrics={"next_token_agreement": parity["next_token_agreement"],
                     "perplexity_change": parity["perplexity_change"]},
        )  # fmt: skip
