"""Sentence encoders on ONNX Runtime, the ``tokenizers`` library in the loop.

    encoder = open_encoder(Path("checkout-folder"), threads=2)
    vectors, tokens = encoder.embed(["a sentence", "another"])   # mean-pooled, L2-normalised
    scores, tokens = encoder.classify(["great film"])             # a classifier's logits

The folder holds ``model.onnx`` (inputs input_ids, attention_mask[, token_type_ids]; output
the last hidden state, or a sequence classifier's ``logits``) and the checkpoint's
``tokenizer.json``. Long lists are split into
batches of ``batch`` texts, so a client never has to. Texts are sorted by token count before
they are batched and each batch is padded only to its own longest text (answers come back in
the caller's order): a list of mixed lengths costs about its real token count, not its
longest text times its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelport.errors import InvalidInput, MissingDependency


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average of the token vectors the mask keeps, scaled to unit length."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def load_tokenizer(folder: Path, max_length: int):
    """The folder's ``tokenizer.json``, truncating at ``max_length`` tokens."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependency("tokenizers", "llm") from None
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise InvalidInput(f"{folder} has no tokenizer.json")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length)
    return tokenizer


def pad_id(tokenizer) -> int:
    """The id padding uses: the tokenizer's own setting, else ``[PAD]``, else 0."""
    pad = tokenizer.padding or {}
    if "pad_id" in pad:
        return int(pad["pad_id"])
    found = tokenizer.token_to_id(pad.get("pad_token", "[PAD]"))
    return 0 if found is None else int(found)


class Encoder:
    def __init__(self, session, tokenizer, batch: int = 32) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.pad_id = pad_id(tokenizer)
        tokenizer.no_padding()
        self.batch = batch
        self.inputs = {i.name for i in session.get_inputs()}
        output = session.get_outputs()[0]
        self.classifier = output.name == "logits"
        self.width = output.shape[-1] if isinstance(output.shape[-1], int) else -1

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Vectors for ``texts`` and the number of tokens they took."""
        return self._run(texts, pool=True)

    def classify(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """A sequence classifier's logits for ``texts`` and the number of tokens they took."""
        return self._run(texts, pool=False)

    def _run(self, texts: Sequence[str], pool: bool) -> tuple[np.ndarray, int]:
        if pool == self.classifier:
            want = "an encoder" if pool else "a sequence classifier"
            raise InvalidInput(f"this model is not {want}")
        if not texts:
            raise InvalidInput("no texts to encode")
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out: list[np.ndarray] = []
        for start in range(0, len(order), self.batch):
            ids, mask = self._pad([encodings[i] for i in order[start : start + self.batch]])
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            first = self.session.run(None, feed)[0]
            out.append(mean_pool(first, mask) if pool else first.astype(np.float32))
        result = np.empty((len(order), out[0].shape[-1]), dtype=np.float32)
        result[order] = np.concatenate(out)
        return result, int(sum(len(e.ids) for e in encodings))

    def _pad(self, encodings: list) -> tuple[np.ndarray, np.ndarray]:
        """input_ids and attention_mask of one batch, padded to its longest text."""
        width = max(1, *(len(e.ids) for e in encodings))
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def close(self) -> None:
        self.session = None


def open_encoder(folder: Path, threads: int = 0, max_length: int = 512) -> Encoder:
    import onnxruntime as ort

    candidates = sorted(folder.glob("*.onnx"))
    if len(candidates) != 1:
        raise InvalidInput(f"{folder} must hold one .onnx encoder, found {len(candidates)}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(candidates[0]), options, providers=["CPUExecutionProvider"])
    return Encoder(session, load_tokenizer(folder, max_length))
