"""load_mt5 and mt5_from_config_dict (signfuse.models.mt5)."""
import json

import pytest
import torch
from transformers import MT5ForConditionalGeneration

from conftest import MT5_BASE_CONFIG, data_file
from helpers import mt5_from_config_dict
from signfuse.config import UNISIGN_MT5_DIR
from signfuse.errors import InputError
from signfuse.config import TINY_MT5_DIR
from signfuse.models.mt5 import load_mt5



def small_untied_config() -> dict:
    """mt5-base's shape (untied lm_head, gated-gelu) at toy sizes."""
    return {
        "_comment": "test", "d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 2, "num_layers": 1,
        "num_decoder_layers": 1, "vocab_size": 256, "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False, "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0,
    }


def test_tiny_is_seeded_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model_a, tokenizer = load_mt5("tiny", seed=0)
    assert torch.equal(torch.rand(3), expected_next)
    model_b, _ = load_mt5("tiny", seed=0)
    model_c, _ = load_mt5("tiny", seed=1)
    assert isinstance(model_a, MT5ForConditionalGeneration)
    assert model_a.config.d_model == json.loads((TINY_MT5_DIR / "config.json").read_text())["d_model"]
    sa, sb, sc = model_a.state_dict(), model_b.state_dict(), model_c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["encoder.block.0.layer.0.SelfAttention.q.weight"],
                           sc["encoder.block.0.layer.0.SelfAttention.q.weight"])
    assert len(tokenizer) <= model_a.config.vocab_size


def test_tiny_output_layer_starts_with_logits_of_unit_scale():
    """The tied embedding (= output layer) is drawn from N(0, 1/d_model): the first logits have
    a std near 1, and the loss of any target starts near ln(vocab), not at ~sqrt(d_model) times it."""
    model, tokenizer = load_mt5("tiny", seed=0)
    model.eval()
    d, vocab = model.config.d_model, model.config.vocab_size
    assert model.lm_head.weight is model.shared.weight
    assert abs(model.shared.weight.std().item() * d ** 0.5 - 1.0) < 0.05
    inputs = tokenizer(["you want water today", "i go home"], padding=True, return_tensors="pt")
    labels = tokenizer(["happy big", "no"], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == 0] = -100
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert 0.5 < out.logits.std().item() < 2.0
    assert torch.log(torch.tensor(float(vocab))) - 1.0 < out.loss.item() < torch.log(torch.tensor(float(vocab))) + 1.5


def test_tiny_tokenizer_round_trip():
    _, tokenizer = load_mt5("tiny")
    ids = tokenizer("you want water today")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "you want water today"


@pytest.mark.parametrize("make", [lambda tmp: tmp / "missing", lambda tmp: tmp])
def test_non_directory_is_an_input_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        load_mt5(str(path))
    message = str(err.value)
    assert message.startswith(str(path)) and "config.json" in message and UNISIGN_MT5_DIR in message


def test_directory_without_weights_is_an_input_error(tmp_path):
    (tmp_path / "config.json").write_text((TINY_MT5_DIR / "config.json").read_text())
    with pytest.raises(InputError, match=str(tmp_path)):
        load_mt5(str(tmp_path))


def test_local_directory_round_trip_keeps_untied_lm_head(tmp_path):
    """transformers 5's MT5Config always says 'tied'; a saved untied model must come back untied."""
    model = mt5_from_config_dict(small_untied_config(), seed=3)
    assert model.lm_head.weight is not model.shared.weight
    assert model.encoder.embed_tokens.weight is model.shared.weight  # as in mt5-base: one input embedding
    assert model.decoder.embed_tokens.weight is model.shared.weight
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    _, tokenizer = load_mt5("tiny")
    tokenizer.save_pretrained(tmp_path)

    loaded, loaded_tokenizer = load_mt5(str(tmp_path))
    assert loaded.dtype == torch.float32  # as Uni-Sign loads it, whatever the file holds
    assert loaded.lm_head.weight is not loaded.shared.weight
    saved = model.state_dict()
    assert set(loaded.state_dict()) == set(saved)
    assert all(torch.equal(v.float(), saved[k].float()) for k, v in loaded.state_dict().items())
    assert loaded_tokenizer("i go home")["input_ids"] == tokenizer("i go home")["input_ids"]


def test_config_dict_of_mt5_base_shape():
    with torch.device("meta"):  # shapes only: the real size would take GBs and many seconds
        model = mt5_from_config_dict(json.loads(data_file(MT5_BASE_CONFIG).read_text()))
    assert sum(p.numel() for p in model.parameters()) == 582_401_280  # google/mt5-base
    assert model.lm_head.weight.shape == (250112, 768) and model.lm_head.weight is not model.shared.weight
