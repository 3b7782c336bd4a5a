"""The Space end to end in a real browser: Debian's chromium, driven by Playwright's Python package.

Chromium comes from apt (`.ci/run` installs it) and is launched through `executable_path`; Playwright's
own browser download (`playwright install`) is never used. Each tab is used as a person would (type,
click, wait for the result) and saved as a screenshot under test-artifacts/space/ (paths printed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["space_world"]  # the space_world and space_app fixtures
pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "space"
# What the environment notes found chromium needs here (no sandbox as root, no network calls of its own).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page(space_app):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (dev extra) is missing")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(space_app)
        page.get_by_text("model cards from model weights").wait_for()
        yield page
        browser.close()


def _screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.wait_for_timeout(400)  # let plots finish their transition
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _expect_text(locator, text: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text, timeout=TIMEOUT_MS)


def test_infer_a_repo_from_the_local_hub(page):
    page.locator("#probex-repo").get_by_role("textbox").fill("probex-zoo-vit/vit-ft-0001")
    page.locator("#probex-infer").click()
    _expect_text(page.locator("#probex-summary"), "probex-zoo-vit/vit-root")
    fields = page.locator("#probex-fields")
    for text in ("library_name", "transformers", "trained_on", "100%"):
        _expect_text(fields, text)
    _expect_text(page.locator("#probex-card"), "Inferred from weights")
    assert page.locator("#probex-card pre").count() >= 1  # the front matter shown as a code block
    assert page.locator("#probex-pr").is_enabled()  # something to propose, from a Hub repo
    assert _screenshot(page, "infer").stat().st_size > 10_000


def test_a_lora_read_by_its_tree_expert(page):
    page.locator("#probex-repo").get_by_role("textbox").fill("probex-zoo-sd/sd-lora-0002")
    page.locator("#probex-min-confidence").locator("input[type=number]").fill("0.05")
    page.locator("#probex-infer").click()
    _expect_text(page.locator("#probex-summary"), "sd-lora")
    _expect_text(page.locator("#probex-summary"), "experts/sd (ridge)")
    # The tiny zoo's LoRAs (3 steps each) carry no signal, so its expert's calibration rates every reading near
    # 0: the Space shows what the expert read and why it abstained, and proposes no trained_on.
    _expect_text(page.locator("#probex-summary"), "not answered: trained_on: the best concept")
    assert "trained_on" not in page.locator("#probex-fields").inner_text()
    _screenshot(page, "infer-lora")


def test_a_bad_repo_id_shows_an_error(page):
    page.locator("#probex-repo").get_by_role("textbox").fill("nobody/no-such-model")
    page.locator("#probex-infer").click()
    _expect_text(page.locator("body"), "was not found on")
    _screenshot(page, "infer-error")
    page.reload()  # a fresh page for the next tabs, without the error popup
    page.get_by_text("model cards from model weights").wait_for()


def test_browse_a_tree(page):
    page.get_by_role("tab", name="Browse a tree").click()
    page.locator("#probex-browse-root").get_by_role("combobox").fill("probex-zoo-vit/vit-root")
    page.get_by_role("button", name="Browse the tree").click()
    _expect_text(page.locator("#probex-tree-summary"), "models below the root")
    _expect_text(page.locator("#probex-models"), "probex-zoo-vit/vit-ft-0005")
    _screenshot(page, "browse")


def test_search_loras_by_text(page):
    page.get_by_role("tab", name="Search LoRAs by text").click()
    page.locator("#probex-query").get_by_role("textbox").fill("a thick handwritten five")
    page.get_by_role("button", name="Search", exact=True).click()
    _expect_text(page.locator("#probex-search-summary"), "LoRAs ranked")
    _expect_text(page.locator("#probex-ranking"), "probex-zoo-sd/sd-lora-")
    _screenshot(page, "search")


def test_experts(page):
    page.get_by_role("tab", name="Experts").click()
    _expect_text(page.locator("#probex-experts"), "zeroshot")
    _expect_text(page.locator("#probex-experts"), "per_label_acc")
    _screenshot(page, "experts")
