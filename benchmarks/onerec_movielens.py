"""OneRec on MovieLens-100K vs popularity, item-kNN and RecBole's SASRec, one leave-one-out protocol.

    python benchmarks/onerec_movielens.py --quick           # < 1 min smoke (60 users, 1 epoch)
    python benchmarks/onerec_movielens.py                   # full: 943 users, 3 seeds
    python benchmarks/onerec_movielens.py --data-dir DIR    # u.data/u.item/u.user (or ML-1M files)

Protocol (RecBole's ``LS: valid_and_test``, ``order: TO``, ``mode: full``): per user the last
interaction is the test target and the second-last the validation target, ties in file order
(``tie_order: file``); every model ranks all items; "masked" rows exclude the user's
already-seen items (OneRec: inside the trie-constrained beam search; SASRec/baselines: their
scores). Semantic IDs, item embeddings, popularity and item-kNN are fitted on training
interactions only.

Data: without ``--data-dir`` the ML-100K copy shipped in the ``recbole`` wheel (atomic format,
``recbole/dataset_example/ml-100k``) is converted to the original ``u.data``/``u.item``/``u.user``.

Models: ``popularity`` (RecBole ``Pop``: training-interaction counts), ``item_knn`` (cosine, 100
neighbours), ``sasrec`` (RecBole 1.2.1 ``SASRec``, CE loss, its default architecture; needs
``recbole==1.2.1``, in the test extra, where it is also the reference of the split's differential
test; torch >= 2.6 needs
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for its checkpoints, set here), ``onerec_v2`` / ``onerec_v1``
(``trainers/configs/onerec_v2_ml100k.yaml``; V1 with the model section of ``onerec_v1_ml100k.yaml``,
the rest identical; both through the library recipe ``train_recipe``) and
``onerec_v2_id`` / ``onerec_v1_id`` (the same model with ``item_id_buckets`` = one ID embedding per
movie in the history pathways), ``onerec_v2_ctx`` (V2 with ``context_self_attention_layers: 1``).
Every neural model is early-stopped on its validation NDCG@10, each
family with its own epoch cap: SASRec by RecBole's own trainer (``--sasrec-epochs``, default 200,
``stopping_step`` 10 = RecBole's default; validation NDCG@10 unmasked, RecBole's full sort), OneRec
by the recipe (``--onerec-epochs``, default the config's ``num_train_epochs``; validation NDCG@10
with the protocol's mask, ``eval.early_stopping_patience``).
Per-(model, seed) results are appended to ``OUT/results.jsonl`` as they finish, and a rerun skips
finished ones (so an interrupted run resumes). Ends with one JSON line of headline figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
           "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
           "Sci-Fi", "Thriller", "War", "Western")


# ------------------------------------------------------------------------------------------ data
def recbole_ml100k_dir(out_dir: str) -> str:
    """Convert the ``recbole`` wheel's atomic ML-100K to ``u.data``/``u.item``/``u.user``."""
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: no --data-dir and recbole is not installed (pip install recbole, "
                         "or pass --data-dir with u.data/u.item/u.user)")
    src = os.path.join(list(spec.submodule_search_locations)[0], "dataset_example", "ml-100k")
    dst = os.path.join(out_dir, "ml-100k")
    if os.path.exists(os.path.join(dst, "u.user")):
        return dst
    os.makedirs(dst, exist_ok=True)
    inter = pd.read_csv(os.path.join(src, "ml-100k.inter"), sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    inter[["user_id", "item_id", "rating", "timestamp"]].astype(np.int64).to_csv(
        os.path.join(dst, "u.data"), sep="\t", header=False, index=False)
    items = pd.read_csv(os.path.join(src, "ml-100k.item"), sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    with open(os.path.join(dst, "u.item"), "w", encoding="latin-1") as fh:
        for _, r in items.iterrows():
            genres = set(r["class"].split())
            flags = "|".join("1" if g in genres else "0" for g in _GENRES)
            title = f"{r['movie_title']} ({r['release_year']})".replace("|", "/")
            fh.write(f"{r['item_id']}|{title}|01-Jan-{r['release_year']}||http://|{flags}\n")
    users = pd.read_csv(os.path.join(src, "ml-100k.user"), sep="\t", dtype=str, keep_default_na=False)
    users.columns = [c.split(":")[0] for c in users.columns]
    users[["user_id", "age", "gender", "occupation", "zip_code"]].to_csv(
        os.path.join(dst, "u.user"), sep="|", header=False, index=False)
    return dst


def load_recipe_raw(path: str) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def build_data(raw: dict[str, Any], data_dir: str, max_users: int | None):
    from kwaiformers.data.pipeline import build_onerec_data, load_logs

    data_cfg = dict(raw["data"], data_dir=data_dir)
    bundle, _ = load_logs(data_cfg)
    if max_users is not None:
        inter = bundle["interactions"].to_pandas()
        keep = np.sort(inter["user_id"].unique())[:max_users]
        bundle = {"interactions": inter[inter["user_id"].isin(keep)].reset_index(drop=True),
                  "users": bundle["users"], "items": bundle["items"]}
    return build_onerec_data(data_cfg, raw["tokenizer"], bundle=bundle), data_cfg


# ------------------------------------------------------------------------------------ evaluation
def per_user(recs, targets, users, k: int = 10) -> dict[str, Any]:
    from kwaiformers.evaluation.recommendation import ndcg_per_user, recall_at_k

    nd = ndcg_per_user(recs, targets, k)
    return {"users": [int(u) for u in users], "ndcg": nd.tolist(),
            "ndcg@10": float(nd.mean()), "recall@10": recall_at_k(recs, targets, k)}


def eval_baselines(data, name: str) -> dict[str, Any]:
    import torch

    from kwaiformers.trainers.onerec_pretrain import eval_baselines as baselines

    test = data.splits["test"]
    targets = torch.as_tensor(test["target_item_id"])
    out = {}
    for masked in (False, True):
        recs = baselines(data, test, (10,), masked, (name,))[name]
        out["masked" if masked else "unmasked"] = per_user(recs, targets, test["user_id"])
    return out


def eval_onerec(model, data, beam_size: int) -> dict[str, Any]:
    import torch

    from kwaiformers.evaluation.recommendation import recommend_all

    test = data.splits["test"]
    loader = torch.utils.data.DataLoader(test, batch_size=256, collate_fn=data.collator)
    out = {}
    for masked in (False, True):
        t0 = time.perf_counter()
        recs, targets = recommend_all(model, loader, data.index, num_items=10, beam_size=beam_size,
                                      exclude_items=data.seen_items("test") if masked else None,
                                      progress=False)
        secs = time.perf_counter() - t0
        res = per_user(recs, targets, test["user_id"])
        res["users_per_s"] = len(test) / secs
        out["masked" if masked else "unmasked"] = res
    return out


def run_onerec(raw: dict[str, Any], data, version: str, seed: int, out_dir: str, epochs: int | None,
               quick: bool, v1_model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate one OneRec row with the library recipe: ``raw`` (the ``--config`` recipe)
    as given for V2; for V1 its ``model`` section replaced by ``v1_model`` (``--v1-config``'s), so
    the data, tokenizer, schedule and evaluation are the same for both."""
    from kwaiformers.trainers.onerec_pretrain import load_recipe, train_recipe

    raw = copy.deepcopy(raw)
    raw["data"]["data_dir"] = data.config["data"]["data_dir"]
    raw["training"].update(seed=seed, output_dir=os.path.join(out_dir, f"{version}_seed{seed}"))
    if epochs is not None:
        raw["training"]["num_train_epochs"] = epochs
    if version.startswith("onerec_v1"):  # encoder-decoder with the V1 pathways, same width
        if v1_model is None:
            raise ValueError("onerec_v1 rows need the V1 model section (--v1-config)")
        raw["model"] = copy.deepcopy(v1_model)
    if version.endswith("_id"):  # + a per-item ID embedding in the history pathways
        raw["model"]["item_id_buckets"] = int(data.index.item_ids.max()) + 1
    if version.endswith("_ctx"):  # + one bidirectional self-attention layer over V2's context
        raw["model"]["context_self_attention_layers"] = 1
    if quick:
        raw["training"].update(logging_steps=5, warmup_steps=2)
    t0 = time.perf_counter()
    trainer, _ = train_recipe(load_recipe(raw), data=data)
    train_s = time.perf_counter() - t0
    model = trainer.model.eval()
    res = eval_onerec(model, data, int(raw["eval"].get("beam_size", 32)))
    curve = [float(h["eval_ndcg@10"]) for h in trainer.state.log_history if "eval_ndcg@10" in h]
    res.update(train_s=train_s, epochs_run=float(trainer.state.epoch or 0),
               best_valid=trainer.state.best_metric, valid_curve=curve,
               best_epoch=int(np.argmax(curve)) + 1 if curve else 0,
               params=sum(p.numel() for p in model.parameters()))
    return res


# ---------------------------------------------------------------------------------------- SASRec
SASREC_CONFIG: dict[str, Any] = {  # RecBole 1.2.1 SASRec defaults, CE loss; full-ranking LOO eval
    "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256, "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    "initializer_range": 0.02, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50,
    "learning_rate": 0.001, "train_batch_size": 256, "eval_batch_size": 4096, "stopping_step": 10,
    "train_neg_sample_args": None, "metrics": ["Recall", "NDCG"], "topk": [10],
    "valid_metric": "NDCG@10",
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
}


def _import_recbole():
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's torch.load
    import types

    import torch

    # numpy >= 2 removed aliases RecBole 1.2.1 still touches
    for name, val in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_),
                      ("string_", np.bytes_)):
        if not hasattr(np, name):
            setattr(np, name, val)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:  # RecBole's Trainer only writes TensorBoard logs: stub the writer
        tb = types.ModuleType("torch.utils.tensorboard")

        class _NoWriter:
            def __init__(self, *a, **k) -> None: ...

            def __getattr__(self, name):
                return lambda *a, **k: None

        tb.SummaryWriter = _NoWriter
        sys.modules["torch.utils.tensorboard"] = tb
        torch.utils.tensorboard = tb
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    # RecBole 1.2.1's sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True) at
    # import, for every model of the package: anomaly mode only adds NaN checks and stack records to
    # backward, and made SASRec training 1.7x slower here (1.0 -> 0.6 s per batch of 256)
    torch.autograd.set_detect_anomaly(False)
    return Config, create_dataset, data_preparation, SASRec, Trainer, init_seed


def write_protocol_atomic(data, out_dir: str) -> str:
    """The log in protocol order as a RecBole atomic dataset whose timestamps are the rank of each
    interaction in the ``(user, time, file position)`` order, so RecBole's LS split is ours."""
    name = "ml_loo"
    path = os.path.join(out_dir, "recbole", name)
    os.makedirs(path, exist_ok=True)
    users = np.repeat(data._user_ids, np.diff(np.append(data._user_ptr, len(data._items))))
    with open(os.path.join(path, f"{name}.inter"), "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for rank, (u, i) in enumerate(zip(users.tolist(), data._items.tolist())):
            fh.write(f"{u}\t{i}\t{rank}\n")
    return os.path.dirname(path)


def _raw_ids(tokens) -> Any:
    """RecBole's internal id -> raw integer id (``[PAD]`` -> -1)."""
    import torch

    return torch.tensor([int(t) if str(t).lstrip("-").isdigit() else -1 for t in tokens])


def _sasrec_setup(data, seed: int, out_dir: str, epochs: int):
    Config, create_dataset, data_preparation, SASRec, Trainer, init_seed = _import_recbole()
    cfg = dict(SASREC_CONFIG, data_path=write_protocol_atomic(data, out_dir), epochs=epochs,
               seed=seed, reproducibility=True, use_gpu=False, show_progress=False, worker=0,
               checkpoint_dir=os.path.join(out_dir, f"sasrec_seed{seed}"), state="WARNING")
    config = Config(model="SASRec", dataset="ml_loo", config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train.dataset)
    return config, dataset, (train, valid, test), model, Trainer(config, model)


def eval_sasrec(model, dataset, test, data) -> dict[str, Any]:
    """Test NDCG@10 / Recall@10 of a trained SASRec over all items, unmasked and with the user's
    seen items masked. (RecBole's own full-sort evaluation of *sequential* models masks nothing:
    its ``history_index`` is ``None`` for them; the mask here is the same seen set as OneRec's.)"""
    import torch

    item_tok = _raw_ids(dataset.field2id_token["item_id"])
    user_tok = _raw_ids(dataset.field2id_token["user_id"])
    raw_to_internal = torch.full((int(item_tok.max()) + 1,), -1, dtype=torch.long)
    raw_to_internal[item_tok[item_tok >= 0]] = torch.nonzero(item_tok >= 0).flatten()
    seen = dict(zip(data.splits["test"]["user_id"], data.seen_items("test")))
    model.eval()
    out: dict[str, Any] = {}
    for masked in (False, True):
        users, recs, targets = [], [], []
        t0 = time.perf_counter()
        with torch.no_grad():
            for interaction, _, positive_u, positive_i in test:
                scores = model.full_sort_predict(interaction).view(len(interaction), -1)
                scores[:, 0] = -torch.inf  # padding item
                uid = user_tok[interaction["user_id"]]
                if masked:
                    for row, u in enumerate(uid.tolist()):
                        items = torch.as_tensor(seen.get(u, np.zeros(0, np.int64)), dtype=torch.long)
                        items = raw_to_internal[items[items < raw_to_internal.numel()]]
                        scores[row, items[items >= 0]] = -torch.inf
                recs.append(scores.topk(10, dim=1).indices)
                users.append(uid)
                tgt = torch.zeros(len(interaction), dtype=torch.long)
                tgt[positive_u] = positive_i
                targets.append(tgt)
        secs = time.perf_counter() - t0
        rec_ids = item_tok[torch.cat(recs)]
        tgt = item_tok[torch.cat(targets)]
        uids = torch.cat(users).numpy()
        res = per_user(rec_ids, tgt, uids)
        res["users_per_s"] = len(uids) / secs
        out["masked" if masked else "unmasked"] = res
    return out


class _TimeBudgetSpent(Exception):
    """Raised by the epoch callback when the next SASRec epoch would overrun ``budget_s``."""


def sasrec_checkpoint(out_dir: str, seed: int) -> str | None:
    """The newest RecBole checkpoint of SASRec ``seed`` in ``OUT/sasrec_seed{seed}`` (``None``: none)."""
    import glob

    ckpts = sorted(glob.glob(os.path.join(out_dir, f"sasrec_seed{seed}", "*.pth")))
    return ckpts[-1] if ckpts else None


def sasrec_resume_row(rows: list[dict[str, Any]], seed: int, out_dir: str, epochs: int) -> dict[str, Any] | None:
    """The earlier SASRec row of ``seed`` that :func:`run_sasrec` can continue up to ``epochs``: one
    that stopped on its time budget or a smaller epoch cap (not by early stopping), whose best epoch
    is its last (RecBole keeps only the best checkpoint, so only then is it the end of training),
    and whose checkpoint is in ``OUT/sasrec_seed{seed}``. ``None`` when there is none."""
    ckpt = sasrec_checkpoint(out_dir, seed)
    for r in reversed(rows):
        if (ckpt is not None and r["model"] == "sasrec" and r["seed"] == seed
                and r.get("stopped_by") != "early_stopping" and r.get("valid_curve")
                and r.get("epochs_run", 0) < epochs and r.get("best_epoch") == len(r["valid_curve"])):
            return dict(r, checkpoint=ckpt)
    return None


def run_sasrec(data, seed: int, out_dir: str, epochs: int, budget_s: float | None = None,
               resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train RecBole's SASRec with RecBole's early stopping (``stopping_step`` on validation
    NDCG@10) up to ``epochs``; with ``budget_s``, training also stops before an epoch that would end
    past the budget (``stopped_by: time_budget`` in the row). The best-validation checkpoint is
    evaluated on test either way. ``resume`` (a row from :func:`sasrec_resume_row`) continues that
    run with RecBole's ``resume_checkpoint`` (weights, Adam state, epoch, best score and
    early-stopping count; SASRec's learning rate is constant, so only the random stream differs
    from an uninterrupted run); its validation curve and training time carry over."""
    config, dataset, (train, valid, test), model, trainer = _sasrec_setup(data, seed, out_dir, epochs)
    curve: list[float] = []
    prior_s = 0.0
    if resume is not None:
        trainer.resume_checkpoint(resume["checkpoint"])
        curve, prior_s = list(resume["valid_curve"]), float(resume["train_s"])
    done_before = len(curve)
    t0 = time.perf_counter()

    def on_epoch(epoch_idx: int, valid_score: float) -> None:
        curve.append(float(valid_score))
        spent, n = time.perf_counter() - t0, len(curve) - done_before
        if budget_s is not None and prior_s + spent * (n + 1) / n > budget_s:
            raise _TimeBudgetSpent

    stopped_by = "epoch_cap"
    try:
        trainer.fit(train, valid, saved=True, show_progress=False, callback_fn=on_epoch)
        if len(curve) < epochs:
            stopped_by = "early_stopping"
    except _TimeBudgetSpent:
        stopped_by = "time_budget"
    train_s = prior_s + time.perf_counter() - t0
    out = reeval_sasrec(data, seed, out_dir, epochs, trainer.saved_model_file, setup=(dataset, test, model))
    if resume is not None:
        out["resumed_from_epoch"] = done_before
    out.update(train_s=train_s, best_valid=float(trainer.best_valid_score), epochs_run=float(len(curve)),
               best_epoch=int(np.argmax(curve)) + 1 if curve else 0, valid_curve=curve, stopped_by=stopped_by,
               params=sum(p.numel() for p in model.parameters()))
    return out


def reeval_sasrec(data, seed: int, out_dir: str, epochs: int, ckpt: str, setup=None) -> dict[str, Any]:
    """Evaluate a saved RecBole SASRec checkpoint on the test split (see :func:`eval_sasrec`)."""
    import torch

    if setup is None:
        _, dataset, (_, _, test), model, _ = _sasrec_setup(data, seed, out_dir, epochs)
    else:
        dataset, test, model = setup
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    out = eval_sasrec(model, dataset, test, data)
    out["checkpoint"] = ckpt
    return out


# -------------------------------------------------------------------------------------- report
def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Paired bootstrap of NDCG@10 over the users both rows scored."""
    from kwaiformers.evaluation.recommendation import paired_bootstrap

    mb = dict(zip(b["users"], b["ndcg"]))
    common = [(x, mb[u]) for u, x in zip(a["users"], a["ndcg"]) if u in mb]
    xs, ys = zip(*common)
    return paired_bootstrap(np.asarray(xs), np.asarray(ys), num_resamples=2000)


def seed_mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-user NDCG averaged over seeds (for the paired comparison), with the seed spread."""
    by_user: dict[int, list[float]] = {}
    for r in rows:
        for u, x in zip(r["users"], r["ndcg"]):
            by_user.setdefault(u, []).append(x)
    users = sorted(by_user)
    per_seed = [r["ndcg@10"] for r in rows]
    return {"users": users, "ndcg": [float(np.mean(by_user[u])) for u in users],
            "ndcg@10": float(np.mean(per_seed)), "ndcg_sd": float(np.std(per_seed)),
            "recall@10": float(np.mean([r["recall@10"] for r in rows]))}


MODELS = ("popularity", "item_knn", "sasrec", "onerec_v1", "onerec_v1_id", "onerec_v2", "onerec_v2_id",
          "onerec_v2_ctx")


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    models = [m for m in MODELS if any(r["model"] == m for r in results)]
    print(f"\n{'model':<14}{'mask':<10}{'seeds':>6}{'NDCG@10':>10}{'+-sd':>8}{'Recall@10':>11}"
          f"{'train s':>10}{'epochs':>8}{'users/s':>10}")
    agg: dict[tuple[str, str], dict[str, Any]] = {}
    for m in models:
        rows = [r for r in results if r["model"] == m]
        for mask in ("unmasked", "masked"):
            a = seed_mean([r[mask] for r in rows])
            agg[(m, mask)] = a
            train_s = np.mean([r.get("train_s", 0.0) for r in rows])
            ups = np.mean([r[mask].get("users_per_s", float("nan")) for r in rows])
            ep = np.mean([r.get("epochs_run", float("nan")) for r in rows])
            print(f"{m:<14}{mask:<10}{len(rows):>6}{a['ndcg@10']:>10.4f}{a['ndcg_sd']:>8.4f}"
                  f"{a['recall@10']:>11.4f}{train_s:>10.0f}{ep:>8.1f}{ups:>10.1f}")
    headline: dict[str, Any] = {f"{m}_{mask}_ndcg@10": round(v["ndcg@10"], 4)
                                for (m, mask), v in agg.items()}
    print("\npaired bootstrap of NDCG@10 (seed-averaged per user), 95% interval:")
    for a, b in (("onerec_v2", "sasrec"), ("onerec_v2", "popularity"), ("onerec_v2", "item_knn"),
                 ("onerec_v2_id", "onerec_v2"), ("onerec_v2_id", "sasrec"),
                 ("onerec_v2_ctx", "onerec_v2"), ("onerec_v2_ctx", "sasrec"),
                 ("onerec_v1", "sasrec"), ("onerec_v1_id", "onerec_v1"), ("onerec_v2", "onerec_v1"),
                 ("sasrec", "popularity")):
        for mask in ("masked", "unmasked"):
            if (a, mask) in agg and (b, mask) in agg:
                p = paired(agg[(a, mask)], agg[(b, mask)])
                print(f"  {a} - {b} ({mask}): {p['diff']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}]")
                headline[f"{a}_minus_{b}_{mask}"] = [round(p["diff"], 4), round(p["low"], 4),
                                                     round(p["high"], 4)]
    return headline


def plot(results: list[dict[str, Any]], path: str) -> None:
    """Two panels: each neural run's validation NDCG@10 per epoch (the metric its early stopping
    watched: masked for OneRec, RecBole's unmasked for SASRec, so compare shapes across families,
    not levels), and test NDCG@10 (masked) per seed with the seed mean for every model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any(r["model"] == m for r in results)]
    colors = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(models)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for r in results:
        curve = r.get("valid_curve") or []
        if curve:
            mask = "unmasked" if r["model"] == "sasrec" else "masked"
            left.plot(range(1, len(curve) + 1), curve, marker=".", color=colors[r["model"]], alpha=0.8,
                      label=f"{r['model']} ({mask})")
    handles, labels = left.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    left.legend(uniq.values(), uniq.keys(), fontsize=8)
    left.set(xlabel="epoch", ylabel="validation NDCG@10", title="validation curves (each model's early-stopping metric)")
    for i, m in enumerate(models):
        vals = [r["masked"]["ndcg@10"] for r in results if r["model"] == m]
        right.scatter([i] * len(vals), vals, color=colors[m], s=18)
        right.hlines(float(np.mean(vals)), i - 0.3, i + 0.3, color=colors[m])
    right.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
    right.set(ylabel="test NDCG@10 (seen items masked)", title="test: seeds (dots) and mean (bar)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 users, 1 epoch, 1 seed (< 1 min)")
    parser.add_argument("--data-dir", default=None, help="MovieLens folder (default: recbole's copy)")
    parser.add_argument("--config", default=os.path.join(ROOT, "trainers", "configs", "onerec_v2_ml100k.yaml"))
    parser.add_argument("--v1-config", default=os.path.join(ROOT, "trainers", "configs", "onerec_v1_ml100k.yaml"),
                        help="recipe whose model section the onerec_v1 rows use (the rest comes from --config)")
    parser.add_argument("--models", default="popularity,item_knn,sasrec,onerec_v2",
                        help="comma list of " + ",".join(MODELS) + " (*_id: + per-item ID embedding; "
                             "*_ctx: + one self-attention layer over V2's context)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (quick: 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="one epoch cap for every neural model (overrides the two below)")
    parser.add_argument("--sasrec-epochs", type=int, default=200,
                        help="SASRec's epoch cap (RecBole early stopping, stopping_step 10; default 200)")
    parser.add_argument("--sasrec-budget-s", type=float, default=None,
                        help="stop a SASRec seed before an epoch that would end past this many seconds "
                             "(recorded as stopped_by: time_budget; default: no budget)")
    parser.add_argument("--sasrec-resume", action="store_true",
                        help="continue a SASRec seed that an earlier row in OUT stopped on its time budget "
                             "or a smaller epoch cap, from its checkpoint (RecBole resume_checkpoint)")
    parser.add_argument("--onerec-epochs", type=int, default=None,
                        help="OneRec's epoch cap (recipe early stopping; default the config's num_train_epochs)")
    parser.add_argument("--max-users", type=int, default=None, help="only the first N users")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "onerec_movielens"))
    parser.add_argument("--reeval-sasrec", action="store_true",
                        help="re-evaluate the saved SASRec checkpoints of the finished seeds (rewrites their rows)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="also write validation curves and per-seed test NDCG@10 to this PNG")
    parser.add_argument("--report-only", action="store_true",
                        help="print the table of the finished runs in OUT/results.jsonl, train nothing")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    out = os.path.abspath(args.out + ("_quick" if args.quick else ""))
    os.makedirs(out, exist_ok=True)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    max_users = args.max_users or (60 if args.quick else None)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"unknown model(s) {bad}")
    raw = load_recipe_raw(args.config)
    config_tag = os.path.basename(args.config)
    onerec_cap = args.onerec_epochs or int(raw["training"].get("num_train_epochs", 8))
    sasrec_cap = args.sasrec_epochs
    if args.epochs is not None or args.quick:
        onerec_cap = sasrec_cap = args.epochs or 1

    def cap(model: str) -> int | None:
        return None if model in ("popularity", "item_knn") else sasrec_cap if model == "sasrec" else onerec_cap

    def wanted(r: dict[str, Any]) -> bool:  # a finished row of this run's models, seeds, caps, config
        return (r["model"] in models and r["seed"] in seeds and r.get("epochs_cap") == cap(r["model"])
                and (not r["model"].startswith("onerec") or r.get("config", config_tag) == config_tag))

    path = os.path.join(out, "results.jsonl")
    if args.report_only:
        with open(path) as fh:
            results = [r for r in map(json.loads, filter(str.strip, fh)) if wanted(r)]
        headline = report(results)
        if args.plot:
            plot(results, args.plot)
        headline.update(users=len(results[0]["masked"]["users"]), seeds=len(seeds),
                        sasrec_epochs_cap=sasrec_cap, onerec_epochs_cap=onerec_cap, config=config_tag)
        print(json.dumps(headline))
        return 0
    data_dir = args.data_dir or recbole_ml100k_dir(out)
    t0 = time.perf_counter()
    data, _ = build_data(raw, data_dir, max_users)
    print(f"data: {data.info['num_interactions']} interactions, "
          f"{len(data.splits['test'])} test users, {data.index.num_items} items, "
          f"{data.info['num_train_samples']} training samples ({time.perf_counter() - t0:.0f} s)")
    if args.reeval_sasrec:
        with open(path) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        fixed = {}
        for r in rows:
            ckpt = sasrec_checkpoint(out, r["seed"])
            if r["model"] == "sasrec" and r.get("epochs_cap") == sasrec_cap and ckpt:
                fixed[r["seed"]] = reeval_sasrec(data, r["seed"], out, sasrec_cap, ckpt)
                print(f"sasrec seed {r['seed']} re-evaluated: NDCG@10 masked "
                      f"{fixed[r['seed']]['masked']['ndcg@10']:.4f} unmasked "
                      f"{fixed[r['seed']]['unmasked']['ndcg@10']:.4f}")
        with open(path) as fh:  # re-read: other runs may have appended meanwhile
            rows = [json.loads(line) for line in fh if line.strip()]
        for r in rows:
            if r["model"] == "sasrec" and r.get("epochs_cap") == sasrec_cap and r["seed"] in fixed:
                r.update(fixed[r["seed"]])
        with open(path, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        return 0
    done = []
    if os.path.exists(path):
        with open(path) as fh:
            done = [json.loads(line) for line in fh if line.strip()]
    results = [r for r in done if wanted(r)]
    have = {(r["model"], r["seed"]) for r in results}
    v1_model = (load_recipe_raw(args.v1_config)["model"]
                if any(m.startswith("onerec_v1") for m in models) else None)
    runs = [(m, 0) for m in models if m in ("popularity", "item_knn")]
    runs += [(m, s) for s in seeds for m in models if m not in ("popularity", "item_knn")]
    for model, seed in runs:  # seed-major, so that a partial run still pairs the models
        if (model, seed) in have:
            continue
        t1 = time.perf_counter()
        if model in ("popularity", "item_knn"):
            res = eval_baselines(data, model)
        elif model == "sasrec":
            prior = sasrec_resume_row(done, seed, out, sasrec_cap) if args.sasrec_resume else None
            if prior is not None:
                print(f"sasrec seed {seed}: resuming after epoch {len(prior['valid_curve'])} "
                      f"from {prior['checkpoint']}", flush=True)
            res = run_sasrec(data, seed, out, sasrec_cap, args.sasrec_budget_s, resume=prior)
            res["sasrec_config"] = SASREC_CONFIG
        else:
            res = run_onerec(raw, data, model, seed, out, onerec_cap, args.quick, v1_model=v1_model)
            res["config"] = config_tag
        res.update(model=model, seed=seed, epochs_cap=cap(model))
        results.append(res)
        with open(path, "a") as fh:
            fh.write(json.dumps(res) + "\n")
        print(f"{model} seed {seed}: NDCG@10 masked {res['masked']['ndcg@10']:.4f} unmasked "
              f"{res['unmasked']['ndcg@10']:.4f} ({time.perf_counter() - t1:.0f} s, "
              f"{res.get('epochs_run', 0):.0f} epochs)", flush=True)
    headline = report(results)
    if args.plot:
        plot(results, args.plot)
    if "sasrec" in models:
        print(f"SASRec config (RecBole 1.2.1): {json.dumps(SASREC_CONFIG)}")
    headline.update(users=len(data.splits["test"]), seeds=len(seeds), sasrec_epochs_cap=sasrec_cap,
                    onerec_epochs_cap=onerec_cap, config=config_tag)
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
