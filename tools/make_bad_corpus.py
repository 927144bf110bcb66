"""Write tests/data/bad/: a tiny dataset in Uni-Sign's layout with one sample per kind of bad input.

    python tools/make_bad_corpus.py [--out tests/data/bad]

The corpus is committed; tests/test_check_data.py regenerates it into a temporary folder and
compares it with the committed files, so edit this tool (never the files) and run it again.
Layout (dataset "Synthetic", so that ``--data_root tests/data/bad`` finds everything):

    data/Synthetic/labels.{train,dev,test}     gzip pickles {name: sample}
    dataset/Synthetic/pose_format/<name>.pkl   pose files
    description/Synthetic/<name>.json          description files
    wrong_labels/labels.test                   a label file holding a list (use --label_dir)
    evil_labels/labels.test                    a label file whose pickle runs a shell command
    README.md                                  what each sample is

train holds the broken pose files (and one good sample), dev two good samples, test good
pose files with every kind of description file. The malicious pickles run
``touch signfuse_marker_pose`` / ``touch signfuse_marker_labels`` in the current folder when
loaded WITHOUT the restricted unpickler: tests only ever load them restricted, from a
temporary current folder, and check that the marker never appears.

Everything is deterministic: no random generator (values come from a formula), gzip with
mtime=0, pickle protocol 3 through a pickler that names numpy's functions as numpy 1 did
(``numpy.core.multiarray``; numpy 2 reads that name too), so the bytes do not depend on the
installed numpy.
"""
import argparse
import gzip
import io
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np

DATASET = "Synthetic"
NUM_POINTS = 133
PROTOCOL = 3
POSE_MARKER = "signfuse_marker_pose"
LABEL_MARKER = "signfuse_marker_labels"
README_TITLE = "# tests/data/bad: one sample per kind of bad input"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "bad"


# ---------------------------------------------------------------------------------------
# Bytes: pickles and gzip that do not depend on the numpy version or the clock
# ---------------------------------------------------------------------------------------

class PortablePickler(pickle._Pickler):
    """The pure-Python pickler, writing numpy 2's ``numpy._core.*`` globals as ``numpy.core.*``."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core."):
            name = name or obj.__qualname__
            self.write(pickle.GLOBAL + f"numpy.core.{module[len('numpy._core.'):]}\n{name}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def pickle_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    PortablePickler(buffer, protocol=PROTOCOL).dump(obj)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def shell_command_pickle(command: str) -> bytes:
    """A pickle (written opcode by opcode) whose loading calls ``os.system(command)``."""
    text = command.encode()
    return (pickle.PROTO + bytes([2]) + pickle.GLOBAL + b"os\nsystem\n"
            + pickle.BINUNICODE + struct.pack("<I", len(text)) + text
            + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)


# ---------------------------------------------------------------------------------------
# Pose files
# ---------------------------------------------------------------------------------------

def good_pose(num_frames: int, variant: int = 0, persons: int = 1) -> dict:
    """A plausible pose dict: per frame keypoints (P, 133, 2) in [0.2, 0.8], scores (P, 133)
    in [0.5, 1.0], float16 (small files), from a formula (no random generator)."""
    frame = np.arange(num_frames, dtype=np.float64)[:, None, None, None]
    person = np.arange(persons, dtype=np.float64)[None, :, None, None]
    point = np.arange(NUM_POINTS, dtype=np.float64)[None, None, :, None]
    axis = np.arange(2, dtype=np.float64)[None, None, None, :]
    phase = (point * 0.618 + axis * 0.414 + frame * 0.05 + person * 0.3 + variant * 0.17) % 1.0
    keypoints = (0.2 + 0.6 * phase).astype(np.float16)  # (N, P, 133, 2)
    scores = (0.5 + 0.5 * ((point[..., 0] * 0.377 + frame[..., 0] * 0.1) % 1.0))
    scores = np.broadcast_to(scores, (num_frames, persons, NUM_POINTS)).astype(np.float16)  # (N, P, 133)
    return {"keypoints": list(keypoints), "scores": list(scores)}


def broken_pose_files() -> dict:
    """name -> (bytes of its pose file, or None for no file; what is wrong), the train split."""
    def pose(**changes) -> dict:
        return {**good_pose(6, variant=1), **changes}

    good = pickle_bytes(good_pose(8))
    nan_keypoints = pose()
    nan_keypoints["keypoints"] = [k.copy() for k in nan_keypoints["keypoints"]]
    nan_keypoints["keypoints"][3][0, 5, 1] = np.nan
    nan_keypoints["keypoints"][4][0, 7, 0] = np.nan
    inf_scores = pose()
    inf_scores["scores"] = [s.copy() for s in inf_scores["scores"]]
    inf_scores["scores"][2][0, 10] = np.inf
    huge = pose()
    huge["keypoints"] = [k.astype(np.float32) for k in huge["keypoints"]]
    huge["keypoints"][0][0, 0] = 3e38   # body points at both ends of float32's range:
    huge["keypoints"][1][0, 3] = -3e38  # the body box's size overflows to inf
    return {
        "good_train": (good, "a good sample"),
        "missing_pose": (None, "no pose file"),
        "truncated_pickle": (good[: len(good) // 2], "a pickle cut in the middle"),
        "not_a_pickle": (b"keypoints,scores\n0.5,0.9\n", "a CSV file, not a pickle"),
        "empty_file": (b"", "a file of zero bytes"),
        "malicious_pickle": (shell_command_pickle(f"touch {POSE_MARKER}"),
                             f"a pickle that runs 'touch {POSE_MARKER}' when loaded unrestricted"),
        "not_a_dict": (pickle_bytes([1, 2, 3]), "a pickled list"),
        "zero_frames": (pickle_bytes({"keypoints": [], "scores": []}), "keypoints and scores of no frame"),
        "nan_keypoints": (pickle_bytes(nan_keypoints), "NaN in keypoints of frames 3 and 4"),
        "inf_scores": (pickle_bytes(inf_scores), "inf in the scores of frame 2"),
        "wrong_keypoint_shape": (pickle_bytes(pose(keypoints=[np.zeros((1, NUM_POINTS, 3), np.float16)] * 6)),
                                 "keypoints (1, 133, 3) per frame"),
        "length_mismatch": (pickle_bytes(pose(scores=pose()["scores"][:5])), "6 frames of keypoints, 5 of scores"),
        "start_not_before_end": (pickle_bytes(pose(start=4, end=4)), "start 4 = end 4"),
        "end_beyond_frames": (pickle_bytes(pose(start=1, end=20)), "end 20 > 6 frames"),
        "huge_coordinates": (pickle_bytes(huge), "finite keypoints of +-3e38: normalisation overflows"),
    }


# ---------------------------------------------------------------------------------------
# Description files (test split): sample -> (bytes, or None for no file; what it is)
# ---------------------------------------------------------------------------------------

def json_bytes(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


DESCRIPTIONS = {
    "desc_frame_map": (json_bytes({"0": "right hand rises", "3": "both hands move down"}),
                       "a valid frame map"),
    "desc_segments": (json_bytes({"segments": [{"start": 0, "end": 3, "text": "fist at the chin"},
                                               {"start": 3, "end": 6, "text": "open palm"}],
                                  "source": "annotator"}), "valid segments with metadata"),
    "desc_missing": (None, "no description file (normal)"),
    "desc_invalid_json": (b'{"0": "right hand rises", "3": ', "JSON cut in the middle"),
    "desc_not_utf8": (b'{"2": "flat hand \xe9"}\n', "Latin-1 text"),
    "desc_list": (json_bytes(["fist", "open palm"]), "a JSON array at the top level"),
    "desc_negative_key": (json_bytes({"-3": "hand touches chin", "4": "fist"}), "frame key -3"),
    "desc_non_numeric_key": (json_bytes({"2": "fist", "three": "open palm"}), "frame key 'three'"),
    "desc_non_string_text": (json_bytes({"2": "open palm", "5": 7}), "a number as a text"),
    "desc_segment_end_before_start": (json_bytes({"segments": [{"start": 4, "end": 2, "text": "fist"}]}),
                                      "a segment with end 2 <= start 4"),
    "desc_empty_texts": (json_bytes({"1": "", "4": "   "}), "only empty texts (valid, no descriptions)"),
    "desc_frame_out_of_range": (json_bytes({"2": "fist", "40": "open palm", "41": "open palm"}),
                                "frames 40 and 41 of a 6-frame pose file"),
}


# ---------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------

def label(name: str, index: int) -> dict:
    return {"name": name, "text": f"sentence {index}", "gloss": [f"g{index}", "w"], "video_path": f"{name}.mp4"}


def corpus_files() -> dict:
    """Relative path -> bytes of every file of the corpus."""
    pose_dir = f"dataset/{DATASET}/pose_format"
    files, readme = {}, [README_TITLE,
                         "", "Generated by tools/make_bad_corpus.py; do not edit by hand.", ""]
    splits = {
        "train": {name: (content, what) for name, (content, what) in broken_pose_files().items()},
        "dev": {"good_dev_trimmed": (pickle_bytes({**good_pose(12, variant=2), "start": 2, "end": 10}),
                                     "12 frames, start 2, end 10"),
                "good_dev_two_persons": (gzip_bytes(pickle_bytes(good_pose(5, variant=3, persons=2))),
                                         "two persons per frame, gzip-compressed")},
        "test": {name: (pickle_bytes(good_pose(6, variant=4 + i)), f"good pose; description: {what}")
                 for i, (name, (_, what)) in enumerate(DESCRIPTIONS.items())},
    }
    for split, samples in splits.items():
        labels = {name: label(name, i) for i, name in enumerate(samples)}
        files[f"data/{DATASET}/labels.{split}"] = gzip_bytes(pickle_bytes(labels))
        readme += [f"## {split}", ""]
        for name, (content, what) in samples.items():
            if content is not None:
                files[f"{pose_dir}/{name}.pkl"] = content
            readme.append(f"- `{name}`: {what}")
        readme.append("")
    for name, (content, _what) in DESCRIPTIONS.items():
        if content is not None:
            files[f"description/{DATASET}/{name}.json"] = content
    files["wrong_labels/labels.test"] = gzip_bytes(pickle_bytes([label("good_train", 0)]))
    files["evil_labels/labels.test"] = gzip_bytes(shell_command_pickle(f"touch {LABEL_MARKER}"))
    readme += ["## other label files (use --label_dir)", "",
               "- `wrong_labels/labels.test`: a list of samples instead of a dict",
               f"- `evil_labels/labels.test`: a pickle that runs 'touch {LABEL_MARKER}' when loaded unrestricted",
               ""]
    files["README.md"] = "\n".join(readme).encode()
    return files


def make_bad_corpus(out) -> list:
    """Write the corpus under ``out`` (replacing what is there); return the written paths."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        readme = out / "README.md"
        if not (readme.is_file() and readme.read_bytes().startswith(README_TITLE.encode())):
            raise SystemExit(f"{out}: not empty and not a corpus of this tool (no README.md starting "
                             f"with {README_TITLE!r}); refusing to replace it")
        shutil.rmtree(out)
    written = []
    for relative, content in corpus_files().items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    written = make_bad_corpus(args.out)
    size = sum(path.stat().st_size for path in written)
    print(f"{args.out}: {len(written)} files, {size} bytes")


if __name__ == "__main__":
    main()
