"""Token features of a CLIP model: image patches and text token states, projected into the joint space.

iEBAKER's local similarity (PAPERS.md §4) compares every text token with every image patch. The
towers compute those features on the way to their pooled embeddings; :func:`capture_tokens` keeps
them during any forward pass (``model(image=..., text=...)``, ``encode_image``, ``encode_text``),
through forward hooks, so a DDP-wrapped model trains with them unchanged. After the pass they are
projected by the tower's own projection:

* a timm CNN tower (``TimmModel``, the local EfficientNet-Lite0): the trunk's last feature map,
  each spatial position read as a token (the input of the trunk's global pool), through the
  tower's head (its linear projection), so the pooled embedding is the mean of the tokens;
* an open_clip ViT: the patch tokens after the final LayerNorm (the class token left out), times
  the tower's ``proj``;
* the Hugging Face text tower (the local MiniLM): the last hidden state at every position, through
  the tower's ``proj``;
* an open_clip text transformer (CLIP's own, inside the model or as ``model.text``): every
  position after ``ln_final``, times ``text_projection``.

Every position of the tokenized text counts, padding included ("all text token states", as the
reference code does with CLIP's 77): the context length is fixed, so every caption has the same
number of positions.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from rsvl.errors import ModelError


@dataclass
class CapturedTokens:
    """Raw tower outputs kept by :func:`capture_tokens`; read the projected tokens after the pass.

    Attributes:
        image_raw: The last image pass's raw tokens, before projection.
        text_raw: The last text pass's raw token states, before projection.
    """

    image_project: Callable[[torch.Tensor], torch.Tensor]
    text_project: Callable[[torch.Tensor], torch.Tensor]
    image_raw: torch.Tensor | None = None
    text_raw: torch.Tensor | None = None
    handles: list[Any] = field(default_factory=list)

    def image_tokens(self) -> torch.Tensor:
        """Projected image tokens ``(N, patches, embed_dim)`` of the last image pass.

        Raises:
            ModelError: No image went through the model inside the capture.
        """
        if self.image_raw is None:
            raise ModelError("no image pass was captured; run the model on images inside capture_tokens")
        return self.image_project(self.image_raw)

    def text_tokens(self) -> torch.Tensor:
        """Projected text token states ``(N, context_length, embed_dim)`` of the last text pass.

        Raises:
            ModelError: No text went through the model inside the capture.
        """
        if self.text_raw is None:
            raise ModelError("no text pass was captured; run the model on text inside capture_tokens")
        return self.text_project(self.text_raw)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _image_hook(visual: nn.Module, captured: CapturedTokens) -> tuple[nn.Module, Callable, bool]:
    """Where the image tower's tokens come out, how to keep them, and whether it is a pre-hook."""
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, TimmModel):
        pool = getattr(visual.trunk, "global_pool", None)
        if pool is None:
            raise ModelError(f"timm trunk {type(visual.trunk).__name__} has no global_pool to read its feature map from")

        def keep_map(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            captured.image_raw = inputs[0].flatten(2).transpose(1, 2)  # (N, C, h, w) -> (N, h*w, C)

        captured.image_project = visual.head
        return pool, keep_map, True
    if isinstance(visual, VisionTransformer):
        if getattr(visual, "attn_pool", None) is not None or visual.final_ln_after_pool:
            raise ModelError("patch tokens of a ViT with an attentional pooler or LayerNorm after pooling "
                             "are not supported")

        def keep_patches(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            captured.image_raw = output[:, 1:]  # the class token first, then the patches

        captured.image_project = (lambda tokens: tokens @ visual.proj) if visual.proj is not None else (lambda t: t)
        return visual.ln_post, keep_patches, False
    raise ModelError(f"image tower {type(visual).__name__} gives no patch tokens (supported: timm CNN, open_clip ViT)")


def _text_hook(model: nn.Module, captured: CapturedTokens) -> tuple[nn.Module, Callable]:
    """Where the text tower's token states come out, and how to keep them."""
    from open_clip.hf_model import HFTextEncoder

    text = getattr(model, "text", None)
    if isinstance(text, HFTextEncoder):
        def keep_hidden(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.text_raw = output.last_hidden_state

        captured.text_project = text.proj
        return text.transformer, keep_hidden
    owner = text if text is not None and hasattr(text, "ln_final") else model
    if not hasattr(owner, "ln_final") or getattr(owner, "cls_emb", None) is not None:
        raise ModelError(f"text tower of {type(model).__name__} gives no token states (supported: Hugging Face "
                         "encoder, open_clip text transformer without a CoCa class token)")

    def keep_states(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        captured.text_raw = output

    projection = owner.text_projection
    if isinstance(projection, nn.Linear):
        captured.text_project = projection
    else:
        captured.text_project = (lambda states: states @ projection) if projection is not None else (lambda s: s)
    return owner.ln_final, keep_states


@contextmanager
def capture_tokens(model: nn.Module) -> Iterator[CapturedTokens]:
    """Keep the token features of every forward pass made inside the ``with`` block.

    Args:
        model: An open_clip CLIP or CustomTextCLIP (possibly DDP-wrapped) built by
            :func:`rsvl.models.build_model`.

    Yields:
        A :class:`CapturedTokens`; after a pass, ``image_tokens()`` and ``text_tokens()`` give the
        projected tokens of that pass (gradients flow through them).

    Raises:
        ModelError: A tower has no token features this module knows how to read (a sensor model,
            a CoCa text tower).
    """
    net = _unwrap(model)
    captured = CapturedTokens(image_project=lambda t: t, text_project=lambda t: t)
    visual = net.visual
    if isinstance(visual, nn.ModuleDict):
        raise ModelError("token features of a sensor model (one tower per sensor) are not supported")
    image_module, image_keep, pre = _image_hook(visual, captured)
    text_module, text_keep = _text_hook(net, captured)
    captured.handles = [
        image_module.register_forward_pre_hook(image_keep) if pre else image_module.register_forward_hook(image_keep),
        text_module.register_forward_hook(text_keep),
    ]
    try:
        yield captured
    finally:
        for handle in captured.handles:
            handle.remove()


def has_tokens(model: nn.Module) -> bool:
    """Whether :func:`capture_tokens` can read this model's token features."""
    try:
        with capture_tokens(model):
            return True
    except ModelError:
        return False


@torch.no_grad()
def encode_with_tokens(
    model: nn.Module, images: torch.Tensor | None = None, text: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Embed images and/or text, with their token features (inference).

    Args:
        model: An open_clip model in eval mode.
        images: Preprocessed images ``(N, bands, H, W)``, or ``None``.
        text: Token ids ``(M, context_length)``, or ``None``.

    Returns:
        ``image_features``/``image_tokens`` when images are given, ``text_features``/``text_tokens``
        when text is; features unnormalised.
    """
    out: dict[str, torch.Tensor] = {}
    with capture_tokens(model) as captured:
        if images is not None:
            out["image_features"] = model.encode_image(images)
            out["image_tokens"] = captured.image_tokens()
        if text is not None:
            out["text_features"] = model.encode_text(text)
            out["text_tokens"] = captured.text_tokens()
    return out
