# Alpha's tasks. `make test` installs what the tests need, then runs the whole suite.
PYTHON ?= python3
PYTEST_FLAGS ?= -q

.PHONY: all setup deps build test bench clean

all: build

# Python test tooling (pytest) — the only pip install the project ever does.
setup:
	@$(PYTHON) -c "import pytest" 2>/dev/null || $(PYTHON) -m pip install -q "pytest>=7" \
	  || $(PYTHON) -m pip install -q --break-system-packages "pytest>=7" \
	  || (apt-get update -qq && apt-get install -y -qq python3-pytest)

# System peers the tests talk to (Vulkan/lavapipe, spirv-tools, sqld, chromium, tmux).
# Installed only when we are root and they are missing; otherwise their tests skip with a reason
# (and fail under CI=true).
deps: setup
	@bash tools/install-test-deps.sh

# Compile the C kernels once (they are also built on first use).
build:
	@$(PYTHON) -m alpha doctor --build-only

test: deps build
	$(PYTHON) -m pytest $(PYTEST_FLAGS)

bench:
	$(PYTHON) -m alpha bench kernels

clean:
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
