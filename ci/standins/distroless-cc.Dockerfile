# Stand-in for gcr.io/distroless/cc-debian12:nonroot, built where no registry can be
# pulled from: what that image holds for a Rust binary (glibc, libgcc_s, CA
# certificates, tzdata, /etc/passwd with nonroot = 65532, /tmp), from the same
# Debian release, and nothing else: no shell, no package manager.
FROM tasks-ci/debian:bookworm-minbase AS debian
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata libgcc-s1 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /rootfs/etc /rootfs/lib/x86_64-linux-gnu /rootfs/lib64 /rootfs/tmp /rootfs/home/nonroot /rootfs/usr/share \
 && for l in libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 libpthread.so.0 librt.so.1 ld-linux-x86-64.so.2; do \
      cp -L "/lib/x86_64-linux-gnu/$l" "/rootfs/lib/x86_64-linux-gnu/$l"; done \
 && ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /rootfs/lib64/ld-linux-x86-64.so.2 \
 && cp -a /etc/ssl /rootfs/etc/ssl \
 && cp -a /usr/share/zoneinfo /rootfs/usr/share/zoneinfo \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && chmod 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/home/nonroot

FROM scratch
COPY --from=debian /rootfs/ /
USER 65532:65532
WORKDIR /home/nonroot
# A base image: the images built on it declare their own checks (distroless does the same).
HEALTHCHECK NONE
