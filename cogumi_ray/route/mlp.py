"""The MLP router: features -> 64 -> 32 -> one logit per option.

Trained with torch (AdamW, class-weighted cross-entropy, early stopping on the validation slice,
best epoch restored); answered with numpy from the same weights, so a serving replica needs no
torch and one decision costs microseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cogumi_ray.route.config import MLPConfig
from cogumi_ray.route.models import Router

if TYPE_CHECKING:
    import numpy as np


def class_weights(y: np.ndarray, n: int, power: float = 1.0) -> np.ndarray:
    """(inverse frequency) ** power, normalised so the rows' mean weight is 1; 0 for absent
    classes (no rows to weigh)."""
    import numpy as np

    counts = np.bincount(y, minlength=n).astype(np.float64)
    present = counts > 0
    w = np.zeros(n)
    w[present] = (len(y) / counts[present]) ** power
    return w * len(y) / float((w[y]).sum())


class MLPRouter(Router):
    name = "mlp"
    config_cls = MLPConfig
    cfg: MLPConfig

    def __init__(self, options: list[str], cfg: MLPConfig, seed: int = 0) -> None:
        super().__init__(options, cfg, seed)
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []  # (out, in) weight, (out,) bias

    def _net(self, dim: int) -> Any:
        import torch

        mods: list[torch.nn.Module] = []
        for width in self.cfg.hidden:
            mods += [torch.nn.Linear(dim, width), torch.nn.ReLU(), torch.nn.Dropout(self.cfg.dropout)]
            dim = width
        mods.append(torch.nn.Linear(dim, len(self.options)))
        return torch.nn.Sequential(*mods)

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a few thousand rows: threads only contend on a shared box
        try:
            return self._fit(x, y, x_val, y_val)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        import copy

        import torch

        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        net = self._net(x.shape[1])
        weight = torch.tensor(class_weights(y, len(self.options), self.cfg.class_weights),
                              dtype=torch.float32)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        opt = torch.optim.AdamW(net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
        # No validation rows: stop on the training loss instead (still bounded by max_epochs).
        xv, yv = (torch.from_numpy(x_val).float(), torch.from_numpy(y_val).long()) if len(y_val) \
            else (xt, yt)
        best, best_state, best_epoch, epoch = float("inf"), None, 0, 0
        for epoch in range(1, self.cfg.max_epochs + 1):
            net.train()
            for idx in torch.randperm(len(yt), generator=gen).split(self.cfg.batch_size):
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                val = float(loss_fn(net(xv), yv))
            if val < best - 1e-5:
                best, best_state, best_epoch = val, copy.deepcopy(net.state_dict()), epoch
            elif epoch - best_epoch >= self.cfg.patience:
                break
        net.load_state_dict(best_state or net.state_dict())
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        self.layers = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy())
                       for m in linears]
        return {"epochs": epoch, "best_epoch": best_epoch, "best_val_loss": round(best, 5)}

    def logits(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        h = x.astype(np.float32)
        for i, (w, b) in enumerate(self.layers):  # eval mode: dropout is the identity
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(self.layers):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        n = len(arrays) // 2
        self.layers = [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(n)]
