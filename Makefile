# berth: set-up, demo and tests. Run as root on Debian/Ubuntu.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SOCK   := /run/berth/berth.sock
PIDFILE := /run/berth/berthd.pid
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: deps venv demo lint test unit bench bench-build stop clean install-systemd completion

deps:
	@command -v busybox >/dev/null 2>&1 && [ -x /bin/busybox ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static)
	@command -v ps >/dev/null 2>&1 || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq procps)
	@$(PYTHON) -c 'import venv' 2>/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv)

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: deps $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	$(PY) -m compileall -q berth   # bytecode up front: start-up time matters even where PYTHONDONTWRITEBYTECODE is set
	$(PY) -m berth.runtime.nsexec  # docker exec's C helper (without a C compiler: the Python path)

# Start berthd (left running), make the busybox base image, run a container in it.
demo: venv
	@if ! $(VENV)/bin/berth version >/dev/null 2>&1; then \
	    mkdir -p /var/log; \
	    nohup $(VENV)/bin/berthd --pidfile $(PIDFILE) >/var/log/berthd.log 2>&1 & \
	    for i in $$(seq 100); do [ -S $(SOCK) ] && break; sleep 0.05; done; \
	fi
	@$(VENV)/bin/berth image inspect busybox >/dev/null 2>&1 || scripts/busybox-image.sh busybox:latest
	$(VENV)/bin/berth run --rm busybox echo "hello from a berth container"
	@echo
	@echo "berthd is running (log: /var/log/berthd.log). Try:"
	@echo "  $(CURDIR)/$(VENV)/bin/berth run --rm busybox uname -a"
	@echo "  DOCKER_HOST=unix://$(SOCK) docker run --rm busybox echo hello"
	@echo "Stop it with: make stop"

stop:
	@if [ -f $(PIDFILE) ]; then kill -TERM $$(cat $(PIDFILE)) && echo "berthd stopped (containers keep running)"; else echo "berthd is not running"; fi

# Type check and lint (configuration and the choice of rules: pyproject.toml). CI runs it first.
lint: venv
	$(VENV)/bin/ruff check berth tests
	$(VENV)/bin/mypy

test: venv
	$(PY) -m pytest -q --run-root tests

unit: venv
	$(PY) -m pytest -q tests/unit

bench: venv
	$(PY) bench/engine.py

bench-build: venv
	$(PY) bench/build/run.py

# Puts berth on a systemd host (after `pip install .`, which makes $(PREFIX)/bin/berthd and berth):
# the units (socket-activated), a default /etc/berth/daemon.json (kept if present) and the shell
# completions. DESTDIR installs under another root (packaging, tests); then run, as root:
#   systemctl daemon-reload && systemctl enable --now berth.socket berth.service
PREFIX  ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system
install-systemd:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/berth
	sed 's|@BERTHD@|$(PREFIX)/bin/berthd|' contrib/systemd/berth.service >$(DESTDIR)$(UNITDIR)/berth.service
	install -m 0644 contrib/systemd/berth.socket $(DESTDIR)$(UNITDIR)/berth.socket
	[ -e $(DESTDIR)/etc/berth/daemon.json ] || install -m 0644 contrib/daemon.json $(DESTDIR)/etc/berth/daemon.json
	install -D -m 0644 contrib/completion/bash/berth $(DESTDIR)$(PREFIX)/share/bash-completion/completions/berth
	install -D -m 0644 contrib/completion/zsh/_berth $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_berth
	install -D -m 0644 contrib/completion/fish/berth.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/berth.fish

# Regenerates contrib/completion/ from the CLI's own flag specs (tests/unit/cli/test_completion.py
# fails when they are stale).
completion:
	$(PY) -m berth.cli.completion write contrib/completion

clean:
	rm -rf $(VENV) *.egg-info
