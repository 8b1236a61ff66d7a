"""LRSCLIP on an accelerator: the cluster profile's stretched models and the dual loss, at a paper-size batch under AMP.

Run where a GPU is (random weights: no CLIP weights exist offline, so this checks the cluster profile's code
paths and costs, not its accuracy):

    python bench/lrsclip_gpu_check.py --out results.json     # CUDA, ViT-B-32 batch 128 and ViT-L-14 batch 32, 224 px
    python bench/lrsclip_gpu_check.py --tiny                  # a CPU smoke run of the same code

Prints, per model and objective (ViT-B-32 at 77 tokens on long captions, the 248-token KPS model on long captions,
KPS + the dual long/short loss, the same with Long-CLIP's PCA; ViT-L-14 KPS + dual), samples/s and peak memory over
timed steps after warm-up, each loss finite, the 20 kept positional rows bit-identical after the steps and the
stretched rows moved. Imports ``rsvl.train``'s modules without the package's ``__init__`` (Ray, MLflow).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import rsvl

_train = types.ModuleType("rsvl.train")
_train.__path__ = [str(Path(rsvl.__file__).parent / "train")]
sys.modules.setdefault("rsvl.train", _train)

import torch  # noqa: E402

from rsvl.config import ObjectiveConfig  # noqa: E402
from rsvl.data.long_text import first_sentence  # noqa: E402
from rsvl.models import build_model  # noqa: E402
from rsvl.models.kps import text_positions  # noqa: E402
from rsvl.train import lrsclip_objective  # noqa: E402,F401  (registers lrsclip)
from rsvl.train.objectives import build_objective  # noqa: E402
from rsvl.train.trainable import param_groups  # noqa: E402

SENTENCES = ["A harbour with three white ships moored along the quay.", "The water is dark blue and calm.",
             "A light concrete quay separates the land from the water.", "Green trees grow on the land side.",
             "Two small boats are at sea in the upper right of the image.", "A road runs along the coast.",
             "Some storage tanks stand near the quay in the lower left.", "The largest ship is in the center."]
RUNS = {  # name: (architecture, objective settings)
    "b32_77_long": ("ViT-B-32", {"short_weight": 0.0}),
    "b32_kps248_long": ("ViT-B-32-kps248", {"short_weight": 0.0}),
    "b32_kps248_dual": ("ViT-B-32-kps248", {}),
    "b32_kps248_dual_pca": ("ViT-B-32-kps248", {"short_pca_dims": 32}),
    "l14_kps248_dual": ("ViT-L-14-kps248", {}),
}


def long_caption(index: int, sentences: int) -> str:
    """A long caption of ``sentences`` sentences, rotated by ``index`` so every caption of a batch differs."""
    return " ".join(SENTENCES[(index + k) % len(SENTENCES)] for k in range(sentences))


def train_steps(name: str, arch: str, settings: dict, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    batch_size = args.batch_l14 if arch.startswith("ViT-L") else args.batch
    model, _, _, tokenizer = build_model(arch, None, 3, None, image_size=args.image_size)
    model.to(device).train()
    objective = build_objective(ObjectiveConfig(name="lrsclip", logit_scale=100.0, **settings))
    objective.prepare(model)
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-5)
    longs = [long_caption(i, args.sentences) for i in range(batch_size)]
    batch = {"image": torch.randn(batch_size, 3, args.image_size, args.image_size, device=device),
             "long_text": tokenizer(longs).to(device), "short_text": tokenizer([first_sentence(t) for t in longs]).to(device)}
    before = text_positions(model).detach().clone()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, started = [], None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else \
            torch.autocast("cpu", enabled=False)
        with autocast:
            out = objective(model, batch)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        objective.after_step(model)
        losses.append(float(out["loss"]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    after = text_positions(model).detach()
    stretched = "kps" in model.rsvl_spec
    return {
        "architecture": arch, "batch": batch_size, "context": int(batch["long_text"].shape[1]),
        "samples_per_s": round(batch_size * args.steps / seconds, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "losses_finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
        "kept_rows_unchanged": bool(torch.equal(before[:20], after[:20])) if stretched else None,
        "stretched_rows_moved": bool(not torch.equal(before[20:], after[20:])) if stretched else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: batch 4, 64 px, 2 + 2 steps, B-32 only")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    args.batch, args.batch_l14, args.image_size, args.warmup, args.steps, args.sentences = (
        (4, 2, 64, 2, 2, 12) if args.tiny else (128, 32, 224, 3, 10, 12))
    runs = {k: v for k, v in RUNS.items() if not (args.tiny and k.startswith("l14"))}
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    for name, (arch, settings) in runs.items():
        results[name] = train_steps(name, arch, settings, args, device)
        print(name, json.dumps(results[name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
