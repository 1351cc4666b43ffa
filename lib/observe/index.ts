export { createLogger, silentLogger } from "./logger.ts";
export type { Logger, LogFields, LogLevel, LoggerOptions } from "./logger.ts";
export { startMetricsServer } from "./metrics-server.ts";
export type { MetricsServer } from "./metrics-server.ts";
