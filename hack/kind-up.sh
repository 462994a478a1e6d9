#!/usr/bin/env bash
# `make up CLUSTER=kind`: Herd in a kind cluster, with real pods. Needs Docker (our CI
# machines have none, so CI does not run this; see clusters/kind/README.md).
#   KIND=path/to/kind HELM=path/to/helm KUBECTL=path/to/kubectl HERD="uv run herd" hack/kind-up.sh
set -euo pipefail
: "${KIND:?}" "${HELM:?}" "${KUBECTL:?}" "${HERD:?}"
name=herd
command -v docker >/dev/null || { echo "make up CLUSTER=kind needs Docker" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "Docker is installed but its engine does not answer" >&2; exit 1; }

if ! "$KIND" get clusters | grep -qx "$name"; then
  "$KIND" create cluster --name "$name" --config clusters/kind/kind-config.yaml --wait 120s
fi
kube=(--context "kind-$name")

docker build -f operator/Dockerfile -t herd/operator:local .
docker build -f api/Dockerfile -t herd/api:local .
"$KIND" load docker-image --name "$name" herd/operator:local herd/api:local

"$KUBECTL" "${kube[@]}" apply -f clusters/kind/moto.yaml
"$KUBECTL" "${kube[@]}" -n herd-system rollout status deploy/moto --timeout 180s

# The AWS side, inside moto (reached through the NodePort mapped to 127.0.0.1:5000).
ids=$(AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
      HERD_AWS_NAME_PREFIX=kind- $HERD aws bootstrap)
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <<<"$ids"; }
pool=$(field user_pool_id); queue=$(field email_queue_url); admin=$(field admin_client_id)
shared=$(field shared_client_id)  # herd-tenants: the app client of Tenants without callbacks
queue=${queue/127.0.0.1:5000/moto.herd-system:5000}
thumbs=$(field thumbnail_queue_url); thumbs=${thumbs/127.0.0.1:5000/moto.herd-system:5000}
raw=$(field logo_raw_bucket); logos=$(field logo_bucket)

"$KUBECTL" "${kube[@]}" apply -f charts/herd-operator/crds/   # helm never upgrades crds/
common=(--namespace herd-system --create-namespace --wait --timeout 5m)
"$HELM" "${kube[@]/--context/--kube-context}" upgrade --install herd-operator charts/herd-operator "${common[@]}" \
  -f clusters/kind/values/herd-operator.yaml \
  --set config.cognitoUserPoolId="$pool" --set config.emailQueueUrl="$queue" \
  --set config.cognitoSharedClientId="$shared"
# The key that signs the signup verification links: made once, kept across runs.
if ! "$KUBECTL" "${kube[@]}" -n herd-system get secret herd-signup-token >/dev/null 2>&1; then
  "$KUBECTL" "${kube[@]}" -n herd-system create secret generic herd-signup-token \
    --from-literal=key="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
fi
"$HELM" "${kube[@]/--context/--kube-context}" upgrade --install herd-api charts/herd-api "${common[@]}" \
  -f clusters/kind/values/herd-api.yaml \
  --set config.cognitoUserPoolId="$pool" --set config.adminClientId="$admin" \
  --set config.logoRawBucket="$raw" --set config.emailQueueUrl="$queue"
"$HELM" "${kube[@]/--context/--kube-context}" upgrade --install herd-workers charts/herd-workers "${common[@]}" \
  -f clusters/kind/values/herd-workers.yaml --set config.emailQueueUrl="$queue" \
  --set thumbnails.queueUrl="$thumbs" --set thumbnails.rawBucket="$raw" \
  --set thumbnails.bucket="$logos"
"$KUBECTL" "${kube[@]}" apply -f apps/platform/

echo
echo "Herd runs in kind (context kind-$name):"
echo "  kubectl --context kind-$name get pods -n herd-system"
echo "  kubectl --context kind-$name -n herd-system patch svc herd-api -p '{\"spec\":{\"ports\":[{\"port\":80,\"nodePort\":30080}]}}'"
echo "  then sign up at http://127.0.0.1:8000/"
