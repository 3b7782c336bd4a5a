"""The Space end to end in a real browser: Debian's chromium, driven by Playwright's Python package.

Chromium comes from apt (`.ci/run` installs it) and is launched through `executable_path`; Playwright's
own browser download (`playwright install`) is never used. Each tab is used as a person would (type,
click, wait for the result) and saved as a screenshot under test-artifacts/space/ (paths printed; the
ones docs/space.md shows are copied to docs/img/).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hf_probex.zoo.presets import MINILM

try:
    from playwright.sync_api import expect
except ImportError:  # the page fixture skips with the reason
    expect = None

pytest_plugins = ["space_world"]  # the space_world and space_app fixtures
pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "space"
# What the environment notes found chromium needs here (no sandbox as root, no network calls of its own).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: What a step may take: seconds here, but a text classifier run on candidates while the other test worker trains
#: models took over a minute on a loaded 2-core machine.
TIMEOUT_MS = 180_000
SERVER_PATHS = re.compile(r"/tmp/|/pytest-|gradio/|experts/(vit|sd|text)")  # what a server path would show of itself
TOASTS = '[data-testid="toast-body"]'
#: The texts a component cuts off: chart labels wider or taller than their box, plot texts outside the component's box.
CLIPPED = """root => {
  const box = root.getBoundingClientRect();
  const cut = e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1;
  const outside = e => { const r = e.getBoundingClientRect();
    return r.width > 0 && (r.top < box.top - 1 || r.bottom > box.bottom + 1 || r.left < box.left - 1 || r.right > box.right + 1); };
  return [...[...root.querySelectorAll('.probex-label')].filter(cut), ...[...root.querySelectorAll('svg text')].filter(outside)]
    .map(e => e.textContent);
}"""


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
    expect(locator).to_contain_text(text, timeout=TIMEOUT_MS)


def _infer(page, repo_id: str, min_confidence: float = 0.0) -> None:
    page.locator("#probex-kind").get_by_label("Hub repo id").check()
    page.locator("#probex-repo").get_by_role("textbox").fill(repo_id)
    page.locator("#probex-min-confidence").locator("input[type=number]").fill(str(min_confidence))
    page.locator("#probex-infer").click()


def _nothing_clipped(locator) -> None:
    assert locator.evaluate(CLIPPED) == []


def _background(locator) -> str:
    """The colour behind `locator`'s text: its own background, else the nearest ancestor's that is not transparent."""
    return locator.evaluate("""e => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
                                      if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return ''; }""")


def _no_server_path(page) -> None:
    text = page.locator("body").inner_text()
    assert not SERVER_PATHS.search(text), SERVER_PATHS.search(text)


def test_examples_load_and_infer(page):
    summary = page.locator("#probex-summary")
    assert summary.evaluate("e => getComputedStyle(e).borderLeftWidth") == "0px"  # nothing read yet: no empty box drawn
    examples = page.locator("#probex-examples")
    _expect_text(examples, "probex-zoo-vit/")
    _expect_text(examples, "probex-zoo-sd/")
    examples.get_by_text("probex-zoo-sd/", exact=False).first.click()
    _expect_text(summary, "probex-zoo-sd/sd-lora-")
    assert summary.evaluate("e => getComputedStyle(e).borderLeftWidth") == "4px"


def test_infer_a_repo_from_the_local_hub(page):
    _infer(page, "probex-zoo-vit/vit-ft-0005")
    _expect_text(page.locator("#probex-summary"), "probex-zoo-vit/vit-ft-0005")
    _expect_text(page.locator("#probex-summary"), "For a pull request: base_model_relation, trained_on")
    fields = page.locator("#probex-fields")
    for text in ("library_name", "transformers", "trained_on", "100%", "for a pull request"):
        _expect_text(fields, text)
    _expect_text(page.locator("#probex-card"), "Read from the model's files")
    assert page.locator("#probex-card pre").count() >= 1  # the front matter shown as a code block
    assert page.locator("#probex-pr").is_enabled()  # something validated to propose, on a Hub repo
    _screenshot(page, "infer")
    page.get_by_role("tab", name="Diff of README.md").click()
    diff = page.locator("#probex-diff")
    _expect_text(diff, "--- a/README.md")
    added = diff.get_by_text("+base_model_relation: finetune")
    assert _background(added) != _background(diff.get_by_text("--- a/README.md"))  # added lines stand out
    assert diff.evaluate("e => e.scrollWidth <= e.clientWidth")  # long lines wrap, none is cut at the edge
    _screenshot(page, "infer-diff")
    page.get_by_role("tab", name="Suggested card").click()


def test_no_pull_request_below_the_threshold(page, space_world):
    """The slider at 5 % shows the expert's trained_on guess, marked explored; the pull request leaves it out."""
    _infer(page, "probex-zoo-vit/vit-nocard-2", min_confidence=0.05)
    fields = page.locator("#probex-fields")
    _expect_text(fields, "explored, below the calibrated threshold — not for a PR")
    _expect_text(page.locator("#probex-chart"), "your minimum: 5%")
    _nothing_clipped(page.locator("#probex-chart"))
    summary = page.locator("#probex-summary")
    _expect_text(summary, "For a pull request: base_model")
    assert "trained_on" not in summary.inner_text().split("For a pull request:")[1].splitlines()[0]
    page.get_by_label("Hub token (optional)").fill(space_world.alice)
    page.locator("#probex-pr").click()
    result = page.locator("#probex-pr-result")
    _expect_text(result, "Opened pull request")
    assert "trained_on" not in result.inner_text() and "base_model" in result.inner_text()
    _no_server_path(page)
    _screenshot(page, "infer-explored")
    page.get_by_label("Hub token (optional)").fill("")


def test_a_lora_read_by_its_tree_expert(page):
    _infer(page, "probex-zoo-sd/sd-lora-0002")
    _expect_text(page.locator("#probex-summary"), "the sd tree's expert (ridge on ")
    # The tiny zoo's LoRAs (3 steps each) carry no signal, so calibration found no threshold: the Space shows what
    # the expert read (its cosine per concept) and that it never proposes, and proposes no trained_on.
    _expect_text(page.locator("#probex-summary"), "never proposes (no threshold reaches 95 % precision)")
    _expect_text(page.locator("#probex-chart"), "cosine similarity per concept")
    assert not re.search(r"^\s*trained_on\b", page.locator("#probex-fields").inner_text(), re.M)  # no such row
    _no_server_path(page)
    assert _screenshot(page, "infer-lora").stat().st_size > 10_000


def test_an_upload_is_chosen_explicitly_and_named_by_its_file(page, space_world):
    page.locator("#probex-repo").get_by_role("textbox").fill("probex-zoo-vit/vit-ft-0005")
    page.locator("#probex-kind").get_by_label("Upload a .safetensors file").check()
    expect(page.locator("#probex-repo")).to_be_hidden(timeout=TIMEOUT_MS)  # one input at a time
    page.locator("#probex-upload").locator("input[type=file]").set_input_files(str(space_world.lora_file))
    expect(page.locator("#probex-upload").get_by_role("cell", name="pytorch_lora_weights.safetensors")).to_be_visible()
    page.locator("#probex-infer").click()
    _expect_text(page.locator("#probex-summary"), "pytorch_lora_weights.safetensors")
    _expect_text(page.locator("#probex-summary"), "probex-zoo-sd/sd-root")
    _no_server_path(page)
    page.locator("#probex-kind").get_by_label("Hub repo id").check()


def test_an_error_clears_the_previous_results(page):
    _infer(page, "probex-zoo-vit/vit-ft-0005")
    _expect_text(page.locator("#probex-summary"), "probex-zoo-vit/vit-ft-0005")
    _infer(page, "nobody/no-such-model")
    _expect_text(page.locator("body"), "nobody/no-such-model was not found: check the name")
    expect(page.locator("#probex-summary")).not_to_contain_text("vit-ft-0005", timeout=TIMEOUT_MS)
    assert "transformers" not in page.locator("#probex-fields").inner_text()
    assert "Read from the model's files" not in page.locator("#probex-card").inner_text()
    assert not page.locator("#probex-pr").is_enabled()  # no pull request for the model shown before
    body = page.locator("body").inner_text()
    assert not re.search(r"hf auth login|HF_TOKEN|--token", body)
    _screenshot(page, "infer-error")


def test_an_error_toast_goes_when_the_next_run_starts_or_the_tab_changes(page):
    _infer(page, "nobody/no-such-model")
    expect(page.locator(TOASTS)).to_have_count(1)
    _infer(page, "probex-zoo-vit/vit-ft-0005")
    _expect_text(page.locator("#probex-summary"), "probex-zoo-vit/vit-ft-0005")
    expect(page.locator(TOASTS)).to_have_count(0)  # the success is not shown under the last run's error
    _infer(page, "nobody/no-such-model")
    expect(page.locator(TOASTS)).to_have_count(1)
    page.get_by_role("tab", name="Experts").click()
    expect(page.locator(TOASTS)).to_have_count(0)
    page.get_by_role("tab", name="Infer a card").click()


def test_a_text_model_from_the_examples_and_its_candidates(page, space_world):
    """The text tree's LABEL_i classifier, from the examples: routed to the real MiniLM; run on the classes typed in
    the candidates box (with example texts), its head rows are named in the chart."""
    from space_world import text_candidates

    examples = page.locator("#probex-examples")
    _expect_text(examples, "probex-zoo-text/text-label-i")
    examples.get_by_text("probex-zoo-text/text-label-i").click()
    summary = page.locator("#probex-summary")
    _expect_text(summary, "probex-zoo-text/text-label-i")
    _expect_text(summary, MINILM)
    _expect_text(page.locator("#probex-fields"), "text-classification")
    page.get_by_text("Candidates: a LoRA's concept, or a text classifier's classes").click()
    page.locator("#probex-candidates").get_by_role("textbox").fill(text_candidates(space_world.text_zoo))
    page.locator("#probex-infer").click()
    _expect_text(page.locator("#probex-chart"), "Each head row, as the classifier ran on 6 candidates")
    _expect_text(page.locator("#probex-chart"), "row 1: ")
    _nothing_clipped(page.locator("#probex-chart"))  # a row's label, its classes named, wraps rather than being cut
    _no_server_path(page)
    _screenshot(page, "infer-text")
    page.locator("#probex-candidates").get_by_role("textbox").fill("")


def test_browse_a_tree(page):
    page.get_by_role("tab", name="Browse a tree").click()
    page.locator("#probex-browse-root").get_by_role("combobox").fill("probex-zoo-vit/vit-root")
    page.get_by_role("button", name="Browse the tree").click()
    _expect_text(page.locator("#probex-tree-summary"), "models below the root")
    _expect_text(page.locator("#probex-models"), "probex-zoo-vit/vit-ft-0005")
    coverage = page.locator("#probex-coverage")
    _expect_text(coverage.locator("svg"), "base_model_relation")
    _nothing_clipped(coverage)
    _screenshot(page, "browse")


def test_search_loras_by_text(page):
    page.get_by_role("tab", name="Search LoRAs by text").click()
    page.locator("#probex-query").get_by_role("textbox").fill("a thick handwritten five")
    page.get_by_role("button", name="Search", exact=True).click()
    _expect_text(page.locator("#probex-search-summary"), "LoRAs ranked")
    _expect_text(page.locator("#probex-ranking"), "probex-zoo-sd/sd-lora-")
    plot = page.locator("#probex-ranking-plot")
    _expect_text(plot.locator("svg"), "probex-zoo-sd/sd-lora-")
    _nothing_clipped(plot)
    _screenshot(page, "search")


def test_a_cardless_lora_is_found_by_browse_and_search(page):
    """No card names its base, so the Hub's tree listing misses it; routing its author's models finds it."""
    page.get_by_role("tab", name="Browse a tree").click()
    page.locator("#probex-browse-root").get_by_role("combobox").fill("probex-zoo-sd/sd-root")
    page.locator("#probex-browse-authors").get_by_role("textbox").fill("probex-zoo-sd")
    page.get_by_role("button", name="Browse the tree").click()
    _expect_text(page.locator("#probex-tree-summary"), "by their weights")
    _expect_text(page.locator("#probex-models"), "probex-zoo-sd/sd-lora-nocard")
    page.get_by_role("tab", name="Search LoRAs by text").click()
    page.locator("#probex-search-authors").get_by_role("textbox").fill("probex-zoo-sd")
    page.locator("#probex-query").get_by_role("textbox").fill("a rotated zero")
    page.get_by_role("button", name="Search", exact=True).click()
    _expect_text(page.locator("#probex-search-summary"), "by their weights")
    _expect_text(page.locator("#probex-ranking"), "probex-zoo-sd/sd-lora-nocard")


def test_experts(page):
    page.get_by_role("tab", name="Experts").click()
    _expect_text(page.locator("#probex-experts"), "zeroshot")
    _expect_text(page.locator("#probex-experts"), "per_label_acc")
    _screenshot(page, "experts")
