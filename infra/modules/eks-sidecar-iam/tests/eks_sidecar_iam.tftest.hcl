# Offline tests of the module with a mocked AWS provider (terraform test, Terraform 1.7+).

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/orders"
    }
  }
}

variables {
  name                 = "orders"
  namespace            = "orders"
  service_account_name = "orders"
  cluster_name         = "apps"
  msk_cluster_arn      = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders-cluster/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9-2"
  kafka_topics         = ["orders"]
  kafka_consumer_group = "orders-consumer"
  archive_bucket       = "orders-dlq"
  archive_prefix       = "orders-consumer"
}

run "pod_identity" {
  command = apply

  assert {
    condition     = length(aws_eks_pod_identity_association.this) == 1 && aws_eks_pod_identity_association.this[0].service_account == "orders"
    error_message = "Pod Identity needs an association for the service account."
  }

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid] == [
      "ConnectToCluster", "ReadSourceTopics", "WriteDeadLetterTopic", "UseConsumerGroup", "ArchiveDeadLetters",
    ]
    error_message = "The role's msk-sidecar policy must be the sidecar's exact policy."
  }

  assert {
    condition     = length(aws_iam_role_policy.application_queue) == 0
    error_message = "HTTP delivery needs no queue policy."
  }
}

run "irsa_only_with_queue" {
  command = apply

  variables {
    enable_pod_identity = false
    enable_irsa         = true
    oidc_provider_arn   = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF"
    sqs_queue_arn       = "arn:aws:sqs:eu-west-1:123456789012:orders-deliveries"
  }

  assert {
    condition     = length(aws_eks_pod_identity_association.this) == 0
    error_message = "No association without Pod Identity."
  }

  assert {
    condition     = local.oidc_issuer == "oidc.eks.eu-west-1.amazonaws.com/id/ABCDEF"
    error_message = "The OIDC issuer must be read from the provider ARN."
  }

  assert {
    condition     = jsondecode(aws_iam_role_policy.sidecar.policy).Statement[5].Sid == "DeliverToQueue"
    error_message = "SQS delivery adds DeliverToQueue after ArchiveDeadLetters."
  }

  assert {
    condition     = length(aws_iam_role_policy.application_queue) == 1
    error_message = "The application shares the role and reads the queue."
  }
}

run "no_way_to_assume" {
  command = plan

  variables {
    enable_pod_identity = false
    enable_irsa         = false
  }

  expect_failures = [aws_iam_role.this]
}

run "sqs_source" {
  command = apply

  variables {
    sqs_source_queues = [
      {
        url                   = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn                   = "arn:aws:sqs:eu-west-1:123456789012:tasks"
        dead_letter_queue_arn = "arn:aws:sqs:eu-west-1:123456789012:tasks-dlq"
      },
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo"
        arn = "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo"
      },
    ]
  }

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid] == [
      "ConnectToCluster", "ReadSourceTopics", "WriteDeadLetterTopic", "UseConsumerGroup", "ArchiveDeadLetters",
      "ConsumeQueues", "SendToDeadLetterQueues", "UseQueueKmsKey",
    ]
    error_message = "An SQS source adds ConsumeQueues, SendToDeadLetterQueues and UseQueueKmsKey after the archive."
  }

  assert {
    condition = { for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid => s.Resource }["ConsumeQueues"] == [
      "arn:aws:sqs:eu-west-1:123456789012:tasks",
      "arn:aws:sqs:eu-west-1:123456789012:jobs.fifo",
    ]
    error_message = "ConsumeQueues must name both source queues, in order."
  }

  assert {
    condition     = { for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid => s.Resource }["SendToDeadLetterQueues"] == ["arn:aws:sqs:eu-west-1:123456789012:tasks-dlq"]
    error_message = "SendToDeadLetterQueues must name the one dead-letter queue given (a queue without one adds nothing)."
  }

  assert {
    condition     = length(aws_iam_role_policy.application_queue) == 0
    error_message = "An SQS source gives the application no queue policy."
  }
}

run "sqs_source_without_dead_letter_queues" {
  command = apply

  variables {
    sqs_source_queues = [
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn = "arn:aws:sqs:eu-west-1:123456789012:tasks"
      },
    ]
  }

  assert {
    condition     = !contains([for s in jsondecode(aws_iam_role_policy.sidecar.policy).Statement : s.Sid], "SendToDeadLetterQueues")
    error_message = "Without dead-letter queues there is no SendToDeadLetterQueues (IAM rejects a statement without resources)."
  }
}

run "sqs_source_url_and_arn_of_different_queues" {
  command = plan

  variables {
    sqs_source_queues = [
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn = "arn:aws:sqs:eu-west-1:123456789012:jobs"
      },
    ]
  }

  expect_failures = [var.sqs_source_queues]
}

run "sqs_source_queue_twice" {
  command = plan

  variables {
    sqs_source_queues = [
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn = "arn:aws:sqs:eu-west-1:123456789012:tasks"
      },
      {
        url = "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks"
        arn = "arn:aws:sqs:eu-west-1:123456789012:tasks"
      },
    ]
  }

  expect_failures = [var.sqs_source_queues]
}
