# nbdboot: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
NASM ?= nasm
PYTEST_ARGS ?=

.PHONY: all deps install demo test test-corpus bench firmware clean unicorn-fast

all: install

deps:
	scripts/install-deps

install: deps

# The corpus cases that take minutes even under QEMU (Linux, the Debian installer) are left to test-corpus.
test: deps
	$(PYTHON) -m pytest -m "not corpus_long" $(PYTEST_ARGS)

test-corpus: deps
	$(PYTHON) -m pytest -m corpus_long $(PYTEST_ARGS)

bench: deps
	$(PYTHON) -m bench $(BENCH_ARGS)

# Opt-in, not used by `make test` or CI: Unicorn 2.1.4 built from its PyPI source with the store fast
# path restored (docs/perf.md). Takes about a minute per core; use with LIBUNICORN_PATH=build/unicorn-fast.
unicorn-fast:
	PYTHON=$(PYTHON) scripts/build-unicorn-fast build/unicorn-fast

clean:
	rm -rf build .pytest_cache .hypothesis *.egg-info

# Boot images built from Debian packages and our NASM sources (ladder, conformance, bench).
-include bootimages/images.mk

# The BIOS ROM (committed, so running needs no nasm) and the demo image.
firmware: firmware/bios.bin
firmware/bios.bin: firmware/bios.asm firmware/vgafont8.bin firmware/vgafont14.bin firmware/vgafont16.bin
	$(NASM) -f bin -i firmware/ -o $@ $<

bootimages/demo.img: bootimages/demo-mbr.asm bootimages/demo-stage2.asm
	mkdir -p build
	$(NASM) -f bin -o build/demo-stage2.bin bootimages/demo-stage2.asm
	$(NASM) -f bin -i build/ -o $@ bootimages/demo-mbr.asm

# Boots the committed demo image through the embedded NBD server. Needs pip packages only: when the
# runtime (unicorn, capstone) is missing, this checkout is pip-installed first (editable, which also gives
# the `nbdboot` command). The image is booted under an overlay so that the committed file is never written.
demo:
	@$(PYTHON) -c 'import unicorn, capstone' 2>/dev/null || \
	  $(PYTHON) -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e .
	@mkdir -p build
	$(PYTHON) -m nbdboot run --image bootimages/demo.img --overlay build/demo.overlay --expect "demo complete" --timeout 30s --headless
	@rm -f build/demo.overlay build/demo.overlay.*
