output "alarm_names" {
  description = "Names of every alarm the module creates."
  value = concat(
    [for a in aws_cloudwatch_metric_alarm.lag : a.alarm_name],
    [for a in aws_cloudwatch_metric_alarm.dead_letters : a.alarm_name],
    [aws_cloudwatch_metric_alarm.auth_failures.alarm_name],
  )
}

output "metric_namespace" {
  description = "The namespace of the metrics the log filters make (DeadLetters by ErrorClass, AuthFailures)."
  value       = local.namespace
}
