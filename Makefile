# Every target sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELHOUSE := .wheelhouse
LAMBDA_PLATFORM := --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 --only-binary=:all:

.PHONY: install demo serve test lint synth bench clean
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

install: $(STAMP)

$(STAMP): pyproject.toml functions/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The Lambda pins constrain the dev install too, so tests run the versions Lambda gets.
	$(BIN)/pip install --quiet -e '.[dev]' -c functions/requirements.txt
	@# Wheels for the Lambda layer, for Lambda's platform, so `make synth` packages
	@# them offline and without Docker.
	rm -rf $(WHEELHOUSE)
	$(BIN)/pip download --quiet --no-deps --dest $(WHEELHOUSE) $(LAMBDA_PLATFORM) -r functions/requirements.txt
	touch $(STAMP)

demo: install
	$(BIN)/dmp demo

serve: install
	$(BIN)/dmp serve

test: install browser-deps iab-deps scan-deps
	$(BIN)/pytest

# The official IAB consent libraries (pinned in its package-lock.json) for
# tests/reference/test_consent_matches_iab.py, which fails (not skips) without them.
IAB_REFERENCE := tests/reference/iab
.PHONY: iab-deps
iab-deps: $(IAB_REFERENCE)/node_modules

$(IAB_REFERENCE)/node_modules: $(IAB_REFERENCE)/package-lock.json
	cd $(IAB_REFERENCE) && npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium for tests/browser, which fail (not skip) without it. Needs root.
.PHONY: browser-deps
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# checkov and cfn-lint (infra/scanners.py) for `make lint` and tests/infra/test_cdk_scanners.py,
# which fails (not skips) without them. Their own venv: checkov pins boto3 and many more, which
# must not move the project's pins (functions/requirements.txt). From PyPI, as `make install`.
SCAN_VENV := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed
.PHONY: scan-deps
scan-deps: $(SCAN_STAMP)

$(SCAN_STAMP): infra/scanners.txt
	rm -rf $(SCAN_VENV)
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet -r infra/scanners.txt
	touch $@

# cdk-nag's AwsSolutions and Serverless packs run inside synth and fail it on a finding;
# checkov and cfn-lint then read the synthesised template.
lint: install scan-deps synth
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy functions dmp infra
	$(BIN)/python -m infra.scanners cdk.out

synth: install
	$(BIN)/python -m infra.app

bench: install
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) $(SCAN_VENV) $(WHEELHOUSE) cdk.out .dmp .bench
