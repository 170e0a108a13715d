# modelport server image: a build stage installs the package into a virtualenv (compilers only
# there, for any extra without a wheel), the final stage copies that virtualenv onto a slim base
# and runs as an unprivileged user.
#
#   docker build -t modelport .                                  # extras: serve,postgres
#   docker build --build-arg EXTRAS=serve,postgres,openvino -t modelport:openvino .
#   docker run -p 8080:8080 -p 8081:8081 -e MODELPORT_API_KEYS=ops=admin:<secret> \
#       -v modelport-home:/var/lib/modelport modelport
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=serve,postgres
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/modelport
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/modelport/bin/pip install --no-cache-dir ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
COPY --from=build /opt/modelport /opt/modelport
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/modelport --create-home modelport
ENV PATH=/opt/modelport/bin:$PATH \
    MODELPORT_HOME=/var/lib/modelport \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/modelport
VOLUME ["/var/lib/modelport"]
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=2)"]
ENTRYPOINT ["modelport"]
CMD ["serve", "--host", "0.0.0.0", "--http-port", "8080", "--grpc-port", "8081"]
