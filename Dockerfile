# ipamd image: the daemon (`ipamd serve`), the admin commands (`ipamd db upgrade`,
# `ipamd install-cni`), the operator CLI (`ipamctl`) and, inside the package, the static
# CNI plugin that `ipamd install-cni` copies onto the node.
#
#   docker build -t registry.example.com/ipamd:0.1.0 .
#
# Three stages: Go builds the plugin, Python installs the package with the plugin inside
# it, and the final image holds the installed virtualenv and no build context.

FROM golang:1.22-bookworm AS plugin

WORKDIR /src/plugin
COPY plugin/ ./
# Static (no cgo, so no program interpreter: it runs on nodes without libc), stripped,
# standard library only; the same command as scripts/build-plugin.sh.
RUN go vet ./... \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w -buildid=' -o bin/ipamd . \
 && CNI_COMMAND=VERSION ./bin/ipamd </dev/null


FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A virtualenv at a fixed path: copied whole into the runtime stage, which uses the same
# base image and therefore the same interpreter path.
RUN python -m venv /opt/ipamd

WORKDIR /src
COPY . .
COPY --from=plugin /src/plugin/bin/ipamd plugin/bin/ipamd
# Every dependency ships manylinux wheels for CPython 3.11 (asyncpg, aiohttp, greenlet...),
# so no compiler is needed. pip byte-compiles while installing: the runtime's root
# filesystem is read-only, so nothing could be cached later. The check imports with -I so
# it sees the installed package, not the source tree in the working directory.
RUN /opt/ipamd/bin/pip install . \
 && /opt/ipamd/bin/python -I -c "import importlib.resources as r; \
assert r.files('ipamd.shim').joinpath('bin/ipamd').is_file(), 'CNI plugin missing from the package'"


FROM python:3.11-slim

LABEL org.opencontainers.image.title="ipamd" \
      org.opencontainers.image.description="Cluster-wide IPAM daemon for Kubernetes secondary networks" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/ipamd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=build /opt/ipamd /opt/ipamd

# The image runs as an unprivileged user by default, which is enough for `ipamctl`, for
# `ipamd db upgrade` against PostgreSQL and for a standalone `ipamd serve` (the two
# directories below belong to that user).
#
# The Helm chart's DaemonSet overrides this with runAsUser: 0, with every capability
# dropped: it writes into hostPath directories (/run/ipamd for the socket the node's
# runtime connects to, the node's CNI bin dir, /var/lib/ipamd for SQLite) that the kubelet
# creates owned by root with mode 0755. fsGroup does not apply to hostPath volumes, so
# no other uid could write there without a privileged chown step first.
RUN groupadd --system --gid 10001 ipamd \
 && useradd --system --uid 10001 --gid ipamd --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ipamd \
 && mkdir -p /run/ipamd /var/lib/ipamd /etc/ipamd \
 && chown ipamd:ipamd /run/ipamd /var/lib/ipamd

USER 10001:10001

ENTRYPOINT ["ipamd"]
CMD ["serve"]
