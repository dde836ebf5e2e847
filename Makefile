# Two commands set everything up on a fresh machine with Python 3.11 and make:
#   make demo   FastCover on the embedded SNAP ego-Facebook network and a generated graph
#   make test   ruff + the whole test suite (notebooks included)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is installed first, pinned to 2.13.0. A pinned version does not choose CPU or CUDA: pip
# takes the build its configured sources offer (PyPI's Linux wheels are CUDA builds, several GB).
# For the CPU-only build pass PyTorch's CPU wheel index (see README, "Install"):
#   make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH  := torch==2.13.0
TORCH_INDEX_URL ?=
TORCH_ARGS := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),)

.PHONY: demo test lint bench clean install install-dev

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_ARGS) $(TORCH)
	touch $@

$(VENV)/.installed: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e ".[dev,dgl,export,fl,vfl]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	@echo "== 1. Embedded SNAP ego-Facebook (4,039 people), d=2, k=1,3,10 (one read): a small"
	@echo "==    graph, where exact greedy is cheap and FastCover has nothing to win."
	$(VENV)/bin/graphrec fastcover -k 1,3,10 -d 2 --compare --quiet
	@echo "== 2. What FastCover is for: a generated 200,000-node power-law graph at d=3, where"
	@echo "==    greedy must build the d-closure. The default (the largest ball found from sampled"
	@echo "==    reverse balls, then exact greedy on the reverse balls of the nodes it leaves"
	@echo "==    uncovered, no closure) matches greedy's coverage many times faster."
	$(VENV)/bin/graphrec fastcover --powerlaw 200000 -k 10,30 -d 3 --compare --quiet

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check graphrec combinatorial tests benchmarks

test: lint
	$(PY) -m pytest -q --nbmake tests notebooks

# Heavy (tens of minutes each on 2 cores); each script resumes finished cells when re-run.
bench: $(VENV)/.installed-dev
	$(PY) benchmarks/io.py
	$(PY) benchmarks/fastcover.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/cf.py --dataset ml-100k --budget 60
	OMP_NUM_THREADS=1 $(PY) benchmarks/ctr.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/ctr_ops.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/fl.py --part fedsubavg
	OMP_NUM_THREADS=1 $(PY) benchmarks/fl.py --part ode
	OMP_NUM_THREADS=1 $(PY) benchmarks/fl.py --part throughput
	OMP_NUM_THREADS=1 $(PY) benchmarks/export.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
