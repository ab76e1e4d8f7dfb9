#!/usr/bin/env bash
# Print a kubeconfig that authenticates as the kubefabric-reader ServiceAccount (bearer token + cluster CA).
#
#   ./make-kubeconfig.sh [cluster-name] [api-server-url] > kubefabric.kubeconfig
#   scp kubefabric.kubeconfig admin@leaf1:/etc/kubefabric/k8s01.kubeconfig     # mode 0600 on the switch
#   kubefabric CLI: k8s-connection-create cluster-name k8s01 kube-config /etc/kubefabric/k8s01.kubeconfig enable create-vport
#
# Needs kubectl with admin rights on the cluster and rbac.yaml applied.  The token only reads (see rbac.yaml).
set -euo pipefail
NAME="${1:-$(kubectl config view --minify -o jsonpath='{.clusters[0].name}')}"
SERVER="${2:-$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')}"
NS=kubefabric
SECRET=kubefabric-reader-token

for _ in $(seq 1 30); do   # the token controller fills the Secret asynchronously
  TOKEN="$(kubectl -n "$NS" get secret "$SECRET" -o jsonpath='{.data.token}' 2>/dev/null | base64 -d || true)"
  [ -n "$TOKEN" ] && break
  sleep 1
done
[ -n "${TOKEN:-}" ] || { echo "no token in secret $NS/$SECRET; is rbac.yaml applied?" >&2; exit 1; }
CA="$(kubectl -n "$NS" get secret "$SECRET" -o jsonpath='{.data.ca\.crt}')"

cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: ${NAME}
    cluster:
      server: ${SERVER}
      certificate-authority-data: ${CA}
users:
  - name: kubefabric-reader@${NAME}
    user:
      token: ${TOKEN}
contexts:
  - name: kubefabric@${NAME}
    context:
      cluster: ${NAME}
      user: kubefabric-reader@${NAME}
current-context: kubefabric@${NAME}
KUBECONFIG
