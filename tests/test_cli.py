"""The command line as a user meets it: help, exit codes, one-line errors, score."""
import json
import math
import re
import subprocess
import sys

import pytest

from conftest import REPO, write_pickle
from signfuse import cli

UNISIGN_FLAGS = ["--batch-size", "--gradient-accumulation-steps", "--gradient-clipping", "--epochs",
                 "--finetune", "--opt", "--opt-eps", "--weight-decay", "--lr", "--min-lr", "--warmup-epochs",
                 "--sched", "--output_dir", "--seed", "--eval", "--num_workers", "--max_length", "--dataset",
                 "--task", "--label_smoothing", "--rgb_support", "--hidden_dim", "--dtype", "--zero_stage",
                 "--offload", "--local_rank", "--local-rank"]
DESCRIPTION_FLAGS = ["--use_descriptions", "--text_fusion_type", "--text_dropout_p", "--text_dropout_sample_p",
                     "--desc_dir", "--mt5_model", "--desc_encoder", "--desc_max_tokens", "--desc_strict",
                     "--max_gap", "--desc_alignment", "--eval_descriptions"]
COMMANDS = ["train", "eval", "score", "predict", "precompute-text", "demo", "make-synthetic",
            "describe-stats", "check-data", "plot-gates"]


def run_main(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fine_tuning_py_accepts_every_unisign_and_description_flag():
    help_text = subprocess.run([sys.executable, str(REPO / "fine_tuning.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    for flag in UNISIGN_FLAGS + DESCRIPTION_FLAGS + ["--device", "--data_root", "--label_dir", "--pose_dir"]:
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,]|$)", help_text), flag


def test_defaults_are_unisigns():
    args = cli.run_parser().parse_args([])
    assert (args.batch_size, args.gradient_accumulation_steps, args.gradient_clipping, args.epochs) == (16, 8, 1.0, 20)
    assert (args.opt, args.opt_eps, args.weight_decay, args.lr, args.min_lr) == ("adamw", 1e-9, 1e-4, 1e-3, 1e-8)
    assert (args.warmup_epochs, args.sched, args.seed, args.num_workers, args.max_length) == (0, "cosine", 42, 8, 256)
    assert (args.dataset, args.task, args.label_smoothing, args.dtype, args.zero_stage) == ("CSL_Daily", "SLT", 0.2, "bf16", 2)
    assert args.mt5_model == "./pretrained_weight/mt5-base" and args.desc_dir is None  # <data_root>/description
    assert args.sync_bn is True and cli.run_parser().parse_args(["--no-sync_bn"]).sync_bn is False
    assert (args.text_dropout_p, args.text_dropout_sample_p, args.desc_max_tokens) == (0.1, 0.0, 64)
    assert (args.use_descriptions, args.text_fusion_type, args.desc_alignment, args.eval_descriptions) == \
        (False, "gating", "interpolate", "on")
    # the deepspeed launcher passes --local_rank=N
    assert cli.run_parser().parse_args(["--local_rank=3"]).local_rank == 3


def test_every_command_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    top = capsys.readouterr().out
    for command in COMMANDS:
        assert command in top
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        assert "usage: signfuse " + command in capsys.readouterr().out


def test_missing_label_file_is_one_line_naming_it(tmp_path, capsys):
    code, out, err = run_main(["eval", "--mt5_model", "tiny", "--device", "cpu", "--dataset", "CSL_Daily",
                               "--data_root", str(tmp_path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"signfuse: error: {tmp_path / 'data' / 'CSL_Daily'}")
    assert "Traceback" not in err


def test_label_file_of_the_wrong_type(tmp_path, capsys):
    labels = write_pickle(tmp_path / "labels" / "labels.dev", ["not", "a", "dict"], compress=True)
    (tmp_path / "poses").mkdir()
    code, out, err = run_main(["eval", "--mt5_model", "tiny", "--device", "cpu", "--label_dir", str(labels.parent),
                               "--pose_dir", str(tmp_path / "poses")], capsys)
    assert code == 2
    assert err.startswith(f"signfuse: error: {labels}: label file of the wrong type")
    assert len(err.strip().splitlines()) == 1


def test_missing_mt5_directory(tmp_path, capsys):
    from conftest import make_label
    write_pickle(tmp_path / "l" / "labels.dev", {"a": make_label("a")}, compress=True)
    write_pickle(tmp_path / "l" / "labels.test", {"a": make_label("a")}, compress=True)
    (tmp_path / "p").mkdir()
    code, out, err = run_main(["eval", "--mt5_model", str(tmp_path / "nope"), "--device", "cpu",
                               "--label_dir", str(tmp_path / "l"), "--pose_dir", str(tmp_path / "p")], capsys)
    assert code == 2
    assert err.startswith(f"signfuse: error: {tmp_path / 'nope'}") and len(err.strip().splitlines()) == 1


def test_score_prints_json_on_its_last_line(tmp_path, capsys):
    from signfuse.metrics import write_results
    pred, ref = write_results(tmp_path, "test", ["s1", "s2"], ["他 今 年 四 岁 。", "你 好"],
                              ["他 今 年 四 岁 。", "你 们 好"])
    code, out, err = run_main(["score", "--pred", str(pred), "--ref", str(ref), "--dataset", "CSL_Daily"], capsys)
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) >= {"bleu1", "bleu2", "bleu3", "bleu4", "rouge"}
    # 8 hypothesis characters, all 8 in the references (precision 1); 9 reference characters:
    # brevity penalty exp(1 - 9/8)
    assert result["bleu1"] == pytest.approx(100 * math.exp(1 - 9 / 8), abs=1e-9)
    code, out, err = run_main(["score", "--pred", str(pred), "--ref", str(tmp_path / "missing.txt")], capsys)
    assert code == 2 and str(tmp_path / "missing.txt") in err


def test_cslr_score_keys(tmp_path, capsys):
    from signfuse.metrics import write_results
    pred, ref = write_results(tmp_path, "dev", ["a"], ["x y z"], ["x y w z"])
    code, out, _ = run_main(["score", "--pred", str(pred), "--ref", str(ref), "--task", "CSLR",
                             "--dataset", "CSL_Daily"], capsys)
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and set(result) == {"wer", "del_rate", "ins_rate", "sub_rate"}
    assert result["wer"] == pytest.approx(25.0) and result["del_rate"] == pytest.approx(25.0)


def test_score_keeps_the_trailing_spaces_of_word_level_texts(tmp_path, capsys):
    """OpenASL-like references ending in '. ': scored as written, as Uni-Sign scores them."""
    from rouge import Rouge
    hyps, refs = ["i went home.", "that is great"], ["i went home. ", "that is really great. "]
    pred = tmp_path / "dev_tmp_pres.txt"
    ref = tmp_path / "dev_tmp_refs.txt"
    pred.write_text("".join(f"sample: s{i}, prediction: {t}\n" for i, t in enumerate(hyps)), encoding="utf-8")
    ref.write_text("".join(f"sample: s{i}, ground-truth: {t}\n" for i, t in enumerate(refs)), encoding="utf-8")
    code, out, _ = run_main(["score", "--pred", str(pred), "--ref", str(ref), "--dataset", "OpenASL"], capsys)
    assert code == 0
    rouge = json.loads(out.strip().splitlines()[-1])["rouge"]
    assert rouge == pytest.approx(Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"] * 100, rel=1e-12)
    stripped = Rouge().get_scores(hyps, [t.strip() for t in refs], avg=True)["rouge-l"]["f"] * 100
    assert stripped - rouge > 5  # 92.86 stripped, 80.36 as written
