"""Gate values saved at evaluation and `signfuse plot-gates` (signfuse.inference.plotting).

From a real `signfuse eval --use_descriptions` run on a tiny synthetic dataset to the PNG,
plus the gate file's format and every way the command can be given a bad input (exit 2,
one line naming the file).
"""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import one_error_line
from signfuse.inference import plotting
from signfuse.cli import main
from signfuse.config import ModelConfig
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.data.descriptions import Describer
from signfuse.demo.synthetic import make_synthetic
from signfuse.models.uni_sign import attach_text_source, build_model
from signfuse.training.engine import save_gates

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def gate_file(tmp_path) -> Path:
    """Two hand-made samples, as evaluation writes them."""
    gates = {
        "clip_b": {"gate": np.array([0.2, 0.4, 0.9], np.float32),
                   "has_description": np.array([0, 1, 0], np.float32),
                   "frame_indices": np.array([3, 7, 11], np.int64)},
        "clip_a": {"gate": np.linspace(0, 1, 6, dtype=np.float32),
                   "has_description": np.array([1, 0, 0, 1, 0, 0], np.float32),
                   "frame_indices": np.arange(6, dtype=np.int64) * 2},
    }
    path = tmp_path / "dev_gates.npz"
    save_gates(path, gates)
    return path


# ----------------------------------------------------------------------------- file format

def test_gate_file_round_trip(gate_file):
    with np.load(gate_file) as z:
        assert sorted(z.files) == sorted(f"{n}/{k}" for n in ("clip_a", "clip_b")
                                         for k in ("gate", "has_description", "frame_indices"))
    gates = plotting.load_gates(gate_file)
    assert sorted(gates) == ["clip_a", "clip_b"]
    assert np.array_equal(gates["clip_b"]["frame_indices"], [3, 7, 11])
    assert gates["clip_b"]["gate"].dtype == np.float32 and gates["clip_a"]["gate"].shape == (6,)


# ----------------------------------------------------------------------------- drawing

def test_plot_gates_writes_a_png(gate_file, tmp_path, capsys):
    out = tmp_path / "plots" / "gate.png"  # the folder is created
    assert main(["plot-gates", "--gates", str(gate_file), "--sample", "clip_b", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert capsys.readouterr().out.strip() == str(out)
    # without --sample: the first sample by name
    default = tmp_path / "first.png"
    assert main(["plot-gates", "--gates", str(gate_file), "--out", str(default)]) == 0
    assert default.read_bytes()[:8] == PNG
    assert "clip_a:" in _titles(plotting.load_gates(gate_file)["clip_a"], "clip_a", tmp_path)[0]


def _drawn(sample, name, tmp_path, texts=None, **kw) -> dict:
    """What plot_gate draws: the title, the labels (text, colour) of the text panel, and the
    display boxes of the title and of every label (measured on the saved figure)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seen = {}
    real_close = plt.close

    def keep(fig):
        ax, lab = fig.axes[0], fig.axes[1]
        renderer = fig.canvas.get_renderer()
        seen["title"] = ax.get_title(loc="left")
        seen["labels"] = [(t.get_text().strip(), t.get_color()) for t in lab.texts]
        seen["title_box"] = ax._left_title.get_window_extent(renderer)  # the title drawn with loc="left"
        seen["boxes"] = [t.get_window_extent(renderer) for t in lab.texts]
        seen["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        real_close(fig)

    plt.close = keep
    try:
        plotting.plot_gate(sample, name, tmp_path / "t.png", texts, **kw)
    finally:
        plt.close = real_close
    return seen


def _titles(sample, name, tmp_path, texts=None):
    drawn = _drawn(sample, name, tmp_path, texts)
    return drawn["title"], [text for text, _ in drawn["labels"]]


def test_described_frames_are_labelled_with_their_texts(gate_file, tmp_path):
    desc_dir = tmp_path / "description" / "Synthetic"
    desc_dir.mkdir(parents=True)
    (desc_dir / "clip_a.json").write_text(json.dumps({"0": "hand up", "6": "hand down", "5": "not sampled",
                                                      "40": "after the last sampled frame"}))
    sample = plotting.load_gates(gate_file)["clip_a"]
    texts = {0: "hand up", 6: "hand down", 5: "not sampled", 40: "after the last sampled frame"}
    drawn = _drawn(sample, "clip_a", tmp_path, texts)
    assert "2/6 sampled frames described" in drawn["title"]
    # every described frame within the sampled span, in frame order; the sampled ones in black,
    # frame 5 (described, not sampled: interpolation uses it) in grey; frame 40 is out of the span
    assert drawn["labels"] == [("hand up", "black"), ("not sampled", "dimgray"), ("hand down", "black")]
    # without kinds saved or given: frames are exact or not described
    assert drawn["legend"] == ["gate", "exact (2)", "not described (4)"]
    out = tmp_path / "labelled.png"
    assert main(["plot-gates", "--gates", str(gate_file), "--sample", "clip_a", "--desc_dir", str(desc_dir.parent),
                 "--dataset", "Synthetic",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_labels_never_overlap_each_other_or_the_title(tmp_path):
    """Many long texts on neighbouring frames: each label gets a row where it overlaps no other."""
    frames = np.arange(0, 60, 3, dtype=np.int64)
    sample = {"gate": np.linspace(0.1, 0.9, len(frames), dtype=np.float32),
              "has_description": np.ones(len(frames), np.float32), "frame_indices": frames}
    texts = {int(f): f"description number {i}: the right hand moves up to the chin" for i, f in enumerate(frames)}
    drawn = _drawn(sample, "crowded", tmp_path, texts)
    boxes = drawn["boxes"]
    assert len(boxes) == len(frames)
    for i, a in enumerate(boxes):
        assert not a.overlaps(drawn["title_box"])
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    # runs of one text are one label
    same = {int(f): "mouth smiles" for f in frames[:5]} | {int(frames[5]): "head nods"}
    assert [t for t, _ in _drawn(sample, "runs", tmp_path, same)["labels"]] == ["mouth smiles", "head nods"]


def test_gate_with_descriptions_off_and_kinds_in_the_plot(gate_file, tmp_path):
    sample = plotting.load_gates(gate_file)["clip_a"]
    kinds = ["exact", "interpolated", "nearest", "exact", "undescribed", "undescribed"]
    drawn = _drawn(sample, "clip_a", tmp_path, None, kinds=kinds, gate_off=np.full(6, 0.05))
    assert drawn["legend"] == ["gate", "descriptions off (mean 0.050)", "exact (2)", "interpolated (1)",
                               "nearest (1)", "undescribed (2)"]
    # another model's gate on the same frames (the demo: cross-attention beside the gated model)
    drawn = _drawn(sample, "clip_a", tmp_path, None, kinds=kinds, gate_off=np.full(6, 0.05), label="gated",
                   others={"cross-attention": np.full(6, 0.5)})
    assert drawn["legend"][:3] == ["gated", "cross-attention (mean 0.500)", "gated, descriptions off (mean 0.050)"]


# ----------------------------------------------------------------------------- a whole split

def test_summary_per_alignment_kind_from_the_description_files(gate_file, tmp_path, capsys):
    """No alignment saved: the kinds come from aligning the description files (interpolate)."""
    desc_dir = tmp_path / "description" / "Synthetic"
    desc_dir.mkdir(parents=True)
    (desc_dir / "clip_a.json").write_text(json.dumps({"0": "hand up", "6": "hand down"}))
    out, summary = tmp_path / "a.png", tmp_path / "split.png"
    assert main(["plot-gates", "--gates", str(gate_file), "--sample", "clip_a", "--desc_dir", str(desc_dir.parent),
                 "--dataset", "Synthetic", "--out", str(out), "--summary", str(summary)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[:2] == [str(out), str(summary)] and summary.read_bytes()[:8] == PNG
    stats = json.loads(lines[2])
    # clip_a: frames 0 2 4 6 8 10, gates 0 .2 .4 .6 .8 1: exact 0 and 6, interpolated 2 and 4,
    # nearest 8 and 10; clip_b has no file: its 3 frames (gates .2 .4 .9) are undescribed
    assert list(stats) == ["exact", "interpolated", "nearest", "undescribed"]
    assert {k: v["frames"] for k, v in stats.items()} == {"exact": 2, "interpolated": 2, "nearest": 2, "undescribed": 3}
    expected = {"exact": 0.3, "interpolated": 0.3, "nearest": 0.9, "undescribed": 0.5}
    assert {k: v["mean"] for k, v in stats.items()} == pytest.approx(expected, abs=1e-4)


def test_saved_alignment_codes_are_used_and_checked(tmp_path, capsys):
    sample = {"gate": np.array([0.9, 0.5, 0.1, 0.7], np.float32), "has_description": np.array([1, 0, 0, 0], np.float32),
              "frame_indices": np.arange(4, dtype=np.int64), "alignment": np.array([1, 2, 0, 3], np.int8)}
    path = tmp_path / "test_gates.npz"
    save_gates(path, {"s": sample})
    loaded = plotting.load_gates(path)["s"]
    assert plotting.frame_kinds(loaded) == ["exact", "interpolated", "undescribed", "nearest"]
    _, stats = plotting.plot_gate_summary({"s": loaded}, {"s": plotting.frame_kinds(loaded)}, tmp_path / "sum.png")
    assert {k: round(v["mean"], 4) for k, v in stats.items()} == {"exact": 0.9, "interpolated": 0.5,
                                                                  "nearest": 0.7, "undescribed": 0.1}
    save_gates(path, {"s": {**sample, "alignment": np.array([1, 2, 7, 3], np.int8)}})
    assert main(["plot-gates", "--gates", str(path), "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys.readouterr().err, path, "alignment codes")


# ----------------------------------------------------------------------------- bad inputs

def test_missing_gate_file(tmp_path, capsys):
    missing = tmp_path / "nope_gates.npz"
    assert main(["plot-gates", "--gates", str(missing), "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys.readouterr().err, missing, "not found")
    assert not (tmp_path / "x.png").exists()


def test_unknown_sample(gate_file, tmp_path, capsys):
    assert main(["plot-gates", "--gates", str(gate_file), "--sample", "clip_zzz", "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys.readouterr().err, gate_file, "clip_zzz")


@pytest.mark.parametrize("content", [
    b"not an archive",                       # numpy would suggest allow_pickle: never
    b"PK\x03\x04 truncated zip",             # zipfile.BadZipFile
    "npy",                                   # one array, not an archive
    {"x": np.zeros(3)},                      # not <name>/<field>
    {"s/gate": np.zeros(3)},                 # fields missing
    {"s/gate": np.zeros(3), "s/has_description": np.zeros(4), "s/frame_indices": np.arange(3)},
    {"s/gate": np.zeros((3, 1)), "s/has_description": np.zeros((3, 1)), "s/frame_indices": np.zeros((3, 1))},
    {},                                      # no sample
], ids=["text", "bad-zip", "npy", "other-array", "missing-fields", "lengths", "not-1d", "empty"])
def test_bad_gate_files(content, tmp_path, capsys):
    path = tmp_path / "bad_gates.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        np.savez(path, **content)
    assert main(["plot-gates", "--gates", str(path), "--out", str(tmp_path / "x.png")]) == 2
    line = one_error_line(capsys.readouterr().err, path)
    assert "allow_pickle" not in line


def test_bad_desc_dir_and_bad_output(gate_file, tmp_path, capsys):
    nodir = tmp_path / "no_such_folder"
    assert main(["plot-gates", "--gates", str(gate_file), "--desc_dir", str(nodir), "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys.readouterr().err, nodir)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for out in (blocker / "x.png", tmp_path / "x.unknownformat"):
        assert main(["plot-gates", "--gates", str(gate_file), "--out", str(out)]) == 2
        one_error_line(capsys.readouterr().err, out)


# ----------------------------------------------------------------------------- from a real evaluation

@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """`signfuse eval --use_descriptions --eval_descriptions both` on a tiny synthetic dataset
    (dev: 4 samples, 2 described, synth_00002 trimmed (start 3); test: one described, one not)."""
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, samples=8, seed=0, invalid_files=0, split=(0.25, 0.5, 0.25), max_frames=76,
                   desc_fraction=0.6)
    out = tmp_path_factory.mktemp("eval")
    argv = ["eval", "--dataset", "Synthetic", "--data_root", str(root), "--desc_dir", str(root / "description"),
            "--mt5_model", "tiny", "--device", "cpu", "--num_workers", "0", "--batch-size", "4",
            "--max_length", "32", "--seed", "3", "--use_descriptions", "--eval_descriptions", "both",
            "--output_dir", str(out)]
    assert main(argv) == 0
    return SimpleNamespace(root=root, out=out)


def test_evaluation_writes_gates_per_sample(evaluated):
    out, root = evaluated.out, evaluated.root
    assert sorted(p.name for p in out.glob("*_gates.npz")) == ["dev_gates.npz", "test_gates.npz"]
    assert (out / "dev_nodesc_tmp_pres.txt").is_file()  # the descriptions-off evaluation: no gates
    # the same model, the same batches: the saved gates are the model's
    cfg = ModelConfig(dataset="Synthetic", use_descriptions=True)
    model = build_model(cfg, "tiny", seed=3)
    attach_text_source(model, SimpleNamespace(mt5_model="tiny"))
    model.eval()
    names_seen = []
    for split in ("dev", "test"):
        describer = Describer(root / "description" / "Synthetic")
        ds = SignDataset(paths.label_path("Synthetic", split, data_root=root),
                         paths.pose_dir("Synthetic", split, data_root=root), "Synthetic", split,
                         max_length=32, describer=describer)
        items = [ds[i] for i in range(len(ds))]
        batch = collate_fn(items)
        with torch.no_grad():
            gate = model(batch)["gate"]  # (B, T, 1)
        saved = plotting.load_gates(out / f"{split}_gates.npz")
        assert sorted(saved) == sorted(batch["names"])
        for b, item in enumerate(items):
            name, T = item["name"], len(item["frame_indices"])
            names_seen.append(name)
            s = saved[name]
            assert s["gate"].shape == s["has_description"].shape == s["frame_indices"].shape == (T,)
            assert np.array_equal(s["frame_indices"], item["frame_indices"])  # original frame numbers
            assert np.array_equal(s["has_description"], describer.describe(name, item["frame_indices"])[1])
            assert np.array_equal(s["gate"], gate[b, :T, 0].numpy())
    dev = plotting.load_gates(out / "dev_gates.npz")
    trimmed = dev["synth_00002"]["frame_indices"]
    assert trimmed[0] == 3 and len(trimmed) == 32 and np.all(np.diff(trimmed) > 0)  # start 3, 43 frames
    test = plotting.load_gates(out / "test_gates.npz")
    assert test["synth_00006"]["has_description"].sum() > 0 and test["synth_00007"]["has_description"].sum() == 0


def test_plot_gates_draws_an_evaluated_sample(evaluated, tmp_path, capsys):
    out = tmp_path / "synth_00006.png"
    argv = ["plot-gates", "--gates", str(evaluated.out / "test_gates.npz"), "--sample", "synth_00006",
            "--desc_dir", str(evaluated.root / "description"), "--dataset", "Synthetic", "--out", str(out)]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5000
    assert capsys.readouterr().out.strip() == str(out)
    assert main(argv[:3] + ["--sample", "synth_99999", "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, "test_gates.npz", "synth_99999")
