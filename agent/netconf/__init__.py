"""NETCONF face (RFC 6241/6242/5277/6022/6243) over the agent's one datastore.

Modules: framing (RFC 6242), xmlsafe (untrusted XML), codec (XML <-> RFC
7951), filters (subtree, xpath), edit (edit-config), datastores (running,
candidate, startup, locks, confirmed commit), notifications (RFC 5277),
monitoring (RFC 6022), rpc (the operations), server (asyncssh, sessions).
"""
from .server import NetconfServer

__all__ = ["NetconfServer"]
