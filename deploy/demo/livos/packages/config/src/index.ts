// Settings shared by the LivOS packages. livinityd imports them from the built output
// (dist/), so a running livinityd proves this package was built.

/** The product name shown in responses and logs. */
export const productName = "LivOS";

/** The file livinityd writes into its data directory at start. */
export const stateFileName = "livinityd-state.json";

/** The path of livinityd's health endpoint. */
export const healthPath = "/health";
