"""Full fine-tune of the real SqueezeNet v1.0: every layer updated by SGD
steps, with PyTorch on the CPU.

Optional: PyTorch comes only with the ``bench`` extra
(``pip install -e '.[bench]'``, torch==2.13.0 CPU build); the registry, the
agent and the default tests never import this module. The network is written
out functionally (same graph as ``zoo.squeezenet``: ceil-mode pooling, conv10
padding 1) so the trained tensors go back through the zoo's own
deterministic ONNX builder rather than torch's exporter. Pruning masks are
kept, as in Deep Compression's retraining.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from modelpack import deepcompression as dc
from modelpack.fidelity import evaluation_views, render
from modelpack.imaging import pixels_to_tensor, to_pixels
from modelpack.retrain import pseudo_labels
from modelpack.runtime import read_model_info

log = logging.getLogger(__name__)

try:  # an optional extra: say how to get it rather than fail with a bare ImportError
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the full fine-tune needs PyTorch: pip install -e '.[bench]' (torch==2.13.0, CPU)"
    ) from exc


@dataclass(frozen=True)
class FinetuneResult:
    tensors: list[dc.LayerTensors]
    losses: tuple[float, ...]
    labels: dict[str, int]


def _forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def conv(name: str, t: torch.Tensor, stride: int = 1, pad: int = 0) -> torch.Tensor:
        return F.relu(F.conv2d(t, p[f"{name}/w"], p[f"{name}/b"], stride=stride, padding=pad))

    def fire(i: int, t: torch.Tensor) -> torch.Tensor:
        s = conv(f"fire{i}/squeeze1x1", t)
        return torch.cat(
            [conv(f"fire{i}/expand1x1", s), conv(f"fire{i}/expand3x3", s, pad=1)], dim=1
        )

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(t, 3, 2, ceil_mode=True)

    t = pool(conv("conv1", x, stride=2))
    for i in (2, 3, 4):
        t = fire(i, t)
    t = pool(t)
    for i in (5, 6, 7, 8):
        t = fire(i, t)
    t = fire(9, pool(t))
    return conv("conv10", t, pad=1).mean(dim=(2, 3))  # logits before softmax


def finetune(
    model_bytes: bytes,
    tensors: list[dc.LayerTensors],
    *,
    n_views: int = 24,
    seed: int = 303,
    steps: int = 4,
    lr: float = 1e-4,
    momentum: float = 0.9,
) -> FinetuneResult:
    """SGD over all layers on seeded views of the real photos (labels as in
    ``retrain``); single-threaded and deterministic."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = read_model_info(model_bytes)
        assert info is not None
        views = evaluation_views(n_views, seed=seed)
        cache: dict = {}
        pre = info.preprocessing
        x = torch.from_numpy(
            np.concatenate([pixels_to_tensor(to_pixels(render(v, cache), pre), pre) for v in views])
        )
        labels = pseudo_labels(model_bytes, [v.photo for v in views])
        y = torch.tensor([labels[v.photo] for v in views])
        params: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for t in tensors:
            params[f"{t.name}/w"] = torch.tensor(t.weight, requires_grad=True)
            params[f"{t.name}/b"] = torch.tensor(t.bias, requires_grad=True)
            masks[f"{t.name}/w"] = torch.from_numpy((t.weight != 0).astype(np.float32))
        opt = torch.optim.SGD(list(params.values()), lr=lr, momentum=momentum)
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(_forward(params, x), y)
            loss.backward()
            for key, m in masks.items():
                grad = params[key].grad
                assert grad is not None  # every weight feeds the loss, so backward() set it
                grad.mul_(m)
            opt.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            out = [
                dc.LayerTensors(
                    t.name,
                    (params[f"{t.name}/w"] * masks[f"{t.name}/w"]).numpy().copy(),
                    params[f"{t.name}/b"].numpy().copy(),
                )
                for t in tensors
            ]
        log.info("full fine-tune: loss %.4f -> %.4f over %d steps", losses[0], losses[-1], steps)
        return FinetuneResult(out, tuple(losses), labels)
    finally:
        torch.set_num_threads(threads)
