"""Loaders for KuaiRand, KuaiRec and MovieLens on tiny files written in the datasets' own formats."""

from __future__ import annotations

import math

import pytest

from kwaiformers.data.loaders import (
    INTERACTION_COLUMNS,
    load_kuairand,
    load_kuairec,
    load_movielens,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


KR_LOG_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
    "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
    "is_profile_enter,is_rand,tab"
)
KR_USER_HEADER = (
    "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,"
    "follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,"
    "friend_user_num_range,register_days,register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18))
)
KR_VIDEO_HEADER = ("video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,"
                   "server_width,server_height,music_id,music_type,tag")


def _write(path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def _kuairand(tmp_path, drop_column: str | None = None):
    d = tmp_path / "KuaiRand-Pure" / "data"
    rows1 = [
        "0,10,20220408,1000,1649383200000,1,0,0,0,0,0,1,15000,20000,0,0,0,0,1",
        "0,11,20220408,1005,1649383500000,1,1,0,0,0,0,0,3000,30000,0,0,0,0,1",
        "1,10,20220409,900,1649466000000,0,0,0,0,0,1,0,500,20000,0,0,0,0,2",
    ]
    rows2 = ["0,12,20220422,1200,1650600000000,1,0,1,0,0,0,1,40000,45000,3,0,1,0,1"]
    rnd = ["1,12,20220423,800,1650672000000,1,0,0,0,0,0,0,1000,45000,0,0,0,1,4"]
    header = KR_LOG_HEADER
    if drop_column:
        cols = header.split(",")
        k = cols.index(drop_column)
        header = ",".join(c for i, c in enumerate(cols) if i != k)
        rows1 = [",".join(v for i, v in enumerate(r.split(",")) if i != k) for r in rows1]
    _write(d / "log_standard_4_08_to_4_21_pure.csv", "\n".join([header, *rows1]) + "\n")
    _write(d / "log_standard_4_22_to_5_08_pure.csv", "\n".join([KR_LOG_HEADER, *rows2]) + "\n")
    _write(d / "log_random_4_22_to_5_08_pure.csv", "\n".join([KR_LOG_HEADER, *rnd]) + "\n")
    onehot = ",".join(["0"] * 18)
    _write(d / "user_features_pure.csv", "\n".join([
        KR_USER_HEADER,
        f"0,high_active,0,0,0,5,\"(0,10]\",3,\"[1,10)\",1,\"[1,5)\",100,61-90,{onehot}",
        f"1,middle_active,0,0,1,50,\"(10,50]\",0,0,0,0,400,365+,{onehot}",
    ]) + "\n")
    _write(d / "video_features_basic_pure.csv", "\n".join([
        KR_VIDEO_HEADER,
        "10,100,NORMAL,2022-03-01,ShortImport,public,20000,720,1280,5,1,28",
        "11,101,NORMAL,2022-03-02,ShortImport,public,30000,720,1280,6,1,\"4,28\"",
        "12,100,AD,2022-03-03,Web,public,,720,1280,7,2,",
    ]) + "\n")
    return tmp_path / "KuaiRand-Pure"


def test_kuairand_real_format(tmp_path):
    root = _kuairand(tmp_path)
    data = load_kuairand(root)  # finds the files under data/
    inter = data["interactions"]
    assert tuple(inter.column_names) == INTERACTION_COLUMNS
    assert inter.num_rows == 5
    assert inter["user_id"] == [0, 0, 0, 1, 1] and inter["item_id"] == [10, 11, 12, 10, 12]
    first = inter[0]
    assert first["timestamp"] == 1649383200000 and first["play_time"] == 15.0
    assert first["duration"] == 20.0 and first["long_view"] == 1 and first["is_rand"] == 0
    assert inter[4]["is_rand"] == 1 and inter[3]["is_hate"] == 1
    assert data["users"].num_rows == 2 and data["users"][0]["follow_user_num_range"] == "(0,10]"
    items = data["items"]
    assert items["item_id"] == [10, 11, 12] and items["tags"][1] == "4,28"
    assert math.isnan(items[2]["duration"]) and items[0]["duration"] == 20.0
    assert "author 100" in items[0]["text"]
    without = load_kuairand(root, include_random=False)
    assert without["interactions"].num_rows == 4
    assert load_kuairand(root, variant="pure")["interactions"].num_rows == 5


def test_kuairand_streaming_matches(tmp_path):
    root = _kuairand(tmp_path)
    eager = load_kuairand(root)["interactions"].to_pandas()
    stream = load_kuairand(root, streaming=True, chunksize=1)
    rows = list(stream["interactions"])
    assert [(r["user_id"], r["timestamp"]) for r in rows] == list(zip(eager["user_id"], eager["timestamp"]))
    assert rows[-1]["is_rand"] == 1
    assert stream["users"].num_rows == 2


def test_kuairand_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['play_time_ms'\]"):
        load_kuairand(_kuairand(tmp_path / "a", drop_column="play_time_ms"))
    with pytest.raises(FileNotFoundError, match="log_standard"):
        load_kuairand(tmp_path / "a" / "KuaiRand-Pure", variant="27k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_kuairand(tmp_path / "nowhere")


def test_kuairec_real_format(tmp_path):
    d = tmp_path / "KuaiRec 2.0" / "data"
    _write(d / "small_matrix.csv", "\n".join([
        "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio",
        "14,148,4381,6067,2020-07-05 05:27:48.378,20200705.0,1593898068.378,0.722",
        "14,183,11635,6100,2020-07-05 05:28:00.057,20200705.0,1593898080.057,1.907",
        "14,3649,22422,10867,2020-07-05 05:29:09.479,20200705.0,1593898149.479,2.063",
        "19,148,1000,6067,,,,0.165",
    ]) + "\n")
    _write(d / "item_categories.csv", 'video_id,feat\n148,[11]\n183,"[27, 9]"\n3649,[5]\n')
    _write(d / "user_features.csv", "\n".join([
        KR_USER_HEADER,
        "14,high_active,0,0,0,10,\"(0,10]\",3,\"[1,10)\",1,\"[1,5)\",100,61-90," + ",".join(["1"] * 18),
    ]) + "\n")
    with pytest.warns(UserWarning, match="dropped 1 rows without a timestamp"):
        data = load_kuairec(tmp_path / "KuaiRec 2.0", matrix="small")
    inter = data["interactions"]
    assert inter.num_rows == 3 and inter["item_id"] == [148, 183, 3649]
    assert inter[0]["timestamp"] == 1593898068378 and inter[0]["play_time"] == pytest.approx(4.381)
    assert inter["long_view"] == [0, 0, 1] and inter["is_click"] == [1, 1, 1]
    assert inter["is_like"] == [0, 0, 0]
    assert data["items"]["tags"][1] == "27,9" and "27,9" in data["items"]["text"][1]
    with pytest.raises(FileNotFoundError, match="big_matrix"):
        load_kuairec(tmp_path, matrix="big")


def test_movielens_100k_real_format(tmp_path):
    d = tmp_path / "ml-100k"
    _write(d / "u.data", "196\t242\t3\t881250949\n186\t302\t5\t891717742\n196\t302\t1\t881250000\n")
    flags = ["0"] * 19
    drama = flags.copy()
    drama[8] = "1"
    comedy = flags.copy()
    comedy[5] = "1"
    _write(d / "u.item", "\n".join([
        "242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|" + "|".join(comedy),
        "302|L.A. Confidential (1997)|01-Jan-1997||http://us.imdb.com/x|" + "|".join(drama),
    ]) + "\n", encoding="latin-1")
    _write(d / "u.user", "186|39|F|executive|00000\n196|49|M|writer|55105\n")
    data = load_movielens(d)
    inter = data["interactions"]
    assert inter["user_id"] == [186, 196, 196] and inter["item_id"] == [302, 302, 242]
    assert inter["rating"] == [5.0, 1.0, 3.0]
    assert inter["is_like"] == [1, 0, 0] and inter["is_hate"] == [0, 1, 0]
    assert inter[0]["timestamp"] == 891717742000 and math.isnan(inter[0]["play_time"])
    items = data["items"]
    assert items[0]["text"] == "Kolya (1996) | genres: Comedy"
    users = data["users"]
    assert users["age"] == ["35", "45"] and users["zip_prefix"] == ["0", "5"]
    rows = list(load_movielens(d, streaming=True)["interactions"])
    assert len(rows) == 3 and rows[0]["item_id"] == 242  # file order in streaming mode


def test_movielens_1m_real_format(tmp_path):
    d = tmp_path / "ml-1m"
    _write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::2::978298413\n")
    _write(d / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                             "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n",
           encoding="latin-1")
    _write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    data = load_movielens(tmp_path / "ml-1m", variant="1m")
    inter = data["interactions"]
    assert inter["user_id"] == [1, 1, 2] and inter["item_id"] == [1193, 661, 1193]
    assert inter["is_hate"] == [0, 0, 1]
    assert "Animation, Children's, Musical" in data["items"]["text"][1]
    assert data["users"]["gender"] == ["F", "M"] and data["users"]["occupation"] == ["10", "16"]
    _write(tmp_path / "bad" / "ratings.dat", "1::1193::5\n")
    _write(tmp_path / "bad" / "movies.dat", "1::x::Drama\n")
    _write(tmp_path / "bad" / "users.dat", "1::F::1::10::1\n")
    with pytest.raises(ValueError, match="expected 4 fields"):
        load_movielens(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="u.data"):
        load_movielens(tmp_path / "empty")
