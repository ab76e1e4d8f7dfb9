"""The gNMI face (gNMI specification 0.10): Capabilities, Get, Set, Subscribe.

Modules, one job each: `paths` (gNMI paths <-> schema selectors), `encode`
(nodes -> Notification bytes), `read` (nodes a selector names), `match`
(subscriptions indexed by path), `coalesce` (per-subscriber merging queue),
`get`, `edit` (Set), `subscribe`, `history` (the History extension),
`auth` (per-RPC credentials) and `server` (the grpc.aio service).
"""
