/**
 * A private, throw-away `redis-server` for the demo and the benchmark: the test harness's
 * (a free port on 127.0.0.1, a temp dir, no persistence), under the scripts' names.
 *
 * @module
 */

export {
  RedisNotInstalledError,
  startRedis as startRedisServer,
  type TestRedis as RedisServer,
} from "../tests/_redis.ts";
