# keyvend — see README.md. `make run` and `make test` are the contract:
# they install what they need on a fresh machine.
SHELL := /bin/bash
GO ?= go
export GOTELEMETRY := off
export AWS_EC2_METADATA_DISABLED := true

FUNCTIONS := $(notdir $(wildcard functions/*))
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags='-s -w'

.PHONY: deps tools run test vet fmt-check build clean

## deps: Go modules
deps:
	$(GO) mod download

## tools: the local AWS (moto_server), the AWS CLI the end-to-end tests drive,
## and openapi-spec-validator, which checks pkg/httpapi/openapi.json
tools:
	@command -v moto_server >/dev/null || pip install 'moto[server]'
	@command -v aws >/dev/null || pip install awscli
	@python3 -c 'import openapi_spec_validator' 2>/dev/null || pip install openapi-spec-validator

## run: keyvend serve on 127.0.0.1:8080 against an embedded moto
run: deps tools
	$(GO) build -o dist/keyvend ./cmd/keyvend
	./dist/keyvend serve

## test: formatting, vet, and every test against moto over HTTP
test: deps tools fmt-check vet
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## build: the Lambda bootstraps, linux/arm64, in dist/<function>/bootstrap
build: deps
	@for fn in $(FUNCTIONS); do \
		echo "build $$fn"; \
		GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o dist/$$fn/bootstrap ./functions/$$fn || exit 1; \
	done

clean:
	rm -rf dist .keyvend
