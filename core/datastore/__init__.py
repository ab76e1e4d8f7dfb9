"""The datastore: running config, operational state, the change feed, the time machine's queries.

- :mod:`.datastore`  ``Datastore``: the one write path for config (``propose``),
                     reading (``read``/``read_node``), the fabric store's events
- :mod:`.config`     running config validated against YANG as a whole
- :mod:`.state`      operational state written by producers (a ``StateWriter``)
- :mod:`.tree`       flat nodes <-> RFC 7951 trees
- :mod:`.merge`      three-way merge of config trees (confirmed-commit rollback)
"""
from ..changefeed import Change
from ..errors import ConfigError, ConflictError, UnavailableError
from ..schema import Schema
from .datastore import Datastore

__all__ = ["Change", "ConfigError", "ConflictError", "Datastore", "Schema", "UnavailableError"]
