"""Graph-level training: GraphPredictor / GraphPropertyDataModule and ``graphmoe fit`` on molecules."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from graphmoe.cli import main
from graphmoe.training import GraphPredictor
from graphmoe.training.graph import GraphMetric

REPO = Path(__file__).resolve().parents[2]


def tiny_batch(num_tasks: int = 2, edge_attr: bool = True) -> Batch:
    graphs = []
    for i in range(4):
        g = torch.Generator().manual_seed(i)
        x = torch.stack([torch.randint(0, 10, (5,), generator=g)] +
                        [torch.zeros(5, dtype=torch.long)] * 8, dim=1)
        edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
        y = torch.tensor([[float(i % 2), math.nan if i == 0 else 1.0]])[:, :num_tasks]
        data = Data(x=x, edge_index=edge_index, y=y)
        if edge_attr:
            data.edge_attr = torch.zeros(6, 3, dtype=torch.long)
        graphs.append(data)
    return Batch.from_data_list(graphs)


def test_loss_is_masked_bce_plus_the_balancing_loss():
    torch.manual_seed(0)
    module = GraphPredictor("gmoe_gin", hidden_channels=8, num_layers=2, dropout=0.0,
                            in_channels=9, out_channels=2,
                            backbone_kwargs={"num_experts": 4, "k": 2, "router": "topk"})
    batch = tiny_batch()
    loss = module.training_step(batch, 0)
    pred = module(batch)  # deterministic: no dropout, top-k routing, same batch statistics
    labelled = ~torch.isnan(batch.y)
    task = F.binary_cross_entropy_with_logits(pred[labelled], batch.y[labelled])
    aux = module.model.aux_loss
    assert aux is not None and aux.item() > 0
    torch.testing.assert_close(loss, task + aux)


def test_missing_edge_attr_and_bad_node_features_are_clear_errors():
    module = GraphPredictor("gine", hidden_channels=8, num_layers=2, in_channels=9, out_channels=2)
    with pytest.raises(ValueError, match="needs edge features but the batch has no edge_attr"):
        module(tiny_batch(edge_attr=False))
    batch = tiny_batch()
    batch.x = batch.x.float()
    with pytest.raises(ValueError, match="node_encoder='atom' expects"):
        module(batch)
    plain = GraphPredictor("gin", hidden_channels=8, num_layers=2, in_channels=9, out_channels=2)
    assert plain(tiny_batch(edge_attr=False)).shape == (4, 2)  # GIN ignores bonds
    with pytest.raises(ValueError, match="metric must be one of"):
        GraphPredictor(metric="acc")


def test_graph_metric_follows_ogb():
    rocauc = GraphMetric("rocauc", 2)
    y = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, math.nan], [1.0, 1.0]])
    rocauc.update(torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.2, 0.0], [0.3, 0.0]]), y)
    assert rocauc.compute().item() == pytest.approx(1.0)  # task 2 has one class: left out
    rmse = GraphMetric("rmse", 1)
    rmse.update(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [3.0]]))
    assert rmse.compute().item() == pytest.approx(math.sqrt(0.5))


@pytest.mark.parametrize("config,metric", [("gmoe/esol_gin.yaml", "rmse"),
                                           ("gin/bbbp.yaml", "rocauc")])
def test_cli_fit_writes_results_json(data_root, tmp_path, monkeypatch, config, metric):
    monkeypatch.setenv("GRAPHMOE_DATA", str(data_root))
    code = main(["fit", "--config", str(REPO / "configs" / config),
                 "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false",
                 "--trainer.logger.init_args.save_dir", str(tmp_path),
                 "--data.init_args.max_graphs", "64", "--model.init_args.hidden_channels", "16",
                 "--model.init_args.num_layers", "2"])
    assert code == 0
    results = json.loads(next(tmp_path.rglob("results.json")).read_text())
    assert set(results) == {"val", "test"} and set(results["test"]) == {metric}
    assert results["test"][metric] is not None and results["test"][metric] > 0
