"""``signfuse describe --describer vlm`` end to end on a tiny image-text-to-text model built in
code (LLaVA: a 1-layer CLIP vision tower and a 1-layer Llama, random weights, a word-level
tokenizer), saved to a local directory and loaded back through AutoModelForImageTextToText /
AutoProcessor: video -> segments -> JSON that the loader accepts."""
import argparse
import json

import pytest
import torch

from signfuse.data.descriptions import DescriptionLoader
from signfuse.data.pose import load_pose
from signfuse.demo.synthetic import make_synthetic
from signfuse.demo.synthetic_video import write_videos
from signfuse.commands import describe as describe_command
from signfuse.describe import vlm
from signfuse.errors import InputError

WORDS = ("<pad> <s> </s> <unk> <image> user assistant : right left hand hands moves holds up down open "
         "closed mouth face chest fingers palm bent eyebrows raised head nods still fast slowly . ,").split()
CHAT = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
        "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant : "
        "{% endif %}")


def build_tiny_vlm(directory, seed: int = 0):
    """Save a tiny random LLaVA and its processor under ``directory``. Large initial weights and
    an image normalisation fitted to the dark synthetic videos make its greedy words depend on
    the image (seed 1: different words for different segments of the dev video)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)
    vocab = {w: i for i, w in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>", additional_special_tokens=["<image>"])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                image_mean=[0.18] * 3, image_std=[0.04] * 3)  # dark, low-contrast videos
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, chat_template=CHAT,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, initializer_range=0.5, initializer_factor=5.0)
    text = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                       initializer_range=0.5, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    make_synthetic(root, samples=5, seed=4, trim_fraction=0.5, split=(0.6, 0.2, 0.2))  # train 0-2, dev 3, test 4
    write_videos(root, splits=("train", "dev"))
    model = build_tiny_vlm(root / "tiny_vlm", seed=1)
    (root / "dataset/Synthetic/pose_format/synth_00001.pkl").unlink()  # a train sample without its pose file
    return root, model


def run(setup, out, *flags, split="dev"):
    root, model = setup
    parser = argparse.ArgumentParser()
    describe_command.register(parser.add_subparsers())
    args = parser.parse_args(["describe", "--describer", "vlm", "--dataset", "Synthetic", "--split", split,
                              "--data_root", str(root), "--desc_dir", str(out), "--vlm_model", str(model),
                              "--segment_frames", "16", "--vlm_image_size", "64", "--max_new_tokens", "6",
                              "--device", "cpu", *map(str, flags)])
    return vlm.describe_dataset_vlm(args, progress=False)


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def test_video_to_json_that_the_loader_accepts(setup, tmp_path):
    root, model = setup
    summary = run(setup, tmp_path)
    assert summary.samples == 1 and summary.written == 1 and not summary.skipped
    path = tmp_path / "Synthetic/synth_00003.json"
    content = json.loads(path.read_text("utf-8"))
    pose = load_pose(root / "dataset/Synthetic/pose_format/synth_00003.pkl")
    segments = content["segments"]
    assert [(s["start"], s["end"]) for s in segments] == \
        [(s, min(s + 16, pose.end)) for s in range(pose.start, pose.end, 16)]
    assert all(len(s["attributes"]["frames"]) == min(4, s["end"] - s["start"]) for s in segments)
    assert all(set(s["text"].split()) <= set(WORDS) for s in segments)
    assert len({s["text"] for s in segments}) > 1  # the words depend on the frames
    generator = content["generator"]
    assert generator["name"] == "signfuse-vlm" and generator["parameters"]["model"] == "tiny_vlm"
    assert "Do not say what is signed" in generator["parameters"]["prompt"] and content["video_sha256"]
    descriptions, _ = DescriptionLoader(tmp_path / "Synthetic", strict=True).load("synth_00003")
    described = [s for s in segments if s["text"]]
    assert set(descriptions) == {f for s in described for f in range(s["start"], s["end"])}
    # resumable: a rerun finds the file up to date
    again = run(setup, tmp_path)
    assert (again.written, again.up_to_date) == (0, 1)


def test_batch_sizes_and_out_of_memory_back_off_give_the_same_texts(setup, tmp_path, monkeypatch):
    run(setup, tmp_path / "one", "--vlm_batch_size", 1)
    run(setup, tmp_path / "four", "--vlm_batch_size", 4)
    one, four = files(tmp_path / "one/Synthetic"), files(tmp_path / "four/Synthetic")
    assert one and one == four
    # with pose hints the prompts differ in length (left padding): still the same texts
    run(setup, tmp_path / "hints1", "--vlm_batch_size", 1, "--pose_hints", split="train")
    run(setup, tmp_path / "hints8", "--vlm_batch_size", 8, "--pose_hints", split="train")
    hinted = files(tmp_path / "hints1/Synthetic")
    assert len(hinted) == 2 and hinted == files(tmp_path / "hints8/Synthetic")
    real = vlm.VLMDescriber.generate
    calls = []

    def small_memory(self, prompts, images):  # a GPU that fits 2 segments
        calls.append(len(prompts))
        if len(prompts) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, prompts, images)

    monkeypatch.setattr(vlm.VLMDescriber, "generate", small_memory)
    run(setup, tmp_path / "oom", "--vlm_batch_size", 8)
    segments = sum(len(json.loads(v)["segments"]) for v in one.values())
    assert calls[:2] == [min(8, segments), min(4, segments)]  # 8 and 4 fail, 2 at a time from then on
    assert max(calls[2:]) <= 2 and sum(calls[2:]) == segments
    assert files(tmp_path / "oom/Synthetic") == one


def test_shards_split_the_samples_and_bad_samples_are_named(setup, tmp_path):
    whole = run(setup, tmp_path / "whole", split="train")
    assert (whole.samples, whole.written) == (3, 2)
    assert len(whole.skipped) == 1 and whole.skipped[0].startswith("synth_00001: ") and "file not found" in whole.skipped[0]
    parts = [run(setup, tmp_path / "shards", "--shard", f"{k}/2", split="train") for k in (0, 1)]
    assert [(p.samples, p.written, len(p.skipped)) for p in parts] == [(2, 2, 0), (1, 0, 1)]
    assert files(tmp_path / "shards/Synthetic") == files(tmp_path / "whole/Synthetic")
    with pytest.raises(InputError, match="--shard 2/2"):
        run(setup, tmp_path, "--shard", "2/2")


def test_pose_hints_go_into_the_prompt_and_a_missing_model_is_an_input_error(setup, tmp_path):
    root, model = setup
    describer = vlm.VLMDescriber(model, "en", 16, 4, 64, 6, rules=None, device="cpu")
    from signfuse.describe.rules import RulesDescriber, rules_settings
    rules = RulesDescriber(rules_settings("Synthetic"))
    hinted = vlm.VLMDescriber(model, "en", 16, 4, 64, 6, rules=rules, device="cpu")
    pose = load_pose(root / "dataset/Synthetic/pose_format/synth_00003.pkl")
    video = root / "dataset/Synthetic/rgb_format/dev/synth_00003.mp4"
    plain, hints = describer.requests(pose, video), hinted.requests(pose, video)
    first_rule = rules.describe_pose(pose)[0]["text"]
    assert first_rule not in plain[0][3] and f"Pose measurements of these frames: {first_rule}" in hints[0][3]
    assert hints[0][2]["pose_hints"].startswith(first_rule)
    assert hinted.generator()["parameters"]["pose_hints"]["name"] == "signfuse-rules"
    with pytest.raises(InputError, match="--vlm_model"):
        vlm.VLMDescriber(tmp_path, "en")
