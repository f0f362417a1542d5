// Builds the UI: copies src/index.html and public/ (with the icons postinstall generated)
// to dist/. Dependency-free on purpose. Like the real UI's vite build on Node 22, it also
// leaves an undeclared, untracked directory behind: node-compile-cache/.
import { copyFileSync, cpSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const cache = join(here, "node-compile-cache");
mkdirSync(cache, { recursive: true });
writeFileSync(join(cache, "build.json"), JSON.stringify({ node: process.version, builtAt: new Date().toISOString() }) + "\n");

mkdirSync(join(here, "dist"), { recursive: true });
cpSync(join(here, "public"), join(here, "dist"), { recursive: true });
copyFileSync(join(here, "src", "index.html"), join(here, "dist", "index.html"));
console.log("@livos/ui: wrote dist/index.html and dist/ from public/ (cache in node-compile-cache/)");
