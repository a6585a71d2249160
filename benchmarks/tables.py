"""The results tables of README.md and docs/results.md, generated from the result files (never edited by hand).

    python benchmarks/tables.py            # rewrite every generated block of those pages
    python benchmarks/tables.py --check    # exit 1 if a block differs from what the files say (the suite runs it)

A block sits between ``<!-- generated: NAME -->`` and ``<!-- /generated -->`` lines; NAME is one of BLOCKS:
the served rows (what the app and the API serve) beside the peers on ML-100K, the same for the anime sample, and
each data set's lifts with their paired bootstrap intervals. The result files are those benchmarks/ablation.py
writes (artifacts/results/movielens-100k.json, anime.json) and the peers' figures transcribed from
../shared/PEERS.md (artifacts/results/peers-ml100k.json).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from nostrade.atomic import write_text
from nostrade.report import headline_markdown, lifts_markdown

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "artifacts" / "results"
SERVED_FIRST = ("served:ranker", "served:sasrec", "served:ease")
PAGES = (REPO / "README.md", REPO / "docs" / "results.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def served_rows(record: dict) -> list[dict]:
    rows = {r["model"]: r for r in record["rows"]}
    return [rows[name] for name in SERVED_FIRST if name in rows]


def peers_markdown(peers: dict) -> str:
    lines = ["| peer (PEERS.md) | NDCG@10 | HR@10 |", "|---|---|---|"]
    for r in peers["rows"]:
        spread = lambda key: f" ± {r[key + '_std']:.4f}" if key + "_std" in r else ""
        lines.append(f"| {r['model']} | {r['ndcg@10']:.4f}{spread('ndcg@10')} | {r['hr@10']:.4f}{spread('hr@10')} |")
    return "\n".join(lines)


def file_note(name: str, record: dict) -> str:
    commands = [f"`{record['command']}`"] + [f"`{u['command']}`" for u in record.get("updates", [])]
    made_by = f"`dvc repro {record['stage']}`, which ran " if record.get("stage") else ""
    return f"(`artifacts/results/{name}`, written by {made_by}{', then '.join(commands)}; seeds {record['config']['seeds']})"


def blocks() -> dict[str, str]:
    """Every generated block's text, from the files."""
    ml, anime, peers = load("movielens-100k.json"), load("anime.json"), load("peers-ml100k.json")
    return {
        "served-ml100k": f"{headline_markdown(served_rows(ml))}\n\n{file_note('movielens-100k.json', ml)}\n\n"
                         f"{peers_markdown(peers)}\n",
        "served-anime": f"{headline_markdown(served_rows(anime))}\n\n{file_note('anime.json', anime)}\n",
        "lifts-ml100k": f"{lifts_markdown(ml['lifts'])}\n",
        "lifts-anime": f"{lifts_markdown(anime['lifts'])}\n",
    }


def render(page: str, generated: dict[str, str], name: str = "README.md") -> str:
    def fill(match: re.Match) -> str:
        block = match["name"]
        if block not in generated:
            raise ValueError(f"{name}: unknown generated block {block!r} (known: {', '.join(generated)})")
        return match.group(1) + generated[block] + match.group(4)
    return BLOCK.sub(fill, page)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 where a page differs from the files")
    parser.add_argument("--pages", type=Path, nargs="+", default=PAGES, help="default: README.md, docs/results.md")
    args = parser.parse_args(argv)
    try:
        generated = blocks()
        pages = {page: page.read_text() for page in args.pages}
        rendered = {page: render(text, generated, str(page)) for page, text in pages.items()}
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [page for page in pages if rendered[page] != pages[page]]
    if args.check:
        for page in stale:
            print(f"{page}: generated tables differ from the result files; run python benchmarks/tables.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for page in stale:
        write_text(page, rendered[page])
    print(f"rewrote {len(stale)} of {len(pages)} pages: " + ", ".join(map(str, stale or ["none"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
