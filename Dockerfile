# The runtime image of the presence cluster: the `edge`, `presence` and
# `registrar` services and the single-process `presence-node`, all in one
# executable (`presence-cluster`, linked under each name), and the
# `presencectl` command-line client. One image; the Kubernetes manifests (k8s/)
# choose the process with `command:` (`/usr/local/bin/edge`, ...), or:
#
#   docker run --rm presence:local --help            # the commands
#   docker run --rm presence:local edge --help       # one command's options
#   docker run --rm -p 5060:5060/udp presence:local  # the whole service
#
# The build context is a directory holding bin/ with the executables, built on a
# glibc system (cargo build --release --workspace --bins). The simplest way:
#
#   cargo build --release --workspace --bins
#   scripts/build-images.sh --profile release     # -> presence:local
#
# BASE is any glibc root filesystem with libgcc (the binaries need libc, libm,
# libgcc_s). Offline, scripts/build-images.sh makes presence-base:local from
# this machine's own libraries (exactly what `ldd` lists); with a registry,
# `--build-arg BASE=gcr.io/distroless/cc-debian12` works as well.
ARG BASE=presence-base:local
FROM ${BASE}

COPY bin/ /usr/local/bin/

# Containers listen on every interface; each binary reads only its own.
ENV SIP_UDP=0.0.0.0:5060 \
    SIP_TCP=0.0.0.0:5060 \
    PRESENCE_LISTEN=0.0.0.0:50051 \
    REGISTRAR_LISTEN=0.0.0.0:50052 \
    RUST_LOG=info \
    LOG_FORMAT=json

# SIP (edge, presence-node): 5060 over UDP and TCP.
EXPOSE 5060/udp 5060/tcp
# gRPC: presence 50051, registrar 50052 (health and reflection on both).
EXPOSE 50051/tcp 50052/tcp

# Never root; the same numeric user as distroless' "nonroot".
USER 65532:65532
WORKDIR /tmp

LABEL org.opencontainers.image.title="presence" \
      org.opencontainers.image.description="Horizontally clustered SIP presence service: SIP edges, presence and registrar services on Redis" \
      org.opencontainers.image.licenses="Apache-2.0"

# With no arguments: the whole service in one process, development tokens
# printed. A first argument naming a process (edge, presence, registrar,
# presence-node) runs that process with the rest.
ENTRYPOINT ["/usr/local/bin/presence-cluster"]
CMD []
