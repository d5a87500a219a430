# The two commands a new user needs: `make run` and `make test`. Everything else is what they call.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
export __SAM_CLI_APP_DIR := $(CURDIR)/.aws-sam/app-dir

# The Lambda runtime is python3.13; so are the tests and `sam build`, which wants `python3.13` on PATH.
PYTHON313 ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do \
	  $$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { echo $$p; break; }; done)

.PHONY: run test test-unit venv system-deps lint build validate deploy-check bench bench-smoke clean

$(VENV)/.installed: requirements-dev.txt requirements-checkov.txt functions/token/requirements.txt functions/site_deployer/requirements.txt clients/python/requirements.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is needed (the Lambda runtime). Install it (pyenv install 3.13) and retry."; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -e clients/python
	# checkov pins an older boto3 than ours: it gets a venv of its own.
	$(PYTHON313) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

venv: $(VENV)/.installed

# Chromium, espeak-ng and sox come from Debian; the browser tests and the fake microphone need them.
system-deps:
	@missing=""; for c in chromium:chromium espeak-ng:espeak-ng sox:sox; do \
	  command -v $${c%%:*} >/dev/null || missing="$$missing $${c##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Stack parameters, as for `sam deploy --parameter-overrides`: make run PARAMETER_OVERRIDES="MaxCallSeconds=20 DailyCallMinutes=2"
export PARAMETER_OVERRIDES
run: venv
	$(PY) -m local

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/cfn-lint template.yaml
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/sam validate --lint --template template.yaml

build: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/sam build --template template.yaml --build-dir .aws-sam/build

# The deploy rehearsed offline: the build packaged into moto and created as a stack on a new account (deploy/).
# Your own parameters as one more case: make deploy-check PARAMETER_OVERRIDES="DefaultVoice=cedar"
deploy-check: build
	PYTHONPATH=functions/token $(PY) -m deploy .aws-sam/build/template.yaml $(PARAMETER_OVERRIDES)

# Three tiers: unit (no processes, no network), integration (moto, the OpenAI stand-in, the local system) and
# browser (the page in Chromium). `make test` runs them all; `make test-unit` only the first. The integration tier
# spends much of its time waiting for calls' time limits, so it runs in two worker processes (a test file, and the
# whole security suite, stay in one worker: tests/integration/conftest.py); the browser tier measures setup
# latency, so it runs alone.
test: venv system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)
	$(MAKE) deploy-check PARAMETER_OVERRIDES=
	$(PY) -m pytest tests/integration -n 2 --dist loadgroup $(PYTEST_ARGS)
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Benchmarks measure and write docs/benchmarks.md; the smoke run only proves that every part of them still works.
bench: venv system-deps
	$(PY) -m bench

bench-smoke: venv
	$(PY) -m pytest tests/bench $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache test-artifacts
