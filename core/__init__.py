"""kubefabric's core: what faces and producers meet at. It imports nothing else of ours.

==================  ==========================================================
``datastore``       config (validated against YANG), state, the one write path
``changefeed``      ``Change`` records and the one feed every face follows
``history``         the time machine: SQLite store, its upkeep, async queries
``ports``           typed Protocols producers, faces and the fabric store use
``schema``          the YANG models (package data in ``core/yang``) indexed
``schema_paths``    the schema paths of the nodes producers write
``scope``           which config is fabric-wide and which node-local
``errors``          ``ConfigError`` (RFC 6241 rpc-error fields) and friends
``persist``         crash-safe JSON files
``times``           RFC 3339, durations, the Netvisor time filters
==================  ==========================================================

Importing ``core`` (or ``core.ports``, ``core.times``) loads no yangson, so
light processes (sFlow workers) can use the ports; ``core.datastore`` and
``core.schema`` load the models.
"""
