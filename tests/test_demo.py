"""The browser demo: its routes, and the page itself in headless Chromium driven by Playwright.

The browser tests need Debian's `chromium` (or STREAMER_CHROMIUM pointing at a Chromium) and the
`playwright` package; without them they are skipped. CI (.ci/run) installs both. Headless Chromium
needs no sound device: with none it renders audio on a fake output whose clock runs in real time,
so the worklet's played-sample counter moves as it would on speakers.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import msgpack
import pytest

from streamer.api.demo import web_dir

from .conftest import TIMESCALE, ServerProcess, running_server

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
LONG_TEXT = (
    "Streaming speech starts playing while the rest is still on its way. "
    "This paragraph is long enough to keep talking for many seconds, so that the test can "
    "listen to it play, cut it off in the middle, and check that nothing of it is left behind. "
    "Every frame carries its generation, and frames of an older generation are never played."
)
API_KEY = "demo-test-key"


def wait_s(seconds: float) -> float:
    return seconds * TIMESCALE


def ms(seconds: float) -> float:
    return seconds * TIMESCALE * 1000


# ---- the routes, with no browser -----------------------------------------------------------------


def test_root_and_demo_redirect_to_the_page(espeak_server: ServerProcess) -> None:
    with httpx.Client(base_url=espeak_server.http_url, timeout=10) as http:
        for path in ("/", "/demo"):
            response = http.get(path)
            assert response.status_code == 307
            assert response.headers["location"].endswith("/demo/")
        page = http.get("/demo/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="app.js"' in page.text
        for asset, kind in (
            ("app.js", "javascript"),
            ("msgpack.js", "javascript"),
            ("player-worklet.js", "javascript"),
            ("demo.css", "text/css"),
        ):
            response = http.get(f"/demo/{asset}")
            assert response.status_code == 200, asset
            assert kind in response.headers["content-type"], asset
        missing = http.get("/demo/nothing-here.js")
        assert missing.status_code == 404
        assert missing.json()["error_type"] == "not_found"


def test_web_dir_prefers_the_wheels_copy(tmp_path: Path) -> None:
    package = tmp_path / "streamer"
    assert web_dir(package) is None
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("checkout")
    assert web_dir(package) == tmp_path / "web"
    (package / "_web").mkdir(parents=True)
    (package / "_web" / "index.html").write_text("wheel")
    assert web_dir(package) == package / "_web"
    assert web_dir() == ROOT / "web"  # this checkout


# ---- the page in a browser -----------------------------------------------------------------------


def chromium_path() -> str | None:
    return os.environ.get("STREAMER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def no_browser(reason: str) -> NoReturn:
    # .ci/run sets STREAMER_REQUIRE_BROWSER: there a missing browser is a broken install, not a skip.
    if os.environ.get("STREAMER_REQUIRE_BROWSER"):
        pytest.fail(f"STREAMER_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        no_browser("there is no Chromium: apt-get install chromium (or set STREAMER_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the playwright package is not installed (it is in the dev extra)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


class DemoPage:
    """One tab on the demo, with every console error and uncaught exception it produced."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 960})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.set_default_timeout(ms(10))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-loaded=true]")

    def state(self, key: str) -> Any:
        return self.page.evaluate(f"window.demoState[{key!r}]")

    def wait_for(self, expression: str, timeout_s: float = 10) -> None:
        self.page.wait_for_function(expression, timeout=ms(timeout_s))

    def played_after(self, seconds: float) -> tuple[int, int]:
        """The worklet's played-sample counter now and ``seconds`` later."""
        first = self.state("playedSamples")
        time.sleep(wait_s(seconds))
        return first, self.state("playedSamples")

    def speak(self, text: str, tokens: bool = False, rate: int = 20) -> None:
        self.page.fill("#text", text)
        self.page.check(f'input[name="mode"][value="{"tokens" if tokens else "whole"}"]')
        self.page.fill("#rate", str(rate))
        played = self.state("playedSamples")
        self.page.click("#speak")
        self.wait_for(f"window.demoState.playedSamples > {played}")

    def interrupt(self) -> int:
        """Press Interrupt; the generation the server answered with."""
        generation = self.state("generation")
        self.page.click("#interrupt")
        self.wait_for(f"window.demoState.generation > {generation}")
        return self.state("generation")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def demo(browser: Any, espeak_server: ServerProcess) -> Iterator[DemoPage]:
    page = DemoPage(browser, f"{espeak_server.http_url}/")
    try:
        yield page
    finally:
        page.close()


def test_page_loads_with_choices_from_the_rest_api(demo: DemoPage, espeak_server: ServerProcess) -> None:
    engines = httpx.get(f"{espeak_server.http_url}/api/v1/engines", timeout=10).json()
    available = [e["name"] for e in engines if e["available"]]
    page = demo.page
    options = page.eval_on_selector_all("#engine option:not([disabled])", "els => els.map(e => e.value)")
    assert options == available
    assert page.input_value("#engine") == next(e["name"] for e in engines if e["default"])
    voices = httpx.get(f"{espeak_server.http_url}/api/v1/engines/espeak/voices", timeout=10).json()
    listed = page.eval_on_selector_all("#voice optgroup option", "els => els.map(e => e.value)")
    assert sorted(listed) == sorted(v["name"] for v in voices)
    formats = page.eval_on_selector_all("#format option", "els => els.map(e => e.value)")
    assert "pcm" in formats and page.input_value("#format") == "pcm"
    assert demo.state("status") == "disconnected"
    assert demo.errors == []


def test_msgpack_decoder_and_resampler_in_the_page(demo: DemoPage) -> None:
    message = {
        "type": "audio",
        "generation": 3,
        "seq": 70000,
        "sample_rate": 44100,
        "text_start": None,
        "flag": True,
        "gain": -1.5,
        "numbers": [0, -1, -33, -129, -40000, -(2**31) - 1, 2**40, 255, 65535, 2**32 + 1],
        "text": "é" * 40 + "x" * 70000,
        "data": bytes(range(256)) * 300,
    }
    packed = base64.b64encode(msgpack.packb(message, use_bin_type=True)).decode()
    decoded = demo.page.evaluate(
        """async (packed) => {
            const { decode } = await import("./msgpack.js");
            const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
            const message = decode(bytes);
            return { ...message, data: Array.from(message.data.subarray(0, 300)), size: message.data.length };
        }""",
        packed,
    )
    assert decoded["size"] == len(message["data"])
    assert decoded.pop("data") == list(message["data"][:300])  # type: ignore[index]
    del decoded["size"]
    assert decoded == {k: v for k, v in message.items() if k != "data"}

    # 24 kHz frames of odd sizes to 44.1 kHz: as long as the whole, and as smooth as one sine.
    worst, produced = demo.page.evaluate(
        """async () => {
            const { Resampler } = await import("./app.js");
            const from = 24000, to = 44100, tone = (t) => Math.sin(2 * Math.PI * 440 * t);
            const signal = Float32Array.from({ length: from }, (_, i) => tone(i / from));
            const resampler = new Resampler(from, to);
            const out = [];
            for (let i = 0, k = 0; i < signal.length; k++) {
                const n = Math.min([960, 17, 1, 2000, 333][k % 5], signal.length - i);
                out.push(...resampler.process(signal.subarray(i, i + n)));
                i += n;
            }
            let worst = 0;
            out.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - tone(j / to)))));
            return [worst, out.length];
        }"""
    )
    assert abs(produced - 44100) <= 2
    assert worst < 0.01
    assert demo.errors == []


def test_speak_plays_live_and_interrupt_silences_at_once(demo: DemoPage) -> None:
    demo.speak(LONG_TEXT)
    assert demo.state("status") == "ready"
    demo.wait_for(r"/^\d+ ms$/.test(document.getElementById('ttfa').textContent)")
    assert 0 < demo.state("ttfaMs") < 5000 * TIMESCALE
    before, after = demo.played_after(0.4)
    assert after > before, "the worklet's played counter does not rise"
    assert demo.state("lastSeq") >= 0
    demo.wait_for("window.demoState.firstSoundMs !== null")
    ARTIFACTS.mkdir(exist_ok=True)
    demo.page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    assert demo.state("bufferedFrames") > 0, "the whole paragraph should not have played yet"

    old = demo.state("generation")
    new = demo.interrupt()
    assert new == old + 1
    demo.wait_for(f"document.getElementById('generation').textContent === '{new}'")  # the read-out
    first, second = demo.played_after(0.3)
    assert second == first, "audio kept playing after Interrupt"
    assert demo.state("bufferedFrames") == 0
    assert demo.state("staleBufferedFrames") == 0
    assert demo.state("playing") is False
    time.sleep(wait_s(0.3))
    assert demo.state("playedSamples") == second
    assert demo.state("bufferedFrames") == 0, "frames of the old generation were queued after Interrupt"
    assert demo.errors == []


def test_token_by_token_streams_and_interrupt_stops_the_tokens(demo: DemoPage) -> None:
    demo.speak(LONG_TEXT, tokens=True, rate=25)
    assert demo.state("ttfaMs") is not None
    sent, total = demo.state("tokensSent"), demo.state("tokensTotal")
    assert 0 < sent < total, "the tokens went out at once, not at the chosen rate"
    before, after = demo.played_after(0.3)
    assert after > before
    assert demo.state("tokensSent") > sent
    demo.interrupt()
    stopped = demo.state("tokensSent")
    first, second = demo.played_after(0.3)
    assert second == first
    assert demo.state("tokensSent") == stopped < total
    assert demo.state("bufferedFrames") == 0
    assert "interrupted" in demo.state("events")

    # The session goes on in the new generation.
    done = "window.demoState.events.filter(e => e === 'done').length"
    turns_done = demo.page.evaluate(done)
    demo.speak("And now something new.")
    before, after = demo.played_after(0.2)
    assert after > before
    demo.wait_for(f"{done} > {turns_done}")
    assert demo.errors == []


def test_sessions_panel_lists_the_page_session_and_interrupts_it(demo: DemoPage) -> None:
    demo.speak(LONG_TEXT)
    session_id = demo.state("sessionId")
    page = demo.page
    page.click("#refresh-sessions")
    row = page.locator(f'tr[data-session-id="{session_id}"]')
    row.wait_for()
    assert "this page" in row.inner_text()
    generation = demo.state("generation")
    row.get_by_role("button", name="Interrupt").click()
    demo.wait_for(f"window.demoState.generation > {generation}")  # the server's `interrupted` reached us
    row.get_by_role("button", name="Details").click()
    page.wait_for_selector("#session-details:not([hidden])")
    assert session_id in page.inner_text("#session-details")
    row.get_by_role("button", name="Close").click()
    demo.wait_for("window.demoState.status === 'closed'")
    page.locator(f'tr[data-session-id="{session_id}"]').wait_for(state="detached")
    assert demo.errors == []


def test_a_server_with_api_keys_asks_for_one(browser: Any, tmp_path: Path) -> None:
    config = {
        "tts": {"engine": "espeak"},
        "pool": {"workers": 1},
        "audio": {"default_format": "pcm"},
        "security": {"api_keys": [API_KEY]},
    }
    with running_server(tmp_path, config) as server:
        if httpx.get(f"{server.http_url}/api/v1/engines", timeout=10).status_code != 401:
            pytest.skip("this build does not enforce security.api_keys")
        demo = DemoPage(browser, f"{server.http_url}/")
        try:
            page = demo.page
            assert demo.state("needsKey") is True
            assert "needs an API key" in page.inner_text("#auth-message")
            assert page.locator("#engine option").count() == 0
            page.click("#speak")  # no key yet: asks for it, opens no socket
            assert demo.state("status") == "disconnected"
            page.fill("#api-key", API_KEY)
            page.click("#use-key")
            demo.wait_for(
                "!window.demoState.needsKey && document.querySelectorAll('#engine option').length > 0"
            )
            demo.speak("The key works.")
            assert demo.state("sessionId")
            # The only errors: the browser's own report of the first 401.
            assert demo.errors, "expected the browser to log the 401"
            assert all("401" in e for e in demo.errors), demo.errors
        finally:
            demo.close()


def test_the_page_works_under_a_path_prefix(browser: Any, tmp_path: Path) -> None:
    """`--root-path /tts` behind a proxy that strips the prefix: the page must call /tts/api/v1/... and
    open ws://host/tts/api/v1/stream. Playwright's request routing plays the proxy for the page's HTTP
    requests (it does not see WebSockets or AudioWorklet modules, so the stream URL is read, not used)."""
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 1}, "audio": {"default_format": "pcm"}}
    with running_server(tmp_path, config, args=("--root-path", "/tts")) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            asked: list[str] = []

            def strip_prefix(route: Any) -> None:
                asked.append(route.request.url.split("/tts/", 1)[1])
                route.continue_(url=route.request.url.replace("/tts/", "/", 1))

            page.route("**/tts/**", strip_prefix)
            page.set_default_timeout(ms(10))
            page.goto(f"{server.http_url}/tts/demo/")
            page.wait_for_selector("body[data-loaded=true]")
            page.wait_for_function("document.querySelectorAll('#engine option').length > 0")
            page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
            assert {"api/v1/engines", "api/v1/formats", "api/v1/engines/espeak/voices"} <= set(asked), asked
            stream = page.evaluate("window.demoState.streamUrl")
            assert stream == f"ws://127.0.0.1:{server.http_port}/tts/api/v1/stream"
            # REST-created sessions name the same reachable URL, not the internal WebSocket port
            created = httpx.post(f"{server.http_url}/api/v1/sessions", json={}, timeout=10).json()
            assert created["ws_url"] == stream
        finally:
            context.close()
