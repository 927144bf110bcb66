"""`signfuse serve` in a real browser: headless Chromium (Debian's package, which tools/setup.sh
installs) driven by Playwright uploads a generated lossless video with its description file and
reads the translation on the page (the same as `signfuse translate` on that file), uploads a
pose file, then a malformed file and reads the message. The test fails when Chromium is missing."""
import json
import shutil

import pytest

from seeing import FAST, running_server, signfuse, tiny_checkpoints
from test_pose_extraction import make_detector, make_pose_model, one_person_frames, write_video


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium not found: bash tools/setup.sh installs it (apt-get install chromium)", pytrace=False)
    return path


def test_the_page_translates_like_the_command(tmp_path, capsys):
    from playwright.sync_api import expect, sync_playwright
    ckpts = tiny_checkpoints(tmp_path)
    models = ["--det", make_detector(tmp_path / "det.onnx"), "--pose", make_pose_model(tmp_path / "pose.onnx")]
    frames, _ = one_person_frames(12)
    video = write_video(tmp_path / "videos" / "sign.mp4", frames)
    description = tmp_path / "sign.json"
    description.write_text(json.dumps({"0": "right hand moves up", "6": "hand touches chin", "11": "hands rest"}))
    status, expected, err = signfuse(capsys, "translate", video, "--finetune", ckpts.gated, *models, *FAST,
                                     "--description", description)
    assert status == 0 and expected.strip(), err
    pose_file = video.with_name("sign.pose.pkl")  # translate's pose file of the video
    status, predicted, err = signfuse(capsys, "predict", "--finetune", ckpts.pose_only, "--pose", pose_file, *FAST)
    assert status == 0, err
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"this is not a video, whatever its name says\n" * 20)
    with running_server("--finetune", ckpts.pose_only, ckpts.gated, *models, *FAST) as (url, app), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.select_option("#checkpoint", label="gated.pth")
            page.set_input_files("#file", str(video))
            page.set_input_files("#description", str(description))
            # the progress indicator while the server works: recorded by the page itself (however fast the answer)
            page.evaluate("""() => new MutationObserver(() => {
                if (document.getElementById("progress").style.display === "flex")
                    window.progressShown = document.getElementById("go").disabled; }).observe(
                document.getElementById("progress"), {attributes: true})""")
            page.click("#go")
            expect(page.locator("#translation")).to_be_visible(timeout=120_000)
            assert page.evaluate("window.progressShown") is True  # shown, with the button disabled
            assert page.inner_text("#translation") == expected.strip()
            assert page.locator("#timeline tr").count() == 1 + 12  # header + the 12 sampled frames
            assert page.inner_text("#timeline tr:nth-child(2) td:nth-child(2)") == "right hand moves up"
            assert page.locator("#gateplot").is_visible() and page.locator("#progress").is_hidden()
            page.select_option("#checkpoint", label="pose_only.pth")
            page.set_input_files("#file", str(pose_file))
            page.set_input_files("#description", [])
            page.click("#go")
            expect(page.locator("#meta")).to_contain_text("pose_only.pth", timeout=120_000)
            assert page.inner_text("#translation") == predicted.strip()
            assert page.inner_text("#gatenote") == "This checkpoint fuses no descriptions: no gate."
            page.set_input_files("#file", str(bad))
            page.click("#go")
            expect(page.locator("#error")).to_be_visible(timeout=60_000)
            assert page.inner_text("#error") == ("notes.mp4: neither a video nor a pose file (a video needs a video "
                                                 "stream PyAV can decode; a pose file is a pickle of keypoints and "
                                                 "scores)")
            assert page.locator("#result").is_hidden()
        finally:
            browser.close()
        assert list(app.state.temp_root.iterdir()) == []
