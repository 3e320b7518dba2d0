"""graphmoe.training: LightningModules per task, LightningDataModules and callbacks.

Layering: ``data`` -> ``training`` -> ``models``. Task modules stay thin: the math is in
:mod:`graphmoe.models`; they pick the nodes/edges a stage scores, compute the loss, log
``{stage}/loss`` and ``{stage}/{metric}``, and add the models' auxiliary losses.
"""
from graphmoe.training.base import STAGES, TaskModule, model_aux_loss, split_output
from graphmoe.training.callbacks import BestCheckpoint, MetricEarlyStopping
from graphmoe.training.datamodule import GraphDataModule, NodeDataModule, full_batch_loader
from graphmoe.training.graph import GraphPredictor, GraphPropertyDataModule
from graphmoe.training.link import LinkDataModule, LinkPredictor
from graphmoe.training.metrics import build_metric, metric_key
from graphmoe.training.mowst import MowstModule
from graphmoe.training.node import NodeClassifier
from graphmoe.training.results import RESULTS_FILE, results_table, stage_metrics, write_results

__all__ = [
    "RESULTS_FILE",
    "STAGES",
    "BestCheckpoint",
    "GraphDataModule",
    "GraphPredictor",
    "GraphPropertyDataModule",
    "LinkDataModule",
    "LinkPredictor",
    "MetricEarlyStopping",
    "MowstModule",
    "NodeClassifier",
    "NodeDataModule",
    "TaskModule",
    "build_metric",
    "full_batch_loader",
    "metric_key",
    "model_aux_loss",
    "split_output",
    "results_table",
    "stage_metrics",
    "write_results",
]
