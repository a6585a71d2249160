"""The project's servers in child processes, and a real browser on the demo: for the tests and the benchmarks.

``ServerProcess`` runs ``uvicorn api:app`` or ``code/serve.py`` (the load benchmark, the durability and serve
tests); ``serve_app`` runs ``streamlit run code/app.py`` (the browser test, the page-speed benchmark), each on a free 127.0.0.1 port
in its own process group, stopped with its children afterwards. ``chromium`` opens Debian's headless
Chromium with a fresh profile; ``DemoPage`` does what a person does on the page and waits until the app
has finished re-running.

Imported as ``harness``: benchmarks/ is a script's own folder, and on pytest's path (pyproject.toml).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict, ready: Callable[[], bool], timeout_s: float, **popen) -> subprocess.Popen:
    """Start ``command`` in its own process group (from the repository root, ``env`` added) and poll
    ``ready()`` until it is true; stop the group and raise if the process exits or time runs out."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env}, start_new_session=True, **popen)
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} while starting")
        if time.monotonic() > deadline:
            stop(process)
            raise TimeoutError(f"the server did not answer within {timeout_s:.0f} s")
        time.sleep(0.1)
    return process


def stop(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group; SIGKILL it if it has not exited after ``timeout_s``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class ServerProcess:
    """``uvicorn api:app`` on 127.0.0.1, configured by ``env`` (NOSTRADE_* variables); with ``reuse_port``,
    ``code/serve.py``'s workers instead, one SO_REUSEPORT socket each."""
    env: dict
    workers: int = 1
    reuse_port: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> "ServerProcess":
        """Start and wait until every worker answers /health (each reports its pid)."""
        pids = set()

        def every_worker_answers() -> bool:
            try:
                pids.add(httpx.get(self.url + "/health", timeout=2.0).json()["pid"])
            except (httpx.TransportError, ValueError, KeyError):
                return False
            return len(pids) >= self.workers

        if self.reuse_port:
            command = [sys.executable, str(REPO_ROOT / "code" / "serve.py"), "--host", "127.0.0.1", "--port",
                       str(self.port), "--workers", str(self.workers), "--log-level", "warning"]
        else:
            command = [sys.executable, "-m", "uvicorn", "api:app", "--app-dir", str(REPO_ROOT / "code"),
                       "--http", "api:JSONErrorsHTTP", "--host", "127.0.0.1", "--port", str(self.port),
                       "--workers", str(self.workers), "--log-level", "warning", "--no-access-log"]
        self.process = start(command, self.env, every_worker_answers, timeout_s)
        return self

    def kill(self) -> None:
        """SIGKILL the whole server (no shutdown, no flushing), and reap it."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve_app(env: dict[str, str], port: int | None = None, startup_timeout: float = 120.0):
    """``streamlit run code/app.py`` on 127.0.0.1 with ``env`` added; yields the page URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/_stcore/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    command = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "code" / "app.py"),
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with tempfile.TemporaryFile() as log:
        try:
            process = start(command, env, healthy, startup_timeout, stdout=log, stderr=subprocess.STDOUT)
        except RuntimeError as e:
            log.seek(0)
            raise RuntimeError(f"{e}: {log.read().decode()[-2000:]}") from None
        try:
            yield url
        finally:
            stop(process)


@contextlib.contextmanager
def chromium(download_dir: Path, width: int = 1600, height: int = 2000):
    """Headless Chromium with a fresh profile; downloads go to ``download_dir``."""
    with tempfile.TemporaryDirectory(prefix="nostrade-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow",
                                                                "downloadPath": str(download_dir)})
            yield driver
        finally:
            driver.quit()


# In-page JavaScript: the app's last element is the sidebar caption "Page computed in N ms · run R"; a
# re-run is drawn completely once R has changed. Timing in the page (performance.now, checked every
# animation frame) leaves WebDriver's own round trips out of the figures.
_RUN_JS = """
window.__nostradeRun = () => {
  const text = Array.from(document.querySelectorAll('[data-testid="stSidebar"] p')).map(p => p.innerText)
    .find(t => t.startsWith('Page computed in')) || '';
  const m = text.match(/run (\\d+)/); return m ? Number(m[1]) : 0;
};
"""
_CLICK_AND_TIME_JS = _RUN_JS + """
const [selector, done] = [arguments[0], arguments[arguments.length - 1]];
const before = window.__nostradeRun(), t0 = performance.now();
document.querySelector(selector).click();
const check = () => window.__nostradeRun() > before ? done(performance.now() - t0) : requestAnimationFrame(check);
requestAnimationFrame(check);
"""
_FIRST_RUN_JS = _RUN_JS + """
const done = arguments[arguments.length - 1];
const check = () => window.__nostradeRun() > 0 ? done(performance.now()) : requestAnimationFrame(check);
check();
"""


class DemoPage:
    """The demo page in a browser: actions wait until the app's re-run is fully drawn."""

    def __init__(self, driver, timeout: float = 60.0):
        self.driver, self.timeout = driver, timeout
        driver.set_script_timeout(timeout)

    def wait(self, condition, timeout: float | None = None):
        def safe(driver):
            try:
                return condition(driver)
            except StaleElementReferenceException:  # Streamlit redrew the element meanwhile
                return False
        return WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.05).until(safe)

    def run_number(self) -> int:
        return self.driver.execute_script(_RUN_JS + "return window.__nostradeRun();")

    def headings(self) -> list[str]:
        return [h.text.strip() for h in self.driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3")]

    def cards(self) -> list[str]:
        return [c.text for c in self.driver.find_elements(By.CSS_SELECTOR, ".nostrade-card")]

    def open(self, url: str) -> float:
        """Load the page; seconds from navigation start until the first run is drawn completely."""
        self.driver.get(url)
        return self.driver.execute_async_script(_FIRST_RUN_JS) / 1000

    def click(self, selector: str) -> float:
        """Click; seconds until the re-run it causes is drawn completely."""
        return self.driver.execute_async_script(_CLICK_AND_TIME_JS, selector) / 1000

    def settle(self) -> None:
        """Wait until a re-run started by typing has been drawn (the run number stops changing)."""
        last, stable_since = self.run_number(), time.monotonic()
        while time.monotonic() - stable_since < 0.5:
            time.sleep(0.05)
            now = self.run_number()
            if now != last:
                last, stable_since = now, time.monotonic()

    def rate(self, query: str, feedback: str) -> float:
        """Search, keep the best match, choose the rating, press Rate; seconds from the click on Rate until
        the page is redrawn with the new pick and its recommendations."""
        box = self.wait(lambda d: d.find_element(By.CSS_SELECTOR, 'input[aria-label="Find a title you know"]'))
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(query, Keys.ENTER)
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".st-key-rate button:not([disabled])"))
        self.settle()
        self.driver.find_element(
            By.XPATH, f'//div[@role="radiogroup"]//label[.//*[normalize-space(text())="{feedback}"]]').click()
        self.settle()
        return self.click(".st-key-rate button")

    def rate_in_catalogue(self, row: int, option: str, rating_column: int = 1, row_px: int = 35) -> float:
        """Set 'Your rating' of the catalogue table's ``row`` (0 = first) through the table's own drop-down:
        click the row's first cell, arrow right to the rating column, Enter, click the option. Seconds from
        the click on the option until the re-run is drawn."""
        grid = self.driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrameResizable"]')[-1]
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", grid)
        width, height = grid.size["width"], grid.size["height"]
        ActionChains(self.driver).move_to_element_with_offset(
            grid, -width // 2 + 60, -height // 2 + row_px * (row + 1) + row_px // 2).click().perform()
        ActionChains(self.driver).send_keys(*[Keys.ARROW_RIGHT] * rating_column, Keys.ENTER).perform()
        choice = self.wait(lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]')
                                      if o.text.strip() == option])[0]
        before, started = self.run_number(), time.perf_counter()
        choice.click()
        self.wait(lambda d: self.run_number() > before)
        return time.perf_counter() - started

    def toggle(self, key: str) -> float:
        return self.click(f".st-key-{key} input")

    def press(self, key: str) -> float:
        """Click the button with this Streamlit key; seconds until the re-run is drawn."""
        return self.click(f".st-key-{key} button")

    def choose(self, key: str, option: str) -> None:
        """Add ``option`` to the multiselect with this key (type it, Enter), and wait for the re-run."""
        before = self.run_number()
        box = self.driver.find_element(By.CSS_SELECTOR, f".st-key-{key} input")
        box.click()
        box.send_keys(option, Keys.ENTER)
        box.send_keys(Keys.ESCAPE)
        self.wait(lambda d: self.run_number() > before)
        self.settle()

    def card_fields(self) -> list[dict]:
        """Every poster card on the page: its title, meta line (type · genres) and reason, in page order."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('.nostrade-card')).map(c => ({"
            "title: c.querySelector('.nostrade-title').innerText, meta: c.querySelector('.nostrade-meta').innerText,"
            "reason: (c.querySelector('.nostrade-reason') || {innerText: ''}).innerText}))")

    def visible_columns(self, grid_index: int) -> list[str]:
        """Column headers a table (st.dataframe / st.data_editor, in page order) shows without scrolling sideways:
        the grid's accessible table holds the visible columns only (drawn a moment after the grid: waited for)."""
        def headers(driver) -> list[str]:
            grid = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrameResizable"]')[grid_index]
            return [h.get_attribute("textContent").strip() for h in grid.find_elements(By.CSS_SELECTOR, "th")]
        return WebDriverWait(self.driver, 15, ignored_exceptions=(StaleElementReferenceException,)).until(headers)

    def server_ms(self) -> int:
        """The app's own script time of its last run ("Page computed in N ms")."""
        text = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-testid=\"stSidebar\"] p'))"
            ".map(p => p.innerText).find(t => t.startsWith('Page computed in')) || ''")
        return int(text.split()[3]) if text else -1
