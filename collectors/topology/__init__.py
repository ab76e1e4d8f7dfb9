"""Where every Kubernetes node is plugged into the fabric: attachments learned from LLDP, netlink and sFlow.

The agent runs :class:`collectors.topology.producer.TopologyProducer`; see docs/topology.md.
"""
