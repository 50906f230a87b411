# Everything a fresh clone needs is installed by these targets: nothing by hand.
PYTHON ?= python3
VENV   ?= .venv
SAMENV ?= .venv-sam
BIN     = $(VENV)/bin

.PHONY: demo test lint bench bench-paypal bench-slack bench-webhook clean sam-local

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "billing-monitor needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# aws-sam-cli pins its own boto3, so it lives in a venv of its own.
$(SAMENV)/bin/sam:
	$(PYTHON) -m venv $(SAMENV)
	$(SAMENV)/bin/pip install -q --disable-pip-version-check 'aws-sam-cli>=1.140'

demo: $(BIN)/.installed
	$(BIN)/billing-monitor demo

# The whole suite on the embedded PostgreSQL, then the database tests again on PostgreSQL 15
# (Supabase's version) when the machine has its server binaries.
lint: $(BIN)/.installed
	$(BIN)/ruff check .

test: lint $(SAMENV)/bin/sam
	SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAMENV)/bin:$$PATH" $(BIN)/pytest -q
	scripts/with-postgres15 $(BIN)/pytest -q -m integration -p no:cacheprovider

# Both functions in Lambda's container (sam local invoke) against a local PostgreSQL, moto, and the fake
# Slack and PayPal; installs and starts Docker when missing (root). scripts/sam_local.py says what it checks.
sam-local: $(BIN)/.installed $(SAMENV)/bin/sam
	scripts/ensure-docker
	SAMENV=$(SAMENV) timeout 1800 $(BIN)/python scripts/sam_local.py

bench: $(BIN)/.installed
	$(BIN)/python bench/scan_bench.py

# Reconciliation with PayPal: 20,000 watched ids against the stand-in answering each call in 100 ms (~10 minutes).
bench-paypal: $(BIN)/.installed
	$(BIN)/python bench/paypal_bench.py

# A Slack click answered by a cold Slack function (fresh process): init, cold and warm click times.
bench-slack: $(BIN)/.installed
	$(BIN)/python bench/slack_click_bench.py

bench-webhook: $(BIN)/.installed
	$(BIN)/python bench/paypal_webhook_bench.py --contacts 400000

clean:
	rm -rf $(VENV) $(SAMENV) .aws-sam .pytest_cache .hypothesis
