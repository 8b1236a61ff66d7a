"""The ``iebaker`` objective: global CE with Eliminate-Before-Align, local similarity CE, and KER.

Per batch of N pairs (PAPERS.md §4, the reference code's ``CLIPLoss``), with ``s`` the logit
scale (iEBAKER: fixed at 20) and ``S = normalize(I) · normalize(T)ᵀ`` (rows images):

* **global**: ``CE(s · S[kept, :]) + CE(s · Sᵀ[kept, :])``, each kept pair the anchor of one row in
  both directions, every pair of the batch a negative;
* **local** (``local_weight``): ``Loc[t, i] = ‖C‖_F``, ``C`` the token-by-patch cosine matrix
  (:mod:`rsvl.models.tokens`), the same two CE terms over ``s · Loc`` on its kept rows;
* **KER** (``ker_weight``): the caption's keywords masked (:func:`rsvl.data.ker_masking.mask_keywords`),
  the masked caption's token states and the image tokens through the KER head
  (:mod:`rsvl.models.ker_head`), CE over the keyword vocabulary at the masked positions.

``loss = global + local_weight · local + ker_weight · KER`` (paper: 1, 1, 0.5). With ``eba``
set, "kept" follows :mod:`rsvl.train.eba` from ``eba.start_epoch`` on (``joint``: the local terms
use the global mask; ``split``: their own queue and τ); before that, and without ``eba``, every pair
is kept. With ``local_weight: 0``, ``ker_weight: 0`` and no ``eba`` it is the plain CLIP loss with
the two CE terms summed, the ablation ladder's base.

Across workers the positive-pair similarities are gathered, so every worker's queue and τ agree;
each worker drops from its own batch and the dropped pairs of all workers are gathered for the
run's ``eba_dropped.csv``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from rsvl.config import ObjectiveConfig
from rsvl.errors import ModelError
from rsvl.evaluate.local_similarity import local_similarity
from rsvl.models.ker_head import attach_ker_head
from rsvl.models.tokens import capture_tokens
from rsvl.train.eba import DroppedPairs, SimilarityQueue, kept_pairs
from rsvl.train.objectives import ObjectiveContext, _ContrastiveScale, model_outputs, register_objective, unwrap

IGNORE = -100
DROPPED_FILE = "eba_dropped.csv"


def _gather(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """Every worker's ``values`` concatenated in rank order (no gradient); ``values`` alone on one worker."""
    if world_size == 1:
        return values.detach()
    parts = [torch.empty_like(values) for _ in range(world_size)]
    torch.distributed.all_gather(parts, values.detach().contiguous())
    return torch.cat(parts)


def _ce_both_ways(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``CE(logits[kept]) + CE(logitsᵀ[kept])`` with each kept row's own column the answer."""
    labels = torch.arange(logits.shape[0], device=logits.device)[keep]
    return F.cross_entropy(logits[keep], labels) + F.cross_entropy(logits.T[keep], labels)


class _Eba:
    """EBA's state for one similarity (global or local): queue, τ of the epoch, dropped count."""

    def __init__(self, size: int) -> None:
        self.queue = SimilarityQueue(size)
        self.tau = float("-inf")
        self.dropped = 0

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self.queue.state_dict(), "tau": self.tau, "dropped": self.dropped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue.load_state_dict(state["queue"])
        self.tau, self.dropped = float(state["tau"]), int(state["dropped"])


@register_objective("iebaker")
class IebakerObjective(_ContrastiveScale):
    """iEBAKER's loss (see the module docstring)."""

    batch_fields: ClassVar[tuple[str, ...]] = ("image", "text", "caption")

    def __init__(self, cfg: ObjectiveConfig, context: ObjectiveContext = ObjectiveContext()) -> None:
        super().__init__(cfg, context)
        self.eba = cfg.eba
        kinds = ("global", "local") if cfg.eba is not None and cfg.eba.variant == "split" else ("global",)
        self.queues = {kind: _Eba(cfg.eba.queue_size) for kind in kinds} if cfg.eba is not None else {}
        self.epoch = -1
        self.step = 0
        self.dropped = DroppedPairs()
        self.vocabulary: list[str] = []
        self.vocabulary_sha256 = ""
        if cfg.ker_weight > 0:
            self._load_vocabulary(cfg.ker_vocabulary)

    def _load_vocabulary(self, path: str | None) -> None:
        from rsvl.data.ker_vocabulary import KER_VOCABULARY, load_vocabulary

        file = Path(path) if path else KER_VOCABULARY
        self.vocabulary = load_vocabulary(file)
        self.vocabulary_sha256 = hashlib.sha256(file.read_bytes()).hexdigest()

    def prepare(self, model: nn.Module) -> None:
        """Fix the logit scale, check the model gives token features, add (or freeze) the KER head."""
        super().prepare(model)
        net = unwrap(model)
        if self.cfg.local_weight > 0 or self.cfg.ker_weight > 0:
            with capture_tokens(net):
                pass  # raises ModelError naming the tower when it has no token features
        if self.cfg.ker_weight > 0:
            if self.context.tokenizer is None:
                raise ModelError("objective 'iebaker' with ker_weight needs the tokenizer in its ObjectiveContext")
            attach_ker_head(net, self.vocabulary, self.cfg.ker_layers, self.vocabulary_sha256)
        elif getattr(net, "ker_head", None) is not None:
            net.ker_head.requires_grad_(False)  # a started-from head this run does not train

    # ---- per-epoch state -------------------------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """Fix τ for ``epoch`` from the queues (once: a run resumed inside the epoch keeps its τ)."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        for state in self.queues.values():
            state.tau = state.queue.threshold(self.eba.drop_ratio)
            state.dropped = 0

    def _active(self) -> bool:
        return self.eba is not None and self.epoch >= self.eba.start_epoch

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """``eba.tau``/``eba.dropped`` (and ``eba.tau_local``/``eba.dropped_local`` for ``split``) of the epoch."""
        metrics: dict[str, float] = {}
        for kind, state in self.queues.items():
            suffix = "" if kind == "global" else f"_{kind}"
            dropped = torch.tensor(float(state.dropped))
            if self.context.world_size > 1:
                torch.distributed.all_reduce(dropped)
            metrics[f"eba.dropped{suffix}"] = float(dropped)
            if state.tau != float("-inf"):
                metrics[f"eba.tau{suffix}"] = state.tau
        metrics["eba.active"] = float(self._active())
        return metrics if self.queues else {}

    def _all_dropped(self) -> list[dict[str, Any]]:
        """Every worker's dropped-pair records, in step order (a collective: call on every worker)."""
        rows = self.dropped.rows
        if self.context.world_size > 1:
            gathered: list[Any] = [None] * self.context.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        return sorted(rows, key=lambda r: (r["step"], r["kind"], r["sample_id"]))

    def state_dict(self) -> dict[str, Any]:
        """Queues, epoch, step and every worker's dropped pairs (a collective: call on every worker)."""
        return {"epoch": self.epoch, "step": self.step, "queues": {k: v.state_dict() for k, v in self.queues.items()},
                "dropped": self._all_dropped()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        for kind, saved in state["queues"].items():
            self.queues[kind].load_state_dict(saved)
        # the saved records are every worker's: rank 0 holds them from here on, so a gather counts each once
        self.dropped = DroppedPairs(list(state["dropped"]) if self.context.rank == 0 else [])

    def artifacts(self) -> dict[str, str]:
        """``eba_dropped.csv``: every pair EBA left out, from every worker (a collective)."""
        if self.eba is None:
            return {}
        return {DROPPED_FILE: DroppedPairs(self._all_dropped()).to_csv()}

    # ---- the loss --------------------------------------------------------------------------------------------------
    def _keep(self, kind: str, positives: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The kept pairs of ``kind`` (and record the dropped ones); push the batch's positives to its queue."""
        state = self.queues.get(kind)
        if state is None:
            return torch.ones_like(positives, dtype=torch.bool)
        if self._active():
            keep = kept_pairs(positives.detach(), state.tau)
            state.dropped += self.dropped.add(
                epoch=self.epoch, step=self.step, kind=kind, sample_ids=batch["sample_id"], captions=batch["caption"],
                similarities=positives.detach().cpu(), keep=keep.cpu(), tau=state.tau)
        else:
            keep = torch.ones_like(positives, dtype=torch.bool)
        state.queue.push(_gather(positives, self.context.world_size))
        return keep

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.step += 1
        n = batch["image"].shape[0]
        text = batch["text"]
        labels = None
        if self.cfg.ker_weight > 0:
            from rsvl.data.ker_masking import mask_keywords

            masked, labels = mask_keywords(self.context.tokenizer, batch["caption"], self.vocabulary)
            # one text pass over the captions and their masked copies (one forward through DDP)
            text = torch.cat([text, masked.to(text.device)])
        with capture_tokens(model) as captured:
            out = model_outputs(model(image=batch["image"], text=text))
            want_tokens = self.cfg.local_weight > 0 or labels is not None
            image_tokens = captured.image_tokens() if want_tokens else None
            text_tokens = captured.text_tokens() if want_tokens else None
        scale = out["logit_scale"]
        images = F.normalize(out["image_features"].float(), dim=-1)
        texts = F.normalize(out["text_features"][:n].float(), dim=-1)
        sims = images @ texts.T
        keep = self._keep("global", sims.diagonal(), batch)
        global_loss = _ce_both_ways(scale * sims, keep)
        loss = global_loss
        metrics = {"global_loss": global_loss.detach(), "kept": keep.float().mean()}
        if self.cfg.local_weight > 0:
            local = local_similarity(text_tokens[:n].float(), image_tokens.float())  # (texts, images), in blocks
            local_keep = self._keep("local", local.diagonal(), batch) if "local" in self.queues else keep
            local_loss = _ce_both_ways(scale * local, local_keep)
            loss = loss + self.cfg.local_weight * local_loss
            metrics["local_loss"] = local_loss.detach()
        if labels is not None:
            head = unwrap(model).ker_head
            scores = head(text_tokens[n:], image_tokens)
            labels = labels.to(scores.device)
            answered = labels != IGNORE
            if bool(answered.any()):
                ker_loss = F.cross_entropy(scores[answered].float(), labels[answered])
                metrics["ker_accuracy"] = (scores[answered].argmax(-1) == labels[answered]).float().mean()
            else:  # no keyword in the batch: a zero that keeps the head in the graph
                ker_loss = scores.sum() * 0.0
            loss = loss + self.cfg.ker_weight * ker_loss
            metrics["ker_loss"] = ker_loss.detach()
        return {"loss": loss, **metrics, "logit_scale": scale.detach()}
