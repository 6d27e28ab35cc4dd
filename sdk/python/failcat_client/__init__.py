"""failcat-client: capture machine-learning failure cases from production into failcat.

    from failcat_client import Client
    client = Client(url, client_id, client_secret, spool_dir="/var/spool/failcat")
    client.capture(model={"name": "fraud", "version": "3.2.0"}, data_source="payments",
                   input=features, prediction=label, confidence=0.31)

Depends on httpx only.
"""

from __future__ import annotations

from failcat_client._watch import Watch, default_confidence
from failcat_client.aio import AsyncClient
from failcat_client.client import Client

__all__ = ["AsyncClient", "Client", "Watch", "default_confidence"]
__version__ = "0.1.0"
