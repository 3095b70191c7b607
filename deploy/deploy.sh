#!/usr/bin/env bash
# deploy.sh web|async|retire IMAGE RELEASE — the pipeline's deploy steps (Kubernetes).
# The image is always a digest (never a tag), the same one for every role.
set -euo pipefail
what=$1 image=$2 release=$3
here=$(dirname "$0")
echo "$KUBECONFIG_DATA" | base64 -d > kubeconfig && export KUBECONFIG=$PWD/kubeconfig
manifest() { sed "s|ghcr.io/offload/backoffice@sha256:IMAGE_DIGEST|$image|" "$here/k8s/offload.yaml"; }
case $what in
  web)
    kubectl create secret generic offload-release --from-literal=OFFLOAD_RELEASE="$release" \
      --dry-run=client -o yaml | kubectl apply -f -
    kubectl delete job offload-release --ignore-not-found
    manifest | kubectl apply -f - -l '!role'           # Service, release Job, autoscaler
    kubectl wait --for=condition=complete job/offload-release --timeout=600s
    manifest | kubectl apply -f - -l role=web
    kubectl rollout status deployment/offload-web --timeout=600s ;;
  async)
    manifest | kubectl apply -f - -l 'role in (async,async-bulk)'
    kubectl rollout status deployment/offload-async --timeout=900s
    kubectl rollout status deployment/offload-async-bulk --timeout=900s ;;
  retire)
    kubectl exec deployment/offload-web -- python manage.py offload retire --keep-release "$release" ;;
  *) echo "usage: deploy.sh web|async|retire IMAGE RELEASE" >&2; exit 2 ;;
esac
