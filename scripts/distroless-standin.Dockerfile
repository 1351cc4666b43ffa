# STAND-IN for gcr.io/distroless/cc-debian12:nonroot (no registry is reachable where the tests run).
# The context is assembled by test/cluster/images.ts from this machine's Debian 12 packages: the
# same packages distroless/cc is made of, a nonroot user 65532 and no shell.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 home/ /home/
USER 65532:65532
WORKDIR /home/nonroot
