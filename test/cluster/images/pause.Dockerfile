# The pod sandbox image of the test cluster (registry.k8s.io/pause cannot be pulled here): one
# static program that holds the pod's namespaces until it is told to stop.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
