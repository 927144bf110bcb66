"""``signfuse demo``: what a new user sees first (the table, the gate plot, the commands)."""
import json
import re
from pathlib import Path

import pytest

from signfuse import cli
from signfuse.demo import COLUMNS, ROWS, format_table, paired_word_accuracy, settings

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
def test_quick_demo_prints_the_comparison_and_saves_the_gate_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    code = cli.main(["demo", "--quick", "--out", str(out)])
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
    pose, gated, gated_off = (rows[r] for r in ROWS)
    assert gated[4] > pose[4]  # the fusion's parameters come on top of the pose-only model's
    assert gated_off[3:] == gated[3:]  # the same trained model, evaluated without descriptions

    plot = Path(re.search(r"^gate plot: (.+)$", text, re.M).group(1))
    assert plot.is_file() and plot.read_bytes()[:8] == PNG_MAGIC
    assert plot.parent == out

    # the commands that reproduce every number
    quick = settings(quick=True)
    assert (f"signfuse make-synthetic --out {out / 'data'} --samples {quick['samples']} --seed 0 "
            f"--n_signs {quick['n_signs']} --n_pairs {quick['n_pairs']} --split 0.6,0.1,0.3") in text
    for command in ("signfuse train ", "signfuse eval ", "signfuse plot-gates "):
        assert command in text
    assert re.search(r"signfuse train .*--use_descriptions --text_fusion_type gating", text)
    assert re.search(r"signfuse eval .*--eval_descriptions both", text)

    saved = json.loads((out / "demo_results.json").read_text())
    assert set(saved["rows"]) == set(ROWS)
    assert saved["rows"][ROWS[0]]["BLEU-4"] == pytest.approx(pose[0], abs=0.006)
    for key in ("pose_only", "gated"):
        assert (out / key / "best_checkpoint.pth").is_file()
        assert (out / key / "eval" / "test_tmp_pres.txt").is_file()


def test_demo_help_names_its_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["demo", "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--out", "--quick", "--seed", "--device"):
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
    from signfuse.data.synthetic import make_synthetic
    s = settings(samples=30)
    make_synthetic(tmp_path / "demo", samples=30, seed=3, n_signs=s["n_signs"], n_pairs=s["n_pairs"],
                   split=s["split"])
    code = cli.main(["make-synthetic", "--out", str(tmp_path / "cli"), "--samples", "30", "--seed", "3",
                     "--n_signs", str(s["n_signs"]), "--n_pairs", str(s["n_pairs"]),
                     "--split", ",".join(map(str, s["split"]))])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["splits"] == {"train": 18, "dev": 3, "test": 9}
    files = sorted(p.relative_to(tmp_path / "demo") for p in (tmp_path / "demo").rglob("*") if p.is_file())
    assert len(files) > 30
    for f in files:
        assert (tmp_path / "cli" / f).read_bytes() == (tmp_path / "demo" / f).read_bytes(), f


def test_make_synthetic_refuses_a_split_that_is_not_three_fractions(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["make-synthetic", "--out", str(tmp_path), "--split", "0.8,0.2"])
    assert e.value.code == 2
    assert "expected three comma-separated fractions" in capsys.readouterr().err
