"""Kubernetes connections: watchers, CNI detection, vPort table, services and the time machine.

The agent runs :class:`collectors.k8s.manager.K8sManager`; see docs/kubernetes.md.
"""
