# kubefabric: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Optional compiled sFlow decoder (mypyc); a failed build leaves the pure-Python decoder in use.
FASTPATH := collectors/sflow/_fast/.build-attempt
FASTPATH_SOURCES := $(addprefix collectors/sflow/,packet.py packet_types.py records.py decoder.py producer.py) \
	core/ports/flows.py scripts/build_sflow_fastpath.py
PYTEST_ARGS ?=

.PHONY: venv demo test yang-tree bench clean

## venv: create .venv and install the project, its test tools and the Debian tools (idempotent)
venv: $(STAMP) $(FASTPATH)

$(STAMP): pyproject.toml scripts/install-system-deps.sh scripts/install-browser.sh
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	PYTHON=$(BIN)/python bash scripts/install-browser.sh
	touch $(STAMP)

$(FASTPATH): $(STAMP) $(FASTPATH_SOURCES)
	$(BIN)/python -m pip install -q 'mypy>=2.4,<3' && $(BIN)/python scripts/build_sflow_fastpath.py \
	  || echo "make venv: compiled sFlow decoder not built; the pure-Python decoder will be used"
	touch $@

## demo: run the demo (agent on loopback with a generated admin password)
demo: venv
	$(BIN)/kubefabric demo

## test: run the whole suite (YANG lint, protocols, collectors, fabric)
test: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## yang-tree: write the YANG trees into docs/
yang-tree: venv
	@mkdir -p docs/yang
	@for f in core/yang/kubefabric-*.yang; do \
	  m=$$(basename $$f .yang); m=$${m%@*}; \
	  $(BIN)/pyang -f tree -p core/yang/ietf $$f > docs/yang/$$m.tree.txt && echo "docs/yang/$$m.tree.txt"; \
	done

## bench: run every benchmark (prints figures)
bench: venv
	@status=0; for b in benchmarks/*.py; do case $$b in */fuzz_*) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || status=1; done; exit $$status

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	rm -f collectors/sflow/_fast/*.so collectors/sflow/_fast/SOURCES.sha256 $(FASTPATH)
