"""Loaders for public recommendation logs in their own file formats (KuaiRand, KuaiRec, MovieLens).

Every loader returns a ``DatasetDict`` with three tables in one standard schema, so the sample
builder, the simulator and every trainer share one path:

``interactions`` (time-sorted per user; :data:`INTERACTION_COLUMNS`)
    ``user_id`` int64, ``item_id`` int64, ``timestamp`` int64 (ms since epoch), ``play_time`` and
    ``duration`` float64 (seconds, NaN when the dataset has none), the feedback flags of
    :data:`kwaiformers.data.schema.FEEDBACK_LABELS` (int8; 0 when the dataset lacks the signal,
    see each loader), ``is_rand`` int8 (random exposure), ``logged_prob`` float64 (exposure
    probability when logged, else NaN) and ``rating`` float64 (NaN when none).
``users``
    ``user_id`` plus the dataset's categorical user features (strings), the input of the static
    user pathway.
``items``
    ``item_id``, ``duration`` (s, NaN), ``author_id`` (-1 unknown), ``tags`` (str) and ``text`` (a
    title/tags string for text embeddings).

With ``streaming=True`` the interactions are an ``IterableDataset`` read in CSV chunks (rows stay in
file order: the sample builder needs each user's rows in time order, which the public files
satisfy; it raises otherwise), inside an ``IterableDatasetDict`` whose ``users``/``items`` are
in-memory ``Dataset``s.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .schema import FEEDBACK_LABELS

__all__ = [
    "INTERACTION_COLUMNS",
    "load_kuairand",
    "load_kuairec",
    "load_movielens",
    "standardize_kuairand",
]

INTERACTION_COLUMNS: tuple[str, ...] = (
    "user_id", "item_id", "timestamp", "play_time", "duration", *FEEDBACK_LABELS, "is_rand",
    "logged_prob", "rating",
)

_KUAIRAND_REQUIRED = ("user_id", "video_id", "time_ms", "play_time_ms", "duration_ms", *FEEDBACK_LABELS)
_USER_ID_COLUMNS = ("user_id",)
_KUAIREC_REQUIRED = ("user_id", "video_id", "play_duration", "video_duration", "timestamp")
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)


def _interaction_features():
    from datasets import Features, Value

    feats = {"user_id": Value("int64"), "item_id": Value("int64"), "timestamp": Value("int64"),
             "play_time": Value("float64"), "duration": Value("float64")}
    feats.update({name: Value("int8") for name in FEEDBACK_LABELS})
    feats.update({"is_rand": Value("int8"), "logged_prob": Value("float64"),
                  "rating": Value("float64")})
    return Features(feats)


def _require_columns(columns: Sequence[str], required: Sequence[str], source: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{source} is missing required column(s) {missing}; found {list(columns)}")


def _finish_interactions(df):
    """Cast to the standard dtypes and column order."""
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    out["user_id"] = df["user_id"].astype(np.int64)
    out["item_id"] = df["item_id"].astype(np.int64)
    out["timestamp"] = df["timestamp"].astype(np.int64)
    for col in ("play_time", "duration"):
        out[col] = df[col].astype(np.float64) if col in df else np.nan
    for col in (*FEEDBACK_LABELS, "is_rand"):
        vals = df[col] if col in df else 0
        out[col] = pd.Series(vals, index=df.index).fillna(0).astype(np.int8)
    for col in ("logged_prob", "rating"):
        out[col] = df[col].astype(np.float64) if col in df else np.nan
    return out.reset_index(drop=True)


def _sort_interactions(df):
    return df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def _to_dataset(df, features=None):
    """``Dataset`` from a DataFrame keeping float NaN as NaN (``from_pandas`` would make nulls)."""
    import pyarrow as pa
    from datasets import Dataset

    cols = {}
    for c in df.columns:
        values = df[c].to_numpy()
        if values.dtype.kind in "biuf":
            cols[c] = pa.array(values, from_pandas=False)
        else:
            cols[c] = pa.array(values.tolist())
    table = pa.table(cols)
    if features is not None:
        table = table.cast(features.arrow_schema)
    return Dataset(table)


def _users_table(df, id_column: str = "user_id"):
    """``user_id`` + every other column as strings (categorical static features)."""
    out = df.copy()
    out[id_column] = out[id_column].astype(np.int64)
    for col in out.columns:
        if col != id_column:
            out[col] = out[col].astype(str).where(out[col].notna(), "")
    return out.rename(columns={id_column: "user_id"}).reset_index(drop=True)


def _items_table(item_id, duration=None, author_id=None, tags=None, text=None):
    import pandas as pd

    n = len(item_id)
    return pd.DataFrame({
        "item_id": np.asarray(item_id, dtype=np.int64),
        "duration": np.asarray(duration, dtype=np.float64) if duration is not None else np.full(n, np.nan),
        "author_id": np.asarray(author_id, dtype=np.int64) if author_id is not None else np.full(n, -1),
        "tags": list(tags) if tags is not None else [""] * n,
        "text": list(text) if text is not None else [""] * n,
    })


def _stream_interactions(paths: Sequence[str], read: Callable[[str], Iterator[Any]],
                         convert: Callable[[Any, str], Any], stream_order: str = "user"):
    """An ``IterableDataset`` reading ``paths`` chunk by chunk through ``convert``.

    Several files are merged lazily (``heapq.merge``) on ``(user_id, timestamp)`` when
    ``stream_order="user"`` (files sorted by user, then time, as the public logs are) or on
    ``timestamp`` when ``stream_order="time"`` (files sorted by time).
    """
    import heapq

    from datasets import IterableDataset

    if stream_order not in ("user", "time"):
        raise ValueError(f"stream_order must be 'user' or 'time', got {stream_order!r}")

    def one(path: str) -> Iterator[dict[str, Any]]:
        for chunk in read(path):
            yield from _finish_interactions(convert(chunk, path)).to_dict("records")

    def gen(paths: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        if len(paths) == 1:
            yield from one(paths[0])
            return
        if stream_order == "user":
            def key(r):
                return (r["user_id"], r["timestamp"])
        else:
            def key(r):
                return r["timestamp"]
        yield from heapq.merge(*(one(p) for p in paths), key=key)

    return IterableDataset.from_generator(gen, features=_interaction_features(),
                                          # a tuple, so that datasets does not shard the files
                                          gen_kwargs={"paths": tuple(paths)})


def _bundle(interactions, users, items, streaming: bool):
    from datasets import DatasetDict, IterableDatasetDict

    if streaming:
        return IterableDatasetDict({"interactions": interactions, "users": _to_dataset(users),
                                    "items": _to_dataset(items)})
    return DatasetDict({
        "interactions": _to_dataset(_sort_interactions(interactions), _interaction_features()),
        "users": _to_dataset(users),
        "items": _to_dataset(items),
    })


# ---------------------------------------------------------------------------- KuaiRand


def _kuairand_log_frame(df, source: str, is_random: bool):
    _require_columns(df.columns, _KUAIRAND_REQUIRED, source)
    out = df.rename(columns={"video_id": "item_id", "time_ms": "timestamp"})
    out["play_time"] = df["play_time_ms"].astype(np.float64) / 1000.0
    out["duration"] = df["duration_ms"].astype(np.float64) / 1000.0
    if "is_rand" not in out:
        out["is_rand"] = int(is_random)
    if "exposure_prob" in df:
        out["logged_prob"] = df["exposure_prob"]
    return out


def _kuairand_items(video_features, item_text: Sequence[str] | None = None):
    _require_columns(video_features.columns, ("video_id",), "video_features_basic")
    vf = video_features
    ids = vf["video_id"].to_numpy()
    dur = vf["video_duration"].astype(np.float64).to_numpy() / 1000.0 if "video_duration" in vf else None
    author = vf["author_id"].fillna(-1).to_numpy() if "author_id" in vf else None
    tags = vf["tag"].fillna("").astype(str).tolist() if "tag" in vf else None
    if item_text is not None:
        text = [item_text[int(i)] for i in ids]
    else:
        vtype = vf["video_type"].astype(str).tolist() if "video_type" in vf else [""] * len(ids)
        a = author if author is not None else [-1] * len(ids)
        t = tags or [""] * len(ids)
        text = [f"{ty} video by author {int(au)} with tags {tg}".strip() for ty, au, tg in zip(vtype, a, t)]
    return _items_table(ids, dur, author, tags, text)


def standardize_kuairand(log_frames: Sequence[Any], user_features=None, video_features=None,
                         item_text: Sequence[str] | None = None):
    """KuaiRand-schema DataFrames (e.g. from :class:`~kwaiformers.data.simulator.UserSimulator`)
    to the standard ``DatasetDict``."""
    import pandas as pd

    frames = [_kuairand_log_frame(f, f"log frame {i}", False) for i, f in enumerate(log_frames)]
    inter = _finish_interactions(pd.concat(frames, ignore_index=True))
    users = _users_table(user_features) if user_features is not None else pd.DataFrame(
        {"user_id": np.unique(inter["user_id"].to_numpy())})
    if video_features is not None:
        items = _kuairand_items(video_features, item_text)
    else:
        ids = np.unique(inter["item_id"].to_numpy())
        items = _items_table(ids)
    return _bundle(inter, users, items, streaming=False)


def _find_files(data_dir: str, pattern: str) -> list[str]:
    hits = sorted(glob.glob(os.path.join(data_dir, pattern)))
    if not hits:
        hits = sorted(glob.glob(os.path.join(data_dir, "*", pattern)))
    return hits


def load_kuairand(
    data_dir: str | os.PathLike,
    variant: str | None = None,
    include_random: bool = True,
    streaming: bool = False,
    chunksize: int = 200_000,
    stream_order: str = "user",
):
    """Load KuaiRand (Pure / 1K / 27K, chongminggao/KuaiRand) from its CSV files.

    Reads ``log_standard_*.csv`` (and ``log_random_*.csv`` when ``include_random``; its rows get
    ``is_rand = 1``), ``user_features_*.csv`` and ``video_features_basic_*.csv`` from ``data_dir``
    or ``data_dir/data``. ``variant`` (``"pure"``, ``"1k"``, ``"27k"`` or any file suffix such as
    ``"sim"``) restricts the files to ``*_<variant>*.csv``. KuaiRand has titles for no video, so
    ``items.text`` is built from the video type, author and tags. In streaming mode the log files
    are merged lazily by ``(user_id, timestamp)`` (``stream_order="user"``) or by ``timestamp``
    (``"time"``), whichever order the files are sorted in.
    """
    import pandas as pd

    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"KuaiRand directory {data_dir!r} does not exist")
    suffix = variant or ""

    def files(prefix: str) -> list[str]:
        return _find_files(data_dir, f"{prefix}*{suffix}*.csv")

    std = files("log_standard_")
    rnd = files("log_random_") if include_random else []
    if not std:
        raise FileNotFoundError(f"no log_standard_*{suffix}*.csv file under {data_dir!r}")
    ufiles, vfiles = files("user_features_"), files("video_features_basic_")
    users = _users_table(pd.read_csv(ufiles[0])) if ufiles else None
    if users is not None:
        _require_columns(users.columns, _USER_ID_COLUMNS, ufiles[0])
    items = _kuairand_items(pd.read_csv(vfiles[0])) if vfiles else None
    paths = std + rnd
    random_paths = set(rnd)

    def convert(chunk, path):
        return _kuairand_log_frame(chunk, path, path in random_paths)

    if streaming:
        inter = _stream_interactions(paths, lambda p: pd.read_csv(p, chunksize=chunksize), convert,
                                     stream_order)
    else:
        inter = _finish_interactions(pd.concat([convert(pd.read_csv(p), p) for p in paths],
                                               ignore_index=True))
    if users is None:
        if streaming:
            raise FileNotFoundError(f"no user_features_*{suffix}*.csv under {data_dir!r}")
        users = pd.DataFrame({"user_id": np.unique(inter["user_id"].to_numpy())})
    if items is None:
        if streaming:
            raise FileNotFoundError(f"no video_features_basic_*{suffix}*.csv under {data_dir!r}")
        items = _items_table(np.unique(inter["item_id"].to_numpy()))
    return _bundle(inter, users, items, streaming)


# ---------------------------------------------------------------------------- KuaiRec


def load_kuairec(
    data_dir: str | os.PathLike,
    matrix: str = "big",
    long_view_ratio: float = 2.0,
    streaming: bool = False,
    chunksize: int = 500_000,
):
    """Load KuaiRec (chongminggao/KuaiRec) from ``big_matrix.csv`` or ``small_matrix.csv``.

    Columns used: ``user_id, video_id, play_duration, video_duration`` (ms) and ``timestamp``
    (seconds). Every row is a watched impression, so ``is_click = 1``; ``long_view = watch_ratio >=
    long_view_ratio`` (default 2.0, the KuaiRec authors' positive threshold); KuaiRec has no
    like/follow/comment/forward/dislike signal, so those flags are 0. Rows without a timestamp
    cannot be placed in time and are dropped with a warning that counts them.
    ``item_categories.csv`` (``video_id, feat``), ``user_features.csv`` and, when present,
    ``kuairec_caption_category.csv`` (captions, topic tags, category names -> ``items.text``) are read.
    """
    import pandas as pd

    data_dir = os.fspath(data_dir)
    if matrix not in ("big", "small"):
        raise ValueError(f"matrix must be 'big' or 'small', got {matrix!r}")
    paths = _find_files(data_dir, f"{matrix}_matrix.csv")
    if not paths:
        raise FileNotFoundError(f"no {matrix}_matrix.csv under {data_dir!r}")
    dropped = [0]

    def convert(chunk, path):
        _require_columns(chunk.columns, _KUAIREC_REQUIRED, path)
        ok = chunk["timestamp"].notna()
        dropped[0] += int((~ok).sum())
        c = chunk[ok]
        out = pd.DataFrame({
            "user_id": c["user_id"], "item_id": c["video_id"],
            "timestamp": np.round(c["timestamp"].astype(np.float64) * 1000).astype(np.int64),
            "play_time": c["play_duration"].astype(np.float64) / 1000.0,
            "duration": c["video_duration"].astype(np.float64) / 1000.0,
            "is_click": 1,
        })
        ratio = c["watch_ratio"] if "watch_ratio" in c else out["play_time"] / out["duration"]
        out["long_view"] = (ratio.to_numpy() >= long_view_ratio).astype(np.int8)
        return out

    if streaming:
        inter = _stream_interactions(paths, lambda p: pd.read_csv(p, chunksize=chunksize), convert)
    else:
        inter = _finish_interactions(convert(pd.read_csv(paths[0]), paths[0]))
        if dropped[0]:
            warnings.warn(f"KuaiRec: dropped {dropped[0]} rows without a timestamp", stacklevel=2)
    ufiles = _find_files(data_dir, "user_features.csv")
    users = _users_table(pd.read_csv(ufiles[0])) if ufiles else None
    if users is None:
        if streaming:
            raise FileNotFoundError(f"no user_features.csv under {data_dir!r}")
        users = pd.DataFrame({"user_id": np.unique(inter["user_id"].to_numpy())})
    cfiles = _find_files(data_dir, "item_categories.csv")
    if cfiles:
        cats = pd.read_csv(cfiles[0])
        _require_columns(cats.columns, ("video_id", "feat"), cfiles[0])
        ids = cats["video_id"].to_numpy()
        tags = [str(f).strip("[]").replace(" ", "") for f in cats["feat"].tolist()]
    elif not streaming:
        ids = np.unique(inter["item_id"].to_numpy())
        tags = [""] * len(ids)
    else:
        raise FileNotFoundError(f"no item_categories.csv under {data_dir!r}")
    text = {int(i): f"video with categories {t}" for i, t in zip(ids, tags)}
    capfiles = _find_files(data_dir, "kuairec_caption_category.csv")
    if capfiles:
        cap = pd.read_csv(capfiles[0], engine="python", on_bad_lines="warn")
        _require_columns(cap.columns, ("video_id",), capfiles[0])
        parts = [c for c in ("caption", "manual_cover_text", "topic_tag", "first_level_category_name",
                             "second_level_category_name", "third_level_category_name") if c in cap]
        for row in cap[["video_id", *parts]].itertuples(index=False):
            bits = [str(v) for v in row[1:] if isinstance(v, str) and v not in ("UNKNOWN", "[]", "")]
            vid = pd.to_numeric(row[0], errors="coerce")
            if bits and not pd.isna(vid):
                text[int(vid)] = " | ".join(bits)
    items = _items_table(ids, tags=tags, text=[text[int(i)] for i in ids])
    return _bundle(inter, users, items, streaming)


# ---------------------------------------------------------------------------- MovieLens


def load_movielens(
    data_dir: str | os.PathLike,
    variant: str | None = None,
    like_threshold: float = 4.0,
    dislike_threshold: float = 2.0,
    streaming: bool = False,
    chunksize: int = 500_000,
):
    """Load MovieLens 100K (``u.data``, ``u.item``, ``u.user``) or 1M (``ratings.dat``,
    ``movies.dat``, ``users.dat``) from the GroupLens archives' own files.

    MovieLens has no play time or duration (NaN) and no explicit feedback flags, so ratings stand
    in (documented proxies): ``is_click = 1``, ``is_like = rating >= like_threshold`` and ``is_hate =
    rating <= dislike_threshold``; the raw ``rating`` is kept. ``variant`` is ``"100k"``/``"1m"``
    (default: detected from the files). User features: ``gender``, ``age`` (100K ages bucketed to
    the 1M age codes), ``occupation`` and ``zip_prefix`` (first zip character).
    """
    import pandas as pd

    data_dir = os.fspath(data_dir)
    if variant is None:
        if _find_files(data_dir, "u.data"):
            variant = "100k"
        elif _find_files(data_dir, "ratings.dat"):
            variant = "1m"
        else:
            raise FileNotFoundError(f"neither u.data (100K) nor ratings.dat (1M) under {data_dir!r}")
    variant = variant.lower()
    if variant not in ("100k", "1m"):
        raise ValueError(f"variant must be '100k' or '1m', got {variant!r}")
    names = ("user_id", "item_id", "rating", "ts")
    if variant == "100k":
        rfile, ifile, ufile = "u.data", "u.item", "u.user"
        read_kw: dict[str, Any] = {"sep": "\t", "header": None, "names": names, "engine": "c"}
    else:
        rfile, ifile, ufile = "ratings.dat", "movies.dat", "users.dat"
        read_kw = {"sep": "::", "header": None, "names": names, "engine": "python"}
    paths = _find_files(data_dir, rfile)
    if not paths:
        raise FileNotFoundError(f"no {rfile} under {data_dir!r}")

    def convert(chunk, path):
        if chunk.shape[1] != 4 or chunk.isna().any().any():
            raise ValueError(f"{path}: expected 4 fields per line (user, item, rating, timestamp)")
        rating = chunk["rating"].astype(np.float64)
        return pd.DataFrame({
            "user_id": chunk["user_id"], "item_id": chunk["item_id"],
            "timestamp": chunk["ts"].astype(np.int64) * 1000, "rating": rating, "is_click": 1,
            "is_like": (rating >= like_threshold).astype(np.int8),
            "is_hate": (rating <= dislike_threshold).astype(np.int8),
        })

    if streaming:
        inter = _stream_interactions(paths, lambda p: pd.read_csv(p, chunksize=chunksize, **read_kw),
                                     convert)
    else:
        inter = _finish_interactions(convert(pd.read_csv(paths[0], **read_kw), paths[0]))
    # items
    ipaths = _find_files(data_dir, ifile)
    if not ipaths:
        raise FileNotFoundError(f"no {ifile} under {data_dir!r}")
    if variant == "100k":
        cols = ["item_id", "title", "release_date", "video_release_date", "url", *_ML100K_GENRES]
        mv = pd.read_csv(ipaths[0], sep="|", header=None, names=cols, encoding="latin-1")
        flags = mv[list(_ML100K_GENRES)].to_numpy()
        genres = ["|".join(g for g, f in zip(_ML100K_GENRES, row) if f) for row in flags]
    else:
        mv = pd.read_csv(ipaths[0], sep="::", header=None, names=["item_id", "title", "genres"],
                         engine="python", encoding="latin-1")
        genres = mv["genres"].fillna("").tolist()
    titles = mv["title"].fillna("").astype(str).tolist()
    text = [f"{t} | genres: {g.replace('|', ', ')}" for t, g in zip(titles, genres)]
    items = _items_table(mv["item_id"].to_numpy(), tags=genres, text=text)
    # users
    upaths = _find_files(data_dir, ufile)
    if not upaths:
        raise FileNotFoundError(f"no {ufile} under {data_dir!r}")
    if variant == "100k":
        us = pd.read_csv(upaths[0], sep="|", header=None,
                         names=["user_id", "age", "gender", "occupation", "zip"], encoding="latin-1")
        edges = np.array([18, 25, 35, 45, 50, 56])
        codes = np.array([1, 18, 25, 35, 45, 50, 56])
        us["age"] = codes[np.searchsorted(edges, us["age"].to_numpy(), side="right")]
    else:
        us = pd.read_csv(upaths[0], sep="::", header=None, engine="python", encoding="latin-1",
                         names=["user_id", "gender", "age", "occupation", "zip"])
    us["zip_prefix"] = us["zip"].astype(str).str[:1]
    users = _users_table(us[["user_id", "gender", "age", "occupation", "zip_prefix"]])
    return _bundle(inter, users, items, streaming)
