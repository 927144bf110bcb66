"""Description embedding store: identity, lookups, incremental precompute, errors, command."""
import argparse
import copy
import json
import pickle

import pytest
import safetensors.torch
import torch
from transformers import AutoTokenizer, MT5Config, MT5EncoderModel

from signfuse.commands import precompute_text
from signfuse.errors import InputError
from signfuse.models import text_store
from signfuse.config import TINY_MT5_DIR
from signfuse.models.text_fusion import TextEncoder
from signfuse.models.text_store import (
    EmbeddingStore, default_store_path, encoder_identity, identity_hash, precompute,
)

DATASET = "Synthetic"
FILES = {  # the three accepted shapes; "both hands move down" appears twice
    "s1.json": {"0": "person moves hand to left", "2": "hand touches chin", "5": "both hands move down"},
    "s2.json": {"frames": {"1": "both hands move down", "4": "  "}, "signer": "A"},
    "s3.json": {"segments": [{"start": 3, "end": 6, "text": "right hand moves up to the chin"}]},
}
TEXTS = ["person moves hand to left", "hand touches chin", "both hands move down",
         "right hand moves up to the chin"]


def write_descriptions(root, files=FILES):
    folder = root / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content) if not isinstance(content, str) else content)
    return folder


def build(root, **kw):
    kw.setdefault("device", "cpu")
    return precompute(root, DATASET, "tiny", progress=False, **kw)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store of FILES made once for the tests that only read it."""
    root = tmp_path_factory.mktemp("desc")
    write_descriptions(root)
    return build(root)["store"]


def save_encoder_dir(path, seed):
    """A local mT5 directory of the tiny shape with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    MT5EncoderModel(MT5Config.from_pretrained(TINY_MT5_DIR)).save_pretrained(path)
    AutoTokenizer.from_pretrained(TINY_MT5_DIR).save_pretrained(path)
    return path


class Recorder:
    """Wraps TextEncoder.encode and records every text it is asked to encode."""

    def __init__(self, monkeypatch):
        self.texts = []
        original = TextEncoder.encode

        def encode(encoder, texts):
            self.texts.extend(texts)
            return original(encoder, texts)
        monkeypatch.setattr(TextEncoder, "encode", encode)


# ----------------------------------------------------------------------------- vectors

def test_store_vectors_equal_the_online_encoder(tmp_path):
    write_descriptions(tmp_path)
    summary = build(tmp_path, batch_size=3)  # two batches of different padded lengths
    assert summary["texts_total"] == 4 and summary["newly_encoded"] == 4
    assert summary["store"] == str(default_store_path(tmp_path, DATASET, encoder_identity("tiny")))
    store = EmbeddingStore.open(summary["store"], expected_identity=encoder_identity("tiny"))
    assert sorted(store.texts) == sorted(TEXTS) and store.text_dim == 64

    online = TextEncoder("tiny", max_tokens=64)
    query = [TEXTS[3], TEXTS[0], TEXTS[3], TEXTS[1], TEXTS[2]]  # order and repeats kept
    got = store.encode(query)
    assert got.dtype == torch.float32 and got.shape == (5, 64)
    torch.testing.assert_close(got, online.encode(query), atol=1e-6, rtol=0)
    assert torch.equal(got[0], got[2])
    assert store.encode([]).shape == (0, 64)


def test_store_is_encoded_in_float32_even_under_autocast(tmp_path):
    """A store made inside a bf16 autocast region (as on a GPU) still holds the float32 vectors
    of the online encoder; bf16 ones would differ (measured: by up to 7.2e-3 on the tiny encoder)."""
    write_descriptions(tmp_path)
    online = TextEncoder("tiny", max_tokens=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        summary = build(tmp_path)
        in_bf16 = TextEncoder("tiny", max_tokens=64).encode(TEXTS)
    store = EmbeddingStore.open(summary["store"], expected_identity=encoder_identity("tiny"))
    assert store.info["precision"] == "float32"
    torch.testing.assert_close(store.encode(TEXTS), online.encode(TEXTS), atol=1e-6, rtol=0)
    # the online encoder ignores autocast as well: inside a bf16 region it gives the float32 vectors
    torch.testing.assert_close(in_bf16, online.encode(TEXTS), atol=1e-6, rtol=0)


def test_store_made_in_another_precision_is_refused_then_rebuilt(tmp_path):
    """signfuse before this check encoded stores with bf16 autocast on CUDA: such a store is
    refused with the command that rebuilds it, and precompute rebuilds it in float32."""
    folder = write_descriptions(tmp_path)
    identity = encoder_identity("tiny")
    path = default_store_path(tmp_path, DATASET, identity)
    info = {"desc_dir": str(tmp_path), "dataset": DATASET, "device": "cuda", "precision": "bf16-autocast"}
    text_store.write_store(path, TEXTS, torch.zeros(len(TEXTS), 64), identity, info)
    with pytest.raises(InputError) as err:
        EmbeddingStore.open(path, expected_identity=identity)
    message = str(err.value)
    assert message.startswith(f"{path}: embedding store encoded in bf16-autocast on cuda")
    assert f"`signfuse precompute-text --desc_dir {tmp_path} --dataset {DATASET} --desc_encoder tiny" in message
    summary = build(tmp_path)
    assert summary["store"] == str(path) and "bf16-autocast" in summary["rebuilt"]
    assert summary["newly_encoded"] == len(TEXTS) and folder.is_dir()
    online = TextEncoder("tiny", max_tokens=64)
    torch.testing.assert_close(EmbeddingStore.open(path, identity).encode(TEXTS), online.encode(TEXTS),
                               atol=1e-6, rtol=0)


def test_store_survives_pickle_and_deepcopy(store_path):
    store = EmbeddingStore.open(store_path)
    want = store.encode(TEXTS)
    for clone in (pickle.loads(pickle.dumps(store)), copy.deepcopy(store)):
        assert torch.equal(clone.encode(TEXTS), want)


# ----------------------------------------------------------------------------- identity

@pytest.mark.parametrize("expected, field, flag", [
    (dict(max_tokens=32), "max_tokens", "--desc_max_tokens 32"),
    (dict(seed=1), "weights", "--desc_encoder tiny"),
])
def test_store_of_other_settings_is_refused(store_path, expected, field, flag):
    identity = encoder_identity("tiny", **expected)
    with pytest.raises(InputError) as err:
        EmbeddingStore.open(store_path, expected_identity=identity)
    message = str(err.value)
    assert message.startswith(store_path) and f"{field} is " in message
    assert "signfuse precompute-text" in message and flag in message and f"--out {store_path}" in message
    other = [f for f in text_store.IDENTITY_FIELDS if f != field]
    assert not any(f"{f} is " in message for f in other)  # only the differing field is named


def test_identity_of_local_directories_follows_the_weights(tmp_path):
    a = save_encoder_dir(tmp_path / "a", seed=0)
    b = save_encoder_dir(tmp_path / "b", seed=1)
    (tmp_path / "a_copy").mkdir()
    for f in a.iterdir():
        (tmp_path / "a_copy" / f.name).write_bytes(f.read_bytes())
    id_a, id_b, id_copy = (encoder_identity(p) for p in (a, b, tmp_path / "a_copy"))
    assert identity_hash(id_a) == identity_hash(id_copy)  # same files elsewhere: same store
    (tmp_path / "a_copy" / "pytorch_model.bin").write_bytes(b"unused: safetensors come first")
    assert encoder_identity(tmp_path / "a_copy")["weights"] == id_a["weights"]
    assert id_a["config_sha256"] == id_b["config_sha256"] and id_a["weights"] != id_b["weights"]

    write_descriptions(tmp_path / "desc")
    path = precompute(tmp_path / "desc", DATASET, a, device="cpu", progress=False)["store"]
    EmbeddingStore.open(path, expected_identity=id_copy)
    with pytest.raises(InputError, match=r"weights is '[0-9a-f]{64}' in the store.*precompute-text"):
        EmbeddingStore.open(path, expected_identity=id_b)


def test_identity_of_a_directory_without_weights_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        encoder_identity(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match=f"^{tmp_path}: no weights file"):
        encoder_identity(tmp_path)


# ----------------------------------------------------------------------------- incremental

def test_rerun_encodes_only_new_texts_and_keeps_old_rows(tmp_path, monkeypatch):
    folder = write_descriptions(tmp_path)
    path = build(tmp_path)["store"]
    before = EmbeddingStore.open(path)
    old_texts, old_rows = list(before.texts), before.all_vectors().numpy().tobytes()
    before.close()

    (folder / "s4.json").write_text(json.dumps({"0": "hand touches chin", "7": "head nods"}))
    recorder = Recorder(monkeypatch)
    summary = build(tmp_path)
    assert recorder.texts == ["head nods"]
    assert (summary["newly_encoded"], summary["texts_total"]) == (1, 5)
    after = EmbeddingStore.open(path)
    assert after.texts == old_texts + ["head nods"]
    assert after.all_vectors()[:4].numpy().tobytes() == old_rows  # byte-identical

    # nothing new: the encoder is not even loaded and the file is not rewritten
    mtime = (tmp_path / path).stat().st_mtime_ns
    monkeypatch.setattr("signfuse.models.text_fusion.load_text_encoder",
                        lambda *a, **k: pytest.fail("encoder loaded with nothing to encode"))
    summary = build(tmp_path)
    assert summary["newly_encoded"] == 0 and summary["texts_total"] == 5
    assert (tmp_path / path).stat().st_mtime_ns == mtime
    assert not list(folder.glob(".*tmp*"))  # no temporary file left behind


def test_invalid_description_files_are_skipped_and_counted(tmp_path):
    files = dict(FILES, **{"bad.json": "{not json", "worse.json": {"x": "key is not a frame"}})
    write_descriptions(tmp_path, files)
    summary = build(tmp_path)
    assert (summary["description_files"], summary["invalid_files"], summary["texts_total"]) == (5, 2, 4)


def test_store_at_out_made_with_other_settings_is_rebuilt(tmp_path, monkeypatch):
    write_descriptions(tmp_path)
    out = tmp_path / "store.safetensors"
    build(tmp_path, out=out, max_tokens=32)
    recorder = Recorder(monkeypatch)
    summary = build(tmp_path, out=out, max_tokens=64)
    assert "max_tokens" in summary["rebuilt"] and sorted(recorder.texts) == sorted(TEXTS)
    EmbeddingStore.open(out, expected_identity=encoder_identity("tiny", max_tokens=64))


# ----------------------------------------------------------------------------- errors

def test_missing_text_names_store_text_and_command(store_path):
    store = EmbeddingStore.open(store_path)
    long_text = "the signer " * 20
    with pytest.raises(InputError) as err:
        store.encode([TEXTS[0], long_text, "head nods"])
    message = str(err.value)
    assert message.startswith(store_path)
    assert repr(long_text[:57] + "...") in message and long_text not in message
    assert "and 1 other" in message
    assert f"precompute-text --desc_dir {store_path.rsplit('/', 2)[0]} --dataset {DATASET}" in message


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign", "bad_texts"])
def test_corrupt_store_is_an_input_error_naming_it(store_path, tmp_path, damage):
    bad = tmp_path / "bad.safetensors"
    data = open(store_path, "rb").read()
    if damage == "garbage":
        bad.write_bytes(b"\x00\x01not a store" * 10)
    elif damage == "truncated":
        bad.write_bytes(data[:len(data) - 40])
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "foreign":  # a valid safetensors file, not ours
        safetensors.torch.save_file({"vectors": torch.zeros(1, 4)}, str(bad))
    else:  # our metadata, but the texts do not match the rows
        store = EmbeddingStore.open(store_path)
        safetensors.torch.save_file({"vectors": store.all_vectors()}, str(bad), metadata={
            "format": "signfuse-text-store", "format_version": "1", "texts": json.dumps(TEXTS[:2]),
            "identity": "{}", "info": "{}"})
    with pytest.raises(InputError, match=f"^{bad}: .*(store|safetensors)"):
        EmbeddingStore.open(bad)


def test_missing_store_file_says_how_to_build_it(tmp_path):
    with pytest.raises(InputError, match=f"^{tmp_path}/none.safetensors: embedding store not "
                                         "found; build it with `signfuse precompute-text"):
        EmbeddingStore.open(tmp_path / "none.safetensors", expected_identity=encoder_identity("tiny"))


def test_precompute_input_errors(tmp_path):
    with pytest.raises(InputError, match=f"^{tmp_path}/{DATASET}: description directory not found"):
        build(tmp_path)
    (tmp_path / DATASET).mkdir()
    with pytest.raises(InputError, match="no description text"):
        build(tmp_path)
    with pytest.raises(InputError, match="--batch_size"):
        build(tmp_path, batch_size=0)


# ----------------------------------------------------------------------------- command line

def parse(argv):
    parser = argparse.ArgumentParser(prog="signfuse")
    precompute_text.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_precompute_text_command_prints_one_json_line(tmp_path, capsys):
    write_descriptions(tmp_path)
    out = tmp_path / "s.safetensors"
    args = parse(["precompute-text", "--desc_dir", str(tmp_path), "--dataset", DATASET,
                  "--desc_encoder", "tiny", "--out", str(out), "--batch_size", "2",
                  "--desc_max_tokens", "16", "--device", "cpu", "--no_progress"])
    args.func(args)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert (summary["store"], summary["texts_total"], summary["newly_encoded"]) == (str(out), 4, 4)
    EmbeddingStore.open(out, expected_identity=encoder_identity("tiny", max_tokens=16))


def test_signfuse_cli_main(tmp_path, capsys, monkeypatch):
    from signfuse import cli
    write_descriptions(tmp_path)
    argv = ["precompute-text", "--desc_dir", str(tmp_path), "--dataset", DATASET,
            "--desc_encoder", "tiny", "--device", "cpu", "--no_progress"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["newly_encoded"] == 4
    assert cli.main(argv[:2] + [str(tmp_path / "nowhere")] + argv[3:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("signfuse: error: ") and "description directory not found" in err
    assert "\n" not in err
