"""Pre-training on corpora in CSL-News's JSON format (``pre_training.py``, ``signfuse pretrain``):
Uni-Sign's split, the label list (packed, checked), the pose files (no start/end window, bad ones
skipped), the character-split result files against hand-written text (batch sizes 1 and 3, 1 and
2 processes), and the stage 1 -> stage 2 -> stage 3 chain on CPU.

The corpus (tests/news_corpus.py): 400 entries linking 12 synthetic samples, so that Uni-Sign's
split holds out the last 4 (train [0, 396)); runs use --max_samples and the tiny mT5.
"""
import json

import numpy as np
import pytest
import torch

from conftest import REPO, launch, make_pose, write_pickle
from news_corpus import make_news_corpus
from signfuse import cli
from signfuse.config import ModelConfig
from signfuse.data import paths
from signfuse.data.news import NewsDataset, NewsLabels, PackedStrings, split_range
from signfuse.errors import InputError
from signfuse.models.rgb_branch import RGB_PREFIXES
from signfuse.models.uni_sign import Uni_Sign
from signfuse.training.loop import drop_old_checkpoints

# The held-out references as Uni-Sign's evaluation writes them for CSL_News: '，' -> ',' and
# '？' -> '?', spaces removed, then the characters joined by spaces (written by hand).
HELDOUT_REFS = ["新 闻 , 报 道 ? 今 天", "天 气 很 好", "a b , c", "他 说 ?"]
HELDOUT_NAMES = ["clip_0396.mp4", "clip_0397.mp4", "clip_0398.mp4", "clip_0399.mp4"]


def tiny(root, out, *extra) -> list:
    """A tiny pre-training run: 6 training entries in micro-batches of 2 (3 per epoch)."""
    return ["--device", "cpu", "--data_root", str(root), "--mt5_model", "tiny", "--batch-size", "2",
            "--gradient-accumulation-steps", "1", "--epochs", "1", "--max_length", "16", "--num_workers", "0",
            "--max_samples", "6", "--max_new_tokens", "8", "--num_beams", "2", "--seed", "3",
            "--output_dir", str(out), *[str(a) for a in extra]]


def pre_training(argv) -> None:
    assert cli.pre_training_main([str(a) for a in argv]) == 0


def lines(path) -> list:
    return path.read_text(encoding="utf-8").splitlines()


def texts(path) -> list:
    """The texts of a result file ('sample: <name>, prediction: <text>' lines)."""
    return [line.split(": ", 2)[2] if line.count(": ") >= 2 else "" for line in lines(path)]


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return make_news_corpus(tmp_path_factory.mktemp("news"), videos=True)


# ----------------------------------------------------------------------------- split and labels

def test_split_is_unisigns_in_file_order():
    assert split_range(400, "train") == (0, 396) and split_range(400, "dev") == split_range(400, "test") == (396, 400)
    assert split_range(722711, "train") == (0, 715483)  # int(722711 * 0.99) = int(715483.89)
    assert split_range(722711, "test") == (715483, 722711)
    assert split_range(1, "train") == (0, 0) and split_range(1, "dev") == (0, 1)
    with pytest.raises(InputError, match="train, dev and test"):
        split_range(10, "val")


def test_packed_strings_round_trip():
    strings = ["新闻，报道？", "", "a b", "é" * 300]
    packed = PackedStrings(strings)
    assert [packed[i] for i in range(len(packed))] == strings
    assert packed.data.dtype == np.uint8 and packed.offsets.tolist()[-1] == len("".join(strings).encode())


def test_label_list_is_read_in_file_order(tmp_path):
    entries = [{"video": f"v{i}.mp4", "pose": f"p{i}.pkl", "text": f"文本 {i}", "extra": 1} for i in range(5)]
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    labels = NewsLabels(path)
    assert len(labels) == 5 and labels.entry(3) == {"video": "v3.mp4", "pose": "p3.pkl", "text": "文本 3"}


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a JSON label list"),
    ('{"video": "a.mp4"}', "holds a dict, expected a list"),
    ("[]", "the label list is empty"),
    ('[{"video": "a.mp4", "pose": "a.pkl", "text": "x"}, {"video": "b.mp4", "text": "y"}]', "entry 1 has no 'pose'"),
    ('[{"video": "a.mp4", "pose": "a.pkl", "text": 3}]', "entry 0: 'text' is an int, expected a str"),
    ('[{"video": "", "pose": "a.pkl", "text": "x"}]', "entry 0: 'video' is empty"),
    ('["a.mp4"]', "entry 0 is a str"),
])
def test_bad_label_file_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / "CSL_News_Labels.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as e:
        NewsLabels(path)
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value) and "\n" not in str(e.value)


def test_bad_label_file_stops_the_command(tmp_path, capsys):
    path = tmp_path / "labels.json"
    path.write_bytes(b"\xff\xfe[]")
    code = cli.main(["pretrain", "--label_file", str(path), "--pose_dir", str(tmp_path), "--device", "cpu",
                     "--mt5_model", "tiny", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"signfuse: error: {path}: not a UTF-8 JSON label list") and "\n" not in err


# ----------------------------------------------------------------------------- samples

def test_pose_file_frames_ignore_start_end_and_bad_files_are_skipped(tmp_path):
    labels = [{"video": "a.mp4", "pose": "a.pkl", "text": "x"}, {"video": "b.mp4", "pose": "b.pkl", "text": "y"},
              {"video": "c.mp4", "pose": "c.pkl", "text": "z"}]
    (tmp_path / "l.json").write_text(json.dumps(labels))
    write_pickle(tmp_path / "a.pkl", make_pose(30, start=10, end=20))  # Uni-Sign's news loader ignores start/end
    write_pickle(tmp_path / "b.pkl", make_pose(300))
    news = NewsLabels(tmp_path / "l.json")
    ds = NewsDataset(news, tmp_path, "CSL_News", "train", max_length=32, train=True, seed=1)
    assert len(ds) == 2 and ds.names() == ["a.mp4", "b.mp4"]  # int(3 * 0.99) = 2 training entries
    assert ds[0]["frame_indices"].tolist() == list(range(30)) and ds[0]["target"] == "x"
    drawn = ds[1]["frame_indices"]
    assert len(drawn) == 32 and np.all(np.diff(drawn) > 0) and drawn.max() < 300  # sorted distinct random frames
    heldout = NewsDataset(news, tmp_path, "CSL_News", "test", max_length=32)
    assert heldout.names() == ["c.mp4"] and set(heldout[0]) == {"name", "error"}  # skipped, never replaced
    assert heldout[0]["name"] == "c.mp4" and str(tmp_path / "c.pkl") in heldout[0]["error"]
    evenly = NewsDataset(news, tmp_path, "CSL_News", "train", max_length=4)[1]["frame_indices"]
    assert evenly.tolist() == [0, 100, 199, 299]  # evaluation: evenly spaced, deterministic


# ----------------------------------------------------------------------------- result files

@pytest.mark.parametrize("batch", [1, 3])
def test_heldout_files_are_character_split_as_unisign_writes_them(corpus, tmp_path, monkeypatch, batch):
    # predictions as the model decodes them: Uni-Sign removes spaces and newlines, then splits characters
    decoded = {"clip_0396.mp4": "新闻 , 报道?\n今天", "clip_0397.mp4": "天 气很好", "clip_0398.mp4": "ab,c",
               "clip_0399.mp4": "他说 ？"}
    monkeypatch.setattr(Uni_Sign, "generate", lambda self, b, **kw: [decoded[n] for n in b["names"]])
    out = tmp_path / f"b{batch}"
    pre_training([*tiny(corpus["root"], out), "--eval", "--batch-size", batch])
    assert texts(out / "test_tmp_pres.txt") == ["新 闻 , 报 道 ? 今 天", "天 气 很 好", "a b , c", "他 说 ？"]
    assert texts(out / "test_tmp_refs.txt") == HELDOUT_REFS
    assert [line.split(",")[0] for line in lines(out / "test_tmp_refs.txt")] == [f"sample: {n}" for n in HELDOUT_NAMES]
    assert not (out / "dev_tmp_pres.txt").exists()  # dev holds the same entries: evaluated once


@pytest.fixture(scope="module")
def stage1(corpus, tmp_path_factory):
    """Stage 1: pose only, 2 epochs (the first stopped by --max_steps, then resumed), --quick_break 2,
    --keep_checkpoints 1."""
    out = tmp_path_factory.mktemp("stage1") / "out"
    flags = tiny(corpus["root"], out, "--epochs", "2", "--quick_break", "2", "--keep_checkpoints", "1")
    pre_training([*flags, "--max_steps", "3"])
    assert (out / "checkpoint_0.pth").exists()
    pre_training([*flags, "--resume", "auto"])
    return out


@pytest.mark.slow
def test_heldout_evaluation_with_two_processes_equals_one(corpus, stage1, tmp_path):
    ckpt = tmp_path / "unisign.pth"  # Uni-Sign's format: the weights alone, no recorded settings
    torch.save({"model": weights(stage1 / "best_checkpoint.pth")}, ckpt)
    one, two = tmp_path / "one", tmp_path / "two"
    pre_training([*tiny(corpus["root"], one), "--eval", "--finetune", ckpt, "--batch-size", "3"])
    launch("torchrun", 2, REPO / "pre_training.py",
           [*tiny(corpus["root"], two), "--eval", "--finetune", ckpt, "--batch-size", "3"])
    for name in ("test_tmp_pres.txt", "test_tmp_refs.txt"):
        assert lines(two / name) == lines(one / name)
    assert texts(two / "test_tmp_refs.txt") == HELDOUT_REFS
    for text in texts(two / "test_tmp_pres.txt"):  # one character per token, as Uni-Sign splits them
        assert all(len(token) == 1 for token in text.split(" ")) if text else True


# ----------------------------------------------------------------------------- stage 1 -> 2 -> 3

def test_stage1_writes_quick_break_best_log_and_resumes(stage1):
    log = [json.loads(line) for line in lines(stage1 / "log.txt")]
    assert [e["epoch"] for e in log] == [0, 1] and [e["step"] for e in log] == [3, 6]
    assert all("dev_bleu4" in e and e["dev_samples"] == 4 for e in log)
    assert "resuming from " in (stage1 / "run.txt").read_text()
    assert sorted(p.name for p in stage1.glob("checkpoint_*.pth")) == ["checkpoint_1.pth"]  # --keep_checkpoints 1
    quick, last = torch.load(stage1 / "checkpoint.pth", weights_only=True), weights(stage1 / "checkpoint_1.pth")
    # --quick_break 2 with 3 micro-batches: checkpoint.pth holds epoch 1 after 2 of its 3 steps
    assert quick["epoch"] == 1 and any(not torch.equal(quick["model"][k], v) for k, v in last.items())
    assert (stage1 / "best_checkpoint.pth").exists() and (stage1 / "last.pth").exists()
    assert not any(k.startswith(RGB_PREFIXES) for k in weights(stage1 / "best_checkpoint.pth"))


@pytest.fixture(scope="module")
def stage2(corpus, stage1, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2") / "out"
    pre_training([*tiny(corpus["root"], out, "--epochs", "2", "--finetune", stage1 / "best_checkpoint.pth",
                        "--rgb_support", "--rgb_gate_init", "small", "--use_descriptions", "--describe", "rules")])
    return out


def test_stage2_names_the_added_rgb_keys_and_trains_them(stage1, stage2):
    loaded = [l for l in lines(stage2 / "run.txt") if l.startswith(f"loaded {stage1 / 'best_checkpoint.pth'}")]
    assert len(loaded) == 1 and "missing keys: none" in loaded[0] and "unexpected keys: none" in loaded[0]
    assert ("newly initialised RGB-branch weights (pose-only checkpoint): 336 tensors: rgb_support_backbone.* (309), "
            "rgb_proj.* (2), fusion_pose_rgb_linear.* (2), fusion_pose_rgb_DA.* (19), fusion_gate.* (4)") in loaded[0]
    first, second = weights(stage2 / "checkpoint_0.pth"), weights(stage2 / "checkpoint_1.pth")
    for key in ("rgb_proj.weight", "fusion_gate.2.weight", "fusion_pose_rgb_DA.0.weight"):
        if key in first:
            assert not torch.equal(first[key], second[key]), key  # the RGB branch learns (small gate)
    moved = [k for k in first if k.startswith(RGB_PREFIXES) and first[k].is_floating_point()
             and not torch.equal(first[k], second[k])]
    assert any(k.startswith("rgb_support_backbone.") for k in moved) and any(k.startswith("fusion_gate.") for k in moved)
    assert any(k.startswith("text_fusion.") for k in second)  # descriptions in pre-training too


def test_stage2_refuses_a_misshaped_key(corpus, stage1, tmp_path, capsys):
    sd = weights(stage1 / "best_checkpoint.pth")
    key = next(k for k in sd if k.startswith("pose_proj") and k.endswith("weight"))
    sd[key] = sd[key][:-1]
    torch.save({"model": sd}, tmp_path / "bad.pth")
    code = cli.pre_training_main(tiny(corpus["root"], tmp_path / "out", "--finetune", tmp_path / "bad.pth",
                                      "--rgb_support"))
    err = capsys.readouterr().err
    assert code == 2 and "other shapes than this model" in err and key in err


def test_stage3_fine_tunes_from_stage2_strictly(corpus, stage2, tmp_path):
    out = tmp_path / "stage3"
    argv = ["--device", "cpu", "--dataset", "Synthetic", "--data_root", corpus["root"] / "synthetic",
            "--mt5_model", "tiny", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--epochs", "1",
            "--max_length", "16", "--num_workers", "0", "--max_samples", "4", "--max_new_tokens", "8",
            "--num_beams", "2", "--output_dir", out, "--finetune", stage2 / "best_checkpoint.pth",
            "--rgb_support", "--use_descriptions", "--describe", "rules"]
    assert cli.fine_tuning_main([str(a) for a in argv]) == 0
    loaded = [l for l in lines(out / "run.txt") if l.startswith("loaded ")]
    assert len(loaded) == 1
    assert loaded[0] == (f"loaded {stage2 / 'best_checkpoint.pth'}: {len(weights(stage2 / 'best_checkpoint.pth'))} "
                         "weights; missing keys: none; unexpected keys: none")
    assert json.loads(lines(out / "log.txt")[0])["train_samples"] == 4


def test_describe_writes_one_file_per_entry_of_a_json_corpus(corpus, tmp_path):
    assert cli.main(["describe", "--dataset", "CSL_News", "--data_root", str(corpus["root"]),
                     "--desc_dir", str(tmp_path), "--workers", "1"]) == 0
    files = sorted(p.name for p in (tmp_path / "CSL_News").iterdir())
    assert files == [f"clip_{i:04d}.json" for i in range(400)]
    # entries 0 and 12 link the same pose file: the same descriptions
    assert (tmp_path / "CSL_News" / "clip_0000.json").read_bytes() == (tmp_path / "CSL_News" / "clip_0012.json").read_bytes()


def test_corpora_prompts_and_default_paths(tmp_path):
    assert ModelConfig(dataset="CSL_News").prompt == "Translate sign language video to Chinese: "
    assert ModelConfig(dataset="YouTube_ASL").prompt == "Translate sign language video to English: "
    label = tmp_path / "data" / "YouTube_ASL" / "YouTube_ASL_Labels.json"
    label.parent.mkdir(parents=True)
    label.write_text("[]")
    assert paths.label_path("YouTube_ASL", "dev", tmp_path) == label
    (tmp_path / "dataset" / "YouTube_ASL" / "rgb_format").mkdir(parents=True)
    assert paths.rgb_dir("YouTube_ASL", "test", tmp_path) == tmp_path / "dataset" / "YouTube_ASL" / "rgb_format"


def test_keep_checkpoints_drops_only_older_epoch_checkpoints(tmp_path):
    names = [f"checkpoint_{e}.pth" for e in range(5)] + ["checkpoint.pth", "best_checkpoint.pth", "last.pth"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    drop_old_checkpoints(tmp_path, epoch=4, keep=0)  # 0: keep all (Uni-Sign)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    drop_old_checkpoints(tmp_path, epoch=4, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["checkpoint_3.pth", "checkpoint_4.pth", "checkpoint.pth", "best_checkpoint.pth", "last.pth"])
