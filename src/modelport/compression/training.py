"""Short PyTorch training runs shared by distillation and fine-tuning after pruning.

The loss mixes soft targets from a teacher (KL divergence at a temperature) with hard labels
(cross-entropy) when labels are given: ``alpha * CE + (1 - alpha) * T^2 * KL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import InvalidInput, MissingDependency


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the hard-label loss when labels are given
    seed: int = 0

    def check(self) -> TrainConfig:
        if self.epochs < 1:
            raise InvalidInput(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InvalidInput(f"the batch size must be at least 1, got {self.batch_size}")
        if not self.temperature > 0:
            raise InvalidInput(f"the temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InvalidInput(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.learning_rate > 0:
            raise InvalidInput(f"the learning rate must be positive, got {self.learning_rate}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "seed": self.seed,
        }


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependency("torch", "torch") from None
    return torch


def teacher_logits(outputs: np.ndarray) -> np.ndarray:
    """Logits from a teacher's first output; probabilities (rows summing to 1) become log-probs."""
    outputs = outputs.astype(np.float32)
    if outputs.ndim != 2:
        raise InvalidInput(
            f"distillation needs a [batch, classes] teacher output, got shape {list(outputs.shape)}"
        )
    if outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        return np.log(np.clip(outputs, 1e-8, 1.0))
    return outputs


def train(
    module: Any,
    forward_logits: Any,
    x: np.ndarray,
    soft: np.ndarray,
    labels: np.ndarray | None,
    config: TrainConfig,
    description: str,
) -> list[float]:
    """Train ``module`` in place; ``forward_logits(batch)`` gives logits; returns epoch losses."""
    torch = import_torch()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    teacher = torch.from_numpy(teacher_logits(soft))
    yt = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    losses: list[float] = []
    module.train()
    with _progress() as progress:
        task = progress.add_task(description, total=config.epochs, loss=float("nan"))
        for _ in range(config.epochs):
            order = torch.randperm(len(xt), generator=generator)
            total = 0.0
            for start in range(0, len(xt), config.batch_size):
                idx = order[start : start + config.batch_size]
                logits = forward_logits(xt[idx])
                loss = _distill_loss(torch, logits, teacher[idx], None if yt is None else yt[idx],
                                    config)  # fmt: skip
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            scheduler.step()
            losses.append(total / len(xt))
            progress.update(task, advance=1, loss=losses[-1])
    module.eval()
    return losses


def _distill_loss(torch: Any, logits: Any, teacher: Any, labels: Any, config: TrainConfig) -> Any:
    """KL divergence to the teacher's softened logits (scaled by T squared), blended with cross
    entropy on ``labels`` by ``config.alpha`` when there are labels."""
    t = config.temperature
    kd = torch.nn.functional.kl_div(
        torch.log_softmax(logits / t, dim=1),
        torch.log_softmax(teacher / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if labels is None:
        return kd
    ce = torch.nn.functional.cross_entropy(logits, labels)
    return config.alpha * ce + (1.0 - config.alpha) * kd


def _progress() -> Any:
    """A transient progress bar on stderr: epochs done, the last loss, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=Console(stderr=True), transient=True)
