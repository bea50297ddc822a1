"""Model workers on Ray Serve: one deployment per model family, dynamic batching, and remote
adapters that implement the `classifiers.base` Protocols by calling those deployments.

- `config`: the workers file (families, models, replicas, CPUs/GPUs, batching) -> Serve applications
- `worker`: the Serve deployment (imports Ray; runs on the cluster)
- `client`: `ServeClient`, the remote adapters and `remote_registry` (no Ray import: the gateway
  talks HTTP to the Serve proxy, see its docstring for why)
- `wire`: the binary frame (raw `.npy` arrays) both sides speak
- `cluster`: `LocalCluster`, a bounded one-node cluster on 127.0.0.1 for tests and trials

Importing this package imports neither Ray nor any model package.
"""

from classifiers.rayserve.client import RemoteModelError, ServeClient, remote_adapter, remote_registry
from classifiers.rayserve.config import SERVABLE, ConfigError, FamilyConfig, WorkersConfig, load_config, parse_config

__all__ = [
    "SERVABLE",
    "ConfigError",
    "FamilyConfig",
    "RemoteModelError",
    "ServeClient",
    "WorkersConfig",
    "load_config",
    "parse_config",
    "remote_adapter",
    "remote_registry",
]
