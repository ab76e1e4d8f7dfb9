"""Control-packet capture beside sFlow: every TCP SYN, FIN and RST the switch copies to the agent.

    frames.py     a mirrored frame -> the TCP control packet inside (plain, VXLAN, Geneve, IP-in-IP)
    bpf.py        the kernel filter expression built from the tunnel ports (compiled by libpcap)
    erspan.py     GRE / ERSPAN type I, II, III headers -> where the mirrored frame starts
    sessions.py   per mirror session: sequence-number loss, the type III hardware clock
    interface.py  one capture interface (libpcap through pcapy-ng: TPACKET_V3 ring, kernel timestamps)
    receiver.py   the ERSPAN/GRE receiver (a raw socket for IP protocol 47)
    source.py     CaptureSource: the component that follows config and feeds a ControlSink

The decoders know nothing of the tracker; the source hands
``core.ports.flows.ControlPacket`` batches to a ``ControlSink`` that
``agent.runtime`` wires (the connection table).
"""
