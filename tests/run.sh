#!/usr/bin/env bash
# The project's one test command (README, `.ci/run`): sets up what the tests need on a fresh
# machine, then runs every check and test. Safe to run again; it talks only to loopback and
# the package registries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# No traffic may leave loopback: every AWS SDK client a test builds gets dummy credentials,
# a region, no instance-metadata probing and a loopback endpoint.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL=http://127.0.0.1:9
unset AWS_PROFILE AWS_SESSION_TOKEN

# A one-off build: incremental compilation's caches (2 GB here) would only fill the disk.
export CARGO_INCREMENTAL=0

echo "== python tools (moto as Secrets Manager and SQS, cfn-lint, SAM's translator) in .venv"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check \
  "moto[secretsmanager,sqs,dynamodb,server]>=5.1,<6" "cfn-lint>=1.40,<2" "PyYAML>=6" \
  "aws-sam-translator>=1.90,<2"

echo "== template.yaml"
# Informational rules too (I3011: stateful resources keep their data on delete and replace).
.venv/bin/cfn-lint template.yaml --include-checks I
.venv/bin/python tests/check_template.py
# Each rule of check_template.py against a template that breaks it.
.venv/bin/python tests/check_template_test.py

echo "== formatting"
cargo fmt --all --check
echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build (the end-to-end tests run the real function binaries)"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked
