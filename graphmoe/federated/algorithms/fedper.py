r"""FedPer (Arivazhagan et al., "Federated Learning with Personalization Layers", 2019)."""
from __future__ import annotations

from torch.nn import Module

from graphmoe.federated.algorithms.fedavg import FedAvg

__all__ = ["FedPer", "head_keys"]


def head_keys(model: Module) -> set[str]:
    """State-dict keys of the model's output layer: the ``classifier`` submodule where there is
    one (:class:`~graphmoe.federated.models.MaskedGCN`), else the last module that holds
    parameters of its own (the last conv of a :class:`~graphmoe.models.BasicGNN`)."""
    if isinstance(getattr(model, "classifier", None), Module):
        prefix = "classifier."
    else:
        owners = [name for name, mod in model.named_modules()
                  if any(True for _ in mod.parameters(recurse=False))]
        if not owners:
            return set()
        prefix = f"{owners[-1]}." if owners[-1] else ""
    return {k for k in model.state_dict() if k.startswith(prefix)}


class FedPer(FedAvg):
    r"""FedAvg on the feature extractor, personal classifier: the output layer
    (:func:`head_keys`) stays on each client and is never averaged; the GCN layers are
    averaged as in FedAvg. Same options as
    :class:`~graphmoe.federated.algorithms.base.FederatedAlgorithm`."""

    name = "fedper"

    def local_keys(self, model: Module) -> set[str]:
        return head_keys(model)
