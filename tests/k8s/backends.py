"""Service backends as tests compare them: "ns/pod@ip" of the ready k8s/service/backend entries of a service."""
from core import schema_paths

BACKEND = schema_paths.K8S_SERVICE_BACKEND


def ready_backends(ds, cluster: str, namespace: str, name: str) -> list[str]:
    """Sorted "ns/pod@ip" of a service's ready backends, from the datastore's backend list."""
    return sorted(f"{row.get('namespace')}/{row.get('pod', '-')}@{key[3]}"
                  for key, row in ds.state.entries(BACKEND).items()
                  if key[:3] == (cluster, namespace, name) and row.get("ready"))


def backend_ids(ds, cluster: str, namespace: str, name: str) -> list[str]:
    """Sorted "ip/port" member ids (as the time machine records them) of a service's backends."""
    return sorted(f"{key[3]}/{key[4]}" for key in ds.state.entries(BACKEND) if key[:3] == (cluster, namespace, name))
