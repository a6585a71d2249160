#!/usr/bin/env python
"""Turn raw ratings into data/processed/ (parquet + meta.json) and artifacts/iid_map.json.

With no arguments it processes the shipped real anime sample (data/sample/).
The rules are documented in code/nostrade/prep.py and recorded in meta.json.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from nostrade import prep
from nostrade.sources import DataError
from nostrade.synthetic import SyntheticConfig

EPILOG = """\
rules (all recorded in meta.json):
  feedback   rating <= dislike-max -> 1 Dislike, <= like-max -> 2 Like, else 3 Love
             (defaults: anime 4/7, i.e. 1-4 / 5-7 / 8-10; MovieLens 2/4, i.e. 1-2 / 3-4 / 5)
  unrated    anime's -1 / MAL's score 0 (watched, not rated): 'like' keeps it as 2 Like with rating
             NaN (watching something is a mild positive), 'drop' removes it
  mal        --source mal reads a MyAnimeList UserAnimeList.csv or animelists_cleaned.csv (columns by
             name, any order; needs username, anime_id, my_score, my_status, my_last_updated) with
             the Kaggle anime.csv as --items (default: the sample's). my_score 1-10 is the rating
             (anime thresholds), 0 = not scored (the unrated policy); my_status 6 (plan to watch)
             rows are dropped and counted, every other status kept (1 watching, 2 completed, 3 on
             hold, 4 dropped); my_last_updated is the timestamp, Unix seconds or 'YYYY-MM-DD
             HH:MM:SS' (UTC), 0 / 0000-00-00 = missing: such rows are dropped and counted; the
             start/finish dates (0000-00-00 = missing), episodes, rewatching and tags are not read;
             usernames become user ids 0, 1, ... in sorted (code point) username order
  unknown    rating rows whose item id is not in the catalogue are dropped with a warning and counted
  ordering   per user by timestamp; a user's events with equal timestamps in a seeded random order
             (--tie-seed; meta.json "ties" holds the seed and the number of tied events); sources
             without timestamps keep file order (for the Kaggle anime rating.csv: anime_id order within
             each user). meta.json "order_is_time" is true only when the order comes from timestamps
  duplicates the latest (user, item) event in that order wins; earlier ones are dropped and counted
  filter     items with fewer than --min-item-users distinct users are dropped (one pass), then users
             left without events
  ids        iid 1..n in ascending source item id (0 = padding); uid 0..n-1 in ascending user id
  time bins  calendar periods (UTC) counted from the first one in the data: bin = 1 + periods since;
             no timestamps -> every event is bin 1, scheme "none"
output     --out is a link to a version folder beside it (.NAME.v-XXXX: the parquet files, meta.json,
           iid_map.json); --artifacts/iid_map.json is a link to --out/iid_map.json. A run writes a new
           version, then renames one new link over --out: that rename commits it, so --out and the iid map
           always show one whole run, the previous or this one; then the other versions are deleted
bad input (missing file/column, non-numeric or out-of-range value such as a timestamp outside 1970-2099,
a file that is not UTF-8, malformed or truncated line, nothing left after filtering) prints one line
'error: FILE: line N, column C: value V ...' and exits 2; so does an output that cannot be written
(full disk, read-only folder: 'error: cannot write FILE: ...'). Either way, and after a kill at any
point, the previous output stays untouched; the next run deletes what an interrupted one left and
puts back a folder that older code had moved aside.
exit status: 0 written; 2 bad input or cannot write; 1 an unexpected error (a bug: Python's traceback)
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=["anime", "mal", "movielens", "synthetic"], default="anime",
                   help="raw data kind (default: anime)")
    p.add_argument("--items", type=Path, help="catalogue file: anime.csv[.gz] (anime, mal); MovieLens: u.item, "
                                              "*.item, movies.dat or movies.csv (default: found beside --ratings)")
    p.add_argument("--ratings", type=Path,
                   help="ratings file: rating.csv[.gz] with user_id,anime_id,rating and an optional timestamp column "
                        "(unix seconds); mal: UserAnimeList.csv or animelists_cleaned.csv[.gz] (required); "
                        "MovieLens: a file (*.inter, u.data, ratings.dat, ratings.csv) or a folder "
                        "holding one (default: data/sample/ for anime, ../shared/data/ml-100k for movielens)")
    p.add_argument("--out", type=Path, default=prep.DEFAULT_OUT, help="output folder (default: data/processed)")
    p.add_argument("--artifacts", type=Path, default=prep.DEFAULT_ARTIFACTS,
                   help="folder for iid_map.json (default: artifacts)")
    p.add_argument("--dislike-max", type=float, help="highest rating that is a Dislike (default: anime 4, MovieLens 2)")
    p.add_argument("--like-max", type=float, help="highest rating that is a Like (default: anime 7, MovieLens 4)")
    p.add_argument("--unrated", choices=prep.UNRATED_POLICIES, default="like",
                   help="anime -1 / MAL score 0 policy: like (default; kept as Like, rating NaN) or drop")
    p.add_argument("--min-item-users", type=int, default=10,
                   help="drop items with fewer distinct users than this (default 10; 0 keeps every rated item)")
    p.add_argument("--time-bin", choices=prep.TIME_BIN_SCHEMES, default="month",
                   help="calendar period of a time bin when there are timestamps (default: month)")
    p.add_argument("--tie-seed", type=int, default=0,
                   help="seed of the random order of a user's events that share a timestamp (default 0)")
    synth = p.add_argument_group("synthetic source (anime format + timestamps; always labelled synthetic)")
    defaults = SyntheticConfig()
    synth.add_argument("--n-users", type=int, default=defaults.n_users)
    synth.add_argument("--n-items", type=int, default=defaults.n_items)
    synth.add_argument("--interactions-per-user", type=float, default=defaults.interactions_per_user,
                       help="mean sequence length")
    synth.add_argument("--seed", type=int, default=defaults.seed)
    synth.add_argument("--synthetic-dir", type=Path, default=prep.DEFAULT_SYNTHETIC_DIR,
                       help="where the generated raw files go (default: data/synthetic)")
    p.add_argument("--quiet", action="store_true", help="print no summary")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> prep.PrepConfig:
    return prep.PrepConfig(
        source=args.source, items=args.items, ratings=args.ratings, out=args.out, artifacts=args.artifacts,
        dislike_max=args.dislike_max, like_max=args.like_max, unrated=args.unrated,
        min_item_users=args.min_item_users, time_bin=args.time_bin, tie_seed=args.tie_seed,
        synthetic_dir=args.synthetic_dir,
        synthetic=SyntheticConfig(n_users=args.n_users, n_items=args.n_items,
                                  interactions_per_user=args.interactions_per_user, seed=args.seed))


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
    try:
        processed = prep.run(config_from(args))
    except (DataError, ValueError, OSError) as err:  # DataError is a ValueError; OSError: e.g. a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(prep.summary(processed, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
