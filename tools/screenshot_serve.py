"""A screenshot of ``signfuse serve``'s page after a translation, taken with headless Chromium.

    python tools/screenshot_serve.py --upload FILE [--description FILE.json] [--checkpoint NAME] \
        --out docs/serve.png -- SERVE_FLAGS

SERVE_FLAGS are ``signfuse serve``'s (``--finetune CKPT ...``, ``--mt5_model``, ...); the server
runs in this process on a free port of 127.0.0.1. Needs Debian's chromium and Playwright
(``bash tools/setup.sh`` installs both).
"""
import argparse
import shutil
import socket
import sys
import threading
import time


def main() -> None:
    argv = sys.argv[1:]
    serve_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upload", required=True, help="the video or pose file to translate")
    parser.add_argument("--description", default=None, help="its description file (optional)")
    parser.add_argument("--checkpoint", default=None, help="the checkpoint's name in the page's list")
    parser.add_argument("--out", default="docs/serve.png")
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    import uvicorn
    from playwright.sync_api import expect, sync_playwright
    from signfuse import cli
    from signfuse.commands.serve import make_app
    p = cli.build_parser()
    serve_args = p.parse_args(["serve", *serve_flags])
    serve_args.given_flags = cli.given_flags(p, ["serve", *serve_flags])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(make_app(serve_args), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        if args.checkpoint:
            page.select_option("#checkpoint", label=args.checkpoint)
        page.set_input_files("#file", args.upload)
        if args.description:
            page.set_input_files("#description", args.description)
        page.click("#go")
        expect(page.locator("#translation")).to_be_visible(timeout=600_000)
        page.wait_for_timeout(1500)  # the video's first frames
        page.screenshot(path=args.out, full_page=True)
        print(f"{args.out}: {page.inner_text('#translation')}")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
