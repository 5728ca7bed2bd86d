# keyvend — see README.md. `make run` and `make test` are the contract:
# they install what they need on a fresh machine.
SHELL := /bin/bash
GO ?= go
export GOTELEMETRY := off
export AWS_EC2_METADATA_DISABLED := true
# CDK: no telemetry, no update checks, no end-of-life banner for this Node
# (the variable must name the installed Node major version).
export CDK_DISABLE_CLI_TELEMETRY := 1
export npm_config_update_notifier := false
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
CDK := ./node_modules/.bin/cdk

FUNCTIONS := $(notdir $(wildcard functions/*))
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags='-s -w'

.PHONY: deps infra-deps moto tools run run-check test openapi-check vet fmt-check build clean infra-test infra-vet synth synth-slack deploy deploy-check cfn-lint fuzz fuzz-short bench model

## deps: the service's Go modules (the root module only: what make run builds)
deps:
	$(GO) mod download

## infra-deps: the CDK app's Go modules (infra/, its own module; ~280 MB):
## for its tests, vet and the synths, never for make run
infra-deps:
	cd infra && $(GO) mod download

## moto: the local AWS (moto_server), the one tool make run needs
moto:
	@command -v moto_server >/dev/null || pip install 'moto[server]'

## tools: moto, the AWS CLI the end-to-end tests drive, openapi-spec-validator,
## which checks pkg/httpapi/openapi.json, and cfn-lint
tools: moto
	@command -v aws >/dev/null || pip install awscli
	@python3 -c 'import openapi_spec_validator' 2>/dev/null || pip install openapi-spec-validator
	@command -v cfn-lint >/dev/null || pip install cfn-lint

## run: keyvend serve on 127.0.0.1:8080 against an embedded moto. It
## fetches only what it runs: the root module's dependencies and moto —
## not the CDK app's modules, npm packages or the test tools (run-check).
run: deps moto
	$(GO) build -o dist/keyvend ./cmd/keyvend
	./dist/keyvend serve

## run-check: make run's plan (make -n) fetches nothing it does not run: no
## step in infra/, no npm, no pip install but moto's (make test runs it)
run-check:
	@plan="$$($(MAKE) --no-print-directory -n run)" || { echo "run-check: make -n run failed"; exit 1; }; \
	bad="$$(grep -nE '(^|[^a-z])(infra|npm|npx|cdk|node_modules)([^a-z]|$$)|pip install' <<<"$$plan" | grep -v "pip install 'moto\[server\]'")"; \
	if [ -n "$$bad" ]; then echo "run-check: make run would fetch what it does not run:"; echo "$$bad"; exit 1; fi; \
	grep -q 'mod download' <<<"$$plan" || { echo "run-check: make run no longer downloads the root module's dependencies"; exit 1; }; \
	echo "run-check: make run fetches the root module and moto only"

## gotestsum runs the tests, once: a test that fails fails the run. There
## are no reruns — a rerun turned a race the tests had caught green. moto
## answers every request with "Connection: close" (werkzeug's server), so
## no keep-alive connection can be reset under a client; the test clients
## resend a read whose connection broke (pkg/awstest), and the state
## table's transactions retry moto's 500 on a concurrent write (pkg/state).
## Concurrency tests force their overlaps with gates (awstest.Gate).
GOTESTSUM_VERSION := v1.13.0
GOTESTSUM := .tools/gotestsum@$(GOTESTSUM_VERSION)

## test: formatting, vet, every test against moto over HTTP (fuzz seeds
## included), each fuzz target for a few seconds, the CDK app's tests, the
## synths (cdk-nag included), cfn-lint on the templates, the model check
## and the OpenAPI document through third-party tools (openapi-check)
test: deps infra-deps tools run-check fmt-check vet infra-vet $(GOTESTSUM)
	$(GOTESTSUM) --format pkgname-and-test-fails --packages=./... -- -race -count=1
	$(MAKE) fuzz-short infra-test cfn-lint model openapi-check

## openapi-check: third-party tools on pkg/httpapi/openapi.json, offline
## after npm ci (a few seconds): redocly lint (redocly.yaml), the TypeScript
## types openapi-typescript generates with its default options, against
## which tsc --strict checks clients/ts-check/check.ts and every request
## body of the README's curl examples (readme.mjs), and every pattern
## compiled as an ECMAScript u-flag regular expression (patterns.mjs); then
## Prism as a validating proxy in front of a real local keyvend serve
## (clients/prism-smoke.sh: the README's calls pass it, both ways). Prism is
## pinned at 5.14.2 with its 5.12 packages (package.json overrides): later
## 5.x releases require Node 24, this machine has Node 20
NPX := ./node_modules/.bin
export REDOCLY_TELEMETRY := off
export REDOCLY_SUPPRESS_UPDATE_NOTICE := true
openapi-check: tools $(CDK)
	$(NPX)/redocly lint --config redocly.yaml pkg/httpapi/openapi.json
	@mkdir -p clients/ts-check/gen
	$(NPX)/openapi-typescript pkg/httpapi/openapi.json -o clients/ts-check/gen/keyvend.d.ts
	node clients/ts-check/readme.mjs README.md pkg/httpapi/openapi.json clients/ts-check/gen/readme.ts
	node clients/ts-check/patterns.mjs pkg/httpapi/openapi.json
	$(NPX)/tsc -p clients/ts-check
	clients/prism-smoke.sh

$(GOTESTSUM):
	@mkdir -p .tools/bin
	GOBIN=$(CURDIR)/.tools/bin $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)
	mv .tools/bin/gotestsum $@


## Fuzz targets, as package:Target:executions. Their seed corpora are in
## the packages' testdata/fuzz/<Target>/; an input that fails is written
## there too. Budgets are executions, about 4 s each on 2 cores, not a
## -fuzztime duration: Go 1.26's fuzz coordinator can fail a run with
## "context deadline exceeded" when a duration runs out (go.dev/issue/75804,
## fixed in Go 1.27).
FUZZ_TARGETS := ./pkg/slashcmd:FuzzParse:100000 ./pkg/policy:FuzzDocument:200000 ./pkg/authz:FuzzMatch:250000 \
	./pkg/authz:FuzzDecide:150000 ./pkg/httpapi:FuzzDecodeCreate:50000
## make fuzz runs each budget FUZZ_SCALE times (about a minute each)
FUZZ_SCALE ?= 15

## fuzz-short: every fuzz target for its short budget (make test runs it)
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SCALE=1

## fuzz: every fuzz target for FUZZ_SCALE times its budget, one after the other
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		n=$${t##*:}; rest=$${t%:*}; fn=$${rest##*:}; pkg=$${rest%%:*}; \
		echo "fuzz $$fn in $$pkg: $$((n * $(FUZZ_SCALE))) executions"; \
		$(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$$((n * $(FUZZ_SCALE)))x $$pkg || exit 1; \
	done

## model: spin checks every interleaving of the per-user protocol's model
## (pkg/provision/protocol.pml; docs/architecture.md, "The protocol,
## model-checked"): the model must pass, and the model without the lease
## (-DNOLEASE) must fail, or the check itself is broken. About 30 s, 0.5 GB.
## The model carries the fixes of what it found that the Go code has
## (protocol.pml defines FIX_*); MODEL_FIXES=-DWITHOUT_FIXES checks the
## code as it was before them (it fails).
MODEL_FIXES ?=
model:
	@command -v spin >/dev/null || { apt-get update -qq && apt-get install -y -qq spin >/dev/null; }
	@command -v gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc >/dev/null; }
	@d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; cp pkg/provision/protocol.pml "$$d"; cd "$$d"; src=protocol.pml; \
	check() { \
		name=$$1; shift; rm -f pan pan.* *.trail; \
		spin -a "$$@" "$$src" >spin.out 2>&1 || { cat spin.out; return 2; }; \
		gcc -O0 -DSAFETY -DCOLLAPSE -DMEMLIM=1024 -o pan pan.c || return 2; \
		./pan -m1000000 >pan.out 2>&1; \
		states=$$(awk '/states, stored/ {print $$1; exit}' pan.out); \
		errors=$$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out); \
		if [ "$$errors" = 0 ]; then \
			grep -q 'Search not completed\|max search depth too small\|MEMLIM' pan.out && { echo "$$name: search not completed"; grep -m3 'Warning\|error\|MEMLIM' pan.out; return 2; }; \
			echo "$$name: $$states states, 0 errors"; return 0; \
		fi; \
		echo "$$name: $$errors error after $$states states; the trail:"; \
		spin -t "$$@" "$$src" 2>&1 | sed -n 's/^[[:space:]]*\(p[0-9].*\)/    \1/p'; \
		return 1; \
	}; \
	[ -z "$(strip $(MODEL_FIXES))" ] || echo "model: with $(MODEL_FIXES)"; \
	check model $(MODEL_FIXES) || exit 1; \
	check "model -DNOLEASE" -DNOLEASE -DMAXCRASH=0 $(MODEL_FIXES); rc=$$?; \
	case $$rc in 1) echo "model -DNOLEASE: fails, as it must without the lease";; \
	0) echo "model -DNOLEASE: no violation found: the model no longer needs the lease, so it checks nothing"; exit 1;; \
	*) exit 1;; esac

vet:
	$(GO) vet ./...

## infra-test: the CDK app's tests (assertions, escalation table); no -race:
## it would recompile aws-cdk-go (~280 MB of generated Go) instrumented
infra-test: infra-deps
	cd infra && $(GO) test -count=1 ./...

infra-vet: infra-deps
	cd infra && $(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## build: the Lambda bootstraps, linux/arm64, in dist/<function>/bootstrap
build: deps
	@for fn in $(FUNCTIONS); do \
		echo "build $$fn"; \
		GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o dist/$$fn/bootstrap ./functions/$$fn || exit 1; \
	done

$(CDK): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

## synth: the CloudFormation template in cdk.out, offline (cdk.json context)
synth: build infra-deps $(CDK)
	$(CDK) synth --quiet

## synth-slack: the template with the Slack command (a stand-in signing
## secret ARN) in cdk.out.slack, so cdk-nag and cfn-lint check those parts too.
## slowSynthThreshold=0 makes aws-cdk-lib write its performance-counters
## file, as it does whenever a synth takes 10 s or more (a loaded machine):
## this synth proves the app writes it where the CLI asks (infra/main.go).
SLACK_SYNTH_ARN := arn:aws:secretsmanager:us-east-1:123456789012:secret:keyvend/slack-signing-AbCdEf
synth-slack: build infra-deps $(CDK)
	$(CDK) synth --quiet -o cdk.out.slack -c slackSigningSecretArn=$(SLACK_SYNTH_ARN) -c @aws-cdk/core.slowSynthThreshold=0
	@test -s cdk.out.slack/performance-counters.json || { echo "synth-slack: no cdk.out.slack/performance-counters.json"; exit 1; }

## deploy: cdk deploy to the account and region of your AWS credentials
## (needs `cdk bootstrap` once; see docs/deploy.md). CDK_ARGS passes flags.
## deploy-check runs first: it warns when the alarms would notify nobody.
deploy: deploy-check build infra-deps $(CDK)
	$(CDK) deploy $(CDK_ARGS)

## deploy-check: a loud WARNING when neither cdk.json nor CDK_ARGS sets
## alarmEmail: the stack's alarms would reach nobody (the synth says so too)
deploy-check:
	@email="$$(node -p 'require("./cdk.json").context.alarmEmail || ""')"; \
	case " $(CDK_ARGS) " in *alarmEmail=[!\ ]*) email=set;; esac; \
	if [ -z "$$email" ]; then \
		echo "WARNING: no alarmEmail: this deployment's alarms (function errors, the reaper not running, throttled state-table requests, unauthenticated Slack requests) notify nobody. Set it with CDK_ARGS=\"-c alarmEmail=you@example.com\" or in cdk.json, or subscribe to the AlarmTopicArn output yourself."; \
	fi

## cfn-lint: lint the synthesized templates. W3005 ("dependency already
## enforced by a GetAtt") is ignored: it is the only finding, and it is CDK's
## own DependsOn from each Lambda function to its execution role, next to
## the function's Role GetAtt; harmless and not ours to remove.
cfn-lint: synth synth-slack
	cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json cdk.out.slack/*.template.json

## The Lambda runtime interface emulator make bench runs functions/api
## under, built from source into .tools/ (Go module proxy; ~100 s once).
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
RIE := .tools/aws-lambda-rie@$(RIE_VERSION)

$(RIE):
	@mkdir -p .tools/bin
	GOBIN=$(CURDIR)/.tools/bin $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)
	mv .tools/bin/aws-lambda-rie $@

## bench: measure keyvend against its physical limits (latency, AWS calls,
## cold start, size, memory); prints the table and writes docs/benchmarks.md.
## Fails only if it could not measure. BENCH_ARGS passes flags (-h lists them).
bench: deps tools $(RIE)
	$(GO) run ./cmd/keyvend-bench -rie $(RIE) $(BENCH_ARGS)

clean:
	rm -rf dist .keyvend cdk.out cdk.out.slack .tools
