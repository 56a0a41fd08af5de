"""``smg serve`` in a real browser: headless system Chromium, driven by Selenium, on localhost.

The app runs as a real subprocess on the embedded tiny preset. The test uploads two references,
picks the music-heuristic planner and 2 candidates, submits, and checks that the chosen image,
the scored candidates, the plans' layout grids, the chain of thought and the timings appear; then
a prompt naming a third subject must show the SDK's error message in the page, with no
traceback. Nothing is installed at run time: without gradio, selenium, a Chromium binary or its
chromedriver the test skips and says which one is missing (``.ci/run`` installs them).

Screenshots: ``$SMG_APP_SCREENSHOT`` (e.g. ``docs/app_screenshot.png``) or ``<tmp>/app.png``,
and ``app_error.png`` beside it; their paths are printed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
WAIT = 300  # seconds a page state may take to appear on a busy machine (a bound, not a measurement)


def missing_requirement() -> str | None:
    """Why the browser test cannot run here, or None."""
    for module, extra in (("gradio", "app"), ("selenium", "test")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    if not any(shutil.which(b) for b in BROWSERS):
        return "no Chromium binary on PATH (apt-get install chromium)"
    if not any(shutil.which(d) for d in DRIVERS):
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


def skip_reason() -> str | None:
    reason = missing_requirement()
    if reason is not None:
        print(f"test_app_browser: skipped: {reason}")
    return reason


pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=f"browser test: {missing_requirement()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    """``smg serve --preset tiny`` as a subprocess; yields its URL once it answers."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "smg_sdk.cli", "serve", "--preset", "tiny", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(WAIT):
            if server.poll() is not None:
                pytest.fail(f"smg serve exited with {server.returncode}: {server.stdout.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1900"):
        options.add_argument(arg)
    service = Service(executable_path=next(shutil.which(d) for d in DRIVERS if shutil.which(d)))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def type_into(driver, css: str, text: str) -> None:
    """Replace the text of the field at ``css`` the way a person does (select all, type)."""
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element("css selector", css)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text, Keys.TAB)


def submit_and_wait(driver, previous: str) -> str:
    """Click Generate and wait until the status line changes to a result or an error."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("css selector", "#generate").click()

    def settled(d):
        text = d.find_element("css selector", "#status").text.strip()
        return text if text != previous and text.startswith(("Done", "Error", "Internal error")) else False

    return WebDriverWait(driver, WAIT, poll_frequency=0.5).until(settled)


def screenshot_path(tmp_path: Path) -> Path:
    path = Path(os.environ.get("SMG_APP_SCREENSHOT") or tmp_path / "app.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def fill_form(driver, tmp_path: Path) -> None:
    """A held-out SubjectWorld request of two subjects: its references and class words, its instruction;
    the heuristic planner, 2 candidates, 8 steps."""
    from selenium.webdriver.support.ui import WebDriverWait

    from smg_sdk.data.subjectworld import SubjectWorld

    sample = SubjectWorld("heldout", "reference", seed=3, subjects=(2,))[0]
    for k, (image, subject) in enumerate(zip(sample.references, sample.scene.subjects), start=1):
        path = tmp_path / f"ref{k}.png"
        image.save(path)
        driver.find_element("css selector", f"#ref{k} input[type=file]").send_keys(str(path))
        WebDriverWait(driver, WAIT).until(lambda d, k=k: d.find_elements("css selector", f"#ref{k} img"))
        type_into(driver, f"#word{k} textarea, #word{k} input", subject.identity.shape)
    type_into(driver, "#prompt textarea", sample.prompt)
    driver.find_element("css selector", "#planner input[value='music-heuristic']").click()
    type_into(driver, "#candidates-count input[type=number]", "2")
    type_into(driver, "#steps input[type=number]", "8")


def test_generate_in_the_browser_then_show_an_error(app_url, browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements("css selector", "#prompt textarea"))
    fill_form(browser, tmp_path)
    status = submit_and_wait(browser, "")
    assert status.startswith("Done: 2 candidate(s)"), status
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements("css selector", "#chosen img"))
    assert len(browser.find_elements("css selector", "#candidates img")) >= 2
    assert browser.find_elements("css selector", "#grids img")
    assert "plan #" in browser.find_element("css selector", "#cot").text
    assert "denoise" in browser.find_element("css selector", "#timings").text
    shot = screenshot_path(tmp_path)
    browser.save_screenshot(str(shot))
    print(f"screenshot of the result: {shot}")

    type_into(browser, "#prompt textarea", "<1> next to <3> on grass")  # only two references
    status = submit_and_wait(browser, status)
    assert status.startswith("Error:") and "<3>" in status, status
    assert "Traceback" not in browser.page_source
    browser.save_screenshot(str(shot.with_name("app_error.png")))
    print(f"screenshot of the error: {shot.with_name('app_error.png')}")
