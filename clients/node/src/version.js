// The package's version, sent in the User-Agent (checked against package.json by a test).
export const VERSION = "0.1.0";
