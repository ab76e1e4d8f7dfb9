"""Schema paths of the nodes producers write and faces read, named once.

A node is addressed by its schema path (module prefix on the first element,
as in RFC 7951); these constants keep a YANG rename to one edit.
"""
from __future__ import annotations

K8S_CONNECTION = "/kubefabric-k8s:k8s/connection"
K8S_CONNECTION_STATE = "/kubefabric-k8s:k8s/connection/state"
K8S_CNI = "/kubefabric-k8s:k8s/cni"
K8S_SERVICE = "/kubefabric-k8s:k8s/service"
K8S_SERVICE_BACKEND = "/kubefabric-k8s:k8s/service/backend"
VPORTS = "/kubefabric-vport:vports"
VPORT = "/kubefabric-vport:vports/vport"
CONNECTION_SETTINGS = "/kubefabric-connection:connection-stats-settings"
CONNECTION = "/kubefabric-connection:connections/connection"
SFLOW_STATS = "/kubefabric-sflow:sflow-collector/statistics"
SFLOW_EXPORTER = "/kubefabric-sflow:sflow-collector/statistics/exporter"
FABRIC = "/kubefabric-fabric:fabric"
FABRIC_NODE = "/kubefabric-fabric:fabric/node"
CONNECTION_STATISTICS = "/kubefabric-connection:connections/statistics"
K8S_NODE = "/kubefabric-k8s:k8s/node"
TOPOLOGY = "/kubefabric-topology:topology"
ATTACHMENT = "/kubefabric-topology:topology/attachment"
UNPLACED = "/kubefabric-topology:topology/unplaced"
TOPOLOGY_SOURCE = "/kubefabric-topology:topology/source"
LLDP_NEIGHBOR = "/kubefabric-topology:topology/lldp-neighbor"
CONNECTION_SERVICE_STATS = "/kubefabric-connection:connections/service-stats"
CAPTURE = "/kubefabric-capture:capture"
CAPTURE_INTERFACE_STATE = "/kubefabric-capture:capture-state/interface"
CAPTURE_ERSPAN_STATE = "/kubefabric-capture:capture-state/erspan"
CAPTURE_ERSPAN_SESSION = "/kubefabric-capture:capture-state/erspan/session"
