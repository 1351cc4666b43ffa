# The tests' workload image: Debian's static busybox with its applets (sh, cat, sleep, tar, httpd,
# sha256sum, ...) linked in /bin, so exec, attach, cp, logs and port-forward meet real containers.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /usr/bin /sbin /usr/sbin /tmp /www && /bin/busybox --install -s && /bin/busybox chmod 1777 /tmp"]
CMD ["sh"]
