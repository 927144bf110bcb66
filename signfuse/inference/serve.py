"""``signfuse serve``: a web page that translates a sign language video or pose file.

FastAPI (on uvicorn, bound to 127.0.0.1) with one hand-written page (``assets/serve.html``):
the user uploads a video or a pose file and picks one of the server's checkpoints; the page
shows a progress indicator while the server works, then the translation, the rendered video
(``signfuse.render``), the description timeline and the gate plot.

What a request does is ``signfuse translate`` (a video: pose extraction with the server's
``--det``/``--pose``/``--mode``, then the checkpoint's Predictor, built once per checkpoint with
translate's namespace) or ``signfuse predict`` (a pose file), so the page shows the same text as
the commands.

Uploads are untrusted:
- the page sends the file as the request body (no multipart parser, no spooling elsewhere):
  it is streamed into a folder of its own under the server's temporary folder, and refused
  past ``--max_upload_mb``; the folder is removed when the response is made;
- a pose file (a pickle) goes through the restricted unpickler; a video must open with PyAV;
  anything else gets one message: neither a video nor a pose file;
- a video longer than ``--max_seconds`` (a pose file: its frames at its frame rate) is refused;
- one worker thread runs the requests one at a time; at most ``--max_queue`` wait for it, more
  are refused at once (503, server busy) before their upload is read.
"""
import asyncio
import base64
import html
import shutil
import socket
import tempfile
import threading
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np

from signfuse.data.pose_files import read_pose_file
from signfuse.data.video import count_frames
from signfuse.errors import InputError, SampleError, SignfuseError
from signfuse.inference import render, translate
from signfuse.inference.plotting import kinds_from_aligned, plot_gate
from signfuse.inference.predict import Predictor, describer
from signfuse.models.text_fusion import ALIGNMENT_KINDS

PAGE = Path(__file__).resolve().parents[1] / "assets" / "serve.html"  # signfuse/assets/
PICKLE_STARTS = (b"\x80", b"\x1f\x8b")  # a pickle (protocol 2+), a gzip-compressed one
MAX_DESCRIPTION = 1 << 20  # bytes of a description file


class UploadError(Exception):
    """A request that cannot be served: an HTTP status and one message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    max_mb: float  # --max_upload_mb
    max_seconds: float
    max_queue: int

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 2 ** 20)


class Translator:
    """The server's checkpoints (a Predictor each, built at first use on ``predict_args(checkpoint)``:
    the namespace ``signfuse translate`` gives its Predictor), pose extraction, rendering.
    ``translate(path, name, checkpoint, limits)`` is called by one worker thread at a time."""

    def __init__(self, args, predict_args):
        self.args, self.predict_args, self.predictors, self.poses = args, predict_args, {}, None
        self.extraction = SimpleNamespace(**vars(args))  # translate's pose cache: each request's own folder
        self.names = checkpoint_names(args.finetune)

    def predictor(self, index: int):
        if index not in self.predictors:
            self.predictors[index] = Predictor(self.predict_args(self.args.finetune[index]))
        return self.predictors[index]

    def pose_of_video(self, video: Path) -> Path:
        if self.poses is None:
            self.poses = translate.Poses(self.extraction)
        self.extraction.cache_dir, self.extraction.overwrite = str(video.parent), False
        return self.poses.get(video)[0]

    def predict(self, index: int, pose, name: str, video, description, details: dict) -> str:
        """The checkpoint's prediction, with the descriptions of the ``description`` file when given
        (as ``translate --description``: read and checked now, for this request only)."""
        predictor = self.predictor(index)
        if description is None:
            return predictor.predict(pose, name, video=video, details=details)
        own = predictor.describe
        predictor.describe = describer(Namespace(**{**vars(predictor.args), "description": str(description)}),
                                       predictor.cfg)
        try:
            return predictor.predict(pose, name, video=video, details=details)
        finally:
            predictor.describe = own

    def translate(self, path: Path, name: str, index: int, limits: Limits, description=None) -> dict:
        """The page's result for the upload at ``path`` (``name``: the user's file name;
        ``description``: the path of its description file, or None)."""
        kind = classify(path, name)
        video = path if kind == "video" else None
        if video is not None:
            check_duration(video, name, limits.max_seconds)
            pose_file = self.pose_of_video(video)
        else:
            pose_file = path
        pose, size, fps = read_pose_file(pose_file)
        if video is None:
            seconds = len(pose.keypoints) / (fps or render.DEFAULT_FPS)
            if seconds > limits.max_seconds:
                raise InputError(f"{name}: {seconds:.1f} s of poses, longer than this server's limit "
                                 f"({limits.max_seconds:g} s, --max_seconds)")
        details = {}
        text = self.predict(index, pose, str(pose_file), video, description, details)
        seen = render.Seen.of(details, text)
        out = path.parent / "rendered.mp4"
        render.render(pose, out, video=video, seen=seen, frame_size=size, fps=fps)
        return {"translation": text, "checkpoint": self.names[index], "kind": kind, "frames": len(pose.keypoints),
                "timings_s": {k: round(v, 4) for k, v in details["timings"].items()}, "gates": details["gates"],
                "timeline": timeline(details["seen"]), "video": encode(out),
                "gate_plot": gate_plot(details["seen"], name, path.parent / "gate.png")}


def checkpoint_names(paths) -> list:
    """The page's name of each checkpoint: its file name, with as many parent folders as it takes
    to tell the checkpoints apart (out/gated/best.pth and out/pose/best.pth: gated/best.pth, ...)."""
    paths = [Path(p).resolve() for p in paths]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = [str(Path(*p.parts[-depth:])) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def classify(path: Path, name: str) -> str:
    """'pose' or 'video' for the upload at ``path``; one message (InputError) for anything else."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] in PICKLE_STARTS[:1] or head == PICKLE_STARTS[1]:
        return "pose"
    try:
        with av.open(str(path)) as container:
            if container.streams.video and next(container.decode(video=0), None) is not None:
                return "video"
    except (OSError, av.error.FFmpegError, StopIteration):
        pass
    raise InputError(f"{name}: neither a video nor a pose file (a video needs a video stream PyAV can decode; "
                     "a pose file is a pickle of keypoints and scores)")


def check_duration(video: Path, name: str, max_seconds: float) -> None:
    try:
        frames = count_frames(video)
    except SampleError as e:
        raise InputError(f"{name}: {str(e).split(': ', 1)[-1]}") from None
    seconds = frames / render.video_info(video)[1]
    if seconds > max_seconds:
        raise InputError(f"{name}: a video of {seconds:.1f} s, longer than this server's limit "
                         f"({max_seconds:g} s, --max_seconds)")


def timeline(seen: dict) -> list:
    """Per sampled frame: its number, description texts with weights, gate."""
    n = len(seen["frame_indices"])
    aligned = seen["aligned"] or [[] for _ in range(n)]
    gate = seen["gate"] or [None] * n
    return [{"frame": f, "texts": [[t, round(w, 3)] for t, w in texts], "gate": g}
            for f, texts, g in zip(seen["frame_indices"], aligned, gate, strict=True)]


def gate_plot(seen: dict, name: str, out: Path):
    """The gate plot (``plotting.plot_gate``) as base64 PNG; None for a model without a gate."""
    if seen["gate"] is None:
        return None
    has = np.asarray(seen["has_description"] or [0.0] * len(seen["gate"]), np.float32)
    aligned = seen["aligned"] or [[] for _ in seen["gate"]]
    sample = {"gate": np.asarray(seen["gate"]), "has_description": has,
              "frame_indices": np.asarray(seen["frame_indices"])}
    texts = {f: pairs[0][0] for f, pairs, h in zip(seen["frame_indices"], aligned, has, strict=True) if h > 0.5}
    kinds = [ALIGNMENT_KINDS[int(c)] for c in kinds_from_aligned(aligned, has)]
    return encode(plot_gate(sample, name, out, texts=texts, kinds=kinds))


def encode(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def safe_name(name: str) -> str:
    """The user's file name for messages (no folders, printable, at most 100 characters)."""
    name = Path(str(name).replace("\\", "/")).name
    return "".join(c for c in name if c.isprintable())[:100] or "upload"


def create_app(args, translator):
    """The FastAPI app of ``signfuse serve`` (``args``: its flags; ``translator``: a Translator, or
    anything with its ``names`` and ``translate``)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    limits = Limits(args.max_upload_mb, args.max_seconds, args.max_queue)
    root = Path(tempfile.mkdtemp(prefix="signfuse-serve-"))
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signfuse-serve")
    state = {"waiting": 0, "served": 0}
    lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        worker.shutdown(wait=True)
        shutil.rmtree(root, ignore_errors=True)
    app = FastAPI(title="signfuse", lifespan=lifespan)
    app.state.temp_root, app.state.counts = root, state

    @app.get("/", response_class=HTMLResponse)
    def page():
        options = "".join(f'<option value="{i}">{html_escape(n)}</option>' for i, n in enumerate(translator.names))
        limits_text = f"up to {args.max_upload_mb:g} MiB and {args.max_seconds:g} s"
        return PAGE.read_text().replace("{{checkpoints}}", options).replace("{{limits}}", limits_text)

    @app.post("/api/translate")
    async def translate(request: Request, checkpoint: int = 0, filename: str = "upload", description_bytes: int = 0,
                        description_name: str = "description.json"):
        name, description_name = safe_name(filename), safe_name(description_name)
        with lock:
            if state["waiting"] > limits.max_queue:
                return JSONResponse({"error": f"server busy: {state['waiting']} requests ahead; try again"}, 503)
            state["waiting"] += 1
        folder = Path(tempfile.mkdtemp(dir=root))
        path = folder / ("upload" + "".join(c for c in Path(name).suffix if c.isalnum() or c == ".")[:10])
        try:
            if not 0 <= checkpoint < len(translator.names):
                raise UploadError(400, f"checkpoint {checkpoint}: not one of this server's")
            description = folder / "description.json" if description_bytes else None
            await receive(request, path, name, limits, description, description_bytes)
            result = await asyncio.get_running_loop().run_in_executor(
                worker, translator.translate, path, name, checkpoint, limits, description)
            state["served"] += 1
            return JSONResponse(result)
        except UploadError as e:
            return JSONResponse({"error": str(e)}, e.status)
        except SignfuseError as e:  # the message names the user's file, not the server's folder
            message = str(e).replace(str(path), name).replace(str(folder / "description.json"), description_name)
            message = message.replace(str(folder) + "/", "")
            message = message.split("; pass --trust_pickles")[0]  # a flag this server does not offer
            return JSONResponse({"error": message}, 422)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with lock:
                state["waiting"] -= 1

    return app


async def receive(request, path: Path, name: str, limits: Limits, description=None, description_bytes=0) -> None:
    """Stream the request body into ``path``; UploadError past the size limit or when empty (a
    body announced larger than the limit is refused before it is read). With ``description``,
    the body's first ``description_bytes`` bytes are the description file (at most
    ``MAX_DESCRIPTION`` bytes), written there."""
    too_large = UploadError(413, f"{name}: larger than this server's limit ({limits.max_mb:g} MiB, --max_upload_mb)")
    if int(request.headers.get("content-length") or 0) > limits.max_bytes + description_bytes:
        raise too_large
    if not 0 <= description_bytes <= MAX_DESCRIPTION:
        raise UploadError(413, f"description file: {description_bytes} bytes, more than this server takes "
                               f"({MAX_DESCRIPTION // 1024} KiB)")
    size, head = 0, bytearray()
    with open(path, "wb") as f:
        async for chunk in request.stream():
            if len(head) < description_bytes:  # the description file comes first
                take = description_bytes - len(head)
                head += chunk[:take]
                chunk = chunk[take:]
            size += len(chunk)
            if size > limits.max_bytes:
                raise too_large
            f.write(chunk)
    if len(head) < description_bytes:
        raise UploadError(400, f"{name}: the request ended inside its description file")
    if description is not None:
        Path(description).write_bytes(bytes(head))
    if size == 0:
        raise UploadError(400, f"{name}: an empty file")


def html_escape(text: str) -> str:
    return html.escape(text, quote=True)


def serve(args, app) -> None:
    """Run ``app`` on 127.0.0.1:``args.port`` until interrupted."""
    import uvicorn
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as e:
        raise InputError(f"--port {args.port}: cannot listen on 127.0.0.1 ({e.strerror or e})") from None
    sock.listen(128)  # connections wait in the backlog from now on, until uvicorn accepts them
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    print(f"signfuse serve: http://127.0.0.1:{sock.getsockname()[1]}/ ({len(args.finetune)} checkpoints)",
          flush=True)
    server.run(sockets=[sock])
