"""Pydantic models of Herd's custom resources, the one source of their CRDs (see base.py)."""

from herd_core.models.application import Application, ApplicationSpec, ApplicationStatus
from herd_core.models.base import CRD, Column, Condition, Resource
from herd_core.models.cognitoclient import CognitoClient, CognitoClientSpec, CognitoClientStatus
from herd_core.models.project import Project, ProjectSpec
from herd_core.models.sestemplate import SESTemplate, SESTemplateSpec, SESTemplateStatus
from herd_core.models.tenant import Tenant, TenantSpec, TenantStatus

# Every kind we define, in the order the CRDs are written.
RESOURCES: tuple[type[Resource], ...] = (Tenant, SESTemplate, CognitoClient, Application, Project)

__all__ = [
    "CRD",
    "RESOURCES",
    "Application",
    "ApplicationSpec",
    "ApplicationStatus",
    "CognitoClient",
    "CognitoClientSpec",
    "CognitoClientStatus",
    "Column",
    "Condition",
    "Project",
    "ProjectSpec",
    "Resource",
    "SESTemplate",
    "SESTemplateSpec",
    "SESTemplateStatus",
    "Tenant",
    "TenantSpec",
    "TenantStatus",
]
