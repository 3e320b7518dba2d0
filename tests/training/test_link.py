"""LinkPredictor / LinkDataModule: training, overall and per-node ranking metrics (against a
brute force and OGB's evaluator), TC-guided re-weighting, checkpoints and bad input."""
from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Data

from graphmoe.data.link import random_link_split
from graphmoe.training.link import (
    DotDecoder,
    LinkDataModule,
    LinkPredictor,
    MLPDecoder,
    hits_at_k_overall,
    link_metric_key,
    node_link_metrics,
)


def community_graph(num_nodes: int = 160, blocks: int = 8, p_in: float = 0.3,
                    p_out: float = 0.01, seed: int = 0) -> Data:
    """A stochastic block model with block-indicator features: links are predictable."""
    gen = torch.Generator().manual_seed(seed)
    block = torch.arange(num_nodes) % blocks
    prob = torch.where(block[:, None] == block[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=gen) < prob, diagonal=1)
    ei = upper.nonzero().t()
    x = torch.nn.functional.one_hot(block, blocks).float() + 0.1 * torch.randn(
        num_nodes, blocks, generator=gen)
    data = Data(x=x, edge_index=torch.cat([ei, ei.flip(0)], dim=1), num_nodes=num_nodes)
    data.name = "sbm"
    return data


def quiet_trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def split() -> Data:
    return random_link_split(community_graph(), val_ratio=0.1, test_ratio=0.2, seed=0)


# -- metrics -----------------------------------------------------------------------------------


def brute_force_node_metrics(scores, pos, known, ks):
    """Per node: rank all other nodes that are not known neighbours, positives first on ties
    pessimistically; Hits@K / MRR / NDCG@K as in the TC paper's evaluation."""
    n = scores.size(0)
    positives = {i: set() for i in range(n)}
    for u, v in pos.t().tolist():
        positives[u].add(v), positives[v].add(u)
    excluded = {i: {i} for i in range(n)}
    for u, v in known.t().tolist():
        excluded[u].add(v), excluded[v].add(u)
    out = {f"hits@{k}": [math.nan] * n for k in ks}
    out["mrr"] = [math.nan] * n
    out.update({f"ndcg@{k}": [math.nan] * n for k in ks})
    for i in range(n):
        if not positives[i]:
            continue
        negs = [float(scores[i, j]) for j in range(n)
                if j not in excluded[i] and j not in positives[i]]
        ps = sorted((float(scores[i, j]) for j in positives[i]), reverse=True)
        ranks = [1 + sum(s >= p for s in negs) + r for r, p in enumerate(ps)]
        for k in ks:
            out[f"hits@{k}"][i] = float(min(ranks) <= k)
            dcg = sum(1 / math.log2(1 + r) for r in ranks if r <= k)
            idcg = sum(1 / math.log2(1 + r) for r in range(1, min(k, len(ranks)) + 1))
            out[f"ndcg@{k}"][i] = dcg / idcg
        out["mrr"][i] = 1 / min(ranks)
    return {k: torch.tensor(v) for k, v in out.items()}


@pytest.mark.parametrize("decoder_name", ["dot", "mlp"])
def test_node_link_metrics_match_a_brute_force(split, decoder_name):
    torch.manual_seed(0)
    z = torch.randn(split.num_nodes, 8)
    decoder = DotDecoder() if decoder_name == "dot" else MLPDecoder(8, 8, 2)
    known = torch.cat([split.edge_index, split.val_pos_edge_index], dim=1)
    got = node_link_metrics(z, decoder, split.test_pos_edge_index, known, k=(1, 5))
    with torch.no_grad():
        scores = decoder.all_pairs(z, z)
    want = brute_force_node_metrics(scores, split.test_pos_edge_index, known, (1, 5))
    for name in want:
        assert torch.allclose(got[name].double(), want[name].double(), equal_nan=True, atol=1e-6), name
    assert int((~torch.isnan(got["mrr"])).sum()) == len(set(split.test_pos_edge_index.view(-1).tolist()))


def test_sampled_candidates_rank_fewer_nodes(split):
    z = torch.randn(split.num_nodes, 8)
    full = node_link_metrics(z, DotDecoder(), split.test_pos_edge_index, split.edge_index, k=5)
    sampled = node_link_metrics(z, DotDecoder(), split.test_pos_edge_index, split.edge_index,
                                k=5, candidates=10, generator=torch.Generator().manual_seed(0))
    defined = ~torch.isnan(full["mrr"])
    assert torch.equal(defined, ~torch.isnan(sampled["mrr"]))
    assert bool((sampled["mrr"][defined] >= full["mrr"][defined] - 1e-6).all())
    with pytest.raises(ValueError, match="candidates"):
        node_link_metrics(z, DotDecoder(), split.test_pos_edge_index, candidates=0)


def test_overall_hits_matches_ogb_evaluator():
    from ogb.linkproppred import Evaluator

    evaluator = Evaluator("ogbl-ddi")  # hits@20
    gen = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(50, generator=gen), torch.randn(300, generator=gen)
    want = evaluator.eval({"y_pred_pos": pos, "y_pred_neg": neg})["hits@20"]
    assert float(hits_at_k_overall(pos, neg, 20)) == pytest.approx(want)
    assert float(hits_at_k_overall(pos, neg[:5], 20)) == 1.0


def test_metric_specs():
    assert link_metric_key("rocauc") == "rocauc" and link_metric_key("hits@50") == "hits@50"
    assert link_metric_key("ogb:ogbl-collab") == "hits@50"
    for bad in ("acc", "hits@0", "mrr"):
        with pytest.raises(ValueError, match="link metric"):
            link_metric_key(bad)


# -- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone,decoder", [("gcn", "dot"), ("sage", "mlp")])
def test_fit_beats_chance_and_reports_per_node_metrics(split, backbone, decoder, tmp_path):
    pl.seed_everything(0)
    datamodule = LinkDataModule.from_data(split)
    module = LinkPredictor(backbone, hidden_channels=16, decoder=decoder, lr=0.01,
                           hits_k=(5,), node_k=(5,))
    trainer = quiet_trainer(max_epochs=40)
    trainer.fit(module, datamodule=datamodule)
    (test,) = trainer.test(module, datamodule=datamodule, verbose=False)
    assert {"test/loss", "test/rocauc", "test/hits@5", "test/node_hits@5", "test/node_mrr",
            "test/node_ndcg@5"} == set(test)
    assert test["test/rocauc"] > 0.75  # chance is 0.5; about 0.83 here
    per_node = module.node_metrics["test"]
    assert per_node["mrr"].shape == (split.num_nodes,)
    assert float(torch.nanmean(per_node["mrr"])) == pytest.approx(test["test/node_mrr"], rel=1e-5)
    assert module.hparams.in_channels == split.x.size(1)
    trainer.save_checkpoint(tmp_path / "link.ckpt")
    restored = LinkPredictor.load_from_checkpoint(tmp_path / "link.ckpt").eval()
    module.eval()
    pairs = split.test_pos_edge_index
    with torch.no_grad():
        assert torch.allclose(restored(split.x, split.edge_index, pairs),
                              module(split.x, split.edge_index, pairs))


def test_tc_reweighting_spreads_each_node_mass(split, tmp_path):
    pl.seed_everything(0)
    module = LinkPredictor("gcn", hidden_channels=16, reweight_alpha=2.0, reweight_warmup=2)
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(module, datamodule=LinkDataModule.from_data(split))
    weight = module.tc_edge_weight
    assert weight is not None and weight.shape == (split.edge_index.size(1),)
    src = split.edge_index[0]
    deg = torch.bincount(src, minlength=split.num_nodes).float()
    extra = torch.zeros(split.num_nodes).index_add_(0, src, weight - 1.0)
    assert torch.allclose(extra, 2.0 * deg, atol=1e-4) and bool((weight >= 1).all())
    # the weights are used by message passing and restored from a checkpoint
    module.eval()
    with torch.no_grad():
        z = module.encode(split.x, split.edge_index)
        plain = module.encoder(split.x, split.edge_index)
    assert not torch.allclose(z, plain)
    trainer.save_checkpoint(tmp_path / "rw.ckpt")
    restored = LinkPredictor.load_from_checkpoint(tmp_path / "rw.ckpt")
    assert torch.equal(restored.tc_edge_weight, weight)


def test_datamodule_loads_a_seal_split(data_root):
    datamodule = LinkDataModule("usair", str(data_root), seed=1)
    assert datamodule.num_features == 332 and datamodule.metric == "rocauc"
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.train_pos_edge_index.size(1) == 2126 - 106 - 212
    assert datamodule.num_classes is None  # no classes: the embedding size stays hidden_channels


# -- bad input ---------------------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError, match="decoder"):
        LinkPredictor(decoder="bilinear")
    with pytest.raises(ValueError, match="neg_ratio"):
        LinkPredictor(neg_ratio=0)
    with pytest.raises(ValueError, match="node_k"):
        LinkPredictor(node_k=(0,))
    with pytest.raises(ValueError, match="link metric"):
        LinkPredictor(metric="acc")


def test_empty_split_and_feature_mismatch(split):
    module = LinkPredictor("gcn", hidden_channels=8, in_channels=split.x.size(1))
    empty = split.clone()
    empty.val_pos_edge_index = torch.empty(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="val split has no edges"):
        module.validation_step(empty, 0)
    with pytest.raises(ValueError, match="in_channels"):
        module.encode(torch.randn(split.num_nodes, 3), split.edge_index)
    with pytest.raises(ValueError, match="test_pos_edge_index has no edges"):
        LinkDataModule.from_data(Data(**{**split.to_dict(),
                                         "test_pos_edge_index": torch.empty(2, 0, dtype=torch.long)}))
