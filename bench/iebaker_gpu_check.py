"""iEBAKER on an accelerator: the objective's step at the paper's batch under AMP, and fused + SAR scoring at RSICD size.

Run where a GPU is (ViT-B-32 with random weights: no CLIP weights exist offline, so this checks the cluster
profile's code paths and costs, not its accuracy):

    python bench/iebaker_gpu_check.py --out results.json          # CUDA, batch 100, 224 px, RSICD-test scoring
    python bench/iebaker_gpu_check.py --tiny                       # a CPU smoke run of the same code

Prints, per objective (the ladder's CLIP loss, + local, + local + EBA + KER), samples/s and peak memory over
timed steps after warm-up, each loss finite and the KER head's gradient present; then the seconds to score
5,465 captions x 1,093 images with the cosine, fused and SAR re-ranked matrices (both protocols).
It imports ``rsvl.train``'s modules without the package's ``__init__`` (which brings Ray and MLflow for
fitting), so it runs on a machine with only torch, timm, open_clip and pydantic.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import rsvl

# the objectives without rsvl/train/__init__.py (Ray, MLflow): this check needs neither
_train = types.ModuleType("rsvl.train")
_train.__path__ = [str(Path(rsvl.__file__).parent / "train")]
sys.modules.setdefault("rsvl.train", _train)

import torch  # noqa: E402

from rsvl.config import ObjectiveConfig  # noqa: E402
from rsvl.evaluate.local_similarity import fused_protocol_metrics  # noqa: E402
from rsvl.evaluate.rerank import sar_protocol_metrics  # noqa: E402
from rsvl.evaluate.retrieval import protocol_ranks  # noqa: E402
from rsvl.models import build_model  # noqa: E402
from rsvl.models.tokens import encode_with_tokens  # noqa: E402
from rsvl.train import iebaker_objective  # noqa: E402,F401  (registers iebaker)
from rsvl.train.objectives import ObjectiveContext, build_objective  # noqa: E402
from rsvl.train.trainable import param_groups  # noqa: E402

CAPTIONS = ["many buildings and green trees are around a playground", "a river runs through the farmland",
            "several planes are parked near the terminal of an airport", "cars in a parking lot beside a road",
            "a bridge crosses the river near some buildings", "the storage tanks stand beside a factory"]
OBJECTIVES = {
    "clip_loss": {},
    "local": {"local_weight": 1.0},
    "full": {"local_weight": 1.0, "ker_weight": 0.5,
             "eba": {"variant": "joint", "queue_size": 200000, "drop_ratio": 0.01, "start_epoch": 0}},
}


def train_steps(name: str, settings: dict, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model, _, _, tokenizer = build_model("ViT-B-32", None, 3, None, image_size=args.image_size)
    model.to(device).train()
    cfg = ObjectiveConfig(name="iebaker", learn_logit_scale=False, logit_scale=20.0, **settings)
    objective = build_objective(cfg, ObjectiveContext(tokenizer=tokenizer))
    objective.prepare(model)
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.7), lr=1.5e-5)
    dtype = torch.bfloat16
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(args.batch)]
    batch = {"image": torch.randn(args.batch, 3, args.image_size, args.image_size, device=device),
             "text": tokenizer(captions).to(device), "caption": captions,
             "sample_id": [str(i) for i in range(args.batch)]}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, started = [], None
    for step in range(args.warmup + args.steps):
        objective.start_epoch(step // 5)  # τ refreshes every 5 steps, so EBA is active after the first 5
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=dtype) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
        with autocast:
            out = objective(model, batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 50.0)
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    head = getattr(model, "ker_head", None)
    result = {
        "samples_per_s": args.batch * args.steps / seconds, "step_ms": 1000 * seconds / args.steps,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "first_loss": losses[0], "last_loss": losses[-1], "all_finite": all(map(lambda v: v == v and abs(v) < 1e9, losses)),
        "ker_head_grad": None if head is None else float(sum(p.grad.abs().sum() for p in head.parameters()
                                                             if p.grad is not None)),
        "eba_kept_last": float(out.get("kept", torch.tensor(1.0))),
    }
    print(f"{name:10s} {result['samples_per_s']:8.1f} samples/s  {result['step_ms']:7.1f} ms/step  "
          f"peak {result['peak_memory_gib']} GiB  loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
    return result


def scoring(args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model, _, _, tokenizer = build_model("ViT-B-32", None, 3, None, image_size=args.image_size)
    model.to(device).eval()
    images, texts = args.images, args.images * 5
    owner = [i // 5 for i in range(texts)]
    captions = [f"{CAPTIONS[i % len(CAPTIONS)]} {i}" for i in range(texts)]
    started = time.perf_counter()
    parts_i, parts_t = [], []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(0, images, 256):
            n = min(256, images - i)
            parts_i.append(encode_with_tokens(model, images=torch.randn(n, 3, args.image_size, args.image_size,
                                                                         device=device)))
        for i in range(0, texts, 512):
            parts_t.append(encode_with_tokens(model, text=tokenizer(captions[i:i + 512]).to(device)))
    img = {k: torch.cat([p[k] for p in parts_i]).float() for k in parts_i[0]}
    txt = {k: torch.cat([p[k] for p in parts_t]).float() for k in parts_t[0]}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    embedded = time.perf_counter()
    protocol_ranks(img["image_features"], txt["text_features"], owner, captions, device=device)
    cosine = time.perf_counter()
    sar_protocol_metrics(img["image_features"], txt["text_features"], owner, captions, k=10, device=device)
    sar = time.perf_counter()
    fused = fused_protocol_metrics(img["image_features"], txt["text_features"], img["image_tokens"], txt["text_tokens"],
                                   owner, captions, global_weight=0.6, local_weight=0.4, sar_k=10, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    done = time.perf_counter()
    result = {"texts": texts, "images": images, "text_tokens": list(txt["text_tokens"].shape),
              "image_tokens": list(img["image_tokens"].shape), "embed_s": embedded - started,
              "cosine_ranks_s": cosine - embedded, "sar_s": sar - cosine, "fused_and_fused_sar_s": done - sar,
              "fused_mR_random_weights": fused["fused_mR"]}
    print(f"scoring {texts} texts x {images} images: embed {result['embed_s']:.2f} s, cosine ranks "
          f"{result['cosine_ranks_s']:.2f} s, SAR {result['sar_s']:.2f} s, fused + fused SAR {result['fused_and_fused_sar_s']:.2f} s",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke sizes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    sizes = dict(batch=8, image_size=64, warmup=1, steps=2, images=20) if args.tiny else \
        dict(batch=100, image_size=224, warmup=5, steps=20, images=1093)
    for key, value in sizes.items():
        setattr(args, key, value)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(torch.cuda.get_device_name(device), "torch", torch.__version__, flush=True)
    report = {"device": str(device), "sizes": sizes,
              "train": {name: train_steps(name, settings, args, device) for name, settings in OBJECTIVES.items()},
              "scoring": scoring(args, device)}
    base = report["train"]["clip_loss"]["samples_per_s"]
    for name, row in report["train"].items():
        print(f"{name}: {row['samples_per_s'] / base:.2f}x the CLIP loss's throughput")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
