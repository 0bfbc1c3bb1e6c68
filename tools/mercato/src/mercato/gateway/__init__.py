"""The edge gateway: routes.yaml and the service registry turned into Envoy's file-based xDS.

The supervisor runs ``prepare(cfg)`` (writes the files, returns Envoy's argv), starts Envoy
with that argv, and runs ``run_control_plane(cfg, registry, stop_event, splits)`` alongside
it; ``splits`` (a ``TrafficSplits``) carries the releases under way (``mercato release``).
"""

from mercato.gateway.control import GatewayConfig, TrafficSplits, prepare, run_control_plane
from mercato.gateway.render import Split

__all__ = ["GatewayConfig", "Split", "TrafficSplits", "prepare", "run_control_plane"]
