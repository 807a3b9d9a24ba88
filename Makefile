# cairn — run `make help` for the targets.

SHELL := bash
GO ?= go
VERSION := $(shell cat VERSION)
# git describe adds the distance from the release tag and the commit; without git (a tarball)
# the version is VERSION alone.
DESCRIBE := $(shell git describe --tags --always --dirty 2>/dev/null)
FULL_VERSION := $(VERSION)$(if $(DESCRIBE),+$(DESCRIBE))
LDFLAGS := -s -w -X main.version=$(FULL_VERSION)
GOLANGCI_LINT_VERSION := v2.15.0
TOOLS := $(CURDIR)/bin/tools
FUZZTIME ?= 30s

.PHONY: help build test test-full vmtest bench lint demo schema clean appliance-base host-image

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build the static bin/cairn (it also runs on the appliance) and bin/cairn-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cairn ./cmd/cairn
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cairn-agent ./cmd/cairn-agent

test: ## unit and integration tests with the race detector (go test -race ./...)
	$(GO) test -race ./...

test-full: test vmtest ## test, then every fuzz target for FUZZTIME (default 30s), then the VM tier
	@for pkg in $$($(GO) list ./...); do \
	  for fz in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$fz ($(FUZZTIME))"; \
	    $(GO) test $$pkg -run='^$$' -fuzz="^$$fz\$$" -fuzztime=$(FUZZTIME) || exit 1; \
	  done; \
	done

vmtest: ## VM tier: QEMU scenarios (opt-in tests, turned on here)
	CAIRN_VMTEST=1 $(GO) test -count=1 -v -timeout 50m ./vmtest/...

appliance-base: ## build the appliance OS base (vmlinuz, initrd, squashfs) unless cached; CAIRN_APPLIANCE_CACHE=dir
	$(GO) run ./appliance/mkbase $(if $(CAIRN_APPLIANCE_CACHE),-cache $(CAIRN_APPLIANCE_CACHE))

host-image: ## build the example host OS image (Debian trixie, raw+zstd) unless cached, print its path; CAIRN_HOST_IMAGE_CACHE=dir
	$(GO) run ./examples/hostimage/mkimage $(if $(CAIRN_HOST_IMAGE_CACHE),-cache $(CAIRN_HOST_IMAGE_CACHE))

bench: ## benchmarks, each beside the anchor it is compared with
	$(GO) test -run='^$$' -bench=. -benchmem ./...

lint: ## go vet and golangci-lint (installed into bin/tools on first use)
	$(GO) vet ./...
	@test -x $(TOOLS)/golangci-lint || GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(TOOLS)/golangci-lint run ./...

schema: build ## regenerate docs/schema/*.json from the site model
	@mkdir -p docs/schema
	@for k in site host role all; do bin/cairn site schema --kind $$k > docs/schema/$$k.json; done

demo: build ## the main job, offline: validate the example site, build the example ISO, boot it in QEMU
	@echo "== cairn site validate examples/site"; bin/cairn site validate examples/site
	@echo; echo "== cairn site plan examples/site (against an empty state)"; bin/cairn site plan examples/site || test $$? -eq 2
	$(GO) run ./examples/demo -cairn bin/cairn -out out/demo

clean: ## remove build output
	rm -rf bin
