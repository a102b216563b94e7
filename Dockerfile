# naraft: one node per container. Build: docker build -t naraft .
# Run one standalone node:
#   docker run -d -p 8848:8848 -v naraft-data:/var/lib/naraft naraft --standalone
# A cluster: docker-compose.yml (3 nodes) or deploy/kubernetes/ (a StatefulSet); docs/deploy.md.

# -- build: the wheel and its pinned dependencies, into a virtual environment
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/naraft
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN /opt/naraft/bin/pip install --no-cache-dir --disable-pip-version-check \
        -c constraints.txt . \
    && find /opt/naraft -name '__pycache__' -prune -exec rm -rf {} +

# -- run: the virtual environment only, as an unprivileged user
FROM python:3.11-slim
RUN groupadd --system --gid 10001 naraft \
    && useradd --system --uid 10001 --gid naraft --home-dir /var/lib/naraft \
        --shell /usr/sbin/nologin naraft \
    && install -d -o naraft -g naraft -m 0700 /var/lib/naraft
COPY --from=build /opt/naraft /opt/naraft
ENV PATH=/opt/naraft/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NARAFT_DATA_DIR=/var/lib/naraft \
    NARAFT_ID=127.0.0.1:8848 \
    NARAFT_LISTEN=0.0.0.0:8848
USER naraft:naraft
VOLUME ["/var/lib/naraft"]
EXPOSE 8848/tcp
# Ready only while the node is part of a working cluster (a known leader, applied close
# to the commit index); a lone member of a cluster that lost its quorum turns unhealthy.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:8848/nacos/v1/console/health/readiness', timeout=2); sys.exit(0)"]
ENTRYPOINT ["naraft", "server"]
# A cluster member sets NARAFT_ID to its own address and NARAFT_PEERS to every member;
# the default command runs one standalone node.
CMD ["--standalone"]
