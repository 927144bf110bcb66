"""Regenerate the tiny mT5 assets shipped in signfuse/assets/tiny_mt5/.

    python tools/make_tiny_assets.py

Writes ``spiece.model`` (a SentencePiece unigram model trained on text built from
``signfuse.demo.lexicon``), the Hugging Face tokenizer files, and ``config.json`` (a tiny
mT5 configuration). Deterministic: the same lexicon gives the same files.
"""
import io
import random
import tempfile
from pathlib import Path

import sentencepiece as spm
from transformers import MT5Config, T5Tokenizer

from signfuse.demo.lexicon import DESCRIPTION_PHRASES, PROMPTS, WORDS

OUT = Path(__file__).resolve().parent.parent / "signfuse" / "assets" / "tiny_mt5"
VOCAB = 400  # at most this many pieces (fewer if the corpus is small); T5Tokenizer adds 100 extra ids


def corpus(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = list(PROMPTS) * 200 + list(DESCRIPTION_PHRASES) * 20 + list(WORDS)
    for _ in range(4000):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))))
    for _ in range(1000):
        lines.append(", ".join(rng.sample(DESCRIPTION_PHRASES, 2)))
    lines.append("0 1 2 3 4 5 6 7 8 9 . , ? ! ' -")
    return lines


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "corpus.txt"
        text.write_text("\n".join(corpus()) + "\n", encoding="utf-8")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            input=str(text), model_writer=model, vocab_size=VOCAB, model_type="unigram",
            character_coverage=1.0, hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
            num_threads=1, seed_sentencepiece_size=100000, shuffle_input_sentence=False,
        )
        (OUT / "spiece.model").write_bytes(model.getvalue())
    tok = T5Tokenizer.from_pretrained(str(OUT))  # converts spiece.model (needs sentencepiece, protobuf)
    vocab_size = 64 * ((len(tok) + 63) // 64)
    cfg = MT5Config(
        vocab_size=vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=16, dropout_rate=0.1,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
    )
    cfg.save_pretrained(str(OUT))
    tok.save_pretrained(str(OUT))
    print(f"wrote {OUT}: {len(tok)} tokens, vocab_size {vocab_size}")


if __name__ == "__main__":
    main()
