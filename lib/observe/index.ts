export { createLogger, silentLogger } from "./logger.ts";
export type { Logger, LogFields, LogLevel, LoggerOptions } from "./logger.ts";
