"""The frame-exact video reader (signfuse.data.video) on videos written here with PyAV: every
frame carries its number as a barcode, so a wrong frame cannot pass unnoticed."""
import av
import numpy as np
import pytest

from signfuse.data import video
from signfuse.errors import SampleError

BITS, BLOCK = 10, 16  # barcode: frame number in 10 blocks of 16 x 16 px at the top (up to 1023)
W, H = BITS * BLOCK, 64


def barcode_frames(n: int, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8: a texture sliding 3 px per frame (so frames differ and motion
    prediction has work), the frame number as black/white blocks in the top rows."""
    texture = np.random.default_rng(seed).integers(0, 256, (H, 2 * W, 3), dtype=np.uint8)
    frames = np.stack([texture[:, (3 * k) % W:(3 * k) % W + W] for k in range(n)])  # (n, H, W, 3)
    for b in range(BITS):
        frames[:, :BLOCK, BLOCK * b:BLOCK * (b + 1)] = (((np.arange(n) >> b) & 1) * 255)[:, None, None, None]
    return frames


def read_barcode(frame: np.ndarray) -> int:
    blocks = frame[:BLOCK, :BITS * BLOCK].reshape(BLOCK, BITS, BLOCK, 3).mean(axis=(0, 2, 3))  # (BITS,)
    return int(sum(1 << b for b in range(BITS) if blocks[b] > 128))


def write_video(path, frames: np.ndarray, codec: str, pix_fmt: str, options: dict):
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.options = W, H, pix_fmt, options
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def lossless(tmp_path_factory):
    """120 frames, lossless (libx264rgb, qp 0: decodes to exactly these pixels), a keyframe every 10."""
    frames = barcode_frames(120)
    path = write_video(tmp_path_factory.mktemp("video") / "lossless.mp4", frames, "libx264rgb", "rgb24",
                       {"qp": "0", "g": "10"})
    return path, frames


@pytest.fixture(scope="module")
def bframes(tmp_path_factory):
    """300 frames, H.264 yuv420p (lossy) with 3 B-frames and a keyframe every 25, and its
    sequential decode (the reference: frame k = the k-th frame decoded)."""
    path = write_video(tmp_path_factory.mktemp("video") / "bframes.mp4", barcode_frames(300, seed=1),
                       "libx264", "yuv420p", {"crf": "23", "g": "25", "bf": "3"})
    with av.open(str(path)) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return path, decoded


def index_sets(n: int, count: int = 6, seed: int = 0) -> list:
    """Random sorted sets of 10% of the frames (Uni-Sign's access pattern), and the last frame."""
    rng = np.random.default_rng(seed)
    sets = [np.sort(rng.choice(n, size=max(1, n // 10), replace=False)) for _ in range(count)]
    return sets + [np.array([n - 1])]


def test_bframes_fixture_has_bframes(bframes):
    path, decoded = bframes
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert sum(p.pts != p.dts for p in packets) > 100  # decode order differs from presentation order
    assert sum(p.is_keyframe for p in packets) >= 12
    assert [read_barcode(f) for f in decoded] == list(range(300))


@pytest.mark.parametrize("seek_gap", [0, video.SEEK_GAP, 10 ** 9])
def test_lossless_exact_frames(lossless, seek_gap):
    path, frames = lossless
    for wanted in index_sets(len(frames)):
        got = video.read_frames(path, wanted, seek_gap=seek_gap)
        assert got.dtype == np.uint8 and got.shape == (len(wanted), H, W, 3)
        np.testing.assert_array_equal(got, frames[wanted])


@pytest.mark.parametrize("seek_gap", [0, video.SEEK_GAP, 10 ** 9])
def test_bframes_equal_sequential_decode(bframes, seek_gap):
    path, decoded = bframes
    for wanted in index_sets(len(decoded), seed=seek_gap % 7):
        got = video.read_frames(path, wanted, seek_gap=seek_gap)
        np.testing.assert_array_equal(got, decoded[wanted])
        assert [read_barcode(f) for f in got] == wanted.tolist()


def test_unsorted_and_repeated_numbers_keep_their_order(bframes):
    path, decoded = bframes
    wanted = [250, 3, 250, 77, 0]
    np.testing.assert_array_equal(video.read_frames(path, wanted, seek_gap=0), decoded[wanted])


class CountingContainer:
    """Wraps a PyAV container: counts seeks and decoded frames."""

    def __init__(self, container):
        self.container, self.seeks, self.decoded = container, 0, 0

    def seek(self, *args, **kwargs):
        self.seeks += 1
        return self.container.seek(*args, **kwargs)

    def decode(self, stream):
        for frame in self.container.decode(stream):
            self.decoded += 1
            yield frame


def decode_counting(path, wanted, seek_gap):
    container, stream = video.open_video(path)
    with container:
        pts, keyframes = video.frame_pts(container, stream, path)
        counting = CountingContainer(container)
        got = video.decode_by_pts(counting, stream, pts, keyframes, np.asarray(wanted), seek_gap)
    return got, counting


def test_seeking_skips_decoding_and_stops_after_last_frame(bframes):
    path, decoded = bframes
    wanted = [10, 200, 290]
    got, far = decode_counting(path, wanted, seek_gap=0)
    assert far.seeks == 3 and far.decoded < 3 * 25 + 10  # from the keyframe before each frame
    for k in wanted:
        np.testing.assert_array_equal(got[k], decoded[k])
    got, near = decode_counting(path, wanted, seek_gap=10 ** 9)
    assert near.seeks == 1 and 291 <= near.decoded <= 291 + 4  # to frame 290, not to the end (300)
    _, first = decode_counting(path, [5], seek_gap=0)
    assert first.decoded <= 6 + 4  # frames 0..5 (plus at most the B-frame delay)


def test_timestamps_that_do_not_match_fall_back_to_sequential(bframes, monkeypatch):
    """A decoded frame whose pts is not in the demuxed list: the read starts again, decoding
    sequentially and counting, and still returns the exact frames."""
    path, decoded = bframes
    real = video.frame_pts

    def shifted(container, stream, p):
        pts, keyframes = real(container, stream, p)
        return pts + 1, keyframes
    monkeypatch.setattr(video, "frame_pts", shifted)
    wanted = np.array([3, 120, 299])
    np.testing.assert_array_equal(video.read_frames(path, wanted, seek_gap=0), decoded[wanted])
    monkeypatch.setattr(video, "frame_pts", lambda *a: (None, None))  # no usable timestamps
    np.testing.assert_array_equal(video.read_frames(path, wanted), decoded[wanted])
    assert video.count_frames(path) == 300  # counted by decoding
    with pytest.raises(SampleError, match="fewer than the 301 frames"):
        video.read_frames(path, [0], min_frames=301)


def test_count_frames(lossless, bframes):
    assert video.count_frames(lossless[0]) == 120
    assert video.count_frames(bframes[0]) == 300
    assert video.check_video(bframes[0], 300) == 300
    with pytest.raises(SampleError, match=r"bframes.mp4: the video has 300 frames, fewer than the 301 frames"):
        video.check_video(bframes[0], 301)


def test_errors_name_the_file(tmp_path, lossless):
    path = lossless[0]
    with pytest.raises(SampleError, match=r"lossless.mp4: frame 120 wanted but the video has 120 frames") as e:
        video.read_frames(path, [5, 120])
    assert e.value.kind == "frame_count"
    with pytest.raises(SampleError, match=r"lossless.mp4: the video has 120 frames, fewer than the 150 frames "
                                          r"of its pose file"):
        video.read_frames(path, [5], min_frames=150)
    with pytest.raises(SampleError, match=r"missing.mp4: video file not found") as e:
        video.read_frames(tmp_path / "missing.mp4", [0])
    assert e.value.kind == "missing"
    with pytest.raises(SampleError, match=r"folder.mp4: video file not found \(it is a directory\)"):
        (tmp_path / "folder.mp4").mkdir()
        video.read_frames(tmp_path / "folder.mp4", [0])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(path.read_bytes()[:2000])  # truncated: the header without the frames
    with pytest.raises(SampleError, match=r"bad.mp4: cannot (read|decode) the video") as e:
        video.read_frames(bad, [0])
    assert e.value.kind == "video"
    with pytest.raises(ValueError, match=">= 0"):
        video.read_frames(path, [-1])
