//! What the Redis-backed tests share.

use std::time::Duration;

pub const REDIS: &str = "redis://127.0.0.1:6379";

/// A connection of the test's own, or a panic saying how to start Redis.
pub async fn conn() -> redis::aio::MultiplexedConnection {
    let attempt = async {
        redis::Client::open(REDIS)
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
    {
        Some(c) => c,
        None => panic!(
            "Redis is not running on 127.0.0.1:6379. Start it with:\n  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
        ),
    }
}
