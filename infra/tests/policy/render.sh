#!/usr/bin/env bash
# Prints the IAM policy JSON that infra/modules/sidecar-iam-policy renders for a var file:
#
#   infra/tests/policy/render.sh VARFILE        (HCL .tfvars or .tfvars.json)
#
# Offline and side-effect free: the module has no providers, so this copies the test
# configuration and the module to a temporary directory, runs `terraform init` and
# `terraform apply` there (nothing is created anywhere) and prints `terraform output -raw json`
# on stdout, without a trailing newline. Terraform's own output goes to stderr only on failure.
# Exit status: 0 printed, 1 Terraform failed (e.g. a variable failed validation), 2 usage.
set -euo pipefail

die() { printf 'render.sh: %s\n' "$*" >&2; exit "${2:-1}"; }

[[ $# -eq 1 ]] || die "usage: $0 VARFILE" 2
[[ -f "$1" ]] || die "no such var file: $1" 2
command -v terraform >/dev/null || die "terraform is not on PATH"

varfile="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
infra="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/infra/tests" "$tmp/infra/modules"
cp -R "$infra/tests/policy" "$tmp/infra/tests/policy"
cp -R "$infra/modules/sidecar-iam-policy" "$tmp/infra/modules/sidecar-iam-policy"
rm -rf "$tmp/infra/tests/policy/.terraform" "$tmp/infra/tests/policy"/terraform.tfstate* \
  "$tmp/infra/tests/policy/.terraform.lock.hcl"

# No network, no prompts, no user CLI configuration (and no warning when TF_CLI_CONFIG_FILE
# names a file that does not exist).
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
export TF_CLI_CONFIG_FILE="$tmp/terraformrc" TF_DATA_DIR="$tmp/data"
: >"$TF_CLI_CONFIG_FILE"

dir="$tmp/infra/tests/policy"
log="$tmp/terraform.log"
run() { terraform -chdir="$dir" "$@" >>"$log" 2>&1 || { cat "$log" >&2; exit 1; }; }
run init -backend=false -input=false -no-color
run apply -auto-approve -input=false -no-color -var-file="$varfile"
terraform -chdir="$dir" output -no-color -raw json
