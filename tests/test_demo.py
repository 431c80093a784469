"""gi-sdk demo on the stream: flags and YAML, the MP4 with its overlay, the clear error without a
model, the drawing rules, and the web viewer seen by a real headless browser (Debian's chromium)."""
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from gi_sdk.cli import main  # noqa: E402
from gi_sdk.demo import DemoConfig, run_demo  # noqa: E402
from gi_sdk.errors import ConfigError  # noqa: E402
from gi_sdk.overlay import draw_stream_frame  # noqa: E402
from gi_sdk.result import Result  # noqa: E402
from gi_sdk.stream import StreamFrame  # noqa: E402
from gi_sdk.synthetic import SyntheticEndoscope  # noqa: E402
from gi_sdk.webview import WebViewer  # noqa: E402

from video_files import read_frames  # noqa: E402

W, H = 320, 240
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


# ------------------------------------------------------------------ the command line
def test_demo_flags_write_the_overlay_video_and_the_log(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out, log = tmp_path / "demo.mp4", tmp_path / "demo.jsonl"
    rc = main(["demo", "--model", str(tiny_checkpoint), "--out", str(out), "--frames", "20",
               "--width", str(W), "--height", str(H), "--ask", "Is there a polyp?", "--ask-every", "0",
               "--max-new-tokens", "4", "--log", str(log), "--window", "--backend", "torch", "--unconfirmed", "hide"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "no window: no display" in printed            # asked for a window where none can open
    for words in (f"wrote 20 frames to {out}", "pass-through delay p50", "distinct objects tracked",
                  "in the synthetic truth", f"results log: {log}"):
        assert words in printed
    frames = read_frames(out)
    assert len(frames) == 20 and frames[0].shape == (H, W, 3)
    # the HUD is drawn in the top-left corner; far from it the picture is the source's own
    raw = SyntheticEndoscope(seed=0, width=W, height=H).frame(19)[0].astype(int)
    diff = np.abs(frames[19].astype(int) - raw).mean(axis=2)
    assert diff[:60, :200].mean() > 4 * diff[120:200, 200:300].mean()
    assert '"task": "detect"' in log.read_text()


def test_an_out_folder_gets_the_video_under_its_default_name(tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    rc = main(["demo", "--model", str(tiny_checkpoint), "--out", str(folder), "--frames", "5", "--width", str(W),
               "--height", str(H), "--max-new-tokens", "4", "--no-window", "--backend", "torch"])
    assert rc == 0 and f"wrote 5 frames to {folder / 'overlay.mp4'}" in capsys.readouterr().out
    assert len(read_frames(folder / "overlay.mp4")) == 5


def test_the_question_is_answered_on_the_live_video_while_detection_goes_on(tiny_checkpoint, tmp_path):
    log = tmp_path / "demo.jsonl"
    config = DemoConfig.from_dict({
        "source": {"uri": "synthetic", "frames": 3000, "width": W, "height": H},
        "model": {"path": str(tiny_checkpoint), "backend": "torch"},
        "tasks": {"ask": "Is there a polyp?", "ask_every_s": 0, "max_new_tokens": 4},
        "outputs": {"mp4": str(tmp_path / "ask.mp4"), "window": False, "log": str(log)},
    })
    stop = threading.Event()

    def stop_after_two_answers():   # as a user pressing q once the answer is on screen
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            if log.exists() and log.read_text().count('"task": "ask"') >= 2:
                time.sleep(0.3)
                stop.set()
            time.sleep(0.05)

    threading.Thread(target=stop_after_two_answers, daemon=True).start()
    summary = run_demo(config, log=lambda line: None, stop=stop)
    assert stop.is_set() and summary["answer"] is not None
    text = log.read_text()
    assert '"task": "detect"' in text and text.count('"task": "ask"') >= 2
    # the last frames carry the answer along the bottom edge ("Q: ... A: ...")
    frames = read_frames(tmp_path / "ask.mp4")
    raw = SyntheticEndoscope(seed=0, width=W, height=H).frame(len(frames) - 1)[0].astype(int)
    diff = np.abs(frames[-1].astype(int) - raw).mean(axis=2)
    assert diff[H - 20:H - 5, 10:150].mean() > 4 * diff[120:200, 200:300].mean()


def test_a_yaml_config_replaces_the_flags_and_flags_override_it(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "from_yaml.mp4"
    config = tmp_path / "demo.yaml"
    config.write_text(f"""
source: {{uri: "synthetic:2", frames: 50, width: {W}, height: {H}}}
model: {{path: "{tiny_checkpoint}", backend: torch}}
tasks: {{detect: false, segment: polyp, max_new_tokens: 4}}
overlay: {{alpha: 0.5}}
outputs: {{mp4: "{out}", window: false}}
""")
    assert main(["demo", "--config", str(config), "--frames", "6"]) == 0
    assert f"wrote 6 frames to {out}" in capsys.readouterr().out
    assert len(read_frames(out)) == 6


@pytest.mark.parametrize("text,match", [
    ("sources: {uri: x}", "unknown section"),
    ("source: {url: x}", "unknown key 'url' in section 'source'"),
    ("- a list", "expected a mapping"),
    ("source: synthetic", "section 'source' must be a mapping"),
    ("source: {uri: [unclosed", "not valid YAML"),
    ("overlay: {unconfirmed: dim}", "overlay.unconfirmed is 'dim'; give one of faint, hide, show"),
])
def test_a_bad_yaml_config_is_a_clear_error(tmp_path, capsys, text, match):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["demo", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_without_a_model_the_demo_says_how_to_get_one(capsys, tmp_path, monkeypatch):
    import gi_sdk.bundle

    # a package whose built-in model was not built (a source checkout before `make builtin-model`)
    monkeypatch.setattr(gi_sdk.bundle, "BUILTIN_DIR", tmp_path / "synthetic-demo")
    assert main(["demo", "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "built-in model is not built yet" in err and "--model FOLDER" in err


def test_no_task_is_a_config_error():
    config = DemoConfig()
    config.set("tasks", "detect", False)
    with pytest.raises(ConfigError, match="no task chosen"):
        config.task_and_text()


# ------------------------------------------------------------------ drawing
def test_the_overlay_changes_only_markers_labels_and_the_hud():
    frame = np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8)
    result = Result(task="segment", boxes=[[100, 100, 160, 150]], labels=["polyp"], points=[[130, 125]],
                    polygons=[[[[100, 100], [160, 100], [160, 150], [100, 150]]]], confidence=0.87)
    fr = StreamFrame(frame_id=7, timestamp=0.0, frame=frame, result=result, track_ids=np.array([3]),
                     skipped=0, passthrough_ms=1.0, seen={"polyp": 1})
    shown = draw_stream_frame(fr, hud=["fps 30"], alpha=0.35)
    changed = np.any(shown != frame, axis=2)
    markers = np.zeros_like(changed)
    markers[:90, :200] = True            # HUD lines
    markers[75:155, 95:W] = True         # box, fill, outline and its caption above the box
    assert changed[markers].any() and not changed[~markers].any()
    inside = shown[125, 130].astype(int)  # the translucent fill: between the pixel and the colour
    expected = 0.35 * np.array([60, 255, 60]) + 0.65 * frame[125, 130]
    assert np.abs(inside - expected).max() <= 1.5
    assert shown is not frame and np.array_equal(fr.frame, frame)   # drawn on a copy



def test_what_the_tracker_has_not_confirmed_is_drawn_faint_hidden_or_in_full():
    """Track id -1 (not confirmed): "faint" a 1-pixel outline with no fill and no caption,
    "hide" nothing, "show" like a tracked instance; the confirmed one is drawn in full each time."""
    frame = np.full((H, W, 3), 90, np.uint8)
    square = lambda x: [[[x, 60], [x + 60, 60], [x + 60, 120], [x, 120]]]   # noqa: E731
    result = Result(task="segment", boxes=[[20, 60, 80, 120], [200, 60, 260, 120]], labels=["polyp", "polyp"],
                    points=[[50, 90], [230, 90]], polygons=[square(20), square(200)], scores=[0.7, 0.9],
                    confidence=0.8)
    fr = StreamFrame(frame_id=1, timestamp=0.0, frame=frame, result=result, track_ids=np.array([-1, 4]),
                     skipped=0, passthrough_ms=1.0, seen={"polyp": 1})
    changed = {style: np.any(draw_stream_frame(fr, unconfirmed=style) != frame, axis=2)
               for style in ("faint", "hide", "show")}
    left, right = (slice(30, 140), slice(0, 120)), (slice(30, 140), slice(180, W))   # boxes with captions
    for style in changed:   # the confirmed instance: outline, fill and caption, whatever the style
        assert np.array_equal(changed[style][right], changed["show"][right])
    assert not changed["hide"][left].any()
    assert 0 < changed["faint"][left].sum() < changed["show"][left].sum() // 4
    assert not changed["faint"][90, 50] and changed["show"][90, 50]          # no fill inside the faint one
    assert not changed["faint"][35:58, 15:120].any() and changed["show"][35:58, 15:120].any()   # nor a caption
    with pytest.raises(ValueError, match="unconfirmed='dim'"):
        draw_stream_frame(fr, unconfirmed="dim")


@pytest.mark.parametrize("scale", [0.48, 0.6, 1.2])
def test_a_captions_dark_outline_hugs_its_own_letters(scale):
    """The outline is the letters grown by one pixel: no dark copy drifting beside them
    (OpenCV 5 spaces a thicker stroke's glyphs wider, which doubled a label's figures)."""
    from gi_sdk.overlay import _text

    frame = np.full((80, 400, 3), 200, np.uint8)          # light grey: dark and green both show
    _text(frame, "polyp #1 0.72 88.8", (10, 50), scale, (60, 255, 60))
    ink = frame[..., 1].astype(int) - frame[..., 0].astype(int) > 40       # green text
    dark = frame.max(axis=2) < 120                                         # the outline
    assert ink.sum() > 50 and dark.sum() > 50
    near_ink = cv2.dilate(ink.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert not (dark & ~near_ink).any()   # every outline pixel within 2 px of a letter
    _text(frame, "cut off at the corner", (-30, 4), scale)   # partly outside the frame: no error


# ------------------------------------------------------------------ the web viewer
def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


def test_the_web_viewer_serves_the_page_the_newest_frame_and_mjpeg():
    frame = SyntheticEndoscope(seed=1, width=W, height=H).frame(0)[0]
    with WebViewer(port=0) as viewer:
        assert viewer.url.startswith("http://127.0.0.1:")   # this machine only, unless told otherwise
        status, kind, page = _get(viewer.url)
        assert status == 200 and b'src="stream.mjpg"' in page
        viewer.publish(frame)
        status, kind, body = _get(viewer.url + "frame.jpg")
        decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert kind == "image/jpeg" and np.abs(decoded.astype(int) - frame).mean() < 3
        with urllib.request.urlopen(viewer.url + "stream.mjpg", timeout=10) as response:
            assert response.headers.get("Content-Type").startswith("multipart/x-mixed-replace")
            head = response.read(200)
            assert head.startswith(b"--gi-sdk-frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in head
        with pytest.raises(urllib.error.HTTPError):
            _get(viewer.url + "nothing-here")
        url = viewer.url
    with pytest.raises(urllib.error.URLError):   # closed: the port no longer answers
        _get(url, timeout=2)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary; install Debian's with: apt-get install -y chromium")
def test_a_headless_browser_shows_the_live_demo(tiny_checkpoint, tmp_path):
    config = DemoConfig.from_dict({
        "source": {"uri": "synthetic", "frames": 900, "width": 640, "height": 480},
        "model": {"path": str(tiny_checkpoint), "backend": "torch"},
        "tasks": {"max_new_tokens": 4},
        "outputs": {"mp4": None, "window": False, "web": True, "port": 0},
    })
    lines, stop, summary = [], threading.Event(), {}
    demo = threading.Thread(target=lambda: summary.update(run_demo(config, log=lines.append, stop=stop)))
    demo.start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("web viewer: ") for line in lines):
            assert demo.is_alive() and time.monotonic() < deadline, lines
            time.sleep(0.05)
        url = next(line for line in lines if line.startswith("web viewer: ")).split()[2]
        shot = tmp_path / "viewer.png"
        proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--window-size=800,600", f"--screenshot={shot}", url],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    finally:
        stop.set()
        demo.join(60)
    assert not demo.is_alive() and summary["frames"] > 0
    png = cv2.imread(str(shot))
    assert png.shape[:2] == (600, 800)
    # the page is dark grey; the video is colonoscopy: warm reddish mucosa and the HUD's text
    b, g, r = (png[..., i].astype(int) for i in range(3))
    mucosa = (r > 90) & (r > g + 25) & (r > b + 25)
    assert mucosa.mean() > 0.10, f"only {mucosa.mean():.1%} of the screenshot looks like the video"
    assert png.std() > 30
