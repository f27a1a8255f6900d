"""Keye-VL forward throughput vs a same-shape Qwen2.5-VL from transformers (one run, ratio).

Both models get the same text decoder shape (hidden, layers, heads, KV heads, head_dim, MLP), the
same vision width/depth/heads/MLP (patch 14, 2x2 merge) and the same inputs: ``batch`` prompts of
``text_tokens`` text tokens plus one ``image x image`` image (Keye: raster 14x14 patches,
Qwen2.5-VL: its temporal-patch-2 packing of the same pixels; both give ``(image/28)^2`` LLM tokens).
A text-only forward is timed as well. Throughput = prompt tokens / median wall time of a forward
(``torch.inference_mode``, sdpa). Prints a table, then one JSON line.

    python benchmarks/keye_vl_forward.py [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from tqdm import tqdm

TEXT = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
            num_key_value_heads=4, head_dim=64)
VISION = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4)
VOCAB = 4096
IMAGE_ID, VIDEO_ID, VS_ID, VE_ID = 4000, 4001, 4002, 4003


def build_keye(device: str, dtype: torch.dtype):
    from kwaiformers.models.keye_vl.configuration_keye_vl import KeyeVLConfig
    from kwaiformers.models.keye_vl.modeling_keye_vl import KeyeVLForConditionalGeneration

    cfg = KeyeVLConfig(
        text_config=dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=1, **TEXT,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                          "mrope_section": [16, 8, 8]}),
        vision_config=dict(image_size=224, patch_size=14, **VISION),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=VS_ID,
        vision_end_token_id=VE_ID, attn_implementation="sdpa",
    )
    return KeyeVLForConditionalGeneration(cfg).to(device, dtype).eval()


def build_qwen(device: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=1,
                         **{k: v for k, v in TEXT.items() if k != "head_dim"},
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                          "mrope_section": [16, 8, 8]}),
        vision_config=dict(depth=VISION["num_hidden_layers"], hidden_size=VISION["hidden_size"],
                           intermediate_size=VISION["intermediate_size"], num_heads=VISION["num_attention_heads"],
                           out_hidden_size=TEXT["hidden_size"], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=list(range(VISION["num_hidden_layers"]))),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=VS_ID,
        vision_end_token_id=VE_ID, attn_implementation="sdpa",
    )
    return Qwen2_5_VLForConditionalGeneration(cfg).to(device, dtype).eval()


def make_inputs(kind: str, batch: int, text_tokens: int, image: int, device: str, dtype, with_image: bool):
    g = torch.Generator().manual_seed(0)
    gh = gw = image // 14
    n_img = gh * gw // 4 if with_image else 0
    rows = []
    for _ in range(batch):
        text = torch.randint(5, 3900, (text_tokens,), generator=g)
        if with_image:
            ids = torch.cat([text[:4], torch.tensor([VS_ID]), torch.full((n_img,), IMAGE_ID),
                             torch.tensor([VE_ID]), text[4:]])
        else:
            ids = text
        rows.append(ids)
    input_ids = torch.stack(rows).to(device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if with_image:
        grid = torch.tensor([[1, gh, gw]] * batch, device=device)
        n_patches = gh * gw * batch
        if kind == "keye":
            pix = torch.randn(n_patches, 3, 14, 14, generator=g)
        else:
            pix = torch.randn(n_patches, 3 * 2 * 14 * 14, generator=g)
        inputs.update(pixel_values=pix.to(device, dtype), image_grid_thw=grid)
        types = (input_ids == IMAGE_ID).int()
        inputs["mm_token_type_ids"] = types
    return inputs


def time_pair(models: dict, inputs: dict, iters: int, device: str) -> dict[str, float]:
    """Median seconds per forward for each model; iterations alternate between the models so both
    see the same machine load (the ratio is what matters on a shared CPU)."""
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for kind, model in models.items():  # warm-up
            model(**inputs[kind], use_cache=False)
        for _ in range(iters):
            for kind, model in models.items():
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(**inputs[kind], use_cache=False)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[kind].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few iterations (< 1 minute)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--text_tokens", type=int, default=None)
    parser.add_argument("--image", type=int, default=None, help="image side in pixels (multiple of 28)")
    parser.add_argument("--iters", type=int, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    batch = args.batch or (2 if args.quick else 4)
    text_tokens = args.text_tokens or (64 if args.quick else 256)
    image = args.image or (224 if args.quick else 448)
    if image % 28:
        raise ValueError(f"--image must be a multiple of 28, got {image}")
    iters = args.iters or (3 if args.quick else 10)
    names = {"keye": "keye_vl (kwaiformers)", "qwen": "qwen2_5_vl (transformers)"}
    models = {"keye": build_keye(args.device, dtype), "qwen": build_qwen(args.device, dtype)}
    rows = []
    results: dict[str, dict[str, float]] = {}
    for case, with_image in tqdm([("image+text", True), ("text-only", False)], desc="cases", leave=False):
        inputs = {k: make_inputs(k, batch, text_tokens, image, args.device, dtype, with_image) for k in models}
        seconds = time_pair(models, inputs, iters, args.device)
        for kind in models:
            tokens = inputs[kind]["input_ids"].numel()
            results.setdefault(case, {})[kind] = tokens / seconds[kind]
            rows.append((case, names[kind], tokens, seconds[kind] * 1000, tokens / seconds[kind]))
    print(f"device={args.device} dtype={str(dtype).split('.')[-1]} batch={batch} text_tokens={text_tokens} "
          f"image={image}x{image} iters={iters}")
    print(f"{'case':<11} {'model':<27} {'tokens':>7} {'ms/forward':>11} {'tokens/s':>11}")
    for case, name, tokens, ms, tps in rows:
        print(f"{case:<11} {name:<27} {tokens:>7} {ms:>11.2f} {tps:>11.0f}")
    ratios = {case: r["keye"] / r["qwen"] for case, r in results.items()}
    for case, ratio in ratios.items():
        print(f"ratio keye/qwen2.5-vl ({case}): {ratio:.3f}")
    headline = {
        "benchmark": "keye_vl_forward", "device": args.device, "quick": args.quick,
        "keye_tokens_per_s": round(results["image+text"]["keye"], 1),
        "qwen2_5_vl_tokens_per_s": round(results["image+text"]["qwen"], 1),
        "ratio_image_text": round(ratios["image+text"], 3),
        "ratio_text_only": round(ratios["text-only"], 3),
    }
    print(json.dumps(headline))
    return headline


if __name__ == "__main__":
    main()
