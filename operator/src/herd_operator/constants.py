"""Names shared by the operator, the API and the tests: never spell these as literals elsewhere."""

GROUP = "platform.herd-itt.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Field manager for server-side apply and the prefix of every label/annotation we own.
FIELD_MANAGER = "herd-operator"
FINALIZER = f"{GROUP}/finalizer"
TRACKING_ANNOTATION = f"{GROUP}/tracking-id"

# GitOps: Projects, the cascade-delete finalizers (ours and Argo's), repository Secrets.
PROJECTS = "projects"
CASCADE_FINALIZERS = (f"resources-finalizer.{GROUP}", "resources-finalizer.argocd.argoproj.io")
REPO_SECRET_LABEL = f"{GROUP}/secret-type"
REPO_SECRET_TYPE = "repository"
