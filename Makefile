# sdfleet — every target does its own set-up on a fresh Debian machine (root).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PY ?= python3
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv docker host-tools images fixture real-fixture wheels-lock flags lint unit molecule test demo demo-down bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.stamp: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["dev"]))' > $(VENV)/requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r $(VENV)/requirements.txt
	touch $@

venv: $(VENV)/.stamp ## Create .venv with the pinned toolchain (no-op when current)

docker: ## Install docker.io/debootstrap and start dockerd if needed
	scripts/ensure_docker.sh

# chromium: the fleet report's headless-browser test; nginx and fcgiwrap: the fleet mirror's server test
# (tests/fleet_mirror/test_mirror_nginx.py runs them as plain processes; no service is started).
HOST_TOOLS := chromium nginx fcgiwrap
host-tools: ## Install Debian's chromium, nginx and fcgiwrap (tests run them as plain processes)
	@missing=$$(for p in $(HOST_TOOLS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing" $$missing; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; fi

images: docker ## Build the local base images (cached by recipe)
	$(PY) scripts/build_images.py

fixture: venv ## Build the local mirror's content under build/fixture
	$(BIN)/python molecule/_shared/mirror/build_fixture.py --out build/fixture

real-fixture: venv ## Build the real upstream fixture under build/real-fixture (the locked wheels are cached in ~/.cache/sdfleet)
	@$(BIN)/python molecule/_shared/mirror/build_real_fixture.py --out build/real-fixture || [ $$? -eq 3 ]

wheels-lock: venv ## Resolve the real webui's wheel set on PyPI again (rewrites molecule/_shared/mirror/real-locks/)
	$(BIN)/python molecule/_shared/mirror/real_wheels.py lock

flags: venv ## Re-derive the webui flag lists from ../shared/upstream (plugins/module_utils/webui_flags.py)
	$(BIN)/python scripts/webui_flags.py --write

lint: venv ## yamllint + ansible-lint (production profile)
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint

unit: venv host-tools ## pytest: plugin unit tests, stand-in webui, mirror fixture; the READMEs' refused-input tables match
	$(BIN)/pytest -q
	$(BIN)/python scripts/refusal_table.py --check --min 200

molecule: venv images fixture real-fixture ## Every molecule scenario
	scripts/run_molecule.sh

# The images (debootstrap, disk) and the real fixture (its first run downloads 6.35 GB from PyPI) are
# built side by side: on a fresh machine that saves the shorter of the two, about 4-5 minutes.
test: venv fixture host-tools ## The whole suite: lint, pytest, every molecule scenario
	@$(MAKE) --no-print-directory -j2 images real-fixture
	@start=$$(date +%s); rc=0; mkdir -p build; \
	( $(MAKE) --no-print-directory lint; l=$$?; $(MAKE) --no-print-directory unit || exit 1; exit $$l ) >build/lint-unit.log 2>&1 & quick=$$!; \
	scripts/run_molecule.sh || rc=1; \
	echo "---- lint and pytest (run beside molecule; log build/lint-unit.log) ----"; \
	if wait $$quick; then tail -n 4 build/lint-unit.log; else rc=1; cat build/lint-unit.log; fi; \
	echo "make test: $$(( $$(date +%s) - start ))s, exit $$rc"; exit $$rc

demo: venv images fixture real-fixture ## Bring up the demo fleet (containers, a real-webui CPU box among them) and provision it with site.yml
	scripts/demo.sh up

demo-down: ## Remove the demo fleet's containers and network
	scripts/demo.sh down

bench: venv images fixture ## Benchmark: a simulated 500-host fleet, then the demo fleet (prints figures; not a test)
	$(BIN)/python scripts/bench_sim.py --hosts 500
	$(BIN)/python scripts/bench.py

clean: ## Remove build outputs (not the images)
	rm -rf build .pytest_cache
