"""Raw readers: each adapter on tiny fixtures, the shipped catalogue, and every bad-input case."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nostrade.sources import DataError, find_movielens, load_anime_catalogue, read_anime, read_mal, read_movielens

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CATALOGUE = REPO / "data" / "sample" / "anime.csv.gz"
ML100K = REPO.parent / "shared" / "data" / "ml-100k"
MAL = REPO / "tests" / "fixtures" / "mal"

CATALOGUE = ('anime_id,name,genre,type,episodes,rating,members\n'
             '1,Alpha &amp; Omega,"Action, Comedy",TV,12,7.5,1000\n'
             '2,Beta&#039;s,Drama,Movie,Unknown,,50\n'
             '3,Gamma,,,1,6.1,\n')


def write(path: Path, text: str, *, gz: bool = False, bom: bool = False, crlf: bool = False) -> Path:
    data = (text.replace("\n", "\r\n") if crlf else text).encode()
    data = b"\xef\xbb\xbf" + data if bom else data
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def anime_files(tmp_path: Path, ratings: str, **kw) -> tuple[Path, Path]:
    return write(tmp_path / "anime.csv", CATALOGUE), write(tmp_path / "rating.csv", ratings, **kw)


# ------------------------------------------------------------------------------------------ anime

def test_catalogue_is_cleaned(tmp_path):
    items = load_anime_catalogue(write(tmp_path / "anime.csv.gz", CATALOGUE, gz=True, crlf=True))
    assert items["item_id"].tolist() == [1, 2, 3]
    assert items["name"].tolist() == ["Alpha & Omega", "Beta's", "Gamma"]
    assert items["genres"].tolist() == [["Action", "Comedy"], ["Drama"], []]
    assert items["episodes"].tolist()[0] == 12 and items["episodes"].isna().tolist() == [False, True, False]
    assert items["type"].tolist() == ["TV", "Movie", None]
    assert np.isnan(items["rating_mean"].iloc[1]) and items["members"].isna().tolist() == [False, False, True]


def test_shipped_catalogue_has_every_title():
    items = load_anime_catalogue(SAMPLE_CATALOGUE)
    assert len(items) == 12_294 and items["item_id"].is_unique
    assert not items["name"].str.contains("&#039;|&quot;|&amp;", regex=True).any()
    assert items["episodes"].isna().sum() == 340  # the "Unknown" rows
    assert items["type"].isna().sum() == 25 and items["rating_mean"].isna().sum() == 230
    assert (items["genres"].map(len) == 0).sum() == 62
    assert str(items["episodes"].dtype) == "Int64"


def test_anime_ratings_read_with_bom_and_crlf(tmp_path):
    items, ratings = anime_files(tmp_path, "user_id,anime_id,rating\n5,2,-1\n5,1,9\n", bom=True, crlf=True)
    raw = read_anime(items, ratings)
    assert raw.ratings.to_dict("list") == {"user_id": [5, 5], "item_id": [2, 1], "rating": [-1.0, 9.0]}
    assert not raw.has_timestamps and raw.unrated_value == -1 and raw.feedback_thresholds == (4, 7)
    assert [f["rows"] for f in raw.files] == [3, 2] and raw.synthetic is None


def test_anime_optional_timestamp_column(tmp_path):
    items, ratings = anime_files(tmp_path, "user_id,anime_id,rating,timestamp\n5,2,8,1500000000\n")
    raw = read_anime(items, ratings)
    assert raw.has_timestamps and raw.ratings["timestamp"].tolist() == [1_500_000_000]


@pytest.mark.parametrize("ratings, line, column, value, problem", [
    ("user_id,anime_id,score\n1,1,5\n", 1, None, None, "missing column 'rating'"),
    ("user,anime_id,rating\n1,1,5\n", 1, None, None, "missing column 'user_id'"),
    ("user_id,anime_id,rating\n1,1,5\nx7,1,5\n", 3, "user_id", "x7", "not an integer"),
    ("user_id,anime_id,rating\n1,1.5,5\n", 2, "anime_id", "1.5", "not an integer"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,great\n", 3, "rating", "great", "not a number"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,11\n", 3, "rating", "11", "out of range"),
    ("user_id,anime_id,rating\n1,1,0\n", 2, "rating", "0", "out of range"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,\n", 3, "rating", "", "missing value"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,7\n1,3", 4, None, "1,3", "expected 3 columns, found 2"),
    ("user_id,anime_id,rating,timestamp\n1,1,5,1500000000\n1,2,5,soon\n", 3, "timestamp", "soon", "not an integer"),
    ("user_id,anime_id,rating\n1,1,5\n9223372036854775808,1,5\n", 3, "user_id", "9223372036854775808",
     "out of the 64-bit integer range"),
    ("user_id,anime_id,rating\n1,1,5\n-9223372036854775809,1,5\n", 3, "user_id", "-9223372036854775809",
     "out of the 64-bit integer range"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,nan\n", 3, "rating", "nan", "missing value (or NaN)"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,NA\n", 3, "rating", "NA", "missing value (or NaN)"),
    ("user_id,anime_id,rating\n1,1,5\n1,2,x\x00\x1b[2J\n", 3, "rating", "x\\x00\\x1b[2J", "not a number"),
])
def test_anime_bad_ratings(tmp_path, ratings, line, column, value, problem):
    items, path = anime_files(tmp_path, ratings)
    with pytest.raises(DataError) as err:
        read_anime(items, path)
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}") and problem in message and "\n" not in message
    if column is not None:
        assert f"column '{column}'" in message
    if value is not None:
        assert f"value '{value}'" in message


def test_a_latin1_catalogue_names_file_line_and_byte(tmp_path):
    for name, opener in (("anime.csv", Path.write_bytes), ("anime.csv.gz", None)):
        data = CATALOGUE.replace("Gamma", "Caf\u00e9").encode("latin-1")
        path = tmp_path / name
        path.write_bytes(data if opener else gzip.compress(data))
        with pytest.raises(DataError) as err:
            load_anime_catalogue(path)
        assert str(err.value) == (f"{path}: line 4: value '3,Caf\\xe9,,,1,6.1,': byte 0xe9 is not UTF-8 (a Latin-1 or "
                                  "Windows-1252 file?); save it as UTF-8")


def test_truncated_last_line_of_a_gz_file(tmp_path):
    items, _ = anime_files(tmp_path, "")
    path = write(tmp_path / "rating.csv.gz", "user_id,anime_id,rating\n1,1,5\n1,2,7\n1,", gz=True)
    with pytest.raises(DataError, match=r"rating\.csv\.gz: line 4: value '1,': expected 3 columns, found 2"):
        read_anime(items, path)


def test_cut_off_gz_stream(tmp_path):
    items, _ = anime_files(tmp_path, "")
    path = tmp_path / "rating.csv.gz"
    path.write_bytes(gzip.compress(b"user_id,anime_id,rating\n" + b"1,1,5\n" * 1000)[:-20])
    with pytest.raises(DataError, match="cannot read"):
        read_anime(items, path)


def test_missing_files(tmp_path):
    items, ratings = anime_files(tmp_path, "user_id,anime_id,rating\n1,1,5\n")
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_anime(items, tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"gone\.csv: file not found"):
        read_anime(tmp_path / "gone.csv", ratings)


def test_catalogue_errors(tmp_path):
    with pytest.raises(DataError, match=r"line 3, column 'anime_id': value '1': duplicate id"):
        load_anime_catalogue(write(tmp_path / "a.csv", "anime_id,name,genre\n1,A,Drama\n1,B,Drama\n"))
    with pytest.raises(DataError, match="missing column 'genre'"):
        load_anime_catalogue(write(tmp_path / "b.csv", "anime_id,name,genres\n1,A,Drama\n"))
    with pytest.raises(DataError, match="empty file"):
        load_anime_catalogue(write(tmp_path / "c.csv", ""))


# ------------------------------------------------------------------------------------------ MyAnimeList

MAL_HEADER = ("username,anime_id,my_watched_episodes,my_start_date,my_finish_date,my_score,my_status,my_rewatching,"
              "my_rewatching_ep,my_last_updated,my_tags\n")


def mal_row(user="u", anime=1, score="8", status="2", updated="1300000000") -> str:
    return f"{user},{anime},12,0000-00-00,0000-00-00,{score},{status},,0,{updated},\n"


def test_mal_user_list_policies():
    raw = read_mal(SAMPLE_CATALOGUE, MAL / "UserAnimeList.csv")
    assert (raw.source, raw.format, raw.has_timestamps, raw.unrated_value) == ("mal", "mal-animelist", True, 0)
    assert raw.feedback_thresholds == (4, 7) and [f["rows"] for f in raw.files] == [12_294, 16]
    # two plan-to-watch rows (status 6) and one with my_last_updated 0 are dropped; status 1, 3 and 4 are kept;
    # score 0 stays 0 (the unrated value); usernames -> ids in sorted (code point) order
    assert raw.dropped == {"plan_to_watch_rows": 2, "undated_rows": 1}
    assert raw.ratings.to_dict("list") == {
        "user_id": [2, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0],  # karthiga, RedvelvetDaisuki, Damonashu
        "item_id": [21, 59, 74, 120, 210, 1, 5, 6, 20, 1, 6, 1, 30],
        "rating": [9.0, 7.0, 7.0, 7.0, 0.0, 10.0, 8.0, 3.0, 6.0, 9.0, 1.0, 10.0, 8.0],
        "timestamp": [1362307973, 1362923691, 1367081015, 1362923745, 1362923691, 1424050000, 1424050000,
                      1426000000, 1427000000, 1300000000, 1300000100, 1310000000, 1300000200]}
    assert raw.ratings["timestamp"].dtype == np.int64 and raw.ratings["user_id"].dtype == np.int64


def test_mal_cleaned_layout_gives_the_same_ratings():
    """animelists_cleaned.csv: dates as 'YYYY-MM-DD HH:MM:SS' (UTC, '0000-00-00 00:00:00' missing), columns in
    another order."""
    raw = read_mal(SAMPLE_CATALOGUE, MAL / "animelists_cleaned.csv")
    pd.testing.assert_frame_equal(raw.ratings, read_mal(SAMPLE_CATALOGUE, MAL / "UserAnimeList.csv").ratings)
    assert raw.dropped == {"plan_to_watch_rows": 2, "undated_rows": 1}


def test_mal_either_timestamp_form_in_any_row_and_names_that_look_missing(tmp_path):
    path = write(tmp_path / "list.csv.gz", MAL_HEADER + mal_row("NA", 1, updated="2011-03-13 07:06:40")
                 + mal_row("null", 5, updated="1300000000") + mal_row("NA", 6, updated="0000-00-00"), gz=True)
    raw = read_mal(SAMPLE_CATALOGUE, path)
    assert raw.ratings.to_dict("list") == {"user_id": [0, 1], "item_id": [1, 5], "rating": [8.0, 8.0],
                                           "timestamp": [1300000000, 1300000000]}
    assert raw.dropped["undated_rows"] == 1


@pytest.mark.parametrize("text, line, column, value, problem", [
    (MAL_HEADER.replace(",my_status", "") + "u,1,12,0000-00-00,0000-00-00,8,,0,1300000000,\n", 1, None, None,
     "missing column 'my_status'"),
    (MAL_HEADER + mal_row() + mal_row(score="nine"), 3, "my_score", "nine", "not a number"),
    (MAL_HEADER + mal_row(score="11"), 2, "my_score", "11", "out of range (expected a whole number 0..10)"),
    (MAL_HEADER + mal_row() + mal_row(score="-1"), 3, "my_score", "-1", "out of range"),
    (MAL_HEADER + mal_row(score="7.5"), 2, "my_score", "7.5", "out of range"),
    (MAL_HEADER + mal_row(status="done"), 2, "my_status", "done", "not a number"),
    (MAL_HEADER + mal_row(anime="x1"), 2, "anime_id", "x1", "not an integer"),
    (MAL_HEADER + mal_row() + mal_row(user=""), 3, "username", "", "missing value"),
    (MAL_HEADER + mal_row(updated="yesterday"), 2, "my_last_updated", "yesterday", "not Unix seconds or a date"),
    (MAL_HEADER + mal_row(updated="2011-13-01 00:00:00"), 2, "my_last_updated", "2011-13-01 00:00:00",
     "not Unix seconds"),
])
def test_mal_bad_input(tmp_path, text, line, column, value, problem):
    path = write(tmp_path / "UserAnimeList.csv", text)
    with pytest.raises(DataError) as err:
        read_mal(SAMPLE_CATALOGUE, path)
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}") and problem in message and "\n" not in message
    if column is not None:
        assert f"column '{column}'" in message and f"value '{value}'" in message


# ------------------------------------------------------------------------------------------ MovieLens

ML_RATINGS = [(1, 10, 4.0, 881250949), (2, 20, 1.0, 881250950), (1, 20, 5.0, 881250951)]


def _ml_100k(folder: Path) -> None:
    write(folder / "u.data", "".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in ML_RATINGS))
    flags = lambda on: "|".join("1" if k in on else "0" for k in range(19))  # noqa: E731
    (folder / "u.item").write_bytes(f"10|Caf\xe9 (1995)|01-Jan-1995||http://x|{flags({1, 5})}\n"
                                    f"20|Other (1996)|01-Jan-1996||http://y|{flags({8})}\n".encode("latin-1"))


def _ml_atomic(folder: Path) -> None:
    write(folder / "ml.inter.gz", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ML_RATINGS), gz=True)
    write(folder / "ml.item.gz", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
          "10\tCafé\t1995\tAction Comedy\n20\tOther\t1996\tDrama\n", gz=True)


def _ml_1m(folder: Path) -> None:
    write(folder / "ratings.dat", "".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in ML_RATINGS))
    (folder / "movies.dat").write_bytes("10::Café (1995)::Action|Comedy\n20::Other (1996)::Drama\n".encode("latin-1"))


def _ml_latest(folder: Path) -> None:
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n"
          + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ML_RATINGS))
    write(folder / "movies.csv", 'movieId,title,genres\n10,"Café, The (1995)",Action|Comedy\n'
                                 '20,Other (1996),Drama\n')


@pytest.mark.parametrize("fmt, make", [("ml-100k", _ml_100k), ("recbole-atomic", _ml_atomic),
                                       ("ml-1m", _ml_1m), ("ml-latest", _ml_latest)])
def test_movielens_formats_give_one_shape(tmp_path, fmt, make):
    make(tmp_path)
    raw = read_movielens(tmp_path)
    assert raw.format == fmt and raw.has_timestamps and raw.feedback_thresholds == (2, 4)
    assert list(raw.ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert [tuple(r) for r in raw.ratings.itertuples(index=False)] == ML_RATINGS
    assert raw.ratings["timestamp"].dtype == np.int64
    items = raw.items.set_index("item_id")
    assert items.loc[10, "genres"] == ["Action", "Comedy"] and items.loc[20, "genres"] == ["Drama"]
    assert items.loc[10, "name"].startswith("Caf\u00e9")
    assert items.loc[20, "members"] == 2 and items.loc[20, "rating_mean"] == 3.0


def test_movielens_detection_from_a_file_and_errors(tmp_path):
    _ml_1m(tmp_path)
    fmt, ratings, items = find_movielens(tmp_path / "ratings.dat")
    assert (fmt, ratings.name, items.name) == ("ml-1m", "ratings.dat", "movies.dat")
    (tmp_path / "movies.dat").unlink()
    with pytest.raises(DataError, match=r"movies\.dat: file not found"):
        read_movielens(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        read_movielens(tmp_path / "empty")


def test_movielens_rating_out_of_range(tmp_path):
    _ml_latest(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,1\n1,20,7.5,2\n")
    with pytest.raises(DataError, match=r"ratings\.csv: line 3, column 'rating': value '7.5': out of range"):
        read_movielens(tmp_path)


@pytest.mark.skipif(not ML100K.exists(), reason="../shared/data/ml-100k not present")
def test_real_ml100k_recbole_files():
    raw = read_movielens(ML100K)
    assert raw.format == "recbole-atomic"
    assert len(raw.ratings) == 100_000 and raw.ratings["user_id"].nunique() == 943
    assert len(raw.items) == 1_682 and raw.items["members"].sum() == 100_000
    assert raw.items.set_index("item_id").loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    first = pd.read_csv(ML100K / "ml-100k.inter.gz", sep="\t", nrows=1)
    assert raw.ratings.iloc[0].tolist() == first.iloc[0].tolist()


def test_the_first_problem_in_the_file_is_reported(tmp_path):
    items, path = anime_files(tmp_path, "user_id,anime_id,rating\n1,1,5\n1,2,1e3x\n1,3\n")
    with pytest.raises(DataError, match=r"line 3, column 'rating': value '1e3x': not a number"):
        read_anime(items, path)
    items, path = anime_files(tmp_path, "user_id,anime_id,rating\n1e3,1,5\n")
    with pytest.raises(DataError, match=r"line 2, column 'user_id': value '1e3': not an integer"):
        read_anime(items, path)
    items, path = anime_files(tmp_path, "user_id,anime_id,rating\n1,1,5\n1,2\n1,3,x\n")
    with pytest.raises(DataError, match=r"line 3: value '1,2': expected 3 columns"):
        read_anime(items, path)


@pytest.mark.parametrize("data, expected", [
    (b"user_id,anime_id,rating\n1,1,5\n1,2,\xff7\n", r"line 3: value '1,2,\\xff7': byte 0xff is not UTF-8"),
    (b"user_id,anime_id,rating,rating\n1,1,5,6\n", r"line 1, column 'rating': the header names this column twice"),
    (b"user_id,anime_id,rating\n", r"line 2: no data rows \(only a header\)"),
    (b"user_id,anime_id,rating\n1,1,5\n1,2," + b"7" * (2 << 20) + b"\n1,3,5\n",
     r"line 3: value '1,2,7777.*': a line of 2,097,156 bytes \(over the 1,048,576-byte limit of a line\)"),
])
def test_every_csv_error_names_the_file_and_line(tmp_path, data, expected):
    items, path = anime_files(tmp_path, "")
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"^{path}: {expected}") as err:
        read_anime(items, path)
    assert "\n" not in str(err.value)


def test_the_year_at_the_end_of_a_movielens_title():
    from nostrade.sources import year_in_title
    years = year_in_title(pd.Series(["Heat (1995)", "City of Lost Children, The (Cité des enfants perdus) (1995) ",
                                     "Jumanji", "1984 (1984)", "Babylon 5 (1994-1998)"]))
    assert years[[0, 1, 3]].tolist() == ["1995", "1995", "1984"] and years[[2, 4]].isna().all()


@pytest.mark.parametrize("ratings", ["user_id,anime_id,rating\n1,1,5\n1,2,nan\n",
                                     "user_id,anime_id,rating\n1,1,5\n1,2\n",
                                     "user_id,anime_id,rating\n1,1,5\n1,2,x\n1,3\n",
                                     "user_id,anime_id,rating\n1,1,11\n"])
def test_no_python_row_handler_runs_on_pyarrows_threads(tmp_path, ratings, monkeypatch):
    """Defect: prep printed the right error, then aborted with exit 134 in about 1 run of 4 (a multi-threaded read
    calling a Python row handler, torn down at exit): a handler only ever goes with a single-threaded read."""
    import pyarrow.csv as pacsv
    real, calls = pacsv.read_csv, []

    def spy(source, read_options=None, parse_options=None, convert_options=None):
        calls.append(((read_options or pacsv.ReadOptions()).use_threads,
                      (parse_options or pacsv.ParseOptions()).invalid_row_handler is not None))
        return real(source, read_options=read_options, parse_options=parse_options, convert_options=convert_options)

    monkeypatch.setattr(pacsv, "read_csv", spy)
    items, path = anime_files(tmp_path, ratings)
    with pytest.raises(DataError, match=rf"^{path}: line"):
        read_anime(items, path)
    assert calls and (True, True) not in calls
