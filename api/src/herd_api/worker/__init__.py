"""The queue workers: SQS email jobs -> SES templated emails, exactly once per key."""
