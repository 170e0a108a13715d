# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
export MODELPORT_HOME ?= $(CURDIR)/.modelport

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e '.[torch,sklearn,serve]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[torch,sklearn,postgres,compress,serve,serve-test,tfserving,deploy-test,openvino,nncf,litert,keras,tflite,batch,rollouts,monitoring,edge,llm,genai,llm-test,tracing,explain,ui,ui-test,test,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/registry.py
	$(BIN)/python benchmarks/serving.py
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python benchmarks/runtimes.py

clean:
	rm -rf $(VENV) .modelport .pytest_cache
