#!/usr/bin/env node
// The UI's postinstall (pnpm runs a workspace package's own install scripts during
// `pnpm install`). Like the real UI's, which copies the tabler icons into
// public/generated-tabler-icons/, it writes files that no package.json declares and git
// does not track: public/generated-icons/*.svg. Dependency-free, no network.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "public", "generated-icons");
const icons = {
	home: '<path d="M2 8 8 2l6 6v6H2z"/>',
	settings: '<circle cx="8" cy="8" r="3"/>',
	files: '<path d="M3 2h7l3 3v9H3z"/>',
};
mkdirSync(out, { recursive: true });
for (const [name, body] of Object.entries(icons)) {
	const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">${body}</svg>\n`;
	writeFileSync(join(out, `${name}.svg`), svg);
}
console.log(`@livos/ui: wrote ${Object.keys(icons).length} icons to public/generated-icons/`);
