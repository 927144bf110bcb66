"""The language model: the stock Hugging Face ``MT5ForConditionalGeneration`` and its tokenizer.

``load_mt5("tiny")`` builds the tiny configuration shipped in ``signfuse/assets/tiny_mt5``
with seeded random weights (tests, the CPU demo); any other value must be a local Hugging
Face directory (``config.json``, weights, tokenizer), e.g. Uni-Sign's
``./pretrained_weight/mt5-base``. Nothing is ever downloaded.
"""
from pathlib import Path

import torch
from transformers import AutoTokenizer, MT5Config, MT5ForConditionalGeneration

from signfuse.config import TINY_MT5, TINY_MT5_DIR, UNISIGN_MT5_DIR
from signfuse.errors import InputError


def load_mt5(path: str, seed: int = 0) -> tuple:
    """-> (MT5ForConditionalGeneration, tokenizer), from "tiny" or a local directory."""
    if path == TINY_MT5:
        config = MT5Config.from_pretrained(TINY_MT5_DIR, local_files_only=True)
        with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's RNG untouched
            torch.manual_seed(seed)
            model = MT5ForConditionalGeneration(config)
            # The tied embedding is also the output layer, and transformers 5 no longer scales the
            # decoder output by d_model ** -0.5 before it: with its N(0, 1) init the first logits
            # have a std of sqrt(d_model) (an initial loss near 37) and training first spends its
            # steps shrinking them. N(0, 1 / d_model) gives logits of std ~1 from the start.
            with torch.no_grad():
                model.shared.weight.normal_(0.0, config.d_model ** -0.5)
        tokenizer = AutoTokenizer.from_pretrained(TINY_MT5_DIR, local_files_only=True)
        return model, tokenizer

    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise InputError(
            f"{path}: not a local Hugging Face mT5 directory; --mt5_model needs a folder with "
            f"config.json, the weights and the tokenizer files (e.g. {UNISIGN_MT5_DIR}), or '{TINY_MT5}'"
        )
    try:
        # float32 as Uni-Sign loads it (transformers 5 would otherwise keep the file's dtype)
        model = MT5ForConditionalGeneration.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot load the mT5 model or its tokenizer: {err}") from err
    return model, tokenizer


