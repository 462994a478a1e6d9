# Herd — `make help` lists the targets.

## Tool versions: the one place they are pinned.
K8S_VERSION  ?= 1.36.3# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (built from Go modules)
ETCD_VERSION ?= 3.6.16# etcd (built from Go modules)
HELM_VERSION ?= 4.2.4# helm v4 (built from Go modules)
KWOK_VERSION ?= 0.8.0# kwok (built from Go modules): fake nodes, so pods are scheduled and turn Ready
UV_VERSION   ?= 0.13.8# uv (from PyPI)
ACTIONLINT_VERSION ?= 1.7.12# actionlint (built from Go modules), for make lint
KIND_VERSION ?= 0.33.0# kind (built from Go modules), only for make up CLUSTER=kind

# make up runs the embedded control planes; CLUSTER=kind runs real pods in kind (needs Docker).
CLUSTER ?= embedded

# Cache outside the repo, keyed by version (as setup-envtest does); reused across clones.
TOOLS_DIR ?= $(HOME)/.cache/herd/tools
PLATFORM  := linux-amd64
ifeq ($(origin KUBEBUILDER_ASSETS),environment)
BUILD_K8S := false# envtest convention: the caller brings the control-plane binaries
else
BUILD_K8S := true
KUBEBUILDER_ASSETS := $(TOOLS_DIR)/k8s/$(K8S_VERSION)-$(PLATFORM)
endif
HERD_HELM ?= $(TOOLS_DIR)/helm/$(HELM_VERSION)-$(PLATFORM)/helm
ACTIONLINT ?= $(TOOLS_DIR)/actionlint/$(ACTIONLINT_VERSION)/actionlint
KIND ?= $(TOOLS_DIR)/kind/$(KIND_VERSION)/kind
UV        ?= $(TOOLS_DIR)/uv/$(UV_VERSION)/bin/uv
export KUBEBUILDER_ASSETS HERD_HELM
# The Python side (kwok, uv, helm lookups) reads the same cache as make.
export HERD_TOOLS_DIR := $(TOOLS_DIR)
export UV_PYTHON_DOWNLOADS := never
export PATH := $(KUBEBUILDER_ASSETS):$(dir $(HERD_HELM)):$(PATH)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec
.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: setup
setup: system-deps uv tools sync ## Install everything the tests and `make up` need (idempotent).

.PHONY: system-deps
system-deps: ## Debian packages the tests need: chromium for the browser test, python3-venv.
	@if ! command -v chromium >/dev/null || ! python3 -c 'import ensurepip' 2>/dev/null; then \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium python3-venv >/dev/null; \
	fi

.PHONY: sync
sync: uv ## Install the Python workspace from uv.lock into .venv.
	$(UV) sync --frozen

.PHONY: test
test: setup ## Run the whole test suite: tests/fast and the tests against real parts (control plane, moto, git).
	$(UV) run pytest $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: sync ## The in-process tests only (tests/fast/: no cluster, no moto server, no processes), in seconds.
	$(UV) run pytest tests/fast $(PYTEST_ARGS)

.PHONY: lint
lint: sync tools $(ACTIONLINT) ## ruff, mypy and the import contracts on every package, CRDs as their models say, helm lint of every chart, actionlint.
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports
	$(UV) run herd manifests --check
	@for chart in charts/*/; do \
	  [ -f $$chart/Chart.yaml ] || continue; \
	  $(HERD_HELM) lint --strict $$chart; \
	  for f in $$chart/ci/*-values.yaml; do [ -f $$f ] && $(HERD_HELM) lint --strict $$chart -f $$f; done; \
	done
	$(ACTIONLINT) -color .github/workflows/*.yml

.PHONY: manifests
manifests: sync ## Write the CRDs (charts/herd-operator/crds/) from their models in core/src/herd_core/models/.
	$(UV) run herd manifests

.PHONY: validate
validate: setup ## Render every app of dev and prod into .herd/rendered/ and validate it.
	$(UV) run herd validate

.PHONY: bootstrap
bootstrap: setup ## Hand the cluster KUBECONFIG reaches to git: CRDs, operator chart, root Application of ENV=dev|prod.
	@test -n "$(ENV)" || { echo "usage: make bootstrap ENV=dev|prod" >&2; exit 2; }
	$(UV) run herd bootstrap --env $(ENV)

.PHONY: cost
cost: sync ## Monthly cost estimate of ENV=dev|prod; SINCE=<git revision>: the change since it (needs helm: make tools).
	@test -n "$(ENV)" || { echo "usage: make cost ENV=dev|prod [SINCE=<git revision>]" >&2; exit 2; }
	@$(UV) run herd cost --env $(ENV) $(if $(SINCE),--since $(SINCE))

.PHONY: promote-check
promote-check: sync ## Exit 1 unless every dev Application is Synced and Healthy at dev's head (REPO=, DEV_KUBECONFIG=; default: make up's).
	@$(UV) run herd promote --check $(if $(REPO),--repo $(REPO)) $(if $(DEV_KUBECONFIG),--dev-kubeconfig $(DEV_KUBECONFIG))

.PHONY: fmt
fmt: sync ## Format and auto-fix with ruff.
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

##@ Local platform

.PHONY: up
up: setup ## Run the platform locally (CLUSTER=kind: in kind, needs Docker).
ifeq ($(CLUSTER),kind)
up: $(KIND)
	KIND=$(KIND) HELM=$(HERD_HELM) KUBECTL=$(KUBEBUILDER_ASSETS)/kubectl HERD="$(UV) run herd" hack/kind-up.sh
else
	$(UV) run herd up
endif

.PHONY: down
down: ## Stop everything `make up` started (CLUSTER=kind: delete the kind cluster).
ifeq ($(CLUSTER),kind)
	$(KIND) delete cluster --name herd
else
	@if [ -x $(UV) ]; then $(UV) run herd down; fi
endif

.PHONY: status
status: ## What runs locally and the Applications of both clusters (exit 1 if unhealthy).
	$(UV) run herd status

##@ Tools

.PHONY: tools
tools: ## Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm from Go modules.
	K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) HELM_VERSION=$(HELM_VERSION) KWOK_VERSION=$(KWOK_VERSION) \
	  TOOLS_DIR=$(TOOLS_DIR) BUILD_K8S=$(BUILD_K8S) hack/build-tools.sh

$(ACTIONLINT):
	GOBIN=$(dir $(ACTIONLINT)) GOTOOLCHAIN=local go install github.com/rhysd/actionlint/cmd/actionlint@v$(ACTIONLINT_VERSION)

$(KIND):
	GOBIN=$(dir $(KIND)) GOTOOLCHAIN=local go install sigs.k8s.io/kind@v$(KIND_VERSION)

.PHONY: uv
uv: $(UV) ## Install the pinned uv (from PyPI, into the tools cache).
$(UV): | system-deps
	python3 -m venv $(TOOLS_DIR)/uv/$(UV_VERSION)
	$(TOOLS_DIR)/uv/$(UV_VERSION)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
