// PM2 ecosystem file of the LivOS demo tree. It stands for the file the real tree tracks
// (upstream's livos/ecosystem.config.cjs, with upstream's own app names), in the same
// style: the tree owns it and it is NOT livinity-agent's to write.
//
// livinity-agent must never overwrite, edit or delete this file, nor start it: it writes
// its own ecosystem file elsewhere. Tests check that this file is byte-identical after an
// onboarding and after a rollback.
const path = require("node:path");

const livos = process.env.LIVOS_BASE_DIR || __dirname;
const nexus = process.env.NEXUS_BASE_DIR || path.join(livos, "..", "nexus");
const data = process.env.LIVOS_DATA_DIR || path.join(livos, "data");

module.exports = {
  apps: [
    {
      name: "livos",
      cwd: path.join(livos, "packages", "livinityd"),
      script: "source/cli.ts",
      interpreter: path.join(livos, "packages", "livinityd", "node_modules", ".bin", "tsx"),
      args: `--data-directory ${data} --port 8080`,
      env: { NODE_ENV: "production" },
    },
    {
      name: "liv-core",
      cwd: nexus,
      script: "packages/core/dist/index.js",
      env: { NODE_ENV: "production" },
    },
    {
      name: "liv-memory",
      cwd: nexus,
      script: "packages/memory/dist/index.js",
      env: { MEMORY_PORT: "3300" },
    },
  ],
};
