"""Raw readers: anime (Kaggle CooperUnion), MyAnimeList user lists and MovieLens files -> one canonical
``RawData`` shape.

Every reader validates what it reads and raises ``DataError`` naming the file, line, column and
value of the first problem. Reading goes through pyarrow's multi-threaded CSV reader; the slow,
single-threaded diagnosis only runs once a file has already failed to parse.

MyAnimeList user lists (``read_mal``: the ``UserAnimeList.csv`` / ``animelists_cleaned.csv`` layout of the
Kaggle "MyAnimeList Dataset", with the usual anime.csv as the catalogue). Policies:
- columns are found by name in any order; extra ones are ignored. Required: ``username``, ``anime_id``,
  ``my_score``, ``my_status``, ``my_last_updated``; the rest (episodes, start/finish dates, where
  ``0000-00-00`` means missing, rewatching, tags) is not read.
- ``my_score`` 1..10 is the rating (the anime feedback thresholds apply); 0 means "not scored" and is the
  unrated value, like the anime ``-1`` "watched, not rated" (prep's --unrated policy decides).
- ``my_status`` 6 (plan to watch) is not a watch: those rows are dropped and counted. Every other status is
  kept (1 watching, 2 completed, 3 on hold, 4 dropped).
- ``my_last_updated`` is the timestamp: Unix seconds (UserAnimeList.csv) or ``YYYY-MM-DD HH:MM:SS`` read as
  UTC (animelists_cleaned.csv), either in any row. 0 and ``0000-00-00...`` mean missing: those rows cannot
  be placed in time and are dropped and counted.
- usernames become integer user ids: 0, 1, ... in sorted (code point) username order, so the same file
  always gives the same ids. Only an empty username is missing; "NA", "null" and the like are names.
"""
from __future__ import annotations

import gzip
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

ITEM_COLUMNS = ["item_id", "name", "genres", "type", "episodes", "rating_mean", "members"]
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01 UTC in Unix seconds: later (or negative) timestamps are not plausible
SYNTHETIC_MARKER = "synthetic.json"  # written next to generated files; marks data built from them as synthetic

# The 19 genre flags of ML-100K's u.item, in column order (u.genre holds the same list).
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]


class DataError(ValueError):
    """Bad input: ``str(err)`` is one line, ``FILE: line N, column C: value 'V' problem``."""

    def __init__(self, path, problem: str, line: int | None = None, column: str | None = None, value=None):
        location = ", ".join(([f"line {line}"] if line is not None else [])
                             + ([f"column '{column}'"] if column is not None else []))
        text = f"{path}: {location}" if location else str(path)
        if value is not None:
            text += f": value '{_short(value)}'"
        super().__init__(f"{text}: {problem}")
        self.path, self.line, self.column, self.value = path, line, column, value


def _short(value, limit: int = 60) -> str:
    """The value as one printable line: control characters (NUL, ESC, newlines...) escaped, long values cut."""
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class RawData:
    """What every reader returns.

    ``items``: the catalogue, one row per unique ``item_id`` (the source's own item id: anime.csv's ``anime_id``,
    MovieLens's movie id), with ITEM_COLUMNS. ``ratings``: ``user_id`` int64, ``item_id`` int64, ``rating``
    float64 (raw value, e.g. anime's -1 kept) and, when ``has_timestamps``, ``timestamp`` int64
    (unix seconds); rows in source file order.
    """
    source: str  # "anime", "mal", "movielens", or "synthetic" (anime-format files the generator wrote)
    format: str  # e.g. "kaggle-anime", "mal-animelist", "ml-100k", "recbole-atomic", "ml-1m", "ml-latest"
    items: pd.DataFrame
    ratings: pd.DataFrame
    files: list[dict]  # [{"path", "rows"}] of the files read, catalogue first
    has_timestamps: bool
    unrated_value: float | None  # raw rating meaning "watched, not rated" (anime: -1, MAL: 0)
    feedback_thresholds: tuple[float, float]  # default (dislike_max, like_max) for this source
    synthetic: dict | None = field(default=None)  # generator settings when the files are synthetic
    dropped: dict = field(default_factory=dict)  # rows a reader's policy removed, by reason (into meta.json)


# ----------------------------------------------------------------------------------------- CSV core

def _check_exists(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")
    return path


def _open_text(path: Path, encoding: str):
    opener = gzip.open if path.name.endswith(".gz") else open
    return opener(path, "rt", encoding=encoding, errors="replace", newline="")


def _header(path: Path, delimiter: str, encoding: str, data: bytes | None = None) -> list[str]:
    codec = "utf-8-sig" if encoding == "utf8" else encoding
    if data is not None:
        first = data.split(b"\n", 1)[0].decode(codec, errors="replace")
    else:
        try:
            with _open_text(path, codec) as f:
                first = f.readline()
        except (OSError, EOFError) as err:
            raise DataError(path, f"cannot read: {err}") from None
    if not first.strip():
        raise DataError(path, "empty file (no header line)", line=1)
    return [name.strip().strip('"') for name in first.rstrip("\r\n").split(delimiter)]


def read_csv(path, columns: dict[str, str], *, delimiter: str = ",", encoding: str = "utf8",
             names: list[str] | None = None, quoting: bool = True, data: bytes | None = None,
             required: list[str] | None = None, null_values: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Read ``columns`` ({name: "int"|"float"|"str"}) of a delimited file into pandas.

    ``names``: the file has no header and these are its columns. ``data``: parse these bytes
    instead of the file (the file is still the one errors name). ``required``: the columns that
    must be present (default all of ``columns``; absent optional ones are left out). ``null_values``: the
    texts that mean missing (default pyarrow's: "", "NA", "null", "NaN", ...).
    Returns (frame, number of the first data line) so callers can name lines of later problems.
    Numbers must parse and be present; strings may be missing (None).
    """
    path = Path(path)
    if data is None:
        _check_exists(path)
    if names is None:
        header = _header(path, delimiter, encoding, data)
        required = list(columns) if required is None else required
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(path, f"missing column '{missing[0]}' (the header has: {', '.join(header)})", line=1)
        repeated = [c for n, c in enumerate(header) if c in header[:n] and c in columns]
        if repeated:
            raise DataError(path, "the header names this column twice", line=1, column=repeated[0])
        columns = {c: kind for c, kind in columns.items() if c in header}
        first_line = 2
    else:
        first_line = 1
    arrow_types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    read_opts = dict(column_names=names, encoding=encoding)
    parse_opts = dict(delimiter=delimiter, quote_char='"' if quoting else False)
    nulls = {} if null_values is None else {"null_values": null_values}
    convert = pacsv.ConvertOptions(column_types={c: arrow_types[k] for c, k in columns.items()},
                                   include_columns=list(columns), strings_can_be_null=True, **nulls)
    # No invalid_row_handler on a multi-threaded read: pyarrow then calls Python from its own threads, and a
    # process that exits soon after (a bad value: exit 2) could abort in their teardown (exit 134).
    try:
        table = pacsv.read_csv(pa.BufferReader(data) if data is not None else path,
                               read_options=pacsv.ReadOptions(**read_opts),
                               parse_options=pacsv.ParseOptions(**parse_opts), convert_options=convert)
    except pa.ArrowInvalid as err:  # a malformed line or a value that does not convert: diagnose it below
        raise _diagnosed(path, data, columns, first_line, read_opts, parse_opts, nulls, err) from None
    except (OSError, EOFError) as err:
        raise DataError(path, f"cannot read: {err}") from None
    if table.num_rows == 0:
        raise DataError(path, "no data rows (only a header)" if names is None else "no data rows", line=first_line)
    frame = table.to_pandas()
    numeric = [name for name, kind in columns.items() if kind != "str"]
    if frame[numeric].isna().to_numpy().any():  # show what the file holds there ('nan', 'NA', '')
        text = _as_text(path, data, columns, read_opts, parse_opts, {"null_values": []})
        for name in numeric:
            check_present(path, frame[name], name, first_line, text[name])
    return frame, first_line


def _as_text(path, data: bytes | None, columns: dict, read_opts: dict, parse_opts: dict, nulls: dict,
             skip_bad_rows: bool = False) -> pd.DataFrame:
    """``columns`` read as strings (to show a value as the file wrote it); ``skip_bad_rows``: single-threaded,
    skipping malformed lines (see read_csv on threads and row handlers)."""
    handler = {"invalid_row_handler": lambda _: "skip"} if skip_bad_rows else {}
    try:
        return pacsv.read_csv(pa.BufferReader(data) if data is not None else path,
                              read_options=pacsv.ReadOptions(**read_opts, use_threads=not skip_bad_rows),
                              parse_options=pacsv.ParseOptions(**parse_opts, **handler),
                              convert_options=pacsv.ConvertOptions(
                                  column_types={c: pa.string() for c in columns}, include_columns=list(columns),
                                  strings_can_be_null=True, **nulls)).to_pandas()
    except pa.ArrowInvalid as err:
        if "UTF8" in str(err):
            raise _first_invalid_utf8(path, data) from None
        raise DataError(path, f"unreadable ({_first_line_of(err)})") from None


def _diagnosed(path, data: bytes | None, columns: dict, first_line: int, read_opts: dict, parse_opts: dict,
               nulls: dict, error: pa.ArrowInvalid) -> DataError:
    """The DataError naming the first line behind pyarrow's ``error`` (which names no file, often no line)."""
    if "UTF8" in str(error):
        return _first_invalid_utf8(path, data)
    if "straddl" in str(error):  # a line longer than pyarrow's block
        return _first_long_line(path, data, pacsv.ReadOptions().block_size)
    malformed = _first_bad_row(path, data, read_opts, parse_opts)
    text = _as_text(path, data, columns, read_opts, parse_opts, nulls, skip_bad_rows=malformed is not None)
    if malformed is not None and malformed.number is not None:  # rows after it are shifted: look above it
        text = text.iloc[:malformed.number - first_line]
    for name, kind in columns.items():
        if kind != "str":
            _check_numeric(path, text[name], kind, name, first_line)
    if malformed is None:
        return DataError(path, f"unreadable value ({_first_line_of(error)})")
    return DataError(path, f"expected {malformed.expected_columns} columns, found {malformed.actual_columns} "
                           "(truncated or malformed line)", line=malformed.number, value=malformed.text)


def _first_line_of(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _first_long_line(path, data: bytes | None, limit: int) -> DataError:
    raw = np.frombuffer(data if data is not None else _read_bytes(Path(path)), dtype=np.uint8)
    ends = np.concatenate([np.flatnonzero(raw == ord("\n")), [len(raw)]])
    starts = np.concatenate([[0], ends[:-1] + 1])
    row = int(np.flatnonzero(ends - starts > limit)[0])
    value = raw[starts[row]:starts[row] + 80].tobytes().decode("utf-8", errors="backslashreplace")
    return DataError(path, f"a line of {ends[row] - starts[row]:,} bytes (over the {limit:,}-byte limit of a line)",
                     line=row + 1, value=value)


def check_present(path, values: pd.Series, column: str, first_line: int, text: pd.Series | None = None) -> None:
    """Raise on the first missing value (``text``: the column as the file wrote it, to show the value)."""
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        shown = "" if text is None or text.iloc[row] is None else str(text.iloc[row])
        raise DataError(path, "missing value" if not shown.strip() else "missing value (or NaN): a number is needed",
                        line=row + first_line, column=column, value=shown)


def _first_invalid_utf8(path, data: bytes | None) -> DataError:
    """The error naming the first line whose bytes are not UTF-8 (e.g. a Latin-1 file)."""
    raw = data if data is not None else _read_bytes(Path(path))
    try:
        raw.decode("utf-8")
        return DataError(path, "not valid UTF-8 text")
    except UnicodeDecodeError as err:
        start = raw.rfind(b"\n", 0, err.start) + 1
        end = raw.find(b"\n", err.start)
        line = raw[start:end if end >= 0 else len(raw)].decode("utf-8", errors="backslashreplace")
        return DataError(path, f"byte 0x{raw[err.start]:02x} is not UTF-8 (a Latin-1 or Windows-1252 file?); "
                               "save it as UTF-8", line=raw.count(b"\n", 0, err.start) + 1, value=line.rstrip("\r"))


def _first_bad_row(path: Path, data: bytes | None, read_opts: dict, parse_opts: dict):
    """Re-read single-threaded so pyarrow reports the physical line of the first malformed row."""
    found = []

    def on_bad_row(row):
        found.append(row)
        return "error"

    try:
        pacsv.read_csv(pa.BufferReader(data) if data is not None else path,
                       read_options=pacsv.ReadOptions(**read_opts, use_threads=False),
                       parse_options=pacsv.ParseOptions(**parse_opts, invalid_row_handler=on_bad_row),
                       convert_options=pacsv.ConvertOptions(column_types={}, strings_can_be_null=True))
    except pa.ArrowInvalid:
        pass
    return found[0] if found else None


def _check_numeric(path: Path, strings: pd.Series, kind: str, name: str, first_line: int) -> None:
    """Raise on the first value of a text column that is not an integer / a number (missing is fine here)."""
    present = strings.notna().to_numpy()
    if kind == "int":
        stripped = strings.str.strip()
        ok = stripped.str.fullmatch(r"[+-]?[0-9]+").fillna(False).to_numpy(dtype=bool)
        long = ok & (stripped.str.len().fillna(0).to_numpy() >= 19)  # few: check those exactly
        for row in np.flatnonzero(long):
            if not -2**63 <= int(stripped.iloc[row]) < 2**63:
                raise DataError(path, "out of the 64-bit integer range", line=int(row) + first_line, column=name,
                                value=strings.iloc[row])
    else:
        ok = pd.to_numeric(strings.str.strip(), errors="coerce").notna().to_numpy()
    bad = present & ~ok
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        expected = "an integer" if kind == "int" else "a number"
        raise DataError(path, f"not {expected}", line=row + first_line, column=name, value=strings.iloc[row])


def check_range(path, values: np.ndarray, column: str, first_line: int, ok: np.ndarray, expected: str) -> None:
    """Raise on the first value where ``ok`` is False."""
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        value = values[row]
        shown = int(value) if float(value).is_integer() else value
        raise DataError(path, f"out of range (expected {expected})", line=row + first_line, column=column,
                        value=shown)


def check_timestamps(path, values: np.ndarray, column: str, first_line: int, present: np.ndarray | None = None,
                     text: pd.Series | None = None) -> None:
    """Raise on the first timestamp (Unix seconds) outside 1970..2099, with a hint when it looks like milli-, micro-
    or nanoseconds. ``present``: the rows to check (default all); ``text``: the values as the file wrote them."""
    seconds = np.asarray(values, dtype=np.float64)
    bad = ~((seconds >= 0) & (seconds < MAX_TIMESTAMP))
    if present is not None:
        bad &= present
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values[row] if text is None else text.iloc[row]
        hint = next((f"; it looks like {unit}: convert the column to seconds" for scale, unit in
                     ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds"))
                     if MAX_TIMESTAMP <= seconds[row] and seconds[row] / scale < MAX_TIMESTAMP), "")
        shown = value if isinstance(value, (str, int, np.integer)) or not float(value).is_integer() else int(value)
        raise DataError(path, f"out of range (expected Unix seconds from 1970 to 2099{hint})", line=row + first_line,
                        column=column, value=shown)


def _check_unique_ids(path, ids: np.ndarray, column: str, first_line: int) -> None:
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(path, "duplicate id in the catalogue", line=row + first_line, column=column, value=ids[row])


def _nullable_int(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


# ----------------------------------------------------------------------------------------- anime

def load_anime_catalogue(path) -> pd.DataFrame:
    """The full anime catalogue (Kaggle ``anime.csv``, plain or .gz) cleaned for display and serving.

    One row per title with ITEM_COLUMNS: HTML entities in names decoded, ``genres`` a list of
    strings (empty when missing), ``episodes`` Int64 (null for "Unknown"), ``rating_mean`` float64
    (the site's mean score, nullable), ``members`` Int64. Rows in file order.
    """
    path = Path(path)
    frame, first_line = read_csv(path, {"anime_id": "int", "name": "str", "genre": "str", "type": "str",
                                        "episodes": "str", "rating": "str", "members": "str"},
                                 required=["anime_id", "name", "genre"])
    ids = frame["anime_id"].to_numpy(np.int64)
    _check_unique_ids(path, ids, "anime_id", first_line)
    n = len(frame)
    names = frame["name"].fillna("")
    has_entity = names.str.contains("&", regex=False)
    names = names.where(~has_entity, names[has_entity].map(html.unescape))
    genres = frame["genre"].fillna("").str.split(",").map(lambda parts: [g.strip() for g in parts if g.strip()])
    for optional, default in (("type", None), ("episodes", None), ("rating", None), ("members", None)):
        if optional not in frame:
            frame[optional] = pd.Series([default] * n, dtype="object")
    episodes = frame["episodes"].where(frame["episodes"] != "Unknown")
    return pd.DataFrame({
        "item_id": ids,
        "name": names.astype(object),
        "genres": genres,
        "type": frame["type"].astype(object).where(frame["type"].notna(), None),
        "episodes": _nullable_int(episodes),
        "rating_mean": pd.to_numeric(frame["rating"], errors="coerce").astype("float64"),
        "members": _nullable_int(frame["members"]),
    })


def read_anime(items_path, ratings_path) -> RawData:
    """Kaggle CooperUnion anime: ``anime.csv`` + ``rating.csv`` (plain or .gz).

    ``rating.csv`` has ``user_id,anime_id,rating`` and optionally ``timestamp`` (unix seconds, as the
    synthetic generator writes). Ratings are 1..10, or -1 for watched-but-not-rated.
    """
    items = load_anime_catalogue(items_path)
    ratings_path = Path(ratings_path)
    ratings, first_line = read_csv(ratings_path, {"user_id": "int", "anime_id": "int", "rating": "float",
                                                  "timestamp": "int"},
                                   required=["user_id", "anime_id", "rating"])
    ratings = ratings.rename(columns={"anime_id": "item_id"})
    values = ratings["rating"].to_numpy()
    check_range(ratings_path, values, "rating", first_line, (values == -1) | ((values >= 1) & (values <= 10)),
                "-1 or 1..10")
    if "timestamp" in ratings:
        check_timestamps(ratings_path, ratings["timestamp"].to_numpy(), "timestamp", first_line)
    marker = Path(ratings_path).parent / SYNTHETIC_MARKER
    synthetic = json.loads(marker.read_text()) if marker.is_file() else None
    return RawData(source="synthetic" if synthetic else "anime", format="kaggle-anime", items=items, ratings=ratings,
                   files=[{"path": Path(items_path), "rows": len(items)},
                          {"path": ratings_path, "rows": len(ratings)}],
                   has_timestamps="timestamp" in ratings, unrated_value=-1.0, feedback_thresholds=(4, 7),
                   synthetic=synthetic)


# ----------------------------------------------------------------------------------------- MyAnimeList

MAL_PLAN_TO_WATCH = 6
MAL_DATETIME = "%Y-%m-%d %H:%M:%S"


def read_mal(items_path, ratings_path) -> RawData:
    """MyAnimeList user lists (``UserAnimeList.csv`` / ``animelists_cleaned.csv``, plain or .gz) with the Kaggle
    ``anime.csv`` catalogue. The policies (plan to watch, score 0, timestamps, user ids) are in the module docstring."""
    items = load_anime_catalogue(items_path)
    ratings_path = Path(ratings_path)
    frame, first_line = read_csv(ratings_path, {"username": "str", "anime_id": "int", "my_score": "float",
                                                "my_status": "float", "my_last_updated": "str"}, null_values=[""])
    check_present(ratings_path, frame["username"], "username", first_line)
    score, status = frame["my_score"].to_numpy(), frame["my_status"].to_numpy()
    check_range(ratings_path, score, "my_score", first_line, (score >= 0) & (score <= 10) & (score % 1 == 0),
                "a whole number 0..10")
    check_range(ratings_path, status, "my_status", first_line, status % 1 == 0, "a whole number")
    timestamp, undated = _mal_timestamps(ratings_path, frame["my_last_updated"], first_line)
    planned = status == MAL_PLAN_TO_WATCH
    undated &= ~planned
    keep = ~planned & ~undated
    user_id, _ = pd.factorize(frame["username"], sort=True)
    ratings = pd.DataFrame({"user_id": user_id[keep].astype(np.int64),
                            "item_id": frame["anime_id"].to_numpy(np.int64)[keep], "rating": score[keep],
                            "timestamp": timestamp[keep]})
    return RawData(source="mal", format="mal-animelist", items=items, ratings=ratings,
                   files=[{"path": Path(items_path), "rows": len(items)}, {"path": ratings_path, "rows": len(frame)}],
                   has_timestamps=True, unrated_value=0.0, feedback_thresholds=(4, 7),
                   dropped={"plan_to_watch_rows": int(planned.sum()), "undated_rows": int(undated.sum())})


def _mal_timestamps(path: Path, text: pd.Series, first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """``my_last_updated`` (Unix seconds or 'YYYY-MM-DD HH:MM:SS' UTC, per row) -> (int64 seconds, missing mask)."""
    text = text.str.strip()
    digits = text.str.fullmatch(r"\d+", na=False).to_numpy(dtype=bool)
    seconds = pd.to_numeric(text.where(digits), errors="coerce").to_numpy()
    dated = pd.to_datetime(text.where(~digits), format=MAL_DATETIME, errors="coerce").to_numpy("datetime64[s]")
    missing = text.str.startswith("0000-00-00", na=True).to_numpy(dtype=bool) | (seconds == 0)
    bad = ~missing & ~digits & np.isnat(dated)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"not Unix seconds or a date '{MAL_DATETIME}'", line=row + first_line,
                        column="my_last_updated", value=text.iloc[row])
    stamp = np.where(digits, seconds, dated.astype(np.int64))
    check_timestamps(path, stamp, "my_last_updated", first_line, present=~missing, text=text)
    return stamp.astype(np.int64), missing


# ----------------------------------------------------------------------------------------- MovieLens

def _find(folder: Path, names: list[str]) -> Path | None:
    for name in names:
        hits = sorted(folder.glob(name))
        if hits:
            return hits[0]
    return None


def find_movielens(ratings_path, items_path=None) -> tuple[str, Path, Path]:
    """Detect a MovieLens layout from a folder or a ratings file: (format, ratings file, items file)."""
    ratings_path = Path(ratings_path)
    if ratings_path.is_dir():
        folder = ratings_path
        found = _find(folder, ["*.inter", "*.inter.gz", "u.data", "u.data.gz", "ratings.dat", "ratings.dat.gz",
                               "ratings.csv", "ratings.csv.gz"])
        if found is None:
            raise DataError(folder, "no MovieLens ratings file here (looked for *.inter, u.data, ratings.dat, "
                                    "ratings.csv, each plain or .gz)")
        ratings_path = found
    _check_exists(ratings_path)
    first = _header(ratings_path, "\n", "latin-1")[0]
    name = ratings_path.name.removesuffix(".gz")
    if name.endswith(".inter") or ":token" in first:
        fmt, item_names = "recbole-atomic", [name.removesuffix(".inter") + ".item", "*.item"]
    elif "::" in first:
        fmt, item_names = "ml-1m", ["movies.dat"]
    elif first.startswith("userId"):
        fmt, item_names = "ml-latest", ["movies.csv"]
    elif len(first.split("\t")) == 4:
        fmt, item_names = "ml-100k", ["u.item"]
    else:
        raise DataError(ratings_path, "not a known MovieLens ratings format (RecBole .inter, ML-100K u.data, "
                                      "ML-1M ratings.dat, ML-latest ratings.csv)", line=1, value=first)
    if items_path is None:
        items_path = _find(ratings_path.parent, item_names + [n + ".gz" for n in item_names])
        if items_path is None:
            raise DataError(ratings_path.parent / item_names[0], "file not found (the movie list for "
                                                                 f"{ratings_path.name})")
    return fmt, ratings_path, _check_exists(Path(items_path))


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError) as err:
        raise DataError(path, f"cannot read: {err}") from None


def _movielens_items(movie_ids: np.ndarray, titles: pd.Series, genres: pd.Series, years: pd.Series) -> pd.DataFrame:
    n = len(movie_ids)
    return pd.DataFrame({"item_id": movie_ids.astype(np.int64), "name": titles.fillna("").astype(object),
                         "genres": genres, "type": pd.Series([None] * n, dtype=object),
                         "episodes": pd.array([pd.NA] * n, dtype="Int64"),
                         "rating_mean": np.full(n, np.nan), "members": pd.array([pd.NA] * n, dtype="Int64"),
                         "year": _nullable_int(years.reset_index(drop=True))})


def year_in_title(titles: pd.Series) -> pd.Series:
    """The release year MovieLens writes at the end of a title ("Heat (1995)"), as text; missing where none."""
    return titles.astype(str).str.extract(r"\((\d{4})\)\s*$")[0]


def read_movielens(ratings_path, items_path=None) -> RawData:
    """MovieLens in any of four layouts (detected from the files); ``rating_mean``/``members`` of an
    item are the mean and count of its ratings in the file read."""
    fmt, ratings_path, items_path = find_movielens(ratings_path, items_path)
    rating_cols = {"user_id": "int", "item_id": "int", "rating": "float", "timestamp": "float"}
    if fmt == "recbole-atomic":
        ratings, first = read_csv(ratings_path, rating_cols, delimiter="\t", quoting=False,
                                  data=_untyped_header(ratings_path))
        items, ifirst = read_csv(items_path, {"item_id": "int", "movie_title": "str", "class": "str",
                                              "release_year": "str"},
                                 delimiter="\t", quoting=False, data=_untyped_header(items_path),
                                 required=["item_id", "movie_title"])
        genre_text = items["class"] if "class" in items else pd.Series([""] * len(items))
        genres = genre_text.fillna("").str.split().map(list)
        ids, titles = items["item_id"].to_numpy(), items["movie_title"]
        years = items["release_year"] if "release_year" in items else pd.Series([None] * len(items))
    elif fmt == "ml-100k":
        ratings, first = read_csv(ratings_path, rating_cols, delimiter="\t", quoting=False,
                                  names=list(rating_cols))
        flag_names = [f"g{k}" for k in range(len(ML100K_GENRES))]
        items, ifirst = read_csv(items_path, {"movie_id": "int", "title": "str", "release": "str",
                                              **{g: "int" for g in flag_names}},
                                 delimiter="|", quoting=False, encoding="latin-1",
                                 names=["movie_id", "title", "release", "video_release", "url", *flag_names])
        flags = items[flag_names].to_numpy() > 0
        names = np.array(ML100K_GENRES, dtype=object)
        genres = pd.Series([list(names[row]) for row in flags])
        ids, titles = items["movie_id"].to_numpy(), items["title"]
        years = items["release"].str[-4:]  # "01-Jan-1995"
    elif fmt == "ml-1m":
        ratings, first = read_csv(ratings_path, rating_cols, delimiter="\t", quoting=False, names=list(rating_cols),
                                  data=_read_bytes(ratings_path).replace(b"::", b"\t"))
        items, ifirst = read_csv(items_path, {"movie_id": "int", "title": "str", "genres": "str"}, delimiter="\t",
                                 quoting=False, encoding="latin-1", names=["movie_id", "title", "genres"],
                                 data=_read_bytes(items_path).replace(b"::", b"\t"))
        genres = items["genres"].fillna("").str.split("|").map(lambda gs: [g for g in gs if g])
        ids, titles = items["movie_id"].to_numpy(), items["title"]
        years = year_in_title(titles)
    else:  # ml-latest
        ratings, first = read_csv(ratings_path, {"userId": "int", "movieId": "int", "rating": "float",
                                                 "timestamp": "float"})
        ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
        items, ifirst = read_csv(items_path, {"movieId": "int", "title": "str", "genres": "str"})
        genres = items["genres"].fillna("").str.split("|").map(
            lambda gs: [g for g in gs if g and g != "(no genres listed)"])
        ids, titles = items["movieId"].to_numpy(), items["title"]
        years = year_in_title(titles)
    _check_unique_ids(items_path, ids, "movie id", ifirst)
    values = ratings["rating"].to_numpy()
    check_range(ratings_path, values, "rating", first, (values >= 0.5) & (values <= 5), "0.5..5")
    stamps = ratings["timestamp"].to_numpy()
    check_range(ratings_path, stamps, "timestamp", first, np.isfinite(stamps) & (stamps % 1 == 0),
                "whole unix seconds")
    check_timestamps(ratings_path, stamps, "timestamp", first)
    ratings["timestamp"] = stamps.astype(np.int64)
    catalogue = _movielens_items(ids, titles, genres, years)
    stats = ratings.groupby("item_id")["rating"].agg(["mean", "size"])
    catalogue["rating_mean"] = catalogue["item_id"].map(stats["mean"]).astype("float64")
    catalogue["members"] = catalogue["item_id"].map(stats["size"]).astype("Int64")
    return RawData(source="movielens", format=fmt, items=catalogue,
                   ratings=ratings[["user_id", "item_id", "rating", "timestamp"]],
                   files=[{"path": items_path, "rows": len(catalogue)}, {"path": ratings_path, "rows": len(ratings)}],
                   has_timestamps=True, unrated_value=None, feedback_thresholds=(2, 4))


def _untyped_header(path: Path) -> bytes:
    """RecBole atomic files type their columns (``item_id:token``): drop the types."""
    data = _read_bytes(path)
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    header = data[:end].decode("utf-8-sig").rstrip("\r").split("\t")
    names = [h.split(":")[0] for h in header]
    return "\t".join(names).encode() + data[end:]
