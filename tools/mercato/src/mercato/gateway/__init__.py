"""The edge gateway: routes.yaml and the service registry turned into Envoy's file-based xDS.

The supervisor runs ``prepare(cfg)`` (writes the files, returns Envoy's argv), starts Envoy
with that argv, and runs ``run_control_plane(cfg, registry, stop_event)`` alongside it.
"""

from mercato.gateway.control import GatewayConfig, prepare, run_control_plane

__all__ = ["GatewayConfig", "prepare", "run_control_plane"]
