// The library entry of @nexus/core ("@nexus/core/lib" → dist/lib.js), for other trees to
// import. livinityd (livos/packages/livinityd) depends on this package through
// "file:../../../nexus/packages/core" and imports this module at start, so it runs only
// once core has been built and its dist/ copied into livinityd's installed copy of the
// package (pnpm copies the package at install time, before core is built).

/** This package's version, which livinityd reports on its health endpoint. */
export const coreVersion = "0.1.0";

/** The path of nexus-core's health endpoint. */
export const coreHealthPath = "/api/health";

/** Where nexus-core writes its log file unless NEXUS_LOGS_DIR says otherwise. */
export const defaultLogsDir = "/opt/nexus/logs";

/** The log file nexus-core appends to in its logs directory. */
export const logFileName = "nexus.log";
