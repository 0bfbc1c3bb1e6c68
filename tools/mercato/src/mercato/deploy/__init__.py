"""What runs where in production: the per-service deploy facts (``units``), the Kubernetes
objects built from them (``k8s``), the edge's static Envoy configuration (``edge``), and the
command that writes the generated files under ``deploy/`` (``render``)."""
