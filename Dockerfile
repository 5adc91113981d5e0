# WolfPACS: a DICOM load balancer. Build (see README, Docker):
#   docker build -t wolfpacs/wolfpacs .      (or: podman build --format docker, to keep HEALTHCHECK)
#   docker run -d -p 11112:11112 -p 11113:11113 -p 127.0.0.1:9111:9111 \
#       -v wolfpacs-data:/data wolfpacs/wolfpacs
#   docker run -it -v wolfpacs-data:/data wolfpacs/wolfpacs console
# Debian's own Python on Debian's slim image: integration/test_image.py builds this very file on
# a Debian minbase made locally (no registry there), so what it tests is what users get.
FROM debian:bookworm-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        libpq5 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin wolfpacs \
    && mkdir -p /data /etc/wolfpacs && chown wolfpacs /data

# The source tree is mounted for this step only (rw: setuptools writes its build files into it;
# they are thrown away), so no copy of it stays in a layer. pip installs from PyPI into a venv
# of its own: Debian's python3 stays as Debian ships it. Two optional build secrets serve a
# build that reaches PyPI through a mirror or a TLS-inspecting proxy (the image test's does):
# `--secret id=pip.conf,src=...` for this step's pip, and `--secret id=ca.crt,src=...` for a
# CA that pip.conf names (cert = /run/secrets/ca.crt). Neither stays in the image, nor do pip
# and setuptools: nothing installs at run time. The postgresql extra (psycopg's C
# implementation, psycopg-binary, with the libpq inside its wheel: see setup.cfg for the
# trade-off; libpq5 stays for psycopg's pure-Python fallback where no wheel fits) is in: one
# image runs a node alone on SQLite or several on PostgreSQL (docs/deployment/docker-compose.yml).
RUN --mount=type=bind,target=/src,rw \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/wolfpacs \
    && /opt/wolfpacs/bin/pip install --no-cache-dir --disable-pip-version-check '/src[postgresql]' \
    && /opt/wolfpacs/bin/pip uninstall --yes --quiet pip setuptools \
    && install -m 0755 /src/docker/entrypoint.sh /usr/local/bin/wolfpacs-entrypoint \
    && install -m 0644 /src/docker/wolfpacs.toml /etc/wolfpacs/wolfpacs.toml

ENV PATH=/opt/wolfpacs/bin:$PATH \
    LANG=C.UTF-8 \
    WOLFPACS_CONFIG=/etc/wolfpacs/wolfpacs.toml \
    PYTHONUNBUFFERED=1
VOLUME /data
EXPOSE 11112 11113 9111
USER wolfpacs
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/wolfpacs/bin/python", "-m", "wolfpacs.healthcheck"]
ENTRYPOINT ["wolfpacs-entrypoint"]
CMD ["run"]
