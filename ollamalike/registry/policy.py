"""Which registries a pull or a push may talk to: ``OLLAMALIKE_REGISTRIES`` and ``OLLAMALIKE_NOPUSH``.

- ``config.nopush``: every push is refused (403).
- ``config.registries`` set (``host`` or ``host:port`` entries): pulls and pushes go only to a
  registry whose host is listed; an entry without a port stands for the default port (443, or 80
  for an ``insecure`` plain-HTTP registry), as credential entries do. Anything else is a 403.
- unset: pulls go to any registry. A push goes only to the registry its own request names, and
  only when that request comes from this machine (``local``: the CLI, or any client on loopback);
  a client elsewhere can push only to hosts listed in ``OLLAMALIKE_REGISTRIES``. So a remote API
  client cannot make the daemon send its models to a registry of its choosing.

The registry named by the model is what is checked; the token realm and the blob storage it
redirects to are that registry's own business (credentials never follow them, see ``auth``).
``hf.co`` names are checked as the host ``hf.co``.
"""

from __future__ import annotations

from ollamalike.config import Config
from ollamalike.errors import Forbidden
from ollamalike.names import ModelName
from ollamalike.registry.auth import host_port


def listed(config: Config, host: str, insecure: bool = False) -> bool:
    """Whether ``host`` (maybe with a port) is in ``OLLAMALIKE_REGISTRIES``; True when that is unset."""
    if config.registries is None:
        return True
    scheme = "http" if insecure else "https"
    wanted = host_port(host, scheme)
    return any(host_port(entry, scheme) == wanted for entry in config.registries)


def check_pull(config: Config, name: ModelName, insecure: bool = False) -> None:
    if not listed(config, name.host, insecure):
        raise Forbidden(f"pulling from {name.host} is not allowed: it is not in OLLAMALIKE_REGISTRIES")


def check_push(config: Config, name: ModelName, insecure: bool = False, local: bool = True) -> None:
    if config.nopush:
        raise Forbidden("pushing is disabled on this server (OLLAMALIKE_NOPUSH)")
    if config.registries is not None:
        if not listed(config, name.host, insecure):
            raise Forbidden(f"pushing to {name.host} is not allowed: it is not in OLLAMALIKE_REGISTRIES")
        return
    if not local:
        raise Forbidden(
            f"pushing to {name.host} is not allowed from another machine: "
            "list the registry in OLLAMALIKE_REGISTRIES on the server"
        )
