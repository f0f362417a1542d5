// Builds the UI: copies src/index.html to dist/index.html. Dependency-free on purpose.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(join(here, "dist"), { recursive: true });
copyFileSync(join(here, "src", "index.html"), join(here, "dist", "index.html"));
console.log("@livos/ui: wrote dist/index.html");
