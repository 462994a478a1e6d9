#!/usr/bin/env bash
# What a change to the charts (herd-lib above all: it changes three charts at once) does to
# what the environments install: renders every chart of apps/ for dev and prod, as their
# Applications do, at REV and in the working tree, and prints a unified diff (empty: none).
#   HELM=path/to/helm hack/chart-diff.sh [REV]      (REV: default HEAD)
set -euo pipefail
: "${HELM:?}"
rev=${1:-HEAD}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/base" "$tmp/out/before" "$tmp/out/after"
git archive "$rev" apps charts clusters | tar -x -C "$tmp/base"  # keeps the herd-lib links

render() {  # render <tree> <out>
  for values in "$1"/apps/*/values.yaml; do
    app=$(basename "$(dirname "$values")")
    [ -f "$1/charts/$app/Chart.yaml" ] || continue
    for env in dev prod; do
      "$HELM" template "$app" "$1/charts/$app" --namespace herd-system --include-crds \
        -f "$values" -f "$1/clusters/$env/values/$app.yaml" >"$2/$app-$env.yaml" 2>/dev/null
    done
  done
}
render "$tmp/base" "$tmp/out/before"
render . "$tmp/out/after"
cd "$tmp/out" && diff -ru before after || true
