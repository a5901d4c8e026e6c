"""One Router interface and a registry of routers by name (RouteLLM's ROUTER_CLS habit).

A router maps feature rows to one logit per option; the base class owns the temperature
(fitted on held-out rows), probabilities and persistence: `router.json` (name, options,
temperature, the router's config section and small metadata) + `router.npz` (its arrays). No
pickle: loading never runs code from the file, and a file outlives a refactor of the class.
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from cogumi_ray.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import numpy as np

    from cogumi_ray.config_base import StrictModel
    from cogumi_ray.route.config import RouterConfig

# name -> "module:Class", imported only when that router is built (torch only for the MLP)
ROUTERS: dict[str, str] = {
    "mlp": "cogumi_ray.route.mlp:MLPRouter",
    "knn": "cogumi_ray.route.knn:KNNRouter",
    "logreg": "cogumi_ray.route.logreg:LogRegRouter",
}
ABSENT_LOGIT = -1e4  # an option no training row targets: probability ~0 at any temperature


class Router(ABC):
    name: ClassVar[str]
    config_cls: ClassVar[type[StrictModel]]

    def __init__(self, options: list[str], cfg: Any, seed: int = 0) -> None:
        self.options = list(options)
        self.cfg = cfg
        self.seed = seed
        self.temperature = 1.0

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        """Train on (rows, dim) features and (rows,) option indices; return training stats."""

    @abstractmethod
    def logits(self, x: np.ndarray) -> np.ndarray:
        """(rows, options) uncalibrated scores."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The arrays that make up the trained router."""

    @abstractmethod
    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...

    def meta(self) -> dict[str, Any]:
        """Small JSON metadata saved beside the arrays."""
        return {}

    def calibrate(self, x: np.ndarray, y: np.ndarray) -> float:
        from cogumi_ray.route.calibration import fit_temperature

        self.temperature = fit_temperature(self.logits(x), y)
        return self.temperature

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from cogumi_ray.route.calibration import softmax

        return softmax(self.logits(x), self.temperature)

    def save(self, path: str) -> None:
        import numpy as np

        os.makedirs(path, exist_ok=True)
        np.savez(os.path.join(path, "router.npz"), **self.state())
        with open(os.path.join(path, "router.json"), "w", encoding="utf-8") as f:
            json.dump({"name": self.name, "options": self.options, "temperature": self.temperature,
                       "seed": self.seed, "config": self.cfg.model_dump(mode="json"),
                       "meta": self.meta()}, f, indent=1)


def router_class(name: str) -> type[Router]:
    if name not in ROUTERS:
        raise ConfigError(f"unknown router {name!r}; valid: {sorted(ROUTERS)}")
    module, _, cls = ROUTERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_router(name: str, options: list[str], rc: RouterConfig) -> Router:
    """Router `name` configured by its section of the route config (route.mlp, route.knn, ...)."""
    return router_class(name)(options, getattr(rc, name), rc.seed)


def load_router(path: str) -> Router:
    import numpy as np

    meta_path = os.path.join(path, "router.json")
    if not os.path.exists(meta_path):
        raise ModelError(f"{path!r} holds no saved router (router.json); train one with "
                         "`cogumi router train`")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    cls = router_class(meta["name"])
    router = cls(meta["options"], cls.config_cls.model_validate(meta["config"]), meta["seed"])
    router.temperature = float(meta["temperature"])
    with np.load(os.path.join(path, "router.npz"), allow_pickle=False) as z:
        router.load_state({k: z[k] for k in z.files}, meta["meta"])
    return router
