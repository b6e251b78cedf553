# msk-sidecar next to an application in a Kubernetes Deployment on EKS: the sidecar runs as a
# native sidecar (an init container with restartPolicy Always, Kubernetes 1.29+), gets AWS
# credentials through EKS Pod Identity and/or IRSA, and writes dead letters to S3.

data "aws_region" "current" {}

locals {
  service_account_name = coalesce(var.service_account_name, var.name)
  sidecar_name         = "msk-sidecar"

  selector_labels = {
    "app.kubernetes.io/name"     = var.name
    "app.kubernetes.io/instance" = var.name
  }
  labels = merge(var.labels, local.selector_labels, {
    "app.kubernetes.io/component"  = "kafka-consumer"
    "app.kubernetes.io/managed-by" = "terraform"
  })

  # The application shuts down first, then the sidecar drains: the pod's grace covers both.
  termination_grace_period_seconds = coalesce(var.termination_grace_period_seconds, var.sidecar_shutdown_grace_seconds + 30)

  archive_bucket = var.create_archive_bucket ? module.storage.archive_bucket_id : var.archive_bucket_name
  archive_prefix = var.archive_prefix == null ? var.kafka_consumer_group : var.archive_prefix

  sqs_delivery  = var.create_sqs_queue || var.sqs_queue_url != null
  sqs_queue_url = var.create_sqs_queue ? module.storage.sqs_queue_url : var.sqs_queue_url
  sqs_queue_arn = var.create_sqs_queue ? module.storage.sqs_queue_arn : var.sqs_queue_arn

  # The contract of DESIGN.md: these names are what the sidecar reads.
  sidecar_environment = merge(
    {
      KAFKA_BROKERS          = var.kafka_brokers
      KAFKA_TOPICS           = join(",", var.kafka_topics)
      KAFKA_CONSUMER_GROUP   = var.kafka_consumer_group
      KAFKA_AUTH             = "msk-iam"
      MSK_CLUSTER_ARN        = var.msk_cluster_arn
      AWS_REGION             = data.aws_region.current.name
      SIDECAR_DLQ_TOPIC      = module.iam.dlq_topic
      SIDECAR_DLQ_ARCHIVE    = module.iam.archive_uri
      SIDECAR_ADMIN_ADDR     = "${var.sidecar_admin_exposed ? "0.0.0.0" : "127.0.0.1"}:${var.sidecar_admin_port}"
      SIDECAR_SHUTDOWN_GRACE = "${var.sidecar_shutdown_grace_seconds}s"
      SIDECAR_LOG_FORMAT     = "json"
      OTEL_SERVICE_NAME      = var.name
      # $(K8S_POD_NAME) is expanded by the kubelet from the variable defined before it.
      OTEL_RESOURCE_ATTRIBUTES = "k8s.namespace.name=${var.namespace},k8s.deployment.name=${var.name},k8s.pod.name=$(K8S_POD_NAME)"
    },
    local.sqs_delivery ? { SIDECAR_DELIVERY_SQS_QUEUE_URL = local.sqs_queue_url } : { SIDECAR_DELIVERY_URL = "http://127.0.0.1:${var.application.port}${var.delivery_path}" },
    length(var.sqs_source_queues) > 0 ? { SQS_QUEUE_URLS = join(",", [for q in var.sqs_source_queues : q.url]) } : {},
    var.schema_registry != "" ? { SIDECAR_SCHEMA_REGISTRY = var.schema_registry } : {},
    var.environment != "" ? { ENVIRONMENT = var.environment } : {},
    var.kafka_consumer_group_prefix != "" ? { KAFKA_CONSUMER_GROUP_PREFIX = var.kafka_consumer_group_prefix } : {},
    var.kafka_consumer_group_suffix != "" ? { KAFKA_CONSUMER_GROUP_SUFFIX = var.kafka_consumer_group_suffix } : {},
    var.otel_exporter_otlp_endpoint == null ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT = var.otel_exporter_otlp_endpoint },
    var.sidecar_environment,
  )
}

################################################################################
# AWS: archive bucket, delivery queue, IAM role (Pod Identity and/or IRSA)
################################################################################

module "storage" {
  source = "../sidecar-storage"

  name = var.name
  tags = var.tags

  create_archive_bucket              = var.create_archive_bucket
  archive_bucket_name                = var.archive_bucket_name
  archive_force_destroy              = var.archive_force_destroy
  archive_kms_key_arn                = var.archive_kms_key_arn
  archive_transition_to_glacier_days = var.archive_transition_to_glacier_days
  archive_expiration_days            = var.archive_expiration_days
  archive_logging                    = var.archive_logging

  create_sqs_queue = var.create_sqs_queue
  sqs_kms_key_arn  = var.sqs_kms_key_arn
}

module "iam" {
  source = "../eks-sidecar-iam"

  name                 = var.name
  tags                 = var.tags
  namespace            = var.namespace
  service_account_name = local.service_account_name

  enable_pod_identity = var.enable_pod_identity
  cluster_name        = var.cluster_name
  enable_irsa         = var.enable_irsa
  oidc_provider_arn   = var.oidc_provider_arn

  iam_role_path                 = var.iam_role_path
  iam_role_permissions_boundary = var.iam_role_permissions_boundary
  role_policy_arns              = var.iam_role_policy_arns

  msk_cluster_arn      = var.msk_cluster_arn
  kafka_topics         = var.kafka_topics
  kafka_consumer_group = var.kafka_consumer_group
  dlq_topic            = var.dlq_topic
  archive_bucket       = local.archive_bucket
  archive_prefix       = local.archive_prefix
  sqs_queue_arn        = local.sqs_queue_arn
  sqs_source_queues    = var.sqs_source_queues
  schema_registry      = var.schema_registry
  environment          = var.environment

  kafka_consumer_group_prefix = var.kafka_consumer_group_prefix
  kafka_consumer_group_suffix = var.kafka_consumer_group_suffix
}

################################################################################
# Kubernetes: service account, Deployment, PodDisruptionBudget
################################################################################

resource "kubernetes_service_account_v1" "this" {
  count = var.create_service_account ? 1 : 0

  metadata {
    name        = local.service_account_name
    namespace   = var.namespace
    labels      = local.labels
    annotations = var.enable_irsa ? { "eks.amazonaws.com/role-arn" = module.iam.role_arn } : {}
  }

  # Pod Identity and IRSA bring their own projected tokens; the Kubernetes API token is unused.
  automount_service_account_token = false
}

resource "kubernetes_deployment_v1" "this" {
  #checkov:skip=CKV_K8S_43:Images are inputs (var.sidecar_image, var.application.image); the README asks for digests, the module cannot enforce them.
  #checkov:skip=CKV_K8S_15:IfNotPresent is the default pull policy for immutable (versioned or digest) tags; it is an input.
  #checkov:skip=CKV_K8S_14:Image references are inputs; checkov cannot see what a caller passes (the examples take them as variables).
  #checkov:skip=CKV_K8S_35:Secrets as environment variables only when the caller asks (var.application.env_from_secret_names, empty by default); the sidecar itself reads no secret.

  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    replicas               = var.replicas
    revision_history_limit = 5

    selector {
      match_labels = local.selector_labels
    }

    strategy {
      type = "RollingUpdate"

      rolling_update {
        max_surge       = "1"
        max_unavailable = "0"
      }
    }

    template {
      metadata {
        labels = local.labels
        # Scraping needs the admin server on the pod's address (sidecar_admin_exposed).
        annotations = merge(
          var.sidecar_admin_exposed ? {
            "prometheus.io/scrape" = "true"
            "prometheus.io/port"   = tostring(var.sidecar_admin_port)
            "prometheus.io/path"   = "/metrics"
          } : {},
          var.pod_annotations,
        )
      }

      spec {
        service_account_name             = local.service_account_name
        automount_service_account_token  = false
        enable_service_links             = false
        termination_grace_period_seconds = local.termination_grace_period_seconds
        node_selector                    = var.node_selector

        security_context {
          run_as_non_root = true
          fs_group        = 65532

          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        # The sidecar: an init container that keeps running (restartPolicy Always). It starts
        # before the application and, on the way down, stops after it.
        init_container {
          name              = local.sidecar_name
          image             = var.sidecar_image
          image_pull_policy = var.sidecar_image_pull_policy
          restart_policy    = "Always"
          args              = ["run"]

          dynamic "port" {
            for_each = var.sidecar_admin_exposed ? [var.sidecar_admin_port] : []

            content {
              name           = "admin"
              container_port = port.value
              protocol       = "TCP"
            }
          }

          env {
            name = "K8S_POD_NAME"

            value_from {
              field_ref {
                field_path = "metadata.name"
              }
            }
          }

          dynamic "env" {
            for_each = { for k in sort(keys(local.sidecar_environment)) : k => local.sidecar_environment[k] }

            content {
              name  = env.key
              value = env.value
            }
          }

          resources {
            requests = var.sidecar_resources.requests
            limits   = var.sidecar_resources.limits
          }

          # The application container starts only after this succeeds: /live answers as soon as
          # the process runs. /ready would wait for the application itself (deadlock). With the
          # admin server on loopback (the default) the probes run `msk-sidecar healthcheck` in
          # the container, which reads SIDECAR_ADMIN_ADDR; exposed, the kubelet asks over HTTP.
          startup_probe {
            dynamic "exec" {
              for_each = var.sidecar_admin_exposed ? [] : [["/usr/local/bin/msk-sidecar", "healthcheck", "--live"]]

              content {
                command = exec.value
              }
            }

            dynamic "http_get" {
              for_each = var.sidecar_admin_exposed ? ["/live"] : []

              content {
                path = http_get.value
                port = "admin"
              }
            }

            period_seconds    = 2
            timeout_seconds   = 2
            failure_threshold = 30
          }

          liveness_probe {
            dynamic "exec" {
              for_each = var.sidecar_admin_exposed ? [] : [["/usr/local/bin/msk-sidecar", "healthcheck", "--live"]]

              content {
                command = exec.value
              }
            }

            dynamic "http_get" {
              for_each = var.sidecar_admin_exposed ? ["/live"] : []

              content {
                path = http_get.value
                port = "admin"
              }
            }

            period_seconds    = 10
            timeout_seconds   = 3
            failure_threshold = 3
          }

          # Counts towards the pod's readiness: ready once the consumer has a token, partitions
          # and a reachable application.
          readiness_probe {
            dynamic "exec" {
              for_each = var.sidecar_admin_exposed ? [] : [["/usr/local/bin/msk-sidecar", "healthcheck"]]

              content {
                command = exec.value
              }
            }

            dynamic "http_get" {
              for_each = var.sidecar_admin_exposed ? ["/ready"] : []

              content {
                path = http_get.value
                port = "admin"
              }
            }

            period_seconds    = 5
            timeout_seconds   = 3
            failure_threshold = 3
          }

          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = true
            run_as_non_root            = true
            run_as_user                = 65532
            run_as_group               = 65532

            capabilities {
              drop = ["ALL"]
            }
          }
        }

        container {
          name              = var.application.name
          image             = var.application.image
          image_pull_policy = var.application.image_pull_policy
          command           = var.application.command
          args              = var.application.args

          port {
            name           = "http"
            container_port = var.application.port
            protocol       = "TCP"
          }

          dynamic "env" {
            for_each = { for k in sort(keys(var.application.environment)) : k => var.application.environment[k] }

            content {
              name  = env.key
              value = env.value
            }
          }

          dynamic "env_from" {
            for_each = var.application.env_from_secret_names

            content {
              secret_ref {
                name = env_from.value
              }
            }
          }

          resources {
            requests = var.application.resources.requests
            limits   = var.application.resources.limits
          }

          liveness_probe {
            dynamic "http_get" {
              for_each = var.application.liveness_path == null ? [] : [var.application.liveness_path]

              content {
                path = http_get.value
                port = "http"
              }
            }

            dynamic "tcp_socket" {
              for_each = var.application.liveness_path == null ? ["http"] : []

              content {
                port = tcp_socket.value
              }
            }

            period_seconds    = 10
            timeout_seconds   = 3
            failure_threshold = 3
          }

          readiness_probe {
            dynamic "http_get" {
              for_each = var.application.readiness_path == null ? [] : [var.application.readiness_path]

              content {
                path = http_get.value
                port = "http"
              }
            }

            dynamic "tcp_socket" {
              for_each = var.application.readiness_path == null ? ["http"] : []

              content {
                port = tcp_socket.value
              }
            }

            period_seconds    = 5
            timeout_seconds   = 3
            failure_threshold = 3
          }

          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = var.application.read_only_root_filesystem
            run_as_non_root            = true
            run_as_user                = var.application.run_as_user

            capabilities {
              drop = ["ALL"]
            }
          }

          dynamic "volume_mount" {
            for_each = var.application.read_only_root_filesystem ? ["tmp"] : []

            content {
              name       = volume_mount.value
              mount_path = "/tmp"
            }
          }
        }

        dynamic "volume" {
          for_each = var.application.read_only_root_filesystem ? ["tmp"] : []

          content {
            name = volume.value

            empty_dir {
              size_limit = "64Mi"
            }
          }
        }
      }
    }
  }

  wait_for_rollout = var.wait_for_rollout

  lifecycle {
    precondition {
      condition     = local.termination_grace_period_seconds > var.sidecar_shutdown_grace_seconds
      error_message = "termination_grace_period_seconds must be above sidecar_shutdown_grace_seconds, or the kubelet kills the sidecar mid-drain."
    }
  }

  # Pod Identity and IRSA set a pod's credentials up when the pod is created: the association
  # and the service account's annotation must exist first.
  depends_on = [module.iam, kubernetes_service_account_v1.this]
}

resource "kubernetes_pod_disruption_budget_v1" "this" {
  metadata {
    name      = var.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    max_unavailable = var.pdb_max_unavailable

    selector {
      match_labels = local.selector_labels
    }
  }
}
