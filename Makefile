# nbdboot: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
NASM ?= nasm
PYTEST_ARGS ?=

.PHONY: all deps install demo test bench firmware clean

all: install

deps:
	scripts/install-deps

install: deps

test: deps
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: deps
	$(PYTHON) -m bench $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis *.egg-info

# Boot images built from Debian packages and our NASM sources (ladder, conformance, bench).
-include bootimages/images.mk
