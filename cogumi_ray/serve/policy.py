"""Routing policies by name. For now one: the client's model name decides.

`model="cogumi"` is the routed entry point: today it answers with the base (confidence None); a
learned router later scores the conversation there and picks a modifier. Naming a modifier
(`cogumi:<name>` or `<name>`) or the base's own name always forces that option.
"""

from __future__ import annotations

from cogumi_ray.errors import ConfigError
from cogumi_ray.serve.config import ServeConfig
from cogumi_ray.serve.errors import model_not_found
from cogumi_ray.serve.protocol import BASE, Decision, Messages, RoutingPolicy

ROUTED = "cogumi"  # the model id whose option the policy chooses
PREFIX = ROUTED + ":"


def modifier_id(name: str) -> str:
    return PREFIX + name


class NamePolicy:
    def __init__(self, base_name: str, modifiers: list[str]) -> None:
        self.base_name = base_name
        self.modifiers = sorted(modifiers)

    def models(self) -> list[str]:
        return [self.base_name, ROUTED, *(modifier_id(m) for m in self.modifiers)]

    def decide(self, messages: Messages, requested_model: str) -> Decision:
        if requested_model == ROUTED:
            return Decision(BASE, None, self.base_name)
        if requested_model == self.base_name:
            return Decision(BASE, None, self.base_name)
        name = requested_model.removeprefix(PREFIX)
        if name in self.modifiers:
            return Decision(name, None, modifier_id(name))
        raise model_not_found(requested_model, self.models())


def make_policy(cfg: ServeConfig) -> RoutingPolicy:
    if cfg.policy == "names":
        return NamePolicy(cfg.served_base_name(), list(cfg.adapters))
    if cfg.policy == "learned":
        if not cfg.router_path:
            raise ConfigError("serve.policy 'learned' needs serve.router_path: the router "
                              "stage's `router` output (run `cogumi router train`)")
        from cogumi_ray.route.policy import LearnedPolicy

        return LearnedPolicy.from_dir(cfg.router_path, cfg.served_base_name(), list(cfg.adapters),
                                      memory_path=cfg.sessions_path, memory_cfg=cfg.session_memory)
    raise ConfigError(f"unknown routing policy {cfg.policy!r}; valid: ['names', 'learned']")
