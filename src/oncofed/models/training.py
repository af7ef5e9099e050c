"""Seeded, resumable training loop shared by the reference pipelines.

``fit`` trains with AdamW and a cosine learning-rate decay over the configured epochs, evaluates
on a validation set after every epoch and writes a checkpoint per epoch (model, optimizer, epoch,
history and every RNG state) atomically into
``TrainConfig.checkpoint_dir``; calling it again with the same directory resumes from the newest
checkpoint, and a resumed run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from oncofed.errors import OncofedError
from oncofed.storage.atomic import write_atomic

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^epoch-(\d{4})\.pt$")

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[NDArray[Any], NDArray[Any]], float]
Batch = tuple[Tensor | Sequence[Tensor], Tensor]


class TrainingError(OncofedError):
    """Training cannot start or resume: bad settings, data or checkpoint."""

    code = "training_error"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``threads`` caps torch's intra-op threads."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 2
    checkpoint_dir: Path | None = None

    def resume_key(self) -> dict[str, Any]:
        """Settings a resumed run must share with the run that wrote the checkpoint."""
        return {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's mean training loss, validation loss and validation metric."""

    epoch: int
    train_loss: float
    validation_loss: float
    metric: float


@dataclass
class TrainHistory:
    """What ``fit`` did, epoch by epoch; ``resumed_from`` is the checkpoint epoch it started at."""

    metric_name: str
    epochs: list[EpochRecord] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def final(self) -> EpochRecord:
        """The last epoch's record."""
        if not self.epochs:
            raise TrainingError("no epoch has been trained")
        return self.epochs[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metric_name": self.metric_name,
            "resumed_from": self.resumed_from,
            "epochs": [asdict(e) for e in self.epochs],
        }


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def fit(
    model: nn.Module,
    train: Dataset[Any],
    validation: Dataset[Any],
    *,
    config: TrainConfig,
    loss: LossFn,
    metric: MetricFn,
    metric_name: str,
    collate: Callable[[list[Any]], Batch] | None = None,
) -> TrainHistory:
    """Train ``model`` in place and return its history.

    Items of the datasets are ``(input, target)``; after collation an input that is a tuple or
    list of tensors is passed to the model positionally. ``metric(targets, outputs)`` gets the
    validation targets and the model's raw outputs, stacked over the whole validation set.
    """
    _check_config(config)
    if len(train) == 0 or len(validation) == 0:  # type: ignore[arg-type]
        raise TrainingError("the training and validation sets must both hold at least one case")
    torch.set_num_threads(config.threads)
    generator = seed_everything(config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def cosine(epoch: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(epoch / config.epochs, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    run = _Run(model, optimizer, schedule, generator)
    history = TrainHistory(metric_name)
    if config.checkpoint_dir is not None:
        _resume(config, run, history)
        for group, base in zip(optimizer.param_groups, schedule.base_lrs, strict=True):
            group["lr"] = base * cosine(history.resumed_from)  # this run's epoch count
    train_loader = DataLoader(
        train, batch_size=config.batch_size, shuffle=True, generator=generator, collate_fn=collate
    )
    validation_loader = DataLoader(validation, batch_size=config.batch_size, collate_fn=collate)
    with _EpochProgress(config.epochs, history.resumed_from, len(train_loader)) as progress:
        for epoch in range(history.resumed_from + 1, config.epochs + 1):
            train_loss = _train_epoch(model, train_loader, optimizer, loss, progress.step)
            schedule.step()
            validation_loss, value = _evaluate(model, validation_loader, loss, metric)
            record = EpochRecord(epoch, train_loss, validation_loss, value)
            history.epochs.append(record)
            progress.epoch_done(record, metric_name)
            if config.checkpoint_dir is not None:
                _save_checkpoint(config, run, history)
    return history


def predict(
    model: nn.Module,
    data: Dataset[Any],
    *,
    batch_size: int,
    collate: Callable[[list[Any]], Batch] | None = None,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """``(targets, raw outputs)`` of ``model`` over ``data``, in dataset order."""
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collate)
    targets, outputs = [], []
    model.eval()
    with torch.no_grad():
        for inputs, target in loader:
            outputs.append(_forward(model, inputs).numpy())
            targets.append(target.numpy())
    return np.concatenate(targets), np.concatenate(outputs)


def _check_config(config: TrainConfig) -> None:
    problems = [
        f"{name} must be positive (got {value})"
        for name, value in (
            ("epochs", config.epochs),
            ("batch_size", config.batch_size),
            ("learning_rate", config.learning_rate),
            ("threads", config.threads),
        )
        if value <= 0
    ]
    if config.weight_decay < 0:
        problems.append(f"weight_decay must not be negative (got {config.weight_decay})")
    if problems:
        raise TrainingError("; ".join(problems))


def _forward(model: nn.Module, inputs: Tensor | Sequence[Tensor]) -> Tensor:
    output: Tensor = model(inputs) if isinstance(inputs, Tensor) else model(*inputs)
    return output


def _train_epoch(
    model: nn.Module,
    loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    loss: LossFn,
    step: Callable[[], None],
) -> float:
    model.train()
    total, count = 0.0, 0
    for inputs, target in loader:
        optimizer.zero_grad()
        value = loss(_forward(model, inputs), target)
        value.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total += float(value.detach()) * len(target)
        count += len(target)
        step()
    return total / count


def _evaluate(
    model: nn.Module, loader: DataLoader[Any], loss: LossFn, metric: MetricFn
) -> tuple[float, float]:
    model.eval()
    total, count = 0.0, 0
    targets, outputs = [], []
    with torch.no_grad():
        for inputs, target in loader:
            output = _forward(model, inputs)
            total += float(loss(output, target)) * len(target)
            count += len(target)
            targets.append(target.numpy())
            outputs.append(output.numpy())
    return total / count, float(metric(np.concatenate(targets), np.concatenate(outputs)))


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    # NumPy's and Python's states become tensors and plain tuples so that checkpoints load with
    # torch.load(weights_only=True), which runs no pickled code.
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)  # legacy=True always gives the tuple form
    kind, keys, position, has_gauss, cached = numpy_state
    return {
        "torch": torch.get_rng_state(),
        "loader": generator.get_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "python": random.getstate(),
    }


def _restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@dataclass(frozen=True)
class _Run:
    """What a checkpoint saves and restores besides the history."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator


def _save_checkpoint(config: TrainConfig, run: _Run, history: TrainHistory) -> None:
    assert config.checkpoint_dir is not None
    epoch = history.final.epoch
    state = {
        "epoch": epoch,
        "config": config.resume_key(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "history": [asdict(e) for e in history.epochs],
        "rng": _rng_state(run.generator),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(config.checkpoint_dir / f"epoch-{epoch:04d}.pt", buffer.getvalue())


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in one line (its messages run to paragraphs of advice)."""
    if isinstance(exc, pickle.UnpicklingError):
        return "not a weights-only torch file"
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__


def checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest epoch first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if CHECKPOINT.match(p.name))


def _resume(config: TrainConfig, run: _Run, history: TrainHistory) -> None:
    assert config.checkpoint_dir is not None
    found = checkpoints(config.checkpoint_dir)
    if not found:
        return
    newest = found[-1]
    try:
        state = torch.load(newest, weights_only=True)
        if state["config"] != config.resume_key():
            raise TrainingError(
                f"{newest}: written with settings {state['config']}, "
                f"this run has {config.resume_key()}; use another checkpoint directory"
            )
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["schedule"])
        _restore_rng(state["rng"], run.generator)
    except TrainingError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, KeyError, ValueError,
            TypeError) as exc:  # fmt: skip
        raise TrainingError(
            f"{newest}: cannot resume from this checkpoint ({load_failure(exc)})"
        ) from exc
    history.epochs = [EpochRecord(**e) for e in state["history"]]
    history.resumed_from = int(state["epoch"])
    log.info("resumed from %s (epoch %d)", newest, history.resumed_from)


class _EpochProgress:
    """A rich progress bar with loss and metric per epoch on a terminal, log lines otherwise."""

    def __init__(self, epochs: int, done: int, steps_per_epoch: int) -> None:
        console = Console(file=sys.stderr)
        self.interactive = console.is_terminal
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self.task = self.progress.add_task(
            "training", total=epochs * steps_per_epoch, completed=done * steps_per_epoch, status=""
        )
        self.epochs = epochs

    def __enter__(self) -> _EpochProgress:
        if self.interactive:
            self.progress.start()
        return self

    def step(self) -> None:
        """One batch done."""
        self.progress.advance(self.task)

    def epoch_done(self, record: EpochRecord, metric_name: str) -> None:
        """Show (or log) the epoch's losses and metric."""
        status = (
            f"epoch {record.epoch}/{self.epochs} loss {record.train_loss:.4f} "
            f"val_loss {record.validation_loss:.4f} {metric_name} {record.metric:.4f}"
        )
        self.progress.update(self.task, status=status)
        if self.interactive:
            self.progress.console.print(status)
        else:
            log.info("%s", status)

    def __exit__(self, *exc: object) -> None:
        if self.interactive:
            self.progress.stop()
