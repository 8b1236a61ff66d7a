"""The search page in a real headless Chromium: type a query, submit, see the library's ranking as thumbnails.

The browser is driven with Playwright (the ``playwright`` Python package; its bundled driver, no
``playwright install``) against a Chromium binary from the npm package ``@sparticuz/chromium``:

    scripts/get_chromium.sh          # once: unpacks the binary into build/chromium (git-ignored)
    pytest tests/search/test_page_browser.py

``$RSVL_CHROMIUM`` may name another Chromium (or chrome-headless-shell) binary instead. Without a
binary or without Playwright the tests skip with the reason, so machines without them pass.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from rsvl.data.generate import write_sar_chips
from rsvl.model_registry.embedder import load_embedder
from rsvl.models import build_model, save_model
from rsvl.search.index import build_index
from rsvl.search.model_ref import resolve_model
from rsvl.search.searcher import Searcher
from rsvl.search.service import load_service

from search_support import serving

pytestmark = pytest.mark.slow  # starts a browser process

CHIPS = 16
QUERY = "ships near the coast"
K = 6
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = REPO_ROOT / "build" / "chromium" / "chromium"
WAIT_MS = 30_000


def chromium_binary() -> Path:
    """``$RSVL_CHROMIUM``, else build/chromium/chromium; skip the module when neither is there."""
    wanted = os.environ.get("RSVL_CHROMIUM")
    binary = Path(wanted) if wanted else DEFAULT_CHROMIUM
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        where = f"$RSVL_CHROMIUM={wanted}" if wanted else str(DEFAULT_CHROMIUM)
        pytest.skip(f"no Chromium binary at {where}: run scripts/get_chromium.sh (or set $RSVL_CHROMIUM)")
    return binary


def browser_env(binary: Path) -> dict[str, str]:
    """The environment for the browser: get_chromium.sh's NSS libraries only where the system lacks them."""
    env = dict(os.environ)
    bundled = binary.parent / "al2023" / "lib"
    if bundled.is_dir():
        linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        if "not found" in linked:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(bundled), env.get("LD_LIBRARY_PATH")]))
    return env


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(binary), headless=True, env=browser_env(binary),
                                              timeout=60_000)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Sixteen SAR chips indexed with a freshly initialised rsvl-tiny model (as tests/search/test_search.py)."""
    root = tmp_path_factory.mktemp("page")
    write_sar_chips(root / "sar", seed=0, count=CHIPS)
    torch.manual_seed(0)
    save_model(build_model("rsvl-tiny")[0], root / "model")
    folder, ref = resolve_model(str(root / "model"))
    embedder = load_embedder(folder, "cpu")
    build_index(embedder, ref, root / "sar", root / "index", batch_size=5)
    return root, embedder


@pytest.fixture(scope="module")
def server(archive):
    """What ``rsvl serve --index <index>`` runs."""
    root, _ = archive
    with serving(load_service(str(root / "index"), device="cpu")) as url:
        yield url


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda err: errors.append(str(err)))
    opened.set_default_timeout(WAIT_MS)
    opened.goto(f"{server}/")
    yield opened
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def ranked_ids(root: Path, embedder, text: str, k: int) -> tuple[list[int], list[str]]:
    """The library's ranking for ``text``: entries and sample ids, computed without the service."""
    with torch.no_grad():
        query = embedder.model.encode_text(embedder.tokenizer([text]), normalize=True)[0].numpy()
    searcher = Searcher(root / "index")
    hits = searcher.search(query, k)
    return [hit.entry for hit in hits], [searcher.metadata["sample_id"].iloc[hit.entry] for hit in hits]


def test_a_typed_query_shows_the_library_ranking_as_loaded_thumbnails(page, archive):
    root, embedder = archive
    page.fill("#text", QUERY)
    page.fill("#k", str(K))
    requested = int(page.input_value("#k"))
    page.click("button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#grid figure').length > 0")
    page.wait_for_function("/ results in /.test(document.getElementById('status').textContent)")

    figures = page.locator("#grid figure")
    assert figures.count() == requested == K
    images = page.locator("#grid figure img")
    for i in range(images.count()):  # the images load lazily: bring each into view, then wait for it
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every((i) => i.complete)")
    sources = images.evaluate_all("(imgs) => imgs.map((i) => [i.getAttribute('src'), i.naturalWidth])")
    assert all(re.fullmatch(r"/thumbnails/\d+\.png", src) and width > 0 for src, width in sources), sources

    entries, ids = ranked_ids(root, embedder, QUERY, K)
    assert [int(re.search(r"\d+", src).group()) for src, _ in sources] == entries
    captions = page.locator("#grid figcaption").all_text_contents()
    assert ids[0] in captions[0]
    assert [caption.split()[-1] for caption in captions] == ids
    assert all(caption.startswith(f"#{rank}") for rank, caption in enumerate(captions, 1))
    assert "modality: sar" in page.locator("#grid figure .meta").first.text_content()

    status = page.locator("#status")
    assert re.fullmatch(rf"{K} results in [\d.]+ ms", status.text_content()) and status.get_attribute("class") == ""
    # results are written as text: nothing was parsed into new elements
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("[...document.querySelectorAll('#grid figure')].every((f) => "
                         "[...f.children].map((c) => c.tagName).join() === 'IMG,FIGCAPTION,DIV')")


@pytest.mark.parametrize("fill, message", [
    ({}, "type a query or choose an image"),  # checked in the page, nothing sent
    ({"#text": QUERY, "#bbox": "10,0,5,1"}, "bbox"),  # refused by the service (422), its detail shown
])
def test_a_refused_query_shows_the_error_and_no_results(page, fill, message):
    for selector, value in fill.items():
        page.fill(selector, value)
    page.click("button[type=submit]")
    status = page.locator("#status")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert message in status.text_content() and "results" not in status.text_content()
    assert page.locator("#grid figure").count() == 0
