#!/usr/bin/env bash
# Checks the deployment files (infra/, Dockerfile, localstack/docker-compose.yml). Meant for
# .ci/run; runs offline except for the first checkov install from PyPI.
#
#   infra/check.sh
#
#  1. contract: the Dockerfile's RUST_VERSION is rust-toolchain.toml's channel; every KAFKA_* and
#     SIDECAR_* variable that infra/ and the compose file set is one the sidecar knows (src/)
#  2. terraform fmt -check -recursive infra
#  3. terraform init -backend=false + validate for every module, example and test configuration,
#     with providers from a local mirror only; `terraform test` where a module has tests/.
#     Configurations that need a provider the mirror lacks are skipped with a notice, and so is
#     everything when terraform or the mirror is missing.
#  4. the IAM policy that infra/tests/policy/render.sh renders for each sample var file equals
#     the .expected.json next to it
#  5. checkov (pinned, in its own venv) on infra/ and the Dockerfile: zero failed checks; every
#     skip is written in the code with its reason
#  6. the alerting rules pass `promtool check rules` and `promtool test rules` (Debian's
#     prometheus package, installed with apt-get when missing) and the dashboard parses
#  7. the module READMEs' Inputs/Outputs tables are current (infra/docs.py), the compose file
#     parses, and the shell and Python files of infra/ and localstack/ parse
#
# Nothing is written to the repository but the checkov venv (.testbed/venv-infra, gitignored):
# Terraform runs in a copy of infra/ in a temporary directory.
#
# Environment: TF_PLUGIN_MIRROR (provider mirror; default: the first tf-plugins folder in /opt,
# /usr/share, /usr/local/share), INFRA_VENV (checkov venv), PYTHON (python3 for the venv).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

CHECKOV_VERSION="3.3.30"
VENV="${INFRA_VENV:-$REPO/.testbed/venv-infra}"
PYTHON="${PYTHON:-python3}"

started=$SECONDS
failures=()
skips=()
passes=()

say() { printf 'infra: %s\n' "$*"; }
step() { printf '\n== infra: %s (%ss)\n' "$*" "$((SECONDS - started))"; }
pass() { passes+=("$1"); say "ok: $1"; }
fail() { failures+=("$1"); say "FAILED: $1"; }
skip() { skips+=("$1"); say "skipped: $1"; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# No network for Terraform (no version checkpoint, no registry), no prompts, and no user CLI
# configuration: the one written below, or an empty one.
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
export TF_CLI_CONFIG_FILE="$tmp/terraformrc"
: >"$TF_CLI_CONFIG_FILE"

have_terraform=0
if command -v terraform >/dev/null 2>&1; then
  have_terraform=1
fi

################################################################################
step "contract: toolchain and variable names"
################################################################################

toolchain="$(sed -n 's/^channel *= *"\([^"]*\)".*/\1/p' rust-toolchain.toml)"
docker_rust="$(sed -n 's/^ARG RUST_VERSION=\(.*\)$/\1/p' Dockerfile)"
if [[ -n "$toolchain" && "$toolchain" == "$docker_rust" ]]; then
  pass "Dockerfile builds with the pinned toolchain ($toolchain)"
else
  fail "Dockerfile RUST_VERSION ($docker_rust) differs from rust-toolchain.toml ($toolchain)"
fi

# Every variable the sidecar reads is a string literal somewhere in src/ (src/config/keys.rs).
known="$(grep -rhoE '"(KAFKA|SIDECAR|MSK)_[A-Z0-9_]+"' src | tr -d '"' | sort -u)"
used="$({
  grep -rhoE '\b(KAFKA|SIDECAR|MSK)_[A-Z0-9_]+\b' --include='*.tf' --include='*.tftest.hcl' infra
  grep -hoE '\b(KAFKA|SIDECAR|MSK)_[A-Z0-9_]+\b' localstack/docker-compose.yml
} | sort -u)"
unknown=()
for name in $used; do
  [[ "$name" == SIDECAR_LIBRDKAFKA_* ]] && continue
  grep -qx "$name" <<<"$known" || unknown+=("$name")
done
if [[ -z "$known" ]]; then
  fail "found no KAFKA_*/SIDECAR_*/MSK_* names in src/"
elif ((${#unknown[@]})); then
  fail "variables the sidecar does not know: ${unknown[*]}"
else
  pass "$(wc -w <<<"$used") KAFKA_*/SIDECAR_*/MSK_* names in infra/ and the compose file are the sidecar's"
fi

################################################################################
step "terraform fmt"
################################################################################

if ((have_terraform)); then
  say "$(terraform version | head -1)"
  if terraform fmt -check -recursive -diff infra; then
    pass "terraform fmt"
  else
    fail "terraform fmt (run: terraform fmt -recursive infra)"
  fi
else
  skip "terraform fmt/validate/test and the policy rendering: terraform is not on PATH"
fi

################################################################################
step "terraform init + validate (+ test)"
################################################################################

mirror=""
if [[ -n "${TF_PLUGIN_MIRROR:-}" ]]; then
  mirror="$TF_PLUGIN_MIRROR"
  [[ -d "$mirror" ]] || { fail "TF_PLUGIN_MIRROR=$mirror is not a directory"; mirror=""; }
else
  for dir in /opt/tf-plugins /usr/share/tf-plugins /usr/local/share/tf-plugins; do
    if [[ -d "$dir" ]]; then
      mirror="$dir"
      break
    fi
  done
fi
if [[ -n "$mirror" ]]; then
  mkdir -p "$tmp/plugin-cache"
  cat >"$TF_CLI_CONFIG_FILE" <<EOF
provider_installation {
  filesystem_mirror {
    path = "$mirror"
  }
}
plugin_cache_dir                            = "$tmp/plugin-cache"
plugin_cache_may_break_dependency_lock_file = true
EOF
  say "provider mirror: $mirror ($(cd "$mirror" && find . -mindepth 4 -maxdepth 4 -type d | sed 's|^\./||' | paste -sd ' ' -))"
else
  say "notice: no Terraform provider mirror (TF_PLUGIN_MIRROR, or tf-plugins in /opt, /usr/share, /usr/local/share): configurations that need a provider are skipped"
fi

# The providers a configuration needs: the sources in its required_providers blocks and in those
# of the local modules it calls, as host/namespace/name.
providers_of() {
  local dir="$1" src
  { grep -hoE '^\s*source\s*=\s*"[^"]+"' "$dir"/*.tf 2>/dev/null || true; } | sed -E 's/.*"([^"]+)"/\1/' |
    while read -r src; do
      case "$src" in
        ./* | ../*) providers_of "$dir/$src" ;;
        */*/*) [[ "${src%%/*}" == *.* ]] && echo "$src" ;;
        */*) echo "registry.terraform.io/$src" ;;
      esac
    done | sort -u
}

# Terraform test's mock providers need 1.7.
tf_tests=0
if ((have_terraform)); then
  tf_version="$(terraform version -json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])' 2>/dev/null || echo 0)"
  if [[ "$(printf '%s\n1.7.0\n' "$tf_version" | sort -V | head -1)" == "1.7.0" ]]; then
    tf_tests=1
  fi
fi

if ((have_terraform)); then
  cp -R infra "$tmp/infra"
  find "$tmp/infra" \( -name .terraform -o -name '.terraform.lock.hcl' -o -name 'terraform.tfstate*' \) \
    -prune -exec rm -rf {} +
  configs=()
  for dir in infra/modules/*/ infra/examples/*/ infra/tests/*/; do
    compgen -G "$dir*.tf" >/dev/null && configs+=("${dir%/}")
  done
  for config in "${configs[@]}"; do
    needs="$(providers_of "$config")"
    missing=()
    for provider in $needs; do
      [[ -n "$mirror" && -d "$mirror/$provider" ]] || missing+=("${provider#registry.terraform.io/}")
    done
    if ((${#missing[@]})); then
      if [[ -z "$mirror" ]]; then
        skip "$config: no provider mirror (set TF_PLUGIN_MIRROR) for ${missing[*]}"
      else
        skip "$config: provider ${missing[*]} not in the mirror"
      fi
      continue
    fi
    work="$tmp/$config"
    log="$tmp/terraform.log"
    if ! terraform -chdir="$work" init -backend=false -input=false -no-color >"$log" 2>&1; then
      sed "s|$tmp/||g" "$log"
      fail "$config: terraform init"
      continue
    fi
    if ! terraform -chdir="$work" validate -no-color >"$log" 2>&1; then
      sed "s|$tmp/||g" "$log"
      fail "$config: terraform validate"
      continue
    fi
    if compgen -G "$work/tests/*.tftest.hcl" >/dev/null; then
      if ((tf_tests == 0)); then
        pass "$config: valid"
        skip "$config: terraform test needs Terraform 1.7+"
      elif terraform -chdir="$work" test -no-color >"$log" 2>&1; then
        pass "$config: valid; terraform test: $(grep -oE '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)"
      else
        sed "s|$tmp/||g" "$log"
        fail "$config: terraform test"
      fi
    else
      pass "$config: valid"
    fi
  done
fi

################################################################################
step "IAM policy rendering (infra/tests/policy)"
################################################################################

if ((have_terraform)); then
  for varfile in infra/tests/policy/*.tfvars; do
    expected="${varfile%.tfvars}.expected.json"
    if [[ ! -f "$expected" ]]; then
      fail "$varfile: no $expected"
      continue
    fi
    if ! infra/tests/policy/render.sh "$varfile" >"$tmp/policy.json" 2>"$tmp/render.log"; then
      cat "$tmp/render.log"
      fail "$varfile: render.sh"
      continue
    fi
    if "$PYTHON" - "$tmp/policy.json" "$expected" <<'EOF'; then
import json, sys
rendered, expected = (json.load(open(p)) for p in sys.argv[1:3])
if rendered != expected:
    print("rendered:", json.dumps(rendered, indent=2))
    sys.exit(1)
EOF
      pass "$varfile: policy equals $(basename "$expected")"
    else
      fail "$varfile: the rendered policy differs from $expected"
    fi
  done
fi

################################################################################
step "checkov $CHECKOV_VERSION"
################################################################################

checkov="$VENV/bin/checkov"
if [[ "$("$checkov" --version 2>/dev/null || true)" != "$CHECKOV_VERSION" ]]; then
  say "installing checkov $CHECKOV_VERSION into $VENV (a few minutes on a new machine)"
  mkdir -p "$(dirname "$VENV")"
  installed=1
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV" >"$tmp/pip.log" 2>&1 || installed=0
  fi
  if ((installed)); then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
      >>"$tmp/pip.log" 2>&1 || installed=0
  fi
  if ((installed == 0)); then
    tail -20 "$tmp/pip.log"
    fail "installing checkov $CHECKOV_VERSION into $VENV"
    checkov=""
  fi
fi

run_checkov() { # description, checkov arguments...
  local what="$1"
  shift
  if "$checkov" --quiet --compact --skip-download "$@" >"$tmp/checkov.log" 2>&1; then
    pass "checkov $what: $(grep -oE 'Failed checks: [0-9]+, Skipped checks: [0-9]+' "$tmp/checkov.log" | paste -sd ';' -)"
  else
    cat "$tmp/checkov.log"
    fail "checkov $what"
  fi
}

if [[ -n "$checkov" ]]; then
  run_checkov "infra/ (terraform)" -d infra --framework terraform --skip-path '\.terraform'
  # What the examples leave off (SQS queues, access logging) is scanned with a var file.
  run_checkov "sidecar-storage, every feature on" -d infra/modules/sidecar-storage --framework terraform \
    --var-file infra/tests/checkov/sidecar-storage.tfvars
  run_checkov "Dockerfile" -f Dockerfile --framework dockerfile
fi

################################################################################
step "alerting rules and dashboard (infra/observability)"
# Debian's prometheus package brings promtool (and the server the alert test runs).
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  say "installing prometheus (promtool) from Debian (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    >"$tmp/apt-prometheus.log" 2>&1 || tail -20 "$tmp/apt-prometheus.log"
fi
if ! command -v promtool >/dev/null 2>&1; then
  fail "promtool: apt-get installed no prometheus"
elif (cd infra/observability && promtool check rules alerts.yml && promtool test rules alerts.test.yml) >"$tmp/promtool.log" 2>&1; then
  pass "infra/observability/alerts.yml: promtool check rules and test rules"
else
  cat "$tmp/promtool.log"
  fail "infra/observability/alerts.yml: promtool"
fi
if "$PYTHON" - infra/observability/dashboard.json <<'EOF'; then
import json, sys
board = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
assert exprs and all("msk_sidecar_" in e for e in exprs), "every panel queries msk-sidecar metrics"
assert len({p["id"] for p in board["panels"]}) == len(board["panels"]), "panel ids are unique"
EOF
  pass "infra/observability/dashboard.json: a Grafana dashboard whose panels query the sidecar's metrics"
else
  fail "infra/observability/dashboard.json"
fi

step "module READMEs, compose file and scripts"
################################################################################

if "$PYTHON" infra/docs.py --check; then
  pass "module README tables are current"
else
  fail "module README tables (run: python3 infra/docs.py)"
fi

compose_python="$PYTHON"
[[ -x "$VENV/bin/python" ]] && compose_python="$VENV/bin/python" # has PyYAML (checkov needs it)
if "$compose_python" - localstack/docker-compose.yml <<'EOF'; then
import sys
import yaml

doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
want = {"redpanda", "localstack", "jaeger", "example-app", "sidecar", "producer"}
missing = want - set(services)
assert not missing, f"services missing: {sorted(missing)}"
env = services["sidecar"]["environment"]
for name in ("KAFKA_BROKERS", "KAFKA_TOPICS", "KAFKA_CONSUMER_GROUP", "KAFKA_AUTH",
             "SIDECAR_DELIVERY_URL", "SIDECAR_DLQ_ARCHIVE", "AWS_ENDPOINT_URL",
             "OTEL_EXPORTER_OTLP_ENDPOINT"):
    assert name in env, f"sidecar environment lacks {name}"
assert env["KAFKA_AUTH"] == "none"
assert services["sidecar"]["build"]["dockerfile"] == "Dockerfile"
EOF
  pass "localstack/docker-compose.yml parses and has every service"
else
  fail "localstack/docker-compose.yml"
fi

scripts_ok=1
while IFS= read -r script; do
  bash -n "$script" || { fail "bash -n $script"; scripts_ok=0; }
done < <(find infra localstack/init localstack/example-app -name '*.sh' | sort)
while IFS= read -r source; do
  "$PYTHON" -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$source" ||
    { fail "python syntax: $source"; scripts_ok=0; }
done < <(find infra localstack/example-app -name '*.py' | sort)
((scripts_ok)) && pass "shell and Python files parse"

################################################################################
step "done"
################################################################################

say "${#passes[@]} ok, ${#skips[@]} skipped, ${#failures[@]} failed, in $((SECONDS - started))s"
for s in ${skips[@]+"${skips[@]}"}; do say "  skipped: $s"; done
if ((${#failures[@]})); then
  for f in "${failures[@]}"; do say "  FAILED: $f"; done
  exit 1
fi
say "all infra checks passed"
