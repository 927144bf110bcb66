"""Description encoding for one batch: per-frame loop vs batched distinct texts vs the store.

    python benchmarks/bench_text.py --threads 1 --clock process   # B=8, T=256, mT5-base width, 2 encoder layers on CPU
    python benchmarks/bench_text.py --full      # all 12 layers of mT5-base
    python benchmarks/bench_text.py --quick     # CI: B=2, T=64, 1 layer, small vocabulary

The batch: about one described frame in 8, texts drawn from a pool (so some repeat), the
frames in between interpolated (docs/descriptions.md section 2), as the data pipeline makes it.
Each method computes the batch's per-frame text features (B, T, D):
  (a) the plan's per-frame loop: every text of every frame encoded by its own encoder call
      (tokenise, encode, mean-pool), then weighted;
  (b) signfuse's TextEncoder with a cold cache: the batch's distinct texts, sorted by length
      and encoded in calls of up to 64 texts, then the per-frame weighted sums (frame_text_features);
  (c) the embedding store (signfuse precompute-text): lookups in the memory-mapped file.
The three must give the same features (checked before timing). The encoder is an mT5-base
sized encoder (tests/data/mt5-base-config.json) with random weights; on CPU fewer layers
by default. Prints the median times and the ratios, and writes them with the machine and the
settings to docs/results/bench_text.json (``--out``).
"""
import argparse
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, MT5Config, MT5EncoderModel

from common import (CLOCK_HELP, CLOCKS, add_out_arg, description_batch, description_pool, machine_info, machine_line,
                    median_ms, mt5_base_config, timed, write_result, start)
from signfuse.config import TINY_MT5_DIR
from signfuse.models.text_fusion import TextEncoder, frame_text_features, masked_mean
from signfuse.models.text_store import EmbeddingStore, write_store

TARGET_BATCHED = 50.0  # batched distinct texts vs the per-frame loop
TARGET_STORE = 10.0  # store vs batched


def loop_features(encoder, tokenizer, aligned_per_sample, T, max_tokens, device):
    """The per-frame loop: one encoder call per (frame, text), as a naive implementation does."""
    B, D = len(aligned_per_sample), encoder.config.d_model
    feats = torch.zeros(B, T, D, device=device)
    with torch.no_grad():
        for b, aligned in enumerate(aligned_per_sample):
            for t, pairs in enumerate(aligned):
                for text, weight in pairs:
                    tokens = tokenizer([text], truncation=True, max_length=max_tokens,
                                       return_tensors="pt").to(device)
                    states = encoder(**tokens).last_hidden_state  # (1, L, D)
                    feats[b, t] += weight * masked_mean(states.float(), tokens["attention_mask"])[0]
    return feats  # frames without text stay zero (no mask embedding here)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--every", type=int, default=8, help="about one described frame in N")
    parser.add_argument("--pool", type=int, default=400, help="distinct texts the batch draws from")
    parser.add_argument("--layers", type=int, default=None,
                        help="encoder layers (default: 2 on CPU, 12 on GPU)")
    parser.add_argument("--full", action="store_true", help="all 12 layers of mT5-base")
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary size (default: mT5-base's 250112)")
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of (b) and (c); the median")
    parser.add_argument("--loop_repeats", type=int, default=1, help="timed runs of the loop")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    parser.add_argument("--clock", default="wall", choices=CLOCKS, help=CLOCK_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="B=2, T=64, 1 layer, vocab 32128 (CI)")
    add_out_arg(parser, "text")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.pool, args.repeats = 2, 64, 50, 3
        args.layers = args.layers or 1
        args.vocab = args.vocab or 32128
    return args


def build_encoder(args, device) -> tuple:
    """(TextEncoder, its mT5 encoder, tokenizer, config, config source): mT5-base's shape, random weights."""
    config, source = mt5_base_config(layers=args.layers, vocab=args.vocab)
    config.pop("tie_word_embeddings", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        encoder = MT5EncoderModel(MT5Config(**config)).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(TINY_MT5_DIR)
    text_encoder = TextEncoder(encoder=encoder, tokenizer=tokenizer, max_tokens=args.max_tokens)
    return text_encoder, encoder, tokenizer, config, source


def measure(args, device, text_encoder, encoder, tokenizer, pool, batch) -> dict:
    """{method: [seconds per call]} of the loop, batched, store and warm-cache paths, after
    checking that they give the same features."""
    texts, index, weight = batch["desc_texts"], batch["desc_index"].to(device), batch["desc_weight"].to(device)
    with tempfile.TemporaryDirectory() as folder:
        # the store holds the whole pool (as precompute-text would for a dataset)
        path = write_store(Path(folder) / "store.safetensors", pool,
                           text_encoder.encode(pool).cpu(), {"encoder": "bench"})
        store = EmbeddingStore.open(path).to(device)

        def loop():
            return loop_features(encoder, tokenizer, batch["aligned"], args.frames, args.max_tokens, device)

        def batched():
            text_encoder.clear_cache()
            return frame_text_features(text_encoder.encode(texts), index, weight)

        def from_store():
            return frame_text_features(store.encode(texts), index, weight)

        def warm_cache():  # the TextEncoder again, every text already cached
            return frame_text_features(text_encoder.encode(texts), index, weight)

        want = batched()
        torch.testing.assert_close(loop(), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(from_store(), want, rtol=0, atol=1e-6)

        times = {"loop": [timed(loop, device, args.clock) for _ in range(args.loop_repeats)],
                 "batched": [], "store": []}
        for _ in range(args.repeats):  # interleaved: drift hits both alike
            times["batched"].append(timed(batched, device, args.clock))
            times["store"].append(timed(from_store, device, args.clock))
        text_encoder.encode(texts)
        times["warm cache"] = [timed(warm_cache, device, args.clock) for _ in range(args.repeats)]
    return times


METHODS = {  # key -> (label, decimals of its ms)
    "loop": ("(a) per-frame loop (one encoder call per frame text)", 1),
    "batched": ("(b) batched distinct texts, cold cache", 2),
    "store": ("(c) embedding store (memory-mapped lookups)", 3),
    "warm cache": ("    (TextEncoder with a warm cache, reference)", 3),
}


def main():
    args = parse_args()
    device = start(args, vocab=False)  # the vocabulary stays mT5-base's unless --vocab
    info = machine_info(device)
    text_encoder, encoder, tokenizer, config, source = build_encoder(args, device)
    pool = description_pool(args.pool, args.seed)
    batch = description_batch(args.batch, args.frames, pool, args.every, args.seed)
    texts = batch["desc_texts"]
    pairs = sum(len(p) for aligned in batch["aligned"] for p in aligned)
    tokens = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=args.max_tokens)["input_ids"]]
    times = measure(args, device, text_encoder, encoder, tokenizer, pool, batch)

    ms = {k: round(median_ms(times[k]), METHODS[k][1]) for k in METHODS}
    calls = {"loop": pairs, "batched": -(-len(texts) // text_encoder.chunk_size), "store": 0, "warm cache": 0}
    ratios = {"batched vs loop": (ms["loop"] / ms["batched"], TARGET_BATCHED),
              "store vs batched": (ms["batched"] / ms["store"], TARGET_STORE)}
    figures = {"ms_per_batch": ms, "encoder_calls": calls,
               "ms_all": {k: [round(1000 * t, 3) for t in v] for k, v in times.items()},
               "ratios": {k: round(r, 1) for k, (r, _) in ratios.items()},
               "targets": {k: {"at_least": t, "met": r >= t} for k, (r, t) in ratios.items()},
               "outputs_equal": "loop == batched (rtol/atol 1e-4), store == batched (atol 1e-6)"}
    settings = {"batch": args.batch, "frames": args.frames, "every": args.every, "pool": args.pool,
                "distinct_texts": len(texts), "frame_text_pairs": pairs,
                "tokens_per_text": round(sum(tokens) / len(tokens), 1), "max_tokens": args.max_tokens,
                "encoder": {"config": source, "d_model": config["d_model"], "layers": args.layers,
                            "vocab": config["vocab_size"], "weights": "random", "dtype": "float32"},
                "device": str(device), "repeats": args.repeats, "loop_repeats": args.loop_repeats,
                "statistic": "median", "clock": args.clock, "seed": args.seed, "quick": args.quick,
                "reduced": [f"{args.layers} layers instead of 12"] * (args.layers != 12)
                + [f"vocabulary {config['vocab_size']} instead of 250112"] * (config["vocab_size"] != 250112)}
    write_result(args.out, figures, settings, info)
    print(machine_line(info))
    print(f"settings: B={args.batch}, T={args.frames}, ~1 described frame in {args.every}, "
          f"interpolated between; pool of {args.pool} texts; {len(texts)} distinct texts in the "
          f"batch, {pairs} (frame, text) pairs; {settings['tokens_per_text']} tokens per text "
          f"(tiny tokenizer, max {args.max_tokens})")
    print(f"encoder: mT5-base shape from {source}: d_model {config['d_model']}, {args.layers} layers, "
          f"vocab {config['vocab_size']}{' (reduced: ' + ', '.join(settings['reduced']) + ')' if settings['reduced'] else ''}, "
          f"random weights, float32 on {device}; median of {args.repeats} runs ({args.loop_repeats} for the loop)")
    print(f"outputs: {figures['outputs_equal']}")
    print(f"{'method':<52}{'ms/batch':>12}{'calls':>8}   ({args.clock} clock)")
    for key, (label, decimals) in METHODS.items():
        print(f"{label:<52}{ms[key]:>12.{decimals}f}{calls[key]:>8}")
    for what, (_, target) in ratios.items():
        ratio = figures["ratios"][what]
        print(f"{what}: {ratio:.1f}x (target >= {target:.0f}x: {'met' if ratio >= target else 'NOT met'})")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
