"""Training objectives behind one interface, chosen by name (``train.objective.name``).

An :class:`Objective` turns a model and a batch into ``{"loss": tensor, **scalar metrics}``. The
train loop knows nothing else about it, so a new loss (text-bridged multi-sensor, masked
alignment, dual long/short text, location alignment) is a new registered class, not a loop edit:

* ``batch_fields`` names the batch entries it needs (:data:`rsvl.train.data.BATCH_FIELDS`);
* ``prepare(model)`` sets up parameters it owns (the logit scale) before the optimizer is built;
* ``__call__(model, batch)`` computes the loss; ``model`` may be wrapped in DDP, so call it
  (never ``model.module``) for the forward pass that carries gradients;
* ``after_step(model)`` runs after each optimizer step (clamping);
* ``start_epoch``/``epoch_metrics``/``state_dict``/``load_state_dict``/``artifacts``: per-epoch
  state an objective keeps (EBA's similarity queue), saved in checkpoints, and files it leaves
  in the run (EBA's dropped pairs).

Registered here: ``clip`` (symmetric InfoNCE, learnable or fixed scale; open_clip's
``ClipLoss``, gathering features across workers), ``coca`` (contrastive + captioning;
open_clip's ``CoCaLoss``, for CoCa models), and for sensor models (``train.sensors``,
:class:`rsvl.models.multisensor.SensorCLIP`) ``closp`` (CLOSP's text bridge: each sensor's own
batch against its texts, the per-sensor losses averaged; ``batching: mixed`` is the naive control
with every sensor in one batch) and ``geoclosp`` (``closp`` plus location↔image alignment).
iEBAKER's ``iebaker`` (EBA, local similarity, KER) is in :mod:`rsvl.train.iebaker_objective`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from open_clip.loss import ClipLoss
from torch import nn

from rsvl.config import ObjectiveConfig
from rsvl.errors import ConfigError, ModelError
from rsvl.models.decoder_rows import decoder_rows

MAX_LOGIT_SCALE = 100.0
OUTPUT_KEYS = ("image_features", "text_features", "logit_scale", "logit_bias")


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective needs to know about its worker.

    Attributes:
        rank: This worker's rank.
        world_size: Number of workers.
        pad_id: Token id of padding (for captioning losses).
        tokenizer: The model's tokenizer (objectives that re-tokenize captions: KER masking).
    """

    rank: int = 0
    world_size: int = 1
    pad_id: int = 0
    tokenizer: Any = None


def unwrap(model: nn.Module) -> nn.Module:
    """Return the model inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def model_outputs(output: Any) -> dict[str, torch.Tensor]:
    """Return an open_clip forward output as a dict, whether it came as a tuple or a dict."""
    if isinstance(output, dict):
        return output
    return dict(zip(OUTPUT_KEYS, output))


class Objective:
    """Base of all objectives; see the module docstring for the contract.

    Args:
        cfg: The objective section of the train config.
        context: Rank, world size and padding id of this worker.
    """

    name: ClassVar[str] = ""
    batch_fields: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(self, cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> None:
        self.cfg = cfg
        self.context = context

    def prepare(self, model: nn.Module) -> None:
        """Set up parameters the objective owns; called once before the optimizer is built."""

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Return ``{"loss": scalar tensor with grad, **detached scalar metrics}``."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Run after each optimizer step (``model`` unwrapped)."""

    def start_epoch(self, epoch: int) -> None:
        """Run before the first step of ``epoch`` (0-based), also when a run resumes inside it."""

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """Metrics of the epoch just finished (logged once per epoch); none by default."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State the objective keeps across steps (saved in every checkpoint); none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (a resumed run)."""

    def artifacts(self) -> dict[str, str]:
        """Text files for the run's artifacts at the end of the fit, ``{file name: text}``; none by default."""
        return {}


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator registering an :class:`Objective` under ``name``.

    Raises:
        ValueError: The name is taken.
    """

    def decorate(cls: type[Objective]) -> type[Objective]:
        if name in _OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered by {_OBJECTIVES[name].__name__}")
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return decorate


def objective_names() -> list[str]:
    """Names of the registered objectives."""
    return sorted(_OBJECTIVES)


def build_objective(cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> Objective:
    """Instantiate the objective ``cfg.name``.

    Raises:
        ConfigError: No objective of that name is registered (the message lists them).
    """
    if cfg.name not in _OBJECTIVES:
        raise ConfigError(f"train.objective.name: unknown objective {cfg.name!r}; registered: {objective_names()}")
    return _OBJECTIVES[cfg.name](cfg, context)


class _ContrastiveScale(Objective):
    """Shared logit-scale handling: initial or fixed value, and the open_clip clamp at 100."""

    def prepare(self, model: nn.Module) -> None:
        """Set the logit scale to ``cfg.logit_scale`` (when given) and make it trainable or fixed."""
        scale = getattr(unwrap(model), "logit_scale", None)
        if not isinstance(scale, nn.Parameter):
            raise ModelError(f"objective {self.name!r} needs a model with a logit_scale parameter")
        with torch.no_grad():
            if self.cfg.logit_scale is not None:
                scale.fill_(math.log(self.cfg.logit_scale))
        scale.requires_grad_(self.cfg.learn_logit_scale)

    def after_step(self, model: nn.Module) -> None:
        """Clamp the logit scale to at most 100, as CLIP does."""
        with torch.no_grad():
            unwrap(model).logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))


@register_objective("clip")
class ClipObjective(_ContrastiveScale):
    """Symmetric InfoNCE over the (gathered) batch: CLIP's loss."""

    def __init__(self, cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> None:
        super().__init__(cfg, context)
        self.loss = ClipLoss(
            local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size
        )

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = model_outputs(model(image=batch["image"], text=batch["text"]))
        loss = self.cfg.contrastive_weight * self.loss(
            out["image_features"], out["text_features"], out["logit_scale"]
        )
        return {"loss": loss, "logit_scale": out["logit_scale"].detach()}


@register_objective("coca")
class CocaObjective(_ContrastiveScale):
    """CoCa: contrastive loss plus next-token captioning loss of the multimodal decoder.

    The same losses as open_clip's ``CoCaLoss``, with the captioning cross-entropy computed on the
    positions whose label is not padding (what its ``ignore_index`` averages over anyway): only
    they are projected onto the vocabulary (:func:`rsvl.models.decoder_rows.decoder_rows`), and
    the log-softmax runs along each row. ``CoCaLoss`` projects every position and runs its
    log-softmax across a ``(batch, vocabulary, positions)`` transposed view, padding included:
    on the CPU 0.5 s of a 0.9 s local step (32 × 31 positions × 49,408 tokens). Same value;
    gradients equal up to float rounding.
    """

    def __init__(self, cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> None:
        super().__init__(cfg, context)
        self.pad_id = context.pad_id
        self.loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if getattr(unwrap(model), "text_decoder", None) is None:
            raise ModelError("objective 'coca' needs a CoCa model (its forward returns caption logits and labels)")
        kept = batch["text"][:, 1:] != self.pad_id  # the decoder predicts token i + 1 at position i
        with decoder_rows(model, lambda states: states[kept]):
            out = model_outputs(model(image=batch["image"], text=batch["text"]))
        contrastive = (self.cfg.contrastive_weight * self.loss(out["image_features"], out["text_features"],
                                                               out["logit_scale"])
                       if self.cfg.contrastive_weight else out["logits"].new_zeros(()))
        caption = self.cfg.caption_weight * caption_loss(out["logits"], out["labels"][kept])
        return {
            "loss": contrastive + caption,
            "contrastive_loss": contrastive.detach(),
            "caption_loss": caption.detach(),
            "logit_scale": out["logit_scale"].detach(),
        }


def caption_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of the decoder's non-padding positions.

    Args:
        logits: ``(positions, vocabulary)`` logits of the positions kept.
        targets: ``(positions,)`` their target token ids.

    Returns:
        The scalar loss (NaN with no position, as with ``ignore_index`` over all-padding labels).
    """
    return nn.functional.cross_entropy(logits, targets)


class _SensorContrastive(_ContrastiveScale):
    """Contrastive losses over a sensor model's batch (``batch["sensors"]``: one batch per sensor)."""

    batch_fields: ClassVar[tuple[str, ...]] = ("image", "text")

    def __init__(self, cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> None:
        super().__init__(cfg, context)
        self.loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=context.rank, world_size=context.world_size)

    def features(self, model: nn.Module, batch: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any]]:
        """One forward over every sensor's batch; the groups of sensors that share a contrastive batch.

        Raises:
            ModelError: The batch is not a sensor model's (``train.sensors`` is empty).
        """
        sensors = batch.get("sensors")
        if not sensors:
            raise ModelError(f"objective {self.name!r} needs a sensor model and its per-sensor batches: set train.sensors")
        location = ({s: part["location"] for s, part in sensors.items()} if "location" in self.batch_fields else None)
        out = model(image={s: part["image"] for s, part in sensors.items()},
                    text={s: part["text"] for s, part in sensors.items()}, location=location)
        groups = [list(sensors)] if self.cfg.batching == "mixed" else [[s] for s in sensors]
        return groups, out

    def pair_loss(self, out: dict[str, Any], group: list[str]) -> torch.Tensor:
        """The loss of one contrastive batch (the group's sensors together); the image↔text term here."""
        images = torch.cat([out["image_features"][s] for s in group])
        texts = torch.cat([out["text_features"][s] for s in group])
        return self.loss(images, texts, out["logit_scale"])

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        groups, out = self.features(model, batch)
        losses = {"_".join(group): self.pair_loss(out, group) for group in groups}
        loss = self.cfg.contrastive_weight * sum(losses.values()) / len(losses)
        return {"loss": loss, **{f"loss_{name}": value.detach() for name, value in losses.items()},
                "logit_scale": out["logit_scale"].detach()}


@register_objective("closp")
class ClospObjective(_SensorContrastive):
    """CLOSP: per sensor ``[CE(s·E_i E_tᵀ) + CE(s·E_t E_iᵀ)] / 2`` over its own batch, averaged over sensors.

    S1 and S2 never share a batch (text is the bridge); with ``batching: mixed`` they do (the naive control).
    The scale ``s`` is ``logit_scale`` (CLOSP: fixed at 1.0, ``learn_logit_scale: false``).
    """


@register_objective("geoclosp")
class GeoClospObjective(_SensorContrastive):
    """GeoCLOSP: the mean of the image→text, text→image, location→image and image→location CE terms.

    Per contrastive batch ``(ClipLoss(image, text) + ClipLoss(location, image)) / 2``, each ClipLoss the
    mean of its two directions, so the four terms weigh equally; averaged over the batches as ``closp``.
    """

    batch_fields: ClassVar[tuple[str, ...]] = ("image", "text", "location")

    def pair_loss(self, out: dict[str, Any], group: list[str]) -> torch.Tensor:
        """Image↔text and location↔image, averaged."""
        images = torch.cat([out["image_features"][s] for s in group])
        places = torch.cat([out["location_features"][s] for s in group])
        return (super().pair_loss(out, group) + self.loss(places, images, out["logit_scale"])) / 2
