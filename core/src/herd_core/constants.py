"""Names shared by the operator, the API and the tests: never spell these as literals elsewhere."""

GROUP = "platform.herd-itt.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Field manager for server-side apply and the prefix of every label/annotation we own.
FIELD_MANAGER = "herd-operator"
FINALIZER = f"{GROUP}/finalizer"
TRACKING_ANNOTATION = f"{GROUP}/tracking-id"
# On every object an Application applies, beside the annotation (which says whose it is): the
# live-state cache lists and watches only objects with this label, never everything in a
# destination namespace. Our own key, not Argo's app.kubernetes.io/instance, which charts set.
TRACKING_LABEL = f"{GROUP}/tracked"
# Set on a Tenant when its child changed, to run its handler (no poll). Not under GROUP:
# kopf leaves annotations of its own storage prefix out of the diff, and this one must count.
WAKE_ANNOTATION = "wake.herd-itt.com/child"

# The worker's server-side apply field manager, and the one Tenant condition it owns (the
# operator never writes it).
WORKER_MANAGER = "herd-worker"
WELCOME_EMAIL_SENT = "WelcomeEmailSent"
# Set (any value) on a Tenant whose welcome email SES refused (the sandbox): the operator
# queues it again. Not under GROUP, for the reason WAKE_ANNOTATION is not.
RESEND_WELCOME_ANNOTATION = "resend.herd-itt.com/welcome-email"

# GitOps: Projects, the cascade-delete finalizers (ours and Argo's), repository Secrets.
PROJECTS = "projects"
# Argo's resources finalizer, ours or Argo's name: plain and /foreground wait until what the
# Application tracks is gone; /background asks each to go and lets the Application go at once.
_CASCADE = (f"resources-finalizer.{GROUP}", "resources-finalizer.argocd.argoproj.io")
BACKGROUND_CASCADE = tuple(f"{f}/background" for f in _CASCADE)
CASCADE_FINALIZERS = (*_CASCADE, *(f"{f}/foreground" for f in _CASCADE), *BACKGROUND_CASCADE)
REPO_SECRET_LABEL = f"{GROUP}/secret-type"
REPO_SECRET_TYPE = "repository"

# Tenant slugs name the OpenRemote realm and Kubernetes objects: DNS-safe, and never a name
# the platform itself uses (OpenRemote's master realm, our own hosts). The API's signup form,
# the Tenant model and the Tenant CRD (generated from the model) all read these.
SLUG_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SLUG_MIN_LENGTH, SLUG_MAX_LENGTH = 3, 40
RESERVED_SLUGS = frozenset({"master", "admin", "api", "auth", "www", "herd", "manager", "system"})
EMAIL_MAX_LENGTH = 254

# The thumbnail worker's field manager, and the Tenant status it owns: `status.logo` and the
# `LogoRejected` condition (True with the reason when an upload was refused).
THUMBNAIL_MANAGER = "herd-thumbnails"
LOGO_REJECTED = "LogoRejected"

# The herd-admin app client's attribute permissions (`herd aws bootstrap`, docs/eks.md). Named,
# never left empty: a client without WriteAttributes lets every user write every mutable
# attribute on themselves (AWS's default), custom:tenant included.
ADMIN_CLIENT_READ_ATTRIBUTES = ("email", "email_verified", "name", "custom:tenant")
ADMIN_CLIENT_WRITE_ATTRIBUTES = ("name",)
