"""The command table: every CLI command, its parameters, its columns and its YANG node.

Names come from the YANG models (leaf name = parameter name = column name),
as Netvisor's k8s-connection-*, k8s-cni-show, vport-show and
connection-show use them.  Nothing here does I/O; the engine and the
parser read these definitions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from core import schema_paths

VPORTS = schema_paths.VPORT
K8S_CONNECTIONS = schema_paths.K8S_CONNECTION
CNI = schema_paths.K8S_CNI
SERVICES = schema_paths.K8S_SERVICE
SERVICE_BACKENDS = schema_paths.K8S_SERVICE_BACKEND
CONNECTIONS = schema_paths.CONNECTION
STATS_SETTINGS = schema_paths.CONNECTION_SETTINGS
FABRIC_NODES = schema_paths.FABRIC_NODE
ATTACHMENTS = schema_paths.ATTACHMENT
UNPLACED = schema_paths.UNPLACED
TOPOLOGY_SOURCES = schema_paths.TOPOLOGY_SOURCE
LLDP_NEIGHBORS = schema_paths.LLDP_NEIGHBOR
K8S_NODES = schema_paths.K8S_NODE
SERVICE_STATS = schema_paths.CONNECTION_SERVICE_STATS
CAPTURE_INTERFACES = schema_paths.CAPTURE + "/interface"
CAPTURE_ERSPAN = schema_paths.CAPTURE + "/erspan"
CAPTURE_INTERFACE_STATE = schema_paths.CAPTURE_INTERFACE_STATE
CAPTURE_ERSPAN_STATE = schema_paths.CAPTURE_ERSPAN_STATE
CAPTURE_SESSIONS = schema_paths.CAPTURE_ERSPAN_SESSION

# time filters (collectors/k8s/timefilters.py turns them into a window)
TIME_FILTERS = ("start-time", "end-time", "duration", "within-last", "older-than")
TIME_FILTER_HELP = {
    "start-time": "date/time: yyyy-mm-ddTHH:mm:ss  the start of the time window",
    "end-time": "date/time: yyyy-mm-ddTHH:mm:ss  the end of the time window",
    "duration": "duration: #d#h#m#s  the length of the time window",
    "within-last": "duration: #d#h#m#s  only entries within the last duration",
    "older-than": "duration: #d#h#m#s  only entries older than the duration",
}
# Netvisor output options accepted by every show command
OUTPUT_OPTIONS = {
    "format": "col1,col2,...|all  the columns to display",
    "parsable-delim": "character  separate columns by this character (no alignment)",
    "no-show-headers": "do not print the header row",
    "show-headers": "print the header row (default)",
    "sort-asc": "column  sort rows by this column, ascending",
    "sort-desc": "column  sort rows by this column, descending",
    "layout": "vertical|horizontal  one column per line, or the usual table",
}
OUTPUT_FLAGS = ("no-show-headers", "show-headers")


@dataclass(frozen=True)
class Column:
    """A show column (and the filter parameter of the same name).

    `kind` says how values are shown and compared: str, int, bool, list,
    bytes (octets, shown 1.5K), usec (latency), secs (age), time (RFC 3339
    date-and-time), proto (IP protocol number, shown tcp/udp/...), bps
    (bits per second, shown 10G), pct (a percentage, shown 3.25%).
    """

    name: str
    help: str
    kind: str = "str"
    default: bool = True


@dataclass(frozen=True)
class Option:
    """A parameter of a create/modify command.

    Booleans are Netvisor flag pairs (`enable|disable`,
    `create-vport|no-create-vport`): `name` sets the leaf true, `off` false.
    """

    name: str
    help: str
    kind: str = "str"  # str | int | bool
    off: str | None = None
    required: bool = False
    low: int | None = None
    high: int | None = None

    @property
    def words(self) -> tuple[str, ...]:
        """The words that name this option on the command line."""
        return (self.name, self.off) if self.off else (self.name,)


@dataclass(frozen=True)
class Table:
    """The YANG list (or container) a command reads or writes."""

    path: str
    keys: tuple[str, ...] = ()
    children: tuple[str, ...] = ()  # containers whose leaves join each row (e.g. state)
    since: str | None = None  # leaf with the time the entry appeared
    until: str | None = None  # leaf with the time it was last seen
    #: fabric-wide answers (`switch *`): the column naming the member that answered (added when rows lack it)
    member_column: str | None = "switch"
    #: replicated to every member (attachments): fabric-wide answers keep one copy of each row
    shared: bool = False


@dataclass(frozen=True)
class Command:
    """One CLI command."""

    name: str
    kind: str  # show | settings-show | create | modify | delete | settings-modify | history | builtin
    help: str
    table: Table | None = None
    columns: tuple[Column, ...] = ()
    options: tuple[Option, ...] = ()
    key: str | None = None  # the option naming the list entry (create/modify/delete)
    range_columns: tuple[str, ...] = ()  # history commands: default columns of a time-range answer

    @property
    def is_show(self) -> bool:
        """Commands that print rows and take filters and output options."""
        return self.kind in ("show", "settings-show", "history", "location")

    @property
    def takes_time_filters(self) -> bool:
        """Show commands over a list take the time filters."""
        return self.kind in ("show", "history")

    @property
    def takes_snapshot(self) -> bool:
        """Commands that answer for a past time with snapshot-time."""
        return self.kind in ("history", "location")

    def column(self, name: str) -> Column | None:
        """A column by name."""
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def option(self, word: str) -> Option | None:
        """The config option a word names (either word of a flag pair)."""
        for o in self.options:
            if word in o.words:
                return o
        return None

    @property
    def default_columns(self) -> list[str]:
        """Columns shown without `format`."""
        return [c.name for c in self.columns if c.default]


# -- columns -----------------------------------------------------------------------
_K8S_CONNECTION_COLUMNS = (
    Column("cluster-name", "the name of the Kubernetes cluster"),
    Column("kube-config", "kubeconfig file path on the owner node"),
    Column("enable", "whether the owner node watches the cluster", "bool"),
    Column("create-vport", "create a vPort for every pod IP", "bool"),
    Column("overlay-vxlan-analytics", "decode overlay traffic of this cluster", "bool"),
    Column("owner", "fabric node that runs the watchers"),
    Column("status", "disabled, connecting, connected, error or remote"),
    Column("api-server", "API server URL from the kubeconfig", default=False),
    Column("pod-count", "pods currently known", "int", default=False),
    Column("service-count", "services currently known", "int", default=False),
    Column("node-count", "Kubernetes nodes currently known", "int", default=False),
    Column("events", "watch events received", "int", default=False),
    Column("last-sync", "time of the last list or watch event", "time", default=False),
    Column("last-error", "last error seen (never credentials)", default=False),
)

_CNI_COLUMNS = (
    Column("cluster-name", "the name of the Kubernetes cluster"),
    Column("cni-plugin", "the CNI plugin name"),
    Column("backend", "the backend used by the CNI plugin"),
    Column("udp-port", "the VXLAN destination port", "int"),
    Column("vxlan", "the VXLAN ID (VNI)", "int"),
    Column("network-type", "the network type implemented by the CNI plugin"),
    Column("pod-network", "pod address ranges", "list", default=False),
    Column("source", "where the detection came from", default=False),
)

_VPORT_COLUMNS = (
    Column("owner", "switch that owns the Kubernetes connection"),
    Column("mac", "the pod address's MAC when a switch resolved it, else a dummy derived from the IP"),
    Column("vlan", "the VLAN of that MAC, else the dummy 4090", "int"),
    Column("ip", "pod IP address"),
    Column("svc-name", "the Kubernetes cluster name"),
    Column("hostname", "the Kubernetes node where the pod runs"),
    Column("entity", "the pod name"),
    Column("power", "the pod phase"),
    Column("portgroup", "the pod labels"),
    Column("status", "vPort status flags"),
    Column("switch", "switches the pod's node is plugged into", "list"),
    Column("port", "the node's switch ports, in the order of switch", "list"),
    Column("namespace", "Kubernetes namespace of the pod", default=False),
    Column("node-ip", "internal IP of the pod's node", default=False),
    Column("host-network", "the pod uses the node's network", "bool", default=False),
    Column("first-seen", "when the pod first held this IP", "time", default=False),
    Column("last-seen", "last time the pod changed or was confirmed", "time", default=False),
)

_CONNECTION_COLUMNS = (
    Column("switch", "switch that sampled the connection"),
    Column("vlan", "outer VLAN ID", "int"),
    Column("vxlan", "VNI of the overlay carrying the connection", "int", default=False),
    Column("src-ip", "source (client) address"),
    Column("dst-ip", "destination (server) address"),
    Column("src-port", "source port", "int", default=False),
    Column("dst-port", "destination port", "int"),
    Column("protocol", "IP protocol (tcp, udp, icmp or a number)", "proto", default=False),
    Column("cur-state", "connection state"),
    Column("latency", "SYN to SYN-ACK time", "usec"),
    Column("latency-source", "where the latency comes from: capture or sflow", default=False),
    Column("outcome", "completed, refused, no-response or reset, once known"),
    Column("age", "time since the connection was first seen", "secs"),
    Column("packets", "packets (scaled by the sampling rate)", "int", default=False),
    Column("bytes", "bytes (scaled by the sampling rate)", "bytes", default=False),
    Column("src-pod", "pod holding src-ip", default=False),
    Column("dst-pod", "pod holding dst-ip", default=False),
    Column("src-namespace", "namespace of src-pod", default=False),
    Column("dst-namespace", "namespace of dst-pod", default=False),
    Column("service", "service that was the destination", default=False),
    Column("cluster-name", "Kubernetes cluster of the pods", default=False),
    Column("encapsulation", "overlay encapsulation (none, vxlan, geneve, ipip)", default=False),
    Column("first-seen", "time of the first sample", "time", default=False),
    Column("last-seen", "time of the latest sample", "time", default=False),
    Column("ack-latency", "SYN-ACK to the client's ACK (when captured)", "usec", default=False),
    Column("syn-retransmits", "retransmitted SYNs seen by a capture", "int", default=False),
)

_SERVICE_STATS_COLUMNS = (
    Column("service", "Kubernetes service (namespace/name), else the destination address"),
    Column("port", "destination port", "int"),
    Column("new-per-second", "connections opened per second over the last minute"),
    Column("new-connections", "connections opened in the last minute", "int"),
    Column("completed", "handshakes completed in the last minute", "int"),
    Column("refused", "connections refused (RST answering the SYN)", "int"),
    Column("no-response", "SYNs never answered within no-response-timeout", "int"),
    Column("reset", "connections reset after the handshake", "int"),
    Column("failures", "refused + no-response + reset", "int", default=False),
    Column("latency-p50", "median SYN to SYN-ACK time", "usec"),
    Column("latency-p99", "99th percentile SYN to SYN-ACK time", "usec"),
    Column("latency-count", "latencies measured in the last minute", "int", default=False),
    Column("syn-retransmits", "retransmitted SYNs in the last minute", "int", default=False),
    Column("interval", "seconds the figures cover", "int", default=False),
)

_CAPTURE_INTERFACE_COLUMNS = (
    Column("name", "interface the switch mirrors control packets to"),
    Column("status", "capturing, error or disabled"),
    Column("source", "config or command-line", default=False),
    Column("received", "frames read", "int"),
    Column("kernel-drops", "frames the kernel dropped (ring full)", "int"),
    Column("filtered", "frames that were not TCP control packets", "int"),
    Column("malformed", "frames that could not be decoded", "int"),
    Column("events", "control packets handed to the connection table", "int"),
    Column("filter-instructions", "size of the kernel filter (BPF instructions)", "int", default=False),
    Column("last-seen", "time of the latest frame", "time", default=False),
    Column("error", "why the interface cannot be captured"),
)

_CAPTURE_ERSPAN_COLUMNS = (
    Column("status", "receiving, error or disabled"),
    Column("address", "local address the sessions are sent to"),
    Column("received", "GRE packets received", "int"),
    Column("events", "control packets handed to the connection table", "int"),
    Column("filtered", "mirrored frames that were not TCP control packets", "int"),
    Column("malformed", "packets that could not be decoded", "int"),
    Column("not-mirror", "GRE packets without a mirrored frame", "int"),
    Column("lost", "packets lost (sequence-number gaps)", "int"),
    Column("error", "why the receiver is not running"),
)

_CAPTURE_SESSION_COLUMNS = (
    Column("source", "the switch sending the session"),
    Column("session-id", "ERSPAN session id (GRE key for plain GRE)", "int"),
    Column("erspan-type", "1, 2, 3 (ERSPAN type) or 0 (plain GRE)", "int"),
    Column("packets", "packets received", "int"),
    Column("lost", "packets lost (sequence-number gaps)", "int"),
    Column("hardware-timestamps", "ERSPAN III hardware times in use", "bool"),
    Column("last-sequence", "latest GRE sequence number", "int", default=False),
    Column("last-seen", "time of the latest packet", "time"),
)

_SERVICE_COLUMNS = (
    Column("cluster-name", "the name of the Kubernetes cluster"),
    Column("namespace", "Kubernetes namespace of the service"),
    Column("name", "service name"),
    Column("type", "ClusterIP, NodePort, LoadBalancer or ExternalName"),
    Column("cluster-ips", "cluster virtual IPs", "list"),
    Column("external-ips", "external and load-balancer IPs", "list"),
    Column("node-ports", "node ports", "list", default=False),
    Column("ports", "service ports as port/protocol->target-port", "list"),
    Column("backend-count", "ready backends (service-backend-show lists them)", "int"),
)

_BACKEND_COLUMNS = (
    Column("cluster-name", "the name of the Kubernetes cluster"),
    Column("namespace", "Kubernetes namespace of the service"),
    Column("name", "service name"),
    Column("ip", "endpoint address (the pod IP)"),
    Column("port", "endpoint (target) port; 0 when the slice names none", "int"),
    Column("protocol", "TCP, UDP or SCTP", default=False),
    Column("port-name", "name of the service port", default=False),
    Column("pod", "pod behind the endpoint"),
    Column("node", "Kubernetes node of the endpoint"),
    Column("ready", "EndpointSlice condition ready", "bool"),
    Column("serving", "EndpointSlice condition serving", "bool"),
    Column("terminating", "EndpointSlice condition terminating", "bool"),
)
# a backend's own namespace leaf (its pod's) is the service's namespace: EndpointSlices name pods of their namespace
_BACKEND_KEYS = ("cluster-name", "namespace", "name", "ip", "port")

_SERVICE_HISTORY_COLUMNS = (
    Column("time", "when the change happened (range queries)", "time"),
    Column("change", "update or delete (range queries)"),
) + _SERVICE_COLUMNS

_BACKEND_HISTORY_COLUMNS = (
    Column("time", "when the change happened (range queries)", "time"),
    Column("change", "update or delete (range queries)"),
) + _BACKEND_COLUMNS

_NODE_COLUMNS = (
    Column("name", "fabric node name"),
    Column("state", "online or offline"),
    Column("address", "gNMI address of the node"),
    Column("role", "node role"),
    Column("last-seen", "last heartbeat", "time"),
)

_ATTACHMENT_COLUMNS = (
    Column("switch", "switch the node is plugged into"),
    Column("port", "switch port"),
    Column("node", "Kubernetes node"),
    Column("cluster-name", "Kubernetes cluster of the node"),
    Column("learned-by", "how it was learned (lldp, lldp-management-address, neighbor-fdb, sflow)", "list"),
    Column("mac", "the node's MAC on this link"),
    Column("vlan", "VLAN the MAC was learned on", "int"),
    Column("oper-status", "port operational state"),
    Column("speed", "port speed", "bps"),
    Column("in-utilization", "received share of the port speed (last sFlow counter interval)", "pct"),
    Column("out-utilization", "sent share of the port speed", "pct"),
    Column("in-discard-percent", "received packets discarded", "pct"),
    Column("out-discard-percent", "packets to send discarded", "pct"),
    Column("note", "anything doubtful (another node claiming the port)"),
    Column("ifindex", "the port's ifIndex", "int", default=False),
    Column("node-address", "the node address that matched", default=False),
    Column("in-errors", "receive errors in the last counter interval", "int", default=False),
    Column("out-errors", "transmit errors in the last counter interval", "int", default=False),
    Column("in-discards", "received packets discarded in the last counter interval", "int", default=False),
    Column("out-discards", "packets to send discarded in the last counter interval", "int", default=False),
    Column("counters-interval", "seconds the counter figures cover", "secs", default=False),
    Column("lldp-system-name", "LLDP neighbour's system name", default=False),
    Column("lldp-chassis-id", "LLDP neighbour's chassis id", default=False),
    Column("lldp-port-id", "LLDP neighbour's port id", default=False),
    Column("lldp-port-description", "LLDP neighbour's port description", default=False),
    Column("lldp-management-address", "LLDP neighbour's management addresses", "list", default=False),
    Column("first-seen", "when the switch first learned it", "time", default=False),
    Column("last-seen", "when the switch last confirmed it", "time", default=False),
)

_UNPLACED_COLUMNS = (
    Column("cluster-name", "Kubernetes cluster of the node"),
    Column("node", "Kubernetes node"),
    Column("address", "the node's InternalIP addresses", "list"),
    Column("reason", "why no switch could place it"),
)

_SOURCE_COLUMNS = (
    Column("name", "lldp, netlink or sflow"),
    Column("status", "up, unavailable or error"),
    Column("entries", "entries read in the last refresh", "int"),
    Column("last-update", "when the source last answered", "time"),
    Column("detail", "what it read, or why it cannot"),
)

_LLDP_COLUMNS = (
    Column("port", "local port"),
    Column("system-name", "neighbour's system name"),
    Column("chassis-id", "neighbour's chassis id"),
    Column("port-id", "neighbour's port id"),
    Column("port-description", "neighbour's port description", default=False),
    Column("management-address", "neighbour's management addresses", "list"),
    Column("node", "Kubernetes node it was matched to (cluster/node)"),
    Column("note", "why it matched no node"),
)

_K8S_NODE_COLUMNS = (
    Column("cluster-name", "the name of the Kubernetes cluster"),
    Column("name", "node name"),
    Column("internal-ip", "InternalIP addresses", "list"),
    Column("external-ip", "ExternalIP addresses", "list"),
    Column("hostname", "Hostname address, when it differs from the name"),
)

#: vport-location-show: a pod, its node, and the node's switch ports with their health (then or now)
_LOCATION_COLUMNS = (
    Column("ip", "pod IP address"),
    Column("entity", "the pod name"),
    Column("namespace", "Kubernetes namespace of the pod"),
    Column("svc-name", "the Kubernetes cluster name"),
    Column("hostname", "the Kubernetes node where the pod runs"),
    Column("switch", "switch the node is plugged into"),
    Column("port", "switch port"),
    Column("learned-by", "how the attachment was learned", "list"),
    Column("oper-status", "port operational state"),
    Column("speed", "port speed", "bps", default=False),
    Column("in-utilization", "received share of the port speed", "pct"),
    Column("out-utilization", "sent share of the port speed", "pct"),
    Column("in-discard-percent", "received packets discarded", "pct"),
    Column("out-discard-percent", "packets to send discarded", "pct"),
    Column("note", "why the node has no switch port (not placed)"),
)

_STATS_COLUMNS = (
    Column("enable", "track connections from sFlow samples", "bool"),
    Column("max-connections", "maximum connection table size", "int"),
    Column("idle-timeout", "seconds without a sample before a connection is removed", "int"),
    Column("no-response-timeout", "seconds a captured SYN may stay unanswered", "int"),
)

_HISTORY_COLUMNS = (
    Column("time", "when the change happened (range queries)", "time"),
    Column("change", "update or delete (range queries)"),
) + _VPORT_COLUMNS

_ATTACHMENT_HISTORY_COLUMNS = (
    Column("time", "when the change happened (range queries)", "time"),
    Column("change", "update or delete (range queries)"),
) + _ATTACHMENT_COLUMNS

# -- options -----------------------------------------------------------------------
_CLUSTER_NAME = Option("cluster-name", "cluster-name-string  the name of the Kubernetes cluster", required=True)
_K8S_FLAGS = (
    Option("enable", "enable or disable the connection", "bool", off="disable"),
    Option("create-vport", "create (or not) a vPort for every pod IP", "bool", off="no-create-vport"),
    Option("overlay-vxlan-analytics", "decode (or not) the cluster's overlay traffic", "bool",
           off="no-overlay-vxlan-analytics"),
)
_KUBE_CONFIG = "path  absolute path of the kubeconfig file on this node"

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("k8s-connection-create", "create", "create a Kubernetes connection (fabric scope, at most four)",
            Table(K8S_CONNECTIONS, ("cluster-name",)),
            options=(_CLUSTER_NAME, Option("kube-config", _KUBE_CONFIG, required=True)) + _K8S_FLAGS,
            key="cluster-name"),
    Command("k8s-connection-modify", "modify", "modify a Kubernetes connection",
            Table(K8S_CONNECTIONS, ("cluster-name",)),
            options=(Option("cluster-name", _CLUSTER_NAME.help), Option("kube-config", _KUBE_CONFIG)) + _K8S_FLAGS,
            key="cluster-name"),
    Command("k8s-connection-delete", "delete", "delete a Kubernetes connection",
            Table(K8S_CONNECTIONS, ("cluster-name",)), options=(_CLUSTER_NAME,), key="cluster-name"),
    Command("k8s-connection-show", "show", "display Kubernetes connections",
            Table(K8S_CONNECTIONS, ("cluster-name",), children=("state",), until="last-sync"),
            _K8S_CONNECTION_COLUMNS),
    Command("k8s-cni-show", "show", "display CNI information", Table(CNI, ("cluster-name",)), _CNI_COLUMNS),
    Command("vport-show", "show", "display the vPort table (where every pod is)",
            Table(VPORTS, ("ip",), since="first-seen", until="last-seen", member_column="owner"), _VPORT_COLUMNS),
    Command("vport-history-show", "history",
            "display the vPort table at a past time (snapshot-time) or its changes in a time window",
            Table(VPORTS, ("ip",), member_column="owner"), _HISTORY_COLUMNS),
    Command("vport-location-show", "location",
            "display where pods are plugged in: pod, node, switch port and the port's health (now or at "
            "snapshot-time)", Table(VPORTS, ("ip",), member_column="owner"), _LOCATION_COLUMNS),
    Command("attachment-show", "show", "display which switch port every Kubernetes node is plugged into",
            Table(ATTACHMENTS, ("switch", "port", "cluster-name", "node"), since="first-seen", until="last-seen",
                  member_column=None, shared=True), _ATTACHMENT_COLUMNS),
    Command("attachment-history-show", "history",
            "display the attachments at a past time (snapshot-time) or their changes in a time window",
            Table(ATTACHMENTS, ("switch", "port", "cluster-name", "node"), member_column=None, shared=True),
            _ATTACHMENT_HISTORY_COLUMNS,
            range_columns=("time", "change", "switch", "port", "node", "cluster-name", "learned-by",
                           "oper-status", "in-utilization", "in-discard-percent", "out-discard-percent")),
    Command("unplaced-node-show", "show", "display the Kubernetes nodes no switch could place, and why",
            Table(UNPLACED, ("cluster-name", "node"), member_column=None, shared=True), _UNPLACED_COLUMNS),
    Command("topology-source-show", "show", "display this switch's attachment sources and their health",
            Table(TOPOLOGY_SOURCES, ("name",)), _SOURCE_COLUMNS),
    Command("lldp-show", "show", "display the LLDP neighbours of this switch",
            Table(LLDP_NEIGHBORS, ("port", "chassis-id")), _LLDP_COLUMNS),
    Command("k8s-node-show", "show", "display the Kubernetes nodes of the clusters this switch watches",
            Table(K8S_NODES, ("cluster-name", "name")), _K8S_NODE_COLUMNS),
    Command("connection-show", "show", "display the connection table",
            Table(CONNECTIONS, ("vlan", "vxlan", "src-ip", "dst-ip", "src-port", "dst-port", "protocol"),
                  since="first-seen", until="last-seen"),
            _CONNECTION_COLUMNS),
    Command("service-show", "show", "display Kubernetes services with their virtual IPs and backends",
            Table(SERVICES, ("cluster-name", "namespace", "name")), _SERVICE_COLUMNS),
    Command("service-backend-show", "show", "display the backends (endpoints) of Kubernetes services",
            Table(SERVICE_BACKENDS, _BACKEND_KEYS), _BACKEND_COLUMNS),
    Command("service-history-show", "history",
            "display services at a past time (snapshot-time) or their changes in a time window",
            Table(SERVICES, ("cluster-name", "namespace", "name")), _SERVICE_HISTORY_COLUMNS),
    Command("service-backend-history-show", "history",
            "display service backends at a past time (snapshot-time) or their changes in a time window",
            Table(SERVICE_BACKENDS, _BACKEND_KEYS), _BACKEND_HISTORY_COLUMNS),
    Command("connection-stats-settings-modify", "settings-modify", "modify connection statistics settings",
            Table(STATS_SETTINGS),
            options=(Option("enable", "enable or disable connection statistics", "bool", off="disable"),
                     Option("max-connections", "1..10000000  maximum connection table size", "int",
                            low=1, high=10_000_000),
                     Option("idle-timeout", "1..86400  seconds without a sample before removal", "int",
                            low=1, high=86_400),
                     Option("no-response-timeout", "1..600  seconds a captured SYN may stay unanswered", "int",
                            low=1, high=600))),
    Command("connection-stats-settings-show", "settings-show", "display connection statistics settings",
            Table(STATS_SETTINGS), _STATS_COLUMNS),
    Command("connection-service-stats-show", "show",
            "display per service and port, over the last minute: new connections, failures, latency p50/p99",
            Table(SERVICE_STATS, ("service", "port")), _SERVICE_STATS_COLUMNS),
    Command("capture-interface-create", "create", "capture mirrored TCP control packets on an interface (node-local)",
            Table(CAPTURE_INTERFACES, ("name",)),
            options=(Option("name", "interface-name  the interface the switch mirrors to", required=True),
                     Option("enable", "enable or disable the capture", "bool", off="disable")),
            key="name"),
    Command("capture-interface-modify", "modify", "modify a capture interface",
            Table(CAPTURE_INTERFACES, ("name",)),
            options=(Option("name", "interface-name  the interface the switch mirrors to"),
                     Option("enable", "enable or disable the capture", "bool", off="disable")),
            key="name"),
    Command("capture-interface-delete", "delete", "stop capturing on an interface",
            Table(CAPTURE_INTERFACES, ("name",)),
            options=(Option("name", "interface-name  the interface the switch mirrors to", required=True),),
            key="name"),
    Command("capture-interface-show", "show", "display capture interfaces and their counters",
            Table(CAPTURE_INTERFACE_STATE, ("name",), until="last-seen"), _CAPTURE_INTERFACE_COLUMNS),
    Command("capture-erspan-modify", "settings-modify", "modify the ERSPAN/GRE receiver (node-local)",
            Table(CAPTURE_ERSPAN),
            options=(Option("enable", "enable or disable the receiver", "bool", off="disable"),
                     Option("address", "ip-address  local address the sessions are sent to"))),
    Command("capture-erspan-show", "settings-show", "display the ERSPAN/GRE receiver and its counters",
            Table(CAPTURE_ERSPAN_STATE), _CAPTURE_ERSPAN_COLUMNS),
    Command("capture-erspan-session-show", "show", "display ERSPAN/GRE mirror sessions",
            Table(CAPTURE_SESSIONS, ("source", "session-id"), until="last-seen"), _CAPTURE_SESSION_COLUMNS),
    Command("fabric-node-show", "show", "display the nodes of the fabric",
            Table(FABRIC_NODES, ("name",), until="last-seen", member_column=None, shared=True), _NODE_COLUMNS),
    Command("pager", "builtin", "pager on|off (accepted; output is never paged)"),
    Command("help", "builtin", "help [command]: list commands, or one command's parameters"),
    Command("exit", "builtin", "leave the shell"),
    Command("quit", "builtin", "leave the shell"),
)}

# parameters of vport-history-show besides the filters
SNAPSHOT_TIME = "snapshot-time"
SNAPSHOT_TIME_HELP = "date/time: yyyy-mm-ddTHH:mm:ss, or #d#h#m#s ago  the table as it was at that time"


def command_names() -> list[str]:
    """Every command name, sorted."""
    return sorted(COMMANDS)


@dataclass
class ParsedCommand:
    """A command line after parsing: what to do and how to print it."""

    command: Command
    filters: dict[str, object] = field(default_factory=dict)  # column -> value (show)
    times: dict[str, str] = field(default_factory=dict)  # time filters as given
    values: dict[str, object] = field(default_factory=dict)  # leaf -> value (create/modify)
    columns: list[str] | None = None  # `format`
    delim: str | None = None  # `parsable-delim`
    headers: bool = True
    sort: tuple[str, bool] | None = None  # (column, descending)
    vertical: bool | None = None  # `layout`; None: the command's usual layout
    snapshot: str | None = None  # vport-history-show snapshot-time
    args: list[str] = field(default_factory=list)  # builtin arguments
    switch: str | None = None  # `switch NAME|* COMMAND`: the fabric member(s) that answer
