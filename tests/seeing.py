"""Helpers of the "see it" tests (render, export-pose, serve): tiny checkpoints like the demo's,
poses with known keypoints, lossless videos, and running a ``signfuse`` command in-process."""
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import torch
import uvicorn

from conftest import pinned_batch, train_on
from helpers import run_cli
from signfuse import cli
from signfuse.commands.serve import make_app
from signfuse.config import ModelConfig
from signfuse.demo.synthetic_video import write_video
from signfuse.models.uni_sign import attach_text_source, build_model
from signfuse.training import model_setup

FAST = ["--mt5_model", "tiny", "--device", "cpu", "--num_beams", "1", "--max_new_tokens", "8"]


_CHECKPOINTS = {}  # made once per test process (training takes seconds)


def tiny_checkpoints(root: Path) -> SimpleNamespace:
    """A pose-only tiny checkpoint trained a few steps (it writes words, as the demo's do) and a
    gated one with the same pose weights and fusion weights that change the features; written
    under ``root`` by the first test that asks, then shared (tests only read them)."""
    if "made" not in _CHECKPOINTS:
        _CHECKPOINTS["made"] = _make_checkpoints(root)
    return _CHECKPOINTS["made"]


def _make_checkpoints(root: Path) -> SimpleNamespace:
    model = train_on(build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0), pinned_batch())
    recorded = {"mt5_model": "tiny", "dataset": "Synthetic"}
    pose_only = root / "pose_only.pth"
    torch.save(model_setup.checkpoint_dict(model, model.cfg, SimpleNamespace(**recorded), epoch=1), pose_only)
    gated = build_model(ModelConfig(dataset="Synthetic", use_descriptions=True), "tiny", seed=0)
    attach_text_source(gated, SimpleNamespace(mt5_model="tiny"))
    gated.load_state_dict(model.state_dict(), strict=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in gated.text_fusion.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (3.0 if name.startswith("fusion.proj") else 0.02))
    gated_ckpt = root / "gated.pth"
    torch.save(model_setup.checkpoint_dict(gated, gated.cfg, SimpleNamespace(**recorded, use_descriptions=True), epoch=1),
               gated_ckpt)
    return SimpleNamespace(pose_only=pose_only, gated=gated_ckpt)


def write_rgb_video(path, frames_rgb: np.ndarray, fps: int = 25) -> Path:
    """Lossless H.264 (libx264rgb, qp 0) of (N, H, W, 3) uint8 RGB frames: decoded, the same pixels."""
    return write_video(path, np.asarray(frames_rgb, np.uint8), fps)


def decode(path) -> np.ndarray:
    """Every frame of a video, (N, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


signfuse = run_cli  # (exit status, stdout, stderr) of ``signfuse ARGV`` run in this process


@contextlib.contextmanager
def running_server(*argv, translator=None):
    """``signfuse serve ARGV`` in a thread of this process, on 127.0.0.1 and a free port: yields
    (base URL, the app); stopped and its temporary folder removed on exit."""
    parser = cli.build_parser()
    args = parser.parse_args(["serve", *map(str, argv)])
    args.given_flags = cli.given_flags(parser, ["serve", *map(str, argv)])
    app = make_app(args, translator)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def post(url: str, body: bytes, **params) -> tuple:
    """(HTTP status, JSON answer) of POST url?params with ``body`` (what the page sends)."""
    request = urllib.request.Request(f"{url}?{urllib.parse.urlencode(params)}", data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
