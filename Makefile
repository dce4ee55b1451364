# ctapkit — the two commands a newcomer needs are `make demo` and `make test`.
# System packages are installed when missing and we run as root (apt-get); otherwise
# the missing ones are named.

GO        ?= go
BIN       := bin/ctapkit
PKGS      := ./...
FUZZTIME  ?= 30s
# Debian packages the build and tests use: openssl verifies our signatures from
# outside; python-fido2 (with pyscard for PC/SC) is an independent CTAP2
# implementation that checks our responses; libpcsclite-dev builds the PC/SC
# transport (cgo); pcscd and vsmartcard-vpcd give the tests a virtual reader;
# qemu, busybox, kmod and xz boot the small VM whose kernel has uhid for the USB
# tests, where libfido2's fido2-tools are the independent host.
SYSTEM_PACKAGES := openssl python3 python3-fido2 python3-pyscard libpcsclite-dev pcscd vsmartcard-vpcd pkg-config qemu-system-x86 busybox-static cpio kmod xz-utils fido2-tools

.PHONY: all build demo demo-rp test deps vet lint fuzz bench cross clean

all: build

# Without libpcsclite (not root, package missing) ctapkit builds without PC/SC;
# checked after deps has had its chance to install it.
build: deps
	@tags=""; if ! pkg-config --exists libpcsclite 2>/dev/null; then tags=nopcsc; \
	  echo "note: libpcsclite-dev missing: building without PC/SC support (-tags nopcsc)"; fi; \
	  echo "$(GO) build -tags '$$tags' -o $(BIN) ./cmd/ctapkit"; $(GO) build -tags "$$tags" -o $(BIN) ./cmd/ctapkit

deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "warning: missing system packages:$$missing (run as root or install them)"; \
	  fi; \
	fi

demo: build
	@./scripts/demo.sh $(BIN)

# The example relying party (go-webauthn) driven by `ctapkit webauthn create|get`.
demo-rp: build
	$(GO) build -o bin/webauthn-rp ./examples/webauthn-rp
	@./scripts/demo-rp.sh $(BIN) bin/webauthn-rp

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: deps vet cross
	$(GO) test -count=1 -timeout 10m $(PKGS)
	@if [ -x ../shared/checks/contract.sh ]; then ../shared/checks/contract.sh; fi

# staticcheck from the module proxy, pinned so results do not drift.
lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./softkey/ ./softkey/store/ ./softkey/expose/ ./transport/ctaphid/ ./transport/pcsc/ ./transport/udp/

# Builds without cgo for macOS, Windows and Linux: USB HID must compile everywhere
# (hidraw is pure Go; karalabe/hid needs cgo, so these builds get its stub).
cross:
	GOOS=darwin CGO_ENABLED=0 $(GO) build -tags nopcsc ./...
	GOOS=windows CGO_ENABLED=0 $(GO) build -tags nopcsc ./...
	CGO_ENABLED=0 $(GO) build -tags nopcsc ./...

clean:
	rm -rf bin
