# WolfPACS: a DICOM load balancer. Build: docker build -t wolfpacs/wolfpacs .
#   docker run -d -p 11112:11112 -p 11113:11113 -v wolfpacs-data:/data wolfpacs/wolfpacs
#   docker run -it -v wolfpacs-data:/data wolfpacs/wolfpacs console
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /data wolfpacs \
    && mkdir -p /data /etc/wolfpacs && chown wolfpacs /data

COPY . /src
RUN pip install --no-cache-dir /src \
    && install -m 0755 /src/docker/entrypoint.sh /usr/local/bin/wolfpacs-entrypoint \
    && install -m 0644 /src/docker/wolfpacs.toml /etc/wolfpacs/wolfpacs.toml \
    && rm -rf /src

ENV WOLFPACS_CONFIG=/etc/wolfpacs/wolfpacs.toml \
    PYTHONUNBUFFERED=1
VOLUME /data
EXPOSE 11112 11113 9111
USER wolfpacs
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "wolfpacs.healthcheck"]
ENTRYPOINT ["wolfpacs-entrypoint"]
CMD ["run"]
