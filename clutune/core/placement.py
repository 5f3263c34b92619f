"""Where work ran: every result row names the Ray node and host of its trial and of its oracle, so a user of a
cluster can see where each piece of their work went (and which one a lost node took with it)."""

from __future__ import annotations

import socket
import sys


def placement() -> dict[str, str]:
    """The Ray node id of this process ("" when Ray is not running here; Ray is never imported for this) and
    the hostname."""
    ray = sys.modules.get("ray")
    node_id = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else ""
    return {"node_id": node_id, "hostname": socket.gethostname()}
