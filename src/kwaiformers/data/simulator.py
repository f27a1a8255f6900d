"""A KuaiRand-shaped user simulator: the embedded default dataset and an offline RL environment.

World (a deterministic function of ``num_users``, ``num_items``, ``seed`` and the config):

* ``T`` topics with unit centres in a latent space; items get a topic (Zipf-skewed topic sizes), a
  latent vector near its centre, a secondary tag, an author (authors specialise in one topic), a
  quality ``q_i ~ N(0, 0.5)``, a popularity weight (Zipf over a random rank times ``exp(q_i)``) and
  a log-normal duration (median ``duration_median_s``).
* users mix 1-3 topics into an interest vector ``u``, with a taste strength ``s_u``, an activity
  (impressions per day) and a dislike propensity ``h_u``; static features follow the
  ``user_features_*.csv`` columns of KuaiRand.

Ground truth (what :meth:`UserSimulator.score` returns, exactly):

* affinity ``a = s_u <u, v_i> + q_i``;
* completion rate ``c = sigmoid(1.2 a - 0.6 log(d_i / d_med) - 0.8)``; expected play time ``d_i c``
  (the realised completion is ``Beta(k c, k (1 - c))`` with concentration ``k``, mean ``c``);
* dislike probability ``sigmoid(-2 a - 4.5 + log h_u)``; click/like/follow/comment/forward
  probabilities are increasing logistic functions of ``a``.

Logs: the standard log is exposed by a logging policy mixing a softmax over affinities
(temperature ``1 / policy_temperature``) with item popularity; a ``random_exposure_rate`` share of
impressions are uniform random (``is_rand = 1``, the ``log_random`` file). ``long_view`` is
``play_time >= min(0.9 duration, 18 s)`` (the simulator's rule). Generating 10k users x 5k items
x 1M impressions takes well under a minute on 2 CPUs (see ``benchmarks/semantic_ids.py``'s sibling
timing in ``docs/recommendation.md``).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["SimulatedLogs", "SimulatorConfig", "UserSimulator"]

KUAIRAND_LOG_COLUMNS: tuple[str, ...] = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)
KUAIRAND_USER_COLUMNS: tuple[str, ...] = (
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range",
    "friend_user_num", "friend_user_num_range", "register_days", "register_days_range",
    *[f"onehot_feat{i}" for i in range(18)],
)
KUAIRAND_VIDEO_COLUMNS: tuple[str, ...] = (
    "video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status",
    "video_duration", "server_width", "server_height", "music_id", "music_type", "tag",
)

_TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cooking", ("recipe", "noodles", "spicy", "dumplings", "kitchen", "street food")),
    ("gaming", ("speedrun", "boss fight", "esports", "mobile game", "walkthrough", "highlights")),
    ("travel", ("mountains", "beach", "road trip", "hotel", "old town", "train ride")),
    ("music", ("guitar", "cover song", "piano", "concert", "rap", "karaoke")),
    ("pets", ("cat", "puppy", "parrot", "hamster", "pet tricks", "rescue dog")),
    ("fitness", ("workout", "yoga", "running", "abs", "stretching", "gym")),
    ("comedy", ("prank", "sketch", "stand-up", "funny fail", "parody", "meme")),
    ("fashion", ("outfit", "streetwear", "sneakers", "try-on haul", "runway", "styling")),
    ("tech", ("smartphone", "unboxing", "laptop", "gadget review", "coding", "drone")),
    ("sports", ("basketball", "football", "badminton", "table tennis", "skateboard", "goal")),
    ("dance", ("choreography", "street dance", "ballet", "dance challenge", "hip hop", "tutorial")),
    ("education", ("math trick", "history", "science", "english lesson", "exam tips", "physics")),
    ("cars", ("drift", "supercar", "car repair", "test drive", "electric car", "motorbike")),
    ("beauty", ("makeup", "skincare", "hairstyle", "nail art", "lipstick", "routine")),
    ("news", ("headline", "weather", "interview", "report", "live update", "city news")),
    ("movies", ("trailer", "film review", "behind the scenes", "anime", "drama clip", "actor")),
    ("crafts", ("diy", "woodwork", "knitting", "origami", "painting", "pottery")),
    ("nature", ("wildlife", "forest", "ocean", "sunset", "birds", "flowers")),
    ("family", ("baby", "parenting", "grandma", "family vlog", "kids", "wedding")),
    ("finance", ("stocks", "saving money", "crypto", "budget", "investing", "side hustle")),
)
_ADJECTIVES = ("amazing", "quick", "daily", "best", "crazy", "relaxing", "epic", "simple", "new",
               "classic", "cute", "ultimate")
_ACTIVE_DEGREES = ("high_active", "full_active", "middle_active", "low_active")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class SimulatorConfig:
    """Knobs of the simulated world and logging policy (defaults give KuaiRand-like rates)."""

    num_topics: int = 20
    latent_dim: int = 16
    impressions_per_user_day: float = 20.0
    random_exposure_rate: float = 0.05
    policy_temperature: float = 2.0
    popularity_mix: float = 0.3
    duration_median_s: float = 25.0
    duration_sigma: float = 0.8
    completion_concentration: float = 4.0
    start_date: str = "2022-04-08"
    log_exposure_prob: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_topics <= 0 or self.latent_dim <= 0:
            raise ValueError("num_topics and latent_dim must be positive")
        if not 0.0 <= self.random_exposure_rate <= 1.0:
            raise ValueError(f"random_exposure_rate must be in [0, 1], got {self.random_exposure_rate}")
        if not 0.0 <= self.popularity_mix <= 1.0:
            raise ValueError(f"popularity_mix must be in [0, 1], got {self.popularity_mix}")
        if self.impressions_per_user_day <= 0:
            raise ValueError("impressions_per_user_day must be positive")
        _dt.date.fromisoformat(self.start_date)


@dataclass
class SimulatedLogs:
    """Simulator output as pandas DataFrames in the KuaiRand file schema.

    ``log_standard`` / ``log_random``: ``log_*.csv`` columns (:data:`KUAIRAND_LOG_COLUMNS`, plus
    ``exposure_prob`` when ``SimulatorConfig.log_exposure_prob``); ``user_features``:
    ``user_features_*.csv``; ``video_features_basic``: ``video_features_basic_*.csv``;
    ``item_text``: one title-and-tags string per ``video_id`` (for text embeddings).
    """

    log_standard: Any
    log_random: Any
    user_features: Any
    video_features_basic: Any
    item_text: list[str]

    def write(self, directory: str | os.PathLike, suffix: str = "sim") -> list[str]:
        """Write the KuaiRand files (``log_standard_<suffix>.csv`` etc.); returns their paths."""
        os.makedirs(directory, exist_ok=True)
        files = {
            f"log_standard_{suffix}.csv": self.log_standard,
            f"log_random_{suffix}.csv": self.log_random,
            f"user_features_{suffix}.csv": self.user_features,
            f"video_features_basic_{suffix}.csv": self.video_features_basic,
        }
        paths = []
        for name, frame in files.items():
            path = os.path.join(directory, name)
            frame.to_csv(path, index=False)
            paths.append(path)
        text_path = os.path.join(directory, f"video_text_{suffix}.csv")
        import pandas as pd

        pd.DataFrame({"video_id": np.arange(len(self.item_text)), "text": self.item_text}).to_csv(
            text_path, index=False
        )
        paths.append(text_path)
        return paths

    def to_dataset(self, include_random: bool = True):
        """The standardised ``DatasetDict`` (``interactions``/``users``/``items``), as the loaders."""
        from .loaders import standardize_kuairand

        logs = [self.log_standard, self.log_random] if include_random else [self.log_standard]
        return standardize_kuairand(logs, self.user_features, self.video_features_basic,
                                    item_text=self.item_text)


class UserSimulator:
    """KuaiRand-shaped simulator with ground-truth scores.

    Example::

        sim = UserSimulator(seed=0)
        logs = sim.generate_logs(num_users=200, num_items=300, days=3, seed=0)
        truth = sim.score([0, 1], [5, 7])   # expected_play_time, completion_rate, dislike_prob, ...
    """

    def __init__(
        self,
        num_users: int = 1000,
        num_items: int = 2000,
        seed: int = 0,
        config: SimulatorConfig | None = None,
        **config_kwargs: Any,
    ) -> None:
        if config is not None and config_kwargs:
            raise ValueError("pass either config or keyword overrides, not both")
        self.config = config or SimulatorConfig(**config_kwargs)
        self._build_world(num_users, num_items, seed)

    # ------------------------------------------------------------------ world
    def _build_world(self, num_users: int, num_items: int, seed: int) -> None:
        for name, val in (("num_users", num_users), ("num_items", num_items)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        cfg = self.config
        self.num_users, self.num_items, self.seed = int(num_users), int(num_items), int(seed)
        rng = np.random.default_rng([self.seed, 7919])
        t, d = cfg.num_topics, cfg.latent_dim
        centres = rng.standard_normal((t, d))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        topic_w = 1.0 / np.arange(1, t + 1) ** 0.8
        topic_w = rng.permutation(topic_w / topic_w.sum())
        # items
        n_i = self.num_items
        topic = rng.choice(t, size=n_i, p=topic_w)
        vec = centres[topic] + 0.45 * rng.standard_normal((n_i, d)) / np.sqrt(d) * 2
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        second = np.where(rng.random(n_i) < 0.5, rng.integers(0, t, n_i), topic)
        num_authors = max(1, n_i // 8)
        author_topic = rng.choice(t, size=num_authors, p=topic_w)
        author = np.empty(n_i, dtype=np.int64)
        for k in range(t):  # authors of the item's topic when there are any
            members = np.flatnonzero(topic == k)
            pool = np.flatnonzero(author_topic == k)
            if pool.size == 0:
                pool = np.arange(num_authors)
            author[members] = rng.choice(pool, size=members.size)
        quality = 0.5 * rng.standard_normal(n_i)
        rank = rng.permutation(n_i)
        pop = np.exp(quality) / (rank + 1.0) ** 0.9
        duration = np.clip(
            cfg.duration_median_s * np.exp(cfg.duration_sigma * rng.standard_normal(n_i)), 3, 600
        )
        # users
        n_u = self.num_users
        n_int = rng.integers(1, 4, n_u)
        uvec = np.zeros((n_u, d))
        main_topic = np.empty(n_u, dtype=np.int64)
        for j in range(3):
            tj = rng.choice(t, size=n_u, p=topic_w)
            if j == 0:
                main_topic = tj
            w = (j < n_int) * rng.uniform(0.5, 1.0, n_u) * (1.0 if j == 0 else 0.7)
            uvec += w[:, None] * centres[tj]
        uvec += 0.3 * rng.standard_normal((n_u, d)) / np.sqrt(d)
        uvec /= np.linalg.norm(uvec, axis=1, keepdims=True)
        strength = rng.uniform(1.0, 2.5, n_u)
        activity = cfg.impressions_per_user_day * np.exp(0.5 * rng.standard_normal(n_u) - 0.125)
        hate = np.exp(0.5 * rng.standard_normal(n_u))
        self._centres, self._topic_w = centres, topic_w
        self.item_topic, self.item_tag2, self.item_author = topic, second, author
        self._item_vec, self.item_quality, self.item_popularity = vec, quality, pop / pop.sum()
        self.item_duration = duration
        self._user_vec, self.user_strength, self.user_activity = uvec, strength, activity
        self.user_hate, self.user_main_topic, self.user_num_interests = hate, main_topic, n_int
        self._world_rng_state = rng.bit_generator.state

    def _ensure_world(self, num_users: int | None, num_items: int | None, seed: int | None) -> None:
        nu = self.num_users if num_users is None else num_users
        ni = self.num_items if num_items is None else num_items
        sd = self.seed if seed is None else seed
        if (nu, ni, sd) != (self.num_users, self.num_items, self.seed):
            self._build_world(nu, ni, sd)

    # ------------------------------------------------------------------ ground truth
    def _affinity(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        dot = np.einsum("...d,...d->...", self._user_vec[u], self._item_vec[i])
        return self.user_strength[u] * dot + self.item_quality[i]

    def _truth(self, u: np.ndarray, i: np.ndarray) -> dict[str, np.ndarray]:
        a = self._affinity(u, i)
        dur = self.item_duration[i]
        comp = _sigmoid(1.2 * a - 0.6 * np.log(dur / self.config.duration_median_s) - 0.8)
        return {
            "affinity": a,
            "duration": dur,
            "completion_rate": comp,
            "expected_play_time": dur * comp,
            "dislike_prob": _sigmoid(-2.0 * a - 4.5 + np.log(self.user_hate[u])),
            "click_prob": _sigmoid(1.0 * a - 1.0),
            "like_prob": _sigmoid(1.5 * a - 5.5),
            "follow_prob": _sigmoid(1.5 * a - 7.5),
            "comment_prob": _sigmoid(1.2 * a - 7.0),
            "forward_prob": _sigmoid(1.2 * a - 7.5),
        }

    def score(self, user_ids: Any, item_ids: Any) -> dict[str, Any]:
        """Ground truth for recommending ``item_ids`` to ``user_ids`` (broadcast together).

        Returns a dict of arrays shaped like the broadcast inputs: ``expected_play_time`` and
        ``duration`` (seconds), ``completion_rate``, ``dislike_prob``, ``click_prob``,
        ``like_prob``, ``follow_prob``, ``comment_prob``, ``forward_prob`` and ``affinity``. Torch
        inputs give float32 torch tensors, anything else numpy arrays. Unknown ids raise.
        """
        is_torch = type(user_ids).__module__.startswith("torch") or type(item_ids).__module__.startswith(
            "torch"
        )
        u = np.asarray(user_ids.cpu() if hasattr(user_ids, "cpu") else user_ids)
        i = np.asarray(item_ids.cpu() if hasattr(item_ids, "cpu") else item_ids)
        for name, arr, n in (("user_ids", u, self.num_users), ("item_ids", i, self.num_items)):
            if arr.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ValueError(f"{name} must be in [0, {n}) for this simulator world")
        u, i = np.broadcast_arrays(u, i)
        out = self._truth(u, i)
        if is_torch:
            import torch

            return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}
        return out

    def oracle_top_k(self, user_ids: Any, k: int = 10, metric: str = "expected_play_time") -> np.ndarray:
        """The ``k`` best items per user under a ground-truth ``metric`` (for upper-bound evals)."""
        u = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        scores = self.score(u[:, None], np.arange(self.num_items)[None, :])[metric]
        if metric == "dislike_prob":
            scores = -scores
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

    # ------------------------------------------------------------------ metadata
    def item_texts(self) -> list[str]:
        """Title-and-tags text of every item (topic words, adjectives, tags, author)."""
        rng = np.random.default_rng([self.seed, 104729])
        texts = []
        for vid in range(self.num_items):
            t1, t2 = int(self.item_topic[vid]), int(self.item_tag2[vid])
            name1, words1 = _TOPICS[t1 % len(_TOPICS)]
            name2, words2 = _TOPICS[t2 % len(_TOPICS)]
            w = words1[int(rng.integers(len(words1)))]
            w2 = words1[int(rng.integers(len(words1)))]
            adj = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
            suffix1 = "" if t1 < len(_TOPICS) else f" {t1 // len(_TOPICS)}"
            texts.append(
                f"{adj} {w} {name1}{suffix1} video, {w2} | tags: {name1}, {name2}, "
                f"{words2[int(rng.integers(len(words2)))]} | author {int(self.item_author[vid])}"
            )
        return texts

    def _user_frame(self):
        import pandas as pd

        rng = np.random.default_rng([self.seed, 15485863])
        n = self.num_users
        q = np.argsort(np.argsort(-self.user_activity)) / max(n - 1, 1)
        degree = np.array(_ACTIVE_DEGREES)[np.minimum((q * 4).astype(int), 3)]

        def ranged(values: np.ndarray, edges: list[int]) -> np.ndarray:
            labels = ["0"] + [f"[{a},{b})" for a, b in zip(edges[:-1], edges[1:])] + [f"{edges[-1]}+"]
            return np.array(labels)[np.searchsorted(edges, values, side="right")]

        follow = rng.poisson(self.user_activity * 3)
        fans = rng.poisson(rng.exponential(20, n))
        friends = rng.poisson(rng.exponential(5, n))
        reg = rng.integers(1, 2000, n)
        frame = {
            "user_id": np.arange(n),
            "user_active_degree": degree,
            "is_lowactive_period": (rng.random(n) < 0.05).astype(int),
            "is_live_streamer": (rng.random(n) < 0.03).astype(int),
            "is_video_author": (rng.random(n) < 0.2).astype(int),
            "follow_user_num": follow,
            "follow_user_num_range": ranged(follow, [1, 10, 50, 100, 250, 500]),
            "fans_user_num": fans,
            "fans_user_num_range": ranged(fans, [1, 10, 100, 1000]),
            "friend_user_num": friends,
            "friend_user_num_range": ranged(friends, [1, 5, 30, 60]),
            "register_days": reg,
            "register_days_range": ranged(reg, [15, 31, 61, 91, 181, 365, 730]),
        }
        frame["onehot_feat0"] = self.user_main_topic % 2
        frame["onehot_feat1"] = self.user_main_topic % 7
        frame["onehot_feat2"] = self.user_num_interests
        for j in range(3, 18):
            frame[f"onehot_feat{j}"] = rng.integers(0, 2 + j % 5, n)
        return pd.DataFrame(frame, columns=list(KUAIRAND_USER_COLUMNS))

    def _video_frame(self):
        import pandas as pd

        rng = np.random.default_rng([self.seed, 32452843])
        n = self.num_items
        start = _dt.date.fromisoformat(self.config.start_date)
        upload = [
            (start - _dt.timedelta(days=int(x))).strftime("%Y-%m-%d") for x in rng.integers(1, 400, n)
        ]
        tags = [
            str(a) if a == b else f"{a},{b}" for a, b in zip(self.item_topic.tolist(), self.item_tag2.tolist())
        ]
        return pd.DataFrame(
            {
                "video_id": np.arange(n),
                "author_id": self.item_author,
                "video_type": np.where(rng.random(n) < 0.97, "NORMAL", "AD"),
                "upload_dt": upload,
                "upload_type": np.array(["ShortImport", "LongImport", "Web"])[rng.integers(0, 3, n)],
                "visible_status": "public",
                "video_duration": np.round(self.item_duration * 1000).astype(np.int64),
                "server_width": 720,
                "server_height": 1280,
                "music_id": rng.integers(0, max(1, n // 3), n),
                "music_type": rng.integers(0, 10, n),
                "tag": tags,
            },
            columns=list(KUAIRAND_VIDEO_COLUMNS),
        )

    # ------------------------------------------------------------------ logs
    def generate_logs(
        self,
        num_users: int | None = None,
        num_items: int | None = None,
        days: int = 14,
        seed: int | None = None,
        progress: bool = False,
    ) -> SimulatedLogs:
        """Simulate ``days`` days of impressions in the KuaiRand schema.

        ``num_users``/``num_items``/``seed`` default to the simulator's world and rebuild it when
        they differ (so :meth:`score` always describes the last generated logs). Deterministic:
        the same arguments give identical frames.
        """
        import pandas as pd

        self._ensure_world(num_users, num_items, seed)
        if not isinstance(days, int) or days <= 0:
            raise ValueError(f"days must be a positive int, got {days!r}")
        cfg = self.config
        rng = np.random.default_rng([self.seed, 2, days])
        n_u, n_i = self.num_users, self.num_items
        counts = rng.poisson(self.user_activity[:, None], size=(n_u, days))
        per_user = counts.sum(1)
        users = np.repeat(np.arange(n_u), per_user)
        day = np.concatenate([np.repeat(np.arange(days), c) for c in counts]) if n_u else np.zeros(0)
        day = day.astype(np.int64)
        n = users.size
        is_rand = rng.random(n) < cfg.random_exposure_rate
        items = np.empty(n, dtype=np.int64)
        prob = np.empty(n, dtype=np.float64)
        items[is_rand] = rng.integers(0, n_i, int(is_rand.sum()))
        prob[is_rand] = 1.0 / n_i
        # logging policy: softmax(tau * affinity) mixed with popularity, sampled per user chunk
        starts = np.concatenate([[0], np.cumsum(per_user)])
        chunk = max(1, (1 << 22) // n_i)
        from tqdm.auto import tqdm

        pop = self.item_popularity
        for c0 in tqdm(range(0, n_u, chunk), desc="simulating users", disable=not progress):
            c1 = min(n_u, c0 + chunk)
            aff = self.user_strength[c0:c1, None] * (self._user_vec[c0:c1] @ self._item_vec.T)
            aff += self.item_quality[None, :]
            logits = cfg.policy_temperature * aff
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            p = (1 - cfg.popularity_mix) * p + cfg.popularity_mix * pop[None, :]
            cdf = np.cumsum(p, 1)
            cdf /= cdf[:, -1:]
            rows = slice(starts[c0], starts[c1])
            local_user = users[rows] - c0
            sel = ~is_rand[rows]
            draws = rng.random(int(sel.sum()))
            lu = local_user[sel]
            flat = (cdf + np.arange(c1 - c0)[:, None]).ravel()
            idx = np.searchsorted(flat, lu + draws, side="right") - lu * n_i
            idx = np.minimum(idx, n_i - 1)
            it = items[rows]
            it[sel] = idx
            items[rows] = it
            pr = prob[rows]
            pr[sel] = p[lu, idx]
            prob[rows] = pr
        truth = self._truth(users, items)
        k = cfg.completion_concentration
        comp = rng.beta(k * truth["completion_rate"] + 1e-6, k * (1 - truth["completion_rate"]) + 1e-6)
        dur_ms = np.round(self.item_duration[items] * 1000).astype(np.int64)
        play_ms = np.round(comp * dur_ms).astype(np.int64)

        def bern(p: np.ndarray) -> np.ndarray:
            return (rng.random(n) < p).astype(np.int64)

        is_click = bern(truth["click_prob"])
        is_like = bern(truth["like_prob"])
        is_follow = bern(truth["follow_prob"])
        is_comment = bern(truth["comment_prob"])
        is_forward = bern(truth["forward_prob"])
        is_hate = bern(truth["dislike_prob"])
        long_view = (play_ms >= np.minimum(0.9 * dur_ms, 18_000)).astype(np.int64)
        profile_enter = bern(0.02 + 0.1 * is_follow)
        # timestamps: Beijing-time days from start_date, impressions between 07:00 and 24:00
        tz = _dt.timezone(_dt.timedelta(hours=8))
        start = _dt.datetime.combine(_dt.date.fromisoformat(cfg.start_date), _dt.time(), tz)
        day0_ms = int(start.timestamp() * 1000)
        offset = rng.integers(7 * 3600_000, 24 * 3600_000, n)
        time_ms = day0_ms + day * 86_400_000 + offset
        order = np.lexsort((time_ms, users))
        dates = np.array(
            [int((start + _dt.timedelta(days=int(x))).strftime("%Y%m%d")) for x in range(days)]
        )
        local_min = offset // 60_000
        frame = pd.DataFrame(
            {
                "user_id": users,
                "video_id": items,
                "date": dates[day],
                "hourmin": (local_min // 60) * 100 + local_min % 60,
                "time_ms": time_ms,
                "is_click": is_click,
                "is_like": is_like,
                "is_follow": is_follow,
                "is_comment": is_comment,
                "is_forward": is_forward,
                "is_hate": is_hate,
                "long_view": long_view,
                "play_time_ms": play_ms,
                "duration_ms": dur_ms,
                "profile_stay_time": profile_enter * rng.integers(1, 30, n),
                "comment_stay_time": is_comment * rng.integers(1, 60, n),
                "is_profile_enter": profile_enter,
                "is_rand": is_rand.astype(np.int64),
                "tab": rng.integers(0, 15, n),
            },
            columns=list(KUAIRAND_LOG_COLUMNS),
        ).iloc[order]
        if cfg.log_exposure_prob:
            frame["exposure_prob"] = prob[order]
        frame = frame.reset_index(drop=True)
        rand_mask = frame["is_rand"].to_numpy() == 1
        return SimulatedLogs(
            log_standard=frame[~rand_mask].reset_index(drop=True),
            log_random=frame[rand_mask].reset_index(drop=True),
            user_features=self._user_frame(),
            video_features_basic=self._video_frame(),
            item_text=self.item_texts(),
        )

    def describe(self) -> dict[str, Any]:
        """The world's sizes and config (for logging)."""
        return {"num_users": self.num_users, "num_items": self.num_items, "seed": self.seed,
                **asdict(self.config)}
