"""Load on ``signfuse serve``: N requests from C concurrent clients on loopback (default 20 from 4).

The server runs as its own process (``signfuse serve``, 127.0.0.1, a free port) with two tiny
checkpoints like the demo's (a pose-only and a description-gated model, random weights: the
work per request, not the words, is measured), pose extraction on the tiny ONNX models of the
tests (tests/test_pose_extraction.py; nothing is downloaded). The clients alternate uploads of
a 48-frame lossless video (extraction, translation, rendering) and of its pose file
(translation, rendering), and the two checkpoints. Measured: every answer's status (none may be
lost: each request gets a 200), latency per request, the server's resident memory (VmRSS
polled every 50 ms, and the kernel's peak VmHWM) after one request alone and after each of
``--rounds`` rounds of the load, side by side: bounded memory means a second round's peak is the
first's. Writes docs/results/bench_serve.json (``--out``).

    python benchmarks/bench_serve.py [--requests 20] [--clients 4]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from common import REPO, add_out_arg, machine_info, write_result

sys.path.insert(0, str(REPO / "tests"))  # the tiny ONNX pose models and drawn signers of the tests


def make_inputs(root: Path) -> dict:
    """Two tiny checkpoints, the tiny ONNX models, a lossless video and its pose file."""
    import torch
    from signfuse.config import ModelConfig
    from signfuse.models.uni_sign import attach_text_source, build_model
    from signfuse.training import model_setup
    from test_pose_extraction import make_detector, make_pose_model, one_person_frames, write_video
    ckpts = []
    for name, descriptions in (("pose_only", False), ("gated", True)):
        model = build_model(ModelConfig(dataset="Synthetic", use_descriptions=descriptions), "tiny", seed=0)
        if descriptions:
            attach_text_source(model, SimpleNamespace(mt5_model="tiny"))
        recorded = SimpleNamespace(mt5_model="tiny", dataset="Synthetic", use_descriptions=descriptions,
                                   describe="rules" if descriptions else None)
        torch.save(model_setup.checkpoint_dict(model.eval(), model.cfg, recorded, epoch=1), root / f"{name}.pth")
        ckpts.append(root / f"{name}.pth")
    frames, _ = one_person_frames(48)
    return {"ckpts": ckpts, "det": make_detector(root / "det.onnx"), "pose": make_pose_model(root / "pose.onnx"),
            "video": write_video(root / "sign.mp4", frames)}


def start_server(inputs: dict, max_queue: int) -> tuple:
    """(process, base URL) of ``signfuse serve`` on a free port of 127.0.0.1."""
    command = [str(Path(sys.executable).parent / "signfuse"), "serve", "--finetune", *map(str, inputs["ckpts"]),
               "--port", "0", "--det", str(inputs["det"]), "--pose", str(inputs["pose"]), "--mt5_model", "tiny",
               "--device", "cpu", "--num_beams", "1", "--max_new_tokens", "8", "--max_queue", str(max_queue)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = server.stdout.readline()  # "signfuse serve: http://127.0.0.1:PORT/ (...)"
    if not line.startswith("signfuse serve: "):
        server.kill()
        raise SystemExit(f"the server did not start: {line}{server.stderr.read()[-2000:]}")
    return server, line.split()[2].rstrip("/")


def memory(pid: int) -> dict:
    """{'VmRSS', 'VmHWM'} of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def request(url: str, body: bytes, name: str, checkpoint: int) -> dict:
    params = urllib.parse.urlencode({"checkpoint": checkpoint, "filename": name})
    req = urllib.request.Request(f"{url}/api/translate?{params}", data=body, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as response:
            status, answer = response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        status, answer = e.code, json.loads(e.read())
    except OSError as e:  # refused, reset: a lost request
        status, answer = None, {"error": str(e)}
    return {"status": status, "seconds": time.perf_counter() - start, "kind": answer.get("kind"),
            "error": answer.get("error")}


def load(url: str, uploads: list, requests: int, clients: int) -> list:
    """``requests`` requests from ``clients`` threads (client c sends requests c, c + clients, ...)."""
    results = [None] * requests

    def client(c):
        for i in range(c, requests, clients):
            body, name, checkpoint = uploads[i % len(uploads)]
            results[i] = request(url, body, name, checkpoint)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of --requests (memory after each, side by side)")
    add_out_arg(parser, "serve")
    args = parser.parse_args(argv)
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp))
        server, url = start_server(inputs, max_queue=args.clients)
        try:
            figures = measure(server, url, inputs, args)
        finally:
            server.terminate()
            server.wait(30)
    settings = {"requests": args.requests, "clients": args.clients, "rounds": args.rounds, "video": "160x120, 48 frames, lossless",
                "model": "tiny mT5, pose-only and gated checkpoints, greedy, 8 tokens", "server_threads": 1}
    result = write_result(args.out, figures, settings, info, argv=argv)
    print(json.dumps(result["figures"], indent=2))
    return result


def measure(server, url: str, inputs: dict, args) -> dict:
    video = Path(inputs["video"]).read_bytes()
    at_start = memory(server.pid)
    first = request(url, video, "sign.mp4", 1)  # one request alone (a model is built here)
    after_one = memory(server.pid)
    pose = _pose_of(inputs)
    uploads = [(video, "sign.mp4", 0), (pose, "sign.pkl", 1), (video, "sign.mp4", 1), (pose, "sign.pkl", 0)]
    rounds = []
    for _ in range(args.rounds):
        rounds.append(one_round(server, url, uploads, args))
    return {"first_request": {"status": first["status"], "seconds": round(first["seconds"], 3),
                              "error": first["error"]},
            "rss_mib_at_start": round(at_start["VmRSS"], 1),
            "rss_mib_after_one_request": round(after_one["VmRSS"], 1),
            "rounds": rounds,
            "lost": sum(r["lost"] for r in rounds),
            "peak_ratio_last_round_vs_first": round(rounds[-1]["rss_mib"]["peak"] / rounds[0]["rss_mib"]["peak"], 3)}


def one_round(server, url: str, uploads: list, args) -> dict:
    """``args.requests`` requests from ``args.clients`` clients, the server's memory polled meanwhile."""
    samples, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            samples.append(memory(server.pid)["VmRSS"])
            time.sleep(0.05)
    poller = threading.Thread(target=poll)
    poller.start()
    start = time.perf_counter()
    results = load(url, uploads, args.requests, args.clients)
    wall = time.perf_counter() - start
    stop.set()
    poller.join()
    after = memory(server.pid)
    seconds = [r["seconds"] for r in results]
    return {"answered_200": sum(r["status"] == 200 for r in results), "lost": sum(r["status"] != 200 for r in results),
            "errors": sorted({r["error"] for r in results if r["error"]}),
            "wall_s": round(wall, 2), "requests_per_s": round(len(results) / wall, 3),
            "latency_s": {"median": round(statistics.median(seconds), 3), "max": round(max(seconds), 3),
                          "min": round(min(seconds), 3)},
            "rss_mib": {"polled_max": round(max(samples), 1), "peak": round(after["VmHWM"], 1),
                        "after": round(after["VmRSS"], 1)}}


def _pose_of(inputs: dict) -> bytes:
    """The video's pose file, extracted as the server does (translate's extraction, tiny models)."""
    from signfuse.inference import pose_extraction
    out = Path(inputs["video"]).with_name("extracted.pkl")
    extractor = pose_extraction.PoseExtractor(pose_extraction.DEFAULT_MODE, str(inputs["det"]), str(inputs["pose"]),
                                              "cpu")
    pose_extraction.extract_one(extractor, inputs["video"], out, overwrite=True)
    return out.read_bytes()


if __name__ == "__main__":
    main()
