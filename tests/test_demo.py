"""``signfuse demo``: what a new user sees first (the table, the gate plot, the commands)."""
import json
import re
from pathlib import Path

import pytest
import torch

from signfuse import cli
from signfuse.demo.run import COLUMNS, ROWS, demo_command, format_table, paired_word_accuracy, provenance, run_flags, settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def table_rows(text: str) -> dict:
    """{row name: [numbers]} from the printed table (thousands separators allowed)."""
    rows = {}
    for line in text.splitlines():
        for row in ROWS:
            if line.startswith(row + "  "):
                rows[row] = [float(cell.replace(",", "")) for cell in line[len(row):].split()]
    return rows


@pytest.mark.slow
def test_quick_demo_prints_the_comparison_and_saves_the_gate_plots(tmp_path, capsys):
    out, results = tmp_path / "demo", tmp_path / "results" / "demo-0.json"
    code = cli.main(["demo", "--quick", "--out", str(out), "--results", str(results)])
    text = capsys.readouterr().out
    assert code == 0, text

    header = next(line for line in text.splitlines() if line.startswith("model "))
    for column in COLUMNS:
        assert column in header
    rows = table_rows(text)
    assert list(rows) == list(ROWS)  # every row, in this order
    for row, values in rows.items():
        assert len(values) == len(COLUMNS), row
        bleu4, rouge, paired, train_s, params = values
        assert 0 <= bleu4 <= 100 and 0 <= rouge <= 100 and 0 <= paired <= 100, row
        assert train_s > 0 and params > 0, row
    pose, gated, gated_predicted, gated_off, cross, cross_off = (rows[r] for r in ROWS)
    assert gated[4] > pose[4] and cross[4] > pose[4]  # the fusions' parameters come on top of pose-only's
    # one trained model, evaluated two or three times
    assert gated_off[3:] == gated[3:] == gated_predicted[3:] and cross_off[3:] == cross[3:]

    for label in ("gate plot", "gate summary"):
        plot = Path(re.search(rf"^{label}: (.+)$", text, re.M).group(1))
        assert plot.is_file() and plot.read_bytes()[:8] == PNG_MAGIC and plot.parent == out
    for title in ("gated", "cross-attention"):
        assert re.search(rf"^mean gate of {title} on the test frames: exact \d\.\d{{3}} \(\d+ frames\)", text, re.M)

    # the commands that reproduce every number
    quick = settings(quick=True)
    assert (f"signfuse make-synthetic --out {out / 'data'} --samples {quick['samples']} --seed 0 "
            f"--n_signs {quick['n_signs']} --n_pairs {quick['n_pairs']} --split_fractions 0.6,0.1,0.3") in text
    for command in ("signfuse train ", "signfuse eval ", "signfuse plot-gates "):
        assert command in text
    for kind in ("gating", "cross_attn"):
        assert re.search(rf"signfuse train .*--use_descriptions --text_fusion_type {kind}", text)
    assert re.search(r"signfuse eval .*--eval_descriptions both", text)
    assert re.search(r"signfuse train .*--text_fusion_type gating .*--desc_distill_weight 1.0", text)
    assert re.search(r"signfuse eval .*--eval_descriptions all", text)
    assert re.search(r"signfuse make-synthetic .*--cue_amplitude 0.04", text)

    saved = json.loads((out / "demo_results.json").read_text())
    assert set(saved["rows"]) == set(ROWS)
    assert saved["rows"][ROWS[0]]["BLEU-4"] == pytest.approx(pose[0], abs=0.006)
    for key in ("gated", "cross_attn"):
        kinds = saved["gates"][key]
        assert set(kinds) <= {"exact", "interpolated", "nearest", "undescribed"} and "exact" in kinds
        frames = sum(k["frames"] for k in kinds.values())
        assert frames == sum(len(v) for v in _gates(out / key / "eval" / "test_gates.npz").values())
    for key in ("pose_only", "gated", "cross_attn"):
        assert (out / key / "best_checkpoint.pth").is_file()
        assert (out / key / "eval" / "test_tmp_pres.txt").is_file()
    # --results: the same figures with where they come from
    record = json.loads(results.read_text())
    assert record["rows"] == saved["rows"] and record["gates"] == saved["gates"]
    assert record["command"].startswith("signfuse demo --seed 0 --quick")
    assert record["torch"] == torch.__version__ and record["cpu"] and record["date"]
    assert "commit" in record and "uncommitted_changes" in record


def _gates(path) -> dict:
    from signfuse.inference.plotting import load_gates
    return {name: sample["gate"] for name, sample in load_gates(path).items()}


def test_demo_help_names_its_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--out", "--quick", "--seed", "--device", "--results"):
        assert flag in help_text


def test_quick_settings_are_smaller_than_full():
    quick, full = settings(quick=True), settings()
    assert quick["samples"] * quick["epochs"] < full["samples"] * full["epochs"]
    assert settings(samples=50)["samples"] == 50 and settings(samples=None) == full
    with pytest.raises(TypeError):
        settings(no_such_setting=1)


def test_paired_word_accuracy_counts_the_paired_words_of_the_references(tmp_path):
    pred, ref = tmp_path / "p.txt", tmp_path / "r.txt"
    pred.write_text("sample: a, prediction: happy go happy\nsample: b, prediction: sad\n")
    ref.write_text("sample: a, ground-truth: happy go sad\nsample: b, ground-truth: big i\n")
    # references hold happy, sad (a) and big (b); the predictions get happy only
    assert paired_word_accuracy(pred, ref, [["happy", "sad"], ["big", "small"]]) == pytest.approx(100 / 3)


def test_table_has_one_line_per_row_and_parses_back():
    values = {"BLEU-4": 12.345, "ROUGE-L": 50.0, "paired words %": 75.0, "train time (s)": 61.2,
              "parameters": 1234567}
    text = format_table({row: values for row in ROWS})
    rows = table_rows(text)
    assert list(rows) == list(ROWS)
    assert rows[ROWS[0]] == [12.35, 50.0, 75.0, 61.2, 1234567]


def test_the_printed_make_synthetic_command_writes_the_demos_data(tmp_path, capsys):
    """The demo's first reproduce command (its flags) gives the very files the demo trains on."""
    from signfuse.demo.synthetic import make_synthetic
    s = settings(samples=100)
    make_synthetic(tmp_path / "demo", samples=100, seed=3, n_signs=s["n_signs"], n_pairs=s["n_pairs"],
                   split=s["split"])
    code = cli.main(["make-synthetic", "--out", str(tmp_path / "cli"), "--samples", "100", "--seed", "3",
                     "--n_signs", str(s["n_signs"]), "--n_pairs", str(s["n_pairs"]),
                     "--split_fractions", ",".join(map(str, s["split"]))])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["splits"] == {"train": 16, "dev": 4, "test": 80}  # the demo's fractions
    files = sorted(p.relative_to(tmp_path / "demo") for p in (tmp_path / "demo").rglob("*") if p.is_file())
    assert len(files) > 100
    for f in files:
        assert (tmp_path / "cli" / f).read_bytes() == (tmp_path / "demo" / f).read_bytes(), f


def test_the_demo_trains_on_the_first_480_videos_and_tests_on_2400():
    """The full demo's split: the 480 training videos of the 800-video demo (the same files: each
    video's content depends only on its number), a dev split of 120 and a test split of 2,400;
    --quick keeps the 800-video demo's fractions."""
    from signfuse.demo.synthetic import _split_counts
    full, quick = settings(), settings(quick=True)
    assert _split_counts(full["samples"], full["split"]) == {"train": 480, "dev": 120, "test": 2400}
    assert _split_counts(800, quick["split"]) == {"train": 480, "dev": 80, "test": 240}
    assert _split_counts(quick["samples"], quick["split"]) == {"train": 144, "dev": 24, "test": 72}


def test_make_synthetic_refuses_a_split_that_is_not_three_fractions(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["make-synthetic", "--out", str(tmp_path), "--split_fractions", "0.8,0.2"])
    assert e.value.code == 2
    assert "expected three comma-separated fractions" in capsys.readouterr().err


def test_run_flags_differ_only_by_the_fusion(tmp_path):
    s = settings()
    pose = run_flags(tmp_path / "data", tmp_path / "run", s, 3)
    gated = run_flags(tmp_path / "data", tmp_path / "run", s, 3, True)
    cross = run_flags(tmp_path / "data", tmp_path / "run", s, 3, "cross_attn")
    fusion = ["--text_dropout_p", str(s["text_dropout_p"]), "--text_dropout_sample_p", str(s["text_dropout_sample_p"]),
              "--desc_off_loss"]
    assert gated == pose + ["--use_descriptions", "--text_fusion_type", "gating"] + fusion + ["1.0"]
    assert cross == pose + ["--use_descriptions", "--text_fusion_type", "cross_attn"] + fusion + ["2.0"]  # its own
    assert run_flags(tmp_path / "data", tmp_path / "run", s, 3, False) == pose
    assert "--desc_off_loss" not in run_flags(tmp_path / "data", tmp_path / "run", settings(desc_off_loss=0.0), 3, True)
    no_off = settings(cross_attn_desc_off_loss=0.0)
    assert "--desc_off_loss" not in run_flags(tmp_path / "data", tmp_path / "run", no_off, 3, "cross_attn")


def test_results_record_where_the_figures_come_from():
    record = provenance()
    assert record["torch"] == torch.__version__ and record["cpu_count"] >= 1
    assert record["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", record["commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["date"])
    assert demo_command(False, 2, "cpu", 2, {"samples": None, "epochs": 5}) == "signfuse demo --seed 2 --epochs 5 --workers 2"
    assert demo_command(True, 0, "cuda", 1, {}) == "signfuse demo --seed 0 --quick --device cuda --workers 1"


def test_readme_table_from_results_files(tmp_path, capsys):
    rows = {row: {"BLEU-4": 10.0 + i} for i, row in enumerate(ROWS)}
    gates = {"gated": {"exact": {"mean": 0.9}, "undescribed": {"mean": 0.05}}}
    for seed in (1, 0):
        record = {"seed": seed, "rows": rows, "gates": gates, "times": {"total": 200.4 + seed}}
        (tmp_path / f"demo-{seed}.json").write_text(json.dumps(record))
    assert cli.main(["demo", "--table", str(tmp_path / "demo-1.json"), str(tmp_path / "demo-0.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| seed | pose-only | gated |")
    assert lines[2] == ("| 0 | 10.00 | 11.00 (+1.0) | 12.00 (+2.0) | 13.00 (+3.0) | 14.00 (+4.0) | 15.00 (+5.0) "
                        "| 0.900 / 0.050 | 200 s |")
    assert lines[3].startswith("| 1 | ")
    # a results file from before the predictor (no predicted row): "-" in that column
    del rows["gated (descriptions predicted)"]
    (tmp_path / "demo-0.json").write_text(json.dumps({"seed": 0, "rows": rows, "gates": gates, "times": {"total": 200.4}}))
    assert cli.main(["demo", "--table", str(tmp_path / "demo-0.json")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[2].startswith("| 0 | 10.00 | 11.00 (+1.0) | - | 13.00 (+3.0) |")
