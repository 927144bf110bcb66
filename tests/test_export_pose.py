"""`signfuse export-pose --format pose`: pose-format reads back the keypoints and scores of every frame."""
import json

import numpy as np
from pose_format import Pose

from conftest import make_pose, one_error_line, write_pickle
from seeing import signfuse


def test_pose_format_reads_back_the_pose_file(tmp_path, capsys):
    # a file as extract-pose writes it (float64 keypoints, frame size and rate recorded) and one
    # without metadata (Uni-Sign's: the flags' size and rate); two persons in a frame: person 0
    made = make_pose(9, seed=1, extraction={"frame_size": [160, 120], "fps": 30.0})
    made["keypoints"] = [k.astype(np.float64) for k in made["keypoints"]]
    bare = make_pose(5, persons=2, seed=2)
    bare["scores"][3][0, 7] = 0.0  # a point of score 0: masked in pose-format
    files = [write_pickle(tmp_path / "made.pkl", made), write_pickle(tmp_path / "bare.pkl", bare)]
    status, out, err = signfuse(capsys, "export-pose", *files, "--out", tmp_path / "out", "--format", "pose",
                                "--frame_size", "640", "480", "--fps", "12.5")
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["frames"] for r in lines] == [9, 5]
    for name, data, size, fps in (("made", made, (160, 120), 30.0), ("bare", bare, (640, 480), 12.5)):
        with open(tmp_path / "out" / f"{name}.pose", "rb") as f:
            pose = Pose.read(f.read())
        assert sum(len(c.points) for c in pose.header.components) == 133
        assert [c.name for c in pose.header.components] == ["BODY", "FACE", "LEFT_HAND", "RIGHT_HAND"]
        assert (pose.header.dimensions.width, pose.header.dimensions.height) == size
        assert pose.body.fps == fps
        keypoints = np.stack([k[0] for k in data["keypoints"]]).astype(np.float32)  # (N, 133, 2) person 0
        scores = np.stack([s[0] for s in data["scores"]])  # (N, 133)
        assert pose.body.data.shape == (len(keypoints), 1, 133, 2)
        np.testing.assert_array_equal(pose.body.data.data[:, 0], keypoints * np.array(size, np.float32))
        np.testing.assert_array_equal(pose.body.confidence[:, 0], scores)
        np.testing.assert_array_equal(pose.body.data.mask[:, 0].any(-1), scores == 0)
    assert pose.body.data.mask[3, 0, 7].all() and pose.body.data.mask.sum() == 2


def test_bad_pose_file(tmp_path, capsys):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    status, out, err = signfuse(capsys, "export-pose", bad, "--out", tmp_path / "out")
    assert status == 2 and out == "" and one_error_line(err, bad)
    assert not (tmp_path / "out" / "bad.pose").exists()
