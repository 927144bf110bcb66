"""Generation time per sample: pose-only vs gating (store / online text encoder) vs cross-attention.

    python benchmarks/bench_generate.py --threads 1 --clock process   # B=8, T=256, 4 beams, 20 tokens; on CPU 2 layers, vocab 32128
    python benchmarks/bench_generate.py --full    # mT5-base: 12 layers, vocabulary 250112
    python benchmarks/bench_generate.py --quick   # CI: B=2, T=64, 1 layer, vocab 8192, 5 tokens

Uni_Sign.generate (beam search) on one batch, model in eval mode, with mT5-base's width
(tests/data/mt5-base-config.json, random weights, the tiny tokenizer). Every sample is made
to generate exactly --max_new_tokens tokens (min_new_tokens = max_new_tokens), so all
variants do the same decoding work; at initialisation the fusions are the identity, so all
variants must also produce the same text (checked). "online": the frozen text encoder with a
cold cache for every batch; "store": EmbeddingStore lookups. The variants share one mT5 and
run interleaved, repeat by repeat, in this one process; medians reported, and written with the
machine and the settings to docs/results/bench_generate.json (``--out``).
"""
import argparse
import tempfile

import torch

from common import (CLOCK_HELP, CLOCKS, add_out_arg, build_language_model, build_text_encoder, build_variant,
                    description_pool, machine_info, machine_line, median_ms, synthetic_batch, timed,
                    write_pool_store, write_result, start)

NAMES = ("pose-only", "gating + store", "gating + online", "cross_attn + store")
TARGET = ("gating + store", 0.03)  # at most 3% slower per sample than pose-only


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--layers", type=int, default=None, help="mT5 layers (default: 2 on CPU, 12 on GPU)")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary (default: 32128 on CPU, 250112 on GPU)")
    parser.add_argument("--full", action="store_true", help="mT5-base: 12 layers, vocabulary 250112")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=20)
    parser.add_argument("--pool", type=int, default=400, help="distinct description texts")
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per variant (median)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    parser.add_argument("--clock", default="wall", choices=CLOCKS, help=CLOCK_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="B=2, T=64, 1 layer, vocab 8192, 5 tokens (CI)")
    add_out_arg(parser, "generate")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.pool, args.repeats, args.max_new_tokens = 2, 64, 50, 2, 5
        args.layers, args.vocab = args.layers or 1, args.vocab or 8192
    return args


def measure(args, device) -> tuple:
    """({variant: [seconds per batch]}, shared language model, distinct texts in the batch),
    after checking that every variant generates the same ids, all of length max_new_tokens."""
    gpu = device.type == "cuda"
    shared = build_language_model(args.layers, args.vocab, device, args.seed)
    shared["mt5"].generation_config.min_new_tokens = args.max_new_tokens  # same work for all
    pool = description_pool(args.pool, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        from signfuse.models.text_store import EmbeddingStore
        online = build_text_encoder(shared["config"], shared["tokenizer"], device)
        store = EmbeddingStore.open(write_pool_store(online, pool, folder)).to(device)
        sources = {"online": online, "store": store}
        models = {n: build_variant(n, shared, sources, device, args.seed).eval() for n in NAMES}
        batch = synthetic_batch(args.batch, args.frames, pool, device, args.seed)

        def generate(name):
            online.clear_cache()  # cold cache: every batch's texts encoded again
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
                return models[name].generate(batch, max_new_tokens=args.max_new_tokens,
                                             num_beams=args.beams)

        for name in NAMES:  # warm-up
            generate(name)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            ids = {n: models[n].generate_ids(batch, max_new_tokens=args.max_new_tokens,
                                             num_beams=args.beams) for n in NAMES}
        for name in NAMES:  # the same tokens (random weights: ids beyond the tiny tokenizer's)
            assert torch.equal(ids[name], ids["pose-only"]), name
        assert ids["pose-only"].shape[1] == args.max_new_tokens + 1  # decoder start + new tokens
        times = {n: [] for n in NAMES}
        for r in range(args.repeats):
            order = NAMES[r % len(NAMES):] + NAMES[:r % len(NAMES)]  # rotate the order
            for name in order:
                times[name].append(timed(lambda name=name: generate(name), device, args.clock))
    return times, shared, len(batch["desc_texts"])


def main():
    args = parse_args()
    device = start(args)
    gpu = device.type == "cuda"
    info = machine_info(device)
    times, shared, distinct = measure(args, device)

    config = shared["config"]
    reduced = [f"{args.layers} layers instead of 12"] * (args.layers != 12)
    reduced += [f"vocabulary {args.vocab} instead of 250112"] * (args.vocab != 250112)
    base = median_ms(times["pose-only"]) / args.batch
    variants = {n: {"ms_per_sample": round(median_ms(t) / args.batch, 1),
                    "vs_pose_only_percent": round((median_ms(t) / args.batch / base - 1) * 100, 1),
                    "ms_per_batch_all": [round(1000 * x, 1) for x in t]} for n, t in times.items()}
    name, limit = TARGET
    figures = {"variants": variants,
               "target": {"variant": name, "at_most_percent": 100 * limit,
                          "met": variants[name]["vs_pose_only_percent"] < 100 * limit},
               "check": "every variant generates the same token ids, all of length max_new_tokens "
                        "(fusions are the identity at initialisation)"}
    settings = {"batch": args.batch, "frames": args.frames, "beams": args.beams,
                "new_tokens_per_sample": args.max_new_tokens, "pool": args.pool, "distinct_texts": distinct,
                "model": {"config": shared["source"], "d_model": config["d_model"], "layers": args.layers,
                          "vocab": args.vocab, "weights": "random"},
                "dtype": "bf16 autocast" if gpu else "float32", "device": str(device), "repeats": args.repeats,
                "statistic": "median per variant, interleaved", "clock": args.clock, "seed": args.seed,
                "quick": args.quick, "reduced": reduced}
    write_result(args.out, figures, settings, info)
    print(machine_line(info))
    print(f"settings: B={args.batch}, T={args.frames}, {args.beams} beams, exactly "
          f"{args.max_new_tokens} new tokens per sample, {distinct} distinct texts "
          f"in the batch; {settings['dtype']} on {device}; median of "
          f"{args.repeats} generations per variant, interleaved, {args.clock} clock")
    print(f"model: mT5-base shape from {shared['source']} (d_model {config['d_model']}), random "
          f"weights{', reduced: ' + ', '.join(reduced) if reduced else ''}; tiny tokenizer")
    print(f"check: {figures['check']}")
    print(f"{'variant':<22}{'ms/sample':>12}{'vs pose-only':>14}")
    for n, v in variants.items():
        print(f"{n:<22}{v['ms_per_sample']:>12.1f}{v['vs_pose_only_percent']:>+13.1f}%")
    print(f"target: {name} < {limit:.0%} slower than pose-only: {variants[name]['vs_pose_only_percent']:+.1f}% "
          f"({'met' if figures['target']['met'] else 'NOT met'})")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
