variable "name" {
  description = "Name prefix of the alarms and metric filters (the service's name)."
  type        = string
}

variable "msk_cluster_arn" {
  description = "ARN of the MSK cluster (its name is the lag metrics' Cluster Name dimension)."
  type        = string

  validation {
    condition     = can(regex("^arn:[a-z-]+:kafka:[a-z0-9-]+:[0-9]{12}:cluster/[^/]+/.+$", var.msk_cluster_arn))
    error_message = "msk_cluster_arn must be an MSK cluster ARN (arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>)."
  }
}

variable "consumer_group" {
  description = "The consumer group the sidecar joins (the effective name: sidecar-iam-policy's consumer_group output)."
  type        = string
}

variable "topics" {
  description = "Source topics; each named one (not ^patterns) gets an offset-lag and a time-lag alarm."
  type        = list(string)
}

variable "log_group_name" {
  description = "CloudWatch log group of the sidecar's JSON logs."
  type        = string
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires and when it clears (SNS topics). Empty: the alarms only show in the console."
  type        = list(string)
  default     = []
}

variable "offset_lag_threshold" {
  description = "SumOffsetLag (records) above which a topic's lag alarm fires."
  type        = number
  default     = 10000
}

variable "time_lag_threshold_seconds" {
  description = "EstimatedMaxTimeLag (seconds) above which a topic's time-lag alarm fires."
  type        = number
  default     = 300
}

variable "lag_evaluation_minutes" {
  description = "Minutes the lag must stay above its threshold before the alarm fires."
  type        = number
  default     = 10
}

variable "dead_letter_error_classes" {
  description = "Error classes (dlq-error-class) that each get a dead-letter alarm."
  type        = list(string)
  default     = ["permanent", "retries-exhausted", "oversized", "malformed", "panic", "undecodable", "filter-error", "expired"]
}

variable "tags" {
  description = "Tags of the alarms."
  type        = map(string)
  default     = {}
}
