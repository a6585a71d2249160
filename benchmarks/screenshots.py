"""The README's screenshots of the demo, at 1400 px and at a 390 px phone width, in one command.

    python benchmarks/screenshots.py [--out artifacts/screenshots]

Serves `streamlit run code/app.py` on the repository's default model, data and taste clusters (`make train`,
`python -m nostrade.clusters ...`) with a fresh event log in a temporary folder, rates four titles in headless
Chromium (benchmarks/harness.py) like a person would, and saves:
- app-1400.png: the top of the page at 1400 px (picks, the Top-K with its reasons);
- browse-by-taste.png: the "Browse by taste" rows at 1400 px;
- app-390.png and app-390-rows.png: the same page at 390 px (the Top-K's cards, then the rows below).
Each screenshot is written to a temporary name, then renamed: a failed run leaves the old ones.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO_ROOT, DemoPage, chromium, serve_app

RATINGS = [("steins gate", "Love"), ("fullmetal alchemist brotherhood", "Love"), ("death note", "Like"),
           ("school days", "Dislike")]
USER = 1_000_000_999


def scroll_to_heading(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    heading = next(h for h in driver.find_elements(By.CSS_SELECTOR, "h2, h3") if h.text.strip() == text)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", heading)
    time.sleep(0.5)


def save(driver, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp.png")
    driver.save_screenshot(str(temporary))
    os.replace(temporary, path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "screenshots")
    args = parser.parse_args(argv)
    missing = [p for p in (REPO_ROOT / "checkpoints" / "model.pt", REPO_ROOT / "data" / "processed" / "meta.json",
                           REPO_ROOT / "artifacts" / "clusters.json") if not p.exists()]
    if missing:
        print(f"error: {missing[0]} is missing (make train; python -m nostrade.clusters)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nostrade-screenshots-") as work:
        env = {"NOSTRADE_EVENTS": str(Path(work) / "events.db")}
        with serve_app(env) as url, chromium(Path(work), width=1400, height=1100) as driver:
            page = DemoPage(driver, timeout=120)
            page.open(f"{url}/?user={USER}")
            page.settle()
            for query, feedback in RATINGS:
                page.rate(query, feedback)
            driver.execute_script("window.scrollTo(0, 0)")
            save(driver, args.out / "app-1400.png")
            scroll_to_heading(driver, "Browse by taste")
            save(driver, args.out / "browse-by-taste.png")
            driver.set_window_size(390, 844)
            page.wait(lambda d: d.execute_script("return window.innerWidth") <= 400)
            page.settle()
            scroll_to_heading(driver, "Top 10 for you")
            save(driver, args.out / "app-390.png")
            scroll_to_heading(driver, "Browse by taste")
            save(driver, args.out / "app-390-rows.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
