# Every CI gate is one target here.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo run test test-unit lint fmt fmt-check clippy bench bench-ingress bench-longconn bench-directory bench-auth bench-notifier bench-emulator up down build release migrate services-check browser-check

## Try it: the Feishu emulator with a demo organisation and every service in one process on
## SQLite and the embedded bus (no servers needed), set up and initialised. Ctrl-C stops it.
demo:
	@bash scripts/demo.sh

## Run `all` with your own settings file (BRIDGE_CONFIG=path) or environment.
run:
	$(CARGO) run --release -p feishu-bridge -- all

build:
	$(CARGO) build --workspace --all-targets --locked

release:
	$(CARGO) build --release --locked -p feishu-bridge

migrate:
	$(CARGO) run -p feishu-bridge -- migrate

## The whole test suite: formatting, lints, then every test against the local PostgreSQL
## and RabbitMQ (started by the machine; see README).
test: fmt-check clippy services-check browser-check
	@bash scripts/drop-test-databases.sh
	$(CARGO) test --workspace --locked --no-fail-fast

test-unit:
	$(CARGO) test --workspace --locked --lib --bins

lint: fmt-check clippy

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## Fails early, with a clear message, when PostgreSQL or RabbitMQ is not reachable.
services-check:
	@bash scripts/check-services.sh

## The browser login test needs Debian's chromium and chromium-driver; installs them if missing.
browser-check:
	@bash scripts/ensure-browser.sh

bench: bench-ingress bench-longconn bench-directory bench-auth bench-notifier bench-emulator

bench-auth:
	bash bench/auth.sh

bench-directory:
	bash bench/directory.sh

bench-ingress:
	bash bench/ingress.sh

bench-longconn:
	bash bench/longconn.sh

bench-notifier:
	bash bench/notifier.sh

# The emulator's own benchmarks: #[ignore]d tests (timed, release build), run here only.
bench-emulator:
	cargo test -p feishu-emulator --release --test emulator -- --ignored bench --nocapture --test-threads 1

up:
	docker compose up -d --build

down:
	docker compose down
