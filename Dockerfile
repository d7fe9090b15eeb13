# kubegate's image: the wheel and its dependencies on a slim Python, run as an unprivileged user.
# Works with a read-only root filesystem: it writes only to its state, audit and /tmp volumes
# (the Helm chart mounts them). Build: docker build -t kubegate .
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY kubegate kubegate
COPY gateway gateway
COPY audit audit
COPY webshell webshell
COPY emulator emulator
COPY policies policies
COPY deploy deploy
COPY docs docs
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[webshell]"

FROM python:3.12-slim-bookworm
# bubblewrap: the webshell's terminals run kubectl in a sandbox (docs/webshell.md#what-contains-a-terminal).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kubegate \
 && mkdir -p /var/lib/kubegate /var/log/kubegate \
 && chown 10001:10001 /var/lib/kubegate /var/log/kubegate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "kubegate[webshell]" && rm -rf /wheels
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER 10001:10001
WORKDIR /var/lib/kubegate
EXPOSE 8443 9443
ENTRYPOINT ["kubegate"]
CMD ["serve", "--config", "/etc/kubegate/settings/kubegate.yaml"]
