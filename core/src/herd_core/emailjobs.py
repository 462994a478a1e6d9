"""The email job contract between who enqueues (the operator) and who sends (the worker)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Report(BaseModel):
    """Where the worker reports the delivery result: a Tenant's status."""

    model_config = ConfigDict(populate_by_name=True)

    namespace: str
    name: str
    uid: str


class EmailJob(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    idempotency_key: str = Field(alias="idempotencyKey", min_length=1, max_length=256)
    template: str = Field(min_length=1)
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    data: dict[str, Any] = Field(default_factory=dict)
    report: Report | None = None

    def body(self) -> str:
        return self.model_dump_json(by_alias=True)


def enqueue(sqs: Any, queue_url: str, job: EmailJob) -> str:
    result = sqs.send_message(QueueUrl=queue_url, MessageBody=job.body())
    return str(result["MessageId"])


def mask_email(address: str) -> str:
    """For logs: never a full address."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
