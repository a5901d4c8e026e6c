"""The bundled task suite: seeded generator, per-domain verifiers, planted mess, raw writer.

    from cogumi_ray.data.suite import generate_suite, verify, write_raw_suite
"""

from __future__ import annotations

from cogumi_ray.data.suite.generator import generate_suite
from cogumi_ray.data.suite.raw import write_raw_suite
from cogumi_ray.data.suite.verify import Verdict, can_verify, verify, verify_many

__all__ = ["Verdict", "can_verify", "generate_suite", "verify", "verify_many", "write_raw_suite"]
