"""Config section `sandbox`: how untrusted code is isolated."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from cogumi_ray.config_base import StrictModel


class SandboxConfig(StrictModel):
    isolation: Literal["strict", "weak"] = Field(
        "strict",
        description="strict: kernel-enforced jail (namespaces, read-only view, seccomp, process "
        "cap), refused with a clear error where the machine cannot build it. weak: rlimits in a "
        "plain subprocess only, no network/filesystem isolation; an explicit opt-in.",
    )

    def apply(self) -> dict[str, str]:
        """Put the mode in this process's environment (local Ray workers inherit it) and return
        it as env vars for a cluster's runtime_env."""
        from cogumi_ray.sandbox import ISOLATION_ENV

        os.environ[ISOLATION_ENV] = self.isolation
        return {ISOLATION_ENV: self.isolation}
