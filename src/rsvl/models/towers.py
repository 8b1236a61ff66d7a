"""Image tokens from a timm CNN trunk, so a CoCa decoder can read a pretrained CNN.

open_clip's CoCa cross-attends to the image tower's token sequence: it calls ``visual(images)``
and expects ``(pooled, tokens)``. Its ViT returns both when ``vision_cfg`` sets
``attentional_pool`` and ``output_tokens``; its timm adapter
(:class:`open_clip.timm_model.TimmModel`) accepts those keys but ignores them and returns the
pooled vector only. rsvl gives them the same meaning for a timm trunk: a ``vision_cfg`` with
``timm_model_name`` and ``output_tokens: true`` gets a :class:`TimmTokenTower` in place of the
TimmModel open_clip built, in :func:`rsvl.models.build_model` and :func:`rsvl.models.load_model`
alike. The config stays a valid open_clip config, but such a saved model needs rsvl to load.

The tower follows open_clip's CoCa ViT ("tok" pooling after an attentional pooler): the trunk's
last feature map, with a fixed 2-D sine-cosine position code added so the tokens know where they
come from, is read by ``attn_pooler_queries`` learned queries of width ``embed_dim``; after a
LayerNorm the first query, projected, is the contrastive embedding and the others are the tokens
the decoder attends to. The decoder's width must therefore equal ``embed_dim``.
"""

from __future__ import annotations

from typing import Any

import torch
from open_clip.model import set_model_preprocess_cfg
from open_clip.timm_model import TimmModel
from open_clip.transformer import AttentionalPooler, LayerNorm
from timm.layers import build_sincos2d_pos_embed
from torch import nn

from rsvl.errors import ModelError


class TimmTokenTower(nn.Module):
    """A timm CNN trunk read by an attentional pooler: returns ``(embedding, tokens)``.

    Args:
        trunk: A timm model whose classifier and global pool are removed (returns ``(N, C, h, w)``).
        embed_dim: Width of the embedding and of the tokens (the CoCa decoder's width).
        queries: Learned queries; the first gives the embedding, the others the tokens.
        heads: Attention heads of the pooler.
        image_size: Input size, ``(h, w)``.
    """

    output_tokens = True

    def __init__(self, trunk: nn.Module, embed_dim: int, queries: int, heads: int, image_size: tuple[int, int]):
        super().__init__()
        if queries < 2:
            raise ModelError(f"attn_pooler_queries must be at least 2 (one embedding, one token), got {queries}")
        self.trunk = trunk
        self.image_size = image_size
        channels = trunk.num_features
        self.attn_pool = AttentionalPooler(embed_dim, channels, n_head=heads, n_queries=queries)
        self.ln_post = LayerNorm(embed_dim)
        self.proj = nn.Parameter(embed_dim ** -0.5 * torch.randn(embed_dim, embed_dim))

    def feature_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The trunk's last feature map as ``(N, h * w, C)`` positions, each with its position code."""
        features = self.trunk(images)
        batch, channels, height, width = features.shape
        position = build_sincos2d_pos_embed([height, width], channels, device=features.device, dtype=features.dtype)
        return features.flatten(2).transpose(1, 2) + position.unsqueeze(0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the embedding ``(N, embed_dim)`` and the tokens ``(N, queries - 1, embed_dim)``."""
        pooled = self.ln_post(self.attn_pool(self.feature_tokens(images)))
        return pooled[:, 0] @ self.proj, pooled[:, 1:]

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the trunk (open_clip's ``lock_image_tower`` contract); the pooler keeps training."""
        TimmModel.lock(self, unlocked_groups, freeze_bn_stats)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Pass gradient checkpointing on to the trunk."""
        self.trunk.set_grad_checkpointing(enable)


def wants_timm_tokens(vision_cfg: dict[str, Any]) -> bool:
    """True when a ``vision_cfg`` asks a timm trunk for image tokens (``output_tokens``)."""
    return bool(vision_cfg.get("timm_model_name")) and bool(vision_cfg.get("output_tokens"))


def attach_timm_tokens(model: nn.Module, model_cfg: dict[str, Any]) -> bool:
    """Replace the TimmModel open_clip built by a :class:`TimmTokenTower` when the config asks for tokens.

    The trunk is kept (the same module, with whatever weights it holds); the pooler and the
    projection are new. The tower's preprocessing settings carry over.

    Args:
        model: An open_clip model just created from ``model_cfg``; changed in place.
        model_cfg: Its open_clip model config.

    Returns:
        Whether the tower was replaced.

    Raises:
        ModelError: The config asks for tokens without ``attentional_pool``, with a timm pool or
            projection that keeps the trunk from returning its feature map, or with a CoCa
            decoder narrower or wider than ``embed_dim``.
    """
    vision_cfg = model_cfg["vision_cfg"]
    if not wants_timm_tokens(vision_cfg):
        return False
    name = vision_cfg["timm_model_name"]
    if not vision_cfg.get("attentional_pool"):
        raise ModelError(f"timm tower {name!r} with output_tokens needs attentional_pool: true")
    if vision_cfg.get("timm_pool", "avg") != "" or vision_cfg.get("timm_proj", "linear") != "none":
        raise ModelError(f"timm tower {name!r} with output_tokens needs timm_pool '' and timm_proj 'none' "
                         "(the attentional pooler reads the trunk's feature map)")
    embed_dim = model_cfg["embed_dim"]
    decoder_width = model_cfg.get("multimodal_cfg", {}).get("width", embed_dim)
    if decoder_width != embed_dim:
        raise ModelError(f"the CoCa decoder (width {decoder_width}) attends to image tokens of width "
                         f"embed_dim {embed_dim}; make them equal")
    old = model.visual
    if not isinstance(old, TimmModel):
        raise ModelError(f"expected open_clip's TimmModel for {name!r}, got {type(old).__name__}")
    model.visual = TimmTokenTower(
        old.trunk,
        embed_dim,
        queries=vision_cfg.get("attn_pooler_queries", 256),
        heads=vision_cfg.get("attn_pooler_heads", 8),
        image_size=old.image_size,
    )
    set_model_preprocess_cfg(model, old.preprocess_cfg)
    return True
