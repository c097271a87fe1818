"""`dentpy report` pages in a real browser: headless Chromium (Debian's /usr/bin/chromium)
driven by playwright. Each page must load from file:// with no console error, no page
error and no network request, show every section, decode every image and hold the SVG
pipeline diagram. A full-page screenshot is kept (DENTPY_SCREENSHOT_DIR to collect them).

Without Chromium the test is skipped with the reason, except under CI=1 where a missing
browser is a failure (`make test` installs it with apt).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The session fixtures that write the reports once (shared with test_report.py).
from test_report import EXPECTED_SECTIONS, report_files, report_runs  # noqa: F401

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (install Debian's chromium package: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> object:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("kind", ["segmentation", "instance", "binary", "severity", "detection"])
def test_report_renders_offline_without_errors(
    kind: str,
    browser: object,
    report_files: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    console: list[tuple[str, str]] = []
    errors: list[str] = []
    requested: list[str] = []
    blocked: list[str] = []
    page.on("console", lambda message: console.append((message.type, message.text)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requested.append(request.url))

    def only_local(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if url.startswith(("file:", "data:")):
            route.continue_()  # type: ignore[attr-defined]
        else:
            blocked.append(url)
            route.abort()  # type: ignore[attr-defined]

    page.route("**/*", only_local)
    path = report_files[kind]
    page.goto(path.resolve().as_uri(), wait_until="load")

    assert not errors, errors
    assert not [text for kind_, text in console if kind_ == "error"], console
    assert not blocked, blocked
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
    for anchor in EXPECTED_SECTIONS[kind]:
        assert page.locator(f"section#{anchor}").is_visible(), anchor
        assert page.locator(f'nav.toc a[href="#{anchor}"]').count() == 1, anchor
    images = page.locator("img")
    assert images.count() >= 3
    widths = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => (i.complete ? i.naturalWidth : 0))"
    )
    assert all(width > 0 for width in widths), widths
    diagram = page.locator("section#pipeline svg")
    assert diagram.count() == 1 and diagram.is_visible()
    box = diagram.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100

    shot = tmp_path / f"report-{kind}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("DENTPY_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    page.close()
