terraform {
  # No providers: the policy is plain data, so this module renders offline (infra/tests/policy).
  required_version = ">= 1.5.7"
}
