"""Why: the gateway's own CLI and older code import the Python client as `gateway.client`; the
client itself lives in the stand-alone `consentgate_client` package (installable without the
model stack: `pip install ./client`). This module re-exports it so there is one implementation."""

from consentgate_client import *  # noqa: F403
from consentgate_client import __all__ as __all__  # noqa: F401
