"""The page of ``edgevlm serve`` in a real browser (Debian's headless Chromium through Playwright)
against the real app: the shipped default engine narrating the shipped street clip, paced like
a camera.

What a blind or low-vision user relies on, checked as behaviour (never as durations):
narration reaches the polite live region, answers the assertive one and the browser's voice;
every control is reached with Tab and shows a visible focus ring; the speech switch toggles
with Space and Enter; axe-core finds nothing serious or critical; the page reflows at 320 px;
a dropped connection, its return and a removed stream are each announced; a token given in
the page's address goes with every request.

The tests share one server, one browser and one page, in file order (each builds on the page
as the one before left it). The shipped clip lasts 10 s, so a test that needs a live stream
adds a fresh one (the clip three times over) through the page's own form.

Set EDGEVLM_SCREENSHOT=path.png to keep a screenshot of the page (one always goes to pytest's
tmp dir); or run ``python -m tests.serve.browser_support OUT.png``.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from tests.serve.browser_support import (PAGE_SPY, STREET_CLIP, CuttableProxy, first_caption_line, launch_chromium,
                                         missing_for_browser_test, serve_app, street_clip)

_missing = missing_for_browser_test()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

ASTRONAUT = os.path.join(os.path.dirname(STREET_CLIP), "astronaut.jpg")
WAIT_MS = 60_000  # generous: a loaded CI machine is slow, and nothing here asserts how fast
POLITE, ASSERTIVE = "live-polite", "live-assertive"
LOST = r"^Connection to the stream lost\. Reconnecting\.$"
RESTORED = r"^Connection restored\.$"

# Everything Tab can reach, as the browser decides it (visible, enabled, not tabindex=-1).
FOCUSABLE_JS = """() => [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
  .filter((e) => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length > 0)
  .map((e) => e.id || `${e.tagName.toLowerCase()}:${e.getAttribute('href') || e.textContent.trim()}`)"""
ACTIVE_JS = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const style = getComputedStyle(e);
  return {
    name: e.id || `${e.tagName.toLowerCase()}:${e.getAttribute('href') || e.textContent.trim()}`,
    outline: parseFloat(style.outlineWidth) || 0,
    outlineStyle: style.outlineStyle,
    shadow: style.boxShadow,
  };
}"""


# --------------------------------------------------------------------------- helpers
def announced(page, region: str) -> list[str]:
    """Every line the live region has received since the page loaded (PAGE_SPY's log)."""
    return page.evaluate("region => window.__announced[region]", region)


def wait_for_said(page, region: str, pattern: str, since: int = 0) -> str:
    """Wait until the live region receives a line matching ``pattern`` (a regular expression),
    counting only lines from number ``since`` on; the line."""
    try:
        page.wait_for_function(
            "([region, pattern, since]) => window.__announced[region].slice(since)"
            ".some((line) => new RegExp(pattern).test(line))",
            arg=[region, pattern, since], timeout=WAIT_MS)
    except Exception as exc:  # the log says what was announced instead
        raise AssertionError(f"{region} never said /{pattern}/; it said {announced(page, region)[since:]}") from exc
    return next(line for line in announced(page, region)[since:] if re.search(pattern, line))


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def wait_until_not(page, selector: str, placeholders: list[str]) -> str:
    """Wait until the element's text is none of ``placeholders`` (nor empty); that text."""
    page.wait_for_function("([selector, placeholders]) => !['', ...placeholders]"
                           ".includes(document.querySelector(selector).textContent.trim())",
                           arg=[selector, placeholders], timeout=WAIT_MS)
    return text_of(page, selector)


def api(server, method: str, path: str, **kwargs):
    import httpx

    response = httpx.request(method, server.url + path, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def spoken_texts(server, stream_id: str, want: str) -> set[str]:
    """Texts of the stream's caption ``spoken`` events, read from its event stream (the kept
    events are replayed to a new client at once) until ``want`` is among them or it ends."""
    import httpx

    texts: set[str] = set()
    with httpx.stream("GET", f"{server.url}/v1/streams/{stream_id}/events", timeout=30) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            record = json.loads(line[len("data: "):])
            if record.get("event") == "spoken" and not record.get("answer") and not record.get("notice"):
                texts.add(record["text"])
                if record["text"] == want:
                    break
    return texts


def add_stream_with_the_form(page, source: str) -> str:
    """Add a stream on ``source`` through the page's own form and wait until the page follows
    it; its id."""
    since = len(announced(page, POLITE))
    page.fill("#stream-source", source)
    page.press("#stream-source", "Enter")
    wait_for_said(page, POLITE, "^Added and following ", since)
    # Connected (or, for a short clip on a slow machine, already over: replayed to its end).
    page.wait_for_function("() => /^(Connected|The stream has ended)/"
                           ".test(document.getElementById('connection').textContent)", timeout=WAIT_MS)
    return page.eval_on_selector("#stream-select", "e => e.value")


def save_screenshot(page, tmp_path) -> None:
    """The page with narration, an answer and history: to pytest's tmp dir, and to
    EDGEVLM_SCREENSHOT when that is set (for the closing note)."""
    path = tmp_path / "page.png"
    page.screenshot(path=str(path), full_page=True)
    wanted = os.environ.get("EDGEVLM_SCREENSHOT")
    if wanted:
        shutil.copyfile(path, wanted)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server():
    with serve_app(sources=[STREET_CLIP]) as running:
        yield running


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """30 s of street (the clip three times): streams added by the tests outlive the test."""
    return street_clip(str(tmp_path_factory.mktemp("clips") / "street_30s.mp4"), 30)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """3 s of street: a stream that ends while the page follows it."""
    return street_clip(str(tmp_path_factory.mktemp("clips") / "street_3s.mp4"), 3)


@pytest.fixture(scope="module")
def link(server):
    """The page reaches the server through this proxy, so a test can drop the connection."""
    proxy = CuttableProxy(server.port)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, link):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.add_init_script(PAGE_SPY)
    opened = context.new_page()
    opened.goto(link.url + "/")
    yield opened
    context.close()


# --------------------------------------------------------------------------- the page, live
def test_page_is_an_accessible_document(page):
    """Language, title, landmarks, the two live regions, the alert region, a skip link."""
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.title()
    assert page.get_attribute("#live-polite", "aria-live") == "polite"
    assert page.get_attribute("#live-assertive", "aria-live") == "assertive"
    assert page.get_attribute("#error", "role") == "alert"
    for landmark in ("header", "nav", "main"):
        assert page.locator(landmark).count() == 1, landmark
    assert page.get_attribute("a.skip-link", "href") == "#main"


def test_caption_reaches_the_polite_region(page, server):
    """What narration said (a ``spoken`` event) is announced politely, spoken by the browser,
    kept in the history; the live picture shows a frame, its alt text saying what it is."""
    said = first_caption_line(page, WAIT_MS)
    assert said.strip()
    stream_id = page.eval_on_selector("#stream-select", "e => e.value")
    assert said in spoken_texts(server, stream_id, said)
    assert said in text_of(page, "#history")
    assert said in page.evaluate("window.__spoken")
    page.wait_for_selector("#frame:not([hidden])", timeout=WAIT_MS)
    assert page.get_attribute("#frame", "alt").startswith("Newest picture from ")


def test_ask_about_the_live_view(page, server, long_clip, tmp_path):
    """A typed question: the answer box shows the answer, the assertive region announces it and
    the browser's voice is handed it."""
    stream_id = add_stream_with_the_form(page, long_clip)
    since = len(announced(page, ASSERTIVE))
    page.fill("#question", "is there a person?")
    page.press("#question", "Enter")
    answer = wait_until_not(page, "#answer", ["Asking…", "No question asked yet."])
    assert text_of(page, "#error") == "", text_of(page, "#error")
    assert answer != "No answer."
    wait_for_said(page, ASSERTIVE, "^" + re.escape(answer) + "$", since)
    assert answer in page.evaluate("window.__spoken")
    save_screenshot(page, tmp_path)
    api(server, "DELETE", f"/v1/streams/{stream_id}")  # each stream narrates on the CPU: one at a time


def test_describe_and_ask_about_a_photo(page):
    """The upload path (multipart POST /v1/caption and /v1/ask), which needs no stream."""
    since = len(announced(page, ASSERTIVE))
    page.set_input_files("#photo", ASTRONAUT)
    page.click("#describe-photo")
    description = wait_until_not(page, "#photo-result", ["Nothing yet.", "Describing…"])
    assert text_of(page, "#error") == ""
    wait_for_said(page, ASSERTIVE, "^" + re.escape(description) + "$", since)

    page.fill("#photo-question", "is there a person?")
    page.press("#photo-question", "Enter")  # Enter in the question asks (it does not describe)
    page.wait_for_function("() => document.getElementById('answer-detail').textContent.includes('about the photo')",
                           timeout=WAIT_MS)
    assert text_of(page, "#error") == ""
    assert text_of(page, "#answer")


def test_server_errors_reach_the_alert_region(page):
    """A refused request (a stream source that does not exist: 400) puts the server's one-line
    message in the role="alert" region."""
    page.fill("#stream-source", "/no/such/video.mp4")
    page.press("#stream-source", "Enter")
    page.wait_for_function("() => document.getElementById('error').textContent.trim() !== ''", timeout=WAIT_MS)
    assert "/no/such/video.mp4" in text_of(page, "#error")


def test_dropped_connection_then_removed_stream_are_announced(page, server, link, long_clip):
    """The connection drops (every socket cut, new ones refused): "lost, reconnecting", once
    however many retries fail; it comes back: "restored". The stream is then deleted on the
    server: the page says so."""
    stream_id = add_stream_with_the_form(page, long_clip)
    since = len(announced(page, POLITE))
    link.cut()
    try:
        wait_for_said(page, POLITE, LOST, since)
    finally:
        link.restore()
    wait_for_said(page, POLITE, RESTORED, since)
    lost = [line for line in announced(page, POLITE)[since:] if re.search(LOST, line)]
    assert len(lost) == 1, "the loss is announced once, not on every retry"

    since = len(announced(page, POLITE))
    api(server, "DELETE", f"/v1/streams/{stream_id}")
    # Deleted by someone else: the summary's "ended_by": "removed" tells the page why it ended.
    wait_for_said(page, POLITE, r"^The stream was removed\.$", since)


def test_refused_event_stream_is_reopened(page, server, link, long_clip):
    """The event stream is cut and its reconnection refused with an HTTP error (503), after
    which EventSource gives up (CLOSED): the page announces the loss, reopens the stream
    itself with backoff while it is refused, and says "restored" once it is let through.
    Then the page's Remove button (pressed with Enter) deletes the stream: "removed"."""
    stream_id = add_stream_with_the_form(page, long_clip)
    since = len(announced(page, POLITE))
    refused = []

    def refuse(route):
        refused.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", body='{"error": "busy"}')

    page.route("**/events*", refuse)
    try:
        link.cut()  # drops the open event stream; its reconnection meets the 503
        link.restore()
        wait_for_said(page, POLITE, LOST, since)
        # EventSource's own try, then at least one reopen by the page; route handlers run
        # while Playwright waits, so wait in small steps.
        for _ in range(WAIT_MS // 200):
            if len(refused) >= 2:
                break
            page.wait_for_timeout(200)
        assert len(refused) >= 2, f"the page did not reopen the refused event stream: {refused}"
    finally:
        page.unroute("**/events*")
    wait_for_said(page, POLITE, RESTORED, since)

    # The page's own button, by keyboard: the stream goes, and the page says so.
    since = len(announced(page, POLITE))
    page.focus("#remove-stream")
    page.keyboard.press("Enter")
    wait_for_said(page, POLITE, r"^The stream was removed\.$", since)
    assert all(s["id"] != stream_id for s in api(server, "GET", "/v1/streams")["streams"])


def test_without_speech_api_the_switch_says_so(browser, server, long_clip):
    """A browser without the Web Speech API: the switch is disabled and the page says why;
    the live regions carry narration all the same (a screen reader's own voice)."""
    context = browser.new_context()
    context.add_init_script(PAGE_SPY + """
        Object.defineProperty(window, 'speechSynthesis', { value: undefined, configurable: true });
        Object.defineProperty(window, 'SpeechSynthesisUtterance', { value: undefined, configurable: true });
    """)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('stream-select').options[0]?.value", timeout=WAIT_MS)
        assert page.locator("#speak").is_disabled() and not page.locator("#speak").is_checked()
        assert "cannot speak" in text_of(page, "#speech-note")
        stream_id = add_stream_with_the_form(page, long_clip)
        assert first_caption_line(page, WAIT_MS)
        api(server, "DELETE", f"/v1/streams/{stream_id}")
    finally:
        context.close()


# --------------------------------------------------------------------------- keyboard, layout, axe
def test_keyboard_reaches_every_control_with_a_visible_focus(page):
    """Tab from the top reaches every focusable control, each with a focus ring; the speech
    switch toggles with Space and with Enter."""
    page.reload()  # from the top: a fresh document, nothing focused yet
    page.wait_for_function("() => document.getElementById('stream-select').options[0]?.value", timeout=WAIT_MS)
    expected = page.evaluate(FOCUSABLE_JS)
    reached, no_ring = [], []
    for _ in range(len(expected) * 2 + 5):
        page.keyboard.press("Tab")
        active = page.evaluate(ACTIVE_JS)
        if active is None:
            continue
        if reached and active["name"] == reached[0]:
            break  # wrapped around
        reached.append(active["name"])
        ring = (active["outline"] > 0 and active["outlineStyle"] != "none") or active["shadow"] not in ("", "none")
        if not ring:
            no_ring.append(active)
    assert reached and reached[0] == "a:#main", f"the skip link comes first, not {reached[:1]}"
    assert set(expected) <= set(reached), f"not reached by Tab: {sorted(set(expected) - set(reached))}"
    assert not no_ring, f"focused without a visible focus indicator: {no_ring}"

    switch = page.locator("#speak")
    assert switch.is_enabled(), "Chromium has the Web Speech API: the switch should be usable"
    switch.focus()
    before = switch.is_checked()
    page.keyboard.press("Space")
    assert switch.is_checked() is not before
    page.keyboard.press("Enter")
    assert switch.is_checked() is before


def test_reflows_without_sideways_scrolling(page):
    """320 CSS pixels wide (a phone, or 400% zoom on a laptop; WCAG 1.4.10): one column, no
    horizontal scrolling, even with a long file path on the page."""
    size = page.viewport_size
    page.set_viewport_size({"width": 320, "height": 800})
    try:
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    finally:
        page.set_viewport_size(size)
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


def test_axe_finds_no_serious_violations(page):
    """axe-core (bundled by axe-playwright-python), light and dark, with reduced motion."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.skip("needs the axe-playwright-python package (pip install -e '.[dev]')")
    axe = Axe()
    found, serious = [], []
    try:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
            for violation in axe.run(page).response["violations"]:
                targets = [node["target"] for node in violation["nodes"]]
                line = f"{scheme}: {violation['id']} ({violation['impact']}): {violation['help']} at {targets}"
                found.append(line)
                if violation["impact"] in ("serious", "critical"):
                    serious.append(line)
    finally:
        page.emulate_media(color_scheme="light", reduced_motion="no-preference")
    print("axe-core violations:", "\n".join(found) or "none")  # minor and moderate ones too, for the log
    assert not serious, "axe-core:\n" + "\n".join(serious)


# --------------------------------------------------------------------------- a server with a token
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def token_server():
    """A second server: a token required on every request, and no streams at start."""
    with serve_app(sources=[], token=TOKEN) as running:
        yield running


def test_token_and_no_streams(browser, token_server, short_clip):
    """Opened with ?token=: every API request carries it (a Bearer header on fetch, ?token= on
    the event stream and the picture, where a browser cannot set headers). With no stream the
    page says so and describing a photo still works; an added stream then narrates, and when
    it ends the page says so. Reduced motion asked for: the picture refreshes less often and
    nothing transitions."""
    context = browser.new_context(reduced_motion="reduce")
    context.add_init_script(PAGE_SPY)
    try:
        page = context.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request))
        page.goto(f"{token_server.url}/?token={TOKEN}")
        page.wait_for_selector("#no-streams:not([hidden])", timeout=WAIT_MS)
        assert "no stream" in text_of(page, "#connection").lower()
        assert page.eval_on_selector("#refresh-rate", "e => e.value") == "5000"
        assert page.eval_on_selector("button", "e => getComputedStyle(e).transitionDuration") == "0s"

        page.set_input_files("#photo", ASTRONAUT)
        page.click("#describe-photo")
        wait_until_not(page, "#photo-result", ["Nothing yet.", "Describing…"])
        assert text_of(page, "#error") == ""

        since = len(announced(page, POLITE))
        add_stream_with_the_form(page, short_clip)
        first_caption_line(page, WAIT_MS)
        page.wait_for_selector("#frame:not([hidden])", timeout=WAIT_MS)
        wait_for_said(page, POLITE, r"^The stream has ended\.$", since)
        api_requests = [r for r in requests if "/v1/" in r.url]
        kinds = {r.resource_type for r in api_requests}
        assert {"fetch", "eventsource", "image"} <= kinds, kinds
        for request in api_requests:
            carried = request.headers.get("authorization") == f"Bearer {TOKEN}" or f"token={TOKEN}" in request.url
            assert carried, f"{request.resource_type} {request.url} went without the token"
    finally:
        context.close()
